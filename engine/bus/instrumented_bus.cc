#include "engine/bus/instrumented_bus.h"

#include <chrono>
#include <mutex>

namespace yilian::bus {

namespace {
// 100 µs .. ~13 s: group commit on the embedded log acknowledges in well under
// a millisecond; Kafka with acks=all in a few; anything in seconds is trouble.
std::vector<double> publish_buckets() { return metrics::exponential_buckets(0.0001, 2.0, 18); }
}  // namespace

instrumented_bus::instrumented_bus(bus& inner, metrics::registry& registry)
    : inner_(inner),
      published_(registry.add_counter("yilian_bus_published_total", "Records durably published, by topic.",
                                      {"topic"})),
      errors_(registry.add_counter("yilian_bus_publish_errors_total",
                                   "Publishes that failed, by topic and error code.", {"topic", "code"})),
      duration_(registry.add_histogram("yilian_bus_publish_duration_seconds",
                                       "Time from publish to durable acknowledgement, by topic.", {"topic"},
                                       publish_buckets())),
      in_flight_(registry.add_gauge("yilian_bus_publish_in_flight", "Publishes accepted and not yet acknowledged.")
                     .get()) {}

instrumented_bus::topic_metrics& instrumented_bus::for_topic(const std::string& topic) {
  {
    std::shared_lock lock(mu_);
    if (auto it = topics_.find(topic); it != topics_.end()) return it->second;
  }
  std::unique_lock lock(mu_);
  auto [it, inserted] = topics_.try_emplace(topic, topic_metrics{.published = &published_.with({topic}),
                                                                  .duration = &duration_.with({topic})});
  it->second.name = it->first;  // map keys never move: the view stays valid
  if (inserted) {
    // Start the series operators alert on at zero, so rate() and absence
    // checks work before the first failure.
    for (const auto code : {errc::unavailable, errc::timeout, errc::overloaded}) {
      (void)errors_.with({it->second.name, to_string(code)});
    }
  }
  return it->second;
}

void instrumented_bus::publish(message msg, publish_handler done) {
  auto& m = for_topic(msg.topic);
  const auto started = std::chrono::steady_clock::now();
  in_flight_.inc();
  inner_.publish(std::move(msg), [this, &m, started, done = std::move(done)](result<position> r) mutable {
    in_flight_.dec();
    if (r) {
      m.published->inc();
      m.duration->observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    } else {
      errors_.with({m.name, to_string(r.error().code)}).inc();
    }
    done(std::move(r));
  });
}

}  // namespace yilian::bus
