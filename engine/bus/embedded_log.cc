#include "engine/bus/embedded_log.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <future>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <sqlite3.h>

#include "engine/core/murmur2.h"
#include "engine/core/thread.h"
#include "engine/store/sqlite.h"
#include "engine/store/wal_checkpointer.h"

namespace yilian::bus {
namespace detail {
namespace {

using clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// Each partition's records live in their own table "r<pid>" keyed by offset
// (the rowid). Appends then always go to the rightmost leaf of that table's
// B-tree, which SQLite fills completely before starting the next page; with
// all partitions in one table, appends land in the middle of the tree, pages
// split half-empty and every commit rewrote about twice the bytes it added
// (measured with tests/bench/embedded_log_bench). Reads from an offset and
// retention's "delete the oldest" are rowid range operations.
//
// 8 KiB pages hold seven 1 KiB records where 4 KiB pages hold three (25% of
// each page wasted); 16 KiB pages fill better but each commit rewrites the
// partially filled last page of every partition it touches. Smaller commits
// over many partitions favour 4 KiB (on the MLLP benchmark the log writer
// wrote 5.9 KB per message with 4 KiB pages, 8.2 KB with 8 KiB), but with
// 256 publishers (tests/bench/embedded_log_bench) 4 KiB pages made twice the
// WAL frames per commit and ran at 83-85k publishes/s against 99-100k: the
// log keeps 8 KiB. Applies when the file is created.
constexpr int kPageSize = 8192;

// Checkpoints run on a thread of their own (store::sql::wal_checkpointer):
// one per 1000 pages added to the WAL (8 MiB); past 4000 (32 MiB) the writer
// finishes one itself. Done inline they stalled every ~20th commit for tens
// of milliseconds.
constexpr store::sql::wal_checkpoint_options kCheckpoints{
    .every_frames = 1000, .hard_limit_frames = 4000, .thread_name = "yl-log-ckpt"};

// A partition's end offset and byte count are written to its row in
// `partitions` only every kPersistEvery records (and by retention and at
// shutdown), not in every commit: for a small commit that row's page was a
// third of what it wrote. At open the records after the persisted end are
// counted back in, which reads at most this many records per partition.
constexpr std::int64_t kPersistEvery = 4096;

// "yl0g": PRAGMA application_id of a yilian log, so we never adopt another
// application's SQLite file.
constexpr std::int64_t kApplicationId = 0x796c3067;
constexpr std::int64_t kSchemaVersion = 1;
constexpr std::int32_t kMaxPartitions = 4096;

std::string records_table(std::int64_t pid) { return "r" + std::to_string(pid); }

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The SQLite helpers the stores use (engine/store/sqlite.h): handle owners,
// statements that return yilian::result with the place in the error, and the
// result-code mapping (busy -> unavailable, I/O -> io_error, damage -> corrupt).
using store::sql::bind_blob;
using store::sql::bind_text;
using store::sql::column_bytes;
using store::sql::db_ptr;
using store::sql::exec;
using store::sql::is_busy;
using store::sql::prepare;
using store::sql::query_int;
using store::sql::query_text;
using store::sql::reset_guard;
using store::sql::run;
using store::sql::sqlite_error;
using store::sql::stmt_ptr;

// Headers are stored as one blob: per header, a 4-byte little-endian key
// length, the key, a 4-byte value length, the value. No headers = NULL.
std::size_t encoded_headers_size(const std::vector<header>& headers) {
  std::size_t n = 0;
  for (const auto& h : headers) n += 8 + h.key.size() + h.value.size();
  return n;
}

void put_u32(std::string& out, std::size_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xffU));
}

void encode_headers(const std::vector<header>& headers, std::string& out) {
  out.clear();
  for (const auto& h : headers) {
    put_u32(out, h.key.size());
    out += h.key;
    put_u32(out, h.value.size());
    out += h.value;
  }
}

// The error carries no place; the caller adds the partition.
result<std::vector<header>> decode_headers(std::string_view blob) {
  std::vector<header> out;
  std::size_t at = 0;
  auto take = [&](std::string& into) -> bool {
    if (blob.size() - at < 4) return false;
    std::size_t n = 0;
    for (std::size_t i = 0; i < 4; ++i) n |= static_cast<std::size_t>(static_cast<unsigned char>(blob[at + i])) << (8 * i);
    at += 4;
    if (blob.size() - at < n) return false;
    into.assign(blob.substr(at, n));
    at += n;
    return true;
  };
  while (at < blob.size()) {
    header h;
    if (!take(h.key) || !take(h.value)) {
      return fail(errc::corrupt, "stored record headers are truncated");
    }
    out.push_back(std::move(h));
  }
  return out;
}

bool valid_topic_name(std::string_view name) {
  if (name.empty() || name.size() > 249 || name == "." || name == "..") return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
  });
}


// Shared by the owner (embedded_log and its consumers) and the read-only view
// (open_embedded_log_reader), so both read the file the same way.

// Reads one partition's records in offset order: ?1 first offset, ?2 end
// (exclusive), ?3 most rows. Columns as read_records expects them.
std::string fetch_records_sql(std::int64_t pid) {
  return "SELECT off, ts, key, value, headers FROM " + records_table(pid) +
         " WHERE off >= ?1 AND off < ?2 ORDER BY off LIMIT ?3";
}

// Runs a fetch_records_sql statement from `position` up to `end` and appends
// at most `limit` records of topic/partition to `out`; `position` moves past
// every record returned. Resets the statement on every path. Returns whether
// any record was found.
result<bool> read_records(sqlite3* db, sqlite3_stmt* s, const std::string& topic, std::int32_t partition,
                          std::int64_t& position, std::int64_t end, std::size_t limit, std::vector<record>& out) {
  reset_guard guard(s);
  sqlite3_bind_int64(s, 1, position);
  sqlite3_bind_int64(s, 2, end);
  sqlite3_bind_int64(s, 3, static_cast<std::int64_t>(limit));
  auto where = [&] { return topic + "/" + std::to_string(partition); };
  bool any = false;
  int rc = SQLITE_OK;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    const std::int64_t offset = sqlite3_column_int64(s, 0);
    auto headers = decode_headers(column_bytes(s, 4));
    if (!headers) {
      auto why = std::move(headers.error());
      why.where = where();
      return std::unexpected(std::move(why));
    }
    out.push_back(record{.topic = topic, .partition = partition, .offset = offset, .key = column_bytes(s, 2),
                         .value = column_bytes(s, 3), .headers = std::move(*headers),
                         .timestamp_ms = sqlite3_column_int64(s, 1)});
    position = offset + 1;
    any = true;
  }
  if (rc != SQLITE_DONE) return std::unexpected(sqlite_error(db, rc, "read records", where()));
  return any;
}

// consumer_options::start_timestamp_ms: the first offset in [first, end) of
// partition `pid` whose record has a timestamp >= `ts`, or `end` when none
// has. Binary search (O(log n) rowid lookups instead of a scan of the whole
// partition), so exact while timestamps do not decrease along the partition;
// an offset retention removed counts as the next record kept.
result<std::int64_t> offset_for_time(sqlite3* db, std::int64_t pid, std::int64_t first, std::int64_t end,
                                     std::int64_t ts, const std::string& where) {
  auto s = prepare(db, "SELECT off, ts FROM " + records_table(pid) + " WHERE off >= ?1 ORDER BY off LIMIT 1");
  if (!s) return std::unexpected(s.error());
  std::int64_t lo = first;
  std::int64_t hi = end;
  while (lo < hi) {
    const std::int64_t mid = lo + (hi - lo) / 2;
    reset_guard guard(s->get());
    sqlite3_bind_int64(s->get(), 1, mid);
    const int rc = sqlite3_step(s->get());
    if (rc == SQLITE_DONE) {
      hi = mid;
    } else if (rc != SQLITE_ROW) {
      return std::unexpected(sqlite_error(db, rc, "find offset for timestamp", where));
    } else if (sqlite3_column_int64(s->get(), 1) >= ts) {
      hi = mid;
    } else {
      lo = sqlite3_column_int64(s->get(), 0) + 1;
    }
  }
  return lo;
}

// Whether an existing SQLite file is a yilian log in the format this build
// reads and writes.
result<void> check_log_identity(sqlite3* db, const std::filesystem::path& path) {
  auto app = query_int(db, "PRAGMA application_id");
  if (!app) return std::unexpected(app.error());
  if (*app != kApplicationId) {
    return fail(errc::config_error, "not a yilian embedded log (SQLite application_id differs)", path);
  }
  auto version = query_int(db, "PRAGMA user_version");
  if (!version) return std::unexpected(version.error());
  if (*version != kSchemaVersion) {
    return fail(errc::config_error,
                "embedded log format " + std::to_string(*version) + " is not supported by this build (expects " +
                    std::to_string(kSchemaVersion) + ")",
                path);
  }
  return {};
}

// The rows of `topics` and `partitions` (the catalog), checked. Read both in
// one transaction: a topic and its partitions are created in one.
struct stored_partition {
  std::int64_t pid = 0;
  std::int32_t index = 0;
  std::int64_t next_offset = 0;  // as stored: may be behind the real end (kPersistEvery)
  std::int64_t log_start = 0;
  std::int64_t bytes = 0;
};

struct stored_topic {
  std::int64_t tid = 0;
  std::string name;
  std::int32_t partitions = 0;
  std::int64_t retention_ms = -1;
  std::int64_t retention_bytes = -1;
  std::vector<stored_partition> parts;  // by index
};

result<std::vector<stored_topic>> read_catalog(sqlite3* db, const std::filesystem::path& path) {
  std::vector<stored_topic> out;
  auto topics = prepare(db, "SELECT tid, name, partitions, retention_ms, retention_bytes FROM topics");
  if (!topics) return std::unexpected(topics.error());
  std::map<std::int64_t, std::size_t> by_id;
  int rc = SQLITE_OK;
  while ((rc = sqlite3_step(topics->get())) == SQLITE_ROW) {
    sqlite3_stmt* s = topics->get();
    stored_topic t{.tid = sqlite3_column_int64(s, 0), .name = column_bytes(s, 1), .partitions = sqlite3_column_int(s, 2),
                   .retention_ms = sqlite3_column_int64(s, 3), .retention_bytes = sqlite3_column_int64(s, 4),
                   .parts = {}};
    by_id[t.tid] = out.size();
    out.push_back(std::move(t));
  }
  if (rc != SQLITE_DONE) return std::unexpected(sqlite_error(db, rc, "load topics"));

  auto parts = prepare(db, "SELECT pid, tid, part, next_offset, log_start, bytes FROM partitions ORDER BY tid, part");
  if (!parts) return std::unexpected(parts.error());
  while ((rc = sqlite3_step(parts->get())) == SQLITE_ROW) {
    sqlite3_stmt* s = parts->get();
    auto it = by_id.find(sqlite3_column_int64(s, 1));
    if (it == by_id.end()) return fail(errc::corrupt, "partition row without its topic", path);
    stored_topic& t = out[it->second];
    const stored_partition p{.pid = sqlite3_column_int64(s, 0), .index = sqlite3_column_int(s, 2),
                             .next_offset = sqlite3_column_int64(s, 3), .log_start = sqlite3_column_int64(s, 4),
                             .bytes = sqlite3_column_int64(s, 5)};
    if (p.index != static_cast<std::int32_t>(t.parts.size())) {
      return fail(errc::corrupt, "partitions of a topic are not numbered 0..n-1", t.name);
    }
    t.parts.push_back(p);
  }
  if (rc != SQLITE_DONE) return std::unexpected(sqlite_error(db, rc, "load partitions"));
  for (const auto& t : out) {
    if (static_cast<std::int32_t>(t.parts.size()) != t.partitions) {
      return fail(errc::corrupt, "topic has " + std::to_string(t.parts.size()) + " partition rows, expected " +
                                     std::to_string(t.partitions), t.name);
    }
  }
  return out;
}

}  // namespace

