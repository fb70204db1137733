#include "engine/workflows/reports/library.h"

#include <algorithm>
#include <limits>
#include <utility>

#include <sqlite3.h>

#include "engine/core/ids.h"
#include "engine/core/log.h"
#include "engine/core/thread.h"
#include "engine/store/sqlite.h"

namespace yilian::workflows::reports {

using namespace std::chrono_literals;
namespace sql = store::sql;

namespace {

const auto lg = log::get("reports");

// "yl0r": PRAGMA application_id of a report library, so we never adopt
// another application's SQLite file.
constexpr std::int64_t kApplicationId = 0x796c3072;
// Raised by every migration step; see migrate().
constexpr std::int64_t kSchemaVersion = 2;
// 4 KiB pages: a version (~3.5 KiB) per page. 8 KiB pages held two, but each
// new report also goes into an index at a place of its own (its hospital's
// report id), and a commit rewrites a whole page for each: on the MLLP
// benchmark the library wrote 10.3 KB per message with 8 KiB pages and 6.9 KB
// with 4 KiB ones. Applies when the file is created.
constexpr int kPageSize = 4096;
constexpr int kBusyTimeoutMs = 5000;

// Each step takes the schema from version i to i + 1, inside the open
// transaction. Add steps; never edit a released one.
constexpr const char* kMigrations[] = {
    // 0 -> 1
    // meta: 'group' (the consumer group's id, new at every rebuild) and
    // 'topic' (the topic the rows are a fold of).
    "CREATE TABLE meta(name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;"
    // One row per report; latest_version is the versions row of its latest
    // version (unique, so it orders reports folded in the same second).
    "CREATE TABLE reports("
    "  id INTEGER PRIMARY KEY, hospital TEXT NOT NULL, report_id TEXT NOT NULL, versions INTEGER NOT NULL,"
    "  latest_event_id TEXT NOT NULL, latest_recorded_at INTEGER NOT NULL, latest_version INTEGER NOT NULL);"
    "CREATE UNIQUE INDEX reports_key ON reports(hospital, report_id);"
    "CREATE INDEX reports_newest ON reports(latest_recorded_at, latest_version);"
    // One row per version, appended in fold order; the serialized envelope
    // last, so the small columns come first in the row.
    "CREATE TABLE versions("
    "  id INTEGER PRIMARY KEY, report INTEGER NOT NULL, seq INTEGER NOT NULL, event_id TEXT NOT NULL,"
    "  status INTEGER NOT NULL, status_code TEXT NOT NULL, issued_at INTEGER NOT NULL, recorded_at INTEGER NOT NULL,"
    "  supersedes TEXT NOT NULL, envelope BLOB NOT NULL);"
    "CREATE UNIQUE INDEX versions_event ON versions(event_id);"
    "CREATE UNIQUE INDEX versions_report ON versions(report, seq);"
    // The next offset to fold per partition of the topic.
    "CREATE TABLE offsets(partition INTEGER PRIMARY KEY, next INTEGER NOT NULL);",
    // 1 -> 2
    // A version is looked up within its report (versions_report), never by
    // its event id alone. An index on event ids, which are hashes, took one
    // page write per new version at a random place (~4 KB per report).
    "DROP INDEX versions_event;",
};
static_assert(std::size(kMigrations) == kSchemaVersion);

result<void> migrate(sqlite3* db, const std::filesystem::path& file) {
  return sql::migrate(db, file, kApplicationId, "report library", kMigrations);
}

seconds record_time(const bus::record& r) {
  return seconds(std::chrono::duration_cast<std::chrono::seconds>(std::chrono::milliseconds(r.timestamp_ms)));
}

std::string text_column(sqlite3_stmt* s, int column) {
  const auto* p = sqlite3_column_text(s, column);
  return p == nullptr ? std::string()
                      : std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(sqlite3_column_bytes(s, column)));
}

std::int64_t cache_used(sqlite3* db) {
  int current = 0;
  int high = 0;
  if (sqlite3_db_status(db, SQLITE_DBSTATUS_CACHE_USED, &current, &high, 0) != SQLITE_OK) return 0;
  return current;
}

// Every statement of one read sees the same committed state; ended on every
// exit path (an open snapshot would hold back the writer's checkpoints).
class read_snapshot {
 public:
  explicit read_snapshot(sqlite3* db) : db_(db) {}
  ~read_snapshot() {
    if (open_ && sqlite3_get_autocommit(db_) == 0) sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr);
  }
  read_snapshot(const read_snapshot&) = delete;
  read_snapshot& operator=(const read_snapshot&) = delete;
  result<void> begin() {
    if (auto r = sql::exec(db_, "BEGIN"); !r) return r;
    open_ = true;
    return {};
  }

 private:
  sqlite3* db_;
  bool open_ = false;
};

}  // namespace

// ---- the write side -----------------------------------------------------------

