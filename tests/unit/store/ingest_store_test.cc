// The ingest store against real SQLite files in a temporary directory:
// fresh / resend / conflict, concurrent duplicates, abandon and partial
// publishes, unsettled receipts after a reopen, retention, overload, large
// messages and ownership.
#include <catch2/catch.hpp>

#include <sqlite3.h>

#include <atomic>
#include <map>
#include <set>
#include <thread>

#include "tests/unit/store/store_test_support.h"

using namespace yilian;
using namespace yilian::store;
using namespace yilian::store::test;
using kind = reserve_outcome::kind;

namespace {

// SQL run on the store's file through a connection of the test's own (the
// store may have it open: WAL lets it, between the store's transactions).
void run_sql(const std::filesystem::path& file, const char* text) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(file.c_str(), &db) == SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  char* err = nullptr;
  const int rc = sqlite3_exec(db, text, nullptr, nullptr, &err);
  const std::string message = err != nullptr ? err : "";
  sqlite3_free(err);
  sqlite3_close(db);
  INFO(message);
  REQUIRE(rc == SQLITE_OK);
}

}  // namespace

TEST_CASE("a new message is fresh, its resend is acknowledged again without events, new content is a conflict",
          "[unit]") {
  temp_dir dir;
  auto store = open_store({.file = dir.db()});
  auto req = request_for("MSG0001");
  const std::string bytes = req.raw;
  const auto ids = req.event_ids;

  auto first = reserve_wait(*store, req);
  REQUIRE(first.has_value());
  CHECK(first->what == kind::fresh);
  CHECK(first->unpublished_event_ids == ids);
  CHECK(first->raw_ref.sha256() == sha256_hex(bytes));
  CHECK(first->raw_ref.size_bytes() == bytes.size());
  CHECK(first->raw_ref.content_type() == "application/hl7-v2");
  CHECK(first->raw_ref.charset() == "UNICODE UTF-8");
  CHECK(first->raw_ref.uri().starts_with("raw://zs-tertiary/"));
  CHECK(first->raw_ref.uri().ends_with("/" + sha256_hex(bytes)));

  SECTION("the claim-check reads back the exact bytes") {
    auto raw = store->read_raw(first->raw_ref.uri());
    REQUIRE(raw.has_value());
    CHECK(*raw == bytes);
    auto fragment = store->read_raw(first->raw_ref.uri() + "#OBX[3]-5");
    REQUIRE(fragment.has_value());
    CHECK(*fragment == bytes);
    auto wrong = store->read_raw("raw://other-hospital/1/" + sha256_hex(bytes));
    REQUIRE_FALSE(wrong.has_value());
    CHECK(wrong.error().code == errc::not_found);
    CHECK(store->read_raw("file:///etc/passwd").error().code == errc::invalid_argument);
  }
  SECTION("after complete, the resend is resend_done with the same claim-check and no events") {
    REQUIRE(settle_wait(*store, req.key, true).has_value());
    auto again = reserve_wait(*store, req);
    REQUIRE(again.has_value());
    CHECK(again->what == kind::resend_done);
    CHECK(again->unpublished_event_ids.empty());
    CHECK(again->raw_ref.uri() == first->raw_ref.uri());
    const auto st = store->stats();
    CHECK(st.fresh == 1);
    CHECK(st.resend_done == 1);
    CHECK(st.raw_bytes_written == bytes.size());  // the resend stored nothing
  }
  SECTION("the same control id with other content is a conflict naming the stored hash, done or not") {
    const bool completed = GENERATE(false, true);
    if (completed) REQUIRE(settle_wait(*store, req.key, true).has_value());
    auto other = request_for("MSG0001", 1);
    auto c = reserve_wait(*store, other);
    REQUIRE(c.has_value());
    CHECK(c->what == kind::conflict);
    CHECK(c->existing_sha256 == sha256_hex(bytes));
    CHECK(c->raw_ref.uri().empty());
  }
  SECTION("the same control id from another sending facility is a different message") {
    auto other = request_for("MSG0001");
    other.key.facility = "FAC-B";
    auto r = reserve_wait(*store, other);
    REQUIRE(r.has_value());
    CHECK(r->what == kind::fresh);
  }
}

