// The bus contract (engine/bus/bus.h), checked against any implementation.
//
// Compiled once per implementation with that implementation's fixture
// (embedded_fixture.cc, kafka_fixture.cc); uses nothing but bus.h, the fixture
// and Kafka's partitioner. Group membership changes take time on Kafka, so the
// tests poll until a deadline (derived from fixture->settle_time()) instead of
// assuming instant assignment, and they assert exact contents.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "engine/bus/bus.h"
#include "engine/core/murmur2.h"
#include "tests/support/bus_fixture.h"

namespace {

using namespace std::chrono_literals;
using yilian::result;
using yilian::bus::bus;
using yilian::bus::consumer;
using yilian::bus::consumer_options;
using yilian::bus::header;
using yilian::bus::message;
using yilian::bus::partition_lag;
using yilian::bus::position;
using yilian::bus::record;
using yilian::bus::start_from;
using yilian::bus::topic_spec;
using clock_type = std::chrono::steady_clock;

// Publish results collected from bus threads; shared with the handlers so a
// late handler after a failed wait never touches a dead object.
class acks {
 public:
  explicit acks(std::size_t n) : results_(n) {}

  yilian::bus::publish_handler handler(std::size_t index) {
    return [self = this->self_, index](result<position> r) {
      std::lock_guard lock(self->mu);
      self->results[index] = std::move(r);
      ++self->done;
      self->cv.notify_all();
    };
  }
  // All results, or nullopt if they did not all arrive within `timeout`.
  std::optional<std::vector<result<position>>> wait(clock_type::duration timeout) {
    std::unique_lock lock(self_->mu);
    if (!self_->cv.wait_for(lock, timeout, [&] { return self_->done == results_.size(); })) return std::nullopt;
    std::vector<result<position>> out;
    for (auto& r : self_->results) out.push_back(std::move(*r));
    return out;
  }

 private:
  struct shared {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<std::optional<result<position>>> results;
    std::size_t done = 0;
  };
  std::vector<int> results_;
  std::shared_ptr<shared> self_ = make(results_.size());
  static std::shared_ptr<shared> make(std::size_t n) {
    auto s = std::make_shared<shared>();
    s->results.resize(n);
    return s;
  }
};

// Publishes in order from this thread and waits for every acknowledgement.
std::vector<position> publish_all(bus& b, const std::vector<message>& messages) {
  acks waiter(messages.size());
  for (std::size_t i = 0; i < messages.size(); ++i) b.publish(messages[i], waiter.handler(i));
  auto results = waiter.wait(60s);
  REQUIRE(results.has_value());
  std::vector<position> out;
  for (std::size_t i = 0; i < results->size(); ++i) {
    INFO("publish #" << i << ": " << ((*results)[i] ? std::string("ok") : (*results)[i].error().describe()));
    REQUIRE((*results)[i].has_value());
    out.push_back(*(*results)[i]);
  }
  return out;
}

void create_topic(bus& b, const std::string& name, std::int32_t partitions) {
  const topic_spec spec{.name = name, .partitions = partitions};
  auto created = b.ensure_topics({&spec, 1});
  INFO((created ? std::string("created") : created.error().describe()));
  REQUIRE(created.has_value());
}

std::unique_ptr<consumer> join(bus& b, const std::string& group, const std::string& topic,
                               start_from start = start_from::earliest) {
  auto c = b.subscribe(consumer_options{.group = group, .topics = {topic}, .start = start});
  INFO((c ? std::string("subscribed") : c.error().describe()));
  REQUIRE(c.has_value());
  return std::move(*c);
}

// Polls until `want` records arrived or `within` passed; returns what arrived.
std::vector<record> consume(consumer& c, std::size_t want, clock_type::duration within) {
  std::vector<record> out;
  const auto deadline = clock_type::now() + within;
  while (out.size() < want && clock_type::now() < deadline) {
    auto batch = c.poll(200ms, want - out.size());
    INFO((batch ? std::string("polled") : batch.error().describe()));
    REQUIRE(batch.has_value());
    for (auto& r : *batch) out.push_back(std::move(r));
  }
  return out;
}

// Everything that arrives within `quiet` (expected: nothing).
std::vector<record> drain_for(consumer& c, clock_type::duration quiet) {
  std::vector<record> out;
  const auto deadline = clock_type::now() + quiet;
  while (clock_type::now() < deadline) {
    auto batch = c.poll(100ms, 100);
    REQUIRE(batch.has_value());
    for (auto& r : *batch) out.push_back(std::move(r));
  }
  return out;
}

using partition_set = std::set<std::pair<std::string, std::int32_t>>;

partition_set assigned(consumer& c) {
  auto a = c.assignment();
  return partition_set(a.begin(), a.end());
}

partition_set all_partitions(const std::string& topic, std::int32_t n) {
  partition_set out;
  for (std::int32_t p = 0; p < n; ++p) out.emplace(topic, p);
  return out;
}

using place = std::pair<std::int32_t, std::int64_t>;  // partition, offset

std::map<place, std::string> by_place(const std::vector<record>& records) {
  std::map<place, std::string> out;
  for (const auto& r : records) out[{r.partition, r.offset}] = r.value;
  return out;
}

clock_type::duration drain_bound(const yilian::testing::bus_fixture& f) { return f.settle_time() + 20s; }

}  // namespace

