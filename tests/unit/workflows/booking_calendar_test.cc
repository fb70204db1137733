// Equipment calendars (engine/workflows/booking/calendar.h) from hand-built
// config::v1::Equipment: weekly windows in the machine's zone (several a day,
// days without any, "24:00"), whole windows, window_containing, blocked
// periods, the consortium's daily share, local days around midnight, and a
// zone with daylight saving time on its change days.
//
// Dates: 2026-03-09 is a Monday. Asia/Shanghai is UTC+8 all year. Europe/Berlin
// springs forward on Sunday 2026-03-29 (02:00 CET -> 03:00 CEST) and falls back
// on Sunday 2026-10-25 (03:00 CEST -> 02:00 CET).
#include <catch2/catch.hpp>

#include <chrono>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "engine/core/time_zone.h"
#include "engine/workflows/booking/calendar.h"

using namespace yilian;
using namespace yilian::workflows::booking;
namespace cfg = yilian::config::v1;
using namespace std::chrono_literals;

namespace {

// An instant from a UTC wall clock.
seconds utc(int y, int mo, int d, int h = 0, int mi = 0) {
  return seconds(std::chrono::seconds(days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60));
}
// An instant from a Shanghai wall clock (UTC+8, no DST).
seconds sh(int y, int mo, int d, int h = 0, int mi = 0) { return utc(y, mo, d, h, mi) - 8h; }

void add_window(cfg::Equipment& e, std::initializer_list<cfg::Weekday> days, std::string start, std::string end) {
  auto* w = e.mutable_schedule()->add_days();
  for (const auto d : days) w->add_weekdays(d);
  w->set_start(std::move(start));
  w->set_end(std::move(end));
}

void add_exam(cfg::Equipment& e, std::string code, std::uint32_t minutes) {
  auto* x = e.add_exam_types();
  x->set_code(code);
  x->set_name(code + " name");
  x->set_duration_minutes(minutes);
}

void add_blocked(cfg::Equipment& e, std::string start, std::string end, std::string reason) {
  auto* b = e.add_blocked();
  b->set_start(std::move(start));
  b->set_end(std::move(end));
  b->set_reason(std::move(reason));
}

// Mon-Fri 08:00-12:00 and 14:00-17:30, Wednesday also 18:00-21:00 (declared
// first, to check the sorting), Saturday 20:00-24:00, Sunday closed.
cfg::Equipment shanghai_ct() {
  cfg::Equipment e;
  e.set_id("t-ct");
  e.set_hospital("h-own");
  e.set_modality(cfg::MODALITY_CT);
  e.mutable_schedule()->set_time_zone("Asia/Shanghai");
  add_window(e, {cfg::WEEKDAY_WEDNESDAY}, "18:00", "21:00");
  add_window(e, {cfg::WEEKDAY_MONDAY, cfg::WEEKDAY_TUESDAY, cfg::WEEKDAY_WEDNESDAY, cfg::WEEKDAY_THURSDAY,
                 cfg::WEEKDAY_FRIDAY},
             "14:00", "17:30");
  add_window(e, {cfg::WEEKDAY_MONDAY, cfg::WEEKDAY_TUESDAY, cfg::WEEKDAY_WEDNESDAY, cfg::WEEKDAY_THURSDAY,
                 cfg::WEEKDAY_FRIDAY},
             "08:00", "12:00");
  add_window(e, {cfg::WEEKDAY_SATURDAY}, "20:00", "24:00");
  add_exam(e, "CT-HEAD", 15);
  add_exam(e, "CT-ABD", 30);
  add_blocked(e, "2026-03-10T09:00", "2026-03-10T10:00", "球管维护");
  add_blocked(e, "2026-03-03T08:00", "2026-03-03T12:00", "earlier, listed second");
  e.set_consortium_share_percent(30);
  return e;
}

calendar compile_ok(const cfg::Equipment& e, std::string_view default_zone = "Asia/Shanghai") {
  auto c = calendar::compile(e, default_zone);
  if (!c) FAIL(c.error().describe());
  return std::move(*c);
}

std::int64_t day_of(int y, int mo, int d) { return days_from_civil(y, mo, d); }

}  // namespace

TEST_CASE("2026-03-09 is a Monday (the dates below rely on it)", "[unit][booking]") {
  CHECK(weekday_from_days(day_of(2026, 3, 9)) == 0);
  CHECK(weekday_from_days(day_of(2026, 3, 29)) == 6);
  CHECK(weekday_from_days(day_of(2026, 10, 25)) == 6);
}

