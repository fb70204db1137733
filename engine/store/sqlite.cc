#include "engine/store/sqlite.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include <sqlite3.h>

namespace yilian::store::sql {

void db_closer::operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
void stmt_finalizer::operator()(sqlite3_stmt* s) const noexcept { sqlite3_finalize(s); }

reset_guard::~reset_guard() {
  sqlite3_reset(s_);
  sqlite3_clear_bindings(s_);
}

errc code_for(int rc) noexcept {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return errc::unavailable;
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_PROTOCOL:
    case SQLITE_NOMEM:
      return errc::io_error;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_FORMAT:
      return errc::corrupt;
    case SQLITE_PERM:
    case SQLITE_READONLY:
    case SQLITE_AUTH:
      return errc::permission_denied;
    case SQLITE_TOOBIG:
      return errc::invalid_argument;
    default:
      return errc::internal;
  }
}

bool is_busy(int rc) noexcept { return (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED; }

error sqlite_error(sqlite3* db, int rc, std::string_view what, std::string where) {
  std::string message(what);
  message += ": ";
  // The connection's message describes the last failing call; a code that did
  // not come from that connection (a step reported by run()) has its own text.
  message += db != nullptr && sqlite3_extended_errcode(db) == rc ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  return error::make(code_for(rc), std::move(message), std::move(where));
}

result<db_ptr> open_db(const std::filesystem::path& path, bool create, int busy_timeout_ms) {
  sqlite3* raw = nullptr;
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
  const int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  db_ptr db(raw);
  if (rc != SQLITE_OK) return std::unexpected(sqlite_error(raw, rc, "open", path.string()));
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, busy_timeout_ms);
  return db;
}

result<stmt_ptr> prepare(sqlite3* db, std::string_view sql) {
  sqlite3_stmt* s = nullptr;
  const int rc = sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &s,
                                    nullptr);
  if (rc != SQLITE_OK) return std::unexpected(sqlite_error(db, rc, "prepare " + std::string(sql)));
  return stmt_ptr(s);
}

result<void> exec(sqlite3* db, const char* sql) {
  const int rc = sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return std::unexpected(sqlite_error(db, rc, sql));
  return {};
}

result<std::int64_t> query_int(sqlite3* db, const char* sql) {
  auto s = prepare(db, sql);
  if (!s) return std::unexpected(s.error());
  const int rc = sqlite3_step(s->get());
  if (rc != SQLITE_ROW) return std::unexpected(sqlite_error(db, rc, sql));
  return sqlite3_column_int64(s->get(), 0);
}

result<std::string> query_text(sqlite3* db, const char* sql) {
  auto s = prepare(db, sql);
  if (!s) return std::unexpected(s.error());
  const int rc = sqlite3_step(s->get());
  if (rc != SQLITE_ROW) return std::unexpected(sqlite_error(db, rc, sql));
  const auto* text = sqlite3_column_text(s->get(), 0);
  return text == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(text));
}

int run(sqlite3_stmt* s) noexcept {
  const int rc = sqlite3_step(s);
  sqlite3_reset(s);
  return rc;
}

namespace {
const char kEmpty = 0;  // a null pointer would bind SQL NULL
}

int bind_blob(sqlite3_stmt* s, int index, std::string_view bytes) noexcept {
  return sqlite3_bind_blob64(s, index, bytes.empty() ? &kEmpty : bytes.data(), bytes.size(), SQLITE_STATIC);
}

int bind_text(sqlite3_stmt* s, int index, std::string_view text) noexcept {
  return sqlite3_bind_text64(s, index, text.empty() ? &kEmpty : text.data(), text.size(), SQLITE_STATIC,
                             SQLITE_UTF8);
}

std::string column_bytes(sqlite3_stmt* s, int column) {
  const auto* p = static_cast<const char*>(sqlite3_column_blob(s, column));
  const int n = sqlite3_column_bytes(s, column);
  return p == nullptr ? std::string() : std::string(p, static_cast<std::size_t>(n));
}