struct topic_state;

// One partition. Created by the writer (ensure_topics) or at open, never
// destroyed before the log_state, so consumers keep plain pointers to it.
struct partition_state {
  std::int64_t pid = 0;
  std::int32_t index = 0;
  topic_state* topic = nullptr;

  // Writer thread only.
  std::int64_t next_offset = 0;  // committed end
  std::int64_t bytes = 0;        // key + value + headers bytes kept
  std::int64_t pending_next = 0;
  std::int64_t pending_bytes = 0;
  std::int64_t persisted_next = 0;  // next_offset as stored in `partitions`
  bool touched = false;
  bool persisting = false;  // this transaction also stores next_offset and bytes
  stmt_ptr append;  // prepared on first use; finalized at shutdown
  stmt_ptr scan_oldest;
  stmt_ptr delete_oldest;

  // Written by the writer after a commit / retention, read by consumers.
  std::atomic<std::int64_t> visible_end{0};
  std::atomic<std::int64_t> log_start{0};

  // The newest committed records (embedded_log_options::tail_cache_bytes), in
  // offset order with no gaps: the writer appends after each commit, before
  // visible_end moves, and drops the oldest past the bound.
  struct cached_record {
    std::int64_t offset = 0;
    std::int64_t timestamp_ms = 0;
    std::string key;
    std::string value;
    std::vector<header> headers;
    std::size_t bytes = 0;
  };
  std::mutex tail_mu;
  std::deque<cached_record> tail;  // under tail_mu
  std::size_t tail_bytes = 0;      // under tail_mu
};

struct topic_state {
  std::int64_t tid = 0;
  std::string name;
  std::int32_t partitions = 0;
  std::int64_t retention_ms = -1;
  std::int64_t retention_bytes = -1;
  std::vector<std::unique_ptr<partition_state>> parts;
  std::uint32_t round_robin = 0;  // guarded by log_state::mu_
};

std::string where_of(const partition_state& p) { return p.topic->name + "/" + std::to_string(p.index); }

// The in-process group coordinator: which member of a consumer group owns
// which partitions. Members split the partitions of the topics they subscribe
// to round-robin (Kafka's RoundRobinAssignor); every join or leave bumps the
// group's generation and recomputes the split. Thread-safe.
class group_coordinator {
 public:
  struct view {
    std::uint64_t generation = 0;
    std::vector<partition_state*> partitions;
  };

  std::uint64_t join(const std::string& group, std::vector<topic_state*> topics) {
    std::lock_guard lock(mu_);
    const std::uint64_t id = next_member_++;
    auto& g = groups_[group];
    g.members.push_back(member{.id = id, .topics = std::move(topics), .assigned = {}});
    rebalance(g);
    return id;
  }

  void leave(const std::string& group, std::uint64_t id) {
    std::lock_guard lock(mu_);
    auto it = groups_.find(group);
    if (it == groups_.end()) return;
    auto& members = it->second.members;
    std::erase_if(members, [id](const member& m) { return m.id == id; });
    if (members.empty()) {
      groups_.erase(it);
      return;
    }
    rebalance(it->second);
  }

  // This member's partitions, if the group changed since `seen_generation`.
  std::optional<view> assignment_if_changed(const std::string& group, std::uint64_t id,
                                            std::uint64_t seen_generation) {
    std::lock_guard lock(mu_);
    auto it = groups_.find(group);
    if (it == groups_.end()) return view{};
    if (it->second.generation == seen_generation) return std::nullopt;
    for (const auto& m : it->second.members) {
      if (m.id == id) return view{.generation = it->second.generation, .partitions = m.assigned};
    }
    return view{.generation = it->second.generation, .partitions = {}};
  }

  bool owns(const std::string& group, std::uint64_t id, const partition_state* p) {
    std::lock_guard lock(mu_);
    auto it = groups_.find(group);
    if (it == groups_.end()) return false;
    for (const auto& m : it->second.members) {
      if (m.id == id) return std::find(m.assigned.begin(), m.assigned.end(), p) != m.assigned.end();
    }
    return false;
  }

 private:
  struct member {
    std::uint64_t id = 0;
    std::vector<topic_state*> topics;
    std::vector<partition_state*> assigned;
  };
  struct group_members {
    std::uint64_t generation = 0;
    std::vector<member> members;  // join order
  };

  void rebalance(group_members& g) {
    g.generation = ++generations_;
    std::map<std::string_view, topic_state*> topics;
    for (auto& m : g.members) {
      m.assigned.clear();
      for (auto* t : m.topics) topics.emplace(t->name, t);
    }
    std::size_t cursor = 0;
    const std::size_t n = g.members.size();
    for (const auto& [name, t] : topics) {
      for (const auto& p : t->parts) {
        for (std::size_t tries = 0; tries < n; ++tries) {
          auto& m = g.members[cursor++ % n];
          if (std::find(m.topics.begin(), m.topics.end(), t) != m.topics.end()) {
            m.assigned.push_back(p.get());
            break;
          }
        }
      }
    }
  }

  std::mutex mu_;
  std::map<std::string, group_members, std::less<>> groups_;
  std::uint64_t next_member_ = 1;
  std::uint64_t generations_ = 0;
};

class log_state;

// Work other than publishes that must be written by the writer thread
// (creating topics, committing offsets, probing the lock). Runs inside the
// writer's transaction in its own savepoint; its caller waits on the future.
class write_task {
 public:
  explicit write_task(clock::time_point deadline) : deadline_(deadline) {}
  virtual ~write_task() = default;
  write_task(const write_task&) = delete;
  write_task& operator=(const write_task&) = delete;

  virtual result<void> execute(log_state& log) = 0;
  // After the transaction committed, still on the writer thread.
  virtual void apply(log_state&) {}

  clock::time_point deadline() const { return deadline_; }
  std::future<result<void>> future() { return done_.get_future(); }
  void finish(result<void> r) { done_.set_value(std::move(r)); }

 private:
  clock::time_point deadline_;
  std::promise<result<void>> done_;
};

struct pending_publish {
  std::uint64_t seq = 0;
  partition_state* part = nullptr;
  message msg;
  publish_handler done;
  clock::time_point deadline;
  std::int64_t offset = -1;
  std::size_t bytes = 0;
};

struct rejection {
  publish_handler done;
  error why;
};

struct atomic_stats {
  std::atomic<std::uint64_t> transactions{0};
  std::atomic<std::uint64_t> records_committed{0};
  std::atomic<std::uint64_t> largest_batch{0};
  std::atomic<std::uint64_t> overloaded{0};
  std::atomic<std::uint64_t> publish_failures{0};
  std::atomic<std::uint64_t> retention_transactions{0};
  std::atomic<std::uint64_t> retention_deleted{0};
  std::atomic<std::uint64_t> retention_failures{0};
  std::atomic<std::uint64_t> vacuumed_pages{0};
  std::atomic<std::uint64_t> pages_written{0};
  std::atomic<std::uint64_t> records_from_cache{0};
  std::atomic<std::uint64_t> records_from_file{0};
};

// Everything behind an embedded_log, shared with its consumers (which may
// outlive the embedded_log: they then see errc::cancelled). The writer
// connection and the statements are used by the writer thread only (and by
// open() before the threads start).
class log_state : public std::enable_shared_from_this<log_state> {
 public:
  explicit log_state(embedded_log_options options) : options_(std::move(options)) {}
  ~log_state() { shutdown(); }
  log_state(const log_state&) = delete;
  log_state& operator=(const log_state&) = delete;

  result<void> open();
  void shutdown();

  result<void> ensure_topics(std::span<const topic_spec> specs);
  result<std::int32_t> partitions(std::string_view topic);
  void publish(message msg, publish_handler done);
  result<std::unique_ptr<consumer>> subscribe(consumer_options options);
  result<void> flush(std::chrono::milliseconds timeout);
  result<void> check_ready(std::chrono::milliseconds timeout);
  result<retention_report> enforce_retention(std::chrono::milliseconds timeout);
  embedded_log_stats stats() const;

  const embedded_log_options& options() const { return options_; }
  group_coordinator& groups() { return groups_; }

  // Consumers: a counter bumped after every commit of new records and every
  // group change; poll waits for it to move.
  std::uint64_t data_version() {
    std::lock_guard lock(data_mu_);
    return data_version_;
  }
  // False when the deadline passed without a change.
  bool wait_for_data(std::uint64_t seen, clock::time_point deadline) {
    std::unique_lock lock(data_mu_);
    return data_cv_.wait_until(lock, deadline, [&] { return data_version_ != seen || closed_; });
  }
  void notify_consumers() {
    {
      std::lock_guard lock(data_mu_);
      ++data_version_;
    }
    data_cv_.notify_all();
  }
  bool closed() {
    std::lock_guard lock(data_mu_);
    return closed_;
  }
  void count_reads(std::size_t from_cache, std::size_t from_file) {
    if (from_cache > 0) stats_.records_from_cache.fetch_add(from_cache, std::memory_order_relaxed);
    if (from_file > 0) stats_.records_from_file.fetch_add(from_file, std::memory_order_relaxed);
  }

  result<db_ptr> open_reader() const;
  result<void> submit(std::unique_ptr<write_task> task);
  result<void> wait_task(std::future<result<void>>& done, std::chrono::milliseconds bound, std::string_view what);
  bool on_bus_thread() const {
    const auto me = std::this_thread::get_id();
    return me == writer_id_.load() || me == rejecter_id_.load();
  }

  // Called by tasks inside the writer's transaction.
  result<void> create_topics_in_txn(const std::vector<topic_spec>& specs,
                                    std::vector<std::unique_ptr<topic_state>>& created);
  result<void> commit_offsets_in_txn(const std::string& group, std::uint64_t member,
                                     const std::vector<std::pair<partition_state*, std::int64_t>>& offsets);
  void add_topics(std::vector<std::unique_ptr<topic_state>> created);

 private:
  static int on_busy(void* self, int attempt);

  result<void> configure_and_migrate();
  result<void> load_topics();
  result<void> recover_tail(partition_state& p);
  void persist_positions();
  result<void> prepare_statements();

  void reject(publish_handler done, error why);
  void keep_in_tail(partition_state& p, pending_publish& item);
  void writer_main();
  void rejecter_main();
  void commit_batch(std::vector<pending_publish>& batch, std::vector<std::unique_ptr<write_task>>& tasks);
  void expire(std::vector<pending_publish>& batch, std::vector<std::unique_ptr<write_task>>& tasks,
              clock::time_point now, const error& why);
  void requeue(std::vector<pending_publish>& batch, std::vector<std::unique_ptr<write_task>>& tasks);
  void fail_publishes(std::vector<pending_publish>& items, std::size_t count, const error& why);
  void fail_all(std::vector<pending_publish>& batch, std::vector<std::unique_ptr<write_task>>& tasks,
                const error& why);
  void run_retention();
  result<bool> retention_step(retention_report& report);
  result<void> vacuum(retention_report& report, bool& more);
  void update_pages_written();

  const embedded_log_options options_;
  store::sql::owner_lock lock_;  // "<file>.lock": one owner per log file
  db_ptr db_;
  clock::time_point busy_deadline_{};  // writer thread; read by on_busy

