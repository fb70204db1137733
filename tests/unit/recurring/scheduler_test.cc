// The recurring-exam scheduler (engine/workflows/recurring/scheduler.h) with
// the real booking service on a real embedded log in a temporary directory,
// the example consortium and a clock the test steps a day at a time:
//
//  - a monthly plan over a simulated year books exactly 12 exams, one per
//    period, with the engine stopped halfway and started again on the same
//    log (new bus, booking service and scheduler);
//  - a crash between the booking decision and the occurrence (the
//    before_occurrence hook refusing, then the engine stopped) refires the
//    period without a second booking;
//  - a booking command made durable just before a crash is decided once: the
//    refire gets its decision back;
//  - a no-show of a care-plan booking reaches the clinic's outbound queue,
//    as does an occurrence that found no slot;
//  - the preferred hospital's machines come first; a period nobody could
//    fire in time is reported missed.
//
// Dates: the example consortium's zs-ct-1 (zs-tertiary, TERTIARY) works
// Monday-Friday 08:00-12:00 and 14:00-17:30 and Saturday 08:00-12:00 in
// Asia/Shanghai; qh-ct-1 (qh-county, SECONDARY) works weekdays. 2026-02-15 and
// 2026-03-15 are Sundays.
#include <catch2/catch.hpp>

#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "engine/bus/embedded_log.h"
#include "engine/bus/publish.h"
#include "engine/workflows/booking/notifier.h"
#include "engine/workflows/booking/service.h"
#include "engine/workflows/recurring/scheduler.h"
#include "tests/unit/recurring/careplan_test_support.h"
#include "tests/unit/workflows/booking_test_support.h"

using namespace yilian;
using namespace yilian::workflows;
using namespace yilian::workflows::booking::test;
using namespace yilian::workflows::recurring::test;
using recurring::scheduler;
using steady = std::chrono::steady_clock;

namespace {

struct plan_spec {
  std::string id = "cp-test";
  std::string clinic = "dc-chc";
  std::string exam = "CT-CHEST-PLAIN";
  ev::CarePlanInterval interval = ev::CARE_PLAN_INTERVAL_MONTHLY;
  booking::seconds starts{};
  booking::seconds until{};
  std::string hospital;
  config::v1::Tier tier = config::v1::TIER_UNSPECIFIED;
  std::uint32_t lead_days = 7;
};

// Publishes a CarePlanChanged ACTIVE as the REST API does, and waits until
// the scheduler's view has it.
void create_plan(engine& e, const plan_spec& p, booking::seconds now) {
  ev::Envelope env;
  env.set_event_id("careplan-changed:" + p.id + ":created");
  env.set_type("yilian.events.v1.CarePlanChanged");
  env.set_schema_version(1);
  *env.mutable_occurred_at() = ts(now);
  env.mutable_source()->set_hospital(p.clinic);
  env.mutable_source()->set_protocol(ev::PROTOCOL_API);
  env.mutable_source()->set_principal(p.clinic + "-user");
  auto* id = env.mutable_subject()->add_identifiers();
  id->set_system("urn:yilian:id:dc-chc:mrn");
  id->set_value("DC0001");
  auto* c = env.mutable_care_plan_changed();
  c->set_care_plan_id(p.id);
  c->set_status(ev::CARE_PLAN_STATUS_ACTIVE);
  c->set_clinic_hospital(p.clinic);
  c->mutable_patient()->mutable_name()->set_hanzi("测试患者");
  c->mutable_patient()->set_birth_date("1958-03-02");
  c->set_exam_code(p.exam);
  c->set_interval(p.interval);
  c->set_every(1);
  *c->mutable_starts_at() = ts(p.starts);
  *c->mutable_until() = ts(p.until);
  c->set_preferred_tier(static_cast<std::uint32_t>(p.tier));
  c->set_preferred_hospital(p.hospital);
  c->set_lead_days(p.lead_days);
  c->set_actor(p.clinic + "-user");
  auto r = bus::publish_sync(*e.bus, bus::message{.topic = careplan_topic, .key = p.id, .value = env.SerializeAsString()});
  if (!r) FAIL(r.error().describe());
  REQUIRE(eventually([&] { return e.plans->read([&](const recurring::plan_book& b) { return b.find(p.id) != nullptr; }); }));
}

// Accepted BOOK decisions per booking id.
std::map<std::string, int> book_decisions(bus::bus& b) {
  std::map<std::string, int> out;
  for (const auto& l : read_topic(b, booking_topic)) {
    if (l.e.has_appointment_changed() && l.e.appointment_changed().action() == ev::BOOKING_ACTION_BOOK) {
      ++out[l.e.appointment_changed().appointment_id()];
    }
  }
  return out;
}

// BookingCommand records per booking id.
std::map<std::string, int> book_commands(bus::bus& b) {
  std::map<std::string, int> out;
  for (const auto& l : read_topic(b, booking_topic)) {
    if (l.e.has_booking_command()) ++out[l.e.booking_command().booking_id()];
  }
  return out;
}

// CarePlanOccurrence records of a plan, by period.
std::map<std::uint32_t, std::vector<ev::CarePlanOccurrence>> occurrences_on(bus::bus& b, const std::string& topic,
                                                                              const std::string& plan) {
  std::map<std::uint32_t, std::vector<ev::CarePlanOccurrence>> out;
  for (const auto& l : read_topic(b, topic)) {
    if (l.e.has_care_plan_occurrence() && l.e.care_plan_occurrence().care_plan_id() == plan) {
      out[l.e.care_plan_occurrence().period()].push_back(l.e.care_plan_occurrence());
    }
  }
  return out;
}

std::vector<std::string> period_booking_ids(const std::string& plan, std::uint32_t n) {
  std::vector<std::string> out;
  for (std::uint32_t k = 0; k < n; ++k) out.push_back(recurring::booking_id_for(plan, k));
  return out;
}

}  // namespace