TEST_CASE("a week of working windows in Asia/Shanghai, whole and in time order", "[unit][booking]") {
  const auto e = shanghai_ct();
  const auto c = compile_ok(e);
  CHECK(c.equipment_id() == "t-ct");
  CHECK(c.hospital() == "h-own");
  CHECK(c.share_percent() == 30);
  CHECK(c.zone().name() == "Asia/Shanghai");

  const auto w = c.windows(sh(2026, 3, 9), sh(2026, 3, 16));
  std::vector<interval> expected;
  for (int d = 9; d <= 13; ++d) {
    expected.push_back({sh(2026, 3, d, 8), sh(2026, 3, d, 12)});
    expected.push_back({sh(2026, 3, d, 14), sh(2026, 3, d, 17, 30)});
    if (d == 11) expected.push_back({sh(2026, 3, d, 18), sh(2026, 3, d, 21)});
  }
  // "24:00" is midnight at the end of Saturday.
  expected.push_back({sh(2026, 3, 14, 20), sh(2026, 3, 15, 0)});
  CHECK(w == expected);

  SECTION("windows are not clipped to the range asked for") {
    CHECK(c.windows(sh(2026, 3, 9, 9), sh(2026, 3, 9, 9, 30)) ==
          std::vector<interval>{{sh(2026, 3, 9, 8), sh(2026, 3, 9, 12)}});
  }
  SECTION("a range touching a window only at its ends does not overlap it") {
    CHECK(c.windows(sh(2026, 3, 9, 12), sh(2026, 3, 9, 14)).empty());
    CHECK(c.windows(sh(2026, 3, 9, 17, 30), sh(2026, 3, 10, 8)).empty());
  }
  SECTION("a Sunday has no window; an empty or inverted range has none") {
    CHECK(c.windows(sh(2026, 3, 15), sh(2026, 3, 16)).empty());
    CHECK(c.windows(sh(2026, 3, 9, 9), sh(2026, 3, 9, 9)).empty());
    CHECK(c.windows(sh(2026, 3, 9, 10), sh(2026, 3, 9, 9)).empty());
  }
  SECTION("a range starting late on Saturday UTC still finds the Saturday-night window") {
    // 2026-03-14T15:00Z is 23:00 Saturday in Shanghai.
    CHECK(c.windows(utc(2026, 3, 14, 15), utc(2026, 3, 14, 15, 30)) ==
          std::vector<interval>{{sh(2026, 3, 14, 20), sh(2026, 3, 15, 0)}});
  }
}

TEST_CASE("window_containing finds the window that holds a slot whole, else nothing", "[unit][booking]") {
  const auto e = shanghai_ct();
  const auto c = compile_ok(e);
  const interval morning{sh(2026, 3, 9, 8), sh(2026, 3, 9, 12)};
  const interval afternoon{sh(2026, 3, 9, 14), sh(2026, 3, 9, 17, 30)};
  CHECK(c.window_containing({sh(2026, 3, 9, 8), sh(2026, 3, 9, 8, 15)}) == morning);
  CHECK(c.window_containing({sh(2026, 3, 9, 11, 45), sh(2026, 3, 9, 12)}) == morning);
  CHECK(c.window_containing({sh(2026, 3, 9, 17, 15), sh(2026, 3, 9, 17, 30)}) == afternoon);
  CHECK(c.window_containing({sh(2026, 3, 11, 20, 30), sh(2026, 3, 11, 21)}) ==
        interval{sh(2026, 3, 11, 18), sh(2026, 3, 11, 21)});
  CHECK(c.window_containing({sh(2026, 3, 14, 23, 45), sh(2026, 3, 15, 0)}) ==
        interval{sh(2026, 3, 14, 20), sh(2026, 3, 15, 0)});

  CHECK_FALSE(c.window_containing({sh(2026, 3, 9, 7, 55), sh(2026, 3, 9, 8, 10)}));    // starts before opening
  CHECK_FALSE(c.window_containing({sh(2026, 3, 9, 11, 50), sh(2026, 3, 9, 12, 5)}));   // runs into lunch
  CHECK_FALSE(c.window_containing({sh(2026, 3, 9, 12), sh(2026, 3, 9, 12, 15)}));      // lunch
  CHECK_FALSE(c.window_containing({sh(2026, 3, 9, 17, 25), sh(2026, 3, 9, 17, 40)}));  // past closing
  CHECK_FALSE(c.window_containing({sh(2026, 3, 9, 11, 45), sh(2026, 3, 9, 14, 15)}));  // spans two windows
  CHECK_FALSE(c.window_containing({sh(2026, 3, 10, 18), sh(2026, 3, 10, 18, 15)}));    // Wednesday-only window
  CHECK_FALSE(c.window_containing({sh(2026, 3, 15, 9), sh(2026, 3, 15, 9, 15)}));      // Sunday
  CHECK_FALSE(c.window_containing({sh(2026, 3, 14, 23, 50), sh(2026, 3, 15, 0, 5)}));  // past midnight
  CHECK_FALSE(c.window_containing({sh(2026, 3, 15, 0), sh(2026, 3, 15, 0, 15)}));      // Sunday 00:00
}

