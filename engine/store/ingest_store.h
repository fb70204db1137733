// yilian::store::ingest_store — the durable side of "nothing acknowledged is
// ever lost" for inbound adapters (HL7 v2 first): per received message a
// receipt (who sent which control id, with which content and which events)
// and the raw bytes (claim-check), in one SQLite file.
//
// How the ingest pipeline uses it, per message:
//
//   reserve()  -> fresh:          publish outcome.unpublished_event_ids (all of
//                                 the message's events), then ACK AA, then
//                                 complete(); if a publish fails, ACK AR and
//                                 abandon(key, ids whose publish succeeded).
//              -> resend_done:    the events are on the bus already: ACK AA,
//                                 publish nothing.
//              -> resend_pending: an earlier attempt published only some of the
//                                 events (found by recover_pending after a
//                                 crash, or an abandon with some published):
//                                 publish ONLY outcome.unpublished_event_ids,
//                                 then AA + complete() (or AR + abandon()).
//              -> conflict:       same key, different content: ACK AE (205,
//                                 duplicate key identifier); nothing is stored.
//              -> error:          retriable (overloaded, unavailable, io_error,
//                                 timeout): ACK AR, the sender retries.
//
// Concurrent duplicates: the lookup happens inside the writer's transaction,
// so of two identical messages only one is ever `fresh`. A reserve that finds
// its receipt held by an attempt still in flight in this process (reserved,
// not yet completed or abandoned) is PARKED inside the store: its handler is
// called only once that attempt settles, with the outcome the settled state
// gives (complete -> resend_done; abandon with nothing published -> fresh;
// partly published -> resend_pending). The caller does nothing special; it
// just waits for the handler like for any reserve. A parked reserve waits at
// most options.settle_timeout, then fails with errc::timeout (retriable: AR).
// So every fresh/resend_pending outcome MUST be followed by complete() or
// abandon() for the same key, or its resends wait out settle_timeout.
//
// A receipt left in flight by a crash (kill -9 between reserve and complete)
// is "unsettled": its events may or may not be on the bus. recover_pending()
// (below) settles every such receipt from the bus tail; run it at startup
// BEFORE accepting messages. Until it has, a resend of such a message gets
// errc::unavailable (retriable: AR), never a guess.
//
// Threads: one writer thread owns the write connection and runs every
// reserve/complete/abandon/put_raw in arrival order, many per transaction
// (group commit: one WAL fsync per batch), then calls the handlers of the
// batch in order. A second store thread calls the handlers of requests
// refused up front (overloaded, invalid, shut down). Handlers therefore run on
// store threads, never inside the call that submitted them; they must be
// quick and must not throw. From a handler, reserve/complete/abandon/put_raw
// are fine (they only enqueue); the calls that wait (pending, resolve, flush,
// enforce_retention) return errc::invalid_argument there instead of
// deadlocking. A checkpointer thread copies the WAL back into the database in
// the background. read_raw and pending use their own read connection.
//
// Ownership: the ingest_store object owns the file: an exclusive flock on
// "<file>.lock" for its whole life (a second owner fails to open with
// errc::unavailable naming the holder's pid).
//
// Storage: table `raw` (one row per stored message, bytes last so the small
// columns are read without touching the blob's overflow pages) and table
// `receipts` (one row per (hospital, facility, control_id), the same rowid as
// its raw row, and a partial index over the unsettled ones). Both tables are
// appended to in rowid order (their pages fill completely and a commit
// rewrites only their last pages). A resend never stores its bytes again (the
// receipt answers it). The schema version is PRAGMA user_version, upgraded by
// migrate() in the .cc.
//
// Receipt keys: a key index written with every message cost a whole page per
// message and commit (each sender's control ids sit at a place of their own
// in it). So the keys of the newest receipts (those with an id above
// meta.keys_merged) live in memory; once there are options.key_merge_at of
// them, each group commit also writes the options.key_merge_chunk oldest into
// table `receipt_keys` (key -> id, WITHOUT ROWID), sorted, where a sender's
// keys share pages. Nothing is lost by a crash before a merge: the receipts
// themselves are durable, and open() reads the keys above keys_merged back
// from them. Raw ids are never reused
// (the store numbers them itself), so "above keys_merged" is exactly "not
// merged yet".
//
// Raw references: ClaimCheck.uri is "raw://<hospital>/<id>/<sha256 hex>": the
// id is the raw row (a direct B-tree lookup), the sha256 both names the
// content and is checked on every read. There is deliberately no index on
// sha256 alone: SQLite's WAL rewrites every page a transaction touches, and
// an index in random order dirties one page per message.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/bus/bus.h"
#include "engine/core/error.h"
#include "yilian/events/v1/common.pb.h"

