// What the bus conformance suite (tests/conformance/bus_conformance.cc) needs
// from an implementation. Each implementation supplies one fixture file that
// defines make_bus_fixture(); the suite is compiled once per implementation.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "engine/bus/bus.h"

namespace yilian::testing {

class bus_fixture {
 public:
  virtual ~bus_fixture() = default;

  // "embedded" or "kafka"; used in test output.
  virtual std::string name() const = 0;

  // A bus over this fixture's durable store or cluster. After the previous bus
  // from open() is destroyed, calling open() again reopens the same data: that
  // is what the suite calls a restart.
  virtual std::unique_ptr<bus::bus> open() = 0;

  // A bus whose broker/store cannot be reached, configured to give up on a
  // publish after `publish_timeout`.
  virtual std::unique_ptr<bus::bus> open_unreachable(std::chrono::milliseconds publish_timeout) = 0;

  // A topic (or group) name never used before in this fixture's store/cluster.
  virtual std::string fresh_name(std::string_view base) = 0;

  // Upper bound for group membership changes to settle (rebalance).
  virtual std::chrono::milliseconds settle_time() const = 0;
};

std::unique_ptr<bus_fixture> make_bus_fixture();

}  // namespace yilian::testing
