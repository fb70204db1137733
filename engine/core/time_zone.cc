#include "engine/core/time_zone.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace yilian {


namespace {

// --------------------------------------------------------------------------
// POSIX TZ strings (the TZif footer), e.g. "CST-8", "EST5EDT,M3.2.0,M11.1.0".

struct posix_date {
  enum kind_t : std::uint8_t { julian_no_leap, zero_based, month_week_day } kind = month_week_day;
  int day = 0;    // Jn: 1-365; n: 0-365; Mm.w.d: weekday 0 (Sunday) - 6
  int month = 0;  // Mm.w.d
  int week = 0;   // 1-5 (5 = last)
  std::int32_t time = 7200;  // seconds after local midnight (may be negative or > 24h)
};

struct posix_rule {
  bool valid = false;
  std::int32_t std_offset = 0;  // east of UTC
  bool has_dst = false;
  std::int32_t dst_offset = 0;
  posix_date start;
  posix_date end;
};

class posix_parser {
 public:
  explicit posix_parser(std::string_view s) : s_(s) {}

  bool parse(posix_rule& out) {
    if (!name()) return false;
    std::int32_t off = 0;
    if (!offset(off)) return false;
    out.std_offset = -off;  // POSIX offsets are west of UTC
    out.valid = true;
    if (at_end()) return true;
    if (!name()) return false;
    out.has_dst = true;
    out.dst_offset = out.std_offset + 3600;
    if (!at_end() && peek() != ',') {
      if (!offset(off)) return false;
      out.dst_offset = -off;
    }
    if (at_end()) {
      // No rule given: POSIX leaves it implementation-defined; the US rules
      // are the customary default.
      out.start = {.kind = posix_date::month_week_day, .day = 0, .month = 3, .week = 2, .time = 7200};
      out.end = {.kind = posix_date::month_week_day, .day = 0, .month = 11, .week = 1, .time = 7200};
      return true;
    }
    if (!consume(',') || !date(out.start) || !consume(',') || !date(out.end)) return false;
    return at_end();
  }

 private:
  bool at_end() const { return i_ >= s_.size(); }
  char peek() const { return at_end() ? '\0' : s_[i_]; }
  bool consume(char c) {
    if (peek() != c) return false;
    ++i_;
    return true;
  }
  bool name() {
    if (consume('<')) {
      while (!at_end() && peek() != '>') ++i_;
      return consume('>');
    }
    const std::size_t start = i_;
    while (!at_end() && ((peek() >= 'A' && peek() <= 'Z') || (peek() >= 'a' && peek() <= 'z'))) ++i_;
    return i_ - start >= 3;
  }
  bool number(int& v, int max_digits) {
    const std::size_t start = i_;
    v = 0;
    while (!at_end() && peek() >= '0' && peek() <= '9' && i_ - start < static_cast<std::size_t>(max_digits)) {
      v = v * 10 + (peek() - '0');
      ++i_;
    }
    return i_ > start;
  }
  // [+-]hh[:mm[:ss]] -> seconds (sign as written).
  bool offset(std::int32_t& out) {
    int sign = 1;
    if (consume('-')) {
      sign = -1;
    } else {
      consume('+');
    }
    int h = 0, m = 0, sec = 0;
    if (!number(h, 3)) return false;
    if (consume(':')) {
      if (!number(m, 2)) return false;
      if (consume(':') && !number(sec, 2)) return false;
    }
    out = sign * (h * 3600 + m * 60 + sec);
    return true;
  }
  bool date(posix_date& d) {
    if (consume('M')) {
      d.kind = posix_date::month_week_day;
      if (!number(d.month, 2) || !consume('.') || !number(d.week, 1) || !consume('.') || !number(d.day, 1)) return false;
      if (d.month < 1 || d.month > 12 || d.week < 1 || d.week > 5 || d.day > 6) return false;
    } else if (consume('J')) {
      d.kind = posix_date::julian_no_leap;
      if (!number(d.day, 3) || d.day < 1 || d.day > 365) return false;
    } else {
      d.kind = posix_date::zero_based;
      if (!number(d.day, 3) || d.day > 365) return false;
    }
    d.time = 7200;
    if (consume('/')) {
      std::int32_t t = 0;
      if (!offset(t)) return false;
      d.time = t;
    }
    return true;
  }

