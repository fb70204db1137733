// The publish contract while the broker misbehaves: publishes keep flowing
// while the broker is paused (SIGSTOP) or restarted, and afterwards
//  * every publish got exactly one result,
//  * every publish that reported success is readable at the reported
//    position with the published value,
//  * the failures are retriable, and publishing works again after recovery.
//
// The test starts its own broker (deploy/kafka/start on a free port, in a
// temporary directory) so pausing it cannot disturb other tests that share
// YILIAN_KAFKA_BROKERS, and stops it at the end (deploy/kafka/stop).
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>

#include "engine/bus/kafka_bus.h"
#include "tests/integration/kafka/kafka_test_support.h"

namespace yilian::bus {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

fs::path source_dir() {
  if (const char* dir = std::getenv("YILIAN_SOURCE_DIR"); dir != nullptr && *dir != '\0') return dir;
  return YILIAN_SOURCE_DIR_DEFAULT;
}


// Runs a command, returns (exit status, stdout).
std::pair<int, std::string> run(const std::string& command) {
  std::string out;
  FILE* p = ::popen(command.c_str(), "r");
  REQUIRE(p != nullptr);
  std::array<char, 512> buf{};
  while (std::fgets(buf.data(), static_cast<int>(buf.size()), p) != nullptr) out += buf.data();
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// A broker of our own, started with deploy/kafka/start and always stopped.
class private_broker {
 public:
  private_broker() {
    char tmpl[] = "/tmp/yilian-kafka-robustness-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    dir_ = tmpl;
    try {
      port_ = kafka_test::unused_loopback_port();
      const auto [status, out] = run("'" + (source_dir() / "deploy/kafka/start").string() + "' '" + dir_.string() +
                                     "' " + std::to_string(port_));
      INFO(out);
      REQUIRE(status == 0);
      brokers_ = "127.0.0.1:" + std::to_string(port_);
      REQUIRE(out.find(brokers_) != std::string::npos);
    } catch (...) {
      cleanup();
      throw;
    }
  }
  ~private_broker() { cleanup(); }
  private_broker(const private_broker&) = delete;
  private_broker& operator=(const private_broker&) = delete;

  const std::string& brokers() const { return brokers_; }

  void cleanup() {
    if (dir_.empty()) return;
    if (pid_ > 0) ::kill(pid_, SIGCONT);
    run("'" + (source_dir() / "deploy/kafka/stop").string() + "' '" + dir_.string() + "' 2>&1");
    std::error_code ec;
    fs::remove_all(dir_, ec);
    dir_.clear();
  }

  pid_t pid() {
    std::ifstream in(dir_ / "kafka.pid");
    in >> pid_;
    REQUIRE(pid_ > 0);
    return pid_;
  }
  void pause() { REQUIRE(::kill(pid(), SIGSTOP) == 0); }
  void resume() { REQUIRE(::kill(pid(), SIGCONT) == 0); }
  void restart() {
    const auto stopped = run("'" + (source_dir() / "deploy/kafka/stop").string() + "' '" + dir_.string() + "' 2>&1");
    INFO(stopped.second);
    REQUIRE(stopped.first == 0);
    pid_ = -1;
    const auto started =
        run("'" + (source_dir() / "deploy/kafka/start").string() + "' '" + dir_.string() + "' " + std::to_string(port_) +
            " 2>&1");  // the script says why on stderr
    INFO(started.second);
    REQUIRE(started.first == 0);
  }

 private:
  fs::path dir_;
  int port_ = 0;
  pid_t pid_ = -1;
  std::string brokers_;
};

// Closed-loop publishing: `concurrency` publishes outstanding at a time,
// each record's value names its index; runs until stop() and then drains.
class load {
 public:
  load(bus& b, std::string topic, std::size_t concurrency) : bus_(b), topic_(std::move(topic)) {
    for (std::size_t i = 0; i < concurrency; ++i) next();
  }

  // Stops and waits until every handler has returned (the bus's flush
  // waits for that), so no handler can touch this object afterwards.
  ~load() {
    stop();
    (void)bus_.flush(60s);
  }
  load(const load&) = delete;
  load& operator=(const load&) = delete;

  void stop() { running_.store(false); }

  // Waits until every started publish completed.
  bool drain(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return completed_ == started_; });
  }

  struct outcome {
    int calls = 0;
    std::optional<yilian::result<position>> outcome_result;
  };
  std::vector<outcome> outcomes() {
    std::lock_guard lock(mu_);
    return outcomes_;
  }
  std::size_t successes_since(std::size_t index) {
    std::lock_guard lock(mu_);
    std::size_t n = 0;
    for (std::size_t i = index; i < outcomes_.size(); ++i) n += outcomes_[i].outcome_result && *outcomes_[i].outcome_result ? 1U : 0U;
    return n;
  }
  std::size_t started() {
    std::lock_guard lock(mu_);
    return started_;
  }
  static std::string value_of(std::size_t i) { return "record-" + std::to_string(i); }

 private:
  void next() {
    std::size_t index = 0;
    {
      std::lock_guard lock(mu_);
      if (!running_.load()) return;
      index = started_++;
      outcomes_.emplace_back();
    }
    bus_.publish(message{.topic = topic_, .key = "k" + std::to_string(index % 7), .value = value_of(index)},
                 [this, index](result<position> r) {
                   {
                     std::lock_guard lock(mu_);
                     auto& o = outcomes_[index];
                     if (++o.calls == 1) o.outcome_result = r;
                     ++completed_;
                     cv_.notify_all();
                   }
                   if (!r.has_value()) std::this_thread::sleep_for(5ms);  // no hot loop while failing fast
                   next();
                 });
  }

