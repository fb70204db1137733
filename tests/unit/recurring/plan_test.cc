// Care-plan period math (engine/workflows/recurring/plan.h) and the fold of
// the care-plan topic (plans.h): month ends clamped without drift, leap
// years, every N, until (inclusive of a period starting on it), lead days,
// local midnight in Asia/Shanghai and across daylight-saving changes in
// America/New_York, and the view's first-occurrence-wins rule.
//
// Dates: America/New_York springs forward on Sunday 2025-03-09 (02:00 EST ->
// 03:00 EDT) and falls back on Sunday 2025-11-02. 2024 and 2028 are leap
// years; 2100 is not.
#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <vector>

#include "engine/core/time_zone.h"
#include "engine/workflows/recurring/plan.h"
#include "engine/workflows/recurring/plans.h"

using namespace yilian;
using namespace yilian::workflows::recurring;
using namespace std::chrono_literals;

namespace {

seconds utc(int y, int mo, int d, int h = 0, int mi = 0) {
  return seconds(std::chrono::seconds(days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60));
}
seconds sh(int y, int mo, int d, int h = 0, int mi = 0) { return utc(y, mo, d, h, mi) - 8h; }

time_zone shanghai() {
  auto z = time_zone::load("Asia/Shanghai");
  REQUIRE(z);
  return *z;
}

rule monthly(civil_date first, std::uint32_t every = 1) {
  return rule{.interval = ev::CARE_PLAN_INTERVAL_MONTHLY, .every = every, .first = first};
}

std::vector<std::string> dates(const rule& r, std::uint32_t n) {
  std::vector<std::string> out;
  for (std::uint32_t k = 0; k < n; ++k) out.push_back(date_text(period_date(r, k)));
  return out;
}

google::protobuf::Timestamp ts(seconds t) {
  google::protobuf::Timestamp out;
  out.set_seconds(t.time_since_epoch().count());
  return out;
}

}  // namespace

TEST_CASE("monthly periods fall on the same day of month, the last day when the month is shorter", "[unit]") {
  SECTION("from 31 January in a common year") {
    CHECK(dates(monthly({2025, 1, 31}), 7) == std::vector<std::string>{"2025-01-31", "2025-02-28", "2025-03-31",
                                                                        "2025-04-30", "2025-05-31", "2025-06-30",
                                                                        "2025-07-31"});
  }
  SECTION("from 31 January in a leap year") {
    CHECK(dates(monthly({2024, 1, 31}), 3) == std::vector<std::string>{"2024-01-31", "2024-02-29", "2024-03-31"});
  }
  SECTION("from the 30th: February clamps, March is the 30th again") {
    CHECK(dates(monthly({2025, 1, 30}), 3) == std::vector<std::string>{"2025-01-30", "2025-02-28", "2025-03-30"});
  }
  SECTION("no drift after many short months: computed from the start each time") {
    const auto r = monthly({2025, 1, 31});
    CHECK(date_text(period_date(r, 13)) == "2026-02-28");
    CHECK(date_text(period_date(r, 14)) == "2026-03-31");
    CHECK(date_text(period_date(r, 37)) == "2028-02-29");
    CHECK(date_text(period_date(r, 1200)) == "2125-01-31");
  }
  SECTION("across a year end") {
    CHECK(dates(monthly({2025, 11, 15}), 3) == std::vector<std::string>{"2025-11-15", "2025-12-15", "2026-01-15"});
  }
}

TEST_CASE("every N months, quarters and years step from the first date", "[unit]") {
  CHECK(dates(monthly({2025, 1, 31}, 2), 4) ==
        std::vector<std::string>{"2025-01-31", "2025-03-31", "2025-05-31", "2025-07-31"});
  CHECK(dates(monthly({2025, 8, 31}, 6), 3) == std::vector<std::string>{"2025-08-31", "2026-02-28", "2026-08-31"});
  const rule quarterly{.interval = ev::CARE_PLAN_INTERVAL_QUARTERLY, .every = 1, .first = {2023, 11, 30}};
  CHECK(dates(quarterly, 5) ==
        std::vector<std::string>{"2023-11-30", "2024-02-29", "2024-05-30", "2024-08-30", "2024-11-30"});
  const rule half_yearly{.interval = ev::CARE_PLAN_INTERVAL_QUARTERLY, .every = 2, .first = {2025, 5, 31}};
  CHECK(dates(half_yearly, 3) == std::vector<std::string>{"2025-05-31", "2025-11-30", "2026-05-31"});
}