TEST_CASE("config blocked periods are read in the machine's zone and sorted", "[unit][booking]") {
  const auto e = shanghai_ct();
  const auto c = compile_ok(e);
  REQUIRE(c.blocked().size() == 2);
  CHECK(c.blocked()[0].when == interval{sh(2026, 3, 3, 8), sh(2026, 3, 3, 12)});
  CHECK(c.blocked()[0].reason == "earlier, listed second");
  CHECK(c.blocked()[1].when == interval{utc(2026, 3, 10, 1), utc(2026, 3, 10, 2)});
  CHECK(c.blocked()[1].reason == "球管维护");
  // windows() leaves them in (the ledger checks them).
  CHECK(c.windows(sh(2026, 3, 10, 9), sh(2026, 3, 10, 10)).size() == 1);
}

TEST_CASE("exam types: slot lengths of what the machine does", "[unit][booking]") {
  const auto e = shanghai_ct();
  const auto c = compile_ok(e);
  CHECK(c.duration_of("CT-HEAD") == std::chrono::minutes(15));
  CHECK(c.duration_of("CT-ABD") == std::chrono::minutes(30));
  CHECK_FALSE(c.duration_of("MR-HEAD"));
  CHECK_FALSE(c.duration_of(""));
  REQUIRE(c.exam("CT-ABD") != nullptr);
  CHECK(c.exam("CT-ABD")->name() == "CT-ABD name");
  CHECK(c.exam("ct-abd") == nullptr);
  CHECK(c.exams().size() == 2);
}

TEST_CASE("the consortium's share is a percentage of the local day's working minutes, rounded down",
          "[unit][booking]") {
  auto e = shanghai_ct();
  {
    const auto c = compile_ok(e);
    CHECK(c.share_minutes(day_of(2026, 3, 9)) == 135);   // 450 min * 30%
    CHECK(c.share_minutes(day_of(2026, 3, 11)) == 189);  // Wednesday: 630 min * 30%
    CHECK(c.share_minutes(day_of(2026, 3, 14)) == 72);   // Saturday: 240 min * 30%
    CHECK(c.share_minutes(day_of(2026, 3, 15)) == 0);    // Sunday
  }
  e.set_consortium_share_percent(33);
  CHECK(compile_ok(e).share_minutes(day_of(2026, 3, 9)) == 148);  // 148.5 rounded down
  e.set_consortium_share_percent(0);
  CHECK(compile_ok(e).share_minutes(day_of(2026, 3, 9)) == 0);
  e.set_consortium_share_percent(250);  // capped at 100
  CHECK(compile_ok(e).share_percent() == 100);
  CHECK(compile_ok(e).share_minutes(day_of(2026, 3, 9)) == 450);
}

TEST_CASE("local_day follows the machine's wall clock around midnight", "[unit][booking]") {
  const auto e = shanghai_ct();
  const auto c = compile_ok(e);
  const auto monday = day_of(2026, 3, 9);
  CHECK(c.local_day(sh(2026, 3, 9, 0, 0)) == monday);
  CHECK(c.local_day(sh(2026, 3, 9, 23, 59)) == monday);
  CHECK(c.local_day(sh(2026, 3, 10) - 1s) == monday);
  CHECK(c.local_day(sh(2026, 3, 10)) == monday + 1);
  // 16:00 UTC on Monday is already Tuesday in Shanghai; 15:59:59 is not.
  CHECK(c.local_day(utc(2026, 3, 9, 16)) == monday + 1);
  CHECK(c.local_day(utc(2026, 3, 9, 16) - 1s) == monday);
  // Before 1970 (floor, not truncation).
  CHECK(c.local_day(seconds(std::chrono::seconds(-1))) == 0);  // 1970-01-01 07:59:59 local
  CHECK(c.local_day(seconds(std::chrono::seconds(-8 * 3600 - 1))) == -1);
}