result<void> configure_durable(sqlite3* db, const std::filesystem::path& file, int page_size) {
  const std::string page = "PRAGMA page_size=" + std::to_string(page_size);
  if (auto r = exec(db, page.c_str()); !r) return r;  // no-op once the file exists
  if (auto r = exec(db, "PRAGMA auto_vacuum=INCREMENTAL"); !r) return r;
  auto mode = query_text(db, "PRAGMA journal_mode=WAL");
  if (!mode) return std::unexpected(mode.error());
  if (*mode != "wal") return fail(errc::config_error, "cannot switch to WAL mode (got " + *mode + ")", file.string());
  for (const char* pragma : {"PRAGMA synchronous=FULL", "PRAGMA secure_delete=FAST",
                             "PRAGMA journal_size_limit=41943040", "PRAGMA cache_size=-32768",
                             "PRAGMA temp_store=MEMORY"}) {
    if (auto r = exec(db, pragma); !r) return r;
  }
  return {};
}

result<void> sync_directory(const std::filesystem::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return fail(errc::io_error, std::string("cannot open directory: ") + std::strerror(errno), dir.string());
  const int synced = ::fsync(fd);
  ::close(fd);
  if (synced != 0) return fail(errc::io_error, "fsync of the directory failed", dir.string());
  return {};
}

result<owner_lock> owner_lock::take(const std::filesystem::path& store_file, std::string_view what) {
  const std::string lock_path = store_file.string() + ".lock";
  const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return fail(errc::io_error, std::string("cannot open lock file: ") + std::strerror(errno), lock_path);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char holder[32] = {};
    const auto n = ::pread(fd, holder, sizeof holder - 1, 0);
    ::close(fd);
    if (err == EWOULDBLOCK) {
      std::string who = n > 0 ? std::string(holder, static_cast<std::size_t>(n)) : std::string("unknown");
      while (!who.empty() && (who.back() == '\n' || who.back() == ' ')) who.pop_back();
      return fail(errc::unavailable,
                  std::string(what) + " " + store_file.string() +
                      " is already open, in another process or by another owner in this one (pid " + who + " holds " +
                      lock_path + ")",
                  store_file.string());
    }
    return fail(errc::io_error, std::string("cannot lock: ") + std::strerror(err), lock_path);
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    // The lock is what matters; the pid only makes the error above helpful.
  }
  return owner_lock(fd);
}

owner_lock::owner_lock(owner_lock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

owner_lock& owner_lock::operator=(owner_lock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

owner_lock::~owner_lock() {
  if (fd_ >= 0) ::close(fd_);
}

result<void> migrate(sqlite3* db, const std::filesystem::path& file, std::int64_t application_id,
                     std::string_view what, std::span<const char* const> steps) {
  auto tables = query_int(db, "SELECT count(*) FROM sqlite_schema");
  if (!tables) return std::unexpected(tables.error());
  auto app = query_int(db, "PRAGMA application_id");
  if (!app) return std::unexpected(app.error());
  auto version = query_int(db, "PRAGMA user_version");
  if (!version) return std::unexpected(version.error());
  if (*tables == 0) {
    const std::string id = "PRAGMA application_id=" + std::to_string(application_id);
    if (auto r = exec(db, id.c_str()); !r) return r;
    *version = 0;
  } else if (*app != application_id) {
    return fail(errc::config_error, "not a yilian " + std::string(what) + " (SQLite application_id differs)",
                file.string());
  }
  const auto newest = static_cast<std::int64_t>(steps.size());
  if (*version > newest) {
    return fail(errc::config_error,
                std::string(what) + " format " + std::to_string(*version) + " is newer than this build reads (" +
                    std::to_string(newest) + ")",
                file.string());
  }
  for (auto v = *version; v < newest; ++v) {
    if (auto r = exec(db, steps[static_cast<std::size_t>(v)]); !r) return r;
  }
  const std::string uv = "PRAGMA user_version=" + std::to_string(newest);
  return exec(db, uv.c_str());
}

}  // namespace yilian::store::sql
