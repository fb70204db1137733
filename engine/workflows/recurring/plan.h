// yilian::workflows::recurring — when a care plan's periods start (pure: no
// I/O, no clock, no state).
//
// A care plan repeats every N weeks / months / quarters / years from the local
// date of its start, in the consortium's time zone. Period k (0-based) starts
// at local midnight of
//
//   WEEKLY      first date + 7·N·k days
//   MONTHLY     first date + N·k months     on the first date's day of month,
//   QUARTERLY   first date + 3·N·k months   or the month's last day when the
//   YEARLY      first date + 12·N·k months  month is shorter
//
// Each date is computed from the first date, never from the previous period,
// so a short month does not drag later periods earlier (31 Jan -> 28/29 Feb ->
// 31 Mar). Dates are wall-clock dates: a daylight-saving change moves the
// instant of local midnight, never the date. No period starts after `until`.
//
// Period k is due — the scheduler books it — from `lead_days` before its
// start; its exam is booked in [start, end), end being period k+1's start.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <vector>

#include "engine/core/error.h"
#include "engine/core/time_zone.h"
#include "yilian/events/v1/careplan.pb.h"

namespace yilian::workflows::recurring {

namespace ev = events::v1;
using seconds = std::chrono::sys_seconds;

// A protobuf timestamp, to the second.
inline seconds to_seconds(const google::protobuf::Timestamp& t) { return seconds(std::chrono::seconds(t.seconds())); }

// Periods per plan the math walks at most (weekly for ~190 years): a bound
// against a plan without an until date.
inline constexpr std::uint32_t max_periods = 10000;
// CarePlanChanged.lead_days when it is 0 (unset).
inline constexpr std::uint32_t default_lead_days = 7;

struct rule {
  ev::CarePlanInterval interval = ev::CARE_PLAN_INTERVAL_MONTHLY;
  std::uint32_t every = 1;                // >= 1
  civil_date first;                       // local date of period 0
  std::optional<seconds> until;           // no period starts after this instant
  std::uint32_t lead_days = 7;
  bool operator==(const rule&) const = default;
};

struct period {
  std::uint32_t number = 0;
  civil_date date;   // local date it starts on
  seconds start{};   // local midnight of `date`
  seconds end{};     // the next period's start
  seconds due{};     // start - lead_days: from then on the scheduler books it
  bool operator==(const period&) const = default;
};

// Local date of period k (whatever `until` says).
civil_date period_date(const rule& r, std::uint32_t k);
// Period k, or nullopt when it would start after `until` (or k >= max_periods).
std::optional<period> period_at(const rule& r, std::uint32_t k, const time_zone& zone);
// The periods due at `now` (due <= now), from number `from` on, in order, at
// most `limit` of them.
std::vector<period> due_periods(const rule& r, seconds now, const time_zone& zone, std::uint32_t from = 0,
                                std::size_t limit = 64);
// How many periods the plan has at all (nullopt: no until, unbounded).
std::optional<std::uint32_t> period_count(const rule& r, const time_zone& zone);

// Wall-clock helpers in `zone`.
civil_date local_date(seconds t, const time_zone& zone);
seconds local_midnight(civil_date d, const time_zone& zone);
// "2026-01-31".
std::string date_text(civil_date d);
// "2026-01-31" -> date; errc::invalid_argument naming the problem otherwise.
result<civil_date> parse_date(std::string_view text);

// The rule of a CarePlanChanged body (every 0 counts as 1, lead_days 0 as
// default_lead_days). errc::validation_failed when the interval is unspecified or
// starts_at is missing.
result<rule> rule_of(const ev::CarePlanChanged& plan, const time_zone& zone);

// "WEEKLY" / "weekly" ... -> interval; UNSPECIFIED for anything else.
ev::CarePlanInterval interval_from_name(std::string_view name);
// "weekly", "monthly", "quarterly", "yearly" ("" for UNSPECIFIED).
std::string_view interval_name(ev::CarePlanInterval i);

}  // namespace yilian::workflows::recurring
