#include "engine/store/ingest_store.h"

#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <deque>
#include <future>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>

#include <sqlite3.h>

#include "engine/core/hex.h"
#include "engine/core/log.h"
#include "engine/core/thread.h"
#include "engine/store/sqlite.h"
#include "engine/store/wal_checkpointer.h"

namespace yilian::store {

namespace {

using clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using namespace yilian::store::sql;

// "yl0s": PRAGMA application_id of an ingest store, so we never adopt another
// application's SQLite file.
constexpr std::int64_t kApplicationId = 0x796c3073;
// Raised by every migration step; see migrate().
constexpr std::int64_t kSchemaVersion = 2;

// 2 KiB pages. A commit rewrites whole pages: with the receipts' keys in
// an index written with every message (schema 1), each message cost one page
// there, and the writer wrote 13.9 KB per message with 8 KiB pages, 8.6 KB
// with 4 KiB and 5.9 KB with 2 KiB on the MLLP benchmark (64 senders). The
// keys are now merged in bulk (schema 2; 2.2 KB per message), and a typical
// message (1-2 KB) still fits in one page. Applies when the file is created:
// an older file keeps its pages.
constexpr int kPageSize = 2048;

// Checkpoints on a thread of their own, as in the embedded log: done inline
// they stalled a commit every few dozen for tens of milliseconds.
constexpr sql::wal_checkpoint_options kCheckpoints{
    .every_frames = 1000, .hard_limit_frames = 4000, .thread_name = "yl-ingest-ckpt"};

enum state_code : int { kDone = 0, kPending = 1, kPartial = 2 };

const auto ingest_store_lg = log::get("ingest-store");

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}


// ---- encodings -----------------------------------------------------------------

// Lists of event ids are stored as one blob: per id a 4-byte little-endian
// length, then the bytes.
std::string encode_ids(std::span<const std::string> ids) {
  std::size_t n = 0;
  for (const auto& id : ids) n += 4 + id.size();
  std::string out;
  out.reserve(n);
  for (const auto& id : ids) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((id.size() >> (8 * i)) & 0xffU));
    out += id;
  }
  return out;
}

result<std::vector<std::string>> decode_ids(std::string_view blob, std::string_view where) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at < blob.size()) {
    if (blob.size() - at < 4) return fail(errc::corrupt, "stored event id list is truncated", std::string(where));
    std::size_t n = 0;
    for (std::size_t i = 0; i < 4; ++i) n |= static_cast<std::size_t>(static_cast<unsigned char>(blob[at + i])) << (8 * i);
    at += 4;
    if (blob.size() - at < n) return fail(errc::corrupt, "stored event id list is truncated", std::string(where));
    out.emplace_back(blob.substr(at, n));
    at += n;
  }
  return out;
}

// 64 hex digits -> 32 bytes; nullopt when it is not that.
std::optional<std::string> sha_from_hex(std::string_view hex) {
  if (hex.size() != 64) return std::nullopt;
  std::string out(32, '\0');
  for (std::size_t i = 0; i < 32; ++i) {
    const int hi = hex_value(hex[2 * i]);
    const int lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out[i] = static_cast<char>((hi << 4) | lo);
  }
  return out;
}

std::string sha256_raw(std::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &len, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<const char*>(digest), len);
}

// The map key of a receipt key for in-memory lookups (parked reserves).
std::string packed(const receipt_key& k) {
  std::string out;
  out.reserve(k.hospital.size() + k.facility.size() + k.control_id.size() + 16);
  for (const std::string* part : {&k.hospital, &k.facility, &k.control_id}) {
    out += std::to_string(part->size());
    out += ':';
    out += *part;
  }
  return out;
}

// For maps keyed by receipt_key itself.
struct receipt_key_hash {
  std::size_t operator()(const receipt_key& k) const noexcept {
    const std::hash<std::string> h;
    return h(k.hospital) ^ (h(k.facility) * 31U) ^ (h(k.control_id) * 1'000'003U);
  }
};

std::string describe_key(const receipt_key& k) { return k.hospital + "/" + k.facility + "/" + k.control_id; }

std::string raw_uri(std::string_view hospital, std::int64_t id, std::string_view sha_hex) {
  std::string uri = "raw://";
  uri += hospital;
  uri += '/';
  uri += std::to_string(id);
  uri += '/';
  uri += sha_hex;
  return uri;
}

events::v1::ClaimCheck claim_check(std::string_view hospital, std::int64_t id, const std::string& sha_hex,
                                   std::size_t size, const raw_meta& meta) {
  events::v1::ClaimCheck c;
  c.set_uri(raw_uri(hospital, id, sha_hex));
  c.set_sha256(sha_hex);
  c.set_size_bytes(size);
  c.set_content_type(meta.content_type);
  c.set_charset(meta.charset);
  return c;
}

struct parsed_uri {
  std::string hospital;
  std::int64_t id = 0;
  std::string sha_hex;
};

// "raw://<hospital>/<id>/<sha256 hex>[#fragment]"; hospital ids contain no
// '/'. A fragment names a part of the message (an OBX's embedded document) and
// does not change which bytes are read.
std::optional<parsed_uri> parse_uri(std::string_view uri) {
  constexpr std::string_view scheme = "raw://";
  uri = uri.substr(0, uri.find('#'));
  if (!uri.starts_with(scheme)) return std::nullopt;
  uri.remove_prefix(scheme.size());
  const auto slash1 = uri.find('/');
  if (slash1 == std::string_view::npos || slash1 == 0) return std::nullopt;
  const auto slash2 = uri.find('/', slash1 + 1);
  if (slash2 == std::string_view::npos) return std::nullopt;
  parsed_uri out;
  out.hospital = std::string(uri.substr(0, slash1));
  const auto id_text = uri.substr(slash1 + 1, slash2 - slash1 - 1);
  const auto [end, ec] = std::from_chars(id_text.data(), id_text.data() + id_text.size(), out.id);
  if (ec != std::errc() || end != id_text.data() + id_text.size() || out.id <= 0) return std::nullopt;
  out.sha_hex = std::string(uri.substr(slash2 + 1));
  if (!sha_from_hex(out.sha_hex)) return std::nullopt;
  return out;
}

// ---- schema ------------------------------------------------------------------

// Each step takes the schema from version i to i + 1, inside the open
// transaction. Add steps; never edit a released one.
constexpr const char* kMigrations[] = {
    // 0 -> 1
    "CREATE TABLE meta(name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;"
    "INSERT INTO meta(name, value) VALUES('run', 0);"
    // One row per stored message, appended in id order. Small columns first:
    // reading them never touches the blob's overflow pages.
    "CREATE TABLE raw("
    "  id INTEGER PRIMARY KEY, hospital TEXT NOT NULL, sha256 BLOB NOT NULL, size INTEGER NOT NULL,"
    "  content_type TEXT NOT NULL, charset TEXT NOT NULL, received_at INTEGER NOT NULL, bytes BLOB NOT NULL);"
    // One row per (hospital, facility, control_id); id = its raw row's id.
    // state: 0 done, 1 pending, 2 partial. unpublished: the ids of a partial
    // receipt not yet on the bus. attempt_run/attempt_at: the store run that
    // handed out the attempt now in flight (NULL once settled).
    "CREATE TABLE receipts("
    "  id INTEGER PRIMARY KEY, hospital TEXT NOT NULL, facility TEXT NOT NULL, control_id TEXT NOT NULL,"
    "  sha256 BLOB NOT NULL, state INTEGER NOT NULL, event_ids BLOB NOT NULL, unpublished BLOB,"
    "  message_type TEXT NOT NULL, reserved_at INTEGER NOT NULL, attempt_run INTEGER, attempt_at INTEGER);"
    "CREATE UNIQUE INDEX receipts_key ON receipts(hospital, facility, control_id);"
    // Only the unsettled few: small and hot whatever the table's size.
    "CREATE INDEX receipts_unsettled ON receipts(attempt_at) WHERE attempt_run IS NOT NULL;",
    // 1 -> 2
    // The receipts' keys move out of an index that every message wrote a
    // page of (at its sender's place) into receipt_keys, written in bulk and
    // in key order (see "Receipt keys" in ingest_store.h). Receipts with an
    // id above meta.keys_merged are not in it yet: the store keeps their keys
    // in memory and reads them back from `receipts` when it opens.
    "CREATE TABLE receipt_keys(hospital TEXT NOT NULL, facility TEXT NOT NULL, control_id TEXT NOT NULL,"
    "  id INTEGER NOT NULL, PRIMARY KEY(hospital, facility, control_id)) WITHOUT ROWID;"
    "INSERT INTO receipt_keys(hospital, facility, control_id, id)"
    "  SELECT hospital, facility, control_id, id FROM receipts ORDER BY hospital, facility, control_id;"
    "DROP INDEX receipts_key;"
    "INSERT INTO meta(name, value) VALUES('keys_merged', (SELECT coalesce(max(id), 0) FROM raw));",
};
static_assert(std::size(kMigrations) == kSchemaVersion);

result<void> migrate(sqlite3* db, const std::filesystem::path& file) {
  return sql::migrate(db, file, kApplicationId, "ingest store", kMigrations);
}

}  // namespace