SCENARIO("records with one key arrive in publish order, in the partition Kafka's partitioner picks",
         "[conformance]") {
  auto fixture = yilian::testing::make_bus_fixture();
  auto b = fixture->open();
  GIVEN("a topic with four partitions") {
    const auto topic = fixture->fresh_name("ordering");
    create_topic(*b, topic, 4);
    WHEN("forty keys publish twenty-five values each, interleaved") {
      constexpr int kKeys = 40;
      constexpr int kValues = 25;
      std::vector<message> messages;
      for (int v = 0; v < kValues; ++v) {
        for (int k = 0; k < kKeys; ++k) {
          messages.push_back(message{.topic = topic, .key = "patient-" + std::to_string(k),
                                     .value = std::to_string(k) + ":" + std::to_string(v)});
        }
      }
      const auto positions = publish_all(*b, messages);

      THEN("each key's acknowledged offsets grow in publish order within its murmur2 partition") {
        std::map<std::string, std::int64_t> last_offset;
        for (std::size_t i = 0; i < messages.size(); ++i) {
          const auto& key = messages[i].key;
          CHECK(positions[i].topic == topic);
          REQUIRE(positions[i].partition == yilian::partition_for_key(key, 4));
          if (auto it = last_offset.find(key); it != last_offset.end()) REQUIRE(positions[i].offset > it->second);
          last_offset[key] = positions[i].offset;
        }
      }
      AND_THEN("a new group reads every key's values in publish order, each exactly once") {
        auto c = join(*b, fixture->fresh_name("ordering-group"), topic);
        auto got = consume(*c, messages.size(), drain_bound(*fixture));
        REQUIRE(got.size() == messages.size());
        CHECK(drain_for(*c, 500ms).empty());
        std::map<std::string, std::vector<std::string>> per_key;
        for (const auto& r : got) {
          REQUIRE(r.partition == yilian::partition_for_key(r.key, 4));
          per_key[r.key].push_back(r.value);
        }
        REQUIRE(per_key.size() == static_cast<std::size_t>(kKeys));
        for (int k = 0; k < kKeys; ++k) {
          std::vector<std::string> expected;
          for (int v = 0; v < kValues; ++v) expected.push_back(std::to_string(k) + ":" + std::to_string(v));
          INFO("key patient-" << k);
          CHECK(per_key["patient-" + std::to_string(k)] == expected);
        }
      }
    }
  }
}