struct library::store {
  sql::owner_lock lock;
  sql::db_ptr db;
  sql::stmt_ptr begin, commit, rollback;
  sql::stmt_ptr has_version, find_report, insert_report, insert_version, update_report, upsert_offset;
  std::string group_id;
  std::map<std::int32_t, std::int64_t> next;  // as committed to the file (fold thread)
};

namespace {

result<void> prepare_all(sqlite3* db, std::span<const std::pair<sql::stmt_ptr*, const char*>> all) {
  for (const auto& [stmt, text] : all) {
    auto s = sql::prepare(db, text);
    if (!s) return std::unexpected(s.error());
    *stmt = std::move(*s);
  }
  return {};
}

// Empties the view and names a new consumer group (the old group's offsets
// no longer describe the file). Inside the caller's transaction.
result<void> clear_view(sqlite3* db, const std::string& topic, std::string& group_id) {
  if (auto r = sql::exec(db, "DELETE FROM versions; DELETE FROM reports; DELETE FROM offsets;"); !r) return r;
  group_id = random_id();
  auto s = sql::prepare(db, "INSERT INTO meta(name, value) VALUES('group', ?1), ('topic', ?2) "
                            "ON CONFLICT(name) DO UPDATE SET value = excluded.value");
  if (!s) return std::unexpected(s.error());
  sql::bind_text(s->get(), 1, group_id);
  sql::bind_text(s->get(), 2, topic);
  if (const int rc = sql::run(s->get()); rc != SQLITE_DONE) return std::unexpected(sql::sqlite_error(db, rc, "write meta"));
  return {};
}

}  // namespace

library::library(bus::bus& b, library_options options) : bus_(b), options_(std::move(options)) {}

library::~library() {
  stop();
  std::lock_guard lock(readers_mu_);
  idle_readers_.clear();
}

result<void> library::open() {
  if (store_) return {};
  const auto& o = options_;
  if (o.file.empty()) return fail(errc::config_error, "the report library's file is not set");
  if (o.topic.empty()) return fail(errc::config_error, "the report library's topic is not set");
  if (o.cache_kib <= 0) return fail(errc::config_error, "cache_kib must be >= 1", o.file.string());
  if (o.readers == 0) return fail(errc::config_error, "readers must be >= 1", o.file.string());
  if (o.max_batch == 0) return fail(errc::config_error, "max_batch must be >= 1", o.file.string());

  std::error_code ec;
  if (o.file.has_parent_path()) {
    std::filesystem::create_directories(o.file.parent_path(), ec);
    if (ec) return fail(errc::io_error, "cannot create directory: " + ec.message(), o.file.parent_path().string());
  }
  auto s = std::make_unique<store>();
  auto owner = sql::owner_lock::take(o.file, "report library");
  if (!owner) return std::unexpected(owner.error());
  s->lock = std::move(*owner);
  auto db = sql::open_db(o.file, true, kBusyTimeoutMs);
  if (!db) return std::unexpected(db.error());
  s->db = std::move(*db);
  sqlite3* raw = s->db.get();

  const std::string page_size = "PRAGMA page_size=" + std::to_string(kPageSize);
  if (auto r = sql::exec(raw, page_size.c_str()); !r) return r;  // no-op once the file exists
  auto mode = sql::query_text(raw, "PRAGMA journal_mode=WAL");
  if (!mode) return std::unexpected(mode.error());
  if (*mode != "wal") return fail(errc::config_error, "cannot switch to WAL mode (got " + *mode + ")", o.file.string());
  // NORMAL: a crash of the process loses nothing committed; power loss may
  // lose the last batches, which the start-up check finds (the bus group is
  // then ahead of the file) and a rebuild repairs: the file is a view.
  const std::string cache = "PRAGMA cache_size=-" + std::to_string(o.cache_kib);
  for (const char* pragma : {"PRAGMA synchronous=NORMAL", "PRAGMA temp_store=MEMORY", "PRAGMA mmap_size=0",
                             "PRAGMA journal_size_limit=16777216", cache.c_str()}) {
    if (auto r = sql::exec(raw, pragma); !r) return r;
  }

  if (auto r = sql::exec(raw, "BEGIN IMMEDIATE"); !r) return r;
  auto body = [&]() -> result<void> {
    if (auto r = migrate(raw, o.file); !r) return r;
    auto group = sql::query_text(raw, "SELECT coalesce((SELECT value FROM meta WHERE name = 'group'), '')");
    if (!group) return std::unexpected(group.error());
    auto topic = sql::query_text(raw, "SELECT coalesce((SELECT value FROM meta WHERE name = 'topic'), '')");
    if (!topic) return std::unexpected(topic.error());
    if (group->empty() || *topic != o.topic) {
      if (!topic->empty()) {
        lg.warn("report library holds another topic; folding this one from the beginning",
                {log::field("file", o.file.string()), log::field("was", *topic), log::field("topic", o.topic)});
      }
      return clear_view(raw, o.topic, s->group_id);
    }
    s->group_id = std::move(*group);
    return {};
  };
  if (auto r = body(); !r) {
    (void)sql::exec(raw, "ROLLBACK");
    return r;
  }
  if (auto r = sql::exec(raw, "COMMIT"); !r) return r;
  if (auto r = sql::sync_directory(o.file.has_parent_path() ? o.file.parent_path() : std::filesystem::path(".")); !r) {
    return r;
  }

  const std::pair<sql::stmt_ptr*, const char*> statements[] = {
      {&s->begin, "BEGIN IMMEDIATE"},
      {&s->commit, "COMMIT"},
      {&s->rollback, "ROLLBACK"},
      {&s->has_version, "SELECT 1 FROM versions WHERE report = ?1 AND event_id = ?2"},
      {&s->find_report, "SELECT id, versions, latest_event_id FROM reports WHERE hospital = ?1 AND report_id = ?2"},
      {&s->insert_report,
       "INSERT INTO reports(hospital, report_id, versions, latest_event_id, latest_recorded_at, latest_version) "
       "VALUES(?1, ?2, 0, '', 0, 0)"},
      {&s->insert_version,
       "INSERT INTO versions(report, seq, event_id, status, status_code, issued_at, recorded_at, supersedes, envelope) "
       "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"},
      {&s->update_report,
       "UPDATE reports SET versions = ?2, latest_event_id = ?3, latest_recorded_at = ?4, latest_version = ?5 "
       "WHERE id = ?1"},
      {&s->upsert_offset,
       "INSERT INTO offsets(partition, next) VALUES(?1, ?2) "
       "ON CONFLICT(partition) DO UPDATE SET next = max(next, excluded.next)"},
  };
  if (auto r = prepare_all(raw, statements); !r) return r;

  auto offsets = sql::prepare(raw, "SELECT partition, next FROM offsets");
  if (!offsets) return std::unexpected(offsets.error());
  for (int rc = sqlite3_step(offsets->get());; rc = sqlite3_step(offsets->get())) {
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) return std::unexpected(sql::sqlite_error(raw, rc, "read offsets", o.file.string()));
    s->next[static_cast<std::int32_t>(sqlite3_column_int64(offsets->get(), 0))] = sqlite3_column_int64(offsets->get(), 1);
  }
  {
    std::lock_guard lock(offsets_mu_);
    next_ = s->next;
  }
  writer_cache_.store(cache_used(raw));
  store_ = std::move(s);
  return {};
}

