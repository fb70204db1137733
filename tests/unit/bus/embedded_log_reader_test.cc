// The read-only view of an embedded log (open_embedded_log_reader): what
// `yilian events tail` uses while `yilian serve` owns the file. It must see
// what the owner commits, whether the owner is this process, another process
// or gone, and must never change the file.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <thread>

#include "tests/unit/bus/child_process.h"
#include "tests/unit/bus/crash_payload.h"
#include "tests/unit/bus/log_test_support.h"

namespace {

using namespace yilian;
using namespace yilian::bus;
using namespace yilian::bus::test;
using any_bus = yilian::bus::bus;  // "bus" alone also names the namespace

std::unique_ptr<any_bus> open_view(const std::filesystem::path& path) {
  auto view = open_embedded_log_reader(path);
  if (!view) throw std::runtime_error("open_embedded_log_reader: " + view.error().describe());
  return std::move(*view);
}

std::unique_ptr<consumer> subscribe(any_bus& b, consumer_options options) {
  auto c = b.subscribe(std::move(options));
  if (!c) throw std::runtime_error("subscribe: " + c.error().describe());
  return std::move(*c);
}

std::optional<std::string> file_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// One integer from the log through a connection that can neither write nor
// checkpoint, so inspecting the file does not change it.
std::int64_t inspect(const std::filesystem::path& path, const char* sql) {
  sqlite3* db = nullptr;
  std::int64_t out = -1;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db, sql, -1, &s, nullptr) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) {
      out = sqlite3_column_int64(s, 0);
    }
    sqlite3_finalize(s);
  }
  sqlite3_close(db);
  return out;
}

std::map<std::int32_t, std::int64_t> ends_of(consumer& c) {
  auto lag = c.lag();
  if (!lag) throw std::runtime_error("lag: " + lag.error().describe());
  std::map<std::int32_t, std::int64_t> out;
  for (const auto& l : *lag) out[l.partition] = l.end;
  return out;
}

// Publishes records 0..n-1 of `topic` (key "k<i % 7>", 1 KiB values) and
// waits for all of them.
void publish_n(any_bus& b, const std::string& topic, std::size_t n, std::size_t first = 0) {
  ack_collector acks(n);
  for (std::size_t i = 0; i < n; ++i) {
    b.publish(message{.topic = topic, .key = "k" + std::to_string((first + i) % 7), .value = kib_value(first + i)},
              acks.handler(i));
  }
  if (!acks.wait(n, 60s)) throw std::runtime_error("publishes not acknowledged in time");
  for (std::size_t i = 0; i < n; ++i) {
    if (!acks.get(i)->has_value()) throw std::runtime_error("publish failed: " + acks.get(i)->error().describe());
  }
}

}  // namespace

TEST_CASE("a reader sees every record published before it opened, with its key, value, headers and timestamp",
          "[unit]") {
  temp_dir dir;
  std::map<std::pair<std::int32_t, std::int64_t>, message> published;
  {
    auto log = open_log({.path = dir.db()});
    create(*log, {{.name = "before", .partitions = 3}});
    for (int i = 0; i < 30; ++i) {
      message m{.topic = "before", .key = "key-" + std::to_string(i), .value = "value-" + std::to_string(i),
                .headers = {{.key = "h", .value = std::to_string(i)}, {.key = "empty", .value = ""}},
                .timestamp_ms = 1'700'000'000'000 + i};
      if (i % 3 == 0) m.headers.clear();
      auto p = publish_wait(*log, m);
      REQUIRE(p.has_value());
      published[{p->partition, p->offset}] = m;
    }
  }

  GIVEN("a reader on the log, which no process has open") {
    auto view = open_view(dir.db());
    CHECK(view->kind() == "embedded-reader");
    auto c = subscribe(*view, {.group = "tail", .topics = {"before"}});

    THEN("it is assigned every partition and reads every record once, in offset order per partition") {
      auto assigned = c->assignment();
      CHECK(assigned.size() == 3);
      auto got = read_n(*c, published.size());
      REQUIRE(got.size() == published.size());
      std::map<std::int32_t, std::int64_t> next;
      for (const auto& r : got) {
        CHECK(r.topic == "before");
        CHECK(r.offset == next[r.partition]);
        next[r.partition] = r.offset + 1;
        const auto& m = published.at({r.partition, r.offset});
        CHECK(r.key == m.key);
        CHECK(r.value == m.value);
        CHECK(r.headers == m.headers);
        CHECK(r.timestamp_ms == m.timestamp_ms);
      }
      CHECK(c->poll(100ms, 10)->empty());
      auto lag = c->lag();
      REQUIRE(lag.has_value());
      REQUIRE(lag->size() == 3);
      for (const auto& l : *lag) {
        CHECK(l.end == next[l.partition]);
        CHECK(l.committed == l.end);
        CHECK(l.lag() == 0);
      }
    }
  }
}

