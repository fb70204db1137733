// The embedded log's own behaviour, beyond the bus contract that
// tests/conformance/bus_conformance.cc checks: group commit, back-pressure,
// file ownership, retention, shutdown, consumer waiting and rebalancing.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <atomic>
#include <set>
#include <thread>

#include "tests/unit/bus/log_test_support.h"

namespace {

using namespace yilian;
using namespace yilian::bus;
using namespace yilian::bus::test;

}  // namespace

TEST_CASE("concurrent publishes are committed together, in far fewer transactions than publishes", "[unit]") {
  temp_dir dir;
  auto log = open_log({.path = dir.db(), .publish_timeout = 30s});
  create(*log, {{.name = "batched", .partitions = 4}});

  SECTION("given 64 closed-loop publishers that publish their next record from the previous one's handler") {
    constexpr std::size_t kChains = 64;
    constexpr std::size_t kPerChain = 50;
    constexpr std::size_t kTotal = kChains * kPerChain;
    ack_collector acks(kTotal);
    std::atomic<std::size_t> next{0};
    std::function<void()> start_next = [&] {
      const std::size_t i = next.fetch_add(1);
      if (i >= kTotal) return;
      auto record_ack = acks.handler(i);
      log->publish(message{.topic = "batched", .key = "key-" + std::to_string(i % 97), .value = kib_value(i)},
                   [&start_next, record_ack = std::move(record_ack)](result<position> r) mutable {
                     // publish() from inside a handler only enqueues. Chain first, record
                     // second: once the last ack is recorded no handler touches start_next.
                     start_next();
                     record_ack(std::move(r));
                   });
    };
    const auto before = log->stats();
    for (std::size_t c = 0; c < kChains; ++c) start_next();
    REQUIRE(acks.wait(kTotal, 60s));

    THEN("every publish succeeded once, at dense offsets per partition") {
      std::map<std::int32_t, std::set<std::int64_t>> offsets;
      for (std::size_t i = 0; i < kTotal; ++i) {
        REQUIRE(acks.calls(i) == 1);
        auto r = *acks.get(i);
        REQUIRE(r.has_value());
        offsets[r->partition].insert(r->offset);
      }
      for (const auto& [p, set] : offsets) CHECK(set == range(0, static_cast<std::int64_t>(set.size())));
    }
    AND_THEN("the writer committed them in batches: at least eight publishes per transaction on average") {
      const auto after = log->stats();
      const auto transactions = after.transactions - before.transactions;
      INFO(transactions << " transactions for " << kTotal << " publishes, largest batch " << after.largest_batch);
      CHECK(after.records_committed - before.records_committed == kTotal);
      CHECK(transactions * 8 <= kTotal);
      CHECK(after.largest_batch > 8);
    }
  }
}

TEST_CASE("a full in-flight queue makes publish fail fast with a retriable overloaded error", "[unit]") {
  temp_dir dir;
  auto log = open_log({.path = dir.db(), .max_in_flight = 4, .publish_timeout = 20s});
  create(*log, {{.name = "bounded", .partitions = 1}});
  raw_connection other(dir.db());

  GIVEN("four publishes stuck behind another connection's write lock") {
    REQUIRE(other.lock());
    ack_collector stuck(4);
    for (std::size_t i = 0; i < 4; ++i) log->publish(message{.topic = "bounded", .value = "v"}, stuck.handler(i));

    WHEN("a fifth is published") {
      ack_collector fifth(1);
      const auto started = steady::now();
      log->publish(message{.topic = "bounded", .value = "too many"}, fifth.handler(0));
      REQUIRE(fifth.wait(1, 5s));
      const auto elapsed = steady::now() - started;

      THEN("its handler reports overloaded at once, long before the publish timeout") {
        auto r = *fifth.get(0);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::overloaded);
        CHECK(r.error().retriable);
        CHECK(elapsed < 2s);
        CHECK(log->stats().overloaded == 1);
        CHECK(stuck.done() == 0);
      }
      AND_WHEN("the lock is released") {
        REQUIRE(other.unlock());
        THEN("the four queued publishes commit, at offsets 0 to 3") {
          REQUIRE(stuck.wait(4, 10s));
          std::set<std::int64_t> offsets;
          for (std::size_t i = 0; i < 4; ++i) {
            auto r = *stuck.get(i);
            REQUIRE(r.has_value());
            offsets.insert(r->offset);
          }
          CHECK(offsets == range(0, 4));
        }
      }
    }
  }
}