  // Writer statements.
  stmt_ptr begin_, commit_, rollback_, savepoint_, rollback_to_, release_;
  stmt_ptr update_partition_, insert_topic_, insert_partition_, upsert_offset_;
  stmt_ptr retention_update_, freelist_;

  // Guarded by mu_: topics, the publish queue, tasks, flush and retention requests.
  mutable std::mutex mu_;
  std::condition_variable writer_cv_;
  std::condition_variable flush_cv_;
  std::map<std::string, std::unique_ptr<topic_state>, std::less<>> topics_;
  std::deque<pending_publish> queue_;
  std::vector<std::unique_ptr<write_task>> tasks_;
  std::vector<std::promise<result<retention_report>>> retention_waiters_;
  std::size_t in_flight_ = 0;
  std::uint64_t accepted_seq_ = 0;
  std::uint64_t completed_through_ = 0;
  bool stopping_ = false;
  bool shutdown_failed_ = false;
  bool writer_idle_ = false;
  clock::time_point next_retention_{};

  // Writer thread only.
  std::vector<partition_state*> touched_;
  std::string header_scratch_;
  retention_report retention_progress_;

  std::mutex reject_mu_;
  std::condition_variable reject_cv_;
  std::deque<rejection> rejects_;
  bool reject_stop_ = false;
  bool rejecter_done_ = false;

  std::mutex data_mu_;
  std::condition_variable data_cv_;
  std::uint64_t data_version_ = 0;
  bool closed_ = false;

  group_coordinator groups_;
  atomic_stats stats_;

  std::unique_ptr<store::sql::wal_checkpointer> checkpointer_;

  std::thread writer_;
  std::thread rejecter_;
  // Set by each bus thread as it starts; read by any thread (on_bus_thread).
  std::atomic<std::thread::id> writer_id_{};
  std::atomic<std::thread::id> rejecter_id_{};
  bool shut_down_ = false;  // shutdown() ran (embedded_log's destructor thread only)
};

namespace {

class create_topics_task final : public write_task {
 public:
  create_topics_task(clock::time_point deadline, std::vector<topic_spec> specs)
      : write_task(deadline), specs_(std::move(specs)) {}
  result<void> execute(log_state& log) override {
    created_.clear();
    return log.create_topics_in_txn(specs_, created_);
  }
  void apply(log_state& log) override { log.add_topics(std::move(created_)); }

 private:
  std::vector<topic_spec> specs_;
  std::vector<std::unique_ptr<topic_state>> created_;
};

class commit_offsets_task final : public write_task {
 public:
  commit_offsets_task(clock::time_point deadline, std::string group, std::uint64_t member,
                      std::vector<std::pair<partition_state*, std::int64_t>> offsets)
      : write_task(deadline), group_(std::move(group)), member_(member), offsets_(std::move(offsets)) {}
  result<void> execute(log_state& log) override { return log.commit_offsets_in_txn(group_, member_, offsets_); }

 private:
  std::string group_;
  std::uint64_t member_;
  std::vector<std::pair<partition_state*, std::int64_t>> offsets_;
};

// Succeeds when the writer could take the write lock (the transaction began).
class probe_task final : public write_task {
 public:
  using write_task::write_task;
  result<void> execute(log_state&) override { return {}; }
};

// One member of a consumer group; see consumer in bus.h. Owned and used by
// one thread. Reads through its own read-only connection (WAL readers never
// block the writer); commits go through the writer thread.
class embedded_consumer final : public consumer {
 public:
  embedded_consumer(std::shared_ptr<log_state> log, std::string group, std::uint64_t member, start_from start,
                    std::int64_t start_timestamp_ms, db_ptr db, stmt_ptr committed)
      : log_(std::move(log)),
        group_(std::move(group)),
        member_(member),
        start_(start),
        start_timestamp_ms_(start_timestamp_ms),
        db_(std::move(db)),
        committed_(std::move(committed)) {}

  ~embedded_consumer() override { close(); }

  result<std::vector<record>> poll(std::chrono::milliseconds timeout, std::size_t max) override {
    if (max == 0) return fail(errc::invalid_argument, "poll needs max >= 1");
    const auto deadline = clock::now() + timeout;
    for (;;) {
      const std::uint64_t seen = log_->data_version();
      if (auto r = sync(); !r) return std::unexpected(r.error());
      std::vector<record> out;
      if (auto r = fetch(out, max); !r) return std::unexpected(r.error());
      if (!out.empty()) return out;
      if (!log_->wait_for_data(seen, deadline)) return out;
    }
  }

  result<void> commit(std::span<const record> processed) override {
    if (log_->on_bus_thread()) return fail(errc::invalid_argument, "commit called from a publish handler");
    if (auto r = sync(); !r) return r;
    if (processed.empty()) return {};
    std::vector<std::pair<partition_state*, std::int64_t>> offsets;
    for (const auto& rec : processed) {
      auto it = std::find_if(owned_.begin(), owned_.end(), [&](const owned& o) {
        return o.part->index == rec.partition && o.part->topic->name == rec.topic;
      });
      if (it == owned_.end()) {
        return fail(errc::conflict,
                    "partition is not assigned to this member (the group rebalanced); its owner gets it again",
                    rec.topic + "/" + std::to_string(rec.partition));
      }
      auto at = std::find_if(offsets.begin(), offsets.end(), [&](const auto& e) { return e.first == it->part; });
      if (at == offsets.end()) {
        offsets.emplace_back(it->part, rec.offset + 1);
      } else {
        at->second = std::max(at->second, rec.offset + 1);
      }
    }
    const auto bound = log_->options().publish_timeout;
    auto task = std::make_unique<commit_offsets_task>(clock::now() + bound, group_, member_, std::move(offsets));
    auto done = task->future();
    if (auto r = log_->submit(std::move(task)); !r) return r;
    return log_->wait_task(done, bound, "commit");
  }

  std::vector<std::pair<std::string, std::int32_t>> assignment() override {
    std::vector<std::pair<std::string, std::int32_t>> out;
    if (!sync()) return out;
    for (const auto& o : owned_) out.emplace_back(o.part->topic->name, o.part->index);
    return out;
  }

  result<std::vector<partition_lag>> lag() override {
    if (auto r = sync(); !r) return std::unexpected(r.error());
    std::vector<partition_lag> out;
    for (const auto& o : owned_) {
      auto committed = committed_offset(*o.part);
      if (!committed) return std::unexpected(committed.error());
      out.push_back(partition_lag{.topic = o.part->topic->name, .partition = o.part->index, .committed = *committed,
                                  .end = o.part->visible_end.load(std::memory_order_acquire)});
    }
    return out;
  }

  void close() override {
    if (closed_) return;
    closed_ = true;
    log_->groups().leave(group_, member_);
    log_->notify_consumers();
    owned_.clear();
    committed_.reset();
    db_.reset();
  }

 private:
  struct owned {
    partition_state* part = nullptr;
    std::int64_t position = 0;  // next offset to deliver
    std::shared_ptr<sqlite3_stmt> fetch;  // prepared on first read (shared: owned is copied in sync)
  };

  // Applies the group's current split: partitions kept keep their position;
  // partitions gained start at the group's committed offset (or the start
  // policy), never before the earliest record retention kept.
  result<void> sync() {
    if (closed_) return fail(errc::cancelled, "the consumer is closed");
    if (log_->closed()) return fail(errc::cancelled, "the embedded log was shut down");
    auto view = log_->groups().assignment_if_changed(group_, member_, generation_);
    if (!view) return {};
    std::vector<owned> next;
    for (auto* p : view->partitions) {
      auto it = std::find_if(owned_.begin(), owned_.end(), [p](const owned& o) { return o.part == p; });
      if (it != owned_.end()) {
        next.push_back(*it);
        continue;
      }
      auto committed = committed_offset(*p);
      if (!committed) return std::unexpected(committed.error());
      const std::int64_t log_start = p->log_start.load(std::memory_order_acquire);
      std::int64_t position = 0;
      if (*committed >= 0) {
        position = std::max(*committed, log_start);
      } else if (start_timestamp_ms_ >= 0) {
        auto at = offset_for_time(db_.get(), p->pid, log_start, p->visible_end.load(std::memory_order_acquire),
                                  start_timestamp_ms_, where_of(*p));
        if (!at) return std::unexpected(at.error());
        position = *at;
      } else if (start_ == start_from::earliest) {
        position = log_start;
      } else {
        position = p->visible_end.load(std::memory_order_acquire);
      }
      next.push_back(owned{.part = p, .position = position, .fetch = nullptr});
    }
    owned_ = std::move(next);
    generation_ = view->generation;
    cursor_ = 0;
    return {};
  }

  result<std::int64_t> committed_offset(const partition_state& p) {
    sqlite3_stmt* s = committed_.get();
    reset_guard guard(s);
    bind_text(s, 1, group_);
    sqlite3_bind_int64(s, 2, p.pid);
    const int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) return sqlite3_column_int64(s, 0);
    if (rc == SQLITE_DONE) return std::int64_t{-1};
    return std::unexpected(sqlite_error(db_.get(), rc, "read committed offset", where_of(p)));
  }

  result<void> fetch(std::vector<record>& out, std::size_t max) {
    const std::size_t n = owned_.size();
    for (std::size_t i = 0; i < n && out.size() < max; ++i) {
      auto& o = owned_[(cursor_ + i) % n];
      const std::int64_t end = o.part->visible_end.load(std::memory_order_acquire);
      if (o.position >= end) continue;
      if (fetch_cached(o, end, max, out)) continue;
      const std::size_t before = out.size();
      if (!o.fetch) {
        auto prepared = prepare(db_.get(), fetch_records_sql(o.part->pid));
        if (!prepared) return std::unexpected(prepared.error());
        o.fetch = std::shared_ptr<sqlite3_stmt>(prepared->release(), store::sql::stmt_finalizer{});
      }
      // Up to where the cache starts: the rest comes from memory next time.
      const std::int64_t file_end = std::min(end, cache_start(*o.part));
      auto any = read_records(db_.get(), o.fetch.get(), o.part->topic->name, o.part->index, o.position, file_end,
                              max - out.size(), out);
      if (!any) return std::unexpected(any.error());
      // Retention removed everything between the position and the end.
      if (!*any) o.position = std::max(o.position, o.part->log_start.load(std::memory_order_acquire));
      log_->count_reads(0, out.size() - before);
    }
    if (n > 0) cursor_ = (cursor_ + 1) % n;
    return {};
  }

  // Serves o's partition from the tail cache when o's position is in it:
  // copies the records from the position up to `end` (or until `out` holds
  // `max`). False when the position is older than the cache (or retention
  // removed it): the file is read instead.
  bool fetch_cached(owned& o, std::int64_t end, std::size_t max, std::vector<record>& out) {
    partition_state& p = *o.part;
    std::lock_guard lock(p.tail_mu);
    if (p.tail.empty()) return false;
    const std::int64_t first = p.tail.front().offset;
    if (o.position < first || o.position < p.log_start.load(std::memory_order_acquire)) return false;
    const std::size_t before = out.size();
    for (auto at = static_cast<std::size_t>(o.position - first); at < p.tail.size() && out.size() < max; ++at) {
      const auto& c = p.tail[at];
      if (c.offset >= end) break;
      out.push_back(record{.topic = p.topic->name, .partition = p.index, .offset = c.offset, .key = c.key,
                           .value = c.value, .headers = c.headers, .timestamp_ms = c.timestamp_ms});
      o.position = c.offset + 1;
    }
    log_->count_reads(out.size() - before, 0);
    return true;
  }