  bus& bus_;
  std::string topic_;
  std::atomic<bool> running_{true};
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<outcome> outcomes_;
  std::size_t started_ = 0;
  std::size_t completed_ = 0;
};

void check_outcomes(bus& b, const std::string& topic, load& l, std::size_t resumed_at) {
  const auto outcomes = l.outcomes();
  std::size_t ok = 0;
  std::size_t failed = 0;
  std::map<std::pair<std::int32_t, std::int64_t>, std::string> expected;
  for (std::size_t i = 0; i < outcomes.size(); ++i) {
    INFO("publish " << i);
    REQUIRE(outcomes[i].calls == 1);
    REQUIRE(outcomes[i].outcome_result.has_value());
    const auto& r = *outcomes[i].outcome_result;
    if (r) {
      ++ok;
      CHECK(expected.emplace(std::pair{r->partition, r->offset}, load::value_of(i)).second);
    } else {
      ++failed;
      INFO(r.error().describe());
      CHECK(r.error().retriable);
    }
  }
  INFO("ok " << ok << ", failed " << failed);
  std::printf("%s: %zu publishes, %zu succeeded, %zu failed (retriable), %zu succeeded after recovery\n", topic.c_str(),
              outcomes.size(), ok, failed, l.successes_since(resumed_at));
  CHECK(failed > 0);                        // the outage was noticed
  CHECK(l.successes_since(resumed_at) > 0);  // and publishing recovered

  // Every reported success is durable where it said.
  auto reader = b.subscribe(consumer_options{.group = kafka_test::unique_name("verify"), .topics = {topic}});
  REQUIRE(reader);
  std::size_t found = 0;
  std::set<std::pair<std::int32_t, std::int64_t>> seen;
  const auto deadline = kafka_test::clock::now() + 60s;
  while (found < expected.size() && kafka_test::clock::now() < deadline) {
    auto batch = (*reader)->poll(200ms, 10'000);
    REQUIRE(batch);
    for (const auto& rec : *batch) {
      if (!seen.insert({rec.partition, rec.offset}).second) continue;
      auto it = expected.find({rec.partition, rec.offset});
      if (it == expected.end()) continue;  // a failed publish may still have been written: allowed
      CHECK(rec.value == it->second);
      ++found;
    }
  }
  CHECK(found == expected.size());
  std::printf("%s: all %zu acknowledged records read back at their positions\n", topic.c_str(), found);
}

// A bus on the private broker that gives up on a publish after `publish_timeout`.
std::unique_ptr<bus> open_bus(private_broker& broker, std::chrono::milliseconds publish_timeout) {
  return kafka_test::open_or_throw(kafka_options{.brokers = broker.brokers(),
                                                 .client_id = "kafka-bus-robustness-test",
                                                 .publish_timeout = publish_timeout,
                                                 .shutdown_timeout = 5000ms,
                                                 .log = kafka_test::quiet_log});
}

void create_topic(bus& b, const std::string& topic) {
  const topic_spec spec{.name = topic, .partitions = 3};
  REQUIRE(b.ensure_topics({&spec, 1}));
}

// After the broker is back: publishing recovers (200 successes after
// `resumed_at`), every handler is called, the producer is not fenced, and
// every reported success is readable at its position.
void recover_and_check(bus& b, const std::string& topic, load& l, std::size_t resumed_at) {
  const auto deadline = kafka_test::clock::now() + 60s;
  while (l.successes_since(resumed_at) < 200 && kafka_test::clock::now() < deadline) std::this_thread::sleep_for(50ms);
  l.stop();
  REQUIRE(l.drain(30s));
  REQUIRE(b.flush(30s));
  auto* kb = dynamic_cast<kafka_bus*>(&b);
  REQUIRE(kb != nullptr);
  CHECK_FALSE(kb->fatal_error().has_value());
  check_outcomes(b, topic, l, resumed_at);
}

TEST_CASE("publishes that reported success survive a paused broker, the rest fail retriably", "[integration][slow]") {
  private_broker broker;
  auto b = open_bus(broker, 3000ms);
  const std::string topic = kafka_test::unique_name("robust-pause");
  create_topic(*b, topic);

  load l(*b, topic, 32);
  std::this_thread::sleep_for(1500ms);  // steady state: the pause hits publishes in flight
  REQUIRE(l.successes_since(0) > 0);
  broker.pause();
  std::this_thread::sleep_for(6s);  // > publish_timeout: publishes in flight and queued time out
  broker.resume();
  const std::size_t resumed_at = l.started();
  recover_and_check(*b, topic, l, resumed_at);
}

TEST_CASE("publishes that reported success survive a broker restart, the rest fail retriably", "[integration][slow]") {
  private_broker broker;
  auto b = open_bus(broker, 2000ms);
  const std::string topic = kafka_test::unique_name("robust-restart");
  create_topic(*b, topic);

  load l(*b, topic, 32);
  std::this_thread::sleep_for(1500ms);
  REQUIRE(l.successes_since(0) > 0);
  broker.restart();  // graceful stop, then start on the same data and port
  const std::size_t resumed_at = l.started();
  recover_and_check(*b, topic, l, resumed_at);
}

}  // namespace
}  // namespace yilian::bus
