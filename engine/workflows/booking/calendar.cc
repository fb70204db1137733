#include "engine/workflows/booking/calendar.h"

#include <algorithm>
#include <charconv>

namespace yilian::workflows::booking {

namespace {

bool parse_int(std::string_view s, std::int32_t& out) {
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && ptr == s.data() + s.size();
}

// "HH:MM" -> minutes after midnight ("24:00" allowed).
std::optional<std::int32_t> parse_hhmm(std::string_view s) {
  std::int32_t h = 0, m = 0;
  if (s.size() != 5 || s[2] != ':' || !parse_int(s.substr(0, 2), h) || !parse_int(s.substr(3, 2), m)) return {};
  if (h > 24 || m > 59 || (h == 24 && m != 0)) return {};
  return h * 60 + m;
}

// "YYYY-MM-DDTHH:MM" -> local seconds since the epoch.
std::optional<std::int64_t> parse_local(std::string_view s) {
  std::int32_t y = 0, mo = 0, d = 0;
  if (s.size() != 16 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || !parse_int(s.substr(0, 4), y) ||
      !parse_int(s.substr(5, 2), mo) || !parse_int(s.substr(8, 2), d) || mo < 1 || mo > 12 || d < 1 ||
      d > days_in_month(y, mo)) {
    return {};
  }
  const auto hm = parse_hhmm(s.substr(11));
  if (!hm) return {};
  return days_from_civil(y, mo, d) * 86400 + *hm * 60;
}

}  // namespace

result<calendar> calendar::compile(const config::v1::Equipment& equipment, std::string_view default_time_zone) {
  calendar c;
  c.equipment_ = &equipment;
  c.id_ = equipment.id();
  c.hospital_ = equipment.hospital();
  c.share_percent_ = std::min<std::uint32_t>(equipment.consortium_share_percent(), 100);
  const std::string where = "equipment " + equipment.id();
  const std::string tz =
      equipment.schedule().time_zone().empty() ? std::string(default_time_zone) : equipment.schedule().time_zone();
  auto zone = time_zone::load(tz);
  if (!zone) return fail(errc::config_error, zone.error().message, where + " schedule.time_zone");
  c.zone_ = std::move(*zone);
  for (const auto& w : equipment.schedule().days()) {
    const auto start = parse_hhmm(w.start());
    const auto end = parse_hhmm(w.end());
    if (!start || !end || *end <= *start) {
      return fail(errc::config_error, "schedule window is not HH:MM-HH:MM with end after start",
                  where + " schedule.days");
    }
    for (const int day : w.weekdays()) {
      if (day < config::v1::WEEKDAY_MONDAY || day > config::v1::WEEKDAY_SUNDAY) {
        return fail(errc::config_error, "weekday missing", where + " schedule.days");
      }
      c.rules_.push_back(window_rule{.weekday = day - 1, .start_minute = *start, .end_minute = *end});
    }
  }
  std::sort(c.rules_.begin(), c.rules_.end(), [](const window_rule& a, const window_rule& b) {
    return a.weekday != b.weekday ? a.weekday < b.weekday : a.start_minute < b.start_minute;
  });
  for (const auto& b : equipment.blocked()) {
    const auto start = parse_local(b.start());
    const auto end = parse_local(b.end());
    if (!start || !end || *end <= *start) {
      return fail(errc::config_error, "blocked period is not YYYY-MM-DDTHH:MM with end after start",
                  where + " blocked");
    }
    c.blocked_.push_back(blocked_period{
        .when = interval{seconds(std::chrono::seconds(c.zone_.to_utc(*start))),
                         seconds(std::chrono::seconds(c.zone_.to_utc(*end)))},
        .reason = b.reason()});
  }
  std::sort(c.blocked_.begin(), c.blocked_.end(),
            [](const blocked_period& a, const blocked_period& b) { return a.when.start < b.when.start; });
  for (const auto& e : equipment.exam_types()) c.exams_.push_back(&e);
  return c;
}

std::int64_t calendar::local_day(seconds t) const {
  const std::int64_t utc = t.time_since_epoch().count();
  return floor_div(utc + zone_.offset_at(utc), 86400);
}

std::vector<interval> calendar::windows(seconds from, seconds to) const {
  std::vector<interval> out;
  if (to <= from) return out;
  // One day of margin each side: a window's local date may differ from its UTC date.
  for (std::int64_t day = local_day(from) - 1, last = local_day(to) + 1; day <= last; ++day) {
    const int wd = weekday_from_days(day);
    for (const auto& r : rules_) {
      if (r.weekday != wd) continue;
      const interval w{seconds(std::chrono::seconds(zone_.to_utc(day * 86400 + r.start_minute * 60))),
                       seconds(std::chrono::seconds(zone_.to_utc(day * 86400 + r.end_minute * 60)))};
      if (w.end <= from || w.start >= to) continue;
      out.push_back(w);
    }
  }
  std::sort(out.begin(), out.end(), [](const interval& a, const interval& b) { return a.start < b.start; });
  return out;
}

std::optional<interval> calendar::window_containing(const interval& slot) const {
  const int wd = weekday_from_days(local_day(slot.start));
  const std::int64_t day = local_day(slot.start);
  for (const auto& r : rules_) {
    if (r.weekday != wd) continue;
    const interval w{seconds(std::chrono::seconds(zone_.to_utc(day * 86400 + r.start_minute * 60))),
                     seconds(std::chrono::seconds(zone_.to_utc(day * 86400 + r.end_minute * 60)))};
    if (w.contains(slot)) return w;
  }
  return std::nullopt;
}

std::optional<std::chrono::minutes> calendar::duration_of(std::string_view exam_code) const {
  const auto* e = exam(exam_code);
  if (e == nullptr) return std::nullopt;
  return std::chrono::minutes(e->duration_minutes());
}

const config::v1::ExamType* calendar::exam(std::string_view exam_code) const {
  for (const auto* e : exams_) {
    if (e->code() == exam_code) return e;
  }
  return nullptr;
}

std::int64_t calendar::share_minutes(std::int64_t day) const {
  // The minutes the machine really works that day (a DST change makes a
  // window an hour shorter or longer than its wall-clock times say).
  const int wd = weekday_from_days(day);
  std::int64_t working = 0;
  for (const auto& r : rules_) {
    if (r.weekday != wd) continue;
    const std::int64_t start = zone_.to_utc(day * 86400 + r.start_minute * 60);
    const std::int64_t end = zone_.to_utc(day * 86400 + r.end_minute * 60);
    if (end > start) working += (end - start) / 60;
  }
  return working * share_percent_ / 100;
}

}  // namespace yilian::workflows::booking
