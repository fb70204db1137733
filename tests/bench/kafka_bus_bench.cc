// kafka_bus_bench — publish throughput and acknowledgement latency of the
// Kafka bus against raw librdkafka, side by side in one process, on a real
// broker (e.g. `deploy/kafka/start /tmp/yilian-kafka-bench 19092`).
//
// Both sides produce the same messages (1 KiB values, keys "key-<i % 1000>")
// to the same topic with the same producer configuration: the raw producer
// gets every property of the bus's effective configuration that differs from
// librdkafka's defaults (idempotence, acks=all, partitioner, linger, ...).
// The raw side is librdkafka as its documentation suggests using it:
// rd_kafka_producev with RD_KAFKA_MSG_F_COPY, a dr_msg_cb, and a thread
// calling rd_kafka_poll. Load is closed-loop (tests/bench/publish_harness.h).
//
//   kafka_bus_bench --brokers 127.0.0.1:19092 [--publishers 1,16,256] [--repeat 3]
//
// Runs alternate raw/bus (which side goes first alternates too). The summary
// gives, per side, the median run by throughput (with its latencies), the
// client CPU per message (user+sys of this whole process, librdkafka threads
// included, divided by the messages), and the bus/raw ratio of the medians.
// The broker shares the machine, so single runs are noisy: use --repeat >= 3.
// Never a CI gate.
#include <librdkafka/rdkafka.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <sys/resource.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "engine/bus/kafka_bus.h"
#include "engine/bus/publish.h"
#include "tests/bench/publish_harness.h"

namespace {

using namespace std::chrono_literals;
using yilian::bench::publish_figures;

struct config {
  std::string brokers;
  std::vector<std::size_t> publishers{1, 16, 256};
  std::size_t messages = 0;  // 0 = per-concurrency default
  std::size_t size = 1024;
  std::int32_t partitions = 6;
  int repeat = 3;
  std::vector<std::string> properties;  // extra "name=value" for both sides
  std::string only;                     // "bus" or "raw": run one side (for profiling)
};

std::size_t messages_for(const config& c, std::size_t publishers) {
  if (c.messages > 0) return c.messages;
  if (publishers <= 1) return 3000;
  if (publishers <= 16) return 30000;
  return 150000;
}

// ---------------------------------------------------------------------------
// The raw librdkafka baseline.

class raw_producer {
 public:
  raw_producer(const std::vector<std::pair<std::string, std::string>>& properties) {
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    char errstr[512];
    for (const auto& [name, value] : properties) {
      if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        throw std::runtime_error("raw producer: " + name + ": " + errstr);
      }
    }
    rd_kafka_conf_set_dr_msg_cb(conf, &raw_producer::on_delivery);
    rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (rk_ == nullptr) {
      rd_kafka_conf_destroy(conf);
      throw std::runtime_error(std::string("raw producer: ") + errstr);
    }
    poller_ = std::thread([this] {
      while (!stop_.load()) rd_kafka_poll(rk_, 100);
    });
  }
  ~raw_producer() {
    rd_kafka_flush(rk_, 30'000);
    stop_.store(true);
    poller_.join();
    rd_kafka_destroy(rk_);
  }
  raw_producer(const raw_producer&) = delete;
  raw_producer& operator=(const raw_producer&) = delete;

  void produce(const std::string& topic, const std::string& key, const std::string& value,
               std::function<void(bool)> done) {
    auto* opaque = new std::function<void(bool)>(std::move(done));
    const rd_kafka_resp_err_t err = rd_kafka_producev(
        rk_, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(key.data(), key.size()), RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
        RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      std::unique_ptr<std::function<void(bool)>> owned(opaque);
      (*owned)(false);
    }
  }

 private:
  static void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void*) {
    std::unique_ptr<std::function<void(bool)>> done(static_cast<std::function<void(bool)>*>(m->_private));
    (*done)(m->err == RD_KAFKA_RESP_ERR_NO_ERROR);
  }

  rd_kafka_t* rk_ = nullptr;
  std::atomic<bool> stop_{false};
  std::thread poller_;
};

