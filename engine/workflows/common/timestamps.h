// Workflow time: whole seconds on the system clock, and protobuf Timestamps.
#pragma once

#include <chrono>

#include <google/protobuf/timestamp.pb.h>

namespace yilian::workflows {

using seconds = std::chrono::sys_seconds;

inline seconds to_seconds(const google::protobuf::Timestamp& t) { return seconds(std::chrono::seconds(t.seconds())); }

inline google::protobuf::Timestamp to_timestamp(seconds t) {
  google::protobuf::Timestamp ts;
  ts.set_seconds(t.time_since_epoch().count());
  return ts;
}

}  // namespace yilian::workflows
