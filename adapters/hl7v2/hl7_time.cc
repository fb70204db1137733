#include "adapters/hl7v2/hl7_time.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace yilian::hl7v2 {

// --------------------------------------------------------------------------
// DTM

namespace {

bool digits(std::string_view s, std::size_t pos, std::size_t n, std::int32_t& out) {
  if (pos + n > s.size()) return false;
  std::int32_t v = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    const char ch = s[i];
    if (ch < '0' || ch > '9') return false;
    v = v * 10 + (ch - '0');
  }
  out = v;
  return true;
}

}  // namespace

namespace {

// The shapes nearly every message uses (YYYYMMDD, YYYYMMDDHHMM,
// YYYYMMDDHHMMSS, all digits, no offset or fraction), read straight; false
// for anything else or anything out of range, which the general reading
// below then parses or explains.
bool quick_dtm(std::string_view t, dtm_value& v) {
  const std::size_t n = t.size();
  if (n != 8 && n != 12 && n != 14) return false;
  for (const char ch : t) {
    if (ch < '0' || ch > '9') return false;
  }
  const auto two = [&t](std::size_t at) { return (t[at] - '0') * 10 + (t[at + 1] - '0'); };
  v.year = two(0) * 100 + two(2);
  v.month = two(4);
  v.day = two(6);
  if (v.month < 1 || v.month > 12 || v.day < 1 || v.day > days_in_month(v.year, v.month)) return false;
  v.precision = dtm_precision::day;
  if (n >= 12) {
    v.hour = two(8);
    v.minute = two(10);
    if (v.hour > 23 || v.minute > 59) return false;
    v.precision = dtm_precision::minute;
  }
  if (n == 14) {
    v.second = two(12);
    if (v.second > 59) return false;  // 60 (a leap second) takes the general path
    v.precision = dtm_precision::second;
  }
  return true;
}

}  // namespace

result<dtm_value> parse_dtm(std::string_view text) {
  if (dtm_value quick; quick_dtm(text, quick)) return quick;
  dtm_value v;
  std::string_view body = text;
  // Offset: from the '+' or '-' (the date part never has one).
  std::size_t sign = 0;
  while (sign < body.size() && body[sign] != '+' && body[sign] != '-') ++sign;
  if (sign < body.size()) {
    const std::string_view off = body.substr(sign + 1);
    std::int32_t hh = 0, mm = 0;
    if (off.size() != 4 || !digits(off, 0, 2, hh) || !digits(off, 2, 2, mm)) {
      return fail(errc::validation_failed, "time zone offset is not +/-HHMM");
    }
    if (hh > 14 || mm > 59) return fail(errc::validation_failed, "time zone offset out of range");
    v.has_offset = true;
    v.offset_seconds = (body[sign] == '-' ? -1 : 1) * (hh * 3600 + mm * 60);
    body = body.substr(0, sign);
  }
  std::string_view frac;
  if (const std::size_t dot = body.find('.'); dot != std::string_view::npos) {
    frac = body.substr(dot + 1);
    body = body.substr(0, dot);
    if (body.size() != 14) return fail(errc::validation_failed, "fraction of a second without seconds");
    if (frac.empty() || frac.size() > 9) return fail(errc::validation_failed, "fraction of a second must have 1 to 9 digits");
  }
  const std::size_t n = body.size();
  if (n != 4 && n != 6 && n != 8 && n != 10 && n != 12 && n != 14) {
    return fail(errc::validation_failed, n == 0 ? "empty date/time" : "date/time must be YYYY[MM[DD[HH[MM[SS]]]]]");
  }
  if (!digits(body, 0, 4, v.year)) return fail(errc::validation_failed, "year is not 4 digits");
  v.precision = dtm_precision::year;
  if (n >= 6) {
    if (!digits(body, 4, 2, v.month)) return fail(errc::validation_failed, "month is not 2 digits");
    if (v.month < 1 || v.month > 12) return fail(errc::validation_failed, "month out of range");
    v.precision = dtm_precision::month;
  }
  if (n >= 8) {
    if (!digits(body, 6, 2, v.day)) return fail(errc::validation_failed, "day is not 2 digits");
    if (v.day < 1 || v.day > days_in_month(v.year, v.month)) return fail(errc::validation_failed, "day out of range");
    v.precision = dtm_precision::day;
  }
  if (n >= 10) {
    if (!digits(body, 8, 2, v.hour) || v.hour > 23) return fail(errc::validation_failed, "hour out of range");
    v.precision = dtm_precision::hour;
  }
  if (n >= 12) {
    if (!digits(body, 10, 2, v.minute) || v.minute > 59) return fail(errc::validation_failed, "minute out of range");
    v.precision = dtm_precision::minute;
  }
  if (n >= 14) {
    // 60 is a leap second; it is read as the last second of the minute.
    if (!digits(body, 12, 2, v.second) || v.second > 60) return fail(errc::validation_failed, "second out of range");
    if (v.second == 60) v.second = 59;
    v.precision = dtm_precision::second;
  }
  if (!frac.empty()) {
    std::int32_t f = 0;
    if (!digits(frac, 0, frac.size(), f)) return fail(errc::validation_failed, "fraction of a second is not digits");
    for (std::size_t i = frac.size(); i < 9; ++i) f *= 10;
    v.nanos = f;
    v.precision = dtm_precision::fraction;
  }
  return v;
}