std::string sha256_hex(std::string_view bytes) { return to_hex(sha256_raw(bytes)); }

// ---- requests ----------------------------------------------------------------

namespace {

enum class op_kind { reserve, settle, put_raw };

// One request on its way through the writer. Owned by the queue, then the
// writer's batch, possibly parked, until its handler ran.
struct op {
  op_kind kind = op_kind::reserve;
  std::uint64_t seq = 0;
  bool counted = false;  // toward max_in_flight (reserve, put_raw)

  // reserve, put_raw (put_raw uses req.key.hospital, req.raw, req.meta)
  reserve_request req;
  std::string sha;      // 32 bytes
  std::string sha_hex;  // computed by the caller's thread, not the writer's
  std::int64_t received_at = 0;
  std::size_t size = 0;
  ingest_store::reserve_handler on_reserve;
  ingest_store::raw_handler on_raw;
  clock::time_point park_deadline{};
  bool parked = false;

  // settle: complete (every event published), or abandon / resolve (these were)
  bool complete = false;
  receipt_key key;
  std::vector<std::string> published;
  ingest_store::done_handler on_done;

  // The answer, set inside the transaction, delivered after the commit.
  std::optional<result<reserve_outcome>> reserve_result;
  std::optional<result<events::v1::ClaimCheck>> raw_result;
  std::optional<result<void>> done_result;
};
using op_ptr = std::unique_ptr<op>;

struct atomic_stats {
  std::atomic<std::uint64_t> reserves{0}, fresh{0}, resend_done{0}, resend_pending{0}, conflicts{0}, parked{0},
      settle_timeouts{0}, overloaded{0}, failures{0}, completed{0}, abandoned{0}, partial{0}, transactions{0},
      largest_batch{0}, raw_bytes_written{0}, retention_deleted{0}, writer_cpu_ns{0}, key_merges{0};
};

void bump(std::atomic<std::uint64_t>& a, std::uint64_t n = 1) { a.fetch_add(n, std::memory_order_relaxed); }

}  // namespace

class ingest_store::impl {
 public:
  explicit impl(ingest_store_options o) : options_(std::move(o)) {}
  ~impl() { shutdown(); }
  impl(const impl&) = delete;
  impl& operator=(const impl&) = delete;

  result<void> open();
  void shutdown();

  void submit(op_ptr o);
  void reject(op_ptr o, error why);
  result<void> wait_settle(receipt_key key, std::vector<std::string> found);
  result<void> flush(std::chrono::milliseconds timeout);
  result<std::vector<pending_receipt>> pending();
  result<std::string> read_raw(std::string_view uri);
  result<std::uint64_t> enforce_retention(std::chrono::milliseconds timeout);
  ingest_stats stats() const;
  bool on_store_thread() const {
    const auto me = std::this_thread::get_id();
    return me == writer_id_.load() || me == rejecter_id_.load();
  }

  const ingest_store_options options_;

 private:
  result<void> configure_and_migrate();
  result<void> prepare_statements();
  void writer_main();
  void rejecter_main();
  void commit_batch(std::vector<op_ptr>& batch);
  result<void> execute(std::vector<op_ptr>& batch, std::size_t index);
  result<void> execute_reserve(std::vector<op_ptr>& batch, std::size_t index);
  result<void> execute_settle(std::vector<op_ptr>& batch, op& o);
  result<void> execute_put_raw(op& o);
  result<std::int64_t> insert_raw(op& o);
  result<std::optional<std::int64_t>> receipt_id(const receipt_key& key);
  result<void> forget_key(const receipt_key& key, std::int64_t id);
  result<void> load_recent_keys();
  struct key_chunk {
    std::vector<receipt_key> keys;  // recent_'s keys it holds
    std::int64_t merged_to = 0;       // the new keys_merged
  };
  result<key_chunk> merge_keys();
  void unpark(const receipt_key& key, std::vector<op_ptr>& batch);
  void fail_batch(std::vector<op_ptr>& batch, const error& why);
  void deliver(op_ptr o);
  void release(std::size_t counted);
  void answered(const std::vector<std::uint64_t>& seqs);
  void expire_parked(clock::time_point now);
  clock::time_point next_park_deadline() const;
  void run_retention();
  result<bool> retention_step();

  owner_lock lock_;
  db_ptr db_;      // writer thread (and open)
  std::int64_t run_ = 0;  // this open's run number (meta.run)

  stmt_ptr begin_, commit_, rollback_;
  stmt_ptr find_receipt_, insert_raw_, insert_receipt_, complete_, settle_update_, delete_receipt_, delete_raw_,
      hand_out_;
  stmt_ptr find_key_, insert_key_, delete_key_, set_keys_merged_;
  stmt_ptr retention_scan_, retention_state_, freelist_;

  // Guarded by mu_.
  mutable std::mutex mu_;
  std::condition_variable writer_cv_;
  std::condition_variable flush_cv_;
  std::deque<op_ptr> queue_;
  std::set<std::uint64_t> outstanding_;  // seqs accepted and not yet answered
  std::vector<std::promise<result<std::uint64_t>>> retention_waiters_;
  std::size_t in_flight_ = 0;
  std::uint64_t next_seq_ = 0;
  bool stopping_ = false;
  bool writer_idle_ = false;
  clock::time_point next_retention_ = clock::time_point::max();

  // Writer thread only.
  std::unordered_map<std::string, std::vector<op_ptr>> parked_;
  std::vector<op*> parked_this_batch_;
  std::int64_t retention_cursor_ = 0;
  std::uint64_t retention_progress_ = 0;
  // Receipt keys not in receipt_keys yet: exactly the receipts with an id
  // above keys_merged_ (key -> id). Read again from the file after a
  // rolled-back transaction (recent_stale_ until that worked).
  std::unordered_map<receipt_key, std::int64_t, receipt_key_hash> recent_;
  std::int64_t keys_merged_ = 0;
  std::int64_t next_id_ = 1;  // raw ids are never reused: every id at or below keys_merged_ was merged
  bool recent_stale_ = false;

  // Read connection for read_raw and pending.
  std::mutex reader_mu_;
  db_ptr reader_;

  std::mutex reject_mu_;
  std::condition_variable reject_cv_;
  std::deque<std::pair<op_ptr, error>> rejects_;
  bool reject_stop_ = false;
  bool rejecter_done_ = false;

  std::unique_ptr<sql::wal_checkpointer> checkpointer_;

  atomic_stats stats_;

  std::thread writer_, rejecter_;
  std::atomic<std::thread::id> writer_id_{};
  std::atomic<std::thread::id> rejecter_id_{};
  bool shut_down_ = false;
};

// ---- open / shutdown -----------------------------------------------------------