result<void> library::subscribe() {
  auto c = bus_.subscribe(bus::consumer_options{
      .group = options_.group_prefix + "yilian-report-library-" + store_->group_id,
      .topics = {options_.topic},
      .start = bus::start_from::earliest});
  if (!c) return std::unexpected(c.error());
  consumer_ = std::move(*c);
  return {};
}

result<void> library::start() {
  if (thread_.joinable()) return fail(errc::invalid_argument, "the report library is already running");
  if (auto r = open(); !r) return r;
  if (auto r = subscribe(); !r) return r;
  stopping_.store(false);
  thread_ = std::thread([this] {
    name_this_thread("yl-reports");
    run();
  });
  return {};
}

void library::stop() {
  {
    // Under the lock: a waiter between its check and its wait still hears it.
    std::lock_guard lock(offsets_mu_);
    stopping_.store(true);
  }
  offsets_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (consumer_) consumer_->close();
  consumer_.reset();
}

// ---- the fold -----------------------------------------------------------------

result<void> library::fold(std::span<const bus::record> batch) {
  if (!store_) return fail(errc::unavailable, "the report library is not open", options_.file.string());
  store& s = *store_;
  sqlite3* db = s.db.get();
  std::map<std::int32_t, std::int64_t> next = s.next;
  library_stats delta;

  // One version: false when it is not a new one.
  auto add = [&](const ev::Envelope& e, const bus::record& rec) -> result<void> {
    const auto& r = e.report_issued();
    const std::string& performer = !r.performing_hospital().empty() ? r.performing_hospital() : e.source().hospital();
    if (r.report_id().empty() || performer.empty()) return {};
    std::int64_t report = 0;
    std::int64_t count = 0;
    std::string supersedes;
    {
      sql::reset_guard g(s.find_report.get());
      sql::bind_text(s.find_report.get(), 1, performer);
      sql::bind_text(s.find_report.get(), 2, r.report_id());
      const int rc = sqlite3_step(s.find_report.get());
      if (rc == SQLITE_ROW) {
        report = sqlite3_column_int64(s.find_report.get(), 0);
        count = sqlite3_column_int64(s.find_report.get(), 1);
        supersedes = text_column(s.find_report.get(), 2);
      } else if (rc != SQLITE_DONE) {
        return std::unexpected(sql::sqlite_error(db, rc, "look up report", performer + "/" + r.report_id()));
      }
    }
    if (report != 0) {
      sql::reset_guard g(s.has_version.get());
      sqlite3_bind_int64(s.has_version.get(), 1, report);
      sql::bind_text(s.has_version.get(), 2, e.event_id());
      const int rc = sqlite3_step(s.has_version.get());
      if (rc == SQLITE_ROW) {
        ++delta.replays;
        return {};
      }
      if (rc != SQLITE_DONE) return std::unexpected(sql::sqlite_error(db, rc, "look up version", e.event_id()));
    }
    if (report == 0) {
      sql::reset_guard g(s.insert_report.get());
      sql::bind_text(s.insert_report.get(), 1, performer);
      sql::bind_text(s.insert_report.get(), 2, r.report_id());
      if (const int rc = sqlite3_step(s.insert_report.get()); rc != SQLITE_DONE) {
        return std::unexpected(sql::sqlite_error(db, rc, "insert report", performer + "/" + r.report_id()));
      }
      report = sqlite3_last_insert_rowid(db);
    }
    const seconds issued = r.has_issued_at() ? to_seconds(r.issued_at()) : to_seconds(e.occurred_at());
    const seconds recorded = record_time(rec);
    std::int64_t row = 0;
    {
      sqlite3_stmt* st = s.insert_version.get();
      sql::reset_guard g(st);
      sqlite3_bind_int64(st, 1, report);
      sqlite3_bind_int64(st, 2, count + 1);
      sql::bind_text(st, 3, e.event_id());
      sqlite3_bind_int64(st, 4, r.status());
      sql::bind_text(st, 5, r.status_code());
      sqlite3_bind_int64(st, 6, issued.time_since_epoch().count());
      sqlite3_bind_int64(st, 7, recorded.time_since_epoch().count());
      sql::bind_text(st, 8, supersedes);
      // The record's bytes are the serialized envelope: stored as they came.
      sql::bind_blob(st, 9, rec.value);
      if (const int rc = sqlite3_step(st); rc != SQLITE_DONE) {
        return std::unexpected(sql::sqlite_error(db, rc, "insert version", e.event_id()));
      }
      row = sqlite3_last_insert_rowid(db);
    }
    {
      sqlite3_stmt* st = s.update_report.get();
      sql::reset_guard g(st);
      sqlite3_bind_int64(st, 1, report);
      sqlite3_bind_int64(st, 2, count + 1);
      sql::bind_text(st, 3, e.event_id());
      sqlite3_bind_int64(st, 4, recorded.time_since_epoch().count());
      sqlite3_bind_int64(st, 5, row);
      if (const int rc = sqlite3_step(st); rc != SQLITE_DONE) {
        return std::unexpected(sql::sqlite_error(db, rc, "update report", performer + "/" + r.report_id()));
      }
    }
    ++delta.versions;
    return {};
  };

  auto body = [&]() -> result<void> {
    ev::Envelope e;
    for (const auto& rec : batch) {
      ++delta.records;
      auto& n = next[rec.partition];
      if (rec.offset < n) {
        ++delta.skipped;
        continue;
      }
      n = rec.offset + 1;
      if (!e.ParseFromString(rec.value) || !e.has_report_issued()) continue;
      // The workflows' own records on this topic (none today) are not reports.
      if (e.source().protocol() == ev::PROTOCOL_ENGINE) continue;
      if (auto r = add(e, rec); !r) return r;
    }
    for (const auto& [p, offset] : next) {
      const auto was = s.next.find(p);
      if (was != s.next.end() && was->second == offset) continue;
      sqlite3_stmt* st = s.upsert_offset.get();
      sql::reset_guard g(st);
      sqlite3_bind_int64(st, 1, p);
      sqlite3_bind_int64(st, 2, offset);
      if (const int rc = sqlite3_step(st); rc != SQLITE_DONE) {
        return std::unexpected(sql::sqlite_error(db, rc, "store offset", options_.topic + "/" + std::to_string(p)));
      }
    }
    return {};
  };

  if (const int rc = sql::run(s.begin.get()); rc != SQLITE_DONE) {
    return std::unexpected(sql::sqlite_error(db, rc, "begin", options_.file.string()));
  }
  if (auto r = body(); !r) {
    sql::run(s.rollback.get());
    return r;
  }
  if (const int rc = sql::run(s.commit.get()); rc != SQLITE_DONE) {
    sql::run(s.rollback.get());
    return std::unexpected(sql::sqlite_error(db, rc, "commit", options_.file.string()));
  }
  ++delta.batches;
  s.next = std::move(next);
  note_offsets(s.next);
  writer_cache_.store(cache_used(db));
  std::lock_guard lock(stats_mu_);
  stats_.records += delta.records;
  stats_.skipped += delta.skipped;
  stats_.versions += delta.versions;
  stats_.replays += delta.replays;
  stats_.batches += delta.batches;
  return {};
}

