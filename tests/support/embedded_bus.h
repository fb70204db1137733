// An embedded log in a test's temporary directory with one topic created:
// the bus most workflow tests run on.
#pragma once

#include <catch2/catch.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/bus/embedded_log.h"
#include "tests/support/temp_dir.h"

namespace yilian::test {

inline std::unique_ptr<bus::bus> open_log_with_topic(const temp_dir& dir, const std::string& topic,
                                                     std::int32_t partitions) {
  auto b = bus::open_embedded_log(bus::embedded_log_options{.path = dir.file("bus/log.db"), .default_partitions = partitions});
  if (!b) FAIL(b.error().describe());
  const std::vector<bus::topic_spec> topics{{.name = topic, .partitions = partitions}};
  if (auto r = (*b)->ensure_topics(topics); !r) FAIL(r.error().describe());
  return std::move(*b);
}

}  // namespace yilian::test