result<void> ingest_store::impl::open() {
  const auto& o = options_;
  if (o.file.empty()) return fail(errc::config_error, "ingest store file is empty");
  if (o.max_in_flight == 0) return fail(errc::config_error, "max_in_flight must be >= 1");
  if (o.max_batch == 0) return fail(errc::config_error, "max_batch must be >= 1");
  if (o.busy_timeout <= 0ms) return fail(errc::config_error, "busy_timeout must be positive");
  if (o.settle_timeout <= 0ms) return fail(errc::config_error, "settle_timeout must be positive");
  if (o.max_raw_bytes == 0 || o.max_raw_bytes > (1U << 30U)) {
    return fail(errc::config_error, "max_raw_bytes must be in 1..1 GiB");
  }
  if (o.retention_batch == 0) return fail(errc::config_error, "retention_batch must be >= 1");
  if (o.key_merge_at == 0) return fail(errc::config_error, "key_merge_at must be >= 1");
  if (o.key_merge_chunk == 0) return fail(errc::config_error, "key_merge_chunk must be >= 1");
  if (o.retention_check_interval <= 0ms) return fail(errc::config_error, "retention_check_interval must be positive");

  std::error_code ec;
  if (o.file.has_parent_path()) {
    std::filesystem::create_directories(o.file.parent_path(), ec);
    if (ec) return fail(errc::io_error, "cannot create directory: " + ec.message(), o.file.parent_path().string());
  }
  auto lock = owner_lock::take(o.file, "ingest store");
  if (!lock) return std::unexpected(lock.error());
  lock_ = std::move(*lock);

  const int busy_ms = static_cast<int>(std::min<std::int64_t>(o.busy_timeout.count(), 600'000));
  auto db = open_db(o.file, true, busy_ms);
  if (!db) return std::unexpected(db.error());
  db_ = std::move(*db);
  if (auto r = configure_and_migrate(); !r) return r;
  if (auto r = prepare_statements(); !r) return r;
  if (auto r = load_recent_keys(); !r) return r;

  auto reader = open_db(o.file, false, busy_ms);
  if (!reader) return std::unexpected(reader.error());
  reader_ = std::move(*reader);
  if (auto r = exec(reader_.get(), "PRAGMA query_only=ON"); !r) return r;

  auto checkpointer = sql::wal_checkpointer::start(db_.get(), o.file, kCheckpoints);
  if (!checkpointer) return std::unexpected(checkpointer.error());
  checkpointer_ = std::move(*checkpointer);

  if (o.raw_retention_ms >= 0) next_retention_ = clock::now() + o.retention_check_interval;
  rejecter_ = std::thread([this] { rejecter_main(); });
  writer_ = std::thread([this] { writer_main(); });
  return {};
}

result<void> ingest_store::impl::configure_and_migrate() {
  sqlite3* db = db_.get();
  // A receipt whose reserve reported success survives power loss.
  if (auto r = configure_durable(db, options_.file, kPageSize); !r) return r;

  if (auto r = exec(db, "BEGIN IMMEDIATE"); !r) return r;
  auto body = [&]() -> result<void> {
    if (auto r = migrate(db, options_.file); !r) return r;
    if (auto r = exec(db, "UPDATE meta SET value = value + 1 WHERE name = 'run'"); !r) return r;
    auto run = query_int(db, "SELECT value FROM meta WHERE name = 'run'");
    if (!run) return std::unexpected(run.error());
    run_ = *run;
    return {};
  };
  if (auto r = body(); !r) {
    (void)exec(db, "ROLLBACK");
    return r;
  }
  if (auto r = exec(db, "COMMIT"); !r) return r;
  const auto dir = options_.file.has_parent_path() ? options_.file.parent_path() : std::filesystem::path(".");
  return sync_directory(dir);
}

result<void> ingest_store::impl::prepare_statements() {
  sqlite3* db = db_.get();
  const std::pair<stmt_ptr*, const char*> all[] = {
      {&begin_, "BEGIN IMMEDIATE"},
      {&commit_, "COMMIT"},
      {&rollback_, "ROLLBACK"},
      {&find_receipt_, "SELECT id, sha256, state, event_ids, unpublished, attempt_run FROM receipts WHERE id = ?1"},
      {&find_key_, "SELECT id FROM receipt_keys WHERE hospital = ?1 AND facility = ?2 AND control_id = ?3"},
      {&insert_key_, "INSERT INTO receipt_keys(hospital, facility, control_id, id) VALUES(?1, ?2, ?3, ?4)"},
      {&delete_key_, "DELETE FROM receipt_keys WHERE hospital = ?1 AND facility = ?2 AND control_id = ?3"},
      {&set_keys_merged_, "UPDATE meta SET value = ?1 WHERE name = 'keys_merged'"},
      {&insert_raw_,
       "INSERT INTO raw(id, hospital, sha256, size, content_type, charset, received_at, bytes) "
       "VALUES(?8, ?1, ?2, ?3, ?4, ?5, ?6, ?7)"},
      {&insert_receipt_,
       "INSERT INTO receipts(id, hospital, facility, control_id, sha256, state, event_ids, unpublished,"
       " message_type, reserved_at, attempt_run, attempt_at) VALUES(?1, ?2, ?3, ?4, ?5, 1, ?6, NULL, ?7, ?8, ?9, ?8)"},
      // complete(): by the receipt's id, which receipt_id() found in memory or in receipt_keys.
      {&complete_,
       "UPDATE receipts SET state = 0, unpublished = NULL, attempt_run = NULL, attempt_at = NULL "
       "WHERE id = ?1 AND state != 0"},
      {&settle_update_,
       "UPDATE receipts SET state = ?2, unpublished = ?3, attempt_run = NULL, attempt_at = NULL WHERE id = ?1"},
      {&delete_receipt_, "DELETE FROM receipts WHERE id = ?1"},
      {&delete_raw_, "DELETE FROM raw WHERE id = ?1"},
      {&hand_out_, "UPDATE receipts SET attempt_run = ?2, attempt_at = ?3 WHERE id = ?1"},
      {&retention_scan_, "SELECT id, received_at FROM raw WHERE id > ?1 ORDER BY id LIMIT ?2"},
      {&retention_state_, "SELECT state, hospital, facility, control_id FROM receipts WHERE id = ?1"},
      {&freelist_, "PRAGMA freelist_count"},
  };
  for (const auto& [slot, text] : all) {
    auto s = prepare(db, text);
    if (!s) return std::unexpected(s.error());
    *slot = std::move(*s);
  }
  return {};
}

void ingest_store::impl::shutdown() {
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
  flush_cv_.notify_all();
  for (stmt_ptr* s : {&begin_, &commit_, &rollback_, &find_receipt_, &find_key_, &insert_key_, &delete_key_,
                      &set_keys_merged_, &insert_raw_, &insert_receipt_, &complete_,
                      &settle_update_, &delete_receipt_, &delete_raw_, &hand_out_, &retention_scan_,
                      &retention_state_, &freelist_}) {
    s->reset();
  }
  {
    std::lock_guard lock(reader_mu_);
    reader_.reset();
  }
  db_.reset();
  lock_ = owner_lock();
}

// ---- submitting ----------------------------------------------------------------

void ingest_store::impl::submit(op_ptr o) {
  std::unique_lock lock(mu_);
  if (stopping_) {
    lock.unlock();
    reject(std::move(o), error::make(errc::cancelled, "the ingest store is shutting down", options_.file.string()));
    return;
  }
  if (o->counted) {
    if (in_flight_ >= options_.max_in_flight) {
      lock.unlock();
      bump(stats_.overloaded);
      reject(std::move(o), error::make(errc::overloaded,
                                       std::to_string(options_.max_in_flight) + " ingest requests already in flight",
                                       options_.file.string()));
      return;
    }
    ++in_flight_;
  }
  o->seq = ++next_seq_;
  outstanding_.insert(o->seq);
  queue_.push_back(std::move(o));
  const bool wake = writer_idle_;
  lock.unlock();
  if (wake) writer_cv_.notify_one();
}

void ingest_store::impl::reject(op_ptr o, error why) {
  {
    std::unique_lock lock(reject_mu_);
    if (!rejecter_done_) {
      rejects_.emplace_back(std::move(o), std::move(why));
      lock.unlock();
      reject_cv_.notify_one();
      return;
    }
  }
  // Only after shutdown, which the caller must not race with.
  o->reserve_result = std::unexpected(why);
  o->raw_result = std::unexpected(why);
  o->done_result = std::unexpected(why);
  deliver(std::move(o));
}

void ingest_store::impl::rejecter_main() {
  name_this_thread("yl-ingest-rej");
  rejecter_id_.store(std::this_thread::get_id());
  for (;;) {
    std::deque<std::pair<op_ptr, error>> batch;
    {
      std::unique_lock lock(reject_mu_);
      reject_cv_.wait(lock, [&] { return !rejects_.empty() || reject_stop_; });
      if (rejects_.empty()) {
        rejecter_done_ = true;
        return;
      }
      batch.swap(rejects_);
    }
    for (auto& [o, why] : batch) {
      if (o->kind == op_kind::reserve) bump(stats_.reserves);
      o->reserve_result = std::unexpected(why);
      o->raw_result = std::unexpected(why);
      o->done_result = std::unexpected(why);
      deliver(std::move(o));
    }
  }
}

// Calls the op's handler with its answer.
void ingest_store::impl::deliver(op_ptr o) {
  switch (o->kind) {
    case op_kind::reserve:
      if (o->on_reserve) o->on_reserve(std::move(*o->reserve_result));
      break;
    case op_kind::put_raw:
      if (o->on_raw) o->on_raw(std::move(*o->raw_result));
      break;
    case op_kind::settle:
      if (o->on_done) o->on_done(std::move(*o->done_result));
      break;
  }
}

// Frees in-flight slots before the handlers run, so a handler (or a caller
// it wakes) can reserve the next message at once.
void ingest_store::impl::release(std::size_t counted) {
  if (counted == 0) return;
  std::lock_guard lock(mu_);
  in_flight_ -= counted;
}

// After the handlers ran: what flush() waits for.
void ingest_store::impl::answered(const std::vector<std::uint64_t>& seqs) {
  {
    std::lock_guard lock(mu_);
    for (const auto s : seqs) outstanding_.erase(s);
  }
  flush_cv_.notify_all();
}

result<void> ingest_store::impl::flush(std::chrono::milliseconds timeout) {
  if (on_store_thread()) return fail(errc::invalid_argument, "flush called from an ingest store handler");
  std::unique_lock lock(mu_);
  const std::uint64_t target = next_seq_;
  if (!flush_cv_.wait_for(lock, timeout,
                          [&] { return outstanding_.empty() || *outstanding_.begin() > target; })) {
    return fail(errc::timeout, "ingest requests still in flight", options_.file.string());
  }
  return {};
}

result<void> ingest_store::impl::wait_settle(receipt_key key, std::vector<std::string> found) {
  const std::string where = describe_key(key);
  if (on_store_thread()) return fail(errc::invalid_argument, "resolve called from an ingest store handler");
  auto promise = std::make_shared<std::promise<result<void>>>();
  auto done = promise->get_future();
  auto o = std::make_unique<op>();
  o->kind = op_kind::settle;
  o->key = std::move(key);
  o->published = std::move(found);
  o->on_done = [promise](result<void> r) { promise->set_value(std::move(r)); };
  submit(std::move(o));
  // The writer answers it, or retries it while the disk fails: bounded here.
  if (done.wait_for(std::chrono::minutes(1)) != std::future_status::ready) {
    return fail(errc::timeout, "the receipt could not be settled within a minute (the store cannot write)",
                where);
  }
  return done.get();
}

// ---- the writer ------------------------------------------------------------------

clock::time_point ingest_store::impl::next_park_deadline() const {
  auto next = clock::time_point::max();
  for (const auto& [k, ops] : parked_) {
    for (const auto& o : ops) next = std::min(next, o->park_deadline);
  }
  return next;
}

void ingest_store::impl::writer_main() {
  name_this_thread("yl-ingest-wr");
  writer_id_.store(std::this_thread::get_id());
  std::vector<op_ptr> batch;
  for (;;) {
    bool retention_due = false;
    bool stop = false;
    const auto park_deadline = next_park_deadline();
    {
      std::unique_lock lock(mu_);
      for (;;) {
        const auto now = clock::now();
        retention_due = !stopping_ && (now >= next_retention_ || !retention_waiters_.empty());
        if (!queue_.empty() || retention_due || now >= park_deadline) break;
        if (stopping_) {
          stop = true;
          break;
        }
        writer_idle_ = true;
        writer_cv_.wait_until(lock, std::min(next_retention_, park_deadline));
        writer_idle_ = false;
      }
      const std::size_t n = std::min(queue_.size(), options_.max_batch);
      for (std::size_t i = 0; i < n; ++i) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    if (stop) {
      // Parked reserves wait for attempts that can no longer settle here.
      std::vector<op_ptr> left;
      for (auto& [k, ops] : parked_) {
        for (auto& o : ops) left.push_back(std::move(o));
      }
      parked_.clear();
      fail_batch(left, error::make(errc::cancelled, "the ingest store shut down while an earlier attempt was in flight",
                                   options_.file.string()));
      std::vector<std::promise<result<std::uint64_t>>> waiters;
      {
        std::lock_guard lock(mu_);
        waiters.swap(retention_waiters_);
      }
      for (auto& w : waiters) w.set_value(fail(errc::cancelled, "the ingest store is shutting down"));
      return;
    }
    const auto cpu_before = thread_cpu_ns();
    expire_parked(clock::now());
    if (!batch.empty()) commit_batch(batch);
    batch.clear();
    if (retention_due) run_retention();
    stats_.writer_cpu_ns.store(stats_.writer_cpu_ns.load(std::memory_order_relaxed) + (thread_cpu_ns() - cpu_before),
                               std::memory_order_relaxed);
  }
}

void ingest_store::impl::expire_parked(clock::time_point now) {
  std::vector<op_ptr> expired;
  for (auto it = parked_.begin(); it != parked_.end();) {
    auto& ops = it->second;
    for (auto& o : ops) {
      if (o->park_deadline <= now) expired.push_back(std::move(o));
    }
    std::erase(ops, nullptr);
    it = ops.empty() ? parked_.erase(it) : std::next(it);
  }
  if (expired.empty()) return;
  bump(stats_.settle_timeouts, expired.size());
  fail_batch(expired, error::make(errc::timeout,
                                  "an earlier attempt of this message is still being published (not settled within "
                                  "settle_timeout)",
                                  options_.file.string()));
}

// Answers every op in `batch` with `why` (reserve/put_raw) or requeues it
// (settles: they must not be lost; they are idempotent).
void ingest_store::impl::fail_batch(std::vector<op_ptr>& batch, const error& why) {
  std::vector<std::uint64_t> seqs;
  std::size_t counted = 0;
  std::vector<op_ptr> requeue;
  std::vector<op_ptr> answer;
  for (auto& o : batch) {
    if (!o) continue;
    if (o->kind == op_kind::settle) {
      std::lock_guard lock(mu_);
      if (!stopping_) {
        requeue.push_back(std::move(o));
        continue;
      }
    }
    if (o->counted) ++counted;
    answer.push_back(std::move(o));
  }
  if (!requeue.empty()) {
    std::lock_guard lock(mu_);
    queue_.insert(queue_.begin(), std::make_move_iterator(requeue.begin()), std::make_move_iterator(requeue.end()));
  }
  release(counted);
  for (auto& o : answer) {
    if (o->kind != op_kind::settle) bump(stats_.failures);
    if (o->kind == op_kind::reserve) bump(stats_.reserves);
    o->reserve_result = std::unexpected(why);
    o->raw_result = std::unexpected(why);
    o->done_result = std::unexpected(why);
    seqs.push_back(o->seq);
    deliver(std::move(o));
  }
  answered(seqs);
  if (!requeue.empty()) std::this_thread::sleep_for(10ms);  // do not spin on a failing disk
}

void ingest_store::impl::commit_batch(std::vector<op_ptr>& batch) {
  sqlite3* db = db_.get();
  parked_this_batch_.clear();
  if (recent_stale_) {
    if (auto r = load_recent_keys(); !r) {
      fail_batch(batch, r.error());
      return;
    }
  }
  if (const int rc = run(begin_.get()); rc != SQLITE_DONE) {
    fail_batch(batch, sqlite_error(db, rc, "begin transaction", options_.file.string()));
    return;
  }
  auto abort = [&](const error& why) {
    run(rollback_.get());
    recent_stale_ = true;  // read again before the next batch
    // Reserves parked in this batch may wait on an attempt this batch made.
    for (op* p : parked_this_batch_) {
      auto it = parked_.find(packed(p->req.key));
      if (it == parked_.end()) continue;
      for (auto& o : it->second) {
        if (o.get() == p) batch.push_back(std::move(o));
      }
      std::erase(it->second, nullptr);
      if (it->second.empty()) parked_.erase(it);
    }
    fail_batch(batch, why);
  };
  // The batch grows while it runs: settling a key unparks its waiters.
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (auto r = execute(batch, i); !r) return abort(r.error());
  }
  std::optional<key_chunk> merged;
  if (recent_.size() >= options_.key_merge_at) {
    auto m = merge_keys();
    if (m) {
      merged = std::move(*m);
    } else {
      // Kept in memory and tried again with the next batch, after reading
      // back from the file what it holds (whatever this transaction commits).
      recent_stale_ = true;
      ingest_store_lg.warn("ingest store: cannot merge receipt keys; will retry",
                           {log::field("error", m.error().describe())});
    }
  }
  if (const int rc = run(commit_.get()); rc != SQLITE_DONE) {
    return abort(sqlite_error(db, rc, "commit", options_.file.string()));
  }
  if (merged && !merged->keys.empty()) {
    for (const auto& k : merged->keys) recent_.erase(k);
    keys_merged_ = merged->merged_to;
    bump(stats_.key_merges);
  }

  // Durable: answer in order.
  std::size_t ops = 0;
  std::size_t counted = 0;
  std::vector<std::uint64_t> seqs;
  seqs.reserve(batch.size());
  for (const auto& o : batch) {
    if (o && o->counted) ++counted;
  }
  release(counted);
  for (auto& o : batch) {
    if (!o) continue;  // parked
    ++ops;
    seqs.push_back(o->seq);
    if (o->kind == op_kind::reserve) {
      bump(stats_.reserves);
      if (!*o->reserve_result) {
        bump(stats_.failures);
      } else {
        switch (o->reserve_result->value().what) {
          case reserve_outcome::kind::fresh:
            bump(stats_.fresh);
            break;
          case reserve_outcome::kind::resend_done:
            bump(stats_.resend_done);
            break;
          case reserve_outcome::kind::resend_pending:
            bump(stats_.resend_pending);
            break;
          case reserve_outcome::kind::conflict:
            bump(stats_.conflicts);
            break;
        }
      }
    }
    deliver(std::move(o));
  }
  bump(stats_.transactions);
  if (ops > stats_.largest_batch.load(std::memory_order_relaxed)) {
    stats_.largest_batch.store(ops, std::memory_order_relaxed);
  }
  answered(seqs);
  checkpointer_->finish_if_too_long();
}

result<void> ingest_store::impl::execute(std::vector<op_ptr>& batch, std::size_t index) {
  op& o = *batch[index];
  switch (o.kind) {
    case op_kind::reserve:
      return execute_reserve(batch, index);
    case op_kind::settle:
      return execute_settle(batch, o);
    case op_kind::put_raw:
      return execute_put_raw(o);
  }
  return {};
}

result<std::int64_t> ingest_store::impl::insert_raw(op& o) {
  sqlite3_stmt* s = insert_raw_.get();
  reset_guard guard(s);
  bind_text(s, 1, o.req.key.hospital);
  bind_blob(s, 2, o.sha);
  sqlite3_bind_int64(s, 3, static_cast<std::int64_t>(o.size));
  bind_text(s, 4, o.req.meta.content_type);
  bind_text(s, 5, o.req.meta.charset);
  sqlite3_bind_int64(s, 6, o.received_at);
  bind_blob(s, 7, o.req.raw);  // the caller's buffer, not copied
  const std::int64_t id = next_id_++;  // a rolled-back id is skipped, never reused
  sqlite3_bind_int64(s, 8, id);
  if (const int rc = sqlite3_step(s); rc != SQLITE_DONE) {
    return std::unexpected(sqlite_error(db_.get(), rc, "store raw bytes", describe_key(o.req.key)));
  }
  bump(stats_.raw_bytes_written, o.size);
  return id;
}

// ---- receipt keys ------------------------------------------------------------------

result<std::optional<std::int64_t>> ingest_store::impl::receipt_id(const receipt_key& key) {
  if (const auto it = recent_.find(key); it != recent_.end()) return it->second;
  sqlite3_stmt* s = find_key_.get();
  reset_guard guard(s);
  bind_text(s, 1, key.hospital);
  bind_text(s, 2, key.facility);
  bind_text(s, 3, key.control_id);
  const int rc = sqlite3_step(s);
  if (rc == SQLITE_ROW) return sqlite3_column_int64(s, 0);
  if (rc != SQLITE_DONE) return std::unexpected(sqlite_error(db_.get(), rc, "look up receipt key", describe_key(key)));
  return std::nullopt;
}

// The receipt `id` of `key` is being deleted in this transaction.
result<void> ingest_store::impl::forget_key(const receipt_key& key, std::int64_t id) {
  if (id > keys_merged_) {
    recent_.erase(key);
    return {};
  }
  sqlite3_stmt* s = delete_key_.get();
  reset_guard guard(s);
  bind_text(s, 1, key.hospital);
  bind_text(s, 2, key.facility);
  bind_text(s, 3, key.control_id);
  if (const int rc = sqlite3_step(s); rc != SQLITE_DONE) {
    return std::unexpected(sqlite_error(db_.get(), rc, "delete receipt key", describe_key(key)));
  }
  return {};
}

// recent_ from the file: the receipts above keys_merged. At open, and after
// a rolled-back transaction whose changes recent_ already had.
result<void> ingest_store::impl::load_recent_keys() {
  sqlite3* db = db_.get();
  auto merged = query_int(db, "SELECT value FROM meta WHERE name = 'keys_merged'");
  if (!merged) return std::unexpected(merged.error());
  auto newest = query_int(db, "SELECT coalesce(max(id), 0) FROM raw");
  if (!newest) return std::unexpected(newest.error());
  auto s = prepare(db, "SELECT hospital, facility, control_id, id FROM receipts WHERE id > ?1");
  if (!s) return std::unexpected(s.error());
  sqlite3_bind_int64(s->get(), 1, *merged);
  std::unordered_map<receipt_key, std::int64_t, receipt_key_hash> recent;
  int rc = SQLITE_OK;
  while ((rc = sqlite3_step(s->get())) == SQLITE_ROW) {
    recent.emplace(receipt_key{.hospital = column_bytes(s->get(), 0), .facility = column_bytes(s->get(), 1),
                               .control_id = column_bytes(s->get(), 2)},
                   sqlite3_column_int64(s->get(), 3));
  }
  if (rc != SQLITE_DONE) return std::unexpected(sqlite_error(db, rc, "load recent receipt keys"));
  recent_ = std::move(recent);
  keys_merged_ = *merged;
  next_id_ = std::max({next_id_, *newest + 1, *merged + 1});
  recent_stale_ = false;
  return {};
}

// Inside the batch's open transaction, under a savepoint (a failure undoes
// only the merge): the options.key_merge_chunk receipts of recent_ with the
// lowest ids go into receipt_keys, in key order, so a sender's keys land side
// by side; meta.keys_merged becomes the highest of those ids, and every
// receipt at or below it is then in receipt_keys (or deleted). recent_ and
// keys_merged_ follow only once the batch has committed (commit_batch).
result<ingest_store::impl::key_chunk> ingest_store::impl::merge_keys() {
  sqlite3* db = db_.get();
  std::vector<const std::pair<const receipt_key, std::int64_t>*> keys;
  keys.reserve(recent_.size());
  for (const auto& entry : recent_) keys.push_back(&entry);
  const std::size_t n = std::min(keys.size(), options_.key_merge_chunk);
  if (n == 0) return key_chunk{};
  const auto by_id = [](const auto* a, const auto* b) { return a->second < b->second; };
  std::nth_element(keys.begin(), keys.begin() + static_cast<std::ptrdiff_t>(n - 1), keys.end(), by_id);
  key_chunk chunk{.keys = {}, .merged_to = keys[n - 1]->second};
  keys.resize(n);
  std::sort(keys.begin(), keys.end(), [](const auto* a, const auto* b) {
    const receipt_key& x = a->first;
    const receipt_key& y = b->first;
    return std::tie(x.hospital, x.facility, x.control_id) < std::tie(y.hospital, y.facility, y.control_id);
  });
  if (auto r = exec(db, "SAVEPOINT merge_keys"); !r) return std::unexpected(r.error());
  auto body = [&]() -> result<void> {
    for (const auto* entry : keys) {
      const auto& [key, id] = *entry;
      sqlite3_stmt* s = insert_key_.get();
      reset_guard guard(s);
      bind_text(s, 1, key.hospital);
      bind_text(s, 2, key.facility);
      bind_text(s, 3, key.control_id);
      sqlite3_bind_int64(s, 4, id);
      if (const int rc = sqlite3_step(s); rc != SQLITE_DONE) {
        return std::unexpected(sqlite_error(db, rc, "merge receipt keys", describe_key(key)));
      }
    }
    sqlite3_stmt* s = set_keys_merged_.get();
    reset_guard guard(s);
    sqlite3_bind_int64(s, 1, chunk.merged_to);
    if (const int rc = sqlite3_step(s); rc != SQLITE_DONE) {
      return std::unexpected(sqlite_error(db, rc, "merge receipt keys: meta", options_.file.string()));
    }
    return {};
  };
  if (auto r = body(); !r) {
    (void)exec(db, "ROLLBACK TO merge_keys");
    (void)exec(db, "RELEASE merge_keys");
    return std::unexpected(r.error());
  }
  if (auto r = exec(db, "RELEASE merge_keys"); !r) return std::unexpected(r.error());
  chunk.keys.reserve(n);
  for (const auto* entry : keys) chunk.keys.push_back(entry->first);
  return chunk;
}

result<void> ingest_store::impl::execute_put_raw(op& o) {
  auto id = insert_raw(o);
  if (!id) return std::unexpected(id.error());
  o.raw_result = claim_check(o.req.key.hospital, *id, o.sha_hex, o.size, o.req.meta);
  std::string().swap(o.req.raw);  // in SQLite's pages now; do not hold a second copy until the commit
  return {};
}

result<void> ingest_store::impl::execute_reserve(std::vector<op_ptr>& batch, std::size_t index) {
  op& o = *batch[index];
  sqlite3* db = db_.get();
  const auto& key = o.req.key;
  const std::string& sha_hex = o.sha_hex;

  struct found_row {
    std::int64_t id = 0;
    std::string sha;
    int state = 0;
    std::string event_ids;
    std::string unpublished;
    bool attempt = false;
    std::int64_t attempt_run = 0;
  };
  std::optional<found_row> row;
  auto found = receipt_id(key);
  if (!found) return std::unexpected(found.error());
  if (*found) {
    sqlite3_stmt* s = find_receipt_.get();
    reset_guard guard(s);
    sqlite3_bind_int64(s, 1, **found);
    const int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
      row = found_row{.id = sqlite3_column_int64(s, 0), .sha = column_bytes(s, 1), .state = sqlite3_column_int(s, 2),
                      .event_ids = column_bytes(s, 3), .unpublished = column_bytes(s, 4),
                      .attempt = sqlite3_column_type(s, 5) != SQLITE_NULL, .attempt_run = sqlite3_column_int64(s, 5)};
    } else if (rc == SQLITE_DONE) {
      return fail(errc::corrupt, "a receipt key names no receipt", describe_key(key));
    } else {
      return std::unexpected(sqlite_error(db, rc, "look up receipt", describe_key(key)));
    }
  }

  if (!row) {
    auto id = insert_raw(o);
    if (!id) return std::unexpected(id.error());
    std::string().swap(o.req.raw);
    const std::string ids = encode_ids(o.req.event_ids);
    sqlite3_stmt* s = insert_receipt_.get();
    reset_guard guard(s);
    sqlite3_bind_int64(s, 1, *id);
    bind_text(s, 2, key.hospital);
    bind_text(s, 3, key.facility);
    bind_text(s, 4, key.control_id);
    bind_blob(s, 5, o.sha);
    bind_blob(s, 6, ids);
    bind_text(s, 7, o.req.message_type);
    sqlite3_bind_int64(s, 8, wall_ms());
    sqlite3_bind_int64(s, 9, run_);
    if (const int rc = sqlite3_step(s); rc != SQLITE_DONE) {
      return std::unexpected(sqlite_error(db, rc, "insert receipt", describe_key(key)));
    }
    recent_.insert_or_assign(key, *id);
    reserve_outcome out{.what = reserve_outcome::kind::fresh,
                        .raw_ref = claim_check(key.hospital, *id, sha_hex, o.size, o.req.meta),
                        .unpublished_event_ids = std::move(o.req.event_ids),
                        .existing_sha256 = {}};
    o.reserve_result = std::move(out);
    return {};
  }

  if (row->sha != o.sha) {
    o.reserve_result = reserve_outcome{.what = reserve_outcome::kind::conflict, .raw_ref = {},
                                       .unpublished_event_ids = {}, .existing_sha256 = to_hex(row->sha)};
    return {};
  }
  auto ref = claim_check(key.hospital, row->id, sha_hex, o.size, o.req.meta);
  if (row->state == kDone) {
    o.reserve_result = reserve_outcome{.what = reserve_outcome::kind::resend_done, .raw_ref = std::move(ref),
                                       .unpublished_event_ids = {}, .existing_sha256 = {}};
    return {};
  }
  if (row->attempt && row->attempt_run == run_) {
    // An attempt handed out by this process is still publishing: wait for it.
    o.parked = true;
    o.park_deadline = clock::now() + options_.settle_timeout;
    bump(stats_.parked);
    parked_this_batch_.push_back(&o);
    parked_[packed(key)].push_back(std::move(batch[index]));
    return {};
  }
  if (row->attempt) {
    o.reserve_result = fail(errc::unavailable,
                            "an attempt from before the last restart is not resolved yet (recover_pending has not run)",
                            describe_key(key));
    return {};
  }
  if (row->state != kPartial) {
    return fail(errc::corrupt, "pending receipt without an attempt", describe_key(key));
  }
  auto unpublished = decode_ids(row->unpublished, describe_key(key));
  if (!unpublished) return std::unexpected(unpublished.error());
  {
    sqlite3_stmt* s = hand_out_.get();
    reset_guard guard(s);
    sqlite3_bind_int64(s, 1, row->id);
    sqlite3_bind_int64(s, 2, run_);
    sqlite3_bind_int64(s, 3, wall_ms());
    if (const int rc = sqlite3_step(s); rc != SQLITE_DONE) {
      return std::unexpected(sqlite_error(db, rc, "hand out attempt", describe_key(key)));
    }
  }
  o.reserve_result = reserve_outcome{.what = reserve_outcome::kind::resend_pending, .raw_ref = std::move(ref),
                                     .unpublished_event_ids = std::move(*unpublished), .existing_sha256 = {}};
  return {};
}

result<void> ingest_store::impl::execute_settle(std::vector<op_ptr>& batch, op& o) {
  sqlite3* db = db_.get();
  const auto& key = o.key;
  o.done_result = result<void>{};
  auto found = receipt_id(key);
  if (!found) return std::unexpected(found.error());
  if (!*found) {  // no such receipt: nothing to settle
    unpark(key, batch);
    return {};
  }
  if (o.complete) {
    sqlite3_stmt* s = complete_.get();
    reset_guard guard(s);
    sqlite3_bind_int64(s, 1, **found);
    if (const int rc = sqlite3_step(s); rc != SQLITE_DONE) {
      return std::unexpected(sqlite_error(db, rc, "complete receipt", describe_key(key)));
    }
    if (sqlite3_changes(db) > 0) bump(stats_.completed);
    unpark(key, batch);
    return {};
  }

  std::int64_t id = 0;
  int state = kDone;
  std::string event_ids;
  std::string unpublished;
  {
    sqlite3_stmt* s = find_receipt_.get();
    reset_guard guard(s);
    sqlite3_bind_int64(s, 1, **found);
    const int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) return fail(errc::corrupt, "a receipt key names no receipt", describe_key(key));
    if (rc != SQLITE_ROW) return std::unexpected(sqlite_error(db, rc, "look up receipt", describe_key(key)));
    id = sqlite3_column_int64(s, 0);
    state = sqlite3_column_int(s, 2);
    event_ids = column_bytes(s, 3);
    unpublished = column_bytes(s, 4);
  }
  if (state == kDone) {
    unpark(key, batch);
    return {};
  }
  auto all = decode_ids(event_ids, describe_key(key));
  if (!all) return std::unexpected(all.error());
  std::vector<std::string> current;
  if (state == kPending) {
    current = *all;
  } else {
    auto listed = decode_ids(unpublished, describe_key(key));
    if (!listed) return std::unexpected(listed.error());
    current = std::move(*listed);
  }
  const std::unordered_set<std::string> published(o.published.begin(), o.published.end());
  std::erase_if(current, [&](const std::string& e) { return published.contains(e); });

  if (state == kPending && current.size() == all->size() && !all->empty()) {
    // Nothing of it is on the bus: forget it, so the resend is fresh.
    for (sqlite3_stmt* s : {delete_receipt_.get(), delete_raw_.get()}) {
      reset_guard guard(s);
      sqlite3_bind_int64(s, 1, id);
      if (const int rc = sqlite3_step(s); rc != SQLITE_DONE) {
        return std::unexpected(sqlite_error(db, rc, "delete receipt", describe_key(key)));
      }
    }
    if (auto r = forget_key(key, id); !r) return r;
    bump(stats_.abandoned);
  } else {
    const std::string rest = encode_ids(current);
    sqlite3_stmt* s = settle_update_.get();
    reset_guard guard(s);
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int(s, 2, current.empty() ? kDone : kPartial);
    if (current.empty()) {
      sqlite3_bind_null(s, 3);
    } else {
      bind_blob(s, 3, rest);
    }
    if (const int rc = sqlite3_step(s); rc != SQLITE_DONE) {
      return std::unexpected(sqlite_error(db, rc, "settle receipt", describe_key(key)));
    }
    bump(current.empty() ? stats_.completed : stats_.partial);
  }
  unpark(key, batch);
  return {};
}