TEST_CASE("a monthly plan books exactly one exam per period over a simulated year, across an engine restart",
          "[unit]") {
  temp_dir dir;
  test_clock clock(sh(2025, 10, 1, 7));
  const plan_spec spec{.id = "cp-year", .starts = sh(2025, 10, 15), .until = sh(2026, 9, 15), .hospital = "zs-tertiary"};
  std::uint64_t fired = 0;
  {
    auto e = start_engine(dir, clock);
    create_plan(*e, spec, clock.now());
    // Half a year, a day at a time.
    while (clock.now() < sh(2026, 4, 1, 7)) {
      pass(*e->plans);
      clock.advance(24h);
    }
    fired += e->plans->fired();
    CHECK(e->plans->read([](const recurring::plan_book& b) { return b.find("cp-year")->occurrences.size(); }) == 6u);  // October to March
    e->stop();  // the engine goes down: scheduler, booking service, bus
  }
  {
    auto e = start_engine(dir, clock);
    // The new view knows what the old engine fired.
    CHECK(e->plans->read([](const recurring::plan_book& b) { return b.find("cp-year")->fired_prefix; }) == 6u);
    while (clock.now() < sh(2026, 10, 1, 7)) {
      pass(*e->plans);
      clock.advance(24h);
    }
    pass(*e->plans);
    fired += e->plans->fired();

    CHECK(fired == 12u);
    const auto zone = shanghai();
    e->plans->read([&](const recurring::plan_book& b) {
      const auto* plan = b.find("cp-year");
      REQUIRE(plan != nullptr);
      REQUIRE(plan->occurrences.size() == 12);
      for (const auto& [k, o] : plan->occurrences) {
        const auto p = recurring::period_at(plan->schedule, k, zone);
        REQUIRE(p);
        INFO("period " << k << " " << recurring::date_text(p->date));
        CHECK(p->date.day == 15);
        CHECK(o.failure.empty());
        CHECK(o.booking_id == recurring::booking_id_for("cp-year", k));
        CHECK(o.equipment_id == "zs-ct-1");
        CHECK(o.start >= p->start);
        CHECK(o.start < p->end);
      }
      return 0;
    });
    // Sundays have no CT: the exam is on Monday the 16th.
    e->plans->read([&](const recurring::plan_book& b) {
      const auto& occ = b.find("cp-year")->occurrences;
      CHECK(occ.at(0).start == sh(2025, 10, 15, 8));
      CHECK(occ.at(4).start == sh(2026, 2, 16, 8));
      CHECK(occ.at(5).start == sh(2026, 3, 16, 8));
      return 0;
    });
    e->bookings->read([&](const booking::ledger& l) {
      for (const auto& id : period_booking_ids("cp-year", 12)) {
        const auto* bk = l.find(id);
        REQUIRE(bk != nullptr);
        CHECK(bk->st == ev::BOOKING_STATE_BOOKED);
        CHECK(bk->requesting_hospital == "dc-chc");
        CHECK(bk->owner == "zs-tertiary");
        CHECK(bk->patient.name().hanzi() == "测试患者");
        REQUIRE(bk->subject.identifiers_size() == 1);
        CHECK(bk->subject.identifiers(0).value() == "DC0001");
        CHECK(bk->booked_by == "careplan:cp-year");
      }
      return 0;
    });
    // On the log: one BOOK decision per period, one occurrence per period on
    // the care-plan topic and one on the clinic's outbound queue.
    const auto decisions = book_decisions(*e->bus);
    CHECK(decisions.size() == 12);
    for (const auto& id : period_booking_ids("cp-year", 12)) CHECK(decisions.count(id) == 1);
    for (const auto& [id, n] : decisions) CHECK(n == 1);
    const auto on_plan_topic = occurrences_on(*e->bus, careplan_topic, "cp-year");
    CHECK(on_plan_topic.size() == 12);
    for (const auto& [k, list] : on_plan_topic) CHECK(list.size() == 1);
    std::size_t to_clinic = 0;
    for (const auto& l : read_topic(*e->bus, outbound_topic)) {
      if (l.e.has_care_plan_occurrence()) {
        CHECK(l.key == "dc-chc");
        ++to_clinic;
      }
    }
    CHECK(to_clinic == 12);
  }
}

