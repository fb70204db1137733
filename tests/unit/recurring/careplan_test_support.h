// Helpers for the recurring-exam tests: a temporary embedded log, a clock the
// test moves, one "engine" (bus, booking service, optional booking notifier,
// scheduler) started and stopped the way serve.cc does, and reading a topic
// back from its start.
#pragma once

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "engine/bus/embedded_log.h"
#include "engine/workflows/booking/notifier.h"
#include "engine/workflows/booking/service.h"
#include "engine/workflows/recurring/scheduler.h"
#include "tests/support/eventually.h"
#include "tests/support/temp_dir.h"
#include "tests/unit/workflows/booking_test_support.h"

namespace yilian::workflows::recurring::test {

using namespace std::chrono_literals;
using booking::test::cat;
using booking::test::consortium;
using steady = std::chrono::steady_clock;

inline const std::string booking_topic = "yilian.booking.v1";
inline const std::string careplan_topic = "yilian.careplan.v1";
inline const std::string outbound_topic = "yilian.outbound.v1";

// A temporary directory; the engine's log is bus/log.db in it.
class temp_dir : public yilian::test::temp_dir {
 public:
  temp_dir() : yilian::test::temp_dir("yilian-careplan-test") {}
};

using yilian::test::eventually;

inline google::protobuf::Timestamp ts(booking::seconds t) { return booking::to_timestamp(t); }

// A clock the test moves.
struct test_clock {
  std::shared_ptr<std::atomic<std::int64_t>> t;
  explicit test_clock(booking::seconds start)
      : t(std::make_shared<std::atomic<std::int64_t>>(start.time_since_epoch().count())) {}
  void advance(std::chrono::seconds d) const { t->fetch_add(d.count()); }
  void set(booking::seconds at) const { t->store(at.time_since_epoch().count()); }
  booking::seconds now() const { return booking::seconds(std::chrono::seconds(t->load())); }
  std::function<booking::seconds()> fn() const {
    return [clock = t] { return booking::seconds(std::chrono::seconds(clock->load())); };
  }
};

inline time_zone shanghai() {
  auto z = time_zone::load("Asia/Shanghai");
  if (!z) FAIL(z.error().describe());
  return *z;
}

// One engine: bus, booking service (+ notifier) and scheduler, started and
// stopped in the order serve.cc uses.
struct engine {
  std::unique_ptr<bus::bus> bus;
  std::unique_ptr<booking::service> bookings;
  std::unique_ptr<booking::notifier> notifier;
  std::unique_ptr<scheduler> plans;

  ~engine() { stop(); }
  void stop() {
    if (plans) plans->stop();
    if (notifier) notifier->stop();
    if (bookings) bookings->stop();
    plans.reset();
    notifier.reset();
    bookings.reset();
    if (bus) (void)bus->flush(5s);
    bus.reset();
  }
};

struct engine_options {
  std::function<bool(const ev::CarePlanOccurrence&)> before_occurrence;
  bool notifier = false;
  bool scheduler = true;
};

inline std::unique_ptr<engine> start_engine(const temp_dir& dir, const test_clock& clock, engine_options o = {}) {
  auto e = std::make_unique<engine>();
  auto b = bus::open_embedded_log(bus::embedded_log_options{.path = dir.file("bus/log.db"), .default_partitions = 4});
  if (!b) FAIL(b.error().describe());
  e->bus = std::move(*b);
  const std::vector<bus::topic_spec> topics{{.name = booking_topic, .partitions = 4},
                                            {.name = careplan_topic, .partitions = 4},
                                            {.name = outbound_topic, .partitions = 4}};
  if (auto r = e->bus->ensure_topics(topics); !r) FAIL(r.error().describe());
  auto l = booking::ledger::create(consortium());
  if (!l) FAIL(l.error().describe());
  e->bookings = std::make_unique<booking::service>(*e->bus, std::move(*l), booking::service_options{.now = clock.fn()});
  if (auto r = e->bookings->start(); !r) FAIL(r.error().describe());
  REQUIRE(eventually([&] { return e->bookings->caught_up(); }));
  if (o.notifier) {
    e->notifier = std::make_unique<booking::notifier>(*e->bus, booking::notifier_options{
                                                                   .listeners = booking::appointment_listeners(consortium())});
    if (auto r = e->notifier->start(); !r) FAIL(r.error().describe());
  }
  if (!o.scheduler) return e;
  e->plans = std::make_unique<scheduler>(*e->bus, *e->bookings,
                                         recurring::scheduler_options{.zone = shanghai(),
                                                                      .tick = std::chrono::hours(1),
                                                                      .now = clock.fn(),
                                                                      .decision_timeout = 10s,
                                                                      .before_occurrence = std::move(o.before_occurrence)});
  if (auto r = e->plans->start(); !r) FAIL(r.error().describe());
  REQUIRE(eventually([&] { return e->plans->caught_up() && e->plans->owned_partitions() == 4; }));
  return e;
}

// A pass of the scheduler at the clock's current time, waited for.
inline void pass(scheduler& s) {
  const auto ticket = s.poke();
  REQUIRE(eventually([&] { return s.pass_done(ticket); }));
}

struct logged {
  std::string key;
  ev::Envelope e;
};

// Every envelope on a topic, read by a fresh group from the start.
inline std::vector<logged> read_topic(bus::bus& b, const std::string& topic) {
  static std::atomic<int> groups{0};
  auto c = b.subscribe(bus::consumer_options{.group = cat("read-", topic, "-", std::to_string(++groups)), .topics = {topic}});
  if (!c) FAIL(c.error().describe());
  std::vector<logged> out;
  for (;;) {
    auto batch = (*c)->poll(300ms, 4096);
    if (!batch) FAIL(batch.error().describe());
    if (batch->empty()) break;
    for (const auto& r : *batch) {
      logged l{.key = r.key};
      if (l.e.ParseFromString(r.value)) out.push_back(std::move(l));
    }
  }
  return out;
}

}  // namespace yilian::workflows::recurring::test