// The reserves waiting for `key` run next in this same transaction and see
// the state it settled to.
void ingest_store::impl::unpark(const receipt_key& key, std::vector<op_ptr>& batch) {
  if (parked_.empty()) return;
  auto it = parked_.find(packed(key));
  if (it == parked_.end()) return;
  for (auto& o : it->second) {
    o->parked = false;
    batch.push_back(std::move(o));
  }
  parked_.erase(it);
}

// ---- retention -------------------------------------------------------------------

result<std::uint64_t> ingest_store::impl::enforce_retention(std::chrono::milliseconds timeout) {
  if (on_store_thread()) return fail(errc::invalid_argument, "enforce_retention called from an ingest store handler");
  std::promise<result<std::uint64_t>> promise;
  auto done = promise.get_future();
  {
    std::lock_guard lock(mu_);
    if (stopping_) return fail(errc::cancelled, "the ingest store is shutting down");
    retention_waiters_.push_back(std::move(promise));
  }
  writer_cv_.notify_one();
  if (done.wait_for(timeout) != std::future_status::ready) {
    return fail(errc::timeout, "retention still running (it continues in the background)", options_.file.string());
  }
  return done.get();
}

void ingest_store::impl::run_retention() {
  auto more = retention_step();
  std::vector<std::promise<result<std::uint64_t>>> waiters;
  {
    std::lock_guard lock(mu_);
    const auto now = clock::now();
    if (more && *more) {
      next_retention_ = now;  // continue after the next batch of requests
      return;
    }
    next_retention_ = options_.raw_retention_ms >= 0 ? now + options_.retention_check_interval
                                                     : clock::time_point::max();
    waiters.swap(retention_waiters_);
  }
  for (auto& w : waiters) {
    if (more) {
      w.set_value(retention_progress_);
    } else {
      w.set_value(std::unexpected(more.error()));
    }
  }
  retention_progress_ = 0;
  retention_cursor_ = 0;
}