SCENARIO("nothing acknowledged is lost when the bus restarts", "[conformance]") {
  auto fixture = yilian::testing::make_bus_fixture();
  const auto topic = fixture->fresh_name("restart");
  std::vector<message> messages;
  std::vector<position> positions;
  GIVEN("three hundred acknowledged publishes, keyed and unkeyed, on three partitions") {
    {
      auto b = fixture->open();
      create_topic(*b, topic, 3);
      for (int i = 0; i < 300; ++i) {
        messages.push_back(message{.topic = topic, .key = i % 5 == 0 ? std::string() : "k" + std::to_string(i % 17),
                                   .value = "restart-" + std::to_string(i)});
      }
      positions = publish_all(*b, messages);
    }
    WHEN("the bus is destroyed and opened again over the same store") {
      auto b = fixture->open();
      THEN("the topic keeps its partitions and a new group reads exactly what was acknowledged, where it was") {
        auto n = b->partitions(topic);
        REQUIRE(n.has_value());
        CHECK(*n == 3);
        auto c = join(*b, fixture->fresh_name("restart-group"), topic);
        auto got = consume(*c, messages.size(), drain_bound(*fixture));
        REQUIRE(got.size() == messages.size());
        CHECK(drain_for(*c, 500ms).empty());
        std::map<place, std::string> expected;
        for (std::size_t i = 0; i < messages.size(); ++i) {
          expected[{positions[i].partition, positions[i].offset}] = messages[i].value;
        }
        CHECK(by_place(got) == expected);
      }
    }
  }
}

SCENARIO("records a consumer did not commit are delivered again to the next member of its group",
         "[conformance]") {
  auto fixture = yilian::testing::make_bus_fixture();
  auto b = fixture->open();
  GIVEN("ninety records on three partitions, all read by one consumer that commits the first forty") {
    const auto topic = fixture->fresh_name("redelivery");
    const auto group = fixture->fresh_name("redelivery-group");
    create_topic(*b, topic, 3);
    std::vector<message> messages;
    for (int i = 0; i < 90; ++i) {
      messages.push_back(message{.topic = topic, .key = "r" + std::to_string(i % 11), .value = "v" + std::to_string(i)});
    }
    publish_all(*b, messages);
    auto first = join(*b, group, topic);
    auto got = consume(*first, 90, drain_bound(*fixture));
    REQUIRE(got.size() == 90);
    // Per partition the first forty received are a prefix of what it delivered,
    // so committing them commits exactly those.
    auto committed = first->commit(std::span<const record>(got.data(), 40));
    INFO((committed ? std::string("committed") : committed.error().describe()));
    REQUIRE(committed.has_value());

    WHEN("that consumer closes and another joins the same group") {
      first->close();
      first.reset();
      auto second = join(*b, group, topic);
      THEN("the second gets exactly the fifty uncommitted records and none of the committed ones") {
        auto rest = consume(*second, 50, drain_bound(*fixture));
        auto extra = drain_for(*second, 1s);
        rest.insert(rest.end(), extra.begin(), extra.end());
        const std::vector<record> uncommitted(got.begin() + 40, got.end());
        CHECK(rest.size() == 50);
        CHECK(by_place(rest) == by_place(uncommitted));
      }
    }
  }
}

