// kill -9 in the middle of a reserve burst loses no receipt whose reserve
// reported success, and leaves a file SQLite finds intact.
//
// The child (ingest_store_crash_child) reserves from 64 concurrent callers and
// prints every success; this test reads them from a pipe, sends SIGKILL after
// a chosen number, reopens the store and checks each acknowledged message:
// its bytes read back through its claim-check, and its resend is never fresh
// or a conflict (resend_done when its complete made it to disk, otherwise
// unavailable until recovery).
#include <catch2/catch.hpp>

#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>

#include <sstream>

#include "tests/unit/bus/child_process.h"
#include "tests/unit/store/store_test_support.h"

using namespace yilian;
using namespace yilian::store;
using namespace yilian::store::test;

TEST_CASE("every reserve acknowledged before a kill -9 is in the store after reopening", "[unit][slow]") {
  const std::size_t kill_after = GENERATE(as<std::size_t>{}, 1, 500, 5000);
  temp_dir dir;
  std::vector<std::pair<std::uint64_t, std::string>> acked;
  std::vector<std::string> errors;
  {
    bus::test::child_process c(YILIAN_STORE_CRASH_CHILD, {dir.db().string(), "64"});
    const auto deadline = std::chrono::steady_clock::now() + 90s;
    auto first = c.line(deadline);
    REQUIRE(first.has_value());
    REQUIRE(*first == "ready");
    bool killed = false;
    while (auto l = c.line(deadline)) {
      std::istringstream in(*l);
      std::string word;
      in >> word;
      if (word == "ok") {
        std::uint64_t n = 0;
        std::string uri;
        in >> n >> uri;
        acked.emplace_back(n, uri);
      } else {
        errors.push_back(*l);
      }
      if (!killed && acked.size() >= kill_after) {
        c.kill9();
        killed = true;
      }
    }
    REQUIRE(killed);
    const int status = c.reap();
    REQUIRE(WIFSIGNALED(status));
    REQUIRE(WTERMSIG(status) == SIGKILL);
  }
  INFO("first error: " << (errors.empty() ? std::string("none") : errors.front()));
  REQUIRE(errors.empty());
  REQUIRE(acked.size() >= kill_after);

  {
    auto store = open_store({.file = dir.db()});
    std::size_t missing = 0;
    std::size_t wrong = 0;
    std::size_t bad_resend = 0;
    for (const auto& [n, uri] : acked) {
      const std::string control_id = "CRASH" + std::to_string(n);
      auto bytes = store->read_raw(uri);
      if (!bytes) {
        ++missing;
        continue;
      }
      if (*bytes != message_bytes(control_id)) ++wrong;
      auto again = reserve_wait(*store, request_for(control_id));
      const bool ok = again ? again->what == reserve_outcome::kind::resend_done
                            : again.error().code == errc::unavailable;
      if (!ok) ++bad_resend;
    }
    CHECK(missing == 0);
    CHECK(wrong == 0);
    CHECK(bad_resend == 0);
    auto pending = store->pending();
    REQUIRE(pending.has_value());
    // Odd messages were never completed: each acknowledged one is unsettled.
    std::size_t odd = 0;
    for (const auto& [n, uri] : acked) odd += n % 2;
    CHECK(pending->size() >= odd);
  }
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(dir.db().c_str(), &db) == SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(s) == SQLITE_ROW);
  CHECK(std::string(reinterpret_cast<const char*>(sqlite3_column_text(s, 0))) == "ok");
  sqlite3_finalize(s);
  sqlite3_close(db);
}
