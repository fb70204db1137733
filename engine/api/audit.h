// yilian::api::audit_log — who read or changed which patient-bearing
// resource, when, from where (DESIGN.md "Serving and scale": every read of
// patient data is audited).
//
// One JSON object per line, appended to <data_dir>/audit/audit.log:
//   {"ts":"2026-11-24T08:00:00.123Z","principal":"dc-chc-user","role":"clinic_user",
//    "hospital":"dc-chc","action":"read","resource":"Booking","ids":["bk-..."],
//    "request_id":"...","remote":"127.0.0.1","outcome":"ok"}
// A patient's records (role "patient", principal = the enterprise patient id)
// add "via": the patient_gateway principal whose request issued the token.
// Records carry ids only — never names, ID numbers or phone numbers.
// record() only appends the line to a buffer; a background thread writes the
// buffer out every few milliseconds (one write(2), O_APPEND) and fdatasyncs
// at most `sync_every` later, so a request never waits for the disk. What a
// crash can lose is the last `sync_every` of records.
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
  // A read that did not come over HTTP (an HL7 v2 PIX query on an MLLP
  // channel): the caller says who and where from.
  struct channel_caller {
    std::string_view principal;  // e.g. "mllp:dc-chc"
    std::string_view role;       // e.g. "hospital_system"
    std::string_view hospital;
    std::string_view request_id; // e.g. the message control id (MSH-10)
  };
  void record(const channel_caller& who, std::string_view action, std::string_view resource,
              std::span<const std::string> ids, std::string_view outcome = "ok");
  const std::filesystem::path& path() const { return path_; }
  std::uint64_t records() const { return records_.load(); }

 private:
  audit_log(std::filesystem::path path, int fd, std::chrono::milliseconds sync_every);
  void sync_loop();
  void append(std::string line);

  std::filesystem::path path_;
  int fd_ = -1;
  std::chrono::milliseconds sync_every_;
  std::atomic<std::uint64_t> records_{0};
  std::mutex mu_;
  std::string buffer_;  // lines not yet written
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread syncer_;
};

}  // namespace yilian::api
