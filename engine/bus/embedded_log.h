// yilian::bus::embedded_log — the default bus: a durable, partitioned log in
// one SQLite file (WAL, synchronous=FULL), for a single-node consortium.
//
// What it is for: `yilian serve` without Kafka. Adapters publish to it and
// acknowledge their senders only after the handler reports the record
// durable; workflows consume from it in consumer groups.
//
// Ownership and threads:
//  * The embedded_log object owns the file: it holds an exclusive flock on
//    "<path>.lock" for its whole life, so a second process (or a second
//    embedded_log in this process) fails to open the same log with
//    errc::unavailable naming the holder's pid.
//  * One writer thread owns the write connection. publish() only enqueues;
//    the writer drains the bounded queue, commits many publishes in one
//    transaction (group commit: one WAL fsync per batch), then calls every
//    handler of the batch in publish order. Retention runs on the same thread
//    between batches, in small transactions.
//  * A second bus thread calls the handlers of publishes refused up front
//    (overloaded, unknown topic, invalid, shut down), so every handler runs on
//    a bus-owned thread and never inside the publish() call. Handlers may thus
//    run on two threads at once; they must be quick and must not throw.
//    From a handler, publish() is fine; the calls that wait for the writer
//    (ensure_topics, flush, check_ready, commit, enforce_retention) return
//    errc::invalid_argument instead of deadlocking.
//  * A checkpointer thread copies the WAL back into the database file in the
//    background (see kCheckpointFrames in the .cc).
//  * Consumers are owned by their caller (one thread each) and read through
//    their own read-only connection; offset commits go through the writer.
//    A consumer may outlive its embedded_log; it then returns errc::cancelled.
//    The group coordinator is in process: members of one group split the
//    partitions round-robin and the split is recomputed when a member joins
//    or leaves.
//  * Other processes (`yilian events tail` beside `yilian serve`) read the
//    file through open_embedded_log_reader below, which takes no lock and
//    never writes.
//
// Errors: publish reports errc::overloaded (queue full), errc::not_found
// (topic not created with ensure_topics), errc::invalid_argument (message too
// large), errc::unavailable (the file is write-locked by someone else for the
// whole publish_timeout), errc::timeout (not committed within publish_timeout),
// errc::io_error (disk full, fsync failed) and errc::cancelled (shut down
// before it could be committed). Retriable ones carry retriable = true.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>

#include "engine/bus/bus.h"

namespace yilian::bus {

struct embedded_log_options {
  // The SQLite file. "<path>-wal", "<path>-shm" and "<path>.lock" sit beside it.
  // The parent directory is created if missing.
  std::filesystem::path path;
  // Partition count for a topic_spec whose partitions is <= 0.
  std::int32_t default_partitions = 8;
  // Publishes accepted but not yet completed; beyond it publish fails with
  // errc::overloaded.
  std::size_t max_in_flight = 65536;
  // A publish not committed this long after publish() fails (retriable).
  // Also bounds ensure_topics, commit and shutdown against a locked file.
  std::chrono::milliseconds publish_timeout{5000};
  // Publishes committed in one transaction at most.
  std::size_t max_batch = 2048;
  // Largest key + value + headers accepted.
  std::size_t max_message_bytes = 16U << 20U;
  // How often retention is checked. Per partition, records are deleted oldest
  // first while the oldest is older than topic_spec::retention_ms (by its
  // timestamp) or while the partition holds more than retention_bytes (key +
  // value + headers bytes). Offsets are never reused; a group whose committed
  // offset was deleted resumes at the earliest record kept.
  std::chrono::milliseconds retention_check_interval{std::chrono::seconds(30)};
  // Records deleted per partition per retention transaction (keeps publish
  // latency bounded while a large backlog is trimmed).
  std::size_t retention_batch = 1000;
  // Free pages released per incremental_vacuum after a retention pass.
  std::int64_t vacuum_pages_per_pass = 4096;
  // Per partition, the newest committed records (key + value + headers bytes
  // up to this bound) are also kept in memory, so the engine's own consumers,
  // which follow the end of the log, read them without a SQLite query. A
  // consumer further behind reads the file as before. 0: no cache.
  std::size_t tail_cache_bytes = 1U << 20U;
};

// Counters for tests, metrics and benchmarks. Monotonic since open.
struct embedded_log_stats {
  std::uint64_t transactions = 0;        // publish/commit transactions committed
  std::uint64_t records_committed = 0;   // publishes that reached the file
  std::uint64_t largest_batch = 0;       // most publishes in one transaction
  std::uint64_t overloaded = 0;          // publishes refused: in-flight bound reached
  std::uint64_t publish_failures = 0;    // publishes that failed after acceptance
  std::uint64_t retention_transactions = 0;
  std::uint64_t retention_deleted = 0;   // records removed by retention
  std::uint64_t retention_failures = 0;  // retention transactions that could not commit
  std::uint64_t vacuumed_pages = 0;      // pages returned to the OS by incremental_vacuum
  std::uint64_t pages_written = 0;       // pages the writer connection wrote to the WAL
  std::uint64_t records_from_cache = 0;  // records consumers read from the tail cache
  std::uint64_t records_from_file = 0;   // records consumers read from the file
};

// What one enforce_retention() call removed.
struct retention_report {
  std::uint64_t deleted_records = 0;
  std::uint64_t vacuumed_pages = 0;
};

namespace detail {
class log_state;
}

class embedded_log final : public bus {
 public:
  // Opens (creating if needed) the log at options.path: takes the lock file,
  // sets the pragmas, creates the schema, loads topics and starts the bus
  // threads. Errors: invalid_argument/config_error for bad options,
  // unavailable when another owner holds the lock, io_error/corrupt from SQLite.
  static result<std::unique_ptr<embedded_log>> open(embedded_log_options options);