TEST_CASE("a resend while the first attempt is in flight waits for it and gets what the attempt settled to",
          "[unit]") {
  temp_dir dir;
  auto store = open_store({.file = dir.db()});
  auto req = request_for("MSG0002");
  auto first = reserve_wait(*store, req);
  REQUIRE(first.has_value());
  REQUIRE(first->what == kind::fresh);

  pending_reserve second(*store, req);
  CHECK_FALSE(second.ready(200ms));
  CHECK(store->stats().parked == 1);

  SECTION("complete: the waiting resend is resend_done") {
    store->complete(req.key);
    auto r = second.get();
    REQUIRE(r.has_value());
    CHECK(r->what == kind::resend_done);
  }
  SECTION("abandon with nothing published: the waiting resend is fresh and stores the bytes again") {
    store->abandon(req.key);
    auto r = second.get();
    REQUIRE(r.has_value());
    CHECK(r->what == kind::fresh);
    CHECK(r->unpublished_event_ids == req.event_ids);
    CHECK(store->stats().raw_bytes_written == 2 * req.raw.size());
    auto bytes = store->read_raw(r->raw_ref.uri());
    REQUIRE(bytes.has_value());
    CHECK(*bytes == req.raw);
  }
  SECTION("abandon with one of two published: the waiting resend publishes only the other") {
    store->abandon(req.key, {req.event_ids[0]});
    auto r = second.get();
    REQUIRE(r.has_value());
    CHECK(r->what == kind::resend_pending);
    CHECK(r->unpublished_event_ids == std::vector<std::string>{req.event_ids[1]});
    CHECK(r->raw_ref.uri() == first->raw_ref.uri());
    AND_THEN("completing that attempt makes the next resend resend_done") {
      REQUIRE(settle_wait(*store, req.key, true).has_value());
      auto third = reserve_wait(*store, req);
      REQUIRE(third.has_value());
      CHECK(third->what == kind::resend_done);
    }
  }
}

TEST_CASE("a reserve parked longer than settle_timeout fails with a retriable timeout", "[unit]") {
  temp_dir dir;
  auto store = open_store({.file = dir.db(), .settle_timeout = 300ms});
  auto req = request_for("MSG0003");
  REQUIRE(what(reserve_wait(*store, req)) == "fresh");
  const auto started = std::chrono::steady_clock::now();
  auto r = reserve_wait(*store, req);
  const auto waited = std::chrono::steady_clock::now() - started;
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == errc::timeout);
  CHECK(r.error().retriable);
  CHECK(waited >= 250ms);
  CHECK(waited < 5s);
  CHECK(store->stats().settle_timeouts == 1);
}