  // The first offset the tail cache holds (the maximum when it is empty).
  static std::int64_t cache_start(partition_state& p) {
    std::lock_guard lock(p.tail_mu);
    return p.tail.empty() ? std::numeric_limits<std::int64_t>::max() : p.tail.front().offset;
  }

  std::shared_ptr<log_state> log_;
  std::string group_;
  std::uint64_t member_;
  start_from start_;
  std::int64_t start_timestamp_ms_;  // < 0: start_ decides
  db_ptr db_;
  stmt_ptr committed_;
  std::vector<owned> owned_;
  std::uint64_t generation_ = 0;  // generations start at 1: the first sync always applies
  std::size_t cursor_ = 0;
  bool closed_ = false;
};

}  // namespace

// ---- open / shutdown --------------------------------------------------------

result<void> log_state::open() {
  const auto& o = options_;
  if (o.path.empty()) return fail(errc::config_error, "embedded log path is empty");
  if (o.default_partitions <= 0 || o.default_partitions > kMaxPartitions) {
    return fail(errc::config_error, "default_partitions must be in 1.." + std::to_string(kMaxPartitions));
  }
  if (o.max_in_flight == 0) return fail(errc::config_error, "max_in_flight must be >= 1");
  if (o.max_batch == 0) return fail(errc::config_error, "max_batch must be >= 1");
  if (o.publish_timeout <= std::chrono::milliseconds::zero()) {
    return fail(errc::config_error, "publish_timeout must be positive");
  }
  if (o.max_message_bytes == 0 || o.max_message_bytes > (512U << 20U)) {
    return fail(errc::config_error, "max_message_bytes must be in 1..512 MiB");
  }
  if (o.retention_batch == 0) return fail(errc::config_error, "retention_batch must be >= 1");
  if (o.retention_check_interval <= std::chrono::milliseconds::zero()) {
    return fail(errc::config_error, "retention_check_interval must be positive");
  }
  if (o.vacuum_pages_per_pass <= 0) return fail(errc::config_error, "vacuum_pages_per_pass must be >= 1");

  std::error_code ec;
  if (o.path.has_parent_path()) {
    std::filesystem::create_directories(o.path.parent_path(), ec);
    if (ec) return fail(errc::io_error, "cannot create directory: " + ec.message(), o.path.parent_path().string());
  }
  auto lock = store::sql::owner_lock::take(o.path, "embedded log");
  if (!lock) return std::unexpected(lock.error());
  lock_ = std::move(*lock);

  auto db = store::sql::open_db(o.path, true, 0);  // busy waits: on_busy, set next
  if (!db) return std::unexpected(db.error());
  db_ = std::move(*db);
  sqlite3_busy_handler(db_.get(), &log_state::on_busy, this);
  busy_deadline_ = clock::now() + o.publish_timeout;

  if (auto r = configure_and_migrate(); !r) return r;
  if (auto r = load_topics(); !r) return r;
  if (auto r = prepare_statements(); !r) return r;

  auto checkpointer = store::sql::wal_checkpointer::start(db_.get(), o.path, kCheckpoints);
  if (!checkpointer) return std::unexpected(checkpointer.error());
  checkpointer_ = std::move(*checkpointer);

  next_retention_ = clock::now() + o.retention_check_interval;
  rejecter_ = std::thread([this] { rejecter_main(); });
  writer_ = std::thread([this] { writer_main(); });
  return {};
}

result<void> log_state::configure_and_migrate() {
  sqlite3* db = db_.get();
  // An acknowledged publish survives power loss (synchronous=FULL).
  if (auto r = store::sql::configure_durable(db, options_.path, kPageSize); !r) return r;

  if (auto r = exec(db, "BEGIN IMMEDIATE"); !r) return r;
  auto migrate = [&]() -> result<void> {
    auto tables = query_int(db, "SELECT count(*) FROM sqlite_schema");
    if (!tables) return std::unexpected(tables.error());
    if (*tables == 0) {
      static constexpr const char* kSchema =
          "CREATE TABLE topics("
          "  tid INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, partitions INTEGER NOT NULL,"
          "  retention_ms INTEGER NOT NULL, retention_bytes INTEGER NOT NULL);"
          // next_offset never decreases (offsets stay monotonic after retention);
          // log_start is the earliest offset retention kept; bytes feeds
          // retention_bytes.
          "CREATE TABLE partitions("
          "  pid INTEGER PRIMARY KEY, tid INTEGER NOT NULL REFERENCES topics(tid), part INTEGER NOT NULL,"
          "  next_offset INTEGER NOT NULL, log_start INTEGER NOT NULL, bytes INTEGER NOT NULL,"
          "  UNIQUE(tid, part));"
          // The records of partition <pid> are in table r<pid> (see records_table).
          "CREATE TABLE group_offsets("
          "  grp TEXT NOT NULL, pid INTEGER NOT NULL, next_offset INTEGER NOT NULL,"
          "  PRIMARY KEY(grp, pid)) WITHOUT ROWID;";
      if (auto r = exec(db, kSchema); !r) return r;
      const std::string ids = "PRAGMA application_id=" + std::to_string(kApplicationId) +
                              "; PRAGMA user_version=" + std::to_string(kSchemaVersion);
      return exec(db, ids.c_str());
    }
    return check_log_identity(db, options_.path);
  };
  if (auto r = migrate(); !r) {
    (void)exec(db, "ROLLBACK");
    return r;
  }
  if (auto r = exec(db, "COMMIT"); !r) return r;

  auto vacuum_mode = query_int(db, "PRAGMA auto_vacuum");
  if (!vacuum_mode) return std::unexpected(vacuum_mode.error());
  if (*vacuum_mode != 2) {
    return fail(errc::config_error, "embedded log is not in auto_vacuum=INCREMENTAL mode", options_.path);
  }
  // The new file's directory entry must survive power loss too.
  const auto dir = options_.path.has_parent_path() ? options_.path.parent_path() : std::filesystem::path(".");
  return store::sql::sync_directory(dir);
}

result<void> log_state::load_topics() {
  auto catalog = read_catalog(db_.get(), options_.path);
  if (!catalog) return std::unexpected(catalog.error());
  for (auto& stored : *catalog) {
    auto t = std::make_unique<topic_state>();
    t->tid = stored.tid;
    t->name = std::move(stored.name);
    t->partitions = stored.partitions;
    t->retention_ms = stored.retention_ms;
    t->retention_bytes = stored.retention_bytes;
    for (const auto& sp : stored.parts) {
      auto p = std::make_unique<partition_state>();
      p->pid = sp.pid;
      p->index = sp.index;
      p->topic = t.get();
      p->next_offset = sp.next_offset;
      p->persisted_next = p->next_offset;
      p->bytes = sp.bytes;
      p->log_start.store(sp.log_start);
      if (auto r = recover_tail(*p); !r) return r;
      p->visible_end.store(p->next_offset);
      t->parts.push_back(std::move(p));
    }
    std::string name = t->name;
    topics_.emplace(std::move(name), std::move(t));
  }
  return {};
}

// Counts the records committed after the partition's persisted end back into
// next_offset and bytes (see kPersistEvery).
result<void> log_state::recover_tail(partition_state& p) {
  sqlite3* db = db_.get();
  auto tail = prepare(db, "SELECT off, length(key) + length(value) + ifnull(length(headers), 0) FROM " +
                              records_table(p.pid) + " WHERE off >= ?1 ORDER BY off");
  if (!tail) return std::unexpected(tail.error());
  sqlite3_bind_int64(tail->get(), 1, p.next_offset);
  int rc = SQLITE_OK;
  while ((rc = sqlite3_step(tail->get())) == SQLITE_ROW) {
    const std::int64_t off = sqlite3_column_int64(tail->get(), 0);
    if (off != p.next_offset) {
      return fail(errc::corrupt, "offset " + std::to_string(p.next_offset) + " is missing", where_of(p));
    }
    p.next_offset = off + 1;
    p.bytes += sqlite3_column_int64(tail->get(), 1);
  }
  if (rc != SQLITE_DONE) return std::unexpected(sqlite_error(db, rc, "recover partition end", where_of(p)));
  return {};
}

// Writer thread, on the way out: store every partition's end so the next
// open has nothing to count. Best effort: recover_tail covers a failure.
void log_state::persist_positions() {
  std::vector<partition_state*> parts;
  {
    std::lock_guard lock(mu_);
    if (shutdown_failed_) return;  // the file is locked by someone else
    for (const auto& [name, t] : topics_) {
      for (const auto& p : t->parts) {
        if (p->next_offset != p->persisted_next) parts.push_back(p.get());
      }
    }
  }
  if (parts.empty()) return;
  busy_deadline_ = clock::now() + options_.publish_timeout;
  if (run(begin_.get()) != SQLITE_DONE) return;
  sqlite3_stmt* upd = update_partition_.get();
  for (auto* p : parts) {
    sqlite3_bind_int64(upd, 1, p->next_offset);
    sqlite3_bind_int64(upd, 2, p->bytes);
    sqlite3_bind_int64(upd, 3, p->pid);
    if (run(upd) != SQLITE_DONE) {
      run(rollback_.get());
      return;
    }
  }
  if (run(commit_.get()) != SQLITE_DONE) {
    run(rollback_.get());
    return;
  }
  for (auto* p : parts) p->persisted_next = p->next_offset;
}

result<void> log_state::prepare_statements() {
  sqlite3* db = db_.get();
  const std::pair<stmt_ptr*, const char*> all[] = {
      {&begin_, "BEGIN IMMEDIATE"},
      {&commit_, "COMMIT"},
      {&rollback_, "ROLLBACK"},
      {&savepoint_, "SAVEPOINT task"},
      {&rollback_to_, "ROLLBACK TO task"},
      {&release_, "RELEASE task"},
      {&update_partition_, "UPDATE partitions SET next_offset = ?1, bytes = ?2 WHERE pid = ?3"},
      {&insert_topic_,
       "INSERT OR IGNORE INTO topics(name, partitions, retention_ms, retention_bytes) VALUES(?1, ?2, ?3, ?4)"},
      {&insert_partition_,
       "INSERT INTO partitions(tid, part, next_offset, log_start, bytes) VALUES(?1, ?2, 0, 0, 0)"},
      {&upsert_offset_,
       "INSERT INTO group_offsets(grp, pid, next_offset) VALUES(?1, ?2, ?3) "
       "ON CONFLICT(grp, pid) DO UPDATE SET next_offset = excluded.next_offset"},
      {&retention_update_, "UPDATE partitions SET log_start = ?1, bytes = ?2, next_offset = ?4 WHERE pid = ?3"},
      {&freelist_, "PRAGMA freelist_count"},
  };
  for (const auto& [slot, sql] : all) {
    auto s = prepare(db, sql);
    if (!s) return std::unexpected(s.error());
    *slot = std::move(*s);
  }
  return {};
}

void log_state::shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  writer_cv_.notify_all();
  if (writer_.joinable()) writer_.join();
  if (checkpointer_) checkpointer_->stop();
  {
    std::lock_guard lock(reject_mu_);
    reject_stop_ = true;
  }
  reject_cv_.notify_all();
  if (rejecter_.joinable()) rejecter_.join();
  {
    std::lock_guard lock(data_mu_);
    closed_ = true;
    ++data_version_;
  }
  data_cv_.notify_all();
  flush_cv_.notify_all();
  for (stmt_ptr* s : {&begin_, &commit_, &rollback_, &savepoint_, &rollback_to_, &release_, &update_partition_,
                      &insert_topic_, &insert_partition_, &upsert_offset_, &retention_update_, &freelist_}) {
    s->reset();
  }
  {
    std::lock_guard lock(mu_);
    for (auto& [name, t] : topics_) {
      for (auto& p : t->parts) {
        p->append.reset();
        p->scan_oldest.reset();
        p->delete_oldest.reset();
      }
    }
  }
  db_.reset();
  lock_ = {};
}

