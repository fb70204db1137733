// Durable publish throughput of the embedded log against raw SQLite.
//
// Runs, each on a fresh file in --dir (put it on the disk you care about):
//   embedded log, 1 / 16 / 256 concurrent closed-loop publishers of --size byte
//   messages (publish_harness.h), every acknowledgement durable (WAL fsync);
//   raw SQLite, the same rows inserted in ONE transaction with the same
//   pragmas and one commit (fsync) at the end: the ceiling for inserting these
//   rows at all;
//   raw SQLite, one transaction (one fsync) per row: what durable publishing
//   costs without group commit.
// Latencies of the raw runs are per insert (the final commit is in the total
// time, not in the percentiles). Neither side's closing checkpoint is timed;
// the embedded log checkpoints in the background while it runs, raw SQLite in
// one transaction does not checkpoint until it closes.
//
// Also printed per embedded run: transactions, publishes and WAL pages per
// transaction, bytes the process made the kernel write to the device per
// message (/proc/self/io, including checkpoints and the final one) and the
// WAL size at the end.
#include <sqlite3.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "engine/bus/embedded_log.h"
#include "engine/core/murmur2.h"
#include "tests/bench/publish_harness.h"

namespace {

namespace fs = std::filesystem;
using yilian::bench::clock;
using yilian::bench::publish_figures;

struct settings {
  std::size_t messages = 200000;
  std::size_t single_messages = 3000;
  std::size_t size = 1024;
  std::int32_t partitions = 8;
  std::size_t max_batch = 2048;
  std::string dir = "bench-tmp";
  bool baselines = true;
  std::vector<std::size_t> publishers{1, 16, 256};
};

// Incompressible bytes, the same for every message (nothing here compresses,
// but a benchmark should not depend on that).
std::string payload(std::size_t n) {
  std::string out(n, '\0');
  std::uint64_t x = 0x9e3779b97f4a7c15ULL;
  for (auto& c : out) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c = static_cast<char>(x & 0xffU);
  }
  return out;
}

void remove_db(const fs::path& db) {
  for (const char* suffix : {"", "-wal", "-shm", ".lock"}) fs::remove(db.string() + suffix);
}

std::string key_of(std::size_t i) { return "key-" + std::to_string(i % 4096); }

// Bytes this process has caused to be written to the block device.
std::uint64_t device_bytes_written() {
  std::FILE* f = std::fopen("/proc/self/io", "r");
  if (f == nullptr) return 0;
  char line[128];
  unsigned long long v = 0;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::sscanf(line, "write_bytes: %llu", &v) == 1) break;
  }
  std::fclose(f);
  return v;
}

publish_figures run_embedded(const settings& s, std::size_t publishers, std::size_t messages) {
  const fs::path db = fs::path(s.dir) / "embedded.db";
  remove_db(db);
  auto log = yilian::bus::embedded_log::open({.path = db, .max_batch = s.max_batch});
  if (!log) {
    std::fprintf(stderr, "open: %s\n", log.error().describe().c_str());
    std::exit(1);
  }
  const yilian::bus::topic_spec spec{.name = "bench", .partitions = s.partitions};
  if (auto r = (*log)->ensure_topics({&spec, 1}); !r) {
    std::fprintf(stderr, "ensure_topics: %s\n", r.error().describe().c_str());
    std::exit(1);
  }
  const std::string value = payload(s.size);
  auto& bus = **log;
  const auto written_before = device_bytes_written();
  auto figures = yilian::bench::run_closed_loop(
      "embedded log", publishers, messages, [&](std::size_t i, std::function<void(bool)> done) {
        bus.publish(yilian::bus::message{.topic = "bench", .key = key_of(i), .value = value},
                    [done = std::move(done)](yilian::result<yilian::bus::position> r) { done(r.has_value()); });
      });
  const auto stats = bus.stats();
  std::error_code ec;
  const auto wal_bytes = fs::file_size(db.string() + "-wal", ec);
  (*log).reset();  // includes the final checkpoint
  const auto written = device_bytes_written() - written_before;
  std::printf("  -> %llu transactions, %.1f publishes and %.1f WAL pages per transaction, largest %llu; "
              "%.0f bytes written to disk per message; WAL file %.1f MiB at the end\n",
              static_cast<unsigned long long>(stats.transactions),
              static_cast<double>(stats.records_committed) / static_cast<double>(std::max<std::uint64_t>(1, stats.transactions)),
              static_cast<double>(stats.pages_written) / static_cast<double>(std::max<std::uint64_t>(1, stats.transactions)),
              static_cast<unsigned long long>(stats.largest_batch),
              static_cast<double>(written) / static_cast<double>(messages),
              ec ? 0.0 : static_cast<double>(wal_bytes) / (1024.0 * 1024.0));
  return figures;
}

void check(sqlite3* db, int rc, const char* what) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE) {
    std::fprintf(stderr, "%s: %s\n", what, sqlite3_errmsg(db));
    std::exit(1);
  }
}