TEST_CASE("a crash between the booking decision and the occurrence refires the period without a second booking",
          "[unit]") {
  temp_dir dir;
  test_clock clock(sh(2025, 10, 6, 7));
  const plan_spec spec{.id = "cp-crash", .starts = sh(2025, 10, 15), .until = sh(2026, 3, 15), .hospital = "zs-tertiary"};
  const std::string booking_id = recurring::booking_id_for("cp-crash", 1);

  SECTION("the same engine fires it again on its next pass") {
    std::atomic<int> refused{0};
    auto e = start_engine(dir, clock, {.before_occurrence = [&](const ev::CarePlanOccurrence& o) {
                                          return o.period() != 1 || refused.fetch_add(1) >= 2;
                                        }});
    create_plan(*e, spec, clock.now());
    clock.set(sh(2025, 11, 10, 7));  // periods 0 and 1 due
    pass(*e->plans);                  // waits until the hook let period 1 through (third try)
    CHECK(refused.load() == 3);
    CHECK(book_decisions(*e->bus)[booking_id] == 1);
    CHECK(book_commands(*e->bus)[booking_id] == 1);  // the refires found the booking: no new command
    CHECK(occurrences_on(*e->bus, careplan_topic, "cp-crash")[1].size() == 1);
  }

  SECTION("a new engine on the same log fires it") {
    std::promise<ev::CarePlanOccurrence> first;
    std::atomic<bool> told{false};
    {
      auto e = start_engine(dir, clock, {.before_occurrence = [&](const ev::CarePlanOccurrence& o) {
                                            if (o.period() != 1) return true;
                                            if (!told.exchange(true)) first.set_value(o);
                                            return false;  // "crash": never published by this engine
                                          }});
      create_plan(*e, spec, clock.now());
      clock.set(sh(2025, 11, 10, 7));
      const auto ticket = e->plans->poke();
      auto f = first.get_future();
      REQUIRE(f.wait_for(20s) == std::future_status::ready);
      const auto o = f.get();
      CHECK(o.booking_id() == booking_id);
      CHECK(o.failure().empty());
      CHECK_FALSE(e->plans->pass_done(ticket));
      CHECK(e->plans->read([](const recurring::plan_book& b) { return b.find("cp-crash")->fired(1); }) == false);
      e->stop();
    }
    auto e = start_engine(dir, clock);
    pass(*e->plans);
    CHECK(book_decisions(*e->bus)[booking_id] == 1);
    CHECK(book_commands(*e->bus)[booking_id] == 1);
    const auto occ = occurrences_on(*e->bus, careplan_topic, "cp-crash");
    REQUIRE(occ.size() == 2);
    REQUIRE(occ.at(1).size() == 1);
    CHECK(occ.at(1)[0].booking_id() == booking_id);
    CHECK(occ.at(1)[0].command_id() == "careplan:cp-crash:1");
    CHECK(occ.at(1)[0].equipment_id() == "zs-ct-1");
    CHECK(occ.at(1)[0].failure().empty());
  }
}

