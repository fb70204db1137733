// The yilian executable: serve the engine, check configuration, look at the
// bus, try HL7 v2 messages, hash tokens. Every command has --help.
#include <cstdio>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>

#include "engine/api/auth.h"
#include "engine/app/events_cli.h"
#include "engine/app/hl7_cli.h"
#include "engine/app/serve.h"
#include "engine/app/version.h"
#include "engine/config/config.h"

namespace {

using namespace yilian;

int config_check(const std::filesystem::path& path, const std::optional<std::filesystem::path>& data_dir) {
  auto validated = config::validate_consortium(path, config::load_options{.data_dir = data_dir});
  if (!validated.report.ok()) {
    std::cout << validated.report.to_string();
    std::cout << validated.report.diagnostics.size() << " error(s); the engine will not start with this configuration\n";
    return 1;
  }
  const auto& c = validated.loaded->consortium;
  std::cout << "ok: " << validated.loaded->file.string() << ": consortium " << c.id() << ", " << c.hospitals_size()
            << " hospitals, " << c.equipment_size() << " equipment, " << c.principals_size() << " principals, "
            << validated.loaded->topics.size() << " topics, bus " << (validated.loaded->uses_kafka() ? "kafka" : "embedded")
            << '\n';
  return 0;
}

int show_endpoints(const std::filesystem::path& path, bool http_only) {
  auto loaded = config::load_consortium(path);
  if (!loaded) {
    std::cerr << loaded.error().message << '\n';
    return 1;
  }
  const auto& h = loaded->consortium.http();
  const std::string http = h.address() + ":" + std::to_string(h.has_port() ? h.port() : 8080);
  if (http_only) {
    std::cout << http << '\n';
    return 0;
  }
  std::cout << "  HTTP API:  http://" << http << "/api/v1   (bearer token required)\n"
            << "  health:    http://" << http << "/healthz   ready: http://" << http << "/readyz\n"
            << "  metrics:   http://" << http << "/metrics   (Prometheus text)\n"
            << "  bus:       " << (loaded->uses_kafka() ? "kafka" : "embedded log in " + loaded->bus_dir.string())
            << '\n'
            << "  MLLP channels (HL7 v2) per hospital:\n";
  for (const auto& p : loaded->profiles) {
    const auto& m = p.profile.inbound().mllp();
    std::cout << "    " << p.hospital_id << "  " << m.bind_address() << ':' << m.port() << '\n';
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"yilian — regional medical-consortium integration engine", "yilian"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "yilian " + std::string(yilian::app::version()));

  // serve
  yilian::app::serve_options serve;
  std::string serve_data_dir;
  auto* serve_cmd = app.add_subcommand("serve", "Run the engine until SIGINT/SIGTERM");
  serve_cmd->add_option("--config", serve.config, "Consortium directory or consortium.yaml")->required();
  serve_cmd->add_option("--data-dir", serve_data_dir, "Overrides data_dir in the configuration");
  auto* listen_opt = serve_cmd->add_option("--http-listen", "HTTP listen address host:port (port 0: any free port)");
  auto* serve_kafka_opt = serve_cmd->add_option("--kafka-brokers", "Use Kafka at these brokers instead of the configured bus");
  auto* level_opt = serve_cmd->add_option("--log-level", "trace, debug, info, warn, error, critical or off");
  serve_cmd->add_flag("--mllp-any-port", serve.mllp_any_port,
                      "Bind every MLLP channel to 127.0.0.1 on a free port (tests; ports are logged)");

  // config
  auto* config_cmd = app.add_subcommand("config", "Work with a consortium configuration");
  config_cmd->require_subcommand(1);
  std::filesystem::path check_path;
  std::string check_data_dir;
  auto* check_cmd = config_cmd->add_subcommand("check", "Validate a consortium and its hospital profiles; exit 1 on errors");
  check_cmd->add_option("path", check_path, "Consortium directory or consortium.yaml")->required();
  check_cmd->add_option("--data-dir", check_data_dir, "Overrides data_dir in the configuration");
  std::filesystem::path endpoints_path;
  bool endpoints_http = false;
  auto* endpoints_cmd = config_cmd->add_subcommand("show-endpoints", "Print where a configured engine listens");
  endpoints_cmd->add_option("path", endpoints_path, "Consortium directory or consortium.yaml")->required();
  endpoints_cmd->add_flag("--http", endpoints_http, "Print only the HTTP host:port");

  // events
  auto* events_cmd = app.add_subcommand("events", "Read and write events on the bus");
  events_cmd->require_subcommand(1);
  yilian::app::events_cli_options events;
  std::string events_data_dir;
  std::string events_kafka;
  auto add_bus_options = [&](CLI::App* cmd) {
    cmd->add_option("--config", events.config, "Consortium directory or consortium.yaml")->required();
    cmd->add_option("--data-dir", events_data_dir, "Overrides data_dir in the configuration");
    cmd->add_option("--kafka-brokers", events_kafka, "Use Kafka at these brokers instead of the configured bus");
    cmd->add_option("--topic", events.topic, "Topic, e.g. yilian.patient.v1")->required();
  };
  auto* tail_cmd = events_cmd->add_subcommand("tail", "Print a topic's events as JSON lines");
  add_bus_options(tail_cmd);
  tail_cmd->add_flag("--from-beginning", events.from_beginning,
                     "Start at the oldest kept record and stop at the end (default: follow new records)");
  tail_cmd->add_flag("-f,--follow", events.follow, "With --from-beginning: keep waiting for new records");
  tail_cmd->add_option("--limit", events.limit, "Stop after this many records (0: no limit)");
  auto* publish_cmd = events_cmd->add_subcommand(
      "publish", "Publish Envelopes given as JSON lines on stdin, durably; prints each position");
  add_bus_options(publish_cmd);
  publish_cmd->add_option("--key", events.key, "Record key (decides the partition)");

  // hl7
  auto* hl7_cmd = app.add_subcommand("hl7", "Try HL7 v2 messages: map them to events, send them over MLLP");
  hl7_cmd->require_subcommand(1);
  yilian::app::hl7_parse_options hl7_parse;
  std::string hl7_profile;
  std::string hl7_config;
  std::string hl7_recorded_at;
  auto* hl7_parse_cmd = hl7_cmd->add_subcommand(
      "parse",
      "Print the events the messages in FILEs map to, as JSON lines (protobuf JSON mapping), or each error with "
      "its position; exit 1 on any error. Without a profile: the generic profile (any sending facility, "
      "identifiers kept as sent). A file may hold several messages, each starting with MSH at a line start");
  hl7_parse_cmd->add_option("--profile", hl7_profile, "A hospital profile YAML");
  hl7_parse_cmd->add_option("--config", hl7_config,
                            "Consortium directory or consortium.yaml (with --hospital: that hospital's profile)");
  hl7_parse_cmd->add_option("--hospital", hl7_parse.hospital, "Hospital id of the profile to use (with --config)");
  hl7_parse_cmd->add_option("--charset", hl7_parse.charset,
                            "Character set when MSH-18 is empty, e.g. GBK, GB18030, UTF-8 (default: the profile's)");
  hl7_parse_cmd->add_option("--recorded-at", hl7_recorded_at, "RFC 3339 time for envelope recorded_at (default now)");
  hl7_parse_cmd->add_flag("--raw-store-uri", hl7_parse.raw_store_uri,
                          "raw_ref.uri as the engine's raw store names it (raw://<hospital>/<sha256>)");
  hl7_parse_cmd->add_option("files", hl7_parse.files, "HL7 v2 message files")->required();
  yilian::app::hl7_send_options hl7_send;
  auto* hl7_send_cmd = hl7_cmd->add_subcommand(
      "send",
      "Send the messages in FILEs over MLLP one at a time and print each ACK as a JSON line; exit 1 unless every "
      "ACK is AA or CA");
  hl7_send_cmd->add_option("--host", hl7_send.host, "Listener host")->capture_default_str();
  hl7_send_cmd->add_option("--port", hl7_send.port, "Listener port")->required();
  hl7_send_cmd->add_option("--timeout-ms", hl7_send.timeout_ms, "Connect and ACK deadline, milliseconds")
      ->capture_default_str();
  hl7_send_cmd->add_option("files", hl7_send.files, "HL7 v2 message files")->required();

  // token
  auto* token_cmd = app.add_subcommand("token", "Bearer tokens for principals");
  token_cmd->require_subcommand(1);
  auto* hash_cmd = token_cmd->add_subcommand(
      "hash", "Read a token from stdin and print its SHA-256 (what the configuration stores as token_sha256)");
  auto* new_cmd = token_cmd->add_subcommand("new", "Print a new random token and its SHA-256");

  CLI11_PARSE(app, argc, argv);

  try {
    if (serve_cmd->parsed()) {
      if (!serve_data_dir.empty()) serve.data_dir = serve_data_dir;
      if (*listen_opt) serve.http_listen = listen_opt->as<std::string>();
      if (*serve_kafka_opt) serve.kafka_brokers = serve_kafka_opt->as<std::string>();
      if (*level_opt) serve.log_level = level_opt->as<std::string>();
      return yilian::app::run_serve(serve);
    }
    if (check_cmd->parsed()) {
      std::optional<std::filesystem::path> dd;
      if (!check_data_dir.empty()) dd = check_data_dir;
      return config_check(check_path, dd);
    }
    if (endpoints_cmd->parsed()) return show_endpoints(endpoints_path, endpoints_http);
    if (tail_cmd->parsed() || publish_cmd->parsed()) {
      if (!events_data_dir.empty()) events.data_dir = events_data_dir;
      if (!events_kafka.empty()) events.kafka_brokers = events_kafka;
      return tail_cmd->parsed() ? yilian::app::run_events_tail(events) : yilian::app::run_events_publish(events);
    }
    if (hl7_parse_cmd->parsed()) {
      if (!hl7_profile.empty()) hl7_parse.profile = hl7_profile;
      if (!hl7_config.empty()) hl7_parse.config = hl7_config;
      if (!hl7_recorded_at.empty()) hl7_parse.recorded_at = hl7_recorded_at;
      return yilian::app::run_hl7_parse(hl7_parse);
    }
    if (hl7_send_cmd->parsed()) return yilian::app::run_hl7_send(hl7_send);
    if (hash_cmd->parsed()) {
      std::string token;
      std::getline(std::cin, token);
      while (!token.empty() && (token.back() == '\r' || token.back() == ' ')) token.pop_back();
      if (token.empty()) {
        std::cerr << "yilian: no token on stdin\n";
        return 1;
      }
      std::cout << yilian::api::hash_token(token) << '\n';
      return 0;
    }
    if (new_cmd->parsed()) {
      const auto token = yilian::api::generate_token();
      std::cout << "token:        " << token << "\ntoken_sha256: " << yilian::api::hash_token(token) << '\n';
      return 0;
    }
  } catch (const std::exception& e) {
    std::cerr << "yilian: " << e.what() << '\n';
    return 2;
  }
  return 0;
}
