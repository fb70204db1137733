// Helpers shared by the Kafka bus tests: waiting for publish results, reading
// a topic back, librdkafka's in-process mock cluster, the real broker's address.
#pragma once

#include <arpa/inet.h>
#include <librdkafka/rdkafka.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <librdkafka/rdkafka_mock.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include "engine/bus/bus.h"
#include "engine/bus/kafka_bus.h"

namespace yilian::kafka_test {

// A loopback TCP port nothing listens on right now (bound, read, released).
inline int unused_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket() failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  ::close(fd);
  if (!ok) throw std::runtime_error("bind()/getsockname() failed");
  return ntohs(addr.sin_port);
}

using namespace std::chrono_literals;
using clock = std::chrono::steady_clock;

// Results of many publishes, by index, plus who delivered them.
class results {
 public:
  explicit results(std::size_t n) : slots_(n), threads_(n), calls_(n, 0) {}

  bus::publish_handler handler(std::size_t i) {
    return [this, i](result<bus::position> r) {
      std::lock_guard lock(mu_);
      ++calls_[i];
      if (!slots_[i]) {
        slots_[i] = std::move(r);
        threads_[i] = std::this_thread::get_id();
        ++done_;
      }
      cv_.notify_all();
    };
  }

  // Waits until every handler has been called once (true) or the deadline passes.
  bool wait(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return done_ == slots_.size(); });
  }

  std::size_t done() {
    std::lock_guard lock(mu_);
    return done_;
  }
  const result<bus::position>& at(std::size_t i) const { return *slots_.at(i); }
  bool has(std::size_t i) const { return slots_.at(i).has_value(); }
  std::thread::id thread(std::size_t i) const { return threads_.at(i); }
  int calls(std::size_t i) {
    std::lock_guard lock(mu_);
    return calls_.at(i);
  }
  std::size_t size() const { return slots_.size(); }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::optional<result<bus::position>>> slots_;
  std::vector<std::thread::id> threads_;
  std::vector<int> calls_;
  std::size_t done_ = 0;
};

// Reads every record of `topic` (from the beginning, fresh group) until
// `expected` records arrived or `timeout` passed.
inline std::vector<bus::record> read_all(bus::bus& b, const std::string& topic, const std::string& group,
                                        std::size_t expected, std::chrono::milliseconds timeout) {
  auto c = b.subscribe(bus::consumer_options{.group = group, .topics = {topic}, .start = bus::start_from::earliest});
  if (!c) throw std::runtime_error("subscribe failed: " + c.error().describe());
  std::vector<bus::record> out;
  const auto deadline = clock::now() + timeout;
  while (out.size() < expected && clock::now() < deadline) {
    auto batch = (*c)->poll(200ms, 10'000);
    if (!batch) throw std::runtime_error("poll failed: " + batch.error().describe());
    for (auto& r : *batch) out.push_back(std::move(r));
  }
  (*c)->close();
  return out;
}

// librdkafka's in-process mock cluster, reachable at bootstraps() by any client.
class mock_cluster {
 public:
  explicit mock_cluster(int brokers = 1) {
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    char errstr[256];
    rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr);
    rk_.reset(rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr));
    if (!rk_) throw std::runtime_error(errstr);
    mc_.reset(rd_kafka_mock_cluster_new(rk_.get(), brokers));
    if (!mc_) throw std::runtime_error("rd_kafka_mock_cluster_new failed");
  }
  std::string bootstraps() const { return rd_kafka_mock_cluster_bootstraps(mc_.get()); }
  rd_kafka_mock_cluster_t* get() const { return mc_.get(); }
  void create_topic(const std::string& name, int partitions) {
    if (rd_kafka_mock_topic_create(mc_.get(), name.c_str(), partitions, 1) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      throw std::runtime_error("mock topic create failed");
    }
  }

 private:
  struct rk_del {
    void operator()(rd_kafka_t* p) const { rd_kafka_destroy(p); }
  };
  struct mc_del {
    void operator()(rd_kafka_mock_cluster_t* p) const { rd_kafka_mock_cluster_destroy(p); }
  };
  std::unique_ptr<rd_kafka_t, rk_del> rk_;               // destroyed after the cluster
  std::unique_ptr<rd_kafka_mock_cluster_t, mc_del> mc_;
};

// The real broker for integration tests; throws (the test fails) without it.
inline std::string real_brokers() {
  const char* b = std::getenv("YILIAN_KAFKA_BROKERS");
  if (b == nullptr || *b == '\0') {
    throw std::runtime_error(
        "YILIAN_KAFKA_BROKERS is not set: start a broker (deploy/kafka/start DIR PORT) and export "
        "YILIAN_KAFKA_BROKERS=127.0.0.1:PORT");
  }
  return b;
}

inline std::string unique_name(const std::string& base) {
  static std::atomic<int> counter{0};
  const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::system_clock::now().time_since_epoch());
  return base + "-" + std::to_string(::getpid()) + "-" + std::to_string(now.count()) + "-" +
         std::to_string(counter.fetch_add(1));
}

inline std::unique_ptr<bus::bus> open_or_throw(bus::kafka_options o) {
  auto b = bus::open_kafka_bus(std::move(o));
  if (!b) throw std::runtime_error("open_kafka_bus: " + b.error().describe());
  return std::move(*b);
}

// Quiet librdkafka logs (it reports connection refusals at level 3).
inline void quiet_log(int, std::string_view) {}

}  // namespace yilian::kafka_test