TEST_CASE("a booking command made durable just before a crash is decided once, and the refire gets its decision",
          "[unit]") {
  temp_dir dir;
  test_clock clock(sh(2025, 10, 9, 7));
  const plan_spec spec{.id = "cp-durable", .starts = sh(2025, 10, 15), .until = sh(2025, 12, 15), .hospital = "zs-tertiary"};
  const std::string booking_id = recurring::booking_id_for("cp-durable", 0);
  // The old engine got as far as the command: on the log, never decided (no
  // booking service was running). Its slot is not the earliest one.
  {
    auto e = start_engine(dir, clock, {.scheduler = false});
    e->bookings->stop();
    auto command = make_command(cmd{.booking = booking_id, .start = sh(2025, 10, 15, 9), .exam = "CT-CHEST-PLAIN",
                                .id = "careplan:cp-durable:0"});
    auto r = bus::publish_sync(*e->bus, bus::message{.topic = booking_topic, .key = "zs-ct-1",
                                                     .value = command.SerializeAsString(),
                                                     .headers = booking::record_headers(command)});
    if (!r) FAIL(r.error().describe());
    e->stop();
  }
  auto e = start_engine(dir, clock);
  create_plan(*e, spec, clock.now());
  pass(*e->plans);
  CHECK(book_decisions(*e->bus)[booking_id] == 1);
  const auto occ = occurrences_on(*e->bus, careplan_topic, "cp-durable");
  REQUIRE(occ.count(0) == 1);
  REQUIRE(occ.at(0).size() == 1);
  CHECK(occ.at(0)[0].failure().empty());
  CHECK(booking::to_seconds(occ.at(0)[0].start()) == sh(2025, 10, 15, 9));  // the first command's slot
  e->bookings->read([&](const booking::ledger& l) {
    const auto* b = l.find(booking_id);
    REQUIRE(b != nullptr);
    CHECK(b->slot.start == sh(2025, 10, 15, 9));
    return 0;
  });
}