TEST_CASE("a topic that was never created is an error, not something created on the fly", "[unit]") {
  temp_dir dir;
  auto log = open_log({.path = dir.db()});
  create(*log, {{.name = "known", .partitions = 2}});
  WHEN("publishing, subscribing or asking for partitions of an unknown topic") {
    auto published = publish_wait(*log, message{.topic = "unknown", .value = "v"});
    auto subscribed = log->subscribe(consumer_options{.group = "g", .topics = {"unknown"}});
    auto partitions = log->partitions("unknown");
    THEN("each fails with not_found, which is not retriable") {
      REQUIRE_FALSE(published.has_value());
      CHECK(published.error().code == errc::not_found);
      CHECK_FALSE(published.error().retriable);
      CHECK(published.error().where == "unknown");
      REQUIRE_FALSE(subscribed.has_value());
      CHECK(subscribed.error().code == errc::not_found);
      REQUIRE_FALSE(partitions.has_value());
      CHECK(partitions.error().code == errc::not_found);
    }
  }
  WHEN("a topic name is not Kafka-legal") {
    const topic_spec bad{.name = "no spaces/allowed", .partitions = 1};
    auto r = log->ensure_topics({&bad, 1});
    THEN("ensure_topics refuses it") {
      REQUIRE_FALSE(r.has_value());
      CHECK(r.error().code == errc::invalid_argument);
    }
  }
}

TEST_CASE("one log file has one owner: a second open fails with an error naming the holder", "[unit]") {
  temp_dir dir;
  GIVEN("an open log") {
    auto first = open_log({.path = dir.db()});
    WHEN("the same file is opened again") {
      auto second = embedded_log::open({.path = dir.db()});
      THEN("it fails as unavailable, saying the file is in use and by which pid") {
        REQUIRE_FALSE(second.has_value());
        CHECK(second.error().code == errc::unavailable);
        CHECK_THAT(second.error().message, Catch::Contains("already open"));
        CHECK_THAT(second.error().message, Catch::Contains("pid " + std::to_string(::getpid())));
      }
    }
    WHEN("the first owner closes") {
      first.reset();
      THEN("the file can be opened again") { CHECK(embedded_log::open({.path = dir.db()}).has_value()); }
    }
  }
}

TEST_CASE("a SQLite file that is not a yilian log is refused rather than adopted", "[unit]") {
  temp_dir dir;
  {
    raw_connection other(dir.db());
    REQUIRE(other.integer("CREATE TABLE patients(id INTEGER PRIMARY KEY)") == -1);
    REQUIRE(other.integer("SELECT count(*) FROM sqlite_schema") == 1);
  }
  auto log = embedded_log::open({.path = dir.db()});
  REQUIRE_FALSE(log.has_value());
  CHECK(log.error().code == errc::config_error);
}

TEST_CASE("options that can never work are refused at open", "[unit]") {
  temp_dir dir;
  CHECK(embedded_log::open({.path = {}}).error().code == errc::config_error);
  CHECK(embedded_log::open({.path = dir.db(), .max_in_flight = 0}).error().code == errc::config_error);
  CHECK(embedded_log::open({.path = dir.db(), .publish_timeout = 0ms}).error().code == errc::config_error);
  CHECK(embedded_log::open({.path = dir.db(), .max_batch = 0}).error().code == errc::config_error);
  CHECK(embedded_log::open({.path = dir.db(), .default_partitions = 0}).error().code == errc::config_error);
}