TEST_CASE("without its own time zone a machine uses the consortium's", "[unit][booking]") {
  auto e = shanghai_ct();
  e.mutable_schedule()->clear_time_zone();
  const auto c = compile_ok(e, "Asia/Shanghai");
  CHECK(c.zone().name() == "Asia/Shanghai");
  CHECK(c.window_containing({sh(2026, 3, 9, 8), sh(2026, 3, 9, 8, 15)}));
  const auto u = compile_ok(e, "UTC");
  CHECK(u.window_containing({utc(2026, 3, 9, 8), utc(2026, 3, 9, 8, 15)}));
  CHECK_FALSE(u.window_containing({sh(2026, 3, 9, 8), sh(2026, 3, 9, 8, 15)}));
}

TEST_CASE("a hand-built config with a bad schedule is a config_error naming the equipment and field",
          "[unit][booking]") {
  struct bad_case {
    const char* what;
    std::function<void(cfg::Equipment&)> spoil;
    const char* field;
  };
  const std::vector<bad_case> cases{
      {"hour 25", [](cfg::Equipment& e) { add_window(e, {cfg::WEEKDAY_SUNDAY}, "08:00", "25:00"); }, "schedule.days"},
      {"24:30", [](cfg::Equipment& e) { add_window(e, {cfg::WEEKDAY_SUNDAY}, "08:00", "24:30"); }, "schedule.days"},
      {"no leading zero", [](cfg::Equipment& e) { add_window(e, {cfg::WEEKDAY_SUNDAY}, "8:00", "12:00"); },
       "schedule.days"},
      {"minute 60", [](cfg::Equipment& e) { add_window(e, {cfg::WEEKDAY_SUNDAY}, "08:60", "12:00"); },
       "schedule.days"},
      {"end equals start", [](cfg::Equipment& e) { add_window(e, {cfg::WEEKDAY_SUNDAY}, "08:00", "08:00"); },
       "schedule.days"},
      {"end before start", [](cfg::Equipment& e) { add_window(e, {cfg::WEEKDAY_SUNDAY}, "12:00", "08:00"); },
       "schedule.days"},
      {"weekday unspecified",
       [](cfg::Equipment& e) { add_window(e, {cfg::WEEKDAY_UNSPECIFIED}, "08:00", "12:00"); }, "schedule.days"},
      {"blocked on 30 February",
       [](cfg::Equipment& e) { add_blocked(e, "2026-02-30T08:00", "2026-03-01T08:00", ""); }, "blocked"},
      {"blocked ending before it starts",
       [](cfg::Equipment& e) { add_blocked(e, "2026-03-02T08:00", "2026-03-01T08:00", ""); }, "blocked"},
      {"blocked with seconds",
       [](cfg::Equipment& e) { add_blocked(e, "2026-03-02T08:00:00", "2026-03-03T08:00", ""); }, "blocked"},
      {"unknown zone", [](cfg::Equipment& e) { e.mutable_schedule()->set_time_zone("Mars/Olympus_Mons"); },
       "schedule.time_zone"},
  };
  for (const auto& bc : cases) {
    INFO(bc.what);
    auto e = shanghai_ct();
    bc.spoil(e);
    const auto c = calendar::compile(e, "Asia/Shanghai");
    REQUIRE_FALSE(c.has_value());
    CHECK(c.error().code == errc::config_error);
    CHECK(c.error().where == std::string("equipment t-ct ") + bc.field);
  }
}

namespace {

// Europe/Berlin: Saturday and Sunday 08:00-12:00; Sunday also 00:00-06:00, a
// night window across the DST change (both changes fall on a Sunday night).
cfg::Equipment berlin_mr() {
  cfg::Equipment e;
  e.set_id("b-mr");
  e.set_hospital("h-berlin");
  e.set_modality(cfg::MODALITY_MR);
  e.mutable_schedule()->set_time_zone("Europe/Berlin");
  add_window(e, {cfg::WEEKDAY_SATURDAY, cfg::WEEKDAY_SUNDAY}, "08:00", "12:00");
  add_window(e, {cfg::WEEKDAY_SUNDAY}, "00:00", "06:00");
  add_exam(e, "MR-HEAD", 30);
  e.set_consortium_share_percent(50);
  return e;
}

}  // namespace