SCENARIO("two consumers of one group split the partitions and consume every record once", "[conformance]") {
  auto fixture = yilian::testing::make_bus_fixture();
  auto b = fixture->open();
  GIVEN("a topic with four partitions and two members of one group") {
    const auto topic = fixture->fresh_name("split");
    const auto group = fixture->fresh_name("split-group");
    create_topic(*b, topic, 4);
    auto c1 = join(*b, group, topic);
    auto c2 = join(*b, group, topic);

    // Membership settles while both poll (nothing is published yet).
    partition_set a1;
    partition_set a2;
    bool settled = false;
    const auto settle_deadline = clock_type::now() + 2 * fixture->settle_time() + 10s;
    while (!settled && clock_type::now() < settle_deadline) {
      REQUIRE(c1->poll(100ms, 10).has_value());
      REQUIRE(c2->poll(100ms, 10).has_value());
      a1 = assigned(*c1);
      a2 = assigned(*c2);
      partition_set both = a1;
      both.insert(a2.begin(), a2.end());
      settled = !a1.empty() && !a2.empty() && both.size() == a1.size() + a2.size() && both == all_partitions(topic, 4);
    }
    THEN("their assignments are disjoint, non-empty and cover every partition") {
      INFO("c1 has " << a1.size() << " partitions, c2 has " << a2.size());
      REQUIRE(settled);
    }

    WHEN("two hundred records are published and both poll and commit") {
      REQUIRE(settled);
      std::vector<message> messages;
      for (int i = 0; i < 200; ++i) {
        messages.push_back(message{.topic = topic, .key = "order-" + std::to_string(i), .value = "split-" + std::to_string(i)});
      }
      publish_all(*b, messages);
      std::vector<record> got1;
      std::vector<record> got2;
      const auto deadline = clock_type::now() + drain_bound(*fixture);
      while (got1.size() + got2.size() < messages.size() && clock_type::now() < deadline) {
        for (auto [c, into] : {std::pair{c1.get(), &got1}, std::pair{c2.get(), &got2}}) {
          auto batch = c->poll(100ms, 64);
          REQUIRE(batch.has_value());
          if (batch->empty()) continue;
          auto committed = c->commit(*batch);
          INFO((committed ? std::string("committed") : committed.error().describe()));
          REQUIRE(committed.has_value());
          into->insert(into->end(), batch->begin(), batch->end());
        }
      }

      THEN("every record arrived once, from the member that owns its partition") {
        CHECK(got1.size() + got2.size() == messages.size());
        std::multiset<std::string> values;
        for (const auto& r : got1) {
          values.insert(r.value);
          CHECK(a1.contains({r.topic, r.partition}));
        }
        for (const auto& r : got2) {
          values.insert(r.value);
          CHECK(a2.contains({r.topic, r.partition}));
        }
        std::multiset<std::string> expected;
        for (const auto& m : messages) expected.insert(m.value);
        CHECK(values == expected);
        CHECK(!got1.empty());
        CHECK(!got2.empty());
      }
      AND_THEN("the commits hold: every partition's committed offset is its end, and a later member gets nothing") {
        std::int64_t total_end = 0;
        for (auto* c : {c1.get(), c2.get()}) {
          auto lag = c->lag();
          REQUIRE(lag.has_value());
          for (const auto& l : *lag) {
            INFO(l.topic << "/" << l.partition);
            CHECK(l.committed == l.end);
            total_end += l.end;
          }
        }
        CHECK(total_end == static_cast<std::int64_t>(messages.size()));
        c1->close();
        c2->close();
        auto c3 = join(*b, group, topic);
        std::vector<record> late;
        const auto until = clock_type::now() + 2 * fixture->settle_time() + 10s;
        while (assigned(*c3).size() < 4 && clock_type::now() < until) {
          auto batch = c3->poll(100ms, 10);
          REQUIRE(batch.has_value());
          late.insert(late.end(), batch->begin(), batch->end());
        }
        REQUIRE(assigned(*c3) == all_partitions(topic, 4));
        auto more = drain_for(*c3, 1s);
        late.insert(late.end(), more.begin(), more.end());
        CHECK(late.empty());
      }
    }
  }
}