// One transaction: up to retention_batch raw rows from the cursor on, in id
// (= arrival) order; deletes those older than the cutoff whose receipt is
// done (or that have none), skips the others. Returns whether more is due.
result<bool> ingest_store::impl::retention_step() {
  if (options_.raw_retention_ms < 0) return false;
  if (recent_stale_) {
    if (auto r = load_recent_keys(); !r) return std::unexpected(r.error());
  }
  sqlite3* db = db_.get();
  const std::int64_t cutoff = wall_ms() - options_.raw_retention_ms;
  if (const int rc = run(begin_.get()); rc != SQLITE_DONE) {
    return std::unexpected(sqlite_error(db, rc, "retention: begin", options_.file.string()));
  }
  auto abort = [&](int rc, const char* what) -> result<bool> {
    const error why = sqlite_error(db, rc, what, options_.file.string());
    run(rollback_.get());
    recent_stale_ = true;  // keys forgotten in this transaction are back
    return std::unexpected(why);
  };
  std::vector<std::int64_t> expired;
  std::size_t scanned = 0;
  bool reached_young = false;
  {
    sqlite3_stmt* s = retention_scan_.get();
    reset_guard guard(s);
    sqlite3_bind_int64(s, 1, retention_cursor_);
    sqlite3_bind_int64(s, 2, static_cast<std::int64_t>(options_.retention_batch));
    int rc = SQLITE_OK;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      ++scanned;
      const std::int64_t id = sqlite3_column_int64(s, 0);
      if (sqlite3_column_int64(s, 1) >= cutoff) {
        reached_young = true;
        break;
      }
      retention_cursor_ = id;
      expired.push_back(id);
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return abort(rc, "retention: scan");
  }
  std::uint64_t deleted = 0;
  for (const std::int64_t id : expired) {
    {
      sqlite3_stmt* s = retention_state_.get();
      reset_guard guard(s);
      sqlite3_bind_int64(s, 1, id);
      const int rc = sqlite3_step(s);
      if (rc == SQLITE_ROW && sqlite3_column_int(s, 0) != kDone) continue;  // its events are not all out yet
      if (rc != SQLITE_ROW && rc != SQLITE_DONE) return abort(rc, "retention: receipt state");
      if (rc == SQLITE_ROW) {
        const receipt_key key{.hospital = column_bytes(s, 1), .facility = column_bytes(s, 2),
                              .control_id = column_bytes(s, 3)};
        if (auto r = forget_key(key, id); !r) {
          run(rollback_.get());
          recent_stale_ = true;
          return std::unexpected(r.error());
        }
      }
    }
    for (sqlite3_stmt* s : {delete_receipt_.get(), delete_raw_.get()}) {
      reset_guard guard(s);
      sqlite3_bind_int64(s, 1, id);
      if (const int rc = sqlite3_step(s); rc != SQLITE_DONE) return abort(rc, "retention: delete");
    }
    ++deleted;
  }
  if (const int rc = run(commit_.get()); rc != SQLITE_DONE) return abort(rc, "retention: commit");
  retention_progress_ += deleted;
  bump(stats_.retention_deleted, deleted);
  const bool more = !reached_young && scanned == options_.retention_batch;
  if (deleted > 0 || !more) {
    // Hand free pages back a bounded number at a time.
    if (auto r = exec(db, "PRAGMA incremental_vacuum(2048)"); !r) return std::unexpected(r.error());
  }
  return more;
}