TEST_CASE("a reader opened while the owner runs in this process sees what the owner commits afterwards", "[unit]") {
  temp_dir dir;
  auto log = open_log({.path = dir.db(), .retention_check_interval = std::chrono::hours(1)});
  create(*log, {{.name = "live", .partitions = 2}});
  publish_n(*log, "live", 4);
  auto view = open_view(dir.db());
  auto c = subscribe(*view, {.group = "tail", .topics = {"live"}});
  REQUIRE(read_n(*c, 4).size() == 4);

  WHEN("nothing new is committed") {
    const auto started = steady::now();
    auto got = c->poll(300ms, 10);
    const auto waited = steady::now() - started;
    THEN("poll returns nothing after waiting about its timeout") {
      REQUIRE(got.has_value());
      CHECK(got->empty());
      CHECK(waited >= 290ms);
      CHECK(waited < 2s);
    }
  }
  WHEN("the owner commits a record while the reader is polling") {
    std::thread owner([&] {
      std::this_thread::sleep_for(200ms);
      (void)publish_wait(*log, {.topic = "live", .key = "late", .value = "after the reader opened"});
    });
    const auto started = steady::now();
    auto got = c->poll(10s, 10);
    const auto waited = steady::now() - started;
    owner.join();
    THEN("the poll returns it soon after the commit, well within its timeout") {
      REQUIRE(got.has_value());
      REQUIRE(got->size() == 1);
      CHECK(got->front().value == "after the reader opened");
      CHECK(waited < 3s);
    }
  }
  WHEN("the owner publishes 600 records while the reader drains them") {
    std::thread owner([&] { publish_n(*log, "live", 600, 4); });
    auto got = read_n(*c, 600, 60s);
    owner.join();
    THEN("the reader gets all of them once, in offset order per partition") {
      REQUIRE(got.size() == 600);
      std::map<std::int32_t, std::int64_t> last;
      std::set<std::string> values;
      for (const auto& r : got) {
        if (last.contains(r.partition)) CHECK(r.offset == last[r.partition] + 1);
        last[r.partition] = r.offset;
        values.insert(r.value);
      }
      CHECK(values.size() == 600);
      auto lag = c->lag();
      REQUIRE(lag.has_value());
      for (const auto& l : *lag) CHECK(l.lag() == 0);
    }
  }
}

TEST_CASE("a reader sees what another process that owns the log commits after the reader opened", "[unit][slow]") {
  temp_dir dir;
  child_process owner(YILIAN_CRASH_CHILD, {dir.db().string(), "4"});
  const auto deadline = steady::now() + 90s;
  auto first = owner.line(deadline);
  REQUIRE(first.has_value());
  REQUIRE(*first == "ready");

  GIVEN("a reader opened while the child process owns the log and publishes") {
    auto view = open_view(dir.db());
    // The owner holds the file: opening it as owner here fails, the view did not.
    CHECK(embedded_log::open({.path = dir.db()}).error().code == errc::unavailable);
    auto c = subscribe(*view, {.group = "tail", .topics = {kCrashTopic}});
    const auto ends_at_open = ends_of(*c);

    WHEN("the child acknowledges 300 records committed after that") {
      std::vector<ack> later;
      while (later.size() < 300) {
        auto l = owner.line(deadline);
        REQUIRE(l.has_value());
        auto a = parse_ack(*l);
        INFO(*l);
        REQUIRE(a.has_value());
        if (a->offset >= ends_at_open.at(a->partition)) later.push_back(*a);
      }

      THEN("the reader reads each of them, with its payload, while the child keeps running") {
        std::map<std::pair<std::int32_t, std::int64_t>, record> seen;
        auto all_seen = [&] {
          return std::all_of(later.begin(), later.end(),
                             [&](const ack& a) { return seen.contains({a.partition, a.offset}); });
        };
        const auto read_deadline = steady::now() + 30s;
        while (!all_seen() && steady::now() < read_deadline) {
          auto batch = c->poll(500ms, 1000);
          REQUIRE(batch.has_value());
          for (auto& r : *batch) seen[{r.partition, r.offset}] = std::move(r);
        }
        REQUIRE(all_seen());
        for (const auto& a : later) {
          const auto& r = seen.at({a.partition, a.offset});
          CHECK(r.key == crash_key(a.id));
          CHECK(r.value == crash_value(a.id));
        }

        AND_WHEN("the child is killed with SIGKILL and a new reader opens the log") {
          std::vector<ack> acks = later;
          owner.kill9();
          while (auto l = owner.line(deadline)) {
            if (auto a = parse_ack(*l)) acks.push_back(*a);
          }
          const int status = owner.reap();
          REQUIRE(WIFSIGNALED(status));
          c.reset();
          view.reset();  // no connection to the file is left: the next one rebuilds the wal-index

          auto after = open_view(dir.db());
          auto c2 = subscribe(*after, {.group = "verify", .topics = {kCrashTopic}});
          std::int64_t total = 0;
          for (const auto& [p, end] : ends_of(*c2)) total += end;
          THEN("it finds every record the child acknowledged") {
            auto got = read_n(*c2, static_cast<std::size_t>(total), 60s);
            REQUIRE(got.size() == static_cast<std::size_t>(total));
            std::map<std::pair<std::int32_t, std::int64_t>, const record*> at;
            for (const auto& r : got) at[{r.partition, r.offset}] = &r;
            std::size_t missing = 0;
            for (const auto& a : acks) {
              auto it = at.find({a.partition, a.offset});
              if (it == at.end() || it->second->value != crash_value(a.id)) ++missing;
            }
            CHECK(missing == 0);
          }
        }
      }
    }
  }
}