// The bus's effective producer settings that differ from librdkafka's defaults.
std::vector<std::pair<std::string, std::string>> raw_properties(const yilian::bus::kafka_options& options) {
  auto effective = yilian::bus::effective_producer_config(options);
  if (!effective) throw std::runtime_error(effective.error().describe());
  std::map<std::string, std::string> defaults;
  {
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    std::size_t n = 0;
    const char** arr = rd_kafka_conf_dump(conf, &n);
    for (std::size_t i = 0; i + 1 < n; i += 2) defaults[arr[i]] = arr[i + 1];
    rd_kafka_conf_dump_free(arr, n);
    rd_kafka_topic_conf_t* tconf = rd_kafka_topic_conf_new();
    arr = rd_kafka_topic_conf_dump(tconf, &n);
    for (std::size_t i = 0; i + 1 < n; i += 2) defaults[arr[i]] = arr[i + 1];
    rd_kafka_conf_dump_free(arr, n);
    rd_kafka_topic_conf_destroy(tconf);
    rd_kafka_conf_destroy(conf);
  }
  // Event-mode delivery reports are how the bus serves them; the raw side uses dr_msg_cb.
  const std::set<std::string> skip{"enabled_events", "default_topic_conf"};
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [name, value] : *effective) {
    if (skip.contains(name)) continue;
    if (auto it = defaults.find(name); it != defaults.end() && it->second == value) continue;
    out.emplace_back(name, value);
  }
  return out;
}

// ---------------------------------------------------------------------------

std::vector<std::pair<std::string, std::string>> parse_properties(const std::vector<std::string>& list) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& p : list) {
    const auto eq = p.find('=');
    if (eq == std::string::npos) throw std::runtime_error("--property wants name=value, got " + p);
    out.emplace_back(p.substr(0, eq), p.substr(eq + 1));
  }
  return out;
}

double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  auto secs = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
  return secs(u.ru_utime) + secs(u.ru_stime);
}

struct measured {
  publish_figures figures;
  double cpu_us_per_message = 0;
};

measured median_of(std::vector<measured> runs) {
  std::sort(runs.begin(), runs.end(),
            [](const measured& a, const measured& b) { return a.figures.per_second < b.figures.per_second; });
  return runs[runs.size() / 2];
}

publish_figures run_bus(yilian::bus::bus& b, const std::string& topic, const std::string& value,
                        const std::vector<std::string>& keys, std::size_t publishers, std::size_t total) {
  return yilian::bench::run_closed_loop(
      "kafka_bus", publishers, total, [&](std::size_t i, std::function<void(bool)> done) {
        b.publish(yilian::bus::message{.topic = topic, .key = keys[i % keys.size()], .value = value},
                  [done = std::move(done)](yilian::result<yilian::bus::position> r) { done(r.has_value()); });
      });
}

publish_figures run_raw(raw_producer& raw, const std::string& topic, const std::string& value,
                        const std::vector<std::string>& keys, std::size_t publishers, std::size_t total) {
  return yilian::bench::run_closed_loop("raw librdkafka", publishers, total,
                                        [&](std::size_t i, std::function<void(bool)> done) {
                                          raw.produce(topic, keys[i % keys.size()], value, std::move(done));
                                        });
}

}  // namespace

