#include "engine/workflows/recurring/plan.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <string>

namespace yilian::workflows::recurring {

namespace {

// Months between periods (0 for WEEKLY).
std::int64_t months_per_step(ev::CarePlanInterval i) {
  switch (i) {
    case ev::CARE_PLAN_INTERVAL_MONTHLY: return 1;
    case ev::CARE_PLAN_INTERVAL_QUARTERLY: return 3;
    case ev::CARE_PLAN_INTERVAL_YEARLY: return 12;
    default: return 0;
  }
}

}  // namespace

civil_date period_date(const rule& r, std::uint32_t k) {
  const std::int64_t every = std::max<std::uint32_t>(r.every, 1);
  const std::int64_t months = months_per_step(r.interval);
  if (months == 0) {  // weekly
    return civil_from_days(days_from_civil(r.first.year, r.first.month, r.first.day) + 7 * every * k);
  }
  // From the first date each time: the day of month is the first one's,
  // clamped to the target month's length.
  const std::int64_t index = static_cast<std::int64_t>(r.first.year) * 12 + (r.first.month - 1) + months * every * k;
  const std::int64_t year = floor_div(index, 12);
  const int month = static_cast<int>(index - year * 12) + 1;
  const int day = std::min(r.first.day, days_in_month(year, month));
  return civil_date{static_cast<std::int32_t>(year), month, day};
}

civil_date local_date(seconds t, const time_zone& zone) {
  const std::int64_t utc = t.time_since_epoch().count();
  return civil_from_days(floor_div(utc + zone.offset_at(utc), 86400));
}

seconds local_midnight(civil_date d, const time_zone& zone) {
  return seconds(std::chrono::seconds(zone.to_utc(days_from_civil(d.year, d.month, d.day) * 86400)));
}

std::optional<period> period_at(const rule& r, std::uint32_t k, const time_zone& zone) {
  if (k >= max_periods || r.interval == ev::CARE_PLAN_INTERVAL_UNSPECIFIED) return std::nullopt;
  period p{.number = k, .date = period_date(r, k)};
  p.start = local_midnight(p.date, zone);
  if (r.until && p.start > *r.until) return std::nullopt;
  // The end is the next period's start even when that one is past `until`:
  // the last period is as long as the others.
  p.end = local_midnight(period_date(r, k + 1), zone);
  p.due = p.start - std::chrono::days(r.lead_days);
  return p;
}

std::vector<period> due_periods(const rule& r, seconds now, const time_zone& zone, std::uint32_t from,
                                std::size_t limit) {
  std::vector<period> out;
  for (std::uint32_t k = from; out.size() < limit; ++k) {
    const auto p = period_at(r, k, zone);
    if (!p || p->due > now) break;
    out.push_back(*p);
  }
  return out;
}

std::optional<std::uint32_t> period_count(const rule& r, const time_zone& zone) {
  if (!r.until) return std::nullopt;
  std::uint32_t k = 0;
  while (period_at(r, k, zone)) ++k;
  return k;
}

std::string date_text(civil_date d) {
  std::string s(10, '0');
  auto put = [&s](std::size_t at, std::size_t width, std::int64_t v) {
    for (std::size_t i = 0; i < width; ++i) {
      s[at + width - 1 - i] = static_cast<char>('0' + v % 10);
      v /= 10;
    }
  };
  put(0, 4, d.year);
  s[4] = '-';
  put(5, 2, d.month);
  s[7] = '-';
  put(8, 2, d.day);
  return s;
}

result<civil_date> parse_date(std::string_view text) {
  auto bad = [&](std::string why) { return fail(errc::invalid_argument, "\"" + std::string(text) + "\" " + why); };
  if (text.size() != 10 || text[4] != '-' || text[7] != '-') return bad("is not a date YYYY-MM-DD");
  auto number = [&](std::size_t at, std::size_t width, int& out) {
    const auto* b = text.data() + at;
    const auto [ptr, ec] = std::from_chars(b, b + width, out);
    return ec == std::errc{} && ptr == b + width;
  };
  civil_date d;
  if (!number(0, 4, d.year) || !number(5, 2, d.month) || !number(8, 2, d.day)) return bad("is not a date YYYY-MM-DD");
  if (d.year < 1900 || d.year > 9999) return bad("has a year outside 1900-9999");
  if (d.month < 1 || d.month > 12) return bad("has no month " + std::to_string(d.month));
  if (d.day < 1 || d.day > days_in_month(d.year, d.month)) {
    return bad("has no day " + std::to_string(d.day) + " in that month");
  }
  return d;
}

result<rule> rule_of(const ev::CarePlanChanged& plan, const time_zone& zone) {
  if (plan.interval() == ev::CARE_PLAN_INTERVAL_UNSPECIFIED) {
    return fail(errc::validation_failed, "care plan " + plan.care_plan_id() + " has no interval", "interval");
  }
  if (!plan.has_starts_at()) {
    return fail(errc::validation_failed, "care plan " + plan.care_plan_id() + " has no start", "starts_at");
  }
  rule r{.interval = plan.interval(),
         .every = std::max<std::uint32_t>(plan.every(), 1),
         .first = local_date(to_seconds(plan.starts_at()), zone),
         .lead_days = plan.lead_days() == 0 ? default_lead_days : plan.lead_days()};
  if (plan.has_until()) r.until = to_seconds(plan.until());
  return r;
}

ev::CarePlanInterval interval_from_name(std::string_view name) {
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (lower == "weekly") return ev::CARE_PLAN_INTERVAL_WEEKLY;
  if (lower == "monthly") return ev::CARE_PLAN_INTERVAL_MONTHLY;
  if (lower == "quarterly") return ev::CARE_PLAN_INTERVAL_QUARTERLY;
  if (lower == "yearly") return ev::CARE_PLAN_INTERVAL_YEARLY;
  return ev::CARE_PLAN_INTERVAL_UNSPECIFIED;
}

std::string_view interval_name(ev::CarePlanInterval i) {
  switch (i) {
    case ev::CARE_PLAN_INTERVAL_WEEKLY: return "weekly";
    case ev::CARE_PLAN_INTERVAL_MONTHLY: return "monthly";
    case ev::CARE_PLAN_INTERVAL_QUARTERLY: return "quarterly";
    case ev::CARE_PLAN_INTERVAL_YEARLY: return "yearly";
    default: return "";
  }
}

}  // namespace yilian::workflows::recurring
