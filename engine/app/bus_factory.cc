#include "engine/app/bus_factory.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "engine/bus/embedded_log.h"
#include "engine/bus/kafka_bus.h"
#include "engine/core/log.h"

namespace yilian::app {

namespace {

std::string join(const google::protobuf::RepeatedPtrField<std::string>& items, char sep) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += sep;
    out += item;
  }
  return out;
}

result<std::unique_ptr<bus::bus>> open_kafka(const config::loaded_consortium& cfg, const bus_overrides& overrides) {
  const auto& k = cfg.consortium.bus().kafka();
  bus::kafka_options o;
  o.brokers = overrides.kafka_brokers.value_or(join(k.brokers(), ','));
  if (!k.client_id().empty()) o.client_id = k.client_id();
  for (const auto& [name, value] : k.properties()) o.properties[name] = value;
  for (const auto& [name, ref] : k.secret_properties()) {
    auto secret = resolve_secret(ref, cfg);
    if (!secret) {
      auto e = secret.error();
      e.where = "bus.kafka.secret_properties." + name;
      return std::unexpected(e);
    }
    o.properties[name] = std::move(*secret);
  }
  if (k.publish_timeout_ms() > 0) o.publish_timeout = std::chrono::milliseconds(k.publish_timeout_ms());
  if (k.max_in_flight() > 0) o.max_in_flight = k.max_in_flight();
  if (k.replication_factor() > 0) o.replication_factor = static_cast<std::int32_t>(k.replication_factor());
  if (k.partitions() > 0) o.default_partitions = static_cast<std::int32_t>(k.partitions());
  auto logger = log::get("kafka");
  o.log = [logger](int level, std::string_view line) {
    // librdkafka syslog levels: 0-3 error, 4 warning, 5-6 info, 7 debug.
    const auto l = level <= 3 ? log::level::error : level == 4 ? log::level::warn
                 : level <= 6 ? log::level::info : log::level::debug;
    logger.write(l, "librdkafka", {log::field("detail", line)});
  };
  return bus::open_kafka_bus(std::move(o));
}

}  // namespace

std::filesystem::path embedded_log_file(const config::loaded_consortium& cfg) {
  return cfg.bus_dir / "events.db";
}

result<std::unique_ptr<bus::bus>> open_bus(const config::loaded_consortium& cfg, const bus_overrides& overrides) {
  if (overrides.kafka_brokers || cfg.uses_kafka()) return open_kafka(cfg, overrides);
  const auto& e = cfg.consortium.bus().embedded();
  bus::embedded_log_options o;
  o.path = embedded_log_file(cfg);
  if (e.partitions() > 0) o.default_partitions = static_cast<std::int32_t>(e.partitions());
  if (e.max_in_flight() > 0) o.max_in_flight = e.max_in_flight();
  if (e.publish_timeout_ms() > 0) o.publish_timeout = std::chrono::milliseconds(e.publish_timeout_ms());
  if (e.has_tail_cache_bytes()) o.tail_cache_bytes = static_cast<std::size_t>(e.tail_cache_bytes());
  std::error_code ec;
  std::filesystem::create_directories(cfg.bus_dir, ec);
  if (ec) return fail(errc::io_error, "cannot create the embedded log directory: " + ec.message(), cfg.bus_dir.string());
  return bus::open_embedded_log(std::move(o));
}

std::vector<bus::topic_spec> topic_specs(const config::loaded_consortium& cfg) {
  std::vector<bus::topic_spec> out;
  out.reserve(cfg.topics.size());
  for (const auto& t : cfg.topics) {
    out.push_back(bus::topic_spec{.name = t.name, .partitions = t.partitions, .retention_ms = t.retention_ms,
                                  .retention_bytes = t.retention_bytes});
  }
  return out;
}

result<std::string> resolve_secret(const config::v1::SecretRef& ref, const config::loaded_consortium& cfg) {
  std::string value;
  if (ref.has_env()) {
    const char* v = std::getenv(ref.env().c_str());
    if (v == nullptr) return fail(errc::config_error, "environment variable " + ref.env() + " is not set");
    value = v;
  } else if (ref.has_file()) {
    const auto path = cfg.resolve(ref.file());
    std::ifstream in(path, std::ios::binary);
    if (!in) return fail(errc::config_error, "cannot read secret file " + path.string());
    std::ostringstream text;
    text << in.rdbuf();
    value = text.str();
  } else {
    return fail(errc::config_error, "secret reference names neither env nor file");
  }
  while (!value.empty() && (value.back() == '\n' || value.back() == '\r')) value.pop_back();
  return value;
}

}  // namespace yilian::app
