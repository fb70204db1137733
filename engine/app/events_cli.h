// `yilian events tail` and `yilian events publish`: operator tools over the bus.
#pragma once

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>

namespace yilian::app {

struct events_cli_options {
  std::filesystem::path config;
  std::optional<std::filesystem::path> data_dir;
  std::optional<std::string> kafka_brokers;
  std::string topic;
  std::string key;              // publish
  bool from_beginning = false;  // tail
  bool follow = false;          // tail: keep waiting for new records
  std::size_t limit = 0;        // tail: 0 = no limit
};

// Prints records of one topic as JSON lines ({"topic","partition","offset",
// "key","timestamp_ms","headers","envelope"} — or "value_base64" when the value
// is not an Envelope). With --from-beginning and without --follow it stops
// once it has read every partition to its end; otherwise it follows. Reads the
// embedded log without taking it over, so it works while an engine serves it.
int run_events_tail(const events_cli_options& options);

// Reads Envelopes as JSON, one per line, from stdin and publishes each durably;
// prints the position of each. Exit 1 at the first line that is not a valid
// Envelope (naming the line), 2 when the bus fails.
int run_events_publish(const events_cli_options& options);

}  // namespace yilian::app