int log_state::on_busy(void* self, int attempt) {
  auto* log = static_cast<log_state*>(self);
  const auto now = clock::now();
  if (now >= log->busy_deadline_) return 0;
  const auto step = std::chrono::microseconds(std::min(10000, 100 << std::min(attempt, 7)));
  std::this_thread::sleep_for(std::min<clock::duration>(step, log->busy_deadline_ - now));
  return 1;
}

result<db_ptr> log_state::open_reader() const {
  auto db = store::sql::open_db(options_.path, false,
                                static_cast<int>(std::min<std::int64_t>(options_.publish_timeout.count(), 60000)));
  if (!db) return db;
  if (auto r = exec(db->get(), "PRAGMA query_only=ON"); !r) return std::unexpected(r.error());
  return db;
}

// ---- topics ----------------------------------------------------------------

result<void> log_state::ensure_topics(std::span<const topic_spec> specs) {
  if (on_bus_thread()) return fail(errc::invalid_argument, "ensure_topics called from a publish handler");
  std::vector<topic_spec> todo;
  for (auto spec : specs) {
    if (!valid_topic_name(spec.name)) {
      return fail(errc::invalid_argument, "topic names are 1-249 characters of [a-zA-Z0-9._-]", spec.name);
    }
    if (spec.partitions <= 0) spec.partitions = options_.default_partitions;
    if (spec.partitions > kMaxPartitions) {
      return fail(errc::invalid_argument, "at most " + std::to_string(kMaxPartitions) + " partitions", spec.name);
    }
    todo.push_back(std::move(spec));
  }
  {
    std::lock_guard lock(mu_);
    std::erase_if(todo, [&](const topic_spec& s) { return topics_.contains(s.name); });
  }
  if (todo.empty()) return {};
  auto task = std::make_unique<create_topics_task>(clock::now() + options_.publish_timeout, std::move(todo));
  auto done = task->future();
  if (auto r = submit(std::move(task)); !r) return r;
  return wait_task(done, options_.publish_timeout, "ensure_topics");
}

result<void> log_state::create_topics_in_txn(const std::vector<topic_spec>& specs,
                                             std::vector<std::unique_ptr<topic_state>>& created) {
  sqlite3* db = db_.get();
  for (const auto& spec : specs) {
    sqlite3_stmt* s = insert_topic_.get();
    bind_text(s, 1, spec.name);
    sqlite3_bind_int(s, 2, spec.partitions);
    sqlite3_bind_int64(s, 3, spec.retention_ms < 0 ? -1 : spec.retention_ms);
    sqlite3_bind_int64(s, 4, spec.retention_bytes < 0 ? -1 : spec.retention_bytes);
    if (const int rc = run(s); rc != SQLITE_DONE) return std::unexpected(sqlite_error(db, rc, "create topic", spec.name));
    if (sqlite3_changes(db) == 0) continue;  // exists (created earlier in this batch)
    auto t = std::make_unique<topic_state>();
    t->tid = sqlite3_last_insert_rowid(db);
    t->name = spec.name;
    t->partitions = spec.partitions;
    t->retention_ms = spec.retention_ms < 0 ? -1 : spec.retention_ms;
    t->retention_bytes = spec.retention_bytes < 0 ? -1 : spec.retention_bytes;
    for (std::int32_t i = 0; i < spec.partitions; ++i) {
      sqlite3_stmt* ps = insert_partition_.get();
      sqlite3_bind_int64(ps, 1, t->tid);
      sqlite3_bind_int(ps, 2, i);
      if (const int rc = run(ps); rc != SQLITE_DONE) {
        return std::unexpected(sqlite_error(db, rc, "create partition", spec.name));
      }
      auto p = std::make_unique<partition_state>();
      p->pid = sqlite3_last_insert_rowid(db);
      const std::string table = "CREATE TABLE " + records_table(p->pid) +
                                "(off INTEGER PRIMARY KEY, ts INTEGER NOT NULL, key BLOB NOT NULL,"
                                " value BLOB NOT NULL, headers BLOB)";
      if (auto r = exec(db, table.c_str()); !r) return r;
      p->index = i;
      p->topic = t.get();
      t->parts.push_back(std::move(p));
    }
    created.push_back(std::move(t));
  }
  return {};
}

void log_state::add_topics(std::vector<std::unique_ptr<topic_state>> created) {
  std::lock_guard lock(mu_);
  for (auto& t : created) {
    std::string name = t->name;
    topics_.emplace(std::move(name), std::move(t));
  }
}

result<std::int32_t> log_state::partitions(std::string_view topic) {
  std::lock_guard lock(mu_);
  auto it = topics_.find(topic);
  if (it == topics_.end()) return fail(errc::not_found, "unknown topic", std::string(topic));
  return it->second->partitions;
}

// ---- tasks ----------------------------------------------------------------

result<void> log_state::submit(std::unique_ptr<write_task> task) {
  bool wake = false;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return fail(errc::cancelled, "the embedded log is shutting down", options_.path.string());
    tasks_.push_back(std::move(task));
    wake = writer_idle_;
  }
  if (wake) writer_cv_.notify_one();
  return {};
}

result<void> log_state::wait_task(std::future<result<void>>& done, std::chrono::milliseconds bound,
                                  std::string_view what) {
  // The writer fails the task at its own deadline; twice the bound (plus a
  // second) only matters if the writer is stuck behind an older batch.
  if (done.wait_for(2 * bound + 1s) != std::future_status::ready) {
    return fail(errc::timeout, std::string(what) + " was not written in time", options_.path.string());
  }
  return done.get();
}

result<void> log_state::commit_offsets_in_txn(
    const std::string& group, std::uint64_t member,
    const std::vector<std::pair<partition_state*, std::int64_t>>& offsets) {
  for (const auto& [part, next] : offsets) {
    if (!groups_.owns(group, member, part)) {
      return fail(errc::conflict, "partition moved to another member of the group before the commit", where_of(*part));
    }
  }
  sqlite3_stmt* s = upsert_offset_.get();
  for (const auto& [part, next] : offsets) {
    bind_text(s, 1, group);
    sqlite3_bind_int64(s, 2, part->pid);
    sqlite3_bind_int64(s, 3, next);
    if (const int rc = run(s); rc != SQLITE_DONE) {
      return std::unexpected(sqlite_error(db_.get(), rc, "commit offset", where_of(*part)));
    }
  }
  return {};
}

// ---- publish ---------------------------------------------------------------

void log_state::publish(message msg, publish_handler done) {
  if (!done) done = [](result<position>) {};
  const std::size_t bytes = msg.key.size() + msg.value.size() + encoded_headers_size(msg.headers);
  if (bytes > options_.max_message_bytes) {
    reject(std::move(done), error::make(errc::invalid_argument,
                                        "message of " + std::to_string(bytes) + " bytes exceeds max_message_bytes " +
                                            std::to_string(options_.max_message_bytes),
                                        msg.topic));
    return;
  }
  if (msg.timestamp_ms == 0) msg.timestamp_ms = wall_ms();
  const auto deadline = clock::now() + options_.publish_timeout;
  std::unique_lock lock(mu_);
  if (stopping_) {
    lock.unlock();
    reject(std::move(done), error::make(errc::cancelled, "the embedded log is shutting down", msg.topic));
    return;
  }
  auto it = topics_.find(msg.topic);
  if (it == topics_.end()) {
    lock.unlock();
    reject(std::move(done), error::make(errc::not_found, "unknown topic (create it with ensure_topics)", msg.topic));
    return;
  }
  if (in_flight_ >= options_.max_in_flight) {
    lock.unlock();
    stats_.overloaded.fetch_add(1, std::memory_order_relaxed);
    reject(std::move(done), error::make(errc::overloaded,
                                        std::to_string(options_.max_in_flight) + " publishes already in flight",
                                        msg.topic));
    return;
  }
  topic_state& t = *it->second;
  const std::int32_t p = msg.key.empty()
                             ? static_cast<std::int32_t>(t.round_robin++ % static_cast<std::uint32_t>(t.partitions))
                             : partition_for_key(msg.key, t.partitions);
  ++in_flight_;
  queue_.push_back(pending_publish{.seq = ++accepted_seq_, .part = t.parts[static_cast<std::size_t>(p)].get(),
                                   .msg = std::move(msg), .done = std::move(done), .deadline = deadline,
                                   .offset = -1, .bytes = bytes});
  const bool wake = writer_idle_;
  lock.unlock();
  if (wake) writer_cv_.notify_one();
}

void log_state::reject(publish_handler done, error why) {
  {
    std::unique_lock lock(reject_mu_);
    if (!rejecter_done_) {
      rejects_.push_back(rejection{.done = std::move(done), .why = std::move(why)});
      lock.unlock();
      reject_cv_.notify_one();
      return;
    }
  }
  // Only reachable once the bus is destroyed, which the caller must not race with.
  done(std::unexpected(std::move(why)));
}

void log_state::rejecter_main() {
  name_this_thread("yl-log-reject");
  rejecter_id_.store(std::this_thread::get_id());
  for (;;) {
    std::deque<rejection> batch;
    {
      std::unique_lock lock(reject_mu_);
      reject_cv_.wait(lock, [&] { return !rejects_.empty() || reject_stop_; });
      if (rejects_.empty()) {
        rejecter_done_ = true;
        return;
      }
      batch.swap(rejects_);
    }
    for (auto& r : batch) r.done(std::unexpected(std::move(r.why)));
  }
}

result<void> log_state::flush(std::chrono::milliseconds timeout) {
  if (on_bus_thread()) return fail(errc::invalid_argument, "flush called from a publish handler");
  std::unique_lock lock(mu_);
  const std::uint64_t target = accepted_seq_;
  if (!flush_cv_.wait_for(lock, timeout, [&] { return completed_through_ >= target; })) {
    return fail(errc::timeout, std::to_string(target - completed_through_) + " publishes still in flight",
                options_.path.string());
  }
  return {};
}

result<void> log_state::check_ready(std::chrono::milliseconds timeout) {
  if (on_bus_thread()) return fail(errc::invalid_argument, "check_ready called from a publish handler");
  auto task = std::make_unique<probe_task>(clock::now() + timeout);
  auto done = task->future();
  if (auto r = submit(std::move(task)); !r) {
    return fail(errc::unavailable, "the embedded log is shutting down", options_.path.string());
  }
  if (done.wait_for(timeout + 20ms) != std::future_status::ready) {
    return fail(errc::timeout, "the log writer did not answer within the timeout", options_.path.string());
  }
  return done.get();
}

// ---- the writer --------------------------------------------------------------

void log_state::writer_main() {
  name_this_thread("yl-log-writer");
  writer_id_.store(std::this_thread::get_id());
  std::vector<pending_publish> batch;
  batch.reserve(options_.max_batch);
  std::vector<std::unique_ptr<write_task>> tasks;
  for (;;) {
    bool retention_due = false;
    bool cancel_all = false;
    {
      std::unique_lock lock(mu_);
      for (;;) {
        retention_due = !stopping_ && (clock::now() >= next_retention_ || !retention_waiters_.empty());
        if (!queue_.empty() || !tasks_.empty() || retention_due) break;
        if (stopping_) {
          auto waiters = std::move(retention_waiters_);
          lock.unlock();
          persist_positions();
          for (auto& w : waiters) w.set_value(fail(errc::cancelled, "the embedded log is shutting down"));
          return;
        }
        writer_idle_ = true;
        writer_cv_.wait_until(lock, next_retention_);
        writer_idle_ = false;
      }
      const std::size_t n = std::min(queue_.size(), options_.max_batch);
      for (std::size_t i = 0; i < n; ++i) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      tasks.swap(tasks_);
      cancel_all = shutdown_failed_;
    }
    if (cancel_all) {
      fail_all(batch, tasks, error::make(errc::cancelled, "the embedded log shut down before this was committed",
                                         options_.path.string()));
      continue;
    }
    if (!batch.empty() || !tasks.empty()) commit_batch(batch, tasks);
    if (retention_due) run_retention();
  }
}

