#include "engine/workflows/common/relay.h"

#include <condition_variable>
#include <mutex>

#include "engine/core/log.h"
#include "engine/core/thread.h"

namespace yilian::workflows {

using namespace std::chrono_literals;

namespace {
const auto lg = log::get("workflow");

bool takes(const config::v1::OutboundEndpoint& endpoint, std::string_view event_type) {
  for (const auto& type : endpoint.event_types()) {
    if (type == "*" || type == event_type) return true;
  }
  return false;
}
}  // namespace

std::set<std::string> listeners_of(const config::loaded_consortium& cfg, std::string_view event_type) {
  std::set<std::string> out;
  for (const auto& p : cfg.profiles) {
    for (const auto& endpoint : p.profile.outbound()) {
      if (takes(endpoint, event_type)) out.insert(p.profile.hospital());
    }
  }
  return out;
}

bool patients_hear(const config::loaded_consortium& cfg, std::string_view event_type) {
  return cfg.consortium.has_patient_notifications() && takes(cfg.consortium.patient_notifications().endpoint(), event_type);
}

result<void> relay::start() {
  auto c = bus_.subscribe(
      bus::consumer_options{.group = options_.group, .topics = options_.topics, .start = bus::start_from::earliest});
  if (!c) return std::unexpected(c.error());
  consumer_ = std::move(*c);
  thread_ = std::thread([this] {
    name_this_thread(("yl-" + options_.name).substr(0, 15).c_str());
    run();
  });
  return {};
}

void relay::stop() {
  stopping_.store(true);
  if (thread_.joinable()) thread_.join();
  if (consumer_) consumer_->close();
  consumer_.reset();
}

void relay::run() {
  std::vector<bus::record> retry;
  std::vector<bus::message> out;
  while (!stopping_.load()) {
    std::vector<bus::record> batch;
    if (!retry.empty()) {
      batch.swap(retry);
    } else {
      auto polled = consumer_->poll(100ms, 1024);
      if (!polled) {
        std::this_thread::sleep_for(200ms);
        continue;
      }
      batch = std::move(*polled);
    }
    if (batch.empty()) continue;
    out.clear();
    for (const auto& r : batch) route_(r, out);
    std::mutex mu;
    std::condition_variable cv;
    std::size_t pending = out.size();
    bool failed = false;
    for (auto& m : out) {
      if (m.topic.empty()) m.topic = options_.outbound_topic;
      bus_.publish(std::move(m), [&](result<bus::position> p) {
        std::lock_guard lock(mu);
        if (!p) failed = true;
        --pending;
        cv.notify_all();
      });
    }
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return pending == 0; });
    }
    if (failed) {
      lg.warn("notifications not all published; retrying the batch", {log::field("relay", options_.name)});
      retry = std::move(batch);
      std::this_thread::sleep_for(500ms);
      continue;
    }
    if (auto committed = consumer_->commit(batch); !committed) {
      lg.warn("relay commit failed (notifications may repeat)",
              {log::field("relay", options_.name), log::field("error", committed.error().describe())});
    }
    sent_.fetch_add(out.size());
  }
}

}  // namespace yilian::workflows
