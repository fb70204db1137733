// What embedded_log_crash_child publishes for payload id N, so the parent
// test can check every acknowledged record byte for byte after the kill, and
// how it reports each acknowledgement.
#pragma once

#include <cstdint>
#include <optional>
#include <sstream>
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

// One "ack <partition> <offset> <payload id>" line of the child's output.
struct ack {
  std::int32_t partition = 0;
  std::int64_t offset = 0;
  std::uint64_t id = 0;
};

inline std::optional<ack> parse_ack(const std::string& line) {
  std::istringstream in(line);
  std::string word;
  ack a;
  if (!(in >> word) || word != "ack" || !(in >> a.partition >> a.offset >> a.id)) return std::nullopt;
  return a;
}

}  // namespace yilian::bus::test