TEST_CASE("a reader starting from latest begins at the real end even when the stored end is stale", "[unit]") {
  temp_dir dir;
  auto log = open_log({.path = dir.db(), .retention_check_interval = std::chrono::hours(1)});
  create(*log, {{.name = "t", .partitions = 1}});
  publish_n(*log, "t", 10);
  // Fewer than kPersistEvery records and the owner still open: nothing stored yet.
  REQUIRE(inspect(dir.db(), "SELECT next_offset FROM partitions") == 0);

  GIVEN("a reader subscribed from latest") {
    auto view = open_view(dir.db());
    auto c = subscribe(*view, {.group = "tail", .topics = {"t"}, .start = start_from::latest});
    THEN("its position is the end, 10, and nothing before it is delivered") {
      auto lag = c->lag();
      REQUIRE(lag.has_value());
      REQUIRE(lag->size() == 1);
      CHECK(lag->front().end == 10);
      CHECK(lag->front().committed == 10);
      CHECK(c->poll(200ms, 10)->empty());
    }
    WHEN("the owner publishes one more") {
      REQUIRE(publish_wait(*log, {.topic = "t", .value = "next"}).has_value());
      THEN("that is the first record the reader gets, at offset 10") {
        auto got = read_n(*c, 1, 10s);
        REQUIRE(got.size() == 1);
        CHECK(got.front().offset == 10);
        CHECK(got.front().value == "next");
      }
    }
  }
}

