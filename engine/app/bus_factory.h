// Opens the bus a configuration asks for: Kafka when bus.kafka is set (or a
// --kafka-brokers override is given), the embedded durable log otherwise.
// Converts the protobuf config into the buses' plain option structs (the edge
// where config types end) and resolves secret references.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/bus/bus.h"
#include "engine/config/config.h"

namespace yilian::app {

struct bus_overrides {
  std::optional<std::string> kafka_brokers;  // use Kafka at these brokers whatever the config says
};

result<std::unique_ptr<bus::bus>> open_bus(const config::loaded_consortium& cfg, const bus_overrides& overrides = {});

// The topics the engine creates at startup, with their partitions and retention.
std::vector<bus::topic_spec> topic_specs(const config::loaded_consortium& cfg);

// Where the embedded log's file lives for this configuration.
std::filesystem::path embedded_log_file(const config::loaded_consortium& cfg);

// The value of a secret reference (environment variable or file, trailing
// newline trimmed). Errors name the reference, never the value.
result<std::string> resolve_secret(const config::v1::SecretRef& ref, const config::loaded_consortium& cfg);

}  // namespace yilian::app