SCENARIO("a record's key, value, headers and timestamp round-trip", "[conformance]") {
  auto fixture = yilian::testing::make_bus_fixture();
  auto b = fixture->open();
  GIVEN("a record with binary bytes, repeated and empty headers and an explicit timestamp") {
    const auto topic = fixture->fresh_name("roundtrip");
    create_topic(*b, topic, 2);
    const std::string binary("\x00\x01\xfe\xff envelope \x00 bytes", 22);
    const message explicit_time{
        .topic = topic,
        .key = "patient-42",
        .value = binary,
        .headers = {header{.key = "trace-id", .value = "00-4bf92f3577b34da6-01"},
                    header{.key = "content-type", .value = "application/x-protobuf"},
                    header{.key = "empty", .value = ""},
                    header{.key = "trace-id", .value = "second"}},
        .timestamp_ms = 1700000000123,
    };
    const message now_time{.topic = topic, .key = "patient-42", .value = "stamped by the bus"};
    const auto before_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch()).count();
    WHEN("it is published, followed by one without a timestamp, and consumed") {
      const auto positions = publish_all(*b, {explicit_time, now_time});
      const auto after_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch()).count();
      auto c = join(*b, fixture->fresh_name("roundtrip-group"), topic);
      auto got = consume(*c, 2, drain_bound(*fixture));
      REQUIRE(got.size() == 2);
      THEN("every field comes back as published, at the acknowledged position") {
        const auto& r = got[0];
        CHECK(r.topic == topic);
        CHECK(r.partition == positions[0].partition);
        CHECK(r.offset == positions[0].offset);
        CHECK(r.key == explicit_time.key);
        CHECK(r.value == binary);
        CHECK(r.headers == explicit_time.headers);
        CHECK(r.timestamp_ms == 1700000000123);
      }
      AND_THEN("a zero timestamp becomes the publish time") {
        const auto& r = got[1];
        CHECK(r.offset == positions[1].offset);
        CHECK(r.value == now_time.value);
        CHECK(r.headers.empty());
        CHECK(r.timestamp_ms >= before_ms - 1000);
        CHECK(r.timestamp_ms <= after_ms + 1000);
      }
    }
  }
}

SCENARIO("publishing to a bus that cannot reach its store fails in time with a retriable error", "[conformance]") {
  auto fixture = yilian::testing::make_bus_fixture();
  GIVEN("a topic that exists, and a bus whose store or broker cannot be reached, with a one second timeout") {
    const auto topic = fixture->fresh_name("unreachable");
    {
      auto b = fixture->open();
      create_topic(*b, topic, 2);
    }
    constexpr auto timeout = 1000ms;
    constexpr auto margin = 2000ms;
    auto b = fixture->open_unreachable(timeout);
    WHEN("a record is published") {
      acks waiter(1);
      const auto started = clock_type::now();
      b->publish(message{.topic = topic, .key = "k", .value = "never stored"}, waiter.handler(0));
      auto results = waiter.wait(timeout + margin + 10s);
      const auto elapsed = clock_type::now() - started;
      THEN("the handler reports a retriable failure within the timeout plus a small margin") {
        REQUIRE(results.has_value());
        const auto& r = (*results)[0];
        REQUIRE_FALSE(r.has_value());
        INFO(r.error().describe());
        CHECK(r.error().retriable);
        CHECK(elapsed <= timeout + margin);
      }
    }
    WHEN("readiness is checked") {
      const auto started = clock_type::now();
      auto ready = b->check_ready(500ms);
      const auto elapsed = clock_type::now() - started;
      THEN("it says not ready, within its own bound") {
        CHECK_FALSE(ready.has_value());
        CHECK(elapsed <= 500ms + margin);
      }
    }
  }
}