TEST_CASE("a reader refuses to publish or create topics, and answers partitions, flush and check_ready", "[unit]") {
  temp_dir dir;
  auto log = open_log({.path = dir.db()});
  create(*log, {{.name = "existing", .partitions = 4}});
  auto view = open_view(dir.db());

  WHEN("publishing through it") {
    ack_collector acks(1);
    view->publish({.topic = "existing", .value = "v"}, acks.handler(0));
    THEN("the handler is called once with permission_denied, not retriable, saying it is a read-only view") {
      REQUIRE(acks.wait(1, 5s));
      CHECK(acks.calls(0) == 1);
      auto r = *acks.get(0);
      REQUIRE_FALSE(r.has_value());
      CHECK(r.error().code == errc::permission_denied);
      CHECK_FALSE(r.error().retriable);
      CHECK_THAT(r.error().message, Catch::Contains("read-only view"));
      CHECK(inspect(dir.db(), "SELECT count(*) FROM r1") == 0);
    }
  }
  WHEN("ensuring topics") {
    const topic_spec same{.name = "existing", .partitions = 4};
    const topic_spec fewer{.name = "existing", .partitions = 2};
    const topic_spec any{.name = "existing", .partitions = 0};
    const topic_spec more{.name = "existing", .partitions = 5};
    const topic_spec unknown{.name = "unknown", .partitions = 1};
    const topic_spec bad{.name = "bad name", .partitions = 1};
    THEN("existing topics with at least the partitions asked for are fine; anything to create is refused") {
      CHECK(view->ensure_topics({&same, 1}).has_value());
      CHECK(view->ensure_topics({&fewer, 1}).has_value());
      CHECK(view->ensure_topics({&any, 1}).has_value());
      CHECK(view->ensure_topics({}).has_value());
      auto grow = view->ensure_topics({&more, 1});
      REQUIRE_FALSE(grow.has_value());
      CHECK(grow.error().code == errc::permission_denied);
      auto create_one = view->ensure_topics({&unknown, 1});
      REQUIRE_FALSE(create_one.has_value());
      CHECK(create_one.error().code == errc::permission_denied);
      CHECK_THAT(create_one.error().message, Catch::Contains("read-only view"));
      CHECK(view->ensure_topics({&bad, 1}).error().code == errc::invalid_argument);
      CHECK(log->partitions("unknown").error().code == errc::not_found);
    }
  }
  THEN("partitions, flush and check_ready work, and topics the owner creates later are seen") {
    CHECK(view->partitions("existing") == 4);
    CHECK(view->partitions("unknown").error().code == errc::not_found);
    CHECK(view->subscribe({.group = "g", .topics = {"unknown"}}).error().code == errc::not_found);
    CHECK(view->subscribe({.group = "", .topics = {"existing"}}).error().code == errc::invalid_argument);
    CHECK(view->flush(1s).has_value());
    CHECK(view->check_ready(1s).has_value());
    create(*log, {{.name = "later", .partitions = 3}});
    CHECK(view->partitions("later") == 3);
    auto c = subscribe(*view, {.group = "g", .topics = {"later", "existing"}});
    CHECK(c->assignment().size() == 7);
  }
}

TEST_CASE("a reader's commits stay in memory: later polls continue after them, nothing is stored", "[unit]") {
  temp_dir dir;
  auto log = open_log({.path = dir.db()});
  create(*log, {{.name = "t", .partitions = 1}});
  publish_n(*log, "t", 20);
  auto view = open_view(dir.db());
  auto c = subscribe(*view, {.group = "ops", .topics = {"t"}});

  GIVEN("ten records read and committed") {
    auto got = c->poll(5s, 10);
    REQUIRE(got.has_value());
    REQUIRE(got->size() == 10);
    REQUIRE(c->commit(*got).has_value());
    THEN("the next poll continues at offset 10, lag counts from there, and no offset is in the file") {
      auto lag = c->lag();
      REQUIRE(lag.has_value());
      CHECK(lag->front().committed == 10);
      CHECK(lag->front().lag() == 10);
      auto next = read_n(*c, 10);
      CHECK(offsets_of(next) == range(10, 20));
      CHECK(inspect(dir.db(), "SELECT count(*) FROM group_offsets") == 0);
    }
    AND_THEN("a new reader with the same group label starts over from the earliest record") {
      auto again = subscribe(*view, {.group = "ops", .topics = {"t"}});
      CHECK(offsets_of(read_n(*again, 20)) == range(0, 20));
    }
    AND_THEN("committing a record of a partition it does not read is refused") {
      const record foreign{.topic = "other", .partition = 0, .offset = 3};
      CHECK(c->commit({&foreign, 1}).error().code == errc::invalid_argument);
    }
  }
  WHEN("the view is destroyed first") {
    view.reset();
    THEN("its consumer keeps reading on its own connection until closed") {
      CHECK(read_n(*c, 20).size() == 20);
      c->close();
      CHECK(c->poll(0ms, 1).error().code == errc::cancelled);
      CHECK(c->assignment().empty());
    }
  }
}