TEST_CASE("yearly periods from 29 February fall on 28 February in common years", "[unit]") {
  const rule yearly{.interval = ev::CARE_PLAN_INTERVAL_YEARLY, .every = 1, .first = {2024, 2, 29}};
  CHECK(dates(yearly, 5) ==
        std::vector<std::string>{"2024-02-29", "2025-02-28", "2026-02-28", "2027-02-28", "2028-02-29"});
  const rule centuries{.interval = ev::CARE_PLAN_INTERVAL_YEARLY, .every = 4, .first = {2096, 2, 29}};
  CHECK(dates(centuries, 3) == std::vector<std::string>{"2096-02-29", "2100-02-28", "2104-02-29"});
}

TEST_CASE("weekly periods step 7·N days across month and year ends", "[unit]") {
  const rule weekly{.interval = ev::CARE_PLAN_INTERVAL_WEEKLY, .every = 1, .first = {2025, 12, 24}};
  CHECK(dates(weekly, 3) == std::vector<std::string>{"2025-12-24", "2025-12-31", "2026-01-07"});
  const rule fortnightly{.interval = ev::CARE_PLAN_INTERVAL_WEEKLY, .every = 2, .first = {2024, 2, 15}};
  CHECK(dates(fortnightly, 3) == std::vector<std::string>{"2024-02-15", "2024-02-29", "2024-03-14"});
  const rule every_zero{.interval = ev::CARE_PLAN_INTERVAL_WEEKLY, .every = 0, .first = {2025, 1, 1}};
  CHECK(dates(every_zero, 2) == std::vector<std::string>{"2025-01-01", "2025-01-08"});
}

TEST_CASE("periods start at local midnight of their date and end where the next one starts", "[unit]") {
  const auto zone = shanghai();
  const auto p = period_at(monthly({2025, 1, 31}), 1, zone);
  REQUIRE(p);
  CHECK(p->number == 1);
  CHECK(date_text(p->date) == "2025-02-28");
  CHECK(p->start == sh(2025, 2, 28));
  CHECK(p->start == utc(2025, 2, 27, 16));
  CHECK(p->end == sh(2025, 3, 31));
  CHECK(p->due == sh(2025, 2, 21));
  CHECK(local_date(sh(2025, 2, 28, 0, 0), zone) == civil_date{2025, 2, 28});
  CHECK(local_date(sh(2025, 2, 27, 23, 59), zone) == civil_date{2025, 2, 27});
}

TEST_CASE("daylight saving changes move the instant of local midnight, never the date", "[unit]") {
  auto ny = time_zone::load("America/New_York");
  REQUIRE(ny);
  const auto r = monthly({2025, 1, 10});
  // EST (UTC-5) in January and December, EDT (UTC-4) from 9 March to 2 November.
  const std::vector<std::pair<int, int>> month_and_utc_hour{{1, 5}, {2, 5}, {3, 4}, {4, 4}, {10, 4}, {11, 5}, {12, 5}};
  for (const auto& [month, hour] : month_and_utc_hour) {
    const auto p = period_at(r, static_cast<std::uint32_t>(month - 1), *ny);
    REQUIRE(p);
    INFO("month " << month);
    CHECK(p->date == civil_date{2025, month, 10});
    CHECK(p->start == utc(2025, month, 10, hour));
    CHECK(local_date(p->start, *ny) == p->date);
  }
  // A weekly plan across the spring-forward Sunday: 7 local days, 167 hours.
  const rule weekly{.interval = ev::CARE_PLAN_INTERVAL_WEEKLY, .every = 1, .first = {2025, 3, 5}};
  const auto before = period_at(weekly, 0, *ny);
  REQUIRE(before);
  CHECK(before->end - before->start == 167h);
  CHECK(date_text(local_date(before->end, *ny)) == "2025-03-12");
  // The lead time counts whole days back from local midnight.
  const rule lead{.interval = ev::CARE_PLAN_INTERVAL_WEEKLY, .every = 1, .first = {2025, 3, 12}, .lead_days = 7};
  const auto p = period_at(lead, 0, *ny);
  REQUIRE(p);
  CHECK(p->due == p->start - 7 * 24h);
}

TEST_CASE("no period starts after the until date; one starting on it is the last", "[unit]") {
  const auto zone = shanghai();
  auto r = monthly({2025, 1, 15});
  r.until = sh(2025, 12, 15);
  CHECK(period_count(r, zone) == 12u);
  CHECK(period_at(r, 11, zone).has_value());
  CHECK_FALSE(period_at(r, 12, zone).has_value());
  // The last period is as long as the others.
  CHECK(period_at(r, 11, zone)->end == sh(2026, 1, 15));
  r.until = sh(2025, 12, 14, 23, 59);
  CHECK(period_count(r, zone) == 11u);
  r.until = sh(2025, 1, 14);
  CHECK(period_count(r, zone) == 0u);
  r.until.reset();
  CHECK_FALSE(period_count(r, zone).has_value());
  CHECK_FALSE(period_at(r, max_periods, zone).has_value());
}

