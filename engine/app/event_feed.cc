#include "engine/app/event_feed.h"

#include <algorithm>
#include <map>

#include "engine/core/thread.h"
#include "engine/workflows/common/envelope_peek.h"

namespace yilian::app {

feed_entry describe_record(const bus::record& r) {
  feed_entry e{.topic = r.topic, .partition = r.partition, .offset = r.offset, .timestamp_ms = r.timestamp_ms};
  // The head only: the feed lists ids, never payloads.
  if (const auto head = workflows::peek_envelope(r.value); head && !head->type.empty()) {
    e.event_id = head->event_id;
    e.type = head->type;
    e.source_hospital = head->source_hospital;
    e.decoded = true;
  }
  return e;
}

event_feed::event_feed(bus::bus& b, std::vector<std::string> topics, std::size_t keep_per_topic)
    : bus_(b), topics_(std::move(topics)), keep_(std::max<std::size_t>(1, keep_per_topic)) {}

event_feed::~event_feed() { stop(); }

result<void> event_feed::start() {
  auto c = bus_.subscribe(bus::consumer_options{.group = group, .topics = topics_, .start = bus::start_from::earliest});
  if (!c) return std::unexpected(c.error());
  consumer_ = std::move(*c);
  thread_ = std::thread([this] {
    name_this_thread("yl-event-feed");
    run();
  });
  return {};
}

void event_feed::stop() {
  stopping_.store(true);
  if (thread_.joinable()) thread_.join();
  if (consumer_) {
    consumer_->close();
    consumer_.reset();
  }
}

void event_feed::run() {
  using namespace std::chrono_literals;
  auto next_lag = std::chrono::steady_clock::now();
  while (!stopping_.load()) {
    auto batch = consumer_->poll(200ms, 512);
    if (batch && !batch->empty()) {
      {
        // Only the newest `keep_` records of a topic are kept: decode just those.
        std::map<std::string_view, std::size_t> per_topic;
        for (const auto& r : *batch) ++per_topic[r.topic];
        std::vector<feed_entry> described;
        std::map<std::string_view, std::size_t> seen_in_batch;
        for (const auto& r : *batch) {
          if (seen_in_batch[r.topic]++ + keep_ < per_topic[r.topic]) continue;
          described.push_back(describe_record(r));
        }
        std::lock_guard lock(mu_);
        for (auto& e : described) {
          auto& q = recent_[e.topic];
          q.push_front(std::move(e));
          if (q.size() > keep_) q.pop_back();
        }
      }
      seen_.fetch_add(batch->size());
      // A failed commit only means these records are seen again after a
      // restart; the feed is a view, so that is harmless.
      (void)consumer_->commit(*batch);
    } else if (!batch) {
      std::this_thread::sleep_for(200ms);  // bus unavailable: readiness reports it; try again
    }
    if (std::chrono::steady_clock::now() >= next_lag) {
      if (auto l = consumer_->lag()) {
        std::lock_guard lock(mu_);
        lag_ = std::move(*l);
      }
      next_lag = std::chrono::steady_clock::now() + 1s;
    }
  }
}

std::vector<feed_entry> event_feed::recent(const std::optional<std::string>& topic, std::size_t limit) const {
  std::vector<feed_entry> out;
  std::lock_guard lock(mu_);
  for (const auto& [name, entries] : recent_) {
    if (topic && *topic != name) continue;
    out.insert(out.end(), entries.begin(), entries.end());
  }
  std::sort(out.begin(), out.end(), [](const feed_entry& a, const feed_entry& b) {
    return a.timestamp_ms != b.timestamp_ms ? a.timestamp_ms > b.timestamp_ms : a.offset > b.offset;
  });
  if (out.size() > limit) out.resize(limit);
  return out;
}

std::vector<bus::partition_lag> event_feed::lag() const {
  std::lock_guard lock(mu_);
  return lag_;
}

}  // namespace yilian::app