SCENARIO("lag reports committed and end offsets as commits move", "[conformance]") {
  auto fixture = yilian::testing::make_bus_fixture();
  auto b = fixture->open();
  GIVEN("ten records on two partitions, all read by one consumer") {
    const auto topic = fixture->fresh_name("lag");
    create_topic(*b, topic, 2);
    std::vector<message> messages;
    for (int i = 0; i < 10; ++i) messages.push_back(message{.topic = topic, .key = "k" + std::to_string(i), .value = "l"});
    const auto positions = publish_all(*b, messages);
    std::map<std::int32_t, std::int64_t> end;
    for (const auto& p : positions) end[p.partition] = std::max(end[p.partition], p.offset + 1);
    auto c = join(*b, fixture->fresh_name("lag-group"), topic);
    auto got = consume(*c, 10, drain_bound(*fixture));
    REQUIRE(got.size() == 10);

    auto lag_of = [&] {
      auto lag = c->lag();
      REQUIRE(lag.has_value());
      std::map<std::int32_t, partition_lag> out;
      for (const auto& l : *lag) {
        CHECK(l.topic == topic);
        out[l.partition] = l;
      }
      REQUIRE(out.size() == 2);
      return out;
    };
    auto total = [](const std::map<std::int32_t, partition_lag>& m) {
      std::int64_t sum = 0;
      for (const auto& [p, l] : m) sum += l.lag();
      return sum;
    };

    THEN("before any commit nothing is committed and the lag is everything") {
      auto lag = lag_of();
      for (const auto& [p, l] : lag) {
        CHECK(l.committed == -1);
        CHECK(l.end == end[p]);
      }
      CHECK(total(lag) == 10);
    }
    WHEN("the first three records are committed") {
      REQUIRE(c->commit(std::span<const record>(got.data(), 3)).has_value());
      std::map<std::int32_t, std::int64_t> committed;
      for (std::size_t i = 0; i < 3; ++i) {
        committed[got[i].partition] = std::max(committed[got[i].partition], got[i].offset + 1);
      }
      THEN("lag shows those commits and seven left") {
        auto lag = lag_of();
        for (const auto& [p, l] : lag) {
          CHECK(l.committed == (committed.contains(p) ? committed[p] : -1));
          CHECK(l.end == end[p]);
        }
        CHECK(total(lag) == 7);
      }
      AND_WHEN("everything is committed") {
        REQUIRE(c->commit(got).has_value());
        THEN("every partition is committed to its end and the lag is zero") {
          auto lag = lag_of();
          for (const auto& [p, l] : lag) CHECK(l.committed == end[p]);
          CHECK(total(lag) == 0);
        }
      }
    }
  }
}

SCENARIO("ensure_topics creates a topic once and partitions() reports its partition count", "[conformance]") {
  auto fixture = yilian::testing::make_bus_fixture();
  auto b = fixture->open();
  GIVEN("a topic created with five partitions") {
    const auto topic = fixture->fresh_name("topics");
    create_topic(*b, topic, 5);
    WHEN("it is ensured again with a different count") {
      const topic_spec again{.name = topic, .partitions = 2};
      auto r = b->ensure_topics({&again, 1});
      THEN("that succeeds and the topic keeps its five partitions") {
        REQUIRE(r.has_value());
        auto n = b->partitions(topic);
        REQUIRE(n.has_value());
        CHECK(*n == 5);
      }
    }
  }
}

// "<prefix><n>" built by appending: g++ 12 reports a false -Wrestrict for
// `"literal" + std::to_string(n)` when inlined into this scenario.
namespace {
std::string numbered(std::string_view prefix, std::int64_t n) {
  std::string out(prefix);
  out += std::to_string(n);
  return out;
}
}  // namespace