TEST_CASE("a period is due from lead_days before its start; due_periods lists them in order", "[unit]") {
  const auto zone = shanghai();
  rule r = monthly({2025, 3, 10});
  r.lead_days = 7;
  r.until = sh(2025, 6, 10);
  CHECK(due_periods(r, sh(2025, 3, 2, 23, 59), zone).empty());
  auto due = due_periods(r, sh(2025, 3, 3), zone);
  REQUIRE(due.size() == 1);
  CHECK(due[0].number == 0);
  due = due_periods(r, sh(2025, 5, 3), zone);
  REQUIRE(due.size() == 3);
  CHECK(due[2].number == 2);
  CHECK(due_periods(r, sh(2025, 5, 3), zone, 2).size() == 1);
  CHECK(due_periods(r, sh(2025, 5, 3), zone, 0, 2).size() == 2);
  // After until every period is due, and no more.
  CHECK(due_periods(r, sh(2030, 1, 1), zone).size() == 4);
  // A weekly plan booked ten days ahead has two periods due at once.
  const rule weekly{.interval = ev::CARE_PLAN_INTERVAL_WEEKLY, .every = 1, .first = {2025, 3, 10}, .lead_days = 10};
  CHECK(due_periods(weekly, sh(2025, 3, 7), zone).size() == 2);
}

TEST_CASE("the rule of a CarePlanChanged takes the start's local date and fills the defaults", "[unit]") {
  const auto zone = shanghai();
  ev::CarePlanChanged c;
  c.set_care_plan_id("cp-1");
  c.set_interval(ev::CARE_PLAN_INTERVAL_MONTHLY);
  // 23:30 in Shanghai on the 31st is still the 31st there (15:30 UTC).
  *c.mutable_starts_at() = ts(sh(2025, 1, 31, 23, 30));
  *c.mutable_until() = ts(sh(2025, 12, 31));
  auto r = rule_of(c, zone);
  REQUIRE(r);
  CHECK(r->first == civil_date{2025, 1, 31});
  CHECK(r->every == 1);
  CHECK(r->lead_days == default_lead_days);
  CHECK(r->until == sh(2025, 12, 31));
  c.set_every(3);
  c.set_lead_days(2);
  r = rule_of(c, zone);
  REQUIRE(r);
  CHECK(r->every == 3);
  CHECK(r->lead_days == 2);
  c.set_interval(ev::CARE_PLAN_INTERVAL_UNSPECIFIED);
  CHECK(rule_of(c, zone).error().code == errc::validation_failed);
  c.set_interval(ev::CARE_PLAN_INTERVAL_WEEKLY);
  c.clear_starts_at();
  CHECK(rule_of(c, zone).error().where == "starts_at");
}

TEST_CASE("dates parse strictly and print as YYYY-MM-DD", "[unit]") {
  CHECK(parse_date("2024-02-29") == civil_date{2024, 2, 29});
  for (const auto* bad : {"2025-02-29", "2025-13-01", "2025-00-10", "25-01-01", "2025/01/01", "2025-01-1x", ""}) {
    INFO(bad);
    CHECK_FALSE(parse_date(bad));
  }
  CHECK(parse_date("2025-02-29").error().message.find("no day 29") != std::string::npos);
  CHECK(date_text(civil_date{987, 3, 4}) == "0987-03-04");
  CHECK(interval_from_name("Monthly") == ev::CARE_PLAN_INTERVAL_MONTHLY);
  CHECK(interval_from_name("daily") == ev::CARE_PLAN_INTERVAL_UNSPECIFIED);
  CHECK(interval_name(ev::CARE_PLAN_INTERVAL_QUARTERLY) == "quarterly");
}

namespace {

ev::Envelope changed(const std::string& id, ev::CarePlanStatus status, seconds at = sh(2025, 1, 1)) {
  ev::Envelope e;
  e.set_event_id("careplan-changed:" + id + ":" + std::string(status_name(status)));
  *e.mutable_occurred_at() = ts(at);
  auto* c = e.mutable_care_plan_changed();
  c->set_care_plan_id(id);
  c->set_status(status);
  c->set_clinic_hospital("dc-chc");
  c->set_exam_code("CT-CHEST-PLAIN");
  c->set_interval(ev::CARE_PLAN_INTERVAL_MONTHLY);
  *c->mutable_starts_at() = ts(sh(2025, 1, 15));
  *c->mutable_until() = ts(sh(2025, 3, 15));
  c->set_actor("dc-chc-user");
  auto* id0 = e.mutable_subject()->add_identifiers();
  id0->set_system("urn:yilian:id:dc-chc:mrn");
  id0->set_value("M1");
  return e;
}

ev::Envelope occurred(const std::string& id, std::uint32_t period, std::string booking) {
  ev::Envelope e;
  e.set_event_id(occurrence_event_id(id, period));
  auto* o = e.mutable_care_plan_occurrence();
  o->set_care_plan_id(id);
  o->set_period(period);
  o->set_booking_id(std::move(booking));
  return e;
}

}  // namespace

