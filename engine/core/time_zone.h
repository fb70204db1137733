// yilian::time_zone — IANA time zones for local wall-clock times (hospital
// schedules, HL7 v2 values without an offset), and civil-date arithmetic.
//
// It reads the compiled tz database (TZif, /usr/share/zoneinfo or
// $TZDIR) once, including the POSIX rule in its footer for instants after the
// last listed transition; converting is then a binary search, no allocation
// and no locks, so one time_zone is shared by every thread. libstdc++ 12 has
// no <chrono> tzdb, and the C library's localtime depends on the process-wide
// TZ variable, hence this small reader.
//
// Local times that do not exist (skipped by a DST change) are read with the
// offset in effect before the change (02:30 on a spring-forward night becomes
// 03:30); local times that occur twice take the earlier instant.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "engine/core/error.h"

namespace yilian {

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
constexpr std::int64_t days_from_civil(std::int64_t y, std::int64_t m, std::int64_t d) {
  y -= m <= 2 ? 1 : 0;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const std::int64_t yoe = y - era * 400;
  const std::int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const std::int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

constexpr bool is_leap(std::int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

constexpr int days_in_month(std::int64_t y, int m) {
  constexpr std::array<int, 12> days{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return days[static_cast<std::size_t>(m - 1)] + (m == 2 && is_leap(y) ? 1 : 0);
}

struct civil_date {
  std::int32_t year = 1970;
  std::int32_t month = 1;  // 1-12
  std::int32_t day = 1;    // 1-31
  bool operator==(const civil_date&) const = default;
};

// The date of a day count since 1970-01-01 (inverse of days_from_civil).
constexpr civil_date civil_from_days(std::int64_t z) {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const std::int64_t doe = z - era * 146097;
  const std::int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const std::int64_t mp = (5 * doy + 2) / 153;
  const std::int64_t d = doy - (153 * mp + 2) / 5 + 1;
  const std::int64_t m = mp + (mp < 10 ? 3 : -9);
  return civil_date{static_cast<std::int32_t>(yoe + era * 400 + (m <= 2 ? 1 : 0)), static_cast<std::int32_t>(m),
                    static_cast<std::int32_t>(d)};
}

// 0 = Monday ... 6 = Sunday, for a day count since 1970-01-01 (a Thursday).
constexpr int weekday_from_days(std::int64_t z) { return static_cast<int>(((z % 7) + 7 + 3) % 7); }

// a / b rounded towards negative infinity.
constexpr std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  return a / b - ((a % b != 0) && ((a < 0) != (b < 0)) ? 1 : 0);
}

class time_zone {
 public:
  // UTC (the default-constructed zone).
  time_zone();
  // A fixed offset east of UTC, in seconds (tests, "+0800" zones).
  static time_zone fixed(std::int32_t offset_seconds, std::string name = {});
  // An IANA zone name, e.g. "Asia/Shanghai". "UTC"/"Etc/UTC" need no database.
  // Errors: errc::not_found (no such zone file), errc::corrupt (not TZif),
  // errc::invalid_argument (a name with ".." or a leading '/').
  static result<time_zone> load(std::string_view iana_name);

  const std::string& name() const;
  // Offset east of UTC (seconds) in effect at the instant `utc_seconds`.
  std::int32_t offset_at(std::int64_t utc_seconds) const;
  // The instant at which the wall clock of this zone shows `local_seconds`
  // (seconds since 1970-01-01T00:00 of the wall clock), per the rules above.
  std::int64_t to_utc(std::int64_t local_seconds) const;

  struct rules;  // opaque: transitions and the POSIX footer rule

 private:
  explicit time_zone(std::shared_ptr<const rules> r) : rules_(std::move(r)) {}
  std::shared_ptr<const rules> rules_;
};

}  // namespace yilian