namespace yilian::store {

struct ingest_store_options {
  // The SQLite file, e.g. <data_dir>/ingest/ingest.db. "<file>-wal",
  // "<file>-shm" and "<file>.lock" sit beside it; the directory is created.
  std::filesystem::path file;
  // reserve/put_raw requests accepted and not yet answered (queued, being
  // written, or parked behind an in-flight attempt). Beyond it they fail at
  // once with errc::overloaded (retriable). complete/abandon are never refused.
  std::size_t max_in_flight = 8192;
  // How long a transaction waits for SQLite's lock (only the store's own
  // checkpointer and readers can hold it: the file has one owner).
  std::chrono::milliseconds busy_timeout{5000};
  // Raw bytes (and their done receipts, which are the resend-dedupe window)
  // older than this, by raw_meta::received_at_ms, are deleted in small
  // batches; receipts not yet done are kept with their bytes. -1 = forever.
  std::int64_t raw_retention_ms = -1;
  // The longest a reserve waits behind an in-flight attempt of the same
  // message before failing with errc::timeout (see the header comment).
  std::chrono::milliseconds settle_timeout{30000};
  // Requests executed in one transaction at most.
  std::size_t max_batch = 2048;
  // Receipt keys kept in memory (and found again from `receipts` after a
  // restart) before they are written into the key table; from then on each
  // transaction also writes the key_merge_chunk oldest of them there, in key
  // order (see "Receipt keys" above). A larger chunk writes fewer pages per
  // key; a smaller one adds less to a single commit (1024 keys: a few ms).
  std::size_t key_merge_at = 8192;
  std::size_t key_merge_chunk = 1024;
  // Largest raw message accepted (errc::invalid_argument beyond).
  std::size_t max_raw_bytes = 64U << 20U;
  // How often retention looks for expired rows, and how many rows one
  // retention transaction deletes (keeps reserve latency bounded).
  std::chrono::milliseconds retention_check_interval{std::chrono::seconds(30)};
  std::size_t retention_batch = 500;
};

// (MSH-4 sending facility, MSH-10 control id) within the receiving hospital.
struct receipt_key {
  std::string hospital;
  std::string facility;
  std::string control_id;
  bool operator==(const receipt_key&) const = default;
};

// pending: reserved, none of its events known to be on the bus;
// partial: some of its events are on the bus, the rest are listed;
// done: all of its events are on the bus.
enum class receipt_state { pending, partial, done };

struct raw_meta {
  std::string content_type = "application/hl7-v2";
  std::string charset;              // MSH-18 or the profile default; empty = unknown
  std::int64_t received_at_ms = 0;  // wall clock; 0 = when reserve() is called
};

struct reserve_request {
  receipt_key key;
  std::string sha256;  // lowercase hex of `raw`; computed by reserve() when empty
  std::string raw;     // the message bytes as received (after MLLP unframing)
  raw_meta meta;
  std::vector<std::string> event_ids;  // the message's events, deterministic ids, no duplicates
  std::string message_type;            // MSH-9, for operators
};

struct reserve_outcome {
  enum class kind { fresh, resend_done, resend_pending, conflict };
  kind what = kind::fresh;
  // Where the raw bytes are: uri "raw://<hospital>/<id>/<sha256>", sha256,
  // size, content type, charset. Empty for conflict.
  events::v1::ClaimCheck raw_ref;
  // fresh: every event id of the request; resend_pending: the ids not yet on
  // the bus (publish exactly these); otherwise empty.
  std::vector<std::string> unpublished_event_ids;
  std::string existing_sha256;  // conflict: the content hash stored for the key
};

// A receipt whose attempt was not settled (completed or abandoned) in its
// process: what recover_pending resolves.
struct pending_receipt {
  receipt_key key;
  receipt_state state = receipt_state::pending;  // pending or partial
  std::string sha256;
  std::vector<std::string> event_ids;              // all of the message's events
  std::vector<std::string> unpublished_event_ids;  // of those, not known to be on the bus
  std::int64_t reserved_at_ms = 0;
  std::int64_t attempt_at_ms = 0;  // when the unsettled attempt was handed out
};

// Monotonic since open, for metrics, tests and the bench.
struct ingest_stats {
  std::uint64_t reserves = 0;  // answered reserves (any outcome, errors included)
  std::uint64_t fresh = 0;
  std::uint64_t resend_done = 0;
  std::uint64_t resend_pending = 0;
  std::uint64_t conflicts = 0;
  std::uint64_t parked = 0;        // reserves that waited behind an in-flight attempt
  std::uint64_t settle_timeouts = 0;
  std::uint64_t overloaded = 0;    // refused: max_in_flight reached
  std::uint64_t failures = 0;      // reserves/put_raws answered with an error after acceptance
  std::uint64_t completed = 0;     // receipts that became done
  std::uint64_t abandoned = 0;     // receipts deleted by abandon/resolve (nothing published)
  std::uint64_t partial = 0;       // receipts that became partial
  std::uint64_t transactions = 0;
  std::uint64_t largest_batch = 0;
  std::uint64_t raw_bytes_written = 0;
  std::uint64_t retention_deleted = 0;  // raw rows removed by retention
  std::uint64_t writer_cpu_ns = 0;      // CPU time of the writer thread (its utilization)
  std::uint64_t key_merges = 0;         // times the recent receipt keys were written into receipt_keys
};

class ingest_store {
 public:
  using reserve_handler = std::move_only_function<void(result<reserve_outcome>)>;
  using done_handler = std::move_only_function<void(result<void>)>;
  using raw_handler = std::move_only_function<void(result<events::v1::ClaimCheck>)>;