void library::note_offsets(const std::map<std::int32_t, std::int64_t>& next) {
  {
    std::lock_guard lock(offsets_mu_);
    next_ = next;
  }
  offsets_cv_.notify_all();
}

std::string library::mismatch(const std::vector<bus::partition_lag>& lag) const {
  const auto& file = store_->next;
  for (const auto& l : lag) {
    const auto it = file.find(l.partition);
    const std::int64_t n = it == file.end() ? 0 : it->second;
    const std::string where = options_.topic + "/" + std::to_string(l.partition);
    if (n > l.end) {
      return "the file has folded " + where + " up to offset " + std::to_string(n) + " but the bus ends at " +
             std::to_string(l.end) + " (the bus was wiped or is another one)";
    }
    if (n > 0 && l.committed < 0) {
      return "the consumer group has no committed offset on " + where +
             " although the file has folded it (the group expired, or the bus was wiped and refilled)";
    }
    if (n > 0 && l.committed > n) {
      return "the consumer group is at " + std::to_string(l.committed) + " on " + where + " but the file only at " +
             std::to_string(n) + " (the file lost batches or was restored from a copy)";
    }
  }
  for (const auto& [p, n] : file) {
    const bool assigned = std::any_of(lag.begin(), lag.end(), [p](const bus::partition_lag& l) { return l.partition == p; });
    if (!assigned && n > 0) return "the file has folded " + options_.topic + "/" + std::to_string(p) + " which the bus does not have";
  }
  return std::string();
}

