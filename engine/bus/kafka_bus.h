// yilian::bus::kafka_bus — the bus on Apache Kafka, through librdkafka.
//
// One idempotent producer (enable.idempotence=true, acks=all,
// partitioner=murmur2_random) is shared by every publisher; each consumer from
// subscribe() is its own librdkafka consumer in the given group. Every
// librdkafka handle is owned by a unique_ptr with a deleter.
//
// Threads: the bus owns one poll thread. It serves librdkafka's delivery
// reports (as batched events) and runs every publish handler, including the
// ones for publishes that fail before reaching librdkafka (overloaded,
// cancelled, invalid) — handlers never run on the caller's stack.
// librdkafka's own threads only run the optional log callback.
//
// Keys: a non-empty key picks partition_for_key(key, partitions) (the Java
// client's murmur2 partitioner); an empty key is sent as a null key, which
// librdkafka spreads over the partitions (sticky per batch). Consumers read a
// null key back as an empty string.
//
// Errors: publish handlers get the record's position once the partition
// leader has it acknowledged by all in-sync replicas, or an error mapped by
// error_from_kafka(): retriable for "try again later" conditions (timeout,
// broker down, not enough replicas, overloaded), not retriable for permanent
// ones (unknown topic, record too large, authorization). A fatal producer error
// (e.g. an idempotence sequence that cannot be recovered) is reported with
// code unavailable, retriable=false and a message starting "fatal:"; from then
// on every publish fails the same way and the bus must be reopened.
//
// Shutdown (the destructor): stop accepting publishes (they fail with
// errc::cancelled), let outstanding ones finish for up to shutdown_timeout,
// then purge what is left and complete it with errc::cancelled. Every handler
// is called exactly once. Do not destroy the bus from inside a publish handler.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/bus/bus.h"
#include "engine/core/error.h"

namespace yilian::bus {

// How to reach and use a Kafka cluster. A plain aggregate: fill it with
// designated initializers, hand it to open_kafka_bus().
struct kafka_options {
  // bootstrap.servers: "host:port[,host:port...]". Required.
  std::string brokers;
  // client.id, seen in broker logs and quotas.
  std::string client_id = "yilian";
  // Extra librdkafka properties for every client the bus creates (producer,
  // consumers). They override the bus's tuning defaults (linger.ms, ...). The
  // properties that carry the bus contract (acks, enable.idempotence,
  // partitioner, message/delivery timeouts, auto commit, group.id, ...) are
  // rejected with errc::config_error: set them through the fields below.
  std::map<std::string, std::string> properties;
  // Extra librdkafka properties for consumers only (session.timeout.ms, ...).
  std::map<std::string, std::string> consumer_properties;
  // How long a publish may take before its handler gets a retriable timeout
  // (message.timeout.ms, a.k.a. delivery.timeout.ms). librdkafka checks
  // timeouts about once a second, so allow up to ~1 s more.
  std::chrono::milliseconds publish_timeout{30'000};
  // Publishes accepted and not completed yet; one more fails fast with
  // errc::overloaded. librdkafka's queue.buffering.max.messages is set to
  // twice this (a delivery-report batch is released after its handlers ran).
  std::size_t max_in_flight = 100'000;
  // ensure_topics: partition count for specs that give none (partitions <= 0).
  std::int32_t default_partitions = 1;
  // ensure_topics: replication factor of new topics; -1 = the brokers'
  // default.replication.factor.
  std::int32_t replication_factor = -1;
  // Bound for admin, metadata, committed-offset and watermark requests.
  std::chrono::milliseconds request_timeout{10'000};
  // ensure_topics: how long to wait, after the controller created the topics,
  // until every partition's leader serves it (a broker creates partitions one
  // by one: ~25 ms each on a small test machine, so 1000 take ~25 s).
  std::chrono::milliseconds topic_ready_timeout{60'000};
  // Destructor: how long outstanding publishes may still complete normally
  // before they are purged and fail with errc::cancelled.
  std::chrono::milliseconds shutdown_timeout{10'000};
  // librdkafka's log lines (syslog level, "FACILITY: message"); called from
  // librdkafka threads. Empty = librdkafka's default (stderr).
  std::function<void(int level, std::string_view line)> log;
};

// The bus over Kafka. Thread-safe except where bus.h says otherwise.
// Construct it with open_kafka_bus().
class kafka_bus final : public bus {
 public:
  struct impl;
  explicit kafka_bus(std::unique_ptr<impl> state);
  ~kafka_bus() override;

  std::string_view kind() const noexcept override { return "kafka"; }
  result<void> ensure_topics(std::span<const topic_spec> topics) override;
  result<std::int32_t> partitions(std::string_view topic) override;
  void publish(message msg, publish_handler done) override;
  result<std::unique_ptr<consumer>> subscribe(consumer_options options) override;
  result<void> flush(std::chrono::milliseconds timeout) override;
  result<void> check_ready(std::chrono::milliseconds timeout) override;

  // The producer's effective librdkafka configuration, secrets masked.
  const std::vector<std::pair<std::string, std::string>>& effective_config() const noexcept;
  // The fatal producer error, once one happened (then the bus must be reopened).
  std::optional<error> fatal_error() const;
  // Publishes handed to librdkafka and not completed yet.
  std::size_t in_flight() const noexcept;

 private:
  std::unique_ptr<impl> impl_;
};

// Creates the producer and the poll thread. Does not contact the brokers:
// an unreachable cluster shows up as failing publishes / check_ready().
// Errors: config_error (bad or contract-breaking properties), invalid_argument.
result<std::unique_ptr<bus>> open_kafka_bus(kafka_options options);

// The librdkafka configuration the bus's producer runs with (librdkafka's
// defaults plus the bus's settings plus options.properties), sorted by name,
// with secret values masked. Same errors as open_kafka_bus().
result<std::vector<std::pair<std::string, std::string>>> effective_producer_config(const kafka_options& options);

// Same for a consumer created by subscribe(consumer).
result<std::vector<std::pair<std::string, std::string>>> effective_consumer_config(const kafka_options& options,
                                                                                   const consumer_options& consumer);

// "name=value" lines, one per property — what to log at startup. Masks
// secrets again, so it is safe on unmasked input too.
std::string render_config(const std::vector<std::pair<std::string, std::string>>& config);

// Whether a librdkafka property's value is a secret (passwords, private keys,
// OAuth client secrets, ...). Such values are never printed.
bool is_secret_property(std::string_view name) noexcept;

// `value`, or a fixed mask if `name` is a secret. Never reveals the length.
std::string masked_value(std::string_view name, std::string_view value);

// The one mapping from librdkafka / Kafka error codes (rd_kafka_resp_err_t,
// passed as int so this header does not need rdkafka.h) to yilian::error.
// `fatal` marks a fatal client error (non-retriable, message "fatal: ...").
// `retriable_hint` is librdkafka's own verdict when it gave one
// (rd_kafka_error_is_retriable: 0 or 1); -1 = none, decide from the code.
error error_from_kafka(int rd_kafka_resp_err, std::string_view detail, std::string where = {}, bool fatal = false,
                       int retriable_hint = -1);

}  // namespace yilian::bus
