// What embedded_log_crash_child publishes for payload id N, so the parent
// test can check every acknowledged record byte for byte after the kill.
#pragma once

#include <cstdint>
#include <string>

namespace yilian::bus::test {

inline constexpr const char* kCrashTopic = "crash";
inline constexpr std::int32_t kCrashPartitions = 4;

inline std::string crash_key(std::uint64_t id) { return "k" + std::to_string(id % 31); }

inline std::string crash_value(std::uint64_t id) {
  std::string out = "id=" + std::to_string(id) + ";";
  std::uint64_t x = id * 0x9e3779b97f4a7c15ULL + 1;
  while (out.size() < 300) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    out.push_back(static_cast<char>('a' + x % 26));
  }
  return out;
}

}  // namespace yilian::bus::test
