// yilian::workflows::reports::library — every report the consortium's
// hospitals issued, with its versions (preliminary, final, corrections), as a
// fold of the report topic. What the report router routes against (which
// version a correction supersedes) and what the reports API reads (who may
// see a report is decided on top of it, by sharing_rules).
//
// Reports are named by the performing hospital and its report id (filler
// ids are unique within a hospital, not across the consortium).
//
// Storage: a materialized view in a SQLite file of its own (DESIGN.md
// "stores are materialized views rebuildable by replaying the bus"), so the
// memory it needs is the page caches of its connections (options.cache_kib
// each), whatever the number of reports. Table `reports` has one row per
// report (its latest version and recorded time, indexed newest first),
// table `versions` one row per version (its event id unique within its
// report) with the event as the hospital sent it, serialized, so a version
// is still read whole;
// table `offsets` the next offset per partition of the report topic, written
// in the same transaction as the rows it covers. A restart resumes from
// there: the bus redelivers from the consumer group's committed offset
// (committed to the bus only after the rows are in the file) and whatever
// the file already covers is skipped. A record folded twice is a no-op (same
// event id). The file is rebuilt from the beginning of the topic when it
// cannot be trusted to match the bus (see start()).
//
// Threads: one fold thread ("yl-reports") owns the write connection and the
// bus consumer, one transaction per polled batch. Readers (HTTP threads, the
// router's thread) use a small pool of read-only connections (WAL: a reader
// sees the last committed batch and never waits for the fold). Every read
// returns values, not references into the store.
//
// Ownership: the library owns its file: an exclusive flock on
// "<file>.lock" for its whole life (a second owner fails with
// errc::unavailable naming the holder's pid). The schema version is PRAGMA
// user_version, upgraded by migrate() in the .cc.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "engine/bus/bus.h"
#include "engine/workflows/common/timestamps.h"
#include "yilian/events/v1/envelope.pb.h"

namespace yilian::workflows::reports {

namespace ev = events::v1;

struct report_version {
  std::string event_id;
  ev::ReportStatus status = ev::REPORT_STATUS_UNSPECIFIED;
  std::string status_code;
  seconds issued_at{};      // OBR-22, else when the event occurred
  seconds recorded_at{};    // the bus record's timestamp
  std::string supersedes;   // event id of the version it replaces (empty for the first)
  ev::Envelope event;       // the event as the hospital sent it (documents by claim-check)
};

struct report_entry {
  std::string performing_hospital;
  std::string report_id;
  std::vector<report_version> versions;  // in log order, never empty

  const report_version& latest() const { return versions.back(); }
  std::string key() const { return performing_hospital + "/" + report_id; }
};

// Where a version sits in its report (for the router: no event bodies read).
struct version_place {
  std::uint32_t number = 0;  // 1-based, in log order
  std::string supersedes;    // event id of the version before (empty for the first)
};

// Where a page of newest() ended; pass it back for the next page. Opaque to
// callers: (latest recorded time, the row of the latest version).
struct newest_cursor {
  std::int64_t recorded_at = 0;
  std::int64_t version_row = 0;
  bool operator==(const newest_cursor&) const = default;
};

struct newest_page {
  std::vector<report_entry> entries;
  std::optional<newest_cursor> next;  // empty: no more reports
};

struct library_options {
  std::string topic = "yilian.report.v1";
  std::string group_prefix;  // "<prefix>yilian-report-library-<id stored in the file>"
  // The SQLite file, e.g. <data_dir>/reports/reports.db. "<file>-wal",
  // "<file>-shm" and "<file>.lock" sit beside it; the directory is created.
  std::filesystem::path file;
  // Page cache per connection (the writer and each reader), in KiB: the
  // bound on what the library keeps in memory.
  std::int64_t cache_kib = 2048;
  // Read connections at most (opened on demand); more concurrent readers wait.
  std::size_t readers = 4;
  // Records per polled batch (one transaction each).
  std::size_t max_batch = 1024;
  // After a batch smaller than max_batch, the fold waits this long before it
  // polls again, so that a busy topic is folded in fewer, larger
  // transactions: a commit writes the last page of each table and of each
  // index it touches whole, whatever it added there (on the MLLP benchmark,
  // 0 ms made ~8.5 KB of writes per message, 30 ms ~5.6 KB). Reads that wait
  // for the library (wait_past) may wait this much longer. 0: poll at once.
  std::chrono::milliseconds batch_linger{25};
  // How often the fold tells the bus how far the file goes (commits the
  // group's offset); also on stop. Only shortens the replay after a restart:
  // where the file goes is what counts.
  std::chrono::milliseconds bus_commit_interval{1000};
};

// Counters since start (or open), for tests and logs.
struct library_stats {
  std::uint64_t records = 0;   // delivered by the bus (or given to fold())
  std::uint64_t skipped = 0;   // below the file's offset: already folded
  std::uint64_t versions = 0;  // versions added
  std::uint64_t replays = 0;   // a version already there (same event id)
  std::uint64_t batches = 0;   // transactions committed
  std::uint64_t rebuilds = 0;  // times the file was emptied to fold the topic again
};

// What the library holds in memory: the SQLite page caches (bounded by
// options.cache_kib per connection) and one offset per partition.
struct library_memory {
  std::int64_t page_cache_bytes = 0;   // SQLITE_DBSTATUS_CACHE_USED over the open connections
  std::int64_t page_cache_limit = 0;   // cache_kib * 1024 * connections
  std::size_t connections = 0;
  std::size_t partitions = 0;
};

class library {
 public:
  library(bus::bus& b, library_options options);
  ~library();
  library(const library&) = delete;
  library& operator=(const library&) = delete;