void log_state::commit_batch(std::vector<pending_publish>& batch, std::vector<std::unique_ptr<write_task>>& tasks) {
  sqlite3* db = db_.get();
  expire(batch, tasks, clock::now(),
         error::make(errc::timeout, "not committed within publish_timeout", options_.path.string()));
  if (batch.empty() && tasks.empty()) return;

  // Wait for a foreign write lock no longer than the oldest item may wait.
  clock::time_point deadline = batch.empty() ? clock::time_point::max() : batch.front().deadline;
  for (const auto& t : tasks) deadline = std::min(deadline, t->deadline());
  busy_deadline_ = deadline;
  if (const int rc = run(begin_.get()); rc != SQLITE_DONE) {
    if (is_busy(rc)) {
      const std::size_t before = batch.size() + tasks.size();
      expire(batch, tasks, clock::now(),
             error::make(errc::unavailable, "the log file is write-locked by another connection",
                         options_.path.string()));
      if (batch.size() + tasks.size() == before) std::this_thread::sleep_for(1ms);  // busy without waiting: rare
      requeue(batch, tasks);
    } else {
      fail_all(batch, tasks, sqlite_error(db, rc, "begin transaction", options_.path.string()));
    }
    return;
  }

  auto abort = [&](error why) {
    run(rollback_.get());
    for (auto* p : touched_) p->touched = p->persisting = false;
    touched_.clear();
    fail_all(batch, tasks, why);
  };

  std::vector<result<void>> task_results;
  task_results.reserve(tasks.size());
  for (auto& t : tasks) {
    if (const int rc = run(savepoint_.get()); rc != SQLITE_DONE) return abort(sqlite_error(db, rc, "savepoint"));
    auto r = t->execute(*this);
    if (!r) {
      if (const int rc = run(rollback_to_.get()); rc != SQLITE_DONE) return abort(sqlite_error(db, rc, "rollback to"));
    }
    if (const int rc = run(release_.get()); rc != SQLITE_DONE) return abort(sqlite_error(db, rc, "release"));
    task_results.push_back(std::move(r));
  }

  for (auto& item : batch) {
    partition_state* p = item.part;
    if (!p->touched) {
      if (!p->append) {
        auto s = prepare(db, "INSERT INTO " + records_table(p->pid) +
                                 "(off, ts, key, value, headers) VALUES(?1, ?2, ?3, ?4, ?5)");
        if (!s) return abort(s.error());
        p->append = std::move(*s);
      }
      p->touched = true;
      p->pending_next = p->next_offset;
      p->pending_bytes = p->bytes;
      touched_.push_back(p);
    }
    sqlite3_stmt* ins = p->append.get();
    item.offset = p->pending_next++;
    p->pending_bytes += static_cast<std::int64_t>(item.bytes);
    encode_headers(item.msg.headers, header_scratch_);
    sqlite3_bind_int64(ins, 1, item.offset);
    sqlite3_bind_int64(ins, 2, item.msg.timestamp_ms);
    bind_blob(ins, 3, item.msg.key);
    bind_blob(ins, 4, item.msg.value);
    if (header_scratch_.empty()) {
      sqlite3_bind_null(ins, 5);
    } else {
      bind_blob(ins, 5, header_scratch_);
    }
    if (const int rc = run(ins); rc != SQLITE_DONE) return abort(sqlite_error(db, rc, "append", where_of(*p)));
  }
  sqlite3_stmt* upd = update_partition_.get();
  for (auto* p : touched_) {
    p->persisting = p->pending_next - p->persisted_next >= kPersistEvery;
    if (!p->persisting) continue;
    sqlite3_bind_int64(upd, 1, p->pending_next);
    sqlite3_bind_int64(upd, 2, p->pending_bytes);
    sqlite3_bind_int64(upd, 3, p->pid);
    if (const int rc = run(upd); rc != SQLITE_DONE) {
      return abort(sqlite_error(db, rc, "update partition", where_of(*p)));
    }
  }
  if (const int rc = run(commit_.get()); rc != SQLITE_DONE) {
    return abort(sqlite_error(db, rc, "commit", options_.path.string()));
  }

  // Durable. Keep the newest records in memory for the consumers that follow
  // the end (the publishers do not need their bytes back), then make them
  // visible and tell everyone.
  if (options_.tail_cache_bytes > 0) {
    for (auto& item : batch) keep_in_tail(*item.part, item);
  }
  for (auto* p : touched_) {
    p->next_offset = p->pending_next;
    p->bytes = p->pending_bytes;
    if (p->persisting) p->persisted_next = p->next_offset;
    p->persisting = false;
    p->touched = false;
    p->visible_end.store(p->next_offset, std::memory_order_release);
  }
  touched_.clear();
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    if (task_results[i]) tasks[i]->apply(*this);
  }
  stats_.transactions.fetch_add(1, std::memory_order_relaxed);
  stats_.records_committed.fetch_add(batch.size(), std::memory_order_relaxed);
  if (batch.size() > stats_.largest_batch.load(std::memory_order_relaxed)) {
    stats_.largest_batch.store(batch.size(), std::memory_order_relaxed);
  }
  update_pages_written();
  if (!batch.empty()) notify_consumers();

  for (std::size_t i = 0; i < tasks.size(); ++i) tasks[i]->finish(std::move(task_results[i]));
  tasks.clear();
  if (batch.empty()) return;
  {
    std::lock_guard lock(mu_);
    in_flight_ -= batch.size();
  }
  for (auto& item : batch) {
    item.done(position{.topic = std::move(item.msg.topic), .partition = item.part->index, .offset = item.offset});
  }
  {
    std::lock_guard lock(mu_);
    completed_through_ = batch.back().seq;
  }
  flush_cv_.notify_all();
  batch.clear();
  checkpointer_->finish_if_too_long();
}

void log_state::keep_in_tail(partition_state& p, pending_publish& item) {
  std::lock_guard lock(p.tail_mu);
  if (!p.tail.empty() && p.tail.back().offset + 1 != item.offset) {
    // Never a gap: a cache with one could hand a consumer a later record as
    // the next. (Offsets are assigned in commit order, so this is defensive.)
    p.tail.clear();
    p.tail_bytes = 0;
  }
  p.tail.push_back(partition_state::cached_record{.offset = item.offset,
                                                  .timestamp_ms = item.msg.timestamp_ms,
                                                  .key = std::move(item.msg.key),
                                                  .value = std::move(item.msg.value),
                                                  .headers = std::move(item.msg.headers),
                                                  .bytes = item.bytes});
  p.tail_bytes += item.bytes;
  while (p.tail_bytes > options_.tail_cache_bytes && !p.tail.empty()) {
    p.tail_bytes -= p.tail.front().bytes;
    p.tail.pop_front();
  }
}

void log_state::expire(std::vector<pending_publish>& batch, std::vector<std::unique_ptr<write_task>>& tasks,
                       clock::time_point now, const error& why) {
  // The queue is FIFO and every publish gets the same timeout, so the expired
  // publishes are a prefix.
  std::size_t n = 0;
  while (n < batch.size() && batch[n].deadline <= now) ++n;
  if (n > 0) fail_publishes(batch, n, why);
  std::erase_if(tasks, [&](std::unique_ptr<write_task>& t) {
    if (t->deadline() > now) return false;
    t->finish(std::unexpected(why));
    return true;
  });
}

void log_state::requeue(std::vector<pending_publish>& batch, std::vector<std::unique_ptr<write_task>>& tasks) {
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      queue_.insert(queue_.begin(), std::make_move_iterator(batch.begin()), std::make_move_iterator(batch.end()));
      tasks_.insert(tasks_.begin(), std::make_move_iterator(tasks.begin()), std::make_move_iterator(tasks.end()));
      batch.clear();
      tasks.clear();
      return;
    }
    // Shutting down and the file is locked: do not wait out every deadline.
    shutdown_failed_ = true;
  }
  fail_all(batch, tasks, error::make(errc::cancelled, "the embedded log shut down before this was committed",
                                     options_.path.string()));
}

void log_state::fail_publishes(std::vector<pending_publish>& items, std::size_t count, const error& why) {
  if (count == 0) return;
  {
    std::lock_guard lock(mu_);
    in_flight_ -= count;
  }
  stats_.publish_failures.fetch_add(count, std::memory_order_relaxed);
  for (std::size_t i = 0; i < count; ++i) items[i].done(std::unexpected(why));
  {
    std::lock_guard lock(mu_);
    completed_through_ = items[count - 1].seq;
  }
  flush_cv_.notify_all();
  items.erase(items.begin(), items.begin() + static_cast<std::ptrdiff_t>(count));
}

void log_state::fail_all(std::vector<pending_publish>& batch, std::vector<std::unique_ptr<write_task>>& tasks,
                         const error& why) {
  for (auto& t : tasks) t->finish(std::unexpected(why));
  tasks.clear();
  fail_publishes(batch, batch.size(), why);
}

void log_state::update_pages_written() {
  int current = 0;
  int highwater = 0;
  if (sqlite3_db_status(db_.get(), SQLITE_DBSTATUS_CACHE_WRITE, &current, &highwater, 0) == SQLITE_OK) {
    stats_.pages_written.store(static_cast<std::uint64_t>(current), std::memory_order_relaxed);
  }
}

// ---- retention ---------------------------------------------------------------

result<retention_report> log_state::enforce_retention(std::chrono::milliseconds timeout) {
  if (on_bus_thread()) return fail(errc::invalid_argument, "enforce_retention called from a publish handler");
  std::promise<result<retention_report>> promise;
  auto done = promise.get_future();
  {
    std::lock_guard lock(mu_);
    if (stopping_) return fail(errc::cancelled, "the embedded log is shutting down");
    retention_waiters_.push_back(std::move(promise));
  }
  writer_cv_.notify_one();
  if (done.wait_for(timeout) != std::future_status::ready) {
    return fail(errc::timeout, "retention still running (it continues in the background)", options_.path.string());
  }
  return done.get();
}

void log_state::run_retention() {
  auto more = retention_step(retention_progress_);
  std::vector<std::promise<result<retention_report>>> waiters;
  {
    std::lock_guard lock(mu_);
    const auto now = clock::now();
    if (more && *more) {
      next_retention_ = now;  // more is due: continue after the next publish batch
      return;
    }
    next_retention_ = now + options_.retention_check_interval;
    waiters = std::move(retention_waiters_);
    retention_waiters_.clear();
  }
  if (!more) stats_.retention_failures.fetch_add(1, std::memory_order_relaxed);
  for (auto& w : waiters) {
    if (more) {
      w.set_value(retention_progress_);
    } else {
      w.set_value(std::unexpected(more.error()));
    }
  }
  retention_progress_ = {};
}

