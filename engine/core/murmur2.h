// Kafka's key -> partition function (the Java client's default partitioner:
// murmur2 of the key bytes, sign bit cleared, modulo the partition count).
// Both buses use it so a key lands in the same partition on the embedded log,
// on Kafka through librdkafka (partitioner=murmur2_random), and for Java peers.
#pragma once

#include <cstdint>
#include <string_view>

namespace yilian {

std::uint32_t murmur2(std::string_view bytes) noexcept;

// Partition for a non-empty key. Callers choose a partition themselves for empty keys.
inline std::int32_t partition_for_key(std::string_view key, std::int32_t partitions) noexcept {
  return static_cast<std::int32_t>((murmur2(key) & 0x7fffffffU) % static_cast<std::uint32_t>(partitions));
}

}  // namespace yilian
