#include "engine/api/audit.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include <nlohmann/json.hpp>

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

void audit_log::record(const request& req, std::string_view action, std::string_view resource,
                       std::span<const std::string> ids, std::string_view outcome) {
  nlohmann::json j{{"ts", utc_now()},
                   {"action", action},
                   {"resource", resource},
                   {"ids", nlohmann::json(std::vector<std::string>(ids.begin(), ids.end()))},
                   {"request_id", req.request_id},
                   {"remote", req.remote_address},
                   {"outcome", outcome}};
  if (req.principal) {
    j["principal"] = req.principal->id.value();
    j["role"] = to_string(req.principal->role);
    j["hospital"] = req.principal->hospital.value();
  }
  std::string line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  line += '\n';
  // One write per line: O_APPEND keeps concurrent lines whole.
  const char* p = line.data();
  std::size_t left = line.size();
  while (left > 0) {
    const auto n = ::write(fd_, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::fprintf(stderr, "yilian: audit log write failed: %s\n", std::strerror(errno));
      return;
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  records_.fetch_add(1);
  dirty_.store(true);
}

void audit_log::sync_loop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    cv_.wait_for(lock, sync_every_, [this] { return stopping_; });
    if (dirty_.exchange(false)) ::fdatasync(fd_);
  }
}

}  // namespace yilian::api