TEST_CASE("of many identical messages reserved at once, exactly one is fresh and the others follow its outcome",
          "[unit]") {
  temp_dir dir;
  auto store = open_store({.file = dir.db()});
  constexpr int kThreads = 8;
  constexpr int kPerThread = 25;
  const auto req = request_for("MSG-DUP");
  std::atomic<int> fresh{0};
  std::atomic<int> done{0};
  std::atomic<int> other{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        auto r = reserve_wait(*store, req);
        if (!r) {
          ++other;
        } else if (r->what == kind::fresh) {
          ++fresh;
          // The one that won publishes, then completes.
          std::this_thread::sleep_for(5ms);
          store->complete(req.key);
        } else if (r->what == kind::resend_done) {
          ++done;
        } else {
          ++other;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(fresh == 1);
  CHECK(done == kThreads * kPerThread - 1);
  CHECK(other == 0);
}

TEST_CASE("abandon forgets a receipt with nothing published and keeps the rest of a partly published one",
          "[unit]") {
  temp_dir dir;
  auto store = open_store({.file = dir.db()});
  auto req = request_for("MSG0004", 0, 3);
  REQUIRE(what(reserve_wait(*store, req)) == "fresh");

  SECTION("nothing published: the resend is fresh") {
    REQUIRE(settle_wait(*store, req.key, false).has_value());
    CHECK(store->stats().abandoned == 1);
    auto r = reserve_wait(*store, req);
    REQUIRE(r.has_value());
    CHECK(r->what == kind::fresh);
  }
  SECTION("two of three published, then the retry fails again with nothing more: still only the third is left") {
    REQUIRE(settle_wait(*store, req.key, false, {req.event_ids[0], req.event_ids[2]}).has_value());
    auto r = reserve_wait(*store, req);
    REQUIRE(r.has_value());
    CHECK(r->what == kind::resend_pending);
    CHECK(r->unpublished_event_ids == std::vector<std::string>{req.event_ids[1]});
    REQUIRE(settle_wait(*store, req.key, false).has_value());
    auto again = reserve_wait(*store, req);
    REQUIRE(again.has_value());
    CHECK(again->what == kind::resend_pending);
    CHECK(again->unpublished_event_ids == std::vector<std::string>{req.event_ids[1]});
    CHECK(store->stats().partial == 2);
  }
}

TEST_CASE("receipts left in flight when the store stops are unsettled after reopening until resolved", "[unit]") {
  temp_dir dir;
  auto a = request_for("MSG-A", 0, 2);
  auto b = request_for("MSG-B", 0, 2);
  auto c = request_for("MSG-C", 0, 2);
  auto d = request_for("MSG-D", 0, 2);
  {
    auto store = open_store({.file = dir.db()});
    for (auto* r : {&a, &b, &c, &d}) REQUIRE(what(reserve_wait(*store, *r)) == "fresh");
    REQUIRE(settle_wait(*store, d.key, true).has_value());
    // a, b, c never complete: the process "dies" here.
  }
  auto store = open_store({.file = dir.db()});
  auto pending = store->pending();
  REQUIRE(pending.has_value());
  REQUIRE(pending->size() == 3);
  std::map<std::string, pending_receipt> by_id;
  for (auto& p : *pending) by_id[p.key.control_id] = p;
  REQUIRE(by_id.contains("MSG-A"));
  CHECK(by_id["MSG-A"].state == receipt_state::pending);
  CHECK(by_id["MSG-A"].event_ids == a.event_ids);
  CHECK(by_id["MSG-A"].unpublished_event_ids == a.event_ids);
  CHECK(by_id["MSG-A"].sha256 == sha256_hex(a.raw));
  CHECK(by_id["MSG-A"].reserved_at_ms > 0);

  SECTION("a resend before recovery is refused with a retriable unavailable, not guessed") {
    auto r = reserve_wait(*store, a);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == errc::unavailable);
    CHECK(r.error().retriable);
    auto done = reserve_wait(*store, d);
    REQUIRE(done.has_value());
    CHECK(done->what == kind::resend_done);
  }
  SECTION("resolve: all found -> done, none -> forgotten, some -> partial") {
    REQUIRE(store->resolve(a.key, a.event_ids).has_value());
    REQUIRE(store->resolve(b.key, {}).has_value());
    const std::vector<std::string> first_only{c.event_ids[0]};
    REQUIRE(store->resolve(c.key, first_only).has_value());
    auto left = store->pending();
    REQUIRE(left.has_value());
    CHECK(left->empty());
    CHECK(what(reserve_wait(*store, a)) == "resend_done");
    CHECK(what(reserve_wait(*store, b)) == "fresh");
    auto rc = reserve_wait(*store, c);
    REQUIRE(rc.has_value());
    CHECK(rc->what == kind::resend_pending);
    CHECK(rc->unpublished_event_ids == std::vector<std::string>{c.event_ids[1]});
  }
}

TEST_CASE("retention deletes old raw bytes of done receipts in batches and keeps those not yet done", "[unit]") {
  temp_dir dir;
  auto store = open_store({.file = dir.db(), .raw_retention_ms = 60'000, .retention_batch = 7});
  const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch()).count();
  std::vector<std::string> old_done;
  std::vector<std::string> old_pending;
  std::vector<std::string> young;
  for (int i = 0; i < 40; ++i) {
    auto req = request_for("OLD" + std::to_string(i));
    req.meta.received_at_ms = now - 3'600'000;
    auto r = reserve_wait(*store, req);
    REQUIRE(r.has_value());
    if (i % 4 == 0) {
      old_pending.push_back(r->raw_ref.uri());
    } else {
      store->complete(req.key);
      old_done.push_back(r->raw_ref.uri());
    }
  }
  for (int i = 0; i < 10; ++i) {
    auto req = request_for("NEW" + std::to_string(i));
    auto r = reserve_wait(*store, req);
    REQUIRE(r.has_value());
    store->complete(req.key);
    young.push_back(r->raw_ref.uri());
  }
  REQUIRE(store->flush().has_value());
  auto deleted = store->enforce_retention();
  REQUIRE(deleted.has_value());
  CHECK(*deleted == old_done.size());
  CHECK(store->stats().retention_deleted == old_done.size());
  for (const auto& uri : old_done) CHECK(store->read_raw(uri).error().code == errc::not_found);
  for (const auto& uri : old_pending) CHECK(store->read_raw(uri).has_value());
  for (const auto& uri : young) CHECK(store->read_raw(uri).has_value());
  AND_THEN("a deleted receipt no longer dedupes: the resend is fresh again (the window is the retention)") {
    auto again = reserve_wait(*store, request_for("OLD1"));
    REQUIRE(again.has_value());
    CHECK(again->what == kind::fresh);
  }
}

TEST_CASE("requests beyond max_in_flight are refused at once with a retriable overloaded", "[unit]") {
  temp_dir dir;
  auto store = open_store({.file = dir.db(), .max_in_flight = 4});
  auto req = request_for("MSG-BUSY");
  REQUIRE(what(reserve_wait(*store, req)) == "fresh");
  // Parked behind the in-flight attempt, each holds a slot.
  std::vector<std::unique_ptr<pending_reserve>> waiting;
  for (int i = 0; i < 4; ++i) waiting.push_back(std::make_unique<pending_reserve>(*store, req));
  std::this_thread::sleep_for(100ms);
  auto refused = reserve_wait(*store, request_for("MSG-OTHER"));
  REQUIRE_FALSE(refused.has_value());
  CHECK(refused.error().code == errc::overloaded);
  CHECK(refused.error().retriable);
  CHECK(store->stats().overloaded >= 1);
  AND_THEN("complete is never refused and releases them all") {
    store->complete(req.key);
    for (auto& w : waiting) {
      auto r = w->get();
      REQUIRE(r.has_value());
      CHECK(r->what == kind::resend_done);
    }
    CHECK(what(reserve_wait(*store, request_for("MSG-OTHER"))) == "fresh");
  }
}

TEST_CASE("a 20 MB message is stored and read back whole", "[unit]") {
  temp_dir dir;
  auto store = open_store({.file = dir.db()});
  auto req = request_for("MSG-BIG", 0, 1, 20U << 20U);
  const std::string sha = sha256_hex(req.raw);
  const std::size_t size = req.raw.size();
  auto r = reserve_wait(*store, req);
  REQUIRE(r.has_value());
  CHECK(r->what == kind::fresh);
  CHECK(r->raw_ref.size_bytes() == size);
  auto back = store->read_raw(r->raw_ref.uri());
  REQUIRE(back.has_value());
  CHECK(back->size() == size);
  CHECK(sha256_hex(*back) == sha);
}

TEST_CASE("raw bytes without a receipt get a claim-check for the deadletter", "[unit]") {
  temp_dir dir;
  auto store = open_store({.file = dir.db()});
  std::promise<result<events::v1::ClaimCheck>> p;
  auto f = p.get_future();
  store->put_raw("zs-tertiary", "garbage that is not HL7", {.content_type = "application/octet-stream"},
                 [&](result<events::v1::ClaimCheck> c) { p.set_value(std::move(c)); });
  REQUIRE(f.wait_for(30s) == std::future_status::ready);
  auto c = f.get();
  REQUIRE(c.has_value());
  CHECK(c->content_type() == "application/octet-stream");
  auto back = store->read_raw(c->uri());
  REQUIRE(back.has_value());
  CHECK(*back == "garbage that is not HL7");
}

TEST_CASE("bad requests are refused with invalid_argument on a store thread", "[unit]") {
  temp_dir dir;
  auto store = open_store({.file = dir.db(), .max_raw_bytes = 4096});
  auto no_control_id = request_for("X");
  no_control_id.key.control_id.clear();
  auto dup_ids = request_for("Y");
  dup_ids.event_ids.push_back(dup_ids.event_ids.front());
  auto bad_sha = request_for("Z");
  bad_sha.sha256 = "not-hex";
  auto too_big = request_for("W", 0, 1, 8192);
  for (auto* r : {&no_control_id, &dup_ids, &bad_sha, &too_big}) {
    const auto caller = std::this_thread::get_id();
    std::promise<std::pair<result<reserve_outcome>, std::thread::id>> p;
    auto f = p.get_future();
    store->reserve(*r, [&](result<reserve_outcome> o) { p.set_value({std::move(o), std::this_thread::get_id()}); });
    REQUIRE(f.wait_for(10s) == std::future_status::ready);
    auto [outcome, thread] = f.get();
    REQUIRE_FALSE(outcome.has_value());
    CHECK(outcome.error().code == errc::invalid_argument);
    CHECK(thread != caller);
  }
}

TEST_CASE("one store file has one owner, and a file that is not an ingest store is refused", "[unit]") {
  temp_dir dir;
  auto store = open_store({.file = dir.db()});
  auto second = ingest_store::open({.file = dir.db()});
  REQUIRE_FALSE(second.has_value());
  CHECK(second.error().code == errc::unavailable);
  CHECK(second.error().message.find("pid") != std::string::npos);

  const auto foreign = dir.path() / "foreign.db";
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(foreign.c_str(), &db) == SQLITE_OK);
  REQUIRE(sqlite3_exec(db, "CREATE TABLE t(x)", nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(db);
  auto other = ingest_store::open({.file = foreign});
  REQUIRE_FALSE(other.has_value());
  CHECK(other.error().code == errc::config_error);
}

TEST_CASE("the schema version is recorded and a reopened store keeps its receipts", "[unit]") {
  temp_dir dir;
  auto req = request_for("MSG-KEEP");
  {
    auto store = open_store({.file = dir.db()});
    REQUIRE(what(reserve_wait(*store, req)) == "fresh");
    REQUIRE(settle_wait(*store, req.key, true).has_value());
  }
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(dir.db().c_str(), &db) == SQLITE_OK);
    sqlite3_stmt* s = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(s) == SQLITE_ROW);
    CHECK(sqlite3_column_int(s, 0) == 2);
    sqlite3_finalize(s);
    sqlite3_close(db);
  }
  auto store = open_store({.file = dir.db()});
  CHECK(what(reserve_wait(*store, req)) == "resend_done");
}