// The same table and pragmas as the embedded log, driven directly.
publish_figures run_raw(const settings& s, std::size_t messages, bool one_transaction) {
  const fs::path path = fs::path(s.dir) / "raw.db";
  remove_db(path);
  sqlite3* db = nullptr;
  check(db, sqlite3_open(path.c_str(), &db), "open");
  check(db,
        sqlite3_exec(db,
                     "PRAGMA page_size=8192; PRAGMA auto_vacuum=INCREMENTAL; PRAGMA journal_mode=WAL;"
                     "PRAGMA synchronous=FULL;"
                     "PRAGMA secure_delete=FAST; PRAGMA cache_size=-32768;"
                     "CREATE TABLE records(rid INTEGER PRIMARY KEY, ts INTEGER NOT NULL, key BLOB NOT NULL,"
                     " value BLOB NOT NULL, headers BLOB);",
                     nullptr, nullptr, nullptr),
        "schema");
  sqlite3_stmt* insert = nullptr;
  check(db, sqlite3_prepare_v2(db, "INSERT INTO records(rid, ts, key, value, headers) VALUES(?1, ?2, ?3, ?4, NULL)",
                               -1, &insert, nullptr),
        "prepare");
  const std::string value = payload(s.size);
  std::vector<std::int64_t> next(static_cast<std::size_t>(s.partitions), 0);
  std::vector<std::uint32_t> latencies(messages);
  const auto written_before = device_bytes_written();
  const auto t0 = clock::now();
  if (one_transaction) check(db, sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr), "begin");
  for (std::size_t i = 0; i < messages; ++i) {
    const auto started = clock::now();
    const std::string key = key_of(i);
    const auto p = static_cast<std::size_t>(yilian::partition_for_key(key, s.partitions));
    const std::int64_t rid = (static_cast<std::int64_t>(p + 1) << 44) | next[p]++;
    sqlite3_bind_int64(insert, 1, rid);
    sqlite3_bind_int64(insert, 2, 1700000000000);
    sqlite3_bind_blob(insert, 3, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
    sqlite3_bind_blob(insert, 4, value.data(), static_cast<int>(value.size()), SQLITE_STATIC);
    check(db, sqlite3_step(insert), "insert");
    sqlite3_reset(insert);
    latencies[i] = static_cast<std::uint32_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(clock::now() - started).count());
  }
  if (one_transaction) check(db, sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr), "commit");
  const double seconds = std::chrono::duration<double>(clock::now() - t0).count();
  sqlite3_finalize(insert);
  sqlite3_close(db);  // checkpoints
  std::printf("  -> %.0f bytes written to disk per message\n",
              static_cast<double>(device_bytes_written() - written_before) / static_cast<double>(messages));
  std::sort(latencies.begin(), latencies.end());
  auto pct = [&](double q) {
    return static_cast<double>(
        latencies[std::min(messages - 1, static_cast<std::size_t>(q * static_cast<double>(messages)))]);
  };
  return publish_figures{.label = one_transaction ? "raw sqlite, 1 txn" : "raw sqlite, txn per row",
                         .publishers = 1, .messages = messages, .failures = 0, .seconds = seconds,
                         .per_second = static_cast<double>(messages) / seconds, .p50_us = pct(0.50),
                         .p99_us = pct(0.99)};
}

}  // namespace

int main(int argc, char** argv) {
  settings s;
  CLI::App app{"Embedded log durable publish throughput vs raw SQLite"};
  app.add_option("--messages", s.messages, "messages per 16/256-publisher run and for the raw 1-txn baseline");
  app.add_option("--single-messages", s.single_messages, "messages for the 1-publisher and txn-per-row runs");
  app.add_option("--size", s.size, "value bytes per message");
  app.add_option("--partitions", s.partitions, "partitions of the benchmark topic");
  app.add_option("--max-batch", s.max_batch, "embedded_log_options::max_batch");
  app.add_option("--dir", s.dir, "directory for the database files (same disk as what you measure)");
  app.add_option("--publishers", s.publishers, "concurrent publisher counts to run (1 uses --single-messages)");
  app.add_flag("!--no-baselines", s.baselines, "skip the raw SQLite runs");
  CLI11_PARSE(app, argc, argv);
  fs::create_directories(s.dir);
  std::printf("dir %s, %zu-byte values, %d partitions, sqlite %s\n", fs::absolute(s.dir).c_str(), s.size,
              s.partitions, sqlite3_libversion());

  yilian::bench::print_header();
  std::vector<publish_figures> runs;
  std::size_t failures = 0;
  for (const std::size_t n : s.publishers) {
    runs.push_back(run_embedded(s, n, n == 1 ? s.single_messages : s.messages));
    yilian::bench::print(runs.back());
    failures += runs.back().failures;
  }
  if (s.baselines) {
    const auto raw = run_raw(s, s.messages, true);
    yilian::bench::print(raw);
    const auto per_row = run_raw(s, s.single_messages, false);
    yilian::bench::print(per_row);
    std::printf("\n");
    for (const auto& r : runs) {
      const auto& base = r.publishers == 1 ? per_row : raw;
      std::printf("embedded, %3zu publishers / %-24s %6.2f\n", r.publishers, (base.label + ":").c_str(),
                  r.per_second / base.per_second);
    }
  }
  remove_db(fs::path(s.dir) / "embedded.db");
  remove_db(fs::path(s.dir) / "raw.db");
  return failures == 0 ? 0 : 1;
}