TEST_CASE("a read-only session leaves the log file byte for byte as it was", "[unit]") {
  temp_dir dir;
  const auto wal = std::filesystem::path(dir.db().string() + "-wal");
  auto session = [&](any_bus& view) {
    auto from_start = subscribe(view, {.group = "tail", .topics = {"t", "u"}});
    auto got = read_n(*from_start, 300);
    REQUIRE(got.size() == 300);
    REQUIRE(from_start->commit(got).has_value());
    REQUIRE(from_start->lag().has_value());
    auto from_end = subscribe(view, {.group = "tail", .topics = {"t"}, .start = start_from::latest});
    CHECK(from_end->poll(100ms, 10)->empty());
    CHECK(view.partitions("t") == 2);
    const topic_spec spec{.name = "t", .partitions = 2};
    CHECK(view.ensure_topics({&spec, 1}).has_value());
    CHECK_FALSE(publish_wait(view, {.topic = "t", .value = "refused"}).has_value());
  };

  GIVEN("a log that no process has open") {
    {
      auto log = open_log({.path = dir.db()});
      create(*log, {{.name = "t", .partitions = 2}, {.name = "u", .partitions = 1}});
      publish_n(*log, "t", 200);
      publish_n(*log, "u", 100);
    }
    const auto before = file_bytes(dir.db());
    REQUIRE(before.has_value());
    REQUIRE_FALSE(std::filesystem::exists(wal));  // the owner checkpointed and removed it at close

    WHEN("a reader opens it, reads everything, commits, asks for lag and tries to publish, then closes") {
      {
        auto view = open_view(dir.db());
        session(*view);
        THEN("the reader holds no lock: an owner can open the log meanwhile") {
          auto owner = embedded_log::open({.path = dir.db()});
          CHECK(owner.has_value());
        }
      }
      THEN("the database file is byte-identical and the reader left no WAL content") {
        CHECK(file_bytes(dir.db()) == before);
        // SQLite may leave an empty WAL (and the wal-index) beside the file.
        CHECK((!std::filesystem::exists(wal) || std::filesystem::file_size(wal) == 0));
      }
    }
  }

  GIVEN("a log whose owner is open and idle, with its commits still in the WAL") {
    auto log = open_log({.path = dir.db(), .retention_check_interval = std::chrono::hours(1)});
    create(*log, {{.name = "t", .partitions = 2}, {.name = "u", .partitions = 1}});
    publish_n(*log, "t", 200);
    publish_n(*log, "u", 100);
    REQUIRE(log->flush(10s).has_value());
    const auto db_before = file_bytes(dir.db());
    const auto wal_before = file_bytes(wal);
    REQUIRE(wal_before.has_value());
    REQUIRE_FALSE(wal_before->empty());
    // Below kCheckpointFrames (1000 pages of 8 KiB): the owner's background
    // checkpointer was never woken, so nothing but the reader could touch the file.
    REQUIRE(wal_before->size() < 1000 * (8192 + 24));
    const auto stored_before = inspect(dir.db(), "SELECT sum(next_offset) + sum(log_start) + sum(bytes) FROM partitions");
    const auto transactions_before = log->stats().transactions;

    WHEN("a reader session runs and closes") {
      {
        auto view = open_view(dir.db());
        session(*view);
      }
      THEN("neither the database file nor the WAL changed, nor the stored partition metadata") {
        CHECK(file_bytes(dir.db()) == db_before);
        CHECK(file_bytes(wal) == wal_before);
        CHECK(inspect(dir.db(), "SELECT sum(next_offset) + sum(log_start) + sum(bytes) FROM partitions") ==
              stored_before);
        CHECK(inspect(dir.db(), "SELECT count(*) FROM group_offsets") == 0);
        CHECK(log->stats().transactions == transactions_before);
      }
      AND_THEN("the owner carries on publishing at the next offsets") {
        auto next = publish_wait(*log, {.topic = "u", .value = "after the reader"});
        REQUIRE(next.has_value());
        CHECK(next->offset == 100);
      }
    }
  }
}

TEST_CASE("a missing file, a file that is not a yilian log and other SQLite files are refused clearly", "[unit]") {
  temp_dir dir;
  WHEN("the file does not exist") {
    auto view = open_embedded_log_reader(dir.db());
    THEN("it fails as not_found naming the path, and creates nothing") {
      REQUIRE_FALSE(view.has_value());
      CHECK(view.error().code == errc::not_found);
      CHECK_THAT(view.error().message, Catch::Contains(dir.db().string()));
      CHECK(std::filesystem::is_empty(dir.path()));
    }
  }
  WHEN("the file is another application's SQLite database") {
    {
      sqlite3* db = nullptr;
      REQUIRE(sqlite3_open(dir.db().c_str(), &db) == SQLITE_OK);
      REQUIRE(sqlite3_exec(db, "CREATE TABLE patients(id INTEGER PRIMARY KEY)", nullptr, nullptr, nullptr) == SQLITE_OK);
      sqlite3_close(db);
    }
    const auto before = file_bytes(dir.db());
    auto view = open_embedded_log_reader(dir.db());
    THEN("it fails as config_error saying it is not a yilian embedded log, and leaves the file alone") {
      REQUIRE_FALSE(view.has_value());
      CHECK(view.error().code == errc::config_error);
      CHECK_THAT(view.error().message, Catch::Contains("not a yilian embedded log"));
      CHECK(file_bytes(dir.db()) == before);
    }
  }
  WHEN("the file is not an SQLite database at all") {
    { std::ofstream(dir.db()) << std::string(8192, 'x'); }
    auto view = open_embedded_log_reader(dir.db());
    THEN("it fails as config_error saying it is not a yilian embedded log") {
      REQUIRE_FALSE(view.has_value());
      CHECK(view.error().code == errc::config_error);
      CHECK_THAT(view.error().message, Catch::Contains("not a yilian embedded log"));
    }
  }
  WHEN("the path is a directory or empty") {
    CHECK(open_embedded_log_reader(dir.path()).error().code == errc::invalid_argument);
    CHECK(open_embedded_log_reader({}).error().code == errc::config_error);
  }
}

