// Helpers for the embedded log's own tests: a temporary directory, a raw
// SQLite connection that holds the file's write lock, and publish helpers that
// wait with deadlines (never forever).
#pragma once

#include <sqlite3.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/bus/embedded_log.h"
#include "tests/support/temp_dir.h"

namespace yilian::bus::test {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

// A 1 KiB value that names its index.
inline std::string kib_value(std::size_t i) {
  std::string v = "value-" + std::to_string(i) + ";";
  v.resize(1024, static_cast<char>('a' + i % 26));
  return v;
}

inline std::set<std::int64_t> offsets_of(const std::vector<record>& records) {
  std::set<std::int64_t> out;
  for (const auto& r : records) out.insert(r.offset);
  return out;
}

// {from, ..., to_exclusive - 1}
inline std::set<std::int64_t> range(std::int64_t from, std::int64_t to_exclusive) {
  std::set<std::int64_t> out;
  for (auto i = from; i < to_exclusive; ++i) out.insert(i);
  return out;
}

// A temporary directory; the log under test is log.db in it.
class temp_dir : public yilian::test::temp_dir {
 public:
  temp_dir() : yilian::test::temp_dir("yilian-log-test") {}
  std::filesystem::path db() const { return file("log.db"); }
};

// A second, raw connection to the log file. lock() takes SQLite's write lock
// (BEGIN EXCLUSIVE) the way another process could; unlock() releases it.
class raw_connection {
 public:
  explicit raw_connection(const std::filesystem::path& db) {
    if (sqlite3_open(db.c_str(), &db_) != SQLITE_OK) throw std::runtime_error("cannot open " + db.string());
  }
  ~raw_connection() { sqlite3_close(db_); }
  raw_connection(const raw_connection&) = delete;
  raw_connection& operator=(const raw_connection&) = delete;

  bool lock() { return sqlite3_exec(db_, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr) == SQLITE_OK; }
  bool unlock() { return sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr) == SQLITE_OK; }
  std::int64_t integer(const char* sql) {
    sqlite3_stmt* s = nullptr;
    std::int64_t out = -1;
    if (sqlite3_prepare_v2(db_, sql, -1, &s, nullptr) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) {
      out = sqlite3_column_int64(s, 0);
    }
    sqlite3_finalize(s);
    return out;
  }

 private:
  sqlite3* db_ = nullptr;
};

// Collects the results of many publishes from bus threads. Shared with the
// handlers, so a handler that runs after a failed wait is harmless.
class ack_collector {
 public:
  explicit ack_collector(std::size_t n) : state_(std::make_shared<state>()) { state_->results.resize(n); }

  publish_handler handler(std::size_t i) {
    return [s = state_, i](result<position> r) {
      std::lock_guard lock(s->mu);
      s->calls[i] += 1;
      s->results[i] = std::move(r);
      ++s->done;
      s->cv.notify_all();
    };
  }
  bool wait(std::size_t n, std::chrono::milliseconds timeout) {
    std::unique_lock lock(state_->mu);
    return state_->cv.wait_for(lock, timeout, [&] { return state_->done >= n; });
  }
  std::size_t done() {
    std::lock_guard lock(state_->mu);
    return state_->done;
  }
  // How often handler i was called (must be exactly once).
  int calls(std::size_t i) {
    std::lock_guard lock(state_->mu);
    return state_->calls.contains(i) ? state_->calls[i] : 0;
  }
  std::optional<result<position>> get(std::size_t i) {
    std::lock_guard lock(state_->mu);
    return state_->results[i];
  }

 private:
  struct state {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<std::optional<result<position>>> results;
    std::map<std::size_t, int> calls;
    std::size_t done = 0;
  };
  std::shared_ptr<state> state_;
};

inline result<position> publish_wait(bus& b, message msg, std::chrono::milliseconds timeout = 30s) {
  ack_collector acks(1);
  b.publish(std::move(msg), acks.handler(0));
  if (!acks.wait(1, timeout)) return fail(errc::timeout, "test: no acknowledgement in time");
  return *acks.get(0);
}

inline std::unique_ptr<embedded_log> open_log(embedded_log_options options) {
  auto log = embedded_log::open(std::move(options));
  if (!log) throw std::runtime_error("open embedded log: " + log.error().describe());
  return std::move(*log);
}

inline void create(bus& b, std::vector<topic_spec> specs) {
  auto r = b.ensure_topics(specs);
  if (!r) throw std::runtime_error("ensure_topics: " + r.error().describe());
}

// Reads until `want` records arrived or the deadline passed.
inline std::vector<record> read_n(consumer& c, std::size_t want, std::chrono::milliseconds within = 20s) {
  std::vector<record> out;
  const auto deadline = steady::now() + within;
  while (out.size() < want && steady::now() < deadline) {
    auto batch = c.poll(100ms, want - out.size());
    if (!batch) throw std::runtime_error("poll: " + batch.error().describe());
    for (auto& r : *batch) out.push_back(std::move(r));
  }
  return out;
}

}  // namespace yilian::bus::test
