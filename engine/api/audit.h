// yilian::api::audit_log — who read or changed which patient-bearing
// resource, when, from where (DESIGN.md "Serving and scale": every read of
// patient data is audited).
//
// One JSON object per line, appended to <data_dir>/audit/audit.log:
//   {"ts":"2026-11-24T08:00:00.123Z","principal":"dc-chc-user","role":"clinic_user",
//    "hospital":"dc-chc","action":"read","resource":"Booking","ids":["bk-..."],
//    "request_id":"...","remote":"127.0.0.1","outcome":"ok"}
// Records carry ids only — never names, ID numbers or phone numbers.
// Lines are written with one write(2) each (O_APPEND) and fdatasync'd by a
// background thread at most `sync_every` later.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>

#include "engine/api/http.h"
#include "engine/core/error.h"

namespace yilian::api {

class audit_log {
 public:
  static result<std::unique_ptr<audit_log>> open(const std::filesystem::path& file,
                                                 std::chrono::milliseconds sync_every = std::chrono::seconds(1));
  ~audit_log();
  audit_log(const audit_log&) = delete;
  audit_log& operator=(const audit_log&) = delete;

  // action: "read", "search", "create", "update"; resource: "Booking", "Slot", ...
  void record(const request& req, std::string_view action, std::string_view resource,
              std::span<const std::string> ids, std::string_view outcome = "ok");
  const std::filesystem::path& path() const { return path_; }
  std::uint64_t records() const { return records_.load(); }

 private:
  audit_log(std::filesystem::path path, int fd, std::chrono::milliseconds sync_every);
  void sync_loop();

  std::filesystem::path path_;
  int fd_ = -1;
  std::chrono::milliseconds sync_every_;
  std::atomic<std::uint64_t> records_{0};
  std::atomic<bool> dirty_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread syncer_;
};

}  // namespace yilian::api
