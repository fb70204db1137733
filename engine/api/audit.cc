#include "engine/api/audit.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "engine/core/log.h"

namespace yilian::api {

namespace {

std::string utc_now() {
  const auto now = std::chrono::system_clock::now();
  const auto secs = std::chrono::system_clock::to_time_t(now);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

}  // namespace

result<std::unique_ptr<audit_log>> audit_log::open(const std::filesystem::path& file,
                                                   std::chrono::milliseconds sync_every) {
  std::error_code ec;
  std::filesystem::create_directories(file.parent_path(), ec);
  if (ec) return fail(errc::io_error, "cannot create the audit directory: " + ec.message(), file.parent_path().string());
  const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd < 0) return fail(errc::io_error, std::string("cannot open the audit log: ") + std::strerror(errno), file.string());
  return std::unique_ptr<audit_log>(new audit_log(file, fd, sync_every));
}

audit_log::audit_log(std::filesystem::path path, int fd, std::chrono::milliseconds sync_every)
    : path_(std::move(path)), fd_(fd), sync_every_(sync_every), syncer_([this] { sync_loop(); }) {}

audit_log::~audit_log() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (syncer_.joinable()) syncer_.join();
  if (fd_ >= 0) {
    ::fdatasync(fd_);
    ::close(fd_);
  }
}

namespace {

void append_field(std::string& out, std::string_view key, std::string_view value) {
  out += ',';
  log::append_json_string(out, key);
  out += ':';
  log::append_json_string(out, value);
}

void write_all(int fd, const std::string& data) {
  const char* p = data.data();
  std::size_t left = data.size();
  while (left > 0) {
    const auto n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::fprintf(stderr, "yilian: audit log write failed: %s\n", std::strerror(errno));
      return;
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

}  // namespace

namespace {
std::string begin_line(std::string_view action, std::string_view resource, std::span<const std::string> ids) {
  std::string line = "{\"ts\":";
  log::append_json_string(line, utc_now());
  append_field(line, "action", action);
  append_field(line, "resource", resource);
  line += ",\"ids\":[";
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i > 0) line += ',';
    log::append_json_string(line, ids[i]);
  }
  line += ']';
  return line;
}
}  // namespace

void audit_log::record(const request& req, std::string_view action, std::string_view resource,
                       std::span<const std::string> ids, std::string_view outcome) {
  std::string line = begin_line(action, resource, ids);
  append_field(line, "request_id", req.request_id);
  append_field(line, "remote", req.remote_address);
  append_field(line, "outcome", outcome);
  if (req.principal) {
    append_field(line, "principal", req.principal->id.value());
    append_field(line, "role", to_string(req.principal->role));
    append_field(line, "hospital", req.principal->hospital.value());
    // A patient's reads name the gateway the patient came through.
    if (!req.principal->via.value().empty()) append_field(line, "via", req.principal->via.value());
  }
  append(std::move(line));
}

void audit_log::record(const channel_caller& who, std::string_view action, std::string_view resource,
                       std::span<const std::string> ids, std::string_view outcome) {
  std::string line = begin_line(action, resource, ids);
  append_field(line, "request_id", who.request_id);
  append_field(line, "outcome", outcome);
  append_field(line, "principal", who.principal);
  append_field(line, "role", who.role);
  append_field(line, "hospital", who.hospital);
  append(std::move(line));
}

void audit_log::append(std::string line) {
  line += "}\n";
  bool wake = false;
  {
    std::lock_guard lock(mu_);
    buffer_ += line;
    wake = buffer_.size() > 256 * 1024;
  }
  records_.fetch_add(1);
  if (wake) cv_.notify_one();
}

void audit_log::sync_loop() {
  auto last_sync = std::chrono::steady_clock::now();
  bool unsynced = false;
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait_for(lock, std::chrono::milliseconds(20), [this] { return stopping_ || buffer_.size() > 256 * 1024; });
    std::string out;
    out.swap(buffer_);
    const bool stop = stopping_;
    lock.unlock();
    if (!out.empty()) {
      write_all(fd_, out);
      unsynced = true;
    }
    if (unsynced && (stop || std::chrono::steady_clock::now() - last_sync >= sync_every_)) {
      ::fdatasync(fd_);
      unsynced = false;
      last_sync = std::chrono::steady_clock::now();
    }
    lock.lock();
    if (stop && buffer_.empty()) return;
  }
}

}  // namespace yilian::api