  // Opens (creating or migrating) the store: takes the lock file, sets WAL and
  // synchronous=FULL, starts the store threads. Errors: config_error for bad
  // options or a file that is not an ingest store, unavailable when another
  // owner holds it, io_error/corrupt from SQLite.
  static result<std::unique_ptr<ingest_store>> open(ingest_store_options options);

  // Stops accepting, writes what is queued, fails parked reserves with
  // errc::cancelled, joins the threads, releases the lock. Not from a handler.
  ~ingest_store();
  ingest_store(const ingest_store&) = delete;
  ingest_store& operator=(const ingest_store&) = delete;

  // Thread-safe. `done` is called exactly once, on a store thread: after the
  // receipt and raw bytes are durable (fsync'd), or with an error:
  // overloaded/unavailable/io_error/timeout (retriable), invalid_argument
  // (empty key field, bad sha256, duplicate event ids, raw too large),
  // cancelled (shutting down).
  void reserve(reserve_request request, reserve_handler done);

  // The attempt handed out by reserve (fresh or resend_pending) published all
  // of the unpublished events: the receipt becomes done. Durable with the next
  // group commit; `done` (optional) is called once that commit is durable.
  // Never refused; a key without a receipt is a no-op.
  void complete(receipt_key key, done_handler done = {});

