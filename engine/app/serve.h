// `yilian serve`: the whole engine in one process.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

namespace yilian::app {

struct serve_options {
  std::filesystem::path config;                  // consortium directory or consortium.yaml
  std::optional<std::filesystem::path> data_dir;  // overrides Consortium.data_dir
  std::optional<std::string> http_listen;         // "host:port" overrides Consortium.http
  std::optional<std::string> kafka_brokers;       // use Kafka at these brokers
  std::optional<std::string> log_level;           // overrides Consortium.logging.level
  bool mllp_any_port = false;                     // MLLP channels on 127.0.0.1, any free port (tests)
};

// Loads and validates the configuration (refusing to start on any error,
// printed to stderr with file:line:column and field path), opens the bus,
// serves until SIGINT/SIGTERM, then stops accepting, drains in-flight work and
// flushes. Returns the process exit code: 0 after a clean stop, 1 for bad
// configuration, 2 when a dependency could not be opened.
int run_serve(const serve_options& options);

// "127.0.0.1:8080" -> {"127.0.0.1", 8080}; "[::1]:0" -> {"::1", 0}.
bool split_host_port(std::string_view text, std::string& host, std::uint16_t& port);

}  // namespace yilian::app
