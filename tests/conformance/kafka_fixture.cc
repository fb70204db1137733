// The bus conformance suite against a real Kafka cluster.
//
// The cluster is named by YILIAN_KAFKA_BROKERS ("host:port[,...]"), e.g. a
// broker from `deploy/kafka/start DIR PORT`. Without it, or when no broker
// answers, every test fails with a message saying so: the Kafka suite never
// skips silently.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "engine/bus/kafka_bus.h"
#include "tests/support/bus_fixture.h"

namespace yilian::testing {
namespace {

using std::chrono::milliseconds;

[[noreturn]] void fail_setup(const std::string& why) {
  const std::string text = "Kafka conformance suite: " + why +
                           "\n  Start a broker and name it, e.g.:\n"
                           "    deploy/kafka/start /tmp/yilian-kafka 19092\n"
                           "    export YILIAN_KAFKA_BROKERS=127.0.0.1:19092\n";
  std::fputs(text.c_str(), stderr);
  throw std::runtime_error(text);
}

std::string brokers_from_environment() {
  const char* brokers = std::getenv("YILIAN_KAFKA_BROKERS");
  if (brokers == nullptr || *brokers == '\0') fail_setup("YILIAN_KAFKA_BROKERS is not set");
  return brokers;
}

// A TCP port on 127.0.0.1 that nothing listens on: bind an ephemeral port,
// read it, close it. (Something else could take it meanwhile; the ephemeral
// range makes that unlikely within a test.)
int closed_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket() failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("bind()/getsockname() failed");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

// Kafka topic and group names: [a-zA-Z0-9._-], at most 249 characters.
std::string sanitize(std::string_view base) {
  std::string out;
  for (const char c : base) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-';
    out += ok ? c : '-';
  }
  if (out.size() > 160) out.resize(160);
  return out;
}

class kafka_fixture final : public bus_fixture {
 public:
  kafka_fixture() : brokers_(brokers_from_environment()) {
    const auto now = std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch());
    run_ = "r" + std::to_string(::getpid()) + "-" + std::to_string(now.count());
    auto probe = open_kafka(brokers_, milliseconds(30'000));
    if (auto ready = probe->check_ready(milliseconds(10'000)); !ready) {
      fail_setup("no Kafka broker answers at YILIAN_KAFKA_BROKERS=" + brokers_ + ": " + ready.error().describe());
    }
  }

  std::string name() const override { return "kafka"; }

  std::unique_ptr<bus::bus> open() override { return open_kafka(brokers_, milliseconds(30'000)); }

  std::unique_ptr<bus::bus> open_unreachable(milliseconds publish_timeout) override {
    return open_kafka("127.0.0.1:" + std::to_string(closed_port()), publish_timeout);
  }

  std::string fresh_name(std::string_view base) override {
    return sanitize(base) + "-" + run_ + "-" + std::to_string(counter_.fetch_add(1));
  }

  milliseconds settle_time() const override { return milliseconds(30'000); }

 private:
  static std::unique_ptr<bus::bus> open_kafka(const std::string& brokers, milliseconds publish_timeout) {
    auto b = bus::open_kafka_bus(bus::kafka_options{
        .brokers = brokers,
        .client_id = "yilian-conformance",
        // Group changes settle within a few heartbeats; a dead member is noticed
        // after the session timeout (the broker allows >= 1 s, see deploy/kafka).
        .consumer_properties = {{"session.timeout.ms", "6000"}, {"heartbeat.interval.ms", "500"}},
        .publish_timeout = publish_timeout,
        .request_timeout = milliseconds(10'000),
        .shutdown_timeout = milliseconds(10'000),
    });
    if (!b) fail_setup("open_kafka_bus failed: " + b.error().describe());
    return std::move(*b);
  }

  std::string brokers_;
  std::string run_;
  std::atomic<int> counter_{0};
};

}  // namespace

std::unique_ptr<bus_fixture> make_bus_fixture() { return std::make_unique<kafka_fixture>(); }

}  // namespace yilian::testing
