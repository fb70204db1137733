#include <catch2/catch.hpp>

#include "engine/core/murmur2.h"

using yilian::murmur2;
using yilian::partition_for_key;

TEST_CASE("murmur2 matches the values Kafka's Java client computes", "[unit]") {
  // Vectors from org.apache.kafka.common.utils.UtilsTest#testMurmur2.
  CHECK(static_cast<std::int32_t>(murmur2("21")) == -973932308);
  CHECK(static_cast<std::int32_t>(murmur2("foobar")) == -790332482);
  CHECK(static_cast<std::int32_t>(murmur2("a-little-bit-long-string")) == -985981536);
  CHECK(static_cast<std::int32_t>(murmur2("a-little-bit-longer-string")) == -1486304829);
  CHECK(static_cast<std::int32_t>(murmur2("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8")) == -58897971);
  CHECK(static_cast<std::int32_t>(murmur2(std::string_view("abc", 3))) == 479470107);
}

TEST_CASE("a key always maps to the same partition within range", "[unit]") {
  for (std::int32_t n : {1, 3, 12}) {
    const auto p = partition_for_key("patient-0001", n);
    CHECK(p >= 0);
    CHECK(p < n);
    CHECK(partition_for_key("patient-0001", n) == p);
  }
}
