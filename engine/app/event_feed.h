// yilian::app::event_feed — the engine's own view of what flows over the bus,
// for the operator console and GET /api/v1/events.
//
// It follows the configured topics as the consumer group "yilian-console",
// keeps the last `keep_per_topic` records' metadata per topic (event id, type,
// source hospital, position — ids only, never payload fields with personal
// data) and commits after each batch, so its lag is the console's lag.
// Owns one consumer on one thread of its own; recent() and lag() are safe from
// any thread (they read snapshots under a mutex).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "engine/bus/bus.h"

namespace yilian::app {

struct feed_entry {
  std::string topic;
  std::int32_t partition = 0;
  std::int64_t offset = 0;
  std::int64_t timestamp_ms = 0;
  std::string event_id;
  std::string type;
  std::string source_hospital;
  bool decoded = false;  // false: the value is not a yilian Envelope
};

class event_feed {
 public:
  static constexpr const char* group = "yilian-console";

  event_feed(bus::bus& b, std::vector<std::string> topics, std::size_t keep_per_topic);
  ~event_feed();
  event_feed(const event_feed&) = delete;
  event_feed& operator=(const event_feed&) = delete;

  // Subscribes and starts the thread.
  result<void> start();
  // Stops polling, leaves the group, joins the thread. Idempotent.
  void stop();

  // Newest first; only `topic` when given.
  std::vector<feed_entry> recent(const std::optional<std::string>& topic, std::size_t limit) const;
  // Last lag snapshot (refreshed about once a second while running).
  std::vector<bus::partition_lag> lag() const;
  std::uint64_t records_seen() const noexcept { return seen_.load(); }

 private:
  void run();

  bus::bus& bus_;
  std::vector<std::string> topics_;
  std::size_t keep_;
  std::unique_ptr<bus::consumer> consumer_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::uint64_t> seen_{0};
  mutable std::mutex mu_;
  std::map<std::string, std::deque<feed_entry>> recent_;  // guarded by mu_
  std::vector<bus::partition_lag> lag_;                    // guarded by mu_
};

// Decodes the metadata of one record (Envelope fields; never the body).
feed_entry describe_record(const bus::record& r);

}  // namespace yilian::app