  // The attempt failed; `published_event_ids` are those of its events whose
  // publish DID succeed (publishes report each). Nothing published at all
  // (and nothing earlier): the receipt and its bytes are deleted, so the
  // sender's resend is fresh. Otherwise the receipt becomes partial and a
  // resend publishes only the rest. Never refused.
  void abandon(receipt_key key, std::vector<std::string> published_event_ids = {}, done_handler done = {});

  // Stores bytes that have no receipt (input rejected before a control id
  // could be read, for the deadletter's claim-check). Durable when `done`
  // reports the claim-check; retention deletes it like any raw row.
  void put_raw(std::string hospital, std::string raw, raw_meta meta, raw_handler done);

  // The bytes behind a ClaimCheck.uri from this store (a "#fragment" suffix,
  // e.g. "#OBX[3]-5" for an embedded document, is ignored: the whole message
  // is returned). invalid_argument for another kind of uri; not_found when there
  // is no such row (never stored, or deleted by retention), corrupt when the
  // stored bytes do not hash to the uri's sha256. Thread-safe; reads a 20 MB
  // message with one allocation of its size.
  result<std::string> read_raw(std::string_view uri);

  // Every unsettled receipt (see pending_receipt), oldest attempt first. Sees
  // everything written before the call (it waits for queued work first).
  result<std::vector<pending_receipt>> pending();

  // Settles an unsettled receipt given the event ids found on the bus: all
  // found -> done; none found (and none known before) -> the receipt and its
  // bytes are deleted; some -> partial with the rest. Durable on return.
  result<void> resolve(const receipt_key& key, std::span<const std::string> found_event_ids);

  // Waits until every request accepted before the call has been answered.
  result<void> flush(std::chrono::milliseconds timeout = std::chrono::seconds(60));

  // Runs retention now until nothing more is due; returns raw rows deleted.
  result<std::uint64_t> enforce_retention(std::chrono::milliseconds timeout = std::chrono::minutes(1));

  ingest_stats stats() const;
  const std::filesystem::path& file() const noexcept;

  class impl;

 private:
  explicit ingest_store(std::shared_ptr<impl> state);
  std::shared_ptr<impl> impl_;
};

// Lowercase hex SHA-256 of `bytes` (OpenSSL).
std::string sha256_hex(std::string_view bytes);

struct recovery_options {
  // The scan starts this long before the oldest unsettled attempt (clock skew
  // between the engine and the bus, records stamped before the attempt).
  std::int64_t margin_ms = 60'000;
  // A partition that delivers nothing for this long after the consumer has
  // every partition is taken as having no record at or after the start time.
  std::chrono::milliseconds idle{std::chrono::seconds(3)};
  // The whole scan; past it recover_pending fails with errc::timeout and
  // settles nothing.
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
  // The throwaway consumer group is "<prefix>-<pid>-<wall ms>"; it never commits.
  std::string group_prefix = "yilian-ingest-recovery";
};

struct recovery_report {
  std::size_t unsettled = 0;  // receipts looked at
  std::size_t done = 0;       // all of their events were on the bus
  std::size_t deleted = 0;    // none were: the sender resends and it is fresh
  std::size_t partial = 0;    // some were: a resend publishes only the rest
  std::uint64_t records_scanned = 0;
  std::int64_t start_timestamp_ms = -1;  // where the scan began (-1: nothing to scan)
};

// Settles every unsettled receipt from the tail of the bus: reads `topics`
// (where the pipeline publishes; record values are serialized
// yilian.events.v1.Envelope, matched by event_id) from
// min(attempt_at) - margin_ms to the end of every partition with a throwaway
// consumer group (consumer_options::start_timestamp_ms), stopping early once
// every wanted event was found, then resolve()s each receipt. Run it at
// startup before accepting messages (the bus must already hold what was
// published before the crash: it is durable there). Errors: from the bus or
// the store; timeout (see recovery_options).
result<recovery_report> recover_pending(ingest_store& store, bus::bus& bus, std::span<const std::string> topics,
                                        const recovery_options& options = {});

}  // namespace yilian::store