std::int64_t local_seconds(const dtm_value& v) {
  return days_from_civil(v.year, v.month, v.day) * 86400 + v.hour * 3600 + v.minute * 60 + v.second;
}

instant to_instant(const dtm_value& v, const time_zone& zone) {
  const std::int64_t local = local_seconds(v);
  return instant{.seconds = v.has_offset ? local - v.offset_seconds : zone.to_utc(local), .nanos = v.nanos};
}

instant to_instant(std::chrono::system_clock::time_point t) {
  const auto since = t.time_since_epoch();
  const auto secs = std::chrono::floor<std::chrono::seconds>(since);
  return instant{.seconds = secs.count(),
                 .nanos = static_cast<std::int32_t>(
                     std::chrono::duration_cast<std::chrono::nanoseconds>(since - secs).count())};
}

google::protobuf::Timestamp to_timestamp(const dtm_value& v, const time_zone& zone) {
  google::protobuf::Timestamp ts;
  set_timestamp(ts, to_instant(v, zone));
  return ts;
}

google::protobuf::Timestamp to_timestamp(std::chrono::system_clock::time_point t) {
  google::protobuf::Timestamp ts;
  set_timestamp(ts, to_instant(t));
  return ts;
}

result<google::protobuf::Timestamp> parse_timestamp(std::string_view text, const time_zone& zone) {
  auto v = parse_dtm(text);
  if (!v) return std::unexpected(std::move(v.error()));
  return to_timestamp(*v, zone);
}

result<std::string> dtm_date(std::string_view text) {
  // Only the date part is looked at; what follows may be anything a sender
  // puts there (a fake time, an offset).
  std::size_t n = 0;
  while (n < text.size() && n < 8 && text[n] >= '0' && text[n] <= '9') ++n;
  if (n != 4 && n != 6 && n != 8) return fail(errc::validation_failed, "date must start with YYYY[MM[DD]]");
  auto parsed = parse_dtm(text.substr(0, n));
  if (!parsed) return std::unexpected(std::move(parsed.error()));
  // The digits as written, with dashes (no printf: this is on the hot path).
  std::string out(text.substr(0, 4));
  if (n >= 6) {
    out += '-';
    out.append(text.substr(4, 2));
  }
  if (n == 8) {
    out += '-';
    out.append(text.substr(6, 2));
  }
  return out;
}

}  // namespace yilian::hl7v2