// One round: at most retention_batch records per partition, each partition in
// its own short transaction, then a bounded incremental_vacuum. Returns
// whether more is due.
result<bool> log_state::retention_step(retention_report& report) {
  sqlite3* db = db_.get();
  std::vector<topic_state*> topics;
  {
    std::lock_guard lock(mu_);
    for (const auto& [name, t] : topics_) {
      if (t->retention_ms >= 0 || t->retention_bytes >= 0) topics.push_back(t.get());
    }
  }
  const std::int64_t now = wall_ms();
  bool more = false;
  bool deleted_any = false;
  for (auto* t : topics) {
    for (auto& up : t->parts) {
      partition_state& p = *up;
      const std::int64_t start = p.log_start.load(std::memory_order_relaxed);
      if (p.next_offset == start) continue;
      if (t->retention_ms < 0 && p.bytes <= t->retention_bytes) continue;
      busy_deadline_ = clock::now() + options_.publish_timeout;
      if (const int rc = run(begin_.get()); rc != SQLITE_DONE) {
        return std::unexpected(sqlite_error(db, rc, "retention: begin", where_of(p)));
      }
      if (!p.scan_oldest) {
        const std::string table = records_table(p.pid);
        auto scan = prepare(db, "SELECT off, ts, length(key) + length(value) + ifnull(length(headers), 0) FROM " +
                                    table + " WHERE off >= ?1 ORDER BY off LIMIT ?2");
        auto del = prepare(db, "DELETE FROM " + table + " WHERE off >= ?1 AND off <= ?2");
        if (!scan || !del) {
          run(rollback_.get());
          return std::unexpected(scan ? del.error() : scan.error());
        }
        p.scan_oldest = std::move(*scan);
        p.delete_oldest = std::move(*del);
      }
      std::int64_t last = -1;
      std::int64_t bytes = p.bytes;
      std::size_t rows = 0;
      {
        sqlite3_stmt* s = p.scan_oldest.get();
        reset_guard guard(s);
        sqlite3_bind_int64(s, 1, start);
        sqlite3_bind_int64(s, 2, static_cast<std::int64_t>(options_.retention_batch));
        int rc = SQLITE_OK;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
          const std::int64_t ts = sqlite3_column_int64(s, 1);
          const bool too_old = t->retention_ms >= 0 && ts < now - t->retention_ms;
          const bool too_big = t->retention_bytes >= 0 && bytes > t->retention_bytes;
          if (!too_old && !too_big) break;
          last = sqlite3_column_int64(s, 0);
          bytes -= sqlite3_column_int64(s, 2);
          ++rows;
        }
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
          run(rollback_.get());
          return std::unexpected(sqlite_error(db, rc, "retention: scan", where_of(p)));
        }
      }
      if (rows == 0) {
        run(rollback_.get());
        continue;
      }
      sqlite3_stmt* del = p.delete_oldest.get();
      sqlite3_bind_int64(del, 1, start);
      sqlite3_bind_int64(del, 2, last);
      int rc = run(del);
      if (rc == SQLITE_DONE) {
        sqlite3_stmt* upd = retention_update_.get();
        sqlite3_bind_int64(upd, 1, last + 1);
        sqlite3_bind_int64(upd, 2, bytes);
        sqlite3_bind_int64(upd, 3, p.pid);
        sqlite3_bind_int64(upd, 4, p.next_offset);
        rc = run(upd);
      }
      if (rc == SQLITE_DONE) rc = run(commit_.get());
      if (rc != SQLITE_DONE) {
        run(rollback_.get());
        return std::unexpected(sqlite_error(db, rc, "retention: delete", where_of(p)));
      }
      p.bytes = bytes;
      p.persisted_next = p.next_offset;
      p.log_start.store(last + 1, std::memory_order_release);
      stats_.retention_transactions.fetch_add(1, std::memory_order_relaxed);
      stats_.retention_deleted.fetch_add(rows, std::memory_order_relaxed);
      report.deleted_records += rows;
      deleted_any = true;
      if (rows == options_.retention_batch) more = true;
    }
  }
  if (deleted_any || more) {
    if (auto r = vacuum(report, more); !r) return std::unexpected(r.error());
  }
  update_pages_written();
  return more;
}

// Hands free pages back to the file system a bounded number at a time
// (auto_vacuum=INCREMENTAL), never rewriting the whole file.
result<void> log_state::vacuum(retention_report& report, bool& more) {
  sqlite3* db = db_.get();
  auto freelist = [&]() -> result<std::int64_t> {
    sqlite3_stmt* s = freelist_.get();
    reset_guard guard(s);
    const int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) return std::unexpected(sqlite_error(db, rc, "freelist_count"));
    return sqlite3_column_int64(s, 0);
  };
  auto before = freelist();
  if (!before) return std::unexpected(before.error());
  if (*before == 0) return {};
  busy_deadline_ = clock::now() + options_.publish_timeout;
  const std::string sql = "PRAGMA incremental_vacuum(" + std::to_string(options_.vacuum_pages_per_pass) + ")";
  if (auto r = exec(db, sql.c_str()); !r) return r;
  auto after = freelist();
  if (!after) return std::unexpected(after.error());
  const auto freed = static_cast<std::uint64_t>(std::max<std::int64_t>(0, *before - *after));
  report.vacuumed_pages += freed;
  stats_.vacuumed_pages.fetch_add(freed, std::memory_order_relaxed);
  if (*after > 0) more = true;
  return {};
}

// ---- consumers ---------------------------------------------------------------

result<std::unique_ptr<consumer>> log_state::subscribe(consumer_options options) {
  if (options.group.empty()) return fail(errc::invalid_argument, "consumer group is empty");
  if (options.topics.empty()) return fail(errc::invalid_argument, "no topics to consume", options.group);
  std::vector<topic_state*> topics;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return fail(errc::cancelled, "the embedded log is shutting down");
    for (const auto& name : options.topics) {
      auto it = topics_.find(name);
      if (it == topics_.end()) return fail(errc::not_found, "unknown topic (create it with ensure_topics)", name);
      if (std::find(topics.begin(), topics.end(), it->second.get()) == topics.end()) topics.push_back(it->second.get());
    }
  }
  auto db = open_reader();
  if (!db) return std::unexpected(db.error());
  auto committed = prepare(db->get(), "SELECT next_offset FROM group_offsets WHERE grp = ?1 AND pid = ?2");
  if (!committed) return std::unexpected(committed.error());
  const std::uint64_t member = groups_.join(options.group, std::move(topics));
  notify_consumers();
  return std::make_unique<embedded_consumer>(shared_from_this(), std::move(options.group), member, options.start,
                                             options.start_timestamp_ms, std::move(*db), std::move(*committed));
}

embedded_log_stats log_state::stats() const {
  auto get = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  return embedded_log_stats{
      .transactions = get(stats_.transactions),
      .records_committed = get(stats_.records_committed),
      .largest_batch = get(stats_.largest_batch),
      .overloaded = get(stats_.overloaded),
      .publish_failures = get(stats_.publish_failures),
      .retention_transactions = get(stats_.retention_transactions),
      .retention_deleted = get(stats_.retention_deleted),
      .retention_failures = get(stats_.retention_failures),
      .vacuumed_pages = get(stats_.vacuumed_pages),
      .pages_written = get(stats_.pages_written),
      .records_from_cache = get(stats_.records_from_cache),
      .records_from_file = get(stats_.records_from_file),
  };
}

// ---- the read-only view --------------------------------------------------------

namespace {

// A view waits this long for SQLite's own short-lived locks (rebuilding the
// wal-index after the owner crashed, a reader racing a WAL restart). It never
// waits for the owner's writer: WAL readers do not contend with it.
constexpr int kViewBusyTimeoutMs = 5000;

// How often an idle poll looks again. Nothing wakes a view when the owner
// commits (the owner may be another process), so it looks, each time in a
// fresh read transaction.
constexpr auto kViewPollInterval = 50ms;

error read_only(std::string what, std::string where) {
  return error::make(errc::permission_denied, "read-only view of the embedded log: " + what, std::move(where));
}

// Opens the log file with SQLITE_OPEN_READONLY: no lock file, no pragma that
// writes, and no checkpoint when this connection happens to close last (the
// owner checkpoints; a view must not change the file).
result<db_ptr> open_read_only(const std::filesystem::path& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) {
    return fail(errc::not_found, "no embedded log at " + path.string(), path.string());
  }
  if (!std::filesystem::is_regular_file(status)) {
    return fail(errc::invalid_argument, path.string() + " is not a file", path.string());
  }
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
  db_ptr db(raw);
  if (rc != SQLITE_OK) return std::unexpected(sqlite_error(raw, rc, "open read-only", path.string()));
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, kViewBusyTimeoutMs);
  if (const int cfg = sqlite3_db_config(raw, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr); cfg != SQLITE_OK) {
    return std::unexpected(sqlite_error(raw, cfg, "disable checkpoint on close", path.string()));
  }
  if (auto r = check_log_identity(raw, path); !r) {
    if (r.error().code != errc::corrupt) return std::unexpected(r.error());
    // SQLITE_NOTADB: some other kind of file.
    return fail(errc::config_error, "not a yilian embedded log (" + r.error().message + ")", path.string());
  }
  return db;
}

// One read transaction: every read inside it sees one committed state of the
// file, and the next one sees whatever the owner committed meanwhile. Ended
// on every exit path: an open snapshot would hold back the owner's
// checkpoints.
class read_transaction {
 public:
  explicit read_transaction(sqlite3* db) : db_(db) {}
  ~read_transaction() {
    if (!open_ || sqlite3_get_autocommit(db_) != 0) return;
    if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    }
  }
  read_transaction(const read_transaction&) = delete;
  read_transaction& operator=(const read_transaction&) = delete;

  result<void> begin() {
    if (auto r = exec(db_, "BEGIN"); !r) return r;
    open_ = true;
    return {};
  }

 private:
  sqlite3* db_;
  bool open_ = false;
};

result<std::vector<stored_topic>> read_catalog_once(sqlite3* db, const std::filesystem::path& path) {
  read_transaction txn(db);
  if (auto r = txn.begin(); !r) return std::unexpected(r.error());
  return read_catalog(db, path);
}

// The consumer of a view: one member reading every partition of its topics
// through its own read-only connection. Owned and used by one thread; may
// outlive the view. Positions (and commits) live in memory only.
class view_consumer final : public consumer {
 public:
  struct partition_ref {
    std::string topic;
    std::int32_t index = 0;
    std::int64_t pid = 0;
  };

  static result<std::unique_ptr<consumer>> open(const std::filesystem::path& path, std::string group,
                                                std::vector<partition_ref> parts, start_from start,
                                                std::int64_t start_timestamp_ms) {
    auto db = open_read_only(path);
    if (!db) return std::unexpected(db.error());
    std::unique_ptr<view_consumer> c(new view_consumer(std::move(*db), std::move(group)));
    for (auto& ref : parts) {
      auto fetch = prepare(c->db_.get(), fetch_records_sql(ref.pid));
      if (!fetch) return std::unexpected(fetch.error());
      // min/max over the rowid are one B-tree descent each. The stored
      // next_offset only covers a partition emptied by retention: records
      // after it are normal (it is written every kPersistEvery records).
      const std::string table = records_table(ref.pid);
      auto bounds = prepare(c->db_.get(), "SELECT (SELECT min(off) FROM " + table + "), (SELECT max(off) FROM " +
                                              table + "), next_offset FROM partitions WHERE pid = ?1");
      if (!bounds) return std::unexpected(bounds.error());
      c->parts_.push_back(part{.ref = std::move(ref), .position = 0, .committed = -1, .fetch = std::move(*fetch),
                               .bounds = std::move(*bounds)});
    }
    read_transaction txn(c->db_.get());
    if (auto r = txn.begin(); !r) return std::unexpected(r.error());
    for (auto& p : c->parts_) {
      auto b = c->bounds_of(p);
      if (!b) return std::unexpected(b.error());
      p.position = start == start_from::earliest ? b->first : b->end;
      if (start_timestamp_ms >= 0) {
        auto at = offset_for_time(c->db_.get(), p.ref.pid, b->first, b->end, start_timestamp_ms,
                                  p.ref.topic + "/" + std::to_string(p.ref.index));
        if (!at) return std::unexpected(at.error());
        p.position = *at;
      }
    }
    return std::unique_ptr<consumer>(std::move(c));
  }