TEST_CASE("receipt keys answer the same before and after they are merged, across a reopen", "[unit]") {
  temp_dir dir;
  const std::size_t merge_at = 4;
  const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch()).count();
  std::vector<std::string> uris;
  {
    auto store = open_store(
        {.file = dir.db(), .raw_retention_ms = 60'000, .key_merge_at = merge_at, .key_merge_chunk = 2});
    // From three senders, interleaved, as concurrent connections send them.
    for (int i = 0; i < 30; ++i) {
      auto req = request_for("M" + std::to_string(i));
      req.key.facility = "FAC-" + std::to_string(i % 3);
      if (i < 10) req.meta.received_at_ms = now - 3'600'000;  // for retention below
      auto r = reserve_wait(*store, req);
      REQUIRE(what(r) == "fresh");
      uris.push_back(r->raw_ref.uri());
      if (i != 13) REQUIRE(settle_wait(*store, req.key, true).has_value());  // M13 stays in flight
    }
    CHECK(store->stats().key_merges >= 6);
    for (int i = 0; i < 30; ++i) {
      auto req = request_for("M" + std::to_string(i));
      req.key.facility = "FAC-" + std::to_string(i % 3);
      if (i == 13) continue;
      CHECK(what(reserve_wait(*store, req)) == "resend_done");
      auto other = request_for("M" + std::to_string(i), 1);
      other.key.facility = req.key.facility;
      CHECK(what(reserve_wait(*store, other)) == "conflict");
    }
    // A merged receipt abandoned with nothing published leaves no key behind.
    auto m13 = request_for("M13");
    m13.key.facility = "FAC-1";
    REQUIRE(settle_wait(*store, m13.key, false).has_value());
    CHECK(what(reserve_wait(*store, m13)) == "fresh");
    // ...and its raw id is not handed out again.
    CHECK(store->read_raw(uris[13]).error().code == errc::not_found);
    // Retention deletes old receipts whose keys were merged.
    auto deleted = store->enforce_retention();
    REQUIRE(deleted.has_value());
    CHECK(*deleted == 10);
  }
  auto store = open_store({.file = dir.db(), .key_merge_at = merge_at, .key_merge_chunk = 2});
  for (int i = 0; i < 30; ++i) {
    auto req = request_for("M" + std::to_string(i));
    req.key.facility = "FAC-" + std::to_string(i % 3);
    // M0..M9 were removed by retention: fresh again. M13 was reserved again and
    // not settled before the stop: unsettled (AR) until recovery resolves it.
    const std::string expected = i < 10 ? "fresh" : i == 13 ? "error" : "resend_done";
    INFO(req.key.control_id);
    CHECK(what(reserve_wait(*store, req)).substr(0, expected.size()) == expected);
  }
  for (int i = 10; i < 30; ++i) {
    if (i != 13) CHECK(store->read_raw(uris[static_cast<std::size_t>(i)]).has_value());
  }
}

TEST_CASE("a key merge that fails is tried again, and no key is lost or answered wrong meanwhile", "[unit]") {
  temp_dir dir;
  std::vector<reserve_request> sent;
  auto send = [&](auto& store, int from, int to) {
    for (int i = from; i < to; ++i) {
      auto req = request_for("K" + std::to_string(i));
      REQUIRE(what(reserve_wait(store, req)) == "fresh");
      REQUIRE(settle_wait(store, req.key, true).has_value());
      sent.push_back(req);
    }
  };
  auto all_answer = [&](auto& store) {
    for (const auto& req : sent) {
      INFO(req.key.control_id);
      CHECK(what(reserve_wait(store, req)) == "resend_done");
      CHECK(what(reserve_wait(store, request_for(req.key.control_id, 1))) == "conflict");
    }
  };
  {
    auto store = open_store({.file = dir.db(), .key_merge_at = 4, .key_merge_chunk = 2});
    send(*store, 0, 3);
    // Every insert into the key table fails from now on (a full disk would, or an I/O error).
    run_sql(dir.db(),
            "CREATE TRIGGER fail_merge BEFORE INSERT ON receipt_keys BEGIN SELECT RAISE(ABORT, 'injected'); END;");
    send(*store, 3, 12);
    CHECK(store->stats().key_merges == 0);
    all_answer(*store);
    run_sql(dir.db(), "DROP TRIGGER fail_merge;");
    send(*store, 12, 16);
    CHECK(store->stats().key_merges > 0);
    all_answer(*store);
  }
  auto store = open_store({.file = dir.db(), .key_merge_at = 4, .key_merge_chunk = 2});
  all_answer(*store);
  CHECK(what(reserve_wait(*store, request_for("K16"))) == "fresh");
}

TEST_CASE("a store of schema version 1 (a unique key index) is upgraded in place", "[unit]") {
  temp_dir dir;
  std::vector<reserve_request> requests;
  for (int i = 0; i < 5; ++i) requests.push_back(request_for("OLD" + std::to_string(i)));
  {
    auto store = open_store({.file = dir.db()});
    for (auto& req : requests) {
      REQUIRE(what(reserve_wait(*store, req)) == "fresh");
      REQUIRE(settle_wait(*store, req.key, true).has_value());
    }
  }
  // Back to what version 1 had: the key index on receipts, no key table.
  run_sql(dir.db(),
          "BEGIN; CREATE UNIQUE INDEX receipts_key ON receipts(hospital, facility, control_id);"
          "DROP TABLE receipt_keys; DELETE FROM meta WHERE name = 'keys_merged'; PRAGMA user_version=1; COMMIT;");

  auto store = open_store({.file = dir.db()});
  for (auto& req : requests) CHECK(what(reserve_wait(*store, req)) == "resend_done");
  CHECK(what(reserve_wait(*store, request_for("OLD0", 1))) == "conflict");
  CHECK(what(reserve_wait(*store, request_for("NEW0"))) == "fresh");
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(dir.db().c_str(), &db) == SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "SELECT (SELECT count(*) FROM receipt_keys), "
                                 "(SELECT count(*) FROM sqlite_master WHERE name = 'receipts_key')",
                             -1, &s, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(s) == SQLITE_ROW);
  CHECK(sqlite3_column_int(s, 0) == 5);
  CHECK(sqlite3_column_int(s, 1) == 0);
  sqlite3_finalize(s);
  sqlite3_close(db);
}

TEST_CASE("a raw id freed by abandoning the newest message is not handed out again", "[unit]") {
  temp_dir dir;
  auto store = open_store({.file = dir.db()});
  auto first = request_for("ID-1");
  auto r1 = reserve_wait(*store, first);
  REQUIRE(what(r1) == "fresh");
  REQUIRE(settle_wait(*store, first.key, false).has_value());  // nothing published: deleted
  auto r2 = reserve_wait(*store, request_for("ID-2"));
  REQUIRE(what(r2) == "fresh");
  // raw://<hospital>/<id>/<sha256>: the ids differ, not only the hashes.
  const auto id_of = [](const std::string& uri) {
    const auto end = uri.rfind('/');
    return uri.substr(uri.rfind('/', end - 1) + 1, end - uri.rfind('/', end - 1) - 1);
  };
  CHECK(id_of(r2->raw_ref.uri()) != id_of(r1->raw_ref.uri()));
  CHECK(store->read_raw(r1->raw_ref.uri()).error().code == errc::not_found);
}
