// yilian::bus::instrumented_bus — wraps any bus and records what an operator
// alerts on, whichever implementation is underneath:
//
//   yilian_bus_published_total{topic}            records durably published
//   yilian_bus_publish_errors_total{topic,code}  publishes that failed, by errc
//   yilian_bus_publish_duration_seconds{topic}   publish -> durable acknowledgement
//   yilian_bus_publish_in_flight                 publishes accepted, not yet acknowledged
//
// The metric children per topic are created lazily and cached; the hot path
// is a lookup under a shared lock plus atomic updates. Owns nothing but the
// reference to the wrapped bus, which must outlive it. Thread-safe like bus.
#pragma once

#include <map>
#include <shared_mutex>
#include <string>

#include "engine/bus/bus.h"
#include "engine/core/metrics.h"

namespace yilian::bus {

class instrumented_bus final : public bus {
 public:
  instrumented_bus(bus& inner, metrics::registry& registry);

  std::string_view kind() const noexcept override { return inner_.kind(); }
  result<void> ensure_topics(std::span<const topic_spec> topics) override { return inner_.ensure_topics(topics); }
  result<std::int32_t> partitions(std::string_view topic) override { return inner_.partitions(topic); }
  void publish(message msg, publish_handler done) override;
  result<std::unique_ptr<consumer>> subscribe(consumer_options options) override {
    return inner_.subscribe(std::move(options));
  }
  result<void> flush(std::chrono::milliseconds timeout) override { return inner_.flush(timeout); }
  result<void> check_ready(std::chrono::milliseconds timeout) override { return inner_.check_ready(timeout); }

 private:
  struct topic_metrics {
    metrics::counter* published;
    metrics::histogram* duration;
    std::string_view name;  // the map key this entry lives under
  };
  topic_metrics& for_topic(const std::string& topic);

  bus& inner_;
  metrics::counter_family& published_;
  metrics::counter_family& errors_;
  metrics::histogram_family& duration_;
  metrics::gauge& in_flight_;
  std::shared_mutex mu_;
  std::map<std::string, topic_metrics, std::less<>> topics_;  // guarded by mu_
};

}  // namespace yilian::bus