  // Stops accepting, commits what is queued (anything that cannot be
  // committed gets its handler called with an error; after the first failure
  // the rest get errc::cancelled), joins the threads and releases the lock.
  // Bounded by publish_timeout. Must not be called from a publish handler.
  ~embedded_log() override;

  std::string_view kind() const noexcept override { return "embedded"; }
  result<void> ensure_topics(std::span<const topic_spec> topics) override;
  result<std::int32_t> partitions(std::string_view topic) override;
  void publish(message msg, publish_handler done) override;
  result<std::unique_ptr<consumer>> subscribe(consumer_options options) override;
  result<void> flush(std::chrono::milliseconds timeout) override;
  result<void> check_ready(std::chrono::milliseconds timeout) override;

  // Runs retention now on every topic that has it, until nothing more is due
  // (the periodic pass does the same in the background), interleaved with
  // publish batches. errc::timeout if it has not finished within `timeout`
  // (it then carries on in the background).
  result<retention_report> enforce_retention(std::chrono::milliseconds timeout = std::chrono::minutes(1));

  embedded_log_stats stats() const;
  const std::filesystem::path& path() const noexcept;

 private:
  explicit embedded_log(std::shared_ptr<detail::log_state> state);
  std::shared_ptr<detail::log_state> state_;
};

// The factory the app uses: the embedded log as a plain bus.
result<std::unique_ptr<bus>> open_embedded_log(embedded_log_options options);

// A read-only view of the embedded log at `path`, for reading it while its
// owner (an embedded_log, usually in another process such as `yilian serve`)
// runs, or while no one runs; for `yilian events tail`.
//
// It opens the file with SQLITE_OPEN_READONLY and never writes to it: it
// takes no "<path>.lock", has no bus thread, creates no schema, stores no
// offsets and never checkpoints (not even when it closes last). WAL readers
// do not block the owner's writer and are not blocked by it; SQLite's own
// short locks are waited out (busy timeout 5 s). The database file and its
// WAL are never modified. Like every WAL reader it does write "<path>-shm"
// (the wal-index: read marks, and rebuilding it after the owner crashed);
// beside a log no process has open, SQLite creates an empty "<path>-wal" and
// a "<path>-shm" and leaves them there.
//
//  * kind() is "embedded-reader". partitions() and ensure_topics() read the
//    topics again on every call (the owner may create more). ensure_topics
//    succeeds only when every topic exists with at least the requested
//    partitions, else errc::permission_denied.
//  * publish() calls its handler exactly once with errc::permission_denied
//    ("read-only view"), at once and on the calling thread (there is no bus
//    thread), before it returns.
//  * flush() and check_ready() succeed.
//  * subscribe() returns a consumer with its own read-only connection that
//    reads every partition of its topics (a single member; the group is a
//    label only: no committed offset is read or written). start_from::earliest
//    begins at the first record retention kept, latest at the current end,
//    computed from the last record (the end stored in the file may lag
//    behind). poll() reads in a fresh read transaction, so it sees every
//    commit of the owner; when nothing is new it looks again every 50 ms until
//    its timeout. Records deleted by retention are skipped.
//  * consumer::commit() is NOT durable: it only moves the consumer's
//    in-memory position (later polls continue after it; a new consumer starts
//    over). lag() reports that position against the current end.
//  * The view and its consumers are independent objects: a consumer may
//    outlive the view. The view is thread-safe; a consumer is used by one
//    thread.
//
// Errors: not_found (no file at path), invalid_argument (path is not a
// regular file), config_error (empty path, not a yilian embedded log, or a
// format this build does not read), corrupt/io_error/unavailable from SQLite.
result<std::unique_ptr<bus>> open_embedded_log_reader(const std::filesystem::path& path);

}  // namespace yilian::bus
