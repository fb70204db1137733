// yilian::workflows::reports::library — every report the consortium's
// hospitals issued, with its versions (preliminary, final, corrections), as a
// fold of the report topic. What the report router routes against (which
// version a correction supersedes) and what the reports API reads (who may
// see a report is decided on top of it, by sharing_rules).
//
// Reports are named by the performing hospital and its report id (filler
// ids are unique within a hospital, not across the consortium).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine/bus/bus.h"
#include "engine/workflows/common/timestamps.h"
#include "yilian/events/v1/envelope.pb.h"

namespace yilian::workflows::reports {

namespace ev = events::v1;

struct report_version {
  std::string event_id;
  ev::ReportStatus status = ev::REPORT_STATUS_UNSPECIFIED;
  std::string status_code;
  seconds issued_at{};      // OBR-22, else when the event occurred
  seconds recorded_at{};
  std::string supersedes;   // event id of the version it replaces (empty for the first)
  ev::Envelope event;       // the event as the hospital sent it (documents by claim-check)
};

struct report_entry {
  std::string performing_hospital;
  std::string report_id;
  std::vector<report_version> versions;  // in log order

  const report_version& latest() const { return versions.back(); }
  std::string key() const { return performing_hospital + "/" + report_id; }
};

class library {
 public:
  library(bus::bus& b, std::string topic, std::string group_prefix) : bus_(b), topic_(std::move(topic)), group_prefix_(std::move(group_prefix)) {}
  ~library() { stop(); }
  library(const library&) = delete;
  library& operator=(const library&) = delete;

  result<void> start();
  void stop();

  // Folds one event (exposed for tests; the thread calls it).
  void apply(const ev::Envelope& e, seconds recorded);

  // Waits (up to `timeout`) until the fold has read past `offset` of
  // `partition`; false on timeout.
  bool wait_past(std::int32_t partition, std::int64_t offset, std::chrono::milliseconds timeout) const;
  bool caught_up() const { return caught_up_.load(); }

  template <class F>
  auto read(F&& f) const {
    std::shared_lock lock(mu_);
    return std::forward<F>(f)(*this);
  }
  // Under read():
  const report_entry* find(std::string_view performing_hospital, std::string_view report_id) const;
  // The version before `event_id` of its report (nullptr for the first).
  const report_version* previous(std::string_view performing_hospital, std::string_view report_id,
                                 std::string_view event_id) const;
  std::vector<const report_entry*> newest(std::size_t limit) const;
  std::size_t size() const { return reports_.size(); }

 private:
  void run();

  bus::bus& bus_;
  std::string topic_;
  std::string group_prefix_;
  std::unique_ptr<bus::consumer> consumer_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> caught_up_{false};
  mutable std::shared_mutex mu_;
  std::unordered_map<std::string, report_entry> reports_;
  std::map<std::int32_t, std::int64_t> next_;  // next offset per partition (under mu_)
  std::map<std::int32_t, std::int64_t> start_end_;
};

}  // namespace yilian::workflows::reports