// ---- reads -----------------------------------------------------------------------

result<std::vector<pending_receipt>> ingest_store::impl::pending() {
  if (auto r = flush(std::chrono::minutes(1)); !r) return std::unexpected(r.error());
  std::lock_guard lock(reader_mu_);
  sqlite3* db = reader_.get();
  // Attempts handed out by this run are in flight, not unsettled.
  auto s = prepare(db,
                   "SELECT hospital, facility, control_id, state, sha256, event_ids, unpublished, reserved_at,"
                   " attempt_at FROM receipts WHERE attempt_run IS NOT NULL AND attempt_run != ?1 ORDER BY attempt_at");
  if (!s) return std::unexpected(s.error());
  sqlite3_bind_int64(s->get(), 1, run_);
  std::vector<pending_receipt> out;
  int rc = SQLITE_OK;
  while ((rc = sqlite3_step(s->get())) == SQLITE_ROW) {
    sqlite3_stmt* st = s->get();
    pending_receipt p;
    p.key = receipt_key{.hospital = column_bytes(st, 0), .facility = column_bytes(st, 1),
                        .control_id = column_bytes(st, 2)};
    const int state = sqlite3_column_int(st, 3);
    p.state = state == kPartial ? receipt_state::partial : receipt_state::pending;
    p.sha256 = to_hex(column_bytes(st, 4));
    auto all = decode_ids(column_bytes(st, 5), describe_key(p.key));
    if (!all) return std::unexpected(all.error());
    p.event_ids = std::move(*all);
    if (state == kPartial) {
      auto rest = decode_ids(column_bytes(st, 6), describe_key(p.key));
      if (!rest) return std::unexpected(rest.error());
      p.unpublished_event_ids = std::move(*rest);
    } else {
      p.unpublished_event_ids = p.event_ids;
    }
    p.reserved_at_ms = sqlite3_column_int64(st, 7);
    p.attempt_at_ms = sqlite3_column_int64(st, 8);
    out.push_back(std::move(p));
  }
  if (rc != SQLITE_DONE) return std::unexpected(sqlite_error(db, rc, "list unsettled receipts"));
  return out;
}