TEST_CASE("retention by size deletes the oldest records in small batches without rewriting the file", "[unit]") {
  temp_dir dir;
  auto log = open_log({.path = dir.db(), .retention_check_interval = std::chrono::hours(1), .retention_batch = 50});
  // 1025 bytes per record (1-byte key + 1 KiB value): 19 fit in 20 KiB.
  create(*log, {{.name = "kept", .partitions = 1},
                {.name = "short", .partitions = 1, .retention_bytes = 20 * 1024}});
  // The untouched topic is most of the file, so "pages written" separates work
  // proportional to what was deleted from a rewrite of the whole file.
  constexpr std::size_t kKept = 6000;
  constexpr std::size_t kShort = 600;
  ack_collector acks(kKept + kShort);
  for (std::size_t i = 0; i < kKept; ++i) log->publish({.topic = "kept", .key = "k", .value = kib_value(i)}, acks.handler(i));
  for (std::size_t i = 0; i < kShort; ++i) {
    log->publish({.topic = "short", .key = "s", .value = kib_value(i)}, acks.handler(kKept + i));
  }
  REQUIRE(acks.wait(kKept + kShort, 60s));
  REQUIRE(log->flush(10s).has_value());

  raw_connection inspect(dir.db());
  REQUIRE(inspect.integer("PRAGMA auto_vacuum") == 2);  // incremental
  struct stat before_stat {};
  REQUIRE(::stat(dir.db().c_str(), &before_stat) == 0);
  const auto pages_before = inspect.integer("PRAGMA page_count");
  const auto before = log->stats();

  WHEN("retention runs") {
    auto report = log->enforce_retention(60s);
    REQUIRE(report.has_value());
    const auto after = log->stats();

    THEN("exactly the oldest records beyond 20 KiB are gone, deleted at most 50 per transaction") {
      CHECK(report->deleted_records == kShort - 19);
      CHECK(after.retention_deleted - before.retention_deleted == kShort - 19);
      CHECK(after.retention_transactions - before.retention_transactions >= (kShort - 19 + 49) / 50);
      auto c = log->subscribe({.group = "short-reader", .topics = {"short"}});
      REQUIRE(c.has_value());
      auto got = read_n(**c, 19);
      CHECK(offsets_of(got) == range(kShort - 19, kShort));
      for (const auto& r : got) CHECK(r.value == kib_value(static_cast<std::size_t>(r.offset)));
      CHECK((**c).poll(200ms, 10)->empty());
    }
    AND_THEN("the file was not rewritten: few pages written, same inode, and pages handed back incrementally") {
      const auto written = after.pages_written - before.pages_written;
      INFO("pages written by retention: " << written << ", file pages before: " << pages_before);
      CHECK(written * 3 < static_cast<std::uint64_t>(pages_before));
      struct stat after_stat {};
      REQUIRE(::stat(dir.db().c_str(), &after_stat) == 0);
      CHECK(after_stat.st_ino == before_stat.st_ino);
      CHECK(report->vacuumed_pages > 0);
      CHECK(inspect.integer("PRAGMA page_count") < pages_before);
      CHECK(inspect.integer("PRAGMA freelist_count") == 0);
    }
    AND_THEN("the topic without retention is untouched") {
      auto c = log->subscribe({.group = "kept-reader", .topics = {"kept"}});
      REQUIRE(c.has_value());
      auto got = read_n(**c, kKept);
      CHECK(offsets_of(got) == range(0, kKept));
    }
    AND_WHEN("more is published") {
      auto next = publish_wait(*log, {.topic = "short", .key = "s", .value = kib_value(kShort)});
      THEN("offsets continue where they were: deleted offsets are never reused") {
        REQUIRE(next.has_value());
        CHECK(next->offset == static_cast<std::int64_t>(kShort));
      }
    }
  }
}

