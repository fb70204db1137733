// yilian::store::sql — small helpers for the SQLite-backed stores: owners for
// the C handles, statement helpers that return yilian::result with the place
// in the error, and the lock file that makes one process the owner of a store.
//
// Used by the stores and by the embedded log (engine/bus/embedded_log.cc).
// SQLite result codes map to errc (busy/locked -> unavailable, I/O and full
// disk -> io_error, damaged file -> corrupt), so the retriable flag of the
// error says whether retrying later may help.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "engine/core/error.h"

struct sqlite3;
struct sqlite3_stmt;

namespace yilian::store::sql {

struct db_closer {
  void operator()(sqlite3* db) const noexcept;
};
struct stmt_finalizer {
  void operator()(sqlite3_stmt* s) const noexcept;
};
using db_ptr = std::unique_ptr<sqlite3, db_closer>;
using stmt_ptr = std::unique_ptr<sqlite3_stmt, stmt_finalizer>;

// Resets a statement on every exit path, so no read snapshot stays open (an
// open snapshot stops checkpoints from recycling the WAL) and bound buffers
// are released.
class reset_guard {
 public:
  explicit reset_guard(sqlite3_stmt* s) noexcept : s_(s) {}
  ~reset_guard();
  reset_guard(const reset_guard&) = delete;
  reset_guard& operator=(const reset_guard&) = delete;

 private:
  sqlite3_stmt* s_;
};

errc code_for(int rc) noexcept;
bool is_busy(int rc) noexcept;

// "<what>: <sqlite message>" with the code mapped by code_for.
error sqlite_error(sqlite3* db, int rc, std::string_view what, std::string where = {});

// Opens (creating if `create`) a read-write connection with extended result
// codes and the given busy timeout.
result<db_ptr> open_db(const std::filesystem::path& path, bool create, int busy_timeout_ms);

// Prepared with SQLITE_PREPARE_PERSISTENT: these statements are reused.
result<stmt_ptr> prepare(sqlite3* db, std::string_view sql);
result<void> exec(sqlite3* db, const char* sql);
result<std::int64_t> query_int(sqlite3* db, const char* sql);
result<std::string> query_text(sqlite3* db, const char* sql);

// Steps a statement that returns no rows, resets it and returns the step's code.
int run(sqlite3_stmt* s) noexcept;

// Binds without copying (SQLITE_STATIC): `bytes` must outlive the step. An
// empty view binds an empty blob/text, never NULL.
int bind_blob(sqlite3_stmt* s, int index, std::string_view bytes) noexcept;
int bind_text(sqlite3_stmt* s, int index, std::string_view text) noexcept;
std::string column_bytes(sqlite3_stmt* s, int column);

// Sets up the write connection of a durable store (the embedded log, the
// ingest store) before anything else touches the file:
//  - page_size = `page_size` and auto_vacuum=INCREMENTAL, which take effect
//    only on a new file (before its first table); incremental auto-vacuum lets
//    retention hand pages back a few at a time instead of a VACUUM that
//    rewrites the whole file;
//  - WAL (anything else is a config_error naming `file`);
//  - synchronous=FULL: the WAL is fsync'd at every commit, so what a commit
//    answered survives power loss, not only a process crash;
//  - secure_delete=FAST (Debian builds SQLite with SECURE_DELETE on; FAST
//    still zeroes deleted content in the pages it rewrites anyway);
//  - journal_size_limit 40 MiB: the WAL is reused from its start after each
//    complete checkpoint, so it normally keeps its size (an fdatasync then
//    needs no metadata update), and is cut back to this after a spike;
//  - 32 MiB of page cache (the hot right edges of the tables and indexes; a
//    large message spills to the WAL instead of growing it), temp_store=MEMORY.
result<void> configure_durable(sqlite3* db, const std::filesystem::path& file, int page_size);

// fsyncs a directory so a newly created file's entry survives power loss.
result<void> sync_directory(const std::filesystem::path& dir);

// Brings a store's schema to the newest version, inside the caller's open
// transaction: an empty file is stamped with `application_id` and gets every
// step; a file with another application id, or written by a newer build
// (PRAGMA user_version past the steps), is refused with config_error naming
// `what` ("ingest store") and `file`; otherwise the missing steps run in
// order. steps[i] takes the schema from version i to i + 1.
result<void> migrate(sqlite3* db, const std::filesystem::path& file, std::int64_t application_id,
                     std::string_view what, std::span<const char* const> steps);

// An exclusive flock on "<store file>.lock", held for the owner's life, so a
// second process (or a second owner in this process) cannot open the same
// store: open fails with errc::unavailable naming the holder's pid. Released
// by the destructor (and by the kernel when the process dies, even by kill -9).
class owner_lock {
 public:
  static result<owner_lock> take(const std::filesystem::path& store_file, std::string_view what);
  owner_lock() = default;
  owner_lock(owner_lock&& other) noexcept;
  owner_lock& operator=(owner_lock&& other) noexcept;
  owner_lock(const owner_lock&) = delete;
  owner_lock& operator=(const owner_lock&) = delete;
  ~owner_lock();

 private:
  explicit owner_lock(int fd) noexcept : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace yilian::store::sql