TEST_CASE("a reader skips records deleted by retention", "[unit]") {
  temp_dir dir;
  auto log = open_log({.path = dir.db(), .retention_check_interval = std::chrono::hours(1)});
  // 1025 bytes per record (1-byte key + 1 KiB value): 19 fit in 20 KiB.
  create(*log, {{.name = "trimmed", .partitions = 1, .retention_bytes = 20 * 1024}});
  ack_collector acks(100);
  for (std::size_t i = 0; i < 100; ++i) {
    log->publish({.topic = "trimmed", .key = "t", .value = kib_value(i)}, acks.handler(i));
  }
  REQUIRE(acks.wait(100, 30s));
  auto view = open_view(dir.db());

  GIVEN("a reader that has read offsets 0 to 4") {
    auto c = subscribe(*view, {.group = "tail", .topics = {"trimmed"}});
    auto head = c->poll(5s, 5);
    REQUIRE(head.has_value());
    REQUIRE(offsets_of(*head) == range(0, 5));
    WHEN("retention deletes everything before offset 81") {
      auto report = log->enforce_retention(60s);
      REQUIRE(report.has_value());
      REQUIRE(report->deleted_records == 81);
      THEN("the reader continues at 81 and its lag counts only the records kept") {
        auto lag = c->lag();
        REQUIRE(lag.has_value());
        CHECK(lag->front().committed == 81);
        CHECK(lag->front().end == 100);
        auto rest = read_n(*c, 19);
        CHECK(offsets_of(rest) == range(81, 100));
        for (const auto& r : rest) CHECK(r.value == kib_value(static_cast<std::size_t>(r.offset)));
      }
      AND_THEN("a new reader from earliest starts at the first record kept") {
        auto fresh = subscribe(*view, {.group = "tail", .topics = {"trimmed"}});
        auto lag = fresh->lag();
        REQUIRE(lag.has_value());
        CHECK(lag->front().committed == 81);
        CHECK(lag->front().lag() == 19);
        auto got = fresh->poll(5s, 1);
        REQUIRE(got.has_value());
        REQUIRE(got->size() == 1);
        CHECK(got->front().offset == 81);
      }
    }
  }
}

TEST_CASE("a reader of a partition that retention emptied starts at its end and sees what follows", "[unit]") {
  temp_dir dir;
  auto log = open_log({.path = dir.db(), .retention_check_interval = std::chrono::hours(1)});
  create(*log, {{.name = "aging", .partitions = 1, .retention_ms = 60'000}});
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count();
  for (int i = 0; i < 10; ++i) {
    REQUIRE(publish_wait(*log, {.topic = "aging", .value = "old", .timestamp_ms = now_ms - 3'600'000}).has_value());
  }
  REQUIRE(log->enforce_retention(60s)->deleted_records == 10);
  REQUIRE(inspect(dir.db(), "SELECT count(*) FROM r1") == 0);

  const auto start = GENERATE(start_from::earliest, start_from::latest);
  auto view = open_view(dir.db());
  auto c = subscribe(*view, {.group = "tail", .topics = {"aging"}, .start = start});
  THEN("its position and end are 10, nothing is delivered, and the next record published is") {
    auto lag = c->lag();
    REQUIRE(lag.has_value());
    CHECK(lag->front().end == 10);
    CHECK(lag->front().committed == 10);
    CHECK(c->poll(100ms, 10)->empty());
    REQUIRE(publish_wait(*log, {.topic = "aging", .value = "new"}).has_value());
    auto got = read_n(*c, 1, 10s);
    REQUIRE(got.size() == 1);
    CHECK(got.front().value == "new");
    CHECK(got.front().offset == 10);
  }
}