  std::string_view s_;
  std::size_t i_ = 0;
};

// Local seconds (wall clock of the zone's standard or DST time, as the rule
// says) at which `d` happens in `year`.
std::int64_t rule_local_seconds(const posix_date& d, std::int64_t year) {
  std::int64_t days = 0;
  switch (d.kind) {
    case posix_date::julian_no_leap: {
      // Day 1-365, February 29 never counted.
      days = days_from_civil(year, 1, 1) + d.day - 1;
      if (is_leap(year) && d.day >= 60) ++days;
      break;
    }
    case posix_date::zero_based:
      days = days_from_civil(year, 1, 1) + d.day;
      break;
    case posix_date::month_week_day: {
      const std::int64_t first = days_from_civil(year, d.month, 1);
      // 1970-01-01 was a Thursday (weekday 4).
      const std::int64_t first_weekday = ((first % 7) + 7 + 4) % 7;
      std::int64_t day = 1 + ((d.day - first_weekday) % 7 + 7) % 7 + (d.week - 1) * 7;
      const int last = days_in_month(year, d.month);
      while (day > last) day -= 7;
      days = first + day - 1;
      break;
    }
  }
  return days * 86400 + d.time;
}

std::int32_t posix_offset_at(const posix_rule& r, std::int64_t utc) {
  if (!r.has_dst) return r.std_offset;
  const std::int64_t year = civil_from_days(floor_div(utc + r.std_offset, 86400)).year;
  // Transitions to DST happen at local standard time; back to standard time
  // at local DST time.
  const std::int64_t start = rule_local_seconds(r.start, year) - r.std_offset;
  const std::int64_t end = rule_local_seconds(r.end, year) - r.dst_offset;
  const bool dst = start < end ? (utc >= start && utc < end) : !(utc >= end && utc < start);
  return dst ? r.dst_offset : r.std_offset;
}

std::uint32_t be32(const unsigned char* p) {
  return (static_cast<std::uint32_t>(p[0]) << 24) | (static_cast<std::uint32_t>(p[1]) << 16) |
         (static_cast<std::uint32_t>(p[2]) << 8) | static_cast<std::uint32_t>(p[3]);
}

std::int64_t be64(const unsigned char* p) {
  const std::uint64_t hi = be32(p);
  const std::uint64_t lo = be32(p + 4);
  return static_cast<std::int64_t>((hi << 32) | lo);
}

result<std::string> read_whole(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    return fail(errno == ENOENT ? errc::not_found : errc::io_error, std::string("cannot open: ") + std::strerror(errno));
  }
  std::string out;
  std::array<char, 8192> buf{};
  std::size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) out.append(buf.data(), n);
  const bool bad = std::ferror(f) != 0;
  std::fclose(f);
  if (bad) return fail(errc::io_error, "read failed");
  return out;
}

}  // namespace

struct time_zone::rules {
  std::string name;
  std::vector<std::int64_t> transitions;     // UTC seconds, ascending
  std::vector<std::int32_t> offsets;         // offset from transitions[i] on
  std::int32_t initial_offset = 0;           // before the first transition
  posix_rule footer;                         // after the last one, when valid
  std::int32_t max_shift = 0;                // largest |offset change|, for to_utc
};

namespace {

result<std::shared_ptr<const time_zone::rules>> parse_tzif(std::string_view data, std::string name) {
  auto bad = [] { return fail(errc::corrupt, "not a TZif time zone file"); };
  auto rules = std::make_shared<time_zone::rules>();
  rules->name = std::move(name);
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  std::size_t size = data.size();
  if (size < 44 || std::memcmp(p, "TZif", 4) != 0) return bad();
  const char version = static_cast<char>(p[4]);

  struct counts {
    std::size_t isut, isstd, leap, time, type, chars;
  };
  auto read_counts = [&](const unsigned char* h) {
    return counts{be32(h + 20), be32(h + 24), be32(h + 28), be32(h + 32), be32(h + 36), be32(h + 40)};
  };
  auto block_size = [](const counts& c, std::size_t time_size) {
    return c.time * time_size + c.time + c.type * 6 + c.chars + c.leap * (time_size + 4) + c.isstd + c.isut;
  };
  counts c = read_counts(p);
  std::size_t time_size = 4;
  const unsigned char* block = p + 44;
  std::size_t remaining = size - 44;
  if (version >= '2') {
    const std::size_t skip = block_size(c, 4);
    if (remaining < skip + 44) return bad();
    const unsigned char* h2 = block + skip;
    if (std::memcmp(h2, "TZif", 4) != 0) return bad();
    c = read_counts(h2);
    time_size = 8;
    block = h2 + 44;
    remaining = size - static_cast<std::size_t>(block - p);
  }
  if (c.type == 0 || remaining < block_size(c, time_size)) return bad();

  const unsigned char* times = block;
  const unsigned char* idx = times + c.time * time_size;
  const unsigned char* types = idx + c.time;
  auto type_offset = [&](std::size_t t) { return static_cast<std::int32_t>(be32(types + t * 6)); };
  rules->initial_offset = type_offset(0);
  rules->transitions.reserve(c.time);
  rules->offsets.reserve(c.time);
  std::int32_t previous = rules->initial_offset;
  for (std::size_t i = 0; i < c.time; ++i) {
    const std::int64_t t = time_size == 8 ? be64(times + i * 8) : static_cast<std::int32_t>(be32(times + i * 4));
    const std::size_t type = idx[i];
    if (type >= c.type) return bad();
    const std::int32_t off = type_offset(type);
    rules->transitions.push_back(t);
    rules->offsets.push_back(off);
    rules->max_shift = std::max(rules->max_shift, std::abs(off - previous));
    previous = off;
  }
  if (time_size == 8) {
    const unsigned char* end = block + block_size(c, 8);
    const std::string_view rest(reinterpret_cast<const char*>(end), size - static_cast<std::size_t>(end - p));
    if (rest.size() >= 2 && rest.front() == '\n') {
      const std::size_t close = rest.find('\n', 1);
      if (close != std::string_view::npos && close > 1) {
        posix_rule r;
        if (posix_parser(rest.substr(1, close - 1)).parse(r)) {
          rules->footer = r;
          if (r.has_dst) rules->max_shift = std::max(rules->max_shift, std::abs(r.dst_offset - r.std_offset));
        }
      }
    }
  }
  return std::shared_ptr<const time_zone::rules>(std::move(rules));
}

const std::shared_ptr<const time_zone::rules>& utc_rules() {
  static const std::shared_ptr<const time_zone::rules> utc = [] {
    auto r = std::make_shared<time_zone::rules>();
    r->name = "UTC";
    return std::shared_ptr<const time_zone::rules>(std::move(r));
  }();
  return utc;
}

}  // namespace

