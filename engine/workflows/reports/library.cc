#include "engine/workflows/reports/library.h"

#include <algorithm>

#include "engine/core/ids.h"
#include "engine/core/log.h"
#include "engine/core/thread.h"

namespace yilian::workflows::reports {

using namespace std::chrono_literals;

namespace {
const auto lg = log::get("reports");
}

result<void> library::start() {
  auto c = bus_.subscribe(bus::consumer_options{.group = group_prefix_ + "yilian-report-library-" + random_id(),
                                                .topics = {topic_},
                                                .start = bus::start_from::earliest});
  if (!c) return std::unexpected(c.error());
  consumer_ = std::move(*c);
  thread_ = std::thread([this] {
    name_this_thread("yl-reports");
    run();
  });
  return {};
}

void library::stop() {
  stopping_.store(true);
  if (thread_.joinable()) thread_.join();
  if (consumer_) consumer_->close();
  consumer_.reset();
}

void library::apply(const ev::Envelope& e, seconds recorded) {
  if (!e.has_report_issued()) return;
  const auto& r = e.report_issued();
  const std::string& performer = !r.performing_hospital().empty() ? r.performing_hospital() : e.source().hospital();
  if (r.report_id().empty() || performer.empty()) return;
  auto& entry = reports_[performer + "/" + r.report_id()];
  entry.performing_hospital = performer;
  entry.report_id = r.report_id();
  for (const auto& v : entry.versions) {
    if (v.event_id == e.event_id()) return;  // a replay
  }
  report_version v{.event_id = e.event_id(),
                   .status = r.status(),
                   .status_code = r.status_code(),
                   .issued_at = r.has_issued_at() ? to_seconds(r.issued_at()) : to_seconds(e.occurred_at()),
                   .recorded_at = recorded,
                   .supersedes = entry.versions.empty() ? std::string() : entry.versions.back().event_id,
                   .event = e};
  entry.versions.push_back(std::move(v));
}

void library::run() {
  while (!stopping_.load()) {
    auto batch = consumer_->poll(50ms, 1024);
    if (!batch) {
      std::this_thread::sleep_for(200ms);
      continue;
    }
    {
      std::unique_lock lock(mu_);
      ev::Envelope e;
      for (const auto& r : *batch) {
        next_[r.partition] = r.offset + 1;
        if (!e.ParseFromString(r.value)) continue;
        // The workflows' own records on this topic (none today) are not reports.
        if (e.source().protocol() == ev::PROTOCOL_ENGINE) continue;
        apply(e, seconds(std::chrono::duration_cast<std::chrono::seconds>(std::chrono::milliseconds(r.timestamp_ms))));
      }
    }
    if (!caught_up_.load()) {
      if (start_end_.empty()) {
        if (auto l = consumer_->lag(); l && !l->empty()) {
          for (const auto& p : *l) start_end_[p.partition] = p.end;
        }
      }
      bool done = !start_end_.empty();
      std::shared_lock lock(mu_);
      for (const auto& [p, end] : start_end_) {
        const auto it = next_.find(p);
        done = done && (end == 0 || (it != next_.end() && it->second >= end));
      }
      if (done) {
        caught_up_.store(true);
        lg.info("report library caught up", {log::field("reports", reports_.size())});
      }
    }
  }
}

bool library::wait_past(std::int32_t partition, std::int64_t offset, std::chrono::milliseconds timeout) const {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (true) {
    {
      std::shared_lock lock(mu_);
      const auto it = next_.find(partition);
      if (it != next_.end() && it->second > offset) return true;
    }
    if (std::chrono::steady_clock::now() >= until || stopping_.load()) return false;
    std::this_thread::sleep_for(5ms);
  }
}

const report_entry* library::find(std::string_view performing_hospital, std::string_view report_id) const {
  const auto it = reports_.find(std::string(performing_hospital) + "/" + std::string(report_id));
  return it == reports_.end() ? nullptr : &it->second;
}

const report_version* library::previous(std::string_view performing_hospital, std::string_view report_id,
                                        std::string_view event_id) const {
  const auto* r = find(performing_hospital, report_id);
  if (r == nullptr) return nullptr;
  for (std::size_t i = 1; i < r->versions.size(); ++i) {
    if (r->versions[i].event_id == event_id) return &r->versions[i - 1];
  }
  return nullptr;
}

std::vector<const report_entry*> library::newest(std::size_t limit) const {
  std::vector<const report_entry*> out;
  out.reserve(reports_.size());
  for (const auto& [k, r] : reports_) out.push_back(&r);
  std::sort(out.begin(), out.end(), [](const auto* a, const auto* b) {
    return a->latest().recorded_at != b->latest().recorded_at ? a->latest().recorded_at > b->latest().recorded_at
                                                              : a->key() < b->key();
  });
  if (out.size() > limit) out.resize(limit);
  return out;
}

}  // namespace yilian::workflows::reports
