#include "engine/app/events_cli.h"

#include <cstdio>
#include <iostream>
#include <map>

#include <google/protobuf/util/json_util.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include "engine/app/bus_factory.h"
#include "engine/app/envelope_json.h"
#include "engine/bus/embedded_log.h"
#include "engine/bus/publish.h"
#include "engine/config/config.h"
#include "yilian/events/v1/envelope.pb.h"

namespace yilian::app {

namespace {

std::optional<config::loaded_consortium> load(const events_cli_options& o) {
  auto loaded = config::load_consortium(o.config, config::load_options{.data_dir = o.data_dir});
  if (!loaded) {
    std::fprintf(stderr, "yilian: the configuration has errors:\n%s\n", loaded.error().message.c_str());
    return std::nullopt;
  }
  return std::move(*loaded);
}

std::string base64(std::string_view in) {
  static constexpr char table[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const auto n = (static_cast<unsigned>(static_cast<unsigned char>(in[i])) << 16U) |
                   (static_cast<unsigned>(static_cast<unsigned char>(in[i + 1])) << 8U) |
                   static_cast<unsigned>(static_cast<unsigned char>(in[i + 2]));
    out += table[(n >> 18U) & 63U];
    out += table[(n >> 12U) & 63U];
    out += table[(n >> 6U) & 63U];
    out += table[n & 63U];
  }
  if (i < in.size()) {
    auto n = static_cast<unsigned>(static_cast<unsigned char>(in[i])) << 16U;
    if (i + 1 < in.size()) n |= static_cast<unsigned>(static_cast<unsigned char>(in[i + 1])) << 8U;
    out += table[(n >> 18U) & 63U];
    out += table[(n >> 12U) & 63U];
    out += i + 1 < in.size() ? table[(n >> 6U) & 63U] : '=';
    out += '=';
  }
  return out;
}

nlohmann::json record_json(const bus::record& r) {
  nlohmann::json line{{"topic", r.topic}, {"partition", r.partition}, {"offset", r.offset},
                      {"key", r.key},     {"timestamp_ms", r.timestamp_ms}};
  auto headers = nlohmann::json::object();
  for (const auto& h : r.headers) headers[h.key] = h.value;
  line["headers"] = std::move(headers);
  events::v1::Envelope envelope;
  std::string json;
  if (envelope.ParseFromString(r.value) &&
      google::protobuf::util::MessageToJsonString(envelope, &json).ok()) {
    line["envelope"] = nlohmann::json::parse(json);
  } else {
    line["value_base64"] = base64(r.value);
  }
  return line;
}

// The embedded log is read without taking it over (a running engine owns it);
// Kafka is read through a consumer group of its own that never commits.
result<std::unique_ptr<bus::bus>> open_for_reading(const config::loaded_consortium& cfg,
                                                   const events_cli_options& o) {
  if (o.kafka_brokers || cfg.uses_kafka()) return open_bus(cfg, bus_overrides{.kafka_brokers = o.kafka_brokers});
  return bus::open_embedded_log_reader(embedded_log_file(cfg));
}

}  // namespace

int run_events_tail(const events_cli_options& o) {
  using namespace std::chrono_literals;
  auto cfg = load(o);
  if (!cfg) return 1;
  auto opened = open_for_reading(*cfg, o);
  if (!opened) {
    std::fprintf(stderr, "yilian: cannot open the bus: %s\n", opened.error().describe().c_str());
    return 2;
  }
  auto& b = **opened;
  const auto group = "yilian-tail-" + std::to_string(::getpid()) + "-" +
                     std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
  auto consumer = b.subscribe(bus::consumer_options{
      .group = group, .topics = {o.topic}, .start = o.from_beginning ? bus::start_from::earliest : bus::start_from::latest});
  if (!consumer) {
    std::fprintf(stderr, "yilian: cannot read %s: %s\n", o.topic.c_str(), consumer.error().describe().c_str());
    return 2;
  }
  // Without --follow, stop once every assigned partition has been read up to
  // the end it had when the partitions were assigned (or after a quiet spell,
  // which covers partitions whose records retention has already deleted).
  std::size_t printed = 0;
  std::map<std::pair<std::string, std::int32_t>, std::int64_t> target_end;  // per partition, at assignment
  std::map<std::pair<std::string, std::int32_t>, std::int64_t> next;        // per partition, after what we printed
  auto last_progress = std::chrono::steady_clock::now();
  const auto assignment_deadline = last_progress + 30s;
  const bool follow = o.follow || !o.from_beginning;
  while (o.limit == 0 || printed < o.limit) {
    auto batch = (*consumer)->poll(200ms, 500);
    if (!batch) {
      std::fprintf(stderr, "yilian: %s\n", batch.error().describe().c_str());
      return 2;
    }
    for (const auto& r : *batch) {
      std::cout << record_json(r).dump() << '\n';
      next[{r.topic, r.partition}] = r.offset + 1;
      if (++printed == o.limit) break;
    }
    std::cout.flush();
    if (!batch->empty()) last_progress = std::chrono::steady_clock::now();
    if (follow) continue;
    if (target_end.empty()) {
      if ((*consumer)->assignment().empty()) {
        if (std::chrono::steady_clock::now() > assignment_deadline) {
          std::fprintf(stderr, "yilian: no partitions of %s were assigned within 30 s\n", o.topic.c_str());
          return 2;
        }
        continue;
      }
      auto lag = (*consumer)->lag();
      if (!lag) continue;
      for (const auto& l : *lag) target_end[{l.topic, l.partition}] = l.end;
      last_progress = std::chrono::steady_clock::now();
    }
    bool caught_up = true;
    for (const auto& [partition, end] : target_end) {
      const auto it = next.find(partition);
      if (end > 0 && (it == next.end() || it->second < end)) caught_up = false;
    }
    if (caught_up || std::chrono::steady_clock::now() - last_progress > 5s) break;
  }
  (*consumer)->close();
  return 0;
}

int run_events_publish(const events_cli_options& o) {
  auto cfg = load(o);
  if (!cfg) return 1;
  auto opened = open_bus(*cfg, bus_overrides{.kafka_brokers = o.kafka_brokers});
  if (!opened) {
    std::fprintf(stderr, "yilian: cannot open the bus: %s\n", opened.error().describe().c_str());
    return 2;
  }
  auto& b = **opened;
  const auto topics = topic_specs(*cfg);
  if (auto ensured = b.ensure_topics(topics); !ensured) {
    std::fprintf(stderr, "yilian: %s\n", ensured.error().describe().c_str());
    return 2;
  }
  std::string line;
  std::size_t number = 0;
  while (std::getline(std::cin, line)) {
    ++number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto envelope = parse_envelope_json(line);
    if (!envelope) {
      std::fprintf(stderr, "yilian: stdin line %zu: %s\n", number, envelope.error().describe().c_str());
      return 1;
    }
    auto published = bus::publish_sync(b, envelope_message(o.topic, o.key, *envelope));
    if (!published) {
      std::fprintf(stderr, "yilian: stdin line %zu: publish failed: %s\n", number,
                   published.error().describe().c_str());
      return 2;
    }
    std::cout << nlohmann::json{{"topic", published->topic}, {"partition", published->partition},
                                {"offset", published->offset}, {"event_id", envelope->event_id()}}
                     .dump()
              << std::endl;
  }
  return b.flush(std::chrono::seconds(10)) ? 0 : 2;
}

}  // namespace yilian::app