TEST_CASE("on the spring-forward day a window across the change is an hour shorter", "[unit][booking]") {
  const auto e = berlin_mr();
  const auto c = compile_ok(e);
  // Sunday 2026-03-29: 00:00 CET = 28th 23:00Z; 06:00 CEST = 04:00Z; 08:00 CEST = 06:00Z.
  const auto w = c.windows(utc(2026, 3, 28), utc(2026, 3, 30));
  const std::vector<interval> expected{
      {utc(2026, 3, 28, 7), utc(2026, 3, 28, 11)},  // Saturday, still CET (+1)
      {utc(2026, 3, 28, 23), utc(2026, 3, 29, 4)},  // 5 hours of wall clock 00:00-06:00
      {utc(2026, 3, 29, 6), utc(2026, 3, 29, 10)},  // CEST (+2)
  };
  CHECK(w == expected);
  CHECK(expected[1].length() == std::chrono::minutes(300));
  // A slot in the last hour before 06:00 CEST is inside the night window.
  CHECK(c.window_containing({utc(2026, 3, 29, 3), utc(2026, 3, 29, 4)}) == expected[1]);
  // 00:30 local (CET) is on Sunday; 01:30Z is 03:30 CEST, also Sunday.
  CHECK(c.local_day(utc(2026, 3, 28, 23, 30)) == day_of(2026, 3, 29));
  CHECK(c.local_day(utc(2026, 3, 28, 22, 59)) == day_of(2026, 3, 28));
  CHECK(c.local_day(utc(2026, 3, 29, 22)) == day_of(2026, 3, 30));  // 00:00 CEST Monday
  CHECK(c.local_day(utc(2026, 3, 29, 21, 59)) == day_of(2026, 3, 29));
}

TEST_CASE("on the fall-back day a window across the change is an hour longer", "[unit][booking]") {
  const auto e = berlin_mr();
  const auto c = compile_ok(e);
  // Sunday 2026-10-25: 00:00 CEST = 24th 22:00Z; 06:00 CET = 05:00Z; 08:00 CET = 07:00Z.
  const auto w = c.windows(utc(2026, 10, 24), utc(2026, 10, 26));
  const std::vector<interval> expected{
      {utc(2026, 10, 24, 6), utc(2026, 10, 24, 10)},   // Saturday, still CEST (+2)
      {utc(2026, 10, 24, 22), utc(2026, 10, 25, 5)},   // 7 hours of wall clock 00:00-06:00
      {utc(2026, 10, 25, 7), utc(2026, 10, 25, 11)},   // CET (+1)
  };
  CHECK(w == expected);
  CHECK(expected[1].length() == std::chrono::minutes(420));
  // Both 02:30s of the night are inside the window.
  CHECK(c.window_containing({utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1)}) == expected[1]);
  CHECK(c.window_containing({utc(2026, 10, 25, 1, 30), utc(2026, 10, 25, 2)}) == expected[1]);
  CHECK(c.local_day(utc(2026, 10, 24, 22)) == day_of(2026, 10, 25));
  CHECK(c.local_day(utc(2026, 10, 25, 22, 59)) == day_of(2026, 10, 25));
  CHECK(c.local_day(utc(2026, 10, 25, 23)) == day_of(2026, 10, 26));
}

TEST_CASE("a window that starts in the skipped hour starts when the clock jumps", "[unit][booking]") {
  auto e = berlin_mr();
  e.mutable_schedule()->clear_days();
  add_window(e, {cfg::WEEKDAY_SUNDAY}, "02:00", "04:00");
  const auto c = compile_ok(e);
  // 02:00 does not exist on 2026-03-29: read with the offset before the change
  // (+1), that is 01:00Z = 03:00 CEST; 04:00 CEST = 02:00Z.
  CHECK(c.windows(utc(2026, 3, 28), utc(2026, 3, 30)) ==
        std::vector<interval>{{utc(2026, 3, 29, 1), utc(2026, 3, 29, 2)}});
  // A normal Sunday a week later: 02:00-04:00 CEST.
  CHECK(c.windows(utc(2026, 4, 4), utc(2026, 4, 6)) ==
        std::vector<interval>{{utc(2026, 4, 5, 0), utc(2026, 4, 5, 2)}});
}

// Was a bug (fixed): share_minutes() adds up the schedule rules' wall-clock minutes, not the
// day's real working minutes, so on a DST change day the consortium is offered
// share% of time that does not exist (or loses share% of an hour that exists
// twice). The header says "share% of that day's working minutes".
// Fix: sum the lengths of windows(local day start, next local day start).
TEST_CASE("on DST change days the share is of the minutes the machine really works", "[unit][booking]") {
  const auto e = berlin_mr();
  const auto c = compile_ok(e);
  CHECK(c.share_minutes(day_of(2026, 3, 22)) == (360 + 240) / 2);   // an ordinary Sunday
  CHECK(c.share_minutes(day_of(2026, 3, 29)) == (300 + 240) / 2);   // 23-hour day
  CHECK(c.share_minutes(day_of(2026, 10, 25)) == (420 + 240) / 2);  // 25-hour day
}
