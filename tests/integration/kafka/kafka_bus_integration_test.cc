// kafka_bus against the real broker named by YILIAN_KAFKA_BROKERS (e.g. from
// `deploy/kafka/start DIR PORT`). Fails, never skips, without it.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <set>
#include <thread>

#include "engine/bus/kafka_bus.h"
#include "engine/core/murmur2.h"
#include "tests/integration/kafka/kafka_test_support.h"

namespace yilian::bus {
namespace {

using namespace std::chrono_literals;
using kafka_test::results;

kafka_options real_options() {
  return kafka_options{.brokers = kafka_test::real_brokers(),
                       .client_id = "kafka-bus-integration-test",
                       .consumer_properties = {{"session.timeout.ms", "6000"}, {"heartbeat.interval.ms", "500"}}};
}


TEST_CASE("the real broker is reachable", "[integration]") {
  auto b = kafka_test::open_or_throw(real_options());
  auto ready = b->check_ready(10s);
  INFO((ready ? std::string("ok") : ready.error().describe()));
  REQUIRE(ready);
  CHECK(b->kind() == "kafka");
}

TEST_CASE("a publish result carries the offset the broker gave the record", "[integration]") {
  auto b = kafka_test::open_or_throw(real_options());
  const std::string topic = kafka_test::unique_name("offsets");
  const topic_spec spec{.name = topic, .partitions = 3};
  REQUIRE(b->ensure_topics({&spec, 1}));
  constexpr std::size_t n = 300;
  results res(n);
  for (std::size_t i = 0; i < n; ++i) {
    b->publish(message{.topic = topic, .key = "equipment-" + std::to_string(i % 11), .value = "value-" + std::to_string(i)},
               res.handler(i));
  }
  REQUIRE(res.wait(60s));
  std::map<std::pair<std::int32_t, std::int64_t>, std::string> expected;
  for (std::size_t i = 0; i < n; ++i) {
    INFO(i);
    REQUIRE(res.at(i));
    CHECK(res.at(i)->topic == topic);
    CHECK(res.at(i)->partition == partition_for_key("equipment-" + std::to_string(i % 11), 3));
    CHECK(expected.emplace(std::pair{res.at(i)->partition, res.at(i)->offset}, "value-" + std::to_string(i)).second);
  }
  const auto records = kafka_test::read_all(*b, topic, kafka_test::unique_name("g"), n, 60s);
  REQUIRE(records.size() == n);
  for (const auto& r : records) {
    auto it = expected.find({r.partition, r.offset});
    REQUIRE(it != expected.end());
    CHECK(it->second == r.value);
  }
  SECTION("records with one key keep their publish order") {
    std::map<std::string, std::int64_t> last;
    for (std::size_t i = 0; i < n; ++i) {
      const std::string key = "equipment-" + std::to_string(i % 11);
      auto [it, first] = last.try_emplace(key, res.at(i)->offset);
      if (!first) {
        CHECK(res.at(i)->offset > it->second);
        it->second = res.at(i)->offset;
      }
    }
  }
}

TEST_CASE("publishing beyond the in-flight bound fails fast with overloaded, then recovers", "[integration]") {
  auto o = real_options();
  o.max_in_flight = 16;
  o.properties["linger.ms"] = "1000";  // keep the accepted ones in flight for a while
  auto b = kafka_test::open_or_throw(o);
  const std::string topic = kafka_test::unique_name("backpressure");
  const topic_spec spec{.name = topic, .partitions = 1};
  REQUIRE(b->ensure_topics({&spec, 1}));
  results res(64);
  const auto started = kafka_test::clock::now();
  for (std::size_t i = 0; i < res.size(); ++i) b->publish(message{.topic = topic, .value = "v"}, res.handler(i));
  CHECK(kafka_test::clock::now() - started < 500ms);
  REQUIRE(res.wait(30s));
  std::size_t ok = 0;
  for (std::size_t i = 0; i < res.size(); ++i) {
    if (res.at(i)) {
      ++ok;
    } else {
      CHECK(res.at(i).error().code == errc::overloaded);
      CHECK(res.at(i).error().retriable);
      CHECK(res.thread(i) != std::this_thread::get_id());
    }
  }
  CHECK(ok == 16);
  REQUIRE(b->flush(10s));
  results again(16);
  for (std::size_t i = 0; i < again.size(); ++i) b->publish(message{.topic = topic, .value = "v"}, again.handler(i));
  REQUIRE(again.wait(30s));
  for (std::size_t i = 0; i < again.size(); ++i) CHECK(again.at(i).has_value());
}

TEST_CASE("a publish to an unreachable broker fails within the publish timeout with a retriable error",
          "[integration]") {
  auto b = kafka_test::open_or_throw(kafka_options{.brokers = "127.0.0.1:" + std::to_string(kafka_test::unused_loopback_port()),
                                                   .publish_timeout = 2000ms,
                                                   .shutdown_timeout = 500ms,
                                                   .log = kafka_test::quiet_log});
  results res(5);
  const auto started = kafka_test::clock::now();
  for (std::size_t i = 0; i < res.size(); ++i) {
    b->publish(message{.topic = "yilian.patient.v1", .key = "p", .value = "v"}, res.handler(i));
  }
  CHECK(kafka_test::clock::now() - started < 100ms);
  REQUIRE(res.wait(10s));
  const auto took = kafka_test::clock::now() - started;
  CHECK(took >= 1900ms);
  CHECK(took < 2000ms + 1500ms);
  for (std::size_t i = 0; i < res.size(); ++i) {
    REQUIRE_FALSE(res.at(i));
    CHECK(res.at(i).error().retriable);
    CHECK(res.at(i).error().code == errc::timeout);
  }
  SECTION("check_ready says unavailable within its bound") {
    const auto t0 = kafka_test::clock::now();
    auto ready = b->check_ready(1000ms);
    CHECK(kafka_test::clock::now() - t0 < 1500ms);
    REQUIRE_FALSE(ready);
    CHECK(ready.error().code == errc::unavailable);
    CHECK(ready.error().retriable);
  }
}

TEST_CASE("a publish to a topic the cluster does not have fails with not_found, before the publish timeout",
          "[integration]") {
  auto b = kafka_test::open_or_throw(real_options());  // publish_timeout 30 s
  results res(1);
  const auto started = kafka_test::clock::now();
  b->publish(message{.topic = kafka_test::unique_name("never-created"), .key = "k", .value = "v"}, res.handler(0));
  REQUIRE(res.wait(40s));
  CHECK(kafka_test::clock::now() - started < 10s);
  REQUIRE_FALSE(res.at(0));
  CHECK(res.at(0).error().code == errc::not_found);
  CHECK_FALSE(res.at(0).error().retriable);
}

TEST_CASE("ensure_topics is idempotent and leaves existing topics as they are", "[integration]") {
  auto b = kafka_test::open_or_throw(real_options());
  const std::string a = kafka_test::unique_name("topic-a");
  const std::string c = kafka_test::unique_name("topic-c");
  const std::vector<topic_spec> first{{.name = a, .partitions = 4}, {.name = c, .partitions = 1, .retention_ms = 3'600'000}};
  REQUIRE(b->ensure_topics(first));
  CHECK(b->partitions(a).value() == 4);
  CHECK(b->partitions(c).value() == 1);
  // Again, with another partition count for `a` and a new topic alongside.
  const std::string d = kafka_test::unique_name("topic-d");
  const std::vector<topic_spec> second{{.name = a, .partitions = 8}, {.name = d, .partitions = 2}};
  REQUIRE(b->ensure_topics(second));
  CHECK(b->partitions(a).value() == 4);
  CHECK(b->partitions(d).value() == 2);
  // A second client sees them at once, and publishing right away works.
  auto other = kafka_test::open_or_throw(real_options());
  CHECK(other->partitions(d).value() == 2);
  results res(1);
  other->publish(message{.topic = d, .key = "k", .value = "v"}, res.handler(0));
  REQUIRE(res.wait(30s));
  CHECK(res.at(0).has_value());

  SECTION("an unknown topic is not_found") {
    auto p = b->partitions(kafka_test::unique_name("missing"));
    REQUIRE_FALSE(p);
    CHECK(p.error().code == errc::not_found);
  }
  SECTION("an invalid spec is refused by the broker without retry") {
    const std::vector<topic_spec> bad{{.name = kafka_test::unique_name("bad"), .partitions = 1, .retention_ms = 1000},
                                      {.name = "bad name with spaces", .partitions = 1}};
    auto r = b->ensure_topics(bad);
    REQUIRE_FALSE(r);
    CHECK_FALSE(r.error().retriable);
  }
}

TEST_CASE("two members of a group split the partitions, and lag follows commits", "[integration]") {
  auto b = kafka_test::open_or_throw(real_options());
  const std::string topic = kafka_test::unique_name("group");
  const std::string group = kafka_test::unique_name("g");
  const topic_spec spec{.name = topic, .partitions = 4};
  REQUIRE(b->ensure_topics({&spec, 1}));
  results res(40);
  for (std::size_t i = 0; i < res.size(); ++i) {
    b->publish(message{.topic = topic, .key = "k" + std::to_string(i), .value = std::to_string(i)}, res.handler(i));
  }
  REQUIRE(res.wait(30s));

  auto c1 = b->subscribe(consumer_options{.group = group, .topics = {topic}});
  auto c2 = b->subscribe(consumer_options{.group = group, .topics = {topic}});
  REQUIRE(c1);
  REQUIRE(c2);
  std::set<std::pair<std::int32_t, std::int64_t>> seen;
  const auto deadline = kafka_test::clock::now() + 60s;
  auto split = [&] { return (*c1)->assignment().size() == 2 && (*c2)->assignment().size() == 2; };
  auto total_lag = [&] {
    std::int64_t total = 0;
    for (auto* c : {c1->get(), c2->get()}) {
      auto lag = c->lag();
      if (!lag) return std::int64_t{-1};
      for (const auto& l : *lag) total += l.lag();
    }
    return total;
  };
  while (kafka_test::clock::now() < deadline) {
    for (auto* c : {c1->get(), c2->get()}) {
      auto batch = c->poll(100ms, 100);
      REQUIRE(batch);
      for (const auto& r : *batch) seen.insert({r.partition, r.offset});
      if (batch->empty()) continue;
      // A commit racing with a rebalance may be refused (conflict); those
      // records go to the partition's next owner, which commits them.
      auto committed = c->commit(*batch);
      if (!committed) CHECK(committed.error().code == errc::conflict);
    }
    if (split() && seen.size() == res.size() && total_lag() == 0) break;
  }
  CHECK(split());
  CHECK(seen.size() == res.size());
  std::set<std::pair<std::string, std::int32_t>> all;
  for (auto* c : {c1->get(), c2->get()}) {
    for (const auto& a : c->assignment()) CHECK(all.insert(a).second);  // disjoint
    auto lag = c->lag();
    REQUIRE(lag);
    for (const auto& l : *lag) {
      CHECK(l.committed == l.end);
      CHECK(l.lag() == 0);
    }
  }
  CHECK(all.size() == 4);
}

TEST_CASE("a consumer closed with fetched records it has not taken leaves its group at once", "[integration]") {
  // A long session: had the closed member not left, the group could not give
  // its partitions to anyone else for 30 s, past this test's deadline.
  kafka_options o = real_options();
  o.consumer_properties = {{"session.timeout.ms", "30000"}, {"heartbeat.interval.ms", "1000"}};
  auto b = kafka_test::open_or_throw(o);
  const std::string topic = kafka_test::unique_name("close");
  const std::string group = kafka_test::unique_name("g");
  const topic_spec spec{.name = topic, .partitions = 4};
  REQUIRE(b->ensure_topics({&spec, 1}));
  results res(2000);
  for (std::size_t i = 0; i < res.size(); ++i) {
    b->publish(message{.topic = topic, .key = "k" + std::to_string(i), .value = std::string(100, 'v')}, res.handler(i));
  }
  REQUIRE(res.wait(30s));

  auto c1 = b->subscribe(consumer_options{.group = group, .topics = {topic}});
  REQUIRE(c1);
  std::vector<record> taken;
  const auto deadline = kafka_test::clock::now() + 30s;
  while (taken.empty() && kafka_test::clock::now() < deadline) {
    auto batch = (*c1)->poll(100ms, 1);
    REQUIRE(batch);
    taken = *batch;
  }
  REQUIRE(taken.size() == 1);
  std::this_thread::sleep_for(500ms);  // librdkafka prefetches the rest into the consumer's queue
  REQUIRE((*c1)->commit(taken));
  const auto closing = kafka_test::clock::now();
  (*c1)->close();  // the prefetched records are still queued
  CHECK(kafka_test::clock::now() - closing < 3s);

  auto c2 = b->subscribe(consumer_options{.group = group, .topics = {topic}});
  REQUIRE(c2);
  std::set<std::pair<std::int32_t, std::int64_t>> rest;
  const auto rest_deadline = kafka_test::clock::now() + 20s;
  while (rest.size() < res.size() - 1 && kafka_test::clock::now() < rest_deadline) {
    auto batch = (*c2)->poll(100ms, 500);
    REQUIRE(batch);
    for (const auto& r : *batch) rest.insert({r.partition, r.offset});
  }
  CHECK(rest.size() == res.size() - 1);
  CHECK(rest.count({taken.front().partition, taken.front().offset}) == 0);
}

}  // namespace
}  // namespace yilian::bus