result<void> library::rebuild(const std::string& why) {
  lg.warn("report library rebuilt from the beginning of the topic",
          {log::field("file", options_.file.string()), log::field("topic", options_.topic), log::field("reason", why)});
  if (consumer_) consumer_->close();
  consumer_.reset();
  store& s = *store_;
  sqlite3* db = s.db.get();
  if (const int rc = sql::run(s.begin.get()); rc != SQLITE_DONE) {
    return std::unexpected(sql::sqlite_error(db, rc, "begin", options_.file.string()));
  }
  std::string group;
  if (auto r = clear_view(db, options_.topic, group); !r) {
    sql::run(s.rollback.get());
    return r;
  }
  if (const int rc = sql::run(s.commit.get()); rc != SQLITE_DONE) {
    sql::run(s.rollback.get());
    return std::unexpected(sql::sqlite_error(db, rc, "commit", options_.file.string()));
  }
  s.group_id = std::move(group);
  s.next.clear();
  caught_up_.store(false);
  {
    std::lock_guard lock(offsets_mu_);
    next_.clear();
    start_end_.clear();
  }
  bus_committed_.clear();
  {
    std::lock_guard lock(stats_mu_);
    ++stats_.rebuilds;
  }
  return subscribe();
}

void library::commit_to_bus() {
  if (!consumer_ || !store_) return;
  std::vector<bus::record> marks;
  for (const auto& [p, n] : store_->next) {
    const auto it = bus_committed_.find(p);
    if (n > 0 && (it == bus_committed_.end() || it->second < n)) {
      marks.push_back(bus::record{.topic = options_.topic, .partition = p, .offset = n - 1});
    }
  }
  last_bus_commit_ = std::chrono::steady_clock::now();
  if (marks.empty()) return;
  if (auto r = consumer_->commit(marks); !r) {
    // Only the replay after a restart is longer: the file says where the fold is.
    lg.debug("report library could not commit its offsets to the bus", {log::field("error", r.error().describe())});
    return;
  }
  for (const auto& m : marks) bus_committed_[m.partition] = m.offset + 1;
}

void library::check_caught_up() {
  if (caught_up_.load()) return;
  bool done = true;
  {
    std::lock_guard lock(offsets_mu_);
    for (const auto& [p, end] : start_end_) {
      const auto it = next_.find(p);
      done = done && (end == 0 || (it != next_.end() && it->second >= end));
    }
  }
  if (!done) return;
  caught_up_.store(true);
  const auto n = size();
  lg.info("report library caught up", {log::field("reports", n ? static_cast<std::int64_t>(*n) : -1),
                                       log::field("file", options_.file.string())});
}