TEST_CASE("a no-show of a care-plan booking, and a period without a slot, reach the clinic's outbound queue",
          "[unit]") {
  temp_dir dir;
  test_clock clock(sh(2025, 10, 9, 7));
  auto e = start_engine(dir, clock, {.notifier = true});
  // Weekly abdominal CT: only zs-ct-1 does it. Its owner closes the machine
  // for the whole second week, so period 1 finds no slot.
  const plan_spec spec{.id = "cp-noshow", .exam = "CT-ABD-ENH", .interval = ev::CARE_PLAN_INTERVAL_WEEKLY,
                       .starts = sh(2025, 10, 15), .until = sh(2025, 10, 22), .lead_days = 2};
  auto block = make_command(cmd{.act = ev::BOOKING_ACTION_BLOCK, .booking = "blk-week2", .start = sh(2025, 10, 22),
                                .actor_hospital = "zs-tertiary", .end = sh(2025, 10, 29)});
  std::promise<booking::decision> blocked;
  e->bookings->wait(block.booking_command().command_id(), [&](booking::decision d) { blocked.set_value(std::move(d)); });
  e->bookings->send(block, [](result<void>) {});
  auto bf = blocked.get_future();
  REQUIRE(bf.wait_for(20s) == std::future_status::ready);
  REQUIRE_FALSE(bf.get().refused);

  create_plan(*e, spec, clock.now());
  clock.set(sh(2025, 10, 13, 7));  // period 0 due (lead 2 days)
  pass(*e->plans);
  const std::string booking_id = recurring::booking_id_for("cp-noshow", 0);
  REQUIRE(e->bookings->read([&](const booking::ledger& l) { return l.find(booking_id) != nullptr; }));
  const auto slot = e->bookings->read([&](const booking::ledger& l) { return l.find(booking_id)->slot.start; });
  CHECK(slot == sh(2025, 10, 15, 8));

  // The patient does not come; the owner's RIS says so after the slot.
  clock.set(sh(2025, 10, 15, 12));
  auto no_show = make_command(cmd{.act = ev::BOOKING_ACTION_NO_SHOW, .booking = booking_id, .exam = "",
                                  .actor_hospital = "zs-tertiary"});
  std::promise<booking::decision> decided;
  e->bookings->wait(no_show.booking_command().command_id(), [&](booking::decision d) { decided.set_value(std::move(d)); });
  e->bookings->send(no_show, [](result<void>) {});
  auto df = decided.get_future();
  REQUIRE(df.wait_for(20s) == std::future_status::ready);
  const auto d = df.get();
  INFO((d.refused ? d.refused->message : std::string()));
  REQUIRE_FALSE(d.refused);

  clock.set(sh(2025, 10, 20, 7));  // period 1 due: the week is closed
  pass(*e->plans);

  bool booked_told = false, no_show_told = false, no_slot_told = false, booked_occurrence_told = false;
  REQUIRE(eventually([&] {
    for (const auto& l : read_topic(*e->bus, outbound_topic)) {
      if (l.key != "dc-chc") continue;
      if (l.e.has_appointment_changed() && l.e.appointment_changed().appointment_id() == booking_id) {
        booked_told = booked_told || l.e.appointment_changed().state() == ev::BOOKING_STATE_BOOKED;
        no_show_told = no_show_told || l.e.appointment_changed().state() == ev::BOOKING_STATE_NO_SHOW;
      }
      if (l.e.has_care_plan_occurrence() && l.e.care_plan_occurrence().care_plan_id() == "cp-noshow") {
        booked_occurrence_told = booked_occurrence_told || (l.e.care_plan_occurrence().period() == 0 &&
                                                            l.e.care_plan_occurrence().booking_id() == booking_id);
        no_slot_told = no_slot_told || (l.e.care_plan_occurrence().period() == 1 &&
                                        l.e.care_plan_occurrence().failure() == "no_slot" &&
                                        l.e.care_plan_occurrence().booking_id().empty());
      }
    }
    return booked_told && no_show_told && no_slot_told && booked_occurrence_told;
  }));
  CHECK(booked_told);
  CHECK(no_show_told);
  CHECK(booked_occurrence_told);
  CHECK(no_slot_told);
  // The view says the period was booked and the booking is now a no-show.
  CHECK(e->plans->read([](const recurring::plan_book& b) { return b.find("cp-noshow")->occurrences.size(); }) == 2u);
  CHECK(e->bookings->read([&](const booking::ledger& l) { return l.find(booking_id)->st; }) == ev::BOOKING_STATE_NO_SHOW);
}

TEST_CASE("the preferred hospital's machines come first, then the tier's, then any; a period past its end is missed",
          "[unit]") {
  temp_dir dir;
  test_clock clock(sh(2025, 10, 9, 7));
  auto e = start_engine(dir, clock);
  create_plan(*e, plan_spec{.id = "cp-county", .exam = "CT-HEAD-PLAIN", .starts = sh(2025, 10, 15),
                            .until = sh(2025, 10, 15), .hospital = "qh-county"},
              clock.now());
  create_plan(*e, plan_spec{.id = "cp-tertiary", .exam = "CT-HEAD-PLAIN", .starts = sh(2025, 10, 15),
                            .until = sh(2025, 10, 15), .tier = config::v1::TIER_TERTIARY},
              clock.now());
  // Only the tertiary hospital does MR: a county preference falls through to any.
  create_plan(*e, plan_spec{.id = "cp-mr", .exam = "MR-HEAD-PLAIN", .starts = sh(2025, 10, 15),
                            .until = sh(2025, 10, 15), .tier = config::v1::TIER_SECONDARY},
              clock.now());
  // Started in the past and never fired while its only period ran.
  create_plan(*e, plan_spec{.id = "cp-late", .starts = sh(2025, 9, 1), .until = sh(2025, 9, 1)}, clock.now());
  pass(*e->plans);
  e->plans->read([](const recurring::plan_book& b) {
    CHECK(b.find("cp-county")->occurrences.at(0).equipment_id == "qh-ct-1");
    CHECK(b.find("cp-tertiary")->occurrences.at(0).equipment_id == "zs-ct-1");
    CHECK(b.find("cp-mr")->occurrences.at(0).equipment_id == "zs-mr-1");
    CHECK(b.find("cp-late")->occurrences.at(0).failure == "missed");
    CHECK(b.find("cp-late")->occurrences.at(0).booking_id.empty());
    return 0;
  });
  CHECK(e->plans->fired() == 4u);
}