SCENARIO("a group without committed offsets can start at a timestamp, and committed offsets still win",
         "[conformance]") {
  auto fixture = yilian::testing::make_bus_fixture();
  auto b = fixture->open();
  GIVEN("twenty records one second apart, ten minutes ago, on two partitions") {
    const auto topic = fixture->fresh_name("timestamp");
    create_topic(*b, topic, 2);
    const std::int64_t base = std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch()).count() - 600'000;
    std::vector<message> messages;
    for (int i = 0; i < 20; ++i) {
      messages.push_back(message{.topic = topic, .key = numbered("t", i % 4), .value = numbered("at-", i),
                                 .headers = {}, .timestamp_ms = base + i * 1000});
    }
    publish_all(*b, messages);
    // One fresh record per partition: whatever a consumer reads before the
    // marker of a partition precedes it in that partition.
    std::vector<message> markers;
    for (std::int32_t p = 0; p < 2; ++p) {
      for (int k = 0;; ++k) {
        const std::string key = numbered("marker-", k);
        if (yilian::partition_for_key(key, 2) != p) continue;
        markers.push_back(message{.topic = topic, .key = key, .value = numbered("marker-", p)});
        break;
      }
    }
    auto read_until_markers = [&](consumer& c) {
      std::vector<record> out;
      std::set<std::string> seen;
      const auto deadline = clock_type::now() + drain_bound(*fixture);
      while (seen.size() < markers.size() && clock_type::now() < deadline) {
        auto batch = c.poll(200ms, 100);
        REQUIRE(batch.has_value());
        for (auto& r : *batch) {
          if (r.value.starts_with("marker-")) seen.insert(r.value);
          out.push_back(std::move(r));
        }
      }
      REQUIRE(seen.size() == markers.size());
      return out;
    };
    auto values_of = [](const std::vector<record>& records) {
      std::multiset<std::string> out;
      for (const auto& r : records) out.insert(r.value);
      return out;
    };

    WHEN("a new group starts at the timestamp between the tenth and eleventh record") {
      auto c = b->subscribe(consumer_options{.group = fixture->fresh_name("timestamp-group"), .topics = {topic},
                                             .start = start_from::latest, .start_timestamp_ms = base + 9'500});
      REQUIRE(c.has_value());
      auto got = consume(**c, 10, drain_bound(*fixture));
      publish_all(*b, markers);
      auto rest = read_until_markers(**c);
      got.insert(got.end(), rest.begin(), rest.end());
      THEN("it reads exactly the last ten records, then the new ones") {
        std::multiset<std::string> expected{"marker-0", "marker-1"};
        for (int i = 10; i < 20; ++i) expected.insert(numbered("at-", i));
        CHECK(values_of(got) == expected);
      }
    }
    WHEN("a new group starts after the last record") {
      auto c = b->subscribe(consumer_options{.group = fixture->fresh_name("timestamp-late"), .topics = {topic},
                                             .start = start_from::earliest, .start_timestamp_ms = base + 60'000});
      REQUIRE(c.has_value());
      // Let the group settle before publishing, so "the end" is the end before the markers.
      const auto until = clock_type::now() + 2 * fixture->settle_time() + 10s;
      std::vector<record> early;
      while (assigned(**c).size() < 2 && clock_type::now() < until) {
        auto batch = (*c)->poll(100ms, 10);
        REQUIRE(batch.has_value());
        early.insert(early.end(), batch->begin(), batch->end());
      }
      REQUIRE(assigned(**c) == all_partitions(topic, 2));
      auto more = drain_for(**c, 1s);
      early.insert(early.end(), more.begin(), more.end());
      publish_all(*b, markers);
      auto got = read_until_markers(**c);
      THEN("it reads only what is published afterwards") {
        CHECK(early.empty());
        CHECK(values_of(got) == std::multiset<std::string>{"marker-0", "marker-1"});
      }
    }
    WHEN("a group that committed everything is joined with a timestamp before all records") {
      const auto group = fixture->fresh_name("timestamp-committed");
      {
        auto first = join(*b, group, topic);
        auto all = consume(*first, 20, drain_bound(*fixture));
        REQUIRE(all.size() == 20);
        REQUIRE(first->commit(all).has_value());
        first->close();
      }
      auto c = b->subscribe(consumer_options{.group = group, .topics = {topic}, .start = start_from::earliest,
                                             .start_timestamp_ms = base});
      REQUIRE(c.has_value());
      publish_all(*b, markers);
      auto got = read_until_markers(**c);
      THEN("the committed offsets decide: only the new records arrive") {
        CHECK(values_of(got) == std::multiset<std::string>{"marker-0", "marker-1"});
      }
    }
  }
}