void library::run() {
  std::vector<bus::record> held;  // polled before the file was checked against the bus
  bool checked = false;
  std::int32_t partitions = 0;
  std::string rebuild_for;  // why the file must be rebuilt (kept until a rebuild succeeds)
  bool said = false;        // a start-up problem was logged once already
  auto fold_until_done = [&](std::span<const bus::record> batch) {
    // A failed transaction (disk full, I/O) is retried: the records are
    // already taken from the consumer and must not be skipped.
    while (true) {
      auto r = fold(batch);
      if (r) return;
      lg.error("report library could not store a batch; retrying",
               {log::field("error", r.error().describe()), log::field("records", batch.size())});
      for (int i = 0; i < 10 && !stopping_.load(); ++i) std::this_thread::sleep_for(100ms);
      if (stopping_.load()) return;
    }
  };
  while (!stopping_.load()) {
    if (!checked) {
      // The file is checked against the group's committed offsets and the
      // partitions' ends before anything is folded; Kafka assigns the
      // partitions during poll, so records may arrive before the check.
      if (!rebuild_for.empty()) {
        if (auto r = rebuild(rebuild_for); !r) {
          lg.error("report library cannot rebuild; retrying", {log::field("error", r.error().describe())});
          std::this_thread::sleep_for(1s);
          continue;
        }
        rebuild_for.clear();
      }
      if (partitions == 0) {
        auto p = bus_.partitions(options_.topic);
        if (!p) {
          if (!std::exchange(said, true)) {
            lg.warn("report library cannot read the topic's partitions; retrying",
                    {log::field("error", p.error().describe())});
          }
          std::this_thread::sleep_for(200ms);
          continue;
        }
        partitions = *p;
      }
      if (held.size() < options_.max_batch * 4) {
        auto b = consumer_->poll(50ms, options_.max_batch);
        if (!b) {
          std::this_thread::sleep_for(200ms);
          continue;
        }
        held.insert(held.end(), std::make_move_iterator(b->begin()), std::make_move_iterator(b->end()));
      } else {
        std::this_thread::sleep_for(20ms);
      }
      auto l = consumer_->lag();
      if (!l) {
        if (!std::exchange(said, true)) {
          lg.warn("report library cannot read the consumer group's offsets; retrying",
                  {log::field("error", l.error().describe())});
        }
        std::this_thread::sleep_for(200ms);
        continue;
      }
      if (l->size() < static_cast<std::size_t>(partitions)) continue;  // not all assigned yet
      rebuild_for = mismatch(*l);
      if (!rebuild_for.empty()) {
        held.clear();
        continue;
      }
      checked = true;
      {
        std::lock_guard lock(offsets_mu_);
        for (const auto& p : *l) start_end_[p.partition] = p.end;
      }
      for (const auto& p : *l) {
        if (p.committed >= 0) bus_committed_[p.partition] = p.committed;
      }
      if (!held.empty()) fold_until_done(held);
      held.clear();
      check_caught_up();
      continue;
    }
    auto batch = consumer_->poll(50ms, options_.max_batch);
    if (!batch) {
      std::this_thread::sleep_for(200ms);
      continue;
    }
    if (!batch->empty()) fold_until_done(*batch);
    if (!batch->empty() && batch->size() < options_.max_batch && options_.batch_linger > 0ms) {
      std::this_thread::sleep_for(options_.batch_linger);
    }
    if (std::chrono::steady_clock::now() - last_bus_commit_ >= options_.bus_commit_interval) commit_to_bus();
    check_caught_up();
  }
  if (checked) commit_to_bus();
}

bool library::wait_past(std::int32_t partition, std::int64_t offset, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(offsets_mu_);
  auto past = [&] {
    const auto it = next_.find(partition);
    return it != next_.end() && it->second > offset;
  };
  offsets_cv_.wait_for(lock, timeout, [&] { return past() || stopping_.load(); });
  return past();
}

// ---- reads ----------------------------------------------------------------------

struct library::reader {
  sql::db_ptr db;
  sql::stmt_ptr find_report, versions_of, previous, place, newest, count;
  std::atomic<std::int64_t> cache_used{0};
};

class library::reader_lease {
 public:
  reader_lease(const library* lib, std::unique_ptr<reader> r) : lib_(lib), r_(std::move(r)) {}
  reader_lease(reader_lease&& other) noexcept = default;
  reader_lease& operator=(reader_lease&&) = delete;
  reader_lease(const reader_lease&) = delete;
  reader_lease& operator=(const reader_lease&) = delete;
  ~reader_lease() {
    if (!r_) return;
    r_->cache_used.store(cache_used(r_->db.get()));
    {
      std::lock_guard lock(lib_->readers_mu_);
      lib_->idle_readers_.push_back(std::move(r_));
    }
    lib_->readers_cv_.notify_one();
  }
  reader& operator*() const { return *r_; }
  reader* operator->() const { return r_.get(); }

 private:
  const library* lib_;
  std::unique_ptr<reader> r_;
};