int main(int argc, char** argv) {
  config cfg;
  if (const char* env = std::getenv("YILIAN_KAFKA_BROKERS"); env != nullptr) cfg.brokers = env;
  CLI::App app{"Kafka bus vs raw librdkafka: closed-loop publish throughput and latency"};
  app.add_option("--brokers", cfg.brokers, "bootstrap servers (default: $YILIAN_KAFKA_BROKERS)");
  app.add_option("--publishers", cfg.publishers, "concurrent publishers per run")->delimiter(',');
  app.add_option("--messages", cfg.messages, "messages per run (default: 3000 / 30000 / 150000 by concurrency)");
  app.add_option("--size", cfg.size, "value size in bytes");
  app.add_option("--partitions", cfg.partitions, "partitions of the benchmark topic");
  app.add_option("--repeat", cfg.repeat, "runs per side and concurrency; the median is reported");
  app.add_option("--property", cfg.properties, "extra librdkafka property name=value for both sides");
  app.add_option("--only", cfg.only, "run one side only, for profiling (no ratio)")->check(CLI::IsMember({"bus", "raw"}));
  CLI11_PARSE(app, argc, argv);
  if (cfg.brokers.empty()) {
    std::fprintf(stderr, "kafka_bus_bench: no brokers (--brokers or YILIAN_KAFKA_BROKERS)\n");
    return 2;
  }

  try {
    yilian::bus::kafka_options options{.brokers = cfg.brokers, .client_id = "kafka-bus-bench"};
    for (const auto& [name, value] : parse_properties(cfg.properties)) options.properties[name] = value;
    const auto raw_props = raw_properties(options);

    auto opened = yilian::bus::open_kafka_bus(options);
    if (!opened) throw std::runtime_error(opened.error().describe());
    auto& b = **opened;
    if (auto ready = b.check_ready(10s); !ready) throw std::runtime_error(ready.error().describe());
    const std::string topic = "kafka-bus-bench-" + std::to_string(::getpid());
    const yilian::bus::topic_spec spec{.name = topic, .partitions = cfg.partitions};
    if (auto r = b.ensure_topics({&spec, 1}); !r) throw std::runtime_error(r.error().describe());

    raw_producer raw(raw_props);
    const std::string value(cfg.size, 'x');
    std::vector<std::string> keys;
    for (int i = 0; i < 1000; ++i) keys.push_back("key-" + std::to_string(i));

    std::printf("brokers %s, topic %s (%d partitions), value %zu bytes\n", cfg.brokers.c_str(), topic.c_str(),
                cfg.partitions, cfg.size);
    std::printf("producer settings shared by both sides (differences from librdkafka defaults):\n");
    for (const auto& [name, v] : raw_props) std::printf("  %s=%s\n", name.c_str(), v.c_str());

    // Warm-up: connections, idempotent producer ids, metadata.
    run_raw(raw, topic, value, keys, 16, 2000);
    run_bus(b, topic, value, keys, 16, 2000);

    std::vector<std::pair<measured, measured>> medians;  // raw, bus
    yilian::bench::print_header();
    for (const std::size_t p : cfg.publishers) {
      const std::size_t total = messages_for(cfg, p);
      std::vector<measured> raw_runs;
      std::vector<measured> bus_runs;
      for (int rep = 0; rep < cfg.repeat; ++rep) {
        auto one = [&](bool bus_side) {
          const double cpu0 = cpu_seconds();
          auto f = bus_side ? run_bus(b, topic, value, keys, p, total) : run_raw(raw, topic, value, keys, p, total);
          const double cpu = (cpu_seconds() - cpu0) * 1e6 / static_cast<double>(total);
          yilian::bench::print(f);
          (bus_side ? bus_runs : raw_runs).push_back(measured{.figures = f, .cpu_us_per_message = cpu});
        };
        const bool raw_first = rep % 2 == 0;
        for (const bool bus_side : {!raw_first, raw_first}) {
          if (cfg.only.empty() || (cfg.only == "bus") == bus_side) one(bus_side);
        }
      }
      if (!cfg.only.empty()) continue;
      medians.emplace_back(median_of(raw_runs), median_of(bus_runs));
    }

    std::printf("\nmedian of %d runs each (by msgs/s):\n", cfg.repeat);
    yilian::bench::print_header();
    for (const auto& [r, k] : medians) {
      yilian::bench::print(r.figures);
      yilian::bench::print(k.figures);
    }
    std::printf("\n%-11s %11s %11s %8s %13s %13s\n", "publishers", "raw msgs/s", "bus msgs/s", "bus/raw",
                "raw cpu us/m", "bus cpu us/m");
    bool failures = false;
    for (const auto& [r, k] : medians) {
      std::printf("%-11zu %11.0f %11.0f %7.1f%% %13.1f %13.1f\n", r.figures.publishers, r.figures.per_second,
                  k.figures.per_second, 100.0 * k.figures.per_second / r.figures.per_second, r.cpu_us_per_message,
                  k.cpu_us_per_message);
      failures = failures || r.figures.failures > 0 || k.figures.failures > 0;
    }
    if (failures) std::printf("\nWARNING: some publishes failed; figures are not comparable\n");
    return failures ? 1 : 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kafka_bus_bench: %s\n", e.what());
    return 1;
  }
}
