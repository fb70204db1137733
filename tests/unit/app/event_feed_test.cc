// engine/app/event_feed: the console's view of the bus lists the newest
// records by their heads and commits what it read, so its group's lag comes
// back to zero once traffic stops, and a restart does not list again what
// the last run read.
#include <catch2/catch.hpp>

#include <algorithm>
#include <future>
#include <thread>
#include <vector>

#include "engine/app/event_feed.h"
#include "engine/bus/embedded_log.h"
#include "tests/support/eventually.h"
#include "tests/support/temp_dir.h"
#include "yilian/events/v1/envelope.pb.h"

namespace {

namespace ev = yilian::events::v1;
namespace bus = yilian::bus;
using yilian::app::event_feed;
using yilian::test::eventually;
using yilian::test::temp_dir;

void publish(bus::bus& b, const std::string& topic, const std::string& id) {
  ev::Envelope e;
  e.set_event_id(id);
  e.set_type("yilian.events.v1.PatientRegistered");
  std::promise<yilian::result<bus::position>> done;
  auto f = done.get_future();
  b.publish(bus::message{.topic = topic, .key = id, .value = e.SerializeAsString()},
            [&done](yilian::result<bus::position> p) { done.set_value(std::move(p)); });
  if (auto r = f.get(); !r) FAIL(r.error().describe());
}

// The feed's lag snapshot (refreshed about once a second) has all `records`
// of the topics and none left uncommitted.
bool all_committed(const event_feed& feed, std::int64_t records) {
  std::int64_t end = 0;
  bool none_left = true;
  for (const auto& l : feed.lag()) {
    end += l.end;
    none_left = none_left && l.lag() == 0;
  }
  return end == records && none_left;
}

}  // namespace

TEST_CASE("the event feed commits what it read once traffic stops, and a restart lists only what is new", "[unit]") {
  temp_dir dir{"yilian-event-feed-test"};
  auto opened =
      bus::open_embedded_log(bus::embedded_log_options{.path = dir.file("bus/log.db"), .default_partitions = 3});
  REQUIRE(opened);
  auto& b = **opened;
  const std::vector<bus::topic_spec> topics{{.name = "t.patient", .partitions = 3},
                                            {.name = "t.booking", .partitions = 2}};
  REQUIRE(b.ensure_topics(topics));
  for (int i = 0; i < 20; ++i) publish(b, i % 2 == 0 ? "t.patient" : "t.booking", "ev-" + std::to_string(i));
  {
    event_feed feed(b, {"t.patient", "t.booking"}, 50);
    REQUIRE(feed.start());
    REQUIRE(eventually([&] { return feed.records_seen() == 20; }));
    CHECK(feed.recent(std::nullopt, 100).size() == 20);
    CHECK(feed.recent(std::string("t.booking"), 100).size() == 10);
    // Committed, though nothing more comes (the lag snapshot is a second old at most).
    REQUIRE(eventually([&] { return all_committed(feed, 20); }, std::chrono::seconds(5)));
    publish(b, "t.patient", "ev-20");
    REQUIRE(eventually([&] { return feed.records_seen() == 21; }));
    REQUIRE(eventually([&] { return all_committed(feed, 21); }, std::chrono::seconds(5)));
    publish(b, "t.booking", "ev-21");
    REQUIRE(eventually([&] { return feed.records_seen() == 22; }));
    feed.stop();
  }
  publish(b, "t.booking", "ev-22");
  event_feed again(b, {"t.patient", "t.booking"}, 50);
  REQUIRE(again.start());
  REQUIRE(eventually([&] { return again.records_seen() >= 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto listed = again.recent(std::nullopt, 100);
  REQUIRE(listed.size() == 1);
  CHECK(listed[0].event_id == "ev-22");
  CHECK(listed[0].type == "yilian.events.v1.PatientRegistered");
}