result<library::reader_lease> library::lease() const {
  {
    std::unique_lock lock(readers_mu_);
    while (true) {
      if (!idle_readers_.empty()) {
        auto r = std::move(idle_readers_.back());
        idle_readers_.pop_back();
        return reader_lease(this, std::move(r));
      }
      if (open_readers_ < options_.readers) break;
      readers_cv_.wait(lock);
    }
    ++open_readers_;  // this thread opens one; others wait for it or another
  }
  auto opened = [&]() -> result<std::unique_ptr<reader>> {
    if (!store_) return fail(errc::unavailable, "the report library is not open", options_.file.string());
    auto db = sql::open_db(options_.file, false, kBusyTimeoutMs);
    if (!db) return std::unexpected(db.error());
    auto r = std::make_unique<reader>();
    r->db = std::move(*db);
    const std::string cache = "PRAGMA cache_size=-" + std::to_string(options_.cache_kib);
    for (const char* pragma : {"PRAGMA query_only=ON", "PRAGMA mmap_size=0", "PRAGMA temp_store=MEMORY", cache.c_str()}) {
      if (auto e = sql::exec(r->db.get(), pragma); !e) return std::unexpected(e.error());
    }
    constexpr const char* kVersionColumns =
        "v.id, v.event_id, v.status, v.status_code, v.issued_at, v.recorded_at, v.supersedes, v.envelope";
    const std::string versions_of = std::string("SELECT ") + kVersionColumns + " FROM versions v WHERE v.report = ?1 ORDER BY v.seq";
    const std::string previous = std::string("SELECT ") + kVersionColumns +
                                 " FROM reports r JOIN versions c ON c.report = r.id "
                                 "JOIN versions v ON v.report = r.id AND v.seq = c.seq - 1 "
                                 "WHERE r.hospital = ?1 AND r.report_id = ?2 AND c.event_id = ?3";
    const std::pair<sql::stmt_ptr*, const char*> statements[] = {
        {&r->find_report, "SELECT id, hospital, report_id FROM reports WHERE hospital = ?1 AND report_id = ?2"},
        {&r->versions_of, versions_of.c_str()},
        {&r->previous, previous.c_str()},
        {&r->place,
         "SELECT v.seq, v.supersedes FROM reports r JOIN versions v ON v.report = r.id "
         "WHERE r.hospital = ?1 AND r.report_id = ?2 AND v.event_id = ?3"},
        // Backwards over reports_newest; the row value comparison is a range on it.
        {&r->newest,
         "SELECT id, hospital, report_id, latest_recorded_at, latest_version FROM reports "
         "WHERE (latest_recorded_at, latest_version) < (?1, ?2) "
         "ORDER BY latest_recorded_at DESC, latest_version DESC LIMIT ?3"},
        {&r->count, "SELECT count(*) FROM reports"},
    };
    if (auto e = prepare_all(r->db.get(), statements); !e) return std::unexpected(e.error());
    return r;
  }();
  if (!opened) {
    {
      std::lock_guard lock(readers_mu_);
      --open_readers_;
    }
    readers_cv_.notify_one();
    return std::unexpected(opened.error());
  }
  {
    std::lock_guard lock(readers_mu_);
    all_readers_.push_back(opened->get());
  }
  return reader_lease(this, std::move(*opened));
}

namespace {

result<report_version> version_from(sqlite3_stmt* s) {
  report_version v{.event_id = text_column(s, 1),
                   .status = static_cast<ev::ReportStatus>(sqlite3_column_int(s, 2)),
                   .status_code = text_column(s, 3),
                   .issued_at = seconds(std::chrono::seconds(sqlite3_column_int64(s, 4))),
                   .recorded_at = seconds(std::chrono::seconds(sqlite3_column_int64(s, 5))),
                   .supersedes = text_column(s, 6),
                   .event = {}};
  const void* blob = sqlite3_column_blob(s, 7);
  const int n = sqlite3_column_bytes(s, 7);
  if (n > 0 && !v.event.ParseFromArray(blob, n)) {
    return fail(errc::corrupt, "a stored report version does not parse as an Envelope", "versions/" + v.event_id);
  }
  return v;
}

result<std::vector<report_version>> versions_of(sqlite3* db, sqlite3_stmt* s, std::int64_t report) {
  sql::reset_guard g(s);
  sqlite3_bind_int64(s, 1, report);
  std::vector<report_version> out;
  for (int rc = sqlite3_step(s);; rc = sqlite3_step(s)) {
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) return std::unexpected(sql::sqlite_error(db, rc, "read versions"));
    auto v = version_from(s);
    if (!v) return std::unexpected(v.error());
    out.push_back(std::move(*v));
  }
  if (out.empty()) return fail(errc::corrupt, "a stored report has no versions", "reports/" + std::to_string(report));
  return out;
}

}  // namespace

result<std::optional<report_entry>> library::find(std::string_view performing_hospital, std::string_view report_id) const {
  auto r = lease();
  if (!r) return std::unexpected(r.error());
  sqlite3* db = (*r)->db.get();
  read_snapshot snap(db);
  if (auto b = snap.begin(); !b) return std::unexpected(b.error());
  sqlite3_stmt* s = (*r)->find_report.get();
  std::int64_t id = 0;
  report_entry entry;
  {
    sql::reset_guard g(s);
    sql::bind_text(s, 1, performing_hospital);
    sql::bind_text(s, 2, report_id);
    const int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) return std::optional<report_entry>();
    if (rc != SQLITE_ROW) return std::unexpected(sql::sqlite_error(db, rc, "find report", std::string(report_id)));
    id = sqlite3_column_int64(s, 0);
    entry.performing_hospital = text_column(s, 1);
    entry.report_id = text_column(s, 2);
  }
  auto versions = versions_of(db, (*r)->versions_of.get(), id);
  if (!versions) return std::unexpected(versions.error());
  entry.versions = std::move(*versions);
  return std::optional<report_entry>(std::move(entry));
}