time_zone::time_zone() : rules_(utc_rules()) {}

time_zone time_zone::fixed(std::int32_t offset_seconds, std::string name) {
  auto r = std::make_shared<rules>();
  r->initial_offset = offset_seconds;
  if (name.empty()) {
    const std::int32_t a = std::abs(offset_seconds);
    char buf[48];
    std::snprintf(buf, sizeof buf, "%c%02d%02d", offset_seconds < 0 ? '-' : '+', a / 3600, (a / 60) % 60);
    name = buf;
  }
  r->name = std::move(name);
  return time_zone(std::shared_ptr<const rules>(std::move(r)));
}

result<time_zone> time_zone::load(std::string_view iana_name) {
  if (iana_name == "UTC" || iana_name == "Etc/UTC" || iana_name == "Z" || iana_name == "Etc/GMT" ||
      iana_name == "GMT") {
    return time_zone();
  }
  if (iana_name.empty() || iana_name.front() == '/' || iana_name.find("..") != std::string_view::npos) {
    return fail(errc::invalid_argument, "not a time zone name", std::string(iana_name));
  }
  const char* dir = std::getenv("TZDIR");
  const std::string path = std::string(dir != nullptr && *dir != '\0' ? dir : "/usr/share/zoneinfo") + "/" +
                           std::string(iana_name);
  auto data = read_whole(path);
  if (!data) {
    return fail(data.error().code, "time zone " + std::string(iana_name) + ": " + data.error().message, path);
  }
  auto r = parse_tzif(*data, std::string(iana_name));
  if (!r) return fail(r.error().code, "time zone " + std::string(iana_name) + ": " + r.error().message, path);
  return time_zone(std::move(*r));
}

const std::string& time_zone::name() const { return rules_->name; }

std::int32_t time_zone::offset_at(std::int64_t utc_seconds) const {
  const rules& r = *rules_;
  if (r.transitions.empty()) return r.footer.valid ? posix_offset_at(r.footer, utc_seconds) : r.initial_offset;
  if (utc_seconds < r.transitions.front()) return r.initial_offset;
  if (utc_seconds >= r.transitions.back() && r.footer.valid) return posix_offset_at(r.footer, utc_seconds);
  const auto it = std::upper_bound(r.transitions.begin(), r.transitions.end(), utc_seconds);
  return r.offsets[static_cast<std::size_t>(it - r.transitions.begin()) - 1];
}

std::int64_t time_zone::to_utc(std::int64_t local) const {
  const rules& r = *rules_;
  if (r.transitions.empty() && !r.footer.has_dst) return local - offset_at(local);
  // After the last transition of a zone without DST (Asia/Shanghai today):
  // one fixed offset, no search.
  if (r.footer.valid && !r.footer.has_dst && local - r.footer.std_offset > r.transitions.back() + 86400) {
    return local - r.footer.std_offset;
  }
  // The offsets in effect a while before and after this wall-clock time give
  // the candidates; a candidate is right when the zone agrees with it.
  const std::int64_t span = std::max<std::int64_t>(r.max_shift, 3600) + 86400;
  const std::int32_t before = offset_at(local - span);
  const std::int32_t after = offset_at(local + span);
  const std::int64_t u1 = local - before;
  const std::int64_t u2 = local - after;
  const bool ok1 = offset_at(u1) == before;
  const bool ok2 = offset_at(u2) == after;
  if (ok1 && ok2) return std::min(u1, u2);  // repeated hour: the earlier instant
  if (ok1) return u1;
  if (ok2) return u2;
  // Skipped hour: read with the offset before the change.
  return u1;
}

}  // namespace yilian