  ~view_consumer() override { close(); }

  result<std::vector<record>> poll(std::chrono::milliseconds timeout, std::size_t max) override {
    if (closed_) return fail(errc::cancelled, "the consumer is closed");
    if (max == 0) return fail(errc::invalid_argument, "poll needs max >= 1");
    const auto deadline = clock::now() + timeout;
    for (;;) {
      std::vector<record> out;
      if (auto r = read_round(out, max); !r) return std::unexpected(r.error());
      if (!out.empty()) return out;
      const auto now = clock::now();
      if (now >= deadline) return out;
      std::this_thread::sleep_for(std::min<clock::duration>(kViewPollInterval, deadline - now));
    }
  }

  // In memory only: nothing is written to the file, so it is not durable
  // (a new consumer starts from its start_from again). Later polls continue
  // after the highest offset committed per partition.
  result<void> commit(std::span<const record> processed) override {
    if (closed_) return fail(errc::cancelled, "the consumer is closed");
    for (const auto& rec : processed) {
      if (find(rec.topic, rec.partition) == nullptr) {
        return fail(errc::invalid_argument, "record is not from a partition this consumer reads",
                    rec.topic + "/" + std::to_string(rec.partition));
      }
    }
    for (const auto& rec : processed) {
      part* p = find(rec.topic, rec.partition);
      p->committed = std::max(p->committed, rec.offset + 1);
      p->position = std::max(p->position, p->committed);
    }
    return {};
  }

  std::vector<std::pair<std::string, std::int32_t>> assignment() override {
    std::vector<std::pair<std::string, std::int32_t>> out;
    if (closed_) return out;
    for (const auto& p : parts_) out.emplace_back(p.ref.topic, p.ref.index);
    return out;
  }

  // `committed` is the in-memory position: the next offset this consumer
  // reads (never before the first record retention kept); `end` is computed
  // from the records, not the stored end.
  result<std::vector<partition_lag>> lag() override {
    if (closed_) return fail(errc::cancelled, "the consumer is closed");
    read_transaction txn(db_.get());
    if (auto r = txn.begin(); !r) return std::unexpected(r.error());
    std::vector<partition_lag> out;
    for (auto& p : parts_) {
      auto b = bounds_of(p);
      if (!b) return std::unexpected(b.error());
      p.position = std::max(p.position, b->first);
      out.push_back(partition_lag{.topic = p.ref.topic, .partition = p.ref.index, .committed = p.position,
                                  .end = std::max(b->end, p.position)});
    }
    return out;
  }

  void close() override {
    if (closed_) return;
    closed_ = true;
    parts_.clear();
    db_.reset();
  }

 private:
  struct part {
    partition_ref ref;
    std::int64_t position = 0;   // next offset to deliver
    std::int64_t committed = -1;  // in memory only
    stmt_ptr fetch;
    stmt_ptr bounds;
  };
  struct partition_bounds {
    std::int64_t first = 0;  // first record kept; == end when retention removed all
    std::int64_t end = 0;    // offset the next record will get
  };

  view_consumer(db_ptr db, std::string group) : db_(std::move(db)), group_(std::move(group)) {}

  part* find(const std::string& topic, std::int32_t index) {
    for (auto& p : parts_) {
      if (p.ref.index == index && p.ref.topic == topic) return &p;
    }
    return nullptr;
  }

  // Inside a read transaction.
  result<partition_bounds> bounds_of(const part& p) {
    sqlite3_stmt* s = p.bounds.get();
    reset_guard guard(s);
    sqlite3_bind_int64(s, 1, p.ref.pid);
    const int rc = sqlite3_step(s);
    const std::string where = p.ref.topic + "/" + std::to_string(p.ref.index);
    if (rc == SQLITE_DONE) return fail(errc::corrupt, "partition row is missing", where);
    if (rc != SQLITE_ROW) return std::unexpected(sqlite_error(db_.get(), rc, "read partition end", where));
    const bool empty = sqlite3_column_type(s, 1) == SQLITE_NULL;
    partition_bounds b;
    b.end = sqlite3_column_int64(s, 2);
    if (!empty) b.end = std::max<std::int64_t>(b.end, sqlite3_column_int64(s, 1) + 1);
    b.first = empty ? b.end : sqlite3_column_int64(s, 0);
    return b;
  }

  // One look at every partition, in one fresh read transaction, starting at
  // a different partition each time so a busy one cannot starve the others.
  result<void> read_round(std::vector<record>& out, std::size_t max) {
    read_transaction txn(db_.get());
    if (auto r = txn.begin(); !r) return r;
    const std::size_t n = parts_.size();
    for (std::size_t i = 0; i < n && out.size() < max; ++i) {
      auto& p = parts_[(cursor_ + i) % n];
      auto any = read_records(db_.get(), p.fetch.get(), p.ref.topic, p.ref.index, p.position,
                              std::numeric_limits<std::int64_t>::max(), max - out.size(), out);
      if (!any) return std::unexpected(any.error());
    }
    if (n > 0) cursor_ = (cursor_ + 1) % n;
    return {};
  }

  db_ptr db_;
  std::string group_;  // a label only: nothing is read or written under it
  std::vector<part> parts_;
  std::size_t cursor_ = 0;
  bool closed_ = false;
};

// See open_embedded_log_reader. Thread-safe: its one connection is used
// under mu_; consumers have their own.
class log_view final : public bus {
 public:
  log_view(std::filesystem::path path, db_ptr db) : path_(std::move(path)), db_(std::move(db)) {}

  std::string_view kind() const noexcept override { return "embedded-reader"; }

  result<void> ensure_topics(std::span<const topic_spec> topics) override {
    for (const auto& spec : topics) {
      if (!valid_topic_name(spec.name)) {
        return fail(errc::invalid_argument, "topic names are 1-249 characters of [a-zA-Z0-9._-]", spec.name);
      }
    }
    auto catalog = catalog_now();
    if (!catalog) return std::unexpected(catalog.error());
    for (const auto& spec : topics) {
      const auto* t = find(*catalog, spec.name);
      if (t == nullptr) return std::unexpected(read_only("cannot create topics", spec.name));
      if (spec.partitions > t->partitions) {
        return std::unexpected(read_only("the topic has " + std::to_string(t->partitions) + " partitions, not " +
                                             std::to_string(spec.partitions),
                                         spec.name));
      }
    }
    return {};
  }

  result<std::int32_t> partitions(std::string_view topic) override {
    auto catalog = catalog_now();
    if (!catalog) return std::unexpected(catalog.error());
    const auto* t = find(*catalog, topic);
    if (t == nullptr) return fail(errc::not_found, "unknown topic", std::string(topic));
    return t->partitions;
  }

  // No bus thread to call it from: the handler runs at once, on the caller's
  // thread, before publish returns.
  void publish(message msg, publish_handler done) override {
    if (done) done(std::unexpected(read_only("cannot publish", std::move(msg.topic))));
  }

  result<std::unique_ptr<consumer>> subscribe(consumer_options options) override {
    if (options.group.empty()) return fail(errc::invalid_argument, "consumer group is empty");
    if (options.topics.empty()) return fail(errc::invalid_argument, "no topics to consume", options.group);
    auto catalog = catalog_now();
    if (!catalog) return std::unexpected(catalog.error());
    std::map<std::string_view, const stored_topic*> topics;  // by name, as the owner's assignment orders them
    for (const auto& name : options.topics) {
      const auto* t = find(*catalog, name);
      if (t == nullptr) return fail(errc::not_found, "unknown topic", name);
      topics.emplace(t->name, t);
    }
    std::vector<view_consumer::partition_ref> parts;
    for (const auto& [name, t] : topics) {
      for (const auto& p : t->parts) parts.push_back({.topic = t->name, .index = p.index, .pid = p.pid});
    }
    return view_consumer::open(path_, std::move(options.group), std::move(parts), options.start,
                               options.start_timestamp_ms);
  }

  result<void> flush(std::chrono::milliseconds) override { return {}; }
  result<void> check_ready(std::chrono::milliseconds) override { return {}; }

 private:
  static const stored_topic* find(const std::vector<stored_topic>& catalog, std::string_view name) {
    auto it = std::find_if(catalog.begin(), catalog.end(), [&](const stored_topic& t) { return t.name == name; });
    return it == catalog.end() ? nullptr : &*it;
  }

  // Read again each time: the owner may have created topics since.
  result<std::vector<stored_topic>> catalog_now() {
    std::lock_guard lock(mu_);
    return read_catalog_once(db_.get(), path_);
  }

  const std::filesystem::path path_;
  std::mutex mu_;
  db_ptr db_;
};

}  // namespace

}  // namespace detail

// ---- embedded_log ------------------------------------------------------------

embedded_log::embedded_log(std::shared_ptr<detail::log_state> state) : state_(std::move(state)) {}

embedded_log::~embedded_log() { state_->shutdown(); }

result<std::unique_ptr<embedded_log>> embedded_log::open(embedded_log_options options) {
  auto state = std::make_shared<detail::log_state>(std::move(options));
  if (auto r = state->open(); !r) {
    state->shutdown();
    return std::unexpected(r.error());
  }
  return std::unique_ptr<embedded_log>(new embedded_log(std::move(state)));
}

result<void> embedded_log::ensure_topics(std::span<const topic_spec> topics) { return state_->ensure_topics(topics); }
result<std::int32_t> embedded_log::partitions(std::string_view topic) { return state_->partitions(topic); }
void embedded_log::publish(message msg, publish_handler done) { state_->publish(std::move(msg), std::move(done)); }
result<std::unique_ptr<consumer>> embedded_log::subscribe(consumer_options options) {
  return state_->subscribe(std::move(options));
}
result<void> embedded_log::flush(std::chrono::milliseconds timeout) { return state_->flush(timeout); }
result<void> embedded_log::check_ready(std::chrono::milliseconds timeout) { return state_->check_ready(timeout); }
result<retention_report> embedded_log::enforce_retention(std::chrono::milliseconds timeout) {
  return state_->enforce_retention(timeout);
}
embedded_log_stats embedded_log::stats() const { return state_->stats(); }
const std::filesystem::path& embedded_log::path() const noexcept { return state_->options().path; }

result<std::unique_ptr<bus>> open_embedded_log(embedded_log_options options) {
  auto log = embedded_log::open(std::move(options));
  if (!log) return std::unexpected(log.error());
  return std::unique_ptr<bus>(std::move(*log));
}

result<std::unique_ptr<bus>> open_embedded_log_reader(const std::filesystem::path& path) {
  if (path.empty()) return fail(errc::config_error, "embedded log path is empty");
  auto db = detail::open_read_only(path);
  if (!db) return std::unexpected(db.error());
  // Fails early on a damaged catalog rather than at the first subscribe.
  if (auto catalog = detail::read_catalog_once(db->get(), path); !catalog) return std::unexpected(catalog.error());
  return std::unique_ptr<bus>(std::make_unique<detail::log_view>(path, std::move(*db)));
}

}  // namespace yilian::bus