result<std::string> ingest_store::impl::read_raw(std::string_view uri) {
  auto parsed = parse_uri(uri);
  if (!parsed) {
    return fail(errc::invalid_argument, "not a raw store uri (expected raw://<hospital>/<id>/<sha256>)",
                std::string(uri));
  }
  std::lock_guard lock(reader_mu_);
  sqlite3* db = reader_.get();
  // One read transaction: the row cannot be deleted between the lookup and the blob read.
  if (auto r = exec(db, "BEGIN"); !r) return std::unexpected(r.error());
  struct end_read {
    sqlite3* db;
    ~end_read() { sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr); }
  } end{db};
  std::string hospital;
  std::string sha;
  std::int64_t size = 0;
  {
    auto s = prepare(db, "SELECT hospital, sha256, size FROM raw WHERE id = ?1");
    if (!s) return std::unexpected(s.error());
    sqlite3_bind_int64(s->get(), 1, parsed->id);
    const int rc = sqlite3_step(s->get());
    if (rc == SQLITE_DONE) return fail(errc::not_found, "no such raw message (never stored, or retention removed it)",
                                       std::string(uri));
    if (rc != SQLITE_ROW) return std::unexpected(sqlite_error(db, rc, "read raw", std::string(uri)));
    hospital = column_bytes(s->get(), 0);
    sha = column_bytes(s->get(), 1);
    size = sqlite3_column_int64(s->get(), 2);
  }
  if (hospital != parsed->hospital || to_hex(sha) != parsed->sha_hex) {
    return fail(errc::not_found, "no such raw message (the uri's hospital or sha256 differs from the stored one)",
                std::string(uri));
  }
  sqlite3_blob* blob = nullptr;
  if (const int rc = sqlite3_blob_open(db, "main", "raw", "bytes", parsed->id, 0, &blob); rc != SQLITE_OK) {
    sqlite3_blob_close(blob);
    return std::unexpected(sqlite_error(db, rc, "open raw blob", std::string(uri)));
  }
  const int n = sqlite3_blob_bytes(blob);
  if (n != size) {
    sqlite3_blob_close(blob);
    return fail(errc::corrupt, "stored size differs from the bytes", std::string(uri));
  }
  std::string out(static_cast<std::size_t>(n), '\0');
  const int rc = n > 0 ? sqlite3_blob_read(blob, out.data(), n, 0) : SQLITE_OK;
  sqlite3_blob_close(blob);
  if (rc != SQLITE_OK) return std::unexpected(sqlite_error(db, rc, "read raw blob", std::string(uri)));
  if (sha256_raw(out) != sha) return fail(errc::corrupt, "stored bytes do not match their sha256", std::string(uri));
  return out;
}

ingest_stats ingest_store::impl::stats() const {
  auto get = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  return ingest_stats{
      .reserves = get(stats_.reserves),
      .fresh = get(stats_.fresh),
      .resend_done = get(stats_.resend_done),
      .resend_pending = get(stats_.resend_pending),
      .conflicts = get(stats_.conflicts),
      .parked = get(stats_.parked),
      .settle_timeouts = get(stats_.settle_timeouts),
      .overloaded = get(stats_.overloaded),
      .failures = get(stats_.failures),
      .completed = get(stats_.completed),
      .abandoned = get(stats_.abandoned),
      .partial = get(stats_.partial),
      .transactions = get(stats_.transactions),
      .largest_batch = get(stats_.largest_batch),
      .raw_bytes_written = get(stats_.raw_bytes_written),
      .retention_deleted = get(stats_.retention_deleted),
      .writer_cpu_ns = get(stats_.writer_cpu_ns),
      .key_merges = get(stats_.key_merges),
  };
}

// ---- the public face ---------------------------------------------------------------

ingest_store::ingest_store(std::shared_ptr<impl> state) : impl_(std::move(state)) {}

ingest_store::~ingest_store() { impl_->shutdown(); }

result<std::unique_ptr<ingest_store>> ingest_store::open(ingest_store_options options) {
  auto state = std::make_shared<impl>(std::move(options));
  if (auto r = state->open(); !r) {
    state->shutdown();
    return std::unexpected(r.error());
  }
  return std::unique_ptr<ingest_store>(new ingest_store(std::move(state)));
}

void ingest_store::reserve(reserve_request request, reserve_handler done) {
  auto o = std::make_unique<op>();
  o->kind = op_kind::reserve;
  o->counted = true;
  o->on_reserve = done ? std::move(done) : [](result<reserve_outcome>) {};
  const auto& k = request.key;
  auto invalid = [&](std::string why) {
    impl_->reject(std::move(o), error::make(errc::invalid_argument, std::move(why), describe_key(k)));
  };
  if (k.hospital.empty() || k.facility.empty() || k.control_id.empty()) {
    return invalid("hospital, sending facility and control id must all be non-empty");
  }
  if (k.hospital.find('/') != std::string::npos) return invalid("hospital id contains '/'");
  if (request.raw.size() > impl_->options_.max_raw_bytes) {
    return invalid("message of " + std::to_string(request.raw.size()) + " bytes exceeds max_raw_bytes " +
                   std::to_string(impl_->options_.max_raw_bytes));
  }
  {
    std::unordered_set<std::string_view> seen;
    for (const auto& id : request.event_ids) {
      if (id.empty()) return invalid("empty event id");
      if (!seen.insert(id).second) return invalid("event id " + id + " is listed twice");
    }
  }
  if (request.sha256.empty()) {
    o->sha = sha256_raw(request.raw);  // on the caller's thread: spreads the hashing over the callers
  } else if (auto bin = sha_from_hex(request.sha256)) {
    o->sha = std::move(*bin);
  } else {
    return invalid("sha256 is not 64 hex digits");
  }
  o->sha_hex = to_hex(o->sha);
  o->size = request.raw.size();
  o->received_at = request.meta.received_at_ms != 0 ? request.meta.received_at_ms : wall_ms();
  o->req = std::move(request);
  impl_->submit(std::move(o));
}