TEST_CASE("the plan book keeps the first occurrence of a period and only moves a plan away from ACTIVE", "[unit]") {
  plan_book book(shanghai());
  REQUIRE(book.apply(changed("cp-1", ev::CARE_PLAN_STATUS_ACTIVE)));
  CHECK_FALSE(book.apply(changed("cp-1", ev::CARE_PLAN_STATUS_ACTIVE)));  // a repeat
  const auto* p = book.find("cp-1");
  REQUIRE(p != nullptr);
  CHECK(p->clinic == "dc-chc");
  CHECK(p->subject.identifiers(0).value() == "M1");
  CHECK(p->schedule.first == civil_date{2025, 1, 15});

  SECTION("occurrences: the first in the log wins, the fired prefix follows") {
    CHECK(book.apply(occurred("cp-1", 1, "bk-b")));
    CHECK(p->fired_prefix == 0);
    CHECK(book.apply(occurred("cp-1", 0, "bk-a")));
    CHECK(p->fired_prefix == 2);
    CHECK_FALSE(book.apply(occurred("cp-1", 0, "bk-other")));
    CHECK(p->occurrences.at(0).booking_id == "bk-a");
    CHECK_FALSE(book.apply(occurred("cp-unknown", 0, "bk-x")));
  }
  SECTION("cancelled stays cancelled") {
    auto cancel = changed("cp-1", ev::CARE_PLAN_STATUS_CANCELLED, sh(2025, 2, 1));
    cancel.mutable_care_plan_changed()->set_reason_text("patient moved");
    CHECK(book.apply(cancel));
    CHECK(p->status == ev::CARE_PLAN_STATUS_CANCELLED);
    CHECK(p->cancel_reason == "patient moved");
    CHECK(p->updated_at == sh(2025, 2, 1));
    CHECK_FALSE(book.apply(changed("cp-1", ev::CARE_PLAN_STATUS_ACTIVE)));
    CHECK(p->status == ev::CARE_PLAN_STATUS_CANCELLED);
  }
  SECTION("ENDED once past until with every period fired") {
    CHECK(book.status_at(*p, sh(2025, 3, 20)) == ev::CARE_PLAN_STATUS_ACTIVE);  // periods unfired
    for (std::uint32_t k = 0; k < 3; ++k) book.apply(occurred("cp-1", k, "bk"));
    CHECK(book.status_at(*p, sh(2025, 3, 14)) == ev::CARE_PLAN_STATUS_ACTIVE);
    CHECK(book.status_at(*p, sh(2025, 3, 20)) == ev::CARE_PLAN_STATUS_ENDED);
  }
  SECTION("plans of a clinic, newest first") {
    REQUIRE(book.apply(changed("cp-2", ev::CARE_PLAN_STATUS_ACTIVE)));
    auto other = changed("cp-3", ev::CARE_PLAN_STATUS_ACTIVE);
    other.mutable_care_plan_changed()->set_clinic_hospital("nh-chc");
    REQUIRE(book.apply(other));
    const auto mine = book.of_clinic("dc-chc");
    REQUIRE(mine.size() == 2);
    CHECK(mine[0]->id == "cp-2");
    CHECK(book.of_clinic("").size() == 3);
  }
  SECTION("a plan without a computable rule is not taken") {
    auto broken = changed("cp-9", ev::CARE_PLAN_STATUS_ACTIVE);
    broken.mutable_care_plan_changed()->clear_starts_at();
    CHECK_FALSE(book.apply(broken));
    CHECK(book.find("cp-9") == nullptr);
  }
}

TEST_CASE("booking and command ids derive from the plan and the period", "[unit]") {
  CHECK(booking_id_for("cp-1", 3) == booking_id_for("cp-1", 3));
  CHECK(booking_id_for("cp-1", 3) != booking_id_for("cp-1", 4));
  CHECK(booking_id_for("cp-1", 3).starts_with("bk-"));
  CHECK(command_id_for("cp-1", 3, 0) == "careplan:cp-1:3");
  CHECK(command_id_for("cp-1", 3, 2) == "careplan:cp-1:3:2");
  CHECK(occurrence_event_id("cp-1", 3) == "careplan-occurrence:cp-1:3");
}
