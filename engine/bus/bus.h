// yilian::bus — the event bus every adapter publishes to and every workflow
// consumes from. Two implementations: the embedded durable log (SQLite, single
// node, the default) and Kafka (librdkafka). Both obey the same contract, which
// tests/conformance/bus_conformance.cc checks against each of them:
//
//  * publish() calls its handler exactly once: with the record's position after
//    the record is durable (fsync'd locally / acked by all in-sync replicas), or
//    with an error. A publish that reported success is never lost.
//  * The key decides the partition (Kafka's murmur2; see engine/core/murmur2.h);
//    records with one key keep their publish order.
//  * Consumers in one group split the topic's partitions between them; offsets
//    are committed explicitly after processing, and whatever was not committed
//    is delivered again after a restart or a rebalance (at-least-once).
//  * When the bus cannot accept (broker unreachable, store locked, queue full),
//    publish fails within the configured timeout with a retriable error instead
//    of hanging.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/error.h"

namespace yilian::bus {

struct header {
  std::string key;
  std::string value;
  bool operator==(const header&) const = default;
};

// What a producer hands to publish().
struct message {
  std::string topic;
  std::string key;    // decides the partition; empty = the bus picks one
  std::string value;  // serialized yilian.events.v1.Envelope, or anything else
  std::vector<header> headers;
  std::int64_t timestamp_ms = 0;  // 0 = now
};

// Where a durable record now lives.
struct position {
  std::string topic;
  std::int32_t partition = 0;
  std::int64_t offset = 0;
  bool operator==(const position&) const = default;
};

// What a consumer receives.
struct record {
  std::string topic;
  std::int32_t partition = 0;
  std::int64_t offset = 0;
  std::string key;
  std::string value;
  std::vector<header> headers;
  std::int64_t timestamp_ms = 0;
};

struct topic_spec {
  std::string name;
  std::int32_t partitions = 1;
  std::int64_t retention_ms = -1;     // -1 = keep forever
  std::int64_t retention_bytes = -1;  // per partition; -1 = unbounded
};

struct partition_lag {
  std::string topic;
  std::int32_t partition = 0;
  std::int64_t committed = -1;  // next offset the group will read; -1 = none committed
  std::int64_t end = 0;         // offset the next published record will get
  std::int64_t lag() const { return end - (committed < 0 ? 0 : committed); }
};

enum class start_from { earliest, latest };

struct consumer_options {
  std::string group;
  std::vector<std::string> topics;
  start_from start = start_from::earliest;  // where a group with no committed offset begins
  // >= 0: a group with no committed offset starts at the first record whose
  // timestamp is >= this (ms since the epoch) instead of at `start`; a
  // partition with no such record starts at its end. Kafka looks it up in the
  // broker's time index (offsets_for_times); the embedded log by binary search
  // over offsets, exact while timestamps do not decrease along a partition
  // (publish-time stamps, the default). Used to rescan a recent stretch of the
  // bus, e.g. by the ingest store's crash recovery.
  std::int64_t start_timestamp_ms = -1;
};

// One member of a consumer group. Not thread-safe: one thread (or strand) owns it.
class consumer {
 public:
  virtual ~consumer() = default;
  consumer() = default;
  consumer(const consumer&) = delete;
  consumer& operator=(const consumer&) = delete;

  // Up to `max` records from this member's partitions, waiting up to `timeout`
  // for the first one. An empty vector means nothing arrived in time.
  virtual result<std::vector<record>> poll(std::chrono::milliseconds timeout, std::size_t max) = 0;

  // Marks these records (and everything before them in their partitions) as
  // processed for the group: the next offset committed per partition is the
  // highest offset given + 1. Synchronous: durable when it returns.
  virtual result<void> commit(std::span<const record> processed) = 0;

  // Partitions currently assigned to this member.
  virtual std::vector<std::pair<std::string, std::int32_t>> assignment() = 0;

  // Committed offset and end offset for the partitions currently assigned.
  virtual result<std::vector<partition_lag>> lag() = 0;

  // Leaves the group (its partitions go to the remaining members). Idempotent;
  // the destructor calls it.
  virtual void close() = 0;
};

using publish_handler = std::move_only_function<void(result<position>)>;

class bus {
 public:
  virtual ~bus() = default;
  bus() = default;
  bus(const bus&) = delete;
  bus& operator=(const bus&) = delete;

  // "embedded", "embedded-reader" (a read-only view) or "kafka".
  virtual std::string_view kind() const noexcept = 0;

  // Creates the topics that do not exist yet with their partition counts.
  // Existing topics are left as they are.
  virtual result<void> ensure_topics(std::span<const topic_spec> topics) = 0;

  // Number of partitions of an existing topic.
  virtual result<std::int32_t> partitions(std::string_view topic) = 0;

  // Thread-safe. Calls `done` exactly once, on a bus-owned thread, when the
  // record is durable or has failed. Never blocks for longer than the
  // configured publish timeout; when the in-flight bound is reached it fails
  // fast with errc::overloaded (retriable) rather than queueing without limit.
  // Handlers must be quick: post work to your own executor. publish() itself
  // may be called from inside a handler (it only enqueues; it never waits for
  // the thread that runs handlers).
  virtual void publish(message msg, publish_handler done) = 0;

  virtual result<std::unique_ptr<consumer>> subscribe(consumer_options options) = 0;

  // Waits until every publish accepted so far has completed (its handler called).
  virtual result<void> flush(std::chrono::milliseconds timeout) = 0;

  // Whether the bus can accept publishes now (for /readyz). Bounded by timeout.
  virtual result<void> check_ready(std::chrono::milliseconds timeout) = 0;
};

}  // namespace yilian::bus