void ingest_store::complete(receipt_key key, done_handler done) {
  auto o = std::make_unique<op>();
  o->kind = op_kind::settle;
  o->complete = true;
  o->key = std::move(key);
  o->on_done = std::move(done);
  impl_->submit(std::move(o));
}

void ingest_store::abandon(receipt_key key, std::vector<std::string> published_event_ids, done_handler done) {
  auto o = std::make_unique<op>();
  o->kind = op_kind::settle;
  o->key = std::move(key);
  o->published = std::move(published_event_ids);
  o->on_done = std::move(done);
  impl_->submit(std::move(o));
}

void ingest_store::put_raw(std::string hospital, std::string raw, raw_meta meta, raw_handler done) {
  auto o = std::make_unique<op>();
  o->kind = op_kind::put_raw;
  o->counted = true;
  o->on_raw = done ? std::move(done) : [](result<events::v1::ClaimCheck>) {};
  if (hospital.empty() || hospital.find('/') != std::string::npos) {
    impl_->reject(std::move(o), error::make(errc::invalid_argument, "hospital id is empty or contains '/'", hospital));
    return;
  }
  if (raw.size() > impl_->options_.max_raw_bytes) {
    impl_->reject(std::move(o), error::make(errc::invalid_argument,
                                            "message of " + std::to_string(raw.size()) +
                                                " bytes exceeds max_raw_bytes",
                                            hospital));
    return;
  }
  o->sha = sha256_raw(raw);
  o->sha_hex = to_hex(o->sha);
  o->size = raw.size();
  o->received_at = meta.received_at_ms != 0 ? meta.received_at_ms : wall_ms();
  o->req.key.hospital = std::move(hospital);
  o->req.raw = std::move(raw);
  o->req.meta = std::move(meta);
  impl_->submit(std::move(o));
}

result<std::string> ingest_store::read_raw(std::string_view uri) { return impl_->read_raw(uri); }

result<std::vector<pending_receipt>> ingest_store::pending() { return impl_->pending(); }

result<void> ingest_store::resolve(const receipt_key& key, std::span<const std::string> found_event_ids) {
  return impl_->wait_settle(key, std::vector<std::string>(found_event_ids.begin(), found_event_ids.end()));
}

result<void> ingest_store::flush(std::chrono::milliseconds timeout) { return impl_->flush(timeout); }

result<std::uint64_t> ingest_store::enforce_retention(std::chrono::milliseconds timeout) {
  return impl_->enforce_retention(timeout);
}

ingest_stats ingest_store::stats() const { return impl_->stats(); }

const std::filesystem::path& ingest_store::file() const noexcept { return impl_->options_.file; }

// ---- recovery --------------------------------------------------------------------

namespace {

// Envelope.event_id (field 1, a string) straight from the protobuf wire
// format: recovery reads every record of the scanned stretch and needs
// nothing else from them. nullopt for bytes that are not a message.
std::optional<std::string_view> envelope_event_id(std::string_view v) {
  std::size_t at = 0;
  auto varint = [&](std::uint64_t& out) {
    out = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (at >= v.size()) return false;
      const auto b = static_cast<unsigned char>(v[at++]);
      out |= static_cast<std::uint64_t>(b & 0x7fU) << static_cast<unsigned>(shift);
      if ((b & 0x80U) == 0) return true;
    }
    return false;
  };
  while (at < v.size()) {
    std::uint64_t tag = 0;
    if (!varint(tag)) return std::nullopt;
    const std::uint64_t field = tag >> 3U;
    switch (tag & 7U) {
      case 0: {
        std::uint64_t ignored = 0;
        if (!varint(ignored)) return std::nullopt;
        break;
      }
      case 1:
        if (v.size() - at < 8) return std::nullopt;
        at += 8;
        break;
      case 2: {
        std::uint64_t len = 0;
        if (!varint(len) || len > v.size() - at) return std::nullopt;
        if (field == 1) return v.substr(at, static_cast<std::size_t>(len));
        at += static_cast<std::size_t>(len);
        break;
      }
      case 5:
        if (v.size() - at < 4) return std::nullopt;
        at += 4;
        break;
      default:
        return std::nullopt;
    }
  }
  return std::nullopt;
}

}  // namespace

result<recovery_report> recover_pending(ingest_store& store, bus::bus& bus, std::span<const std::string> topics,
                                        const recovery_options& options) {
  auto unsettled = store.pending();
  if (!unsettled) return std::unexpected(unsettled.error());
  recovery_report report;
  report.unsettled = unsettled->size();
  if (unsettled->empty()) return report;

  // Which receipts wait for which event id.
  std::unordered_map<std::string, std::vector<std::size_t>> wanted;
  std::int64_t earliest = std::numeric_limits<std::int64_t>::max();
  for (std::size_t i = 0; i < unsettled->size(); ++i) {
    const auto& p = (*unsettled)[i];
    for (const auto& id : p.unpublished_event_ids) wanted[id].push_back(i);
    earliest = std::min(earliest, p.attempt_at_ms);
  }
  std::vector<std::vector<std::string>> found(unsettled->size());

  if (!wanted.empty()) {
    if (topics.empty()) return fail(errc::invalid_argument, "recovery needs the topics the events are published to");
    report.start_timestamp_ms = std::max<std::int64_t>(0, earliest - options.margin_ms);
    std::size_t partitions = 0;
    for (const auto& t : topics) {
      auto n = bus.partitions(t);
      if (!n) return std::unexpected(n.error());
      partitions += static_cast<std::size_t>(*n);
    }
    auto consumer = bus.subscribe(bus::consumer_options{
        .group = options.group_prefix + "-" + std::to_string(::getpid()) + "-" + std::to_string(wall_ms()),
        .topics = std::vector<std::string>(topics.begin(), topics.end()),
        .start = bus::start_from::earliest,
        .start_timestamp_ms = report.start_timestamp_ms});
    if (!consumer) return std::unexpected(consumer.error());
    auto& c = **consumer;

    using tp = std::pair<std::string, std::int32_t>;
    struct progress {
      std::int64_t end = 0;   // offset past the last record that existed when the scan began
      std::int64_t next = -1; // past the last record seen; -1 = none seen
      bool done = false;
    };
    std::map<tp, progress> parts;
    bool ends_known = false;
    auto ends_known_at = clock::now();
    std::size_t missing = wanted.size();
    const auto deadline = clock::now() + options.timeout;
    for (;;) {
      auto batch = c.poll(100ms, 4096);
      if (!batch) return std::unexpected(batch.error());
      const auto now = clock::now();
      for (const auto& r : *batch) {
        ++report.records_scanned;
        auto& pr = parts[{r.topic, r.partition}];
        pr.next = std::max(pr.next, r.offset + 1);
        const auto id = envelope_event_id(r.value);
        if (!id) continue;
        auto it = wanted.find(std::string(*id));
        if (it == wanted.end()) continue;
        for (const std::size_t i : it->second) found[i].push_back(it->first);
        wanted.erase(it);
        --missing;
      }
      if (missing == 0) break;  // everything accounted for: no need to read further
      if (!ends_known && c.assignment().size() == partitions) {
        // The ends once every partition is ours: what was published before
        // the crash lies before them.
        auto lag = c.lag();
        if (!lag) return std::unexpected(lag.error());
        for (const auto& l : *lag) parts[{l.topic, l.partition}].end = l.end;
        ends_known = true;
        ends_known_at = now;
      }
      if (ends_known) {
        bool all_done = true;
        for (auto& [where, pr] : parts) {
          if (!pr.done) {
            // Reached its end; or delivered nothing at all for `idle` since
            // we have it: nothing in it at or after the start time.
            pr.done = pr.end == 0 || pr.next >= pr.end || (pr.next < 0 && now - ends_known_at >= options.idle);
          }
          all_done = all_done && pr.done;
        }
        if (all_done) break;
      }
      if (now >= deadline) {
        return fail(errc::timeout, "recovery did not reach the end of the bus within its timeout; nothing settled");
      }
    }
    c.close();
  }

  for (std::size_t i = 0; i < unsettled->size(); ++i) {
    const auto& p = (*unsettled)[i];
    if (auto r = store.resolve(p.key, found[i]); !r) return std::unexpected(r.error());
    if (found[i].size() == p.unpublished_event_ids.size()) {
      ++report.done;
    } else if (found[i].empty() && p.state == receipt_state::pending) {
      ++report.deleted;
    } else {
      ++report.partial;
    }
  }
  return report;
}

}  // namespace yilian::store
