// booking::book_earliest (engine/workflows/booking/slot_finder.h), which the
// recurring-exam scheduler shares with the booking feed: the first query that
// finds slots gives the candidates, refusals for a taken / over-share /
// blocked slot move on to the next one, any other refusal or an error ends
// the attempts. Then the feed's OrderPlaced path through it, on a real
// embedded log (a clinic's order booked on the earliest free slot).
#include <catch2/catch.hpp>

#include <future>

#include "engine/bus/publish.h"
#include "engine/core/ids.h"
#include "engine/workflows/booking/feed.h"
#include "engine/workflows/booking/slot_finder.h"
#include "tests/unit/recurring/careplan_test_support.h"

using namespace yilian;
using namespace yilian::workflows;
using namespace yilian::workflows::recurring::test;
using booking::test::sh;

namespace {

booking::slot_query ct_head(std::string equipment = {}) {
  return booking::slot_query{.exam_code = "CT-HEAD-PLAIN", .equipment_id = std::move(equipment),
                             .requesting_hospital = "dc-chc", .from = sh(2025, 10, 13), .to = sh(2025, 10, 14),
                             .limit = 4};
}

// A decide() that answers from a script: a refusal code, "" to accept, or an error.
struct scripted {
  std::vector<std::string> answers;
  std::vector<std::string> starts;  // slot ids of the commands seen
  result<booking::decision> operator()(const ev::Envelope& cmd) {
    const auto n = starts.size();
    starts.push_back(cmd.booking_command().equipment_id() + "@" +
                     std::to_string(booking::to_seconds(cmd.booking_command().start()).time_since_epoch().count()));
    const std::string a = n < answers.size() ? answers[n] : "";
    if (a == "error") return fail(errc::timeout, "no decision");
    booking::decision d{.command_id = cmd.booking_command().command_id()};
    if (!a.empty()) d.refused = booking::refusal{.code = a, .message = a};
    return d;
  }
};

ev::Envelope make(const booking::free_slot& s, std::size_t attempt) {
  ev::Envelope e;
  auto* c = e.mutable_booking_command();
  c->set_command_id("c-" + std::to_string(attempt));
  c->set_equipment_id(s.equipment_id);
  *c->mutable_start() = booking::to_timestamp(s.when.start);
  return e;
}

}  // namespace

TEST_CASE("book_earliest tries the next slot only when the refusal says the slot went", "[unit]") {
  temp_dir dir;
  test_clock clock(sh(2025, 10, 10, 7));
  auto e = start_engine(dir, clock, {.scheduler = false});
  const std::vector<booking::slot_query> queries{ct_head()};
  auto run = [&](scripted& s) {
    return booking::book_earliest(*e->bookings, queries, clock.now(), make, std::ref(s));
  };

  SECTION("taken, over the share, blocked: the next slot each time, then booked") {
    scripted s{.answers = {"slot_taken", "over_share", "blocked", ""}};
    const auto r = run(s);
    REQUIRE(r);
    CHECK(r->found);
    CHECK(r->tried == 4);
    REQUIRE(r->booked);
    CHECK_FALSE(r->refused);
    REQUIRE(r->slot);
    CHECK(r->slot->when.start == sh(2025, 10, 13, 8, 15));  // zs-ct-1 and qh-ct-1 both open at 08:00
    CHECK(s.starts.size() == 4);
  }
  SECTION("another refusal ends the attempts") {
    scripted s{.answers = {"slot_taken", "not_allowed"}};
    const auto r = run(s);
    REQUIRE(r);
    CHECK(r->tried == 2);
    CHECK_FALSE(r->booked);
    REQUIRE(r->refused);
    CHECK(r->refused->code == "not_allowed");
  }
  SECTION("every candidate taken: the last refusal") {
    scripted s{.answers = {"slot_taken", "slot_taken", "slot_taken", "slot_taken"}};
    const auto r = run(s);
    REQUIRE(r);
    CHECK(r->tried == 4);
    CHECK(r->refused->code == "slot_taken");
  }
  SECTION("an error from decide is returned") {
    scripted s{.answers = {"slot_taken", "error"}};
    const auto r = run(s);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == errc::timeout);
  }
  SECTION("the first query that finds slots gives the candidates") {
    // No machine called "nowhere": the second query (qh-ct-1 only) is used.
    const std::vector<booking::slot_query> fallback{ct_head("nowhere"), ct_head("qh-ct-1"), ct_head()};
    scripted s;
    const auto r = booking::book_earliest(*e->bookings, fallback, clock.now(), make, std::ref(s));
    REQUIRE(r);
    REQUIRE(r->booked);
    CHECK(r->slot->equipment_id == "qh-ct-1");
  }
  SECTION("no slot anywhere") {
    const std::vector<booking::slot_query> none{ct_head("nowhere")};
    scripted s;
    const auto r = booking::book_earliest(*e->bookings, none, clock.now(), make, std::ref(s));
    REQUIRE(r);
    CHECK_FALSE(r->found);
    CHECK(r->tried == 0);
  }
}

TEST_CASE("the booking feed books a clinic's order on the earliest free slot through book_earliest", "[unit]") {
  temp_dir dir;
  test_clock clock(sh(2025, 10, 10, 7));
  auto e = start_engine(dir, clock, {.scheduler = false});
  const std::vector<bus::topic_spec> topics{{.name = "yilian.patient.v1", .partitions = 4},
                                            {.name = "yilian.report.v1", .partitions = 4}};
  REQUIRE(e->bus->ensure_topics(topics));
  booking::feed f(*e->bus, *e->bookings, booking::feed_options{});
  REQUIRE(f.start());

  ev::Envelope order;
  order.set_event_id("order-event-1");
  order.set_type("yilian.events.v1.OrderPlaced");
  order.mutable_source()->set_hospital("xz-thc");
  order.mutable_source()->set_protocol(ev::PROTOCOL_HL7V2_MLLP);
  auto* o = order.mutable_order_placed();
  o->set_control(ev::ORDER_CONTROL_NEW);
  o->set_placer_order("XZ-ORD-1");
  o->mutable_catalogue_code()->set_code("CT-HEAD-PLAIN");
  o->set_equipment_id("zs-ct-1");
  REQUIRE(bus::publish_sync(*e->bus, bus::message{.topic = "yilian.patient.v1", .key = "p1",
                                                  .value = order.SerializeAsString()}));
  const std::string booking_id = stable_id("bk-", "order\nxz-thc\nXZ-ORD-1");
  REQUIRE(eventually([&] {
    return e->bookings->read([&](const booking::ledger& l) { return l.find(booking_id) != nullptr; });
  }));
  e->bookings->read([&](const booking::ledger& l) {
    const auto* b = l.find(booking_id);
    CHECK(b->st == ev::BOOKING_STATE_BOOKED);
    CHECK(b->equipment_id == "zs-ct-1");
    CHECK(b->slot.start == sh(2025, 10, 10, 8));
    CHECK(b->requesting_hospital == "xz-thc");
    CHECK(b->placer_order == "XZ-ORD-1");
    return 0;
  });
  f.stop();
}