result<std::optional<report_version>> library::previous(std::string_view performing_hospital,
                                                        std::string_view report_id, std::string_view event_id) const {
  auto r = lease();
  if (!r) return std::unexpected(r.error());
  sqlite3* db = (*r)->db.get();
  sqlite3_stmt* s = (*r)->previous.get();
  sql::reset_guard g(s);
  sql::bind_text(s, 1, performing_hospital);
  sql::bind_text(s, 2, report_id);
  sql::bind_text(s, 3, event_id);
  const int rc = sqlite3_step(s);
  if (rc == SQLITE_DONE) return std::optional<report_version>();
  if (rc != SQLITE_ROW) return std::unexpected(sql::sqlite_error(db, rc, "find previous version", std::string(event_id)));
  auto v = version_from(s);
  if (!v) return std::unexpected(v.error());
  return std::optional<report_version>(std::move(*v));
}

result<std::optional<version_place>> library::place(std::string_view performing_hospital, std::string_view report_id,
                                                    std::string_view event_id) const {
  auto r = lease();
  if (!r) return std::unexpected(r.error());
  sqlite3* db = (*r)->db.get();
  sqlite3_stmt* s = (*r)->place.get();
  sql::reset_guard g(s);
  sql::bind_text(s, 1, performing_hospital);
  sql::bind_text(s, 2, report_id);
  sql::bind_text(s, 3, event_id);
  const int rc = sqlite3_step(s);
  if (rc == SQLITE_DONE) return std::optional<version_place>();
  if (rc != SQLITE_ROW) return std::unexpected(sql::sqlite_error(db, rc, "find version", std::string(event_id)));
  return std::optional<version_place>(version_place{.number = static_cast<std::uint32_t>(sqlite3_column_int64(s, 0)),
                                                    .supersedes = text_column(s, 1)});
}

result<newest_page> library::newest(std::size_t limit, std::optional<newest_cursor> after) const {
  newest_page page;
  if (limit == 0) return page;
  auto r = lease();
  if (!r) return std::unexpected(r.error());
  sqlite3* db = (*r)->db.get();
  read_snapshot snap(db);
  if (auto b = snap.begin(); !b) return std::unexpected(b.error());
  struct row {
    std::int64_t id;
    report_entry entry;
    newest_cursor at;
  };
  std::vector<row> rows;
  {
    sqlite3_stmt* s = (*r)->newest.get();
    sql::reset_guard g(s);
    const newest_cursor from = after.value_or(newest_cursor{.recorded_at = std::numeric_limits<std::int64_t>::max(),
                                                            .version_row = std::numeric_limits<std::int64_t>::max()});
    sqlite3_bind_int64(s, 1, from.recorded_at);
    sqlite3_bind_int64(s, 2, from.version_row);
    // One more than asked: whether there is a next page.
    sqlite3_bind_int64(s, 3, static_cast<std::int64_t>(std::min<std::size_t>(limit, 1U << 30U)) + 1);
    for (int rc = sqlite3_step(s);; rc = sqlite3_step(s)) {
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) return std::unexpected(sql::sqlite_error(db, rc, "list newest reports"));
      rows.push_back(row{.id = sqlite3_column_int64(s, 0),
                         .entry = report_entry{.performing_hospital = text_column(s, 1), .report_id = text_column(s, 2), .versions = {}},
                         .at = newest_cursor{.recorded_at = sqlite3_column_int64(s, 3), .version_row = sqlite3_column_int64(s, 4)}});
    }
  }
  const bool more = rows.size() > limit;
  if (more) rows.resize(limit);
  for (auto& x : rows) {
    auto versions = versions_of(db, (*r)->versions_of.get(), x.id);
    if (!versions) return std::unexpected(versions.error());
    x.entry.versions = std::move(*versions);
  }
  if (more) page.next = rows.back().at;
  page.entries.reserve(rows.size());
  for (auto& x : rows) page.entries.push_back(std::move(x.entry));
  return page;
}

result<std::size_t> library::size() const {
  auto r = lease();
  if (!r) return std::unexpected(r.error());
  sqlite3* db = (*r)->db.get();
  sqlite3_stmt* s = (*r)->count.get();
  sql::reset_guard g(s);
  const int rc = sqlite3_step(s);
  if (rc != SQLITE_ROW) return std::unexpected(sql::sqlite_error(db, rc, "count reports"));
  return static_cast<std::size_t>(sqlite3_column_int64(s, 0));
}

library_stats library::stats() const {
  std::lock_guard lock(stats_mu_);
  return stats_;
}

library_memory library::memory() const {
  library_memory m;
  if (store_) {
    m.connections = 1;
    m.page_cache_bytes = writer_cache_.load();
  }
  {
    std::lock_guard lock(readers_mu_);
    for (const auto* r : all_readers_) m.page_cache_bytes += r->cache_used.load();
    m.connections += all_readers_.size();
  }
  m.page_cache_limit = options_.cache_kib * 1024 * static_cast<std::int64_t>(m.connections);
  {
    std::lock_guard lock(offsets_mu_);
    m.partitions = next_.size();
  }
  return m;
}

}  // namespace yilian::workflows::reports