  // Opens (creating or migrating) the file; start() calls it. Errors:
  // config_error (not a report library, or a newer format), unavailable
  // (another owner), io_error, corrupt.
  result<void> open();

  // Opens the file and starts the fold thread. Before folding, the file is
  // checked against the bus: when its offsets are ahead of a partition's end
  // (the bus was wiped or is another one), when the consumer group has no
  // committed offset although the file has folded records (the group is
  // gone: its offsets expired or the bus was wiped and refilled), or when the
  // group is ahead of the file (the file lost transactions or was restored),
  // it is emptied and the topic folded from the beginning under a new group.
  result<void> start();
  void stop();

  // Folds records of the report topic in one transaction and stores the next
  // offset of each partition with them (the fold thread calls it; public for
  // tests, which may call it after open() without start()). Records below
  // the stored offset, records that are not hospital ReportIssued events and
  // versions already there are skipped.
  result<void> fold(std::span<const bus::record> batch);

  // Waits (up to `timeout`) until the fold has read past `offset` of
  // `partition`; false on timeout.
  bool wait_past(std::int32_t partition, std::int64_t offset, std::chrono::milliseconds timeout) const;
  bool caught_up() const { return caught_up_.load(); }

  // The report with all its versions; nullopt when there is none.
  result<std::optional<report_entry>> find(std::string_view performing_hospital, std::string_view report_id) const;
  // The version before `event_id` of its report (nullopt for the first, or
  // when the report has no such version).
  result<std::optional<report_version>> previous(std::string_view performing_hospital, std::string_view report_id,
                                                 std::string_view event_id) const;
  // Where `event_id` sits among its report's versions (nullopt: not folded).
  result<std::optional<version_place>> place(std::string_view performing_hospital, std::string_view report_id,
                                             std::string_view event_id) const;
  // Reports by their latest version, newest first (by the latest version's
  // recorded time, then the most recently folded first), at most `limit`,
  // starting after `after`. Served by an index: a page costs its own size.
  result<newest_page> newest(std::size_t limit, std::optional<newest_cursor> after = std::nullopt) const;
  result<std::size_t> size() const;

  library_stats stats() const;
  library_memory memory() const;
  const std::filesystem::path& file() const { return options_.file; }

 private:
  struct store;
  struct reader;
  class reader_lease;

  void run();
  result<void> subscribe();
  // Compares the file's offsets with the bus; an empty string when they
  // agree, else why the file must be rebuilt.
  std::string mismatch(const std::vector<bus::partition_lag>& lag) const;
  result<void> rebuild(const std::string& why);
  void commit_to_bus();
  void note_offsets(const std::map<std::int32_t, std::int64_t>& next);
  void check_caught_up();
  result<reader_lease> lease() const;

  bus::bus& bus_;
  library_options options_;
  std::unique_ptr<store> store_;  // the write side; used by the fold thread only (after start)
  std::unique_ptr<bus::consumer> consumer_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> caught_up_{false};

  mutable std::mutex offsets_mu_;
  mutable std::condition_variable offsets_cv_;
  std::map<std::int32_t, std::int64_t> next_;  // next offset per partition, as committed to the file
  std::map<std::int32_t, std::int64_t> start_end_;  // partition ends when the fold began
  // Fold thread only: what the bus was last told, and when.
  std::map<std::int32_t, std::int64_t> bus_committed_;
  std::chrono::steady_clock::time_point last_bus_commit_{};
  std::atomic<std::int64_t> writer_cache_{0};  // the write connection's page cache, after the last batch

  mutable std::mutex readers_mu_;
  mutable std::condition_variable readers_cv_;
  mutable std::vector<std::unique_ptr<reader>> idle_readers_;
  mutable std::vector<const reader*> all_readers_;  // idle or leased
  mutable std::size_t open_readers_ = 0;

  mutable std::mutex stats_mu_;
  library_stats stats_;
};

}  // namespace yilian::workflows::reports