TEST_CASE("retention by age deletes records older than the retention time and keeps the rest", "[unit]") {
  temp_dir dir;
  auto log = open_log({.path = dir.db(), .retention_check_interval = std::chrono::hours(1)});
  create(*log, {{.name = "aging", .partitions = 1, .retention_ms = 60'000}});
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count();
  GIVEN("ten records stamped an hour ago followed by five stamped now") {
    for (int i = 0; i < 10; ++i) {
      REQUIRE(publish_wait(*log, {.topic = "aging", .value = "old", .timestamp_ms = now_ms - 3'600'000}).has_value());
    }
    for (int i = 0; i < 5; ++i) REQUIRE(publish_wait(*log, {.topic = "aging", .value = "new"}).has_value());
    WHEN("retention runs") {
      auto report = log->enforce_retention(60s);
      REQUIRE(report.has_value());
      THEN("the ten old ones are gone and the five new ones remain at offsets 10 to 14") {
        CHECK(report->deleted_records == 10);
        auto c = log->subscribe({.group = "reader", .topics = {"aging"}});
        REQUIRE(c.has_value());
        auto got = read_n(**c, 5);
        CHECK(offsets_of(got) == range(10, 15));
        for (const auto& r : got) CHECK(r.value == "new");
        auto lag = (**c).lag();
        REQUIRE(lag.has_value());
        REQUIRE(lag->size() == 1);
        CHECK(lag->front().end == 15);
      }
    }
  }
}

TEST_CASE("a group whose committed offset was deleted by retention resumes at the earliest kept record", "[unit]") {
  temp_dir dir;
  auto log = open_log({.path = dir.db(), .retention_check_interval = std::chrono::hours(1)});
  create(*log, {{.name = "trimmed", .partitions = 1, .retention_bytes = 20 * 1024}});
  ack_collector acks(100);
  for (std::size_t i = 0; i < 100; ++i) log->publish({.topic = "trimmed", .key = "t", .value = kib_value(i)}, acks.handler(i));
  REQUIRE(acks.wait(100, 30s));
  GIVEN("a group that committed offset 10") {
    {
      auto c = log->subscribe({.group = "slow", .topics = {"trimmed"}});
      REQUIRE(c.has_value());
      auto got = read_n(**c, 10);
      REQUIRE(got.size() == 10);
      REQUIRE((**c).commit(got).has_value());
    }
    WHEN("retention deletes everything before offset 81 and a member of the group comes back") {
      REQUIRE(log->enforce_retention(60s).has_value());
      auto c = log->subscribe({.group = "slow", .topics = {"trimmed"}});
      REQUIRE(c.has_value());
      THEN("it reads offsets 81 to 99, starting at the earliest kept record") {
        auto got = read_n(**c, 19);
        REQUIRE_FALSE(got.empty());
        CHECK(got.front().offset == 81);
        CHECK(offsets_of(got) == range(81, 100));
        auto lag = (**c).lag();
        REQUIRE(lag.has_value());
        CHECK(lag->front().committed == 10);
        CHECK(lag->front().end == 100);
      }
    }
  }
}

TEST_CASE("the periodic retention pass runs without being asked", "[unit]") {
  temp_dir dir;
  auto log = open_log({.path = dir.db(), .retention_check_interval = 50ms});
  create(*log, {{.name = "periodic", .partitions = 1, .retention_bytes = 4 * 1024}});
  ack_collector acks(40);
  for (std::size_t i = 0; i < 40; ++i) log->publish({.topic = "periodic", .key = "p", .value = kib_value(i)}, acks.handler(i));
  REQUIRE(acks.wait(40, 30s));
  // Waiting for a background activity that has no event to wait on: poll its
  // counter against a deadline.
  const auto deadline = steady::now() + 10s;
  while (log->stats().retention_deleted < 37 && steady::now() < deadline) std::this_thread::sleep_for(10ms);
  CHECK(log->stats().retention_deleted == 37);
  auto c = log->subscribe({.group = "after", .topics = {"periodic"}});
  REQUIRE(c.has_value());
  CHECK(offsets_of(read_n(**c, 3)) == range(37, 40));
}

TEST_CASE("shutdown finishes queued publishes and calls every handler exactly once", "[unit]") {
  temp_dir dir;
  SECTION("given two thousand publishes still queued when the log is destroyed") {
    constexpr std::size_t kCount = 2000;
    ack_collector acks(kCount);
    {
      auto log = open_log({.path = dir.db()});
      create(*log, {{.name = "closing", .partitions = 3}});
      for (std::size_t i = 0; i < kCount; ++i) {
        log->publish({.topic = "closing", .key = std::to_string(i), .value = "v"}, acks.handler(i));
      }
    }
    THEN("each handler ran once with success, and all of them are in the file") {
      REQUIRE(acks.done() == kCount);
      for (std::size_t i = 0; i < kCount; ++i) {
        REQUIRE(acks.calls(i) == 1);
        REQUIRE(acks.get(i)->has_value());
      }
      auto log = open_log({.path = dir.db()});
      auto c = log->subscribe({.group = "count", .topics = {"closing"}});
      REQUIRE(c.has_value());
      auto lag = (**c).lag();
      REQUIRE(lag.has_value());
      std::int64_t total = 0;
      for (const auto& l : *lag) total += l.end;
      CHECK(total == static_cast<std::int64_t>(kCount));
    }
  }
  SECTION("given publishes queued while another connection holds the write lock") {
    constexpr std::size_t kCount = 50;
    ack_collector acks(kCount);
    auto log = open_log({.path = dir.db(), .publish_timeout = 300ms});
    create(*log, {{.name = "closing", .partitions = 1}});
    raw_connection other(dir.db());
    REQUIRE(other.lock());
    for (std::size_t i = 0; i < kCount; ++i) log->publish({.topic = "closing", .value = "v"}, acks.handler(i));
    WHEN("the log is destroyed") {
      const auto started = steady::now();
      log.reset();
      const auto elapsed = steady::now() - started;
      THEN("it returns within the publish timeout plus a margin and every handler got one error") {
        CHECK(elapsed < 300ms + 2s);
        REQUIRE(acks.done() == kCount);
        for (std::size_t i = 0; i < kCount; ++i) {
          REQUIRE(acks.calls(i) == 1);
          auto r = *acks.get(i);
          REQUIRE_FALSE(r.has_value());
          const auto code = r.error().code;
          CHECK((code == errc::unavailable || code == errc::timeout || code == errc::cancelled));
        }
      }
    }
  }
}

TEST_CASE("flush waits until every accepted publish has completed, and gives up at its timeout", "[unit]") {
  temp_dir dir;
  auto log = open_log({.path = dir.db(), .publish_timeout = 20s});
  create(*log, {{.name = "flushed", .partitions = 2}});
  WHEN("a thousand publishes are in flight and flush is called") {
    ack_collector acks(1000);
    for (std::size_t i = 0; i < 1000; ++i) log->publish({.topic = "flushed", .value = "v"}, acks.handler(i));
    auto flushed = log->flush(30s);
    THEN("every handler has run when it returns") {
      REQUIRE(flushed.has_value());
      CHECK(acks.done() == 1000);
    }
  }
  WHEN("a publish is stuck behind another connection's lock") {
    raw_connection other(dir.db());
    REQUIRE(other.lock());
    ack_collector acks(1);
    log->publish({.topic = "flushed", .value = "stuck"}, acks.handler(0));
    auto flushed = log->flush(100ms);
    THEN("flush reports a retriable timeout") {
      REQUIRE_FALSE(flushed.has_value());
      CHECK(flushed.error().code == errc::timeout);
      CHECK(flushed.error().retriable);
    }
    REQUIRE(other.unlock());
    CHECK(acks.wait(1, 10s));
  }
}

TEST_CASE("check_ready reports whether the writer can take the file's write lock", "[unit]") {
  temp_dir dir;
  auto log = open_log({.path = dir.db()});
  CHECK(log->check_ready(1s).has_value());
  raw_connection other(dir.db());
  REQUIRE(other.lock());
  const auto started = steady::now();
  auto locked = log->check_ready(200ms);
  CHECK(steady::now() - started < 200ms + 1s);
  REQUIRE_FALSE(locked.has_value());
  CHECK(locked.error().retriable);
  REQUIRE(other.unlock());
  CHECK(log->check_ready(1s).has_value());
}

TEST_CASE("poll waits for records instead of spinning and wakes as soon as one is committed", "[unit]") {
  temp_dir dir;
  auto log = open_log({.path = dir.db()});
  create(*log, {{.name = "waiting", .partitions = 2}});
  auto c = log->subscribe({.group = "g", .topics = {"waiting"}});
  REQUIRE(c.has_value());
  WHEN("nothing is published") {
    const auto started = steady::now();
    auto got = (**c).poll(300ms, 10);
    THEN("poll returns empty after its timeout") {
      REQUIRE(got.has_value());
      CHECK(got->empty());
      CHECK(steady::now() - started >= 290ms);
    }
  }
  WHEN("a record is published while poll waits with a ten second timeout") {
    std::thread publisher([&] { (void)publish_wait(*log, {.topic = "waiting", .key = "x", .value = "wake"}); });
    const auto started = steady::now();
    auto got = (**c).poll(10s, 10);
    const auto elapsed = steady::now() - started;
    publisher.join();
    THEN("poll returns that record long before the timeout") {
      REQUIRE(got.has_value());
      REQUIRE(got->size() == 1);
      CHECK(got->front().value == "wake");
      CHECK(elapsed < 3s);
    }
  }
}

TEST_CASE("a group starting from latest skips what was published before it joined", "[unit]") {
  temp_dir dir;
  auto log = open_log({.path = dir.db()});
  create(*log, {{.name = "fresh", .partitions = 1}});
  for (int i = 0; i < 5; ++i) REQUIRE(publish_wait(*log, {.topic = "fresh", .value = "before"}).has_value());
  auto c = log->subscribe({.group = "late", .topics = {"fresh"}, .start = start_from::latest});
  REQUIRE(c.has_value());
  REQUIRE((**c).assignment().size() == 1);
  for (int i = 0; i < 3; ++i) REQUIRE(publish_wait(*log, {.topic = "fresh", .value = "after"}).has_value());
  auto got = read_n(**c, 3);
  CHECK(offsets_of(got) == range(5, 8));
  for (const auto& r : got) CHECK(r.value == "after");
  CHECK((**c).poll(200ms, 10)->empty());
}

TEST_CASE("group members split partitions, hand them over on leaving, and cannot commit what they lost", "[unit]") {
  temp_dir dir;
  auto log = open_log({.path = dir.db()});
  create(*log, {{.name = "shared", .partitions = 4}});
  std::vector<message> messages;
  for (int i = 0; i < 40; ++i) messages.push_back({.topic = "shared", .key = "k" + std::to_string(i), .value = std::to_string(i)});
  for (const auto& m : messages) REQUIRE(publish_wait(*log, m).has_value());

  GIVEN("one member that has read everything but committed nothing") {
    auto first = std::move(*log->subscribe({.group = "g", .topics = {"shared"}}));
    auto got = read_n(*first, 40);
    REQUIRE(got.size() == 40);

    WHEN("a second member joins") {
      auto second = std::move(*log->subscribe({.group = "g", .topics = {"shared"}}));
      auto a1 = first->assignment();
      auto a2 = second->assignment();
      THEN("each owns two of the four partitions, disjoint") {
        CHECK(a1.size() == 2);
        CHECK(a2.size() == 2);
        std::set<std::pair<std::string, std::int32_t>> all(a1.begin(), a1.end());
        all.insert(a2.begin(), a2.end());
        CHECK(all.size() == 4);
      }
      AND_THEN("the first cannot commit records of partitions it no longer owns") {
        auto r = first->commit(got);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::conflict);
      }
      AND_THEN("the second gets its partitions' records again, since nothing was committed") {
        auto again = read_n(*second, 40, 1s);
        std::set<std::int32_t> parts;
        for (const auto& [t, p] : a2) parts.insert(p);
        std::size_t expected = 0;
        for (const auto& r : got) expected += parts.contains(r.partition) ? 1U : 0U;
        CHECK(again.size() == expected);
        for (const auto& r : again) CHECK(parts.contains(r.partition));
      }
      AND_WHEN("the second commits half of what it read and leaves") {
        auto again = read_n(*second, 40, 1s);
        REQUIRE_FALSE(again.empty());
        const std::size_t half = again.size() / 2;
        REQUIRE(second->commit(std::span<const record>(again.data(), half)).has_value());
        second->close();
        THEN("the first owns all four partitions again and receives exactly the uncommitted rest of them") {
          CHECK(first->assignment().size() == 4);
          auto rest = read_n(*first, again.size() - half, 5s);
          CHECK(rest.size() == again.size() - half);
          std::set<std::pair<std::int32_t, std::int64_t>> expected;
          for (std::size_t i = half; i < again.size(); ++i) expected.emplace(again[i].partition, again[i].offset);
          std::set<std::pair<std::int32_t, std::int64_t>> actual;
          for (const auto& r : rest) actual.emplace(r.partition, r.offset);
          CHECK(actual == expected);
          CHECK(first->poll(200ms, 10)->empty());
        }
      }
    }
  }
}

TEST_CASE("a message larger than max_message_bytes is refused with invalid_argument", "[unit]") {
  temp_dir dir;
  auto log = open_log({.path = dir.db(), .max_message_bytes = 1000});
  create(*log, {{.name = "small", .partitions = 1}});
  auto r = publish_wait(*log, {.topic = "small", .value = std::string(std::size_t{1001}, 'x')});
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == errc::invalid_argument);
  CHECK(publish_wait(*log, {.topic = "small", .value = std::string(std::size_t{999}, 'x')}).has_value());
}

TEST_CASE("a partition's end offset and size are recovered at open when they could not be stored", "[unit]") {
  temp_dir dir;
  GIVEN("a trimmed partition whose last five records were committed but its end never stored") {
    {
      auto log = open_log({.path = dir.db(), .publish_timeout = 200ms, .retention_check_interval = std::chrono::hours(1)});
      // 1025 bytes per record: 9 fit in 10 KiB.
      create(*log, {{.name = "t", .partitions = 1, .retention_bytes = 10 * 1024}});
      ack_collector acks(30);
      for (std::size_t i = 0; i < 30; ++i) log->publish({.topic = "t", .key = "k", .value = kib_value(i)}, acks.handler(i));
      REQUIRE(acks.wait(30, 30s));
      auto trimmed = log->enforce_retention(30s);
      REQUIRE(trimmed.has_value());
      REQUIRE(trimmed->deleted_records == 21);  // stores log start 21, end 30, 9 records' bytes
      for (std::size_t i = 30; i < 35; ++i) {
        REQUIRE(publish_wait(*log, {.topic = "t", .key = "k", .value = kib_value(i)}).has_value());
      }
      // Another connection holds the write lock while the log shuts down, so
      // the final store of the partition's end fails (after publish_timeout).
      raw_connection other(dir.db());
      REQUIRE(other.lock());
      log.reset();
      REQUIRE(other.unlock());
      REQUIRE(other.integer("SELECT next_offset FROM partitions") == 30);
      REQUIRE(other.integer("SELECT bytes FROM partitions") == 9 * 1025);
    }
    WHEN("the log is opened again") {
      auto log = open_log({.path = dir.db(), .retention_check_interval = std::chrono::hours(1)});
      THEN("the end is 35, and retention counts the five unstored records: it trims exactly five more") {
        auto c = log->subscribe({.group = "g", .topics = {"t"}});
        REQUIRE(c.has_value());
        auto lag = (**c).lag();
        REQUIRE(lag.has_value());
        CHECK(lag->front().end == 35);
        auto trimmed = log->enforce_retention(30s);
        REQUIRE(trimmed.has_value());
        CHECK(trimmed->deleted_records == 5);
        auto got = read_n(**c, 9);
        CHECK(offsets_of(got) == range(26, 35));
        auto next = publish_wait(*log, {.topic = "t", .key = "k", .value = kib_value(35)});
        REQUIRE(next.has_value());
        CHECK(next->offset == 35);
      }
    }
  }
}

TEST_CASE("consumers following the end read the newest records from memory, older ones from the file", "[unit]") {
  temp_dir dir;
  // About 8 records of 1 KiB fit in the cache.
  auto log = open_log({.path = dir.db(), .tail_cache_bytes = 8 * 1100});
  create(*log, {{.name = "tail", .partitions = 1}});
  auto follower = log->subscribe({.group = "follower", .topics = {"tail"}});
  REQUIRE(follower.has_value());
  REQUIRE((**follower).assignment().size() == 1);

  std::vector<record> followed;
  for (std::size_t i = 0; i < 40; ++i) {
    REQUIRE(publish_wait(*log, {.topic = "tail", .key = "k" + std::to_string(i), .value = kib_value(i),
                                .headers = {{"n", std::to_string(i)}}})
                .has_value());
    if (i % 4 == 3) {
      auto got = read_n(**follower, 4);
      followed.insert(followed.end(), got.begin(), got.end());
    }
  }
  const auto after_follow = log->stats();
  THEN("a consumer that keeps up is served from the cache only") {
    CHECK(after_follow.records_from_cache == 40);
    CHECK(after_follow.records_from_file == 0);
  }

  auto late = log->subscribe({.group = "late", .topics = {"tail"}, .start = start_from::earliest});
  REQUIRE(late.has_value());
  auto replayed = read_n(**late, 40);
  const auto after_replay = log->stats();
  THEN("a consumer starting from the beginning reads the old records from the file and the newest from memory") {
    CHECK(after_replay.records_from_file - after_follow.records_from_file >= 30);
    CHECK(after_replay.records_from_file - after_follow.records_from_file < 40);
    CHECK(after_replay.records_from_cache - after_follow.records_from_cache >= 1);
  }
  THEN("both see the same records: offsets, keys, values, headers and timestamps") {
    REQUIRE(followed.size() == 40);
    REQUIRE(replayed.size() == 40);
    CHECK(offsets_of(followed) == range(0, 40));
    for (std::size_t i = 0; i < 40; ++i) {
      CHECK(followed[i].offset == replayed[i].offset);
      CHECK(followed[i].key == replayed[i].key);
      CHECK(followed[i].value == replayed[i].value);
      CHECK(followed[i].value == kib_value(i));
      CHECK(followed[i].timestamp_ms == replayed[i].timestamp_ms);
      REQUIRE(followed[i].headers.size() == 1);
      REQUIRE(replayed[i].headers.size() == 1);
      CHECK(followed[i].headers[0].value == std::to_string(i));
      CHECK(replayed[i].headers[0].value == std::to_string(i));
    }
  }
}

TEST_CASE("with the tail cache off every record is read from the file", "[unit]") {
  temp_dir dir;
  auto log = open_log({.path = dir.db(), .tail_cache_bytes = 0});
  create(*log, {{.name = "nocache", .partitions = 1}});
  auto c = log->subscribe({.group = "g", .topics = {"nocache"}});
  REQUIRE(c.has_value());
  for (std::size_t i = 0; i < 5; ++i) REQUIRE(publish_wait(*log, {.topic = "nocache", .value = kib_value(i)}).has_value());
  auto got = read_n(**c, 5);
  CHECK(offsets_of(got) == range(0, 5));
  CHECK(log->stats().records_from_cache == 0);
  CHECK(log->stats().records_from_file == 5);
}

TEST_CASE("a record retention removed is not served from the cache", "[unit]") {
  temp_dir dir;
  auto log = open_log({.path = dir.db(), .retention_batch = 100});
  create(*log, {{.name = "trimmed", .partitions = 1, .retention_bytes = 3 * 1100}});
  for (std::size_t i = 0; i < 10; ++i) REQUIRE(publish_wait(*log, {.topic = "trimmed", .value = kib_value(i)}).has_value());
  REQUIRE(log->enforce_retention(10s).has_value());
  auto c = log->subscribe({.group = "g", .topics = {"trimmed"}, .start = start_from::earliest});
  REQUIRE(c.has_value());
  auto got = read_n(**c, 3);
  THEN("the consumer starts at the earliest record kept, as when reading the file") {
    REQUIRE(!got.empty());
    CHECK(got.front().offset >= 7);
    CHECK(got.back().offset == 9);
  }
}
