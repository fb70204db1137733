// kill -9 in the middle of a publish burst loses nothing that was acknowledged.
//
// The child (embedded_log_crash_child) publishes from 64 concurrent
// closed-loop publishers and prints every acknowledgement; this test reads the
// acknowledgements from a pipe, sends SIGKILL after a chosen number of them,
// reopens the log and checks every acknowledged (partition, offset) holds the
// payload that was acknowledged there, and that offsets are dense.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>

#include <map>
#include <string>
#include <vector>

#include "tests/unit/bus/child_process.h"
#include "tests/unit/bus/crash_payload.h"
#include "tests/unit/bus/log_test_support.h"

using namespace yilian::bus;
using namespace yilian::bus::test;

TEST_CASE("every publish acknowledged before a kill -9 is in the log after reopening, with its payload",
          "[unit][slow]") {
  const std::size_t kill_after = GENERATE(as<std::size_t>{}, 1, 300, 3000, 20000);
  temp_dir dir;
  std::vector<ack> acks;
  std::vector<std::string> errors;

  SECTION("given a child publishing from 64 concurrent publishers") {
    child_process c(YILIAN_CRASH_CHILD, {dir.db().string(), "64"});
    const auto deadline = steady::now() + 90s;
    auto first = c.line(deadline);
    REQUIRE(first.has_value());
    REQUIRE(*first == "ready");

    SECTION("when it is killed with SIGKILL after " + std::to_string(kill_after) + " acknowledgements") {
      bool killed = false;
      while (auto l = c.line(deadline)) {
        if (auto a = parse_ack(*l)) {
          acks.push_back(*a);
        } else {
          errors.push_back(*l);
        }
        if (!killed && acks.size() >= kill_after) {
          c.kill9();
          killed = true;
        }
      }
      // The loop ends at EOF: everything the child wrote before dying has been read.
      REQUIRE(killed);
      const int status = c.reap();
      REQUIRE(WIFSIGNALED(status));
      REQUIRE(WTERMSIG(status) == SIGKILL);
      INFO("first publish error: " << (errors.empty() ? std::string("none") : errors.front()));
      REQUIRE(errors.empty());
      REQUIRE(acks.size() >= kill_after);

      SECTION("then reopening finds every acknowledged record, with its payload, at dense offsets") {
        auto log = open_log(embedded_log_options{.path = dir.db()});
        auto n = log->partitions(kCrashTopic);
        REQUIRE(n.has_value());
        REQUIRE(*n == kCrashPartitions);
        auto sub = log->subscribe(consumer_options{.group = "verify", .topics = {kCrashTopic}});
        REQUIRE(sub.has_value());
        auto& consumer = **sub;
        auto lag = consumer.lag();
        REQUIRE(lag.has_value());
        std::int64_t total = 0;
        for (const auto& l : *lag) total += l.end;
        INFO("acknowledged " << acks.size() << ", in the log after reopening " << total);
        REQUIRE(total >= static_cast<std::int64_t>(acks.size()));

        const auto records = read_n(consumer, static_cast<std::size_t>(total), 60s);
        REQUIRE(records.size() == static_cast<std::size_t>(total));
        std::map<std::pair<std::int32_t, std::int64_t>, const record*> at;
        std::map<std::int32_t, std::int64_t> next_offset;
        for (const auto& r : records) {
          // Dense, in order, starting at 0 in every partition.
          REQUIRE(r.offset == next_offset[r.partition]);
          next_offset[r.partition] = r.offset + 1;
          at[{r.partition, r.offset}] = &r;
        }
        std::size_t missing = 0;
        std::size_t wrong = 0;
        for (const auto& a : acks) {
          auto it = at.find({a.partition, a.offset});
          if (it == at.end()) {
            ++missing;
          } else if (it->second->value != crash_value(a.id) || it->second->key != crash_key(a.id)) {
            ++wrong;
          }
        }
        CHECK(missing == 0);
        CHECK(wrong == 0);

        // Offsets continue exactly at each partition's end: the end was
        // recovered from the records even where it was never persisted.
        std::map<std::int32_t, std::int64_t> end;
        for (const auto& l : *lag) end[l.partition] = l.end;
        for (std::int32_t i = 0; i < kCrashPartitions; ++i) {
          auto next = publish_wait(*log, message{.topic = kCrashTopic, .value = "after the crash"});
          REQUIRE(next.has_value());
          CHECK(next->offset == end[next->partition]);
          end[next->partition] += 1;
        }
      }
    }
  }
}
