#include "engine/identity/resident_id.h"

#include <array>
#include <chrono>
#include <cstdint>

namespace yilian::identity {

bool is_real_date(int year, int month, int day) noexcept {
  if (year < 1 || month < 1 || month > 12 || day < 1) return false;
  static constexpr std::array<int, 12> days{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  const int limit = days[static_cast<std::size_t>(month - 1)] + ((month == 2 && leap) ? 1 : 0);
  return day <= limit;
}

civil_date today_utc() noexcept {
  const auto today = std::chrono::floor<std::chrono::days>(std::chrono::system_clock::now());
  const std::chrono::year_month_day ymd{today};
  return civil_date{.year = static_cast<std::int16_t>(static_cast<int>(ymd.year())),
                    .month = static_cast<std::uint8_t>(static_cast<unsigned>(ymd.month())),
                    .day = static_cast<std::uint8_t>(static_cast<unsigned>(ymd.day()))};
}

std::string_view to_string(resident_id_rule rule) noexcept {
  switch (rule) {
    case resident_id_rule::length: return "length";
    case resident_id_rule::characters: return "characters";
    case resident_id_rule::region: return "region";
    case resident_id_rule::birth_date: return "birth_date";
    case resident_id_rule::check_digit: return "check_digit";
  }
  return "unknown";
}

namespace {

constexpr std::string_view where_prefix = "resident_id.";

std::unexpected<error> reject(resident_id_rule rule, std::string message) {
  return fail(errc::validation_failed, std::move(message), std::string(where_prefix) + std::string(to_string(rule)));
}

bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }
int digit(char c) noexcept { return c - '0'; }

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r' || s.front() == '\n')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) s.remove_suffix(1);
  return s;
}

}  // namespace

bool is_province_code(int two_digits) noexcept {
  const int t = two_digits;
  return (t >= 11 && t <= 15) || (t >= 21 && t <= 23) || (t >= 31 && t <= 37) || (t >= 41 && t <= 46) ||
         (t >= 50 && t <= 54) || (t >= 61 && t <= 65) || t == 71 || t == 81 || t == 82 || t == 91;
}

char resident_id_check_character(std::string_view first17) noexcept {
  // ISO 7064 MOD 11-2: weight of position i (1-based from the right, the check
  // character being position 1) is 2^(i-1) mod 11.
  static constexpr std::array<int, 17> weights{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
  static constexpr std::string_view by_remainder = "10X98765432";
  int sum = 0;
  for (std::size_t i = 0; i < 17 && i < first17.size(); ++i) sum += digit(first17[i]) * weights[i];
  return by_remainder[static_cast<std::size_t>(sum % 11)];
}

result<resident_id> parse_resident_id(std::string_view text, civil_date today) {
  const std::string_view s = trim(text);
  if (s.size() != 18 && s.size() != 15) {
    return reject(resident_id_rule::length,
                  "resident ID must have 18 characters (or 15 for the legacy form), got " + std::to_string(s.size()));
  }
  std::string number;
  number.reserve(18);
  if (s.size() == 15) {
    for (std::size_t i = 0; i < 15; ++i) {
      if (!is_digit(s[i])) {
        return reject(resident_id_rule::characters,
                      "legacy 15-digit resident ID has a non-digit at position " + std::to_string(i + 1));
      }
    }
    number.append(s.substr(0, 6));
    number.append("19");
    number.append(s.substr(6));
  } else {
    for (std::size_t i = 0; i < 17; ++i) {
      if (!is_digit(s[i])) {
        return reject(resident_id_rule::characters, "resident ID has a non-digit at position " + std::to_string(i + 1));
      }
    }
    const char last = s[17];
    if (!is_digit(last) && last != 'X' && last != 'x') {
      return reject(resident_id_rule::characters, "resident ID check character (position 18) must be 0-9 or X");
    }
    number.append(s);
    if (number[17] == 'x') number[17] = 'X';
  }

  const int province = digit(number[0]) * 10 + digit(number[1]);
  if (!is_province_code(province)) {
    return reject(resident_id_rule::region,
                  "resident ID region code (positions 1-2) is not a province-level division");
  }
  // Region codes below the province are not checked against a list: codes are
  // re-issued when districts change and old numbers stay valid for life.

  const int year = digit(number[6]) * 1000 + digit(number[7]) * 100 + digit(number[8]) * 10 + digit(number[9]);
  const int month = digit(number[10]) * 10 + digit(number[11]);
  const int day = digit(number[12]) * 10 + digit(number[13]);
  if (year < 1900 || !is_real_date(year, month, day)) {
    return reject(resident_id_rule::birth_date, "resident ID birth date (positions 7-14) is not a real date since 1900");
  }
  const civil_date born{.year = static_cast<std::int16_t>(year), .month = static_cast<std::uint8_t>(month),
                        .day = static_cast<std::uint8_t>(day)};
  if (today.known() && today < born) {
    return reject(resident_id_rule::birth_date, "resident ID birth date (positions 7-14) is in the future");
  }

  const char expected = resident_id_check_character(std::string_view(number).substr(0, 17));
  if (s.size() == 18) {
    if (number[17] != expected) {
      return reject(resident_id_rule::check_digit,
                    "resident ID check character (position 18) does not match ISO 7064 MOD 11-2 of positions 1-17");
    }
  } else {
    number.push_back(expected);
  }

  const int sequence_last = digit(number[16]);
  return resident_id{.number = std::move(number), .birth_date = born,
                     .sex = (sequence_last % 2 == 1) ? sex::male : sex::female,
                     .converted_from_15 = s.size() == 15};
}

std::optional<resident_id_rule> failed_rule(const error& e) {
  if (!e.where.starts_with(where_prefix)) return std::nullopt;
  const std::string_view rule = std::string_view(e.where).substr(where_prefix.size());
  for (auto r : {resident_id_rule::length, resident_id_rule::characters, resident_id_rule::region,
                 resident_id_rule::birth_date, resident_id_rule::check_digit}) {
    if (rule == to_string(r)) return r;
  }
  return std::nullopt;
}

std::string normalize_card_number(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == ' ' || c == '-' || c == '\t' || c == '\r' || c == '\n') continue;
    out.push_back((c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c);
  }
  return out;
}

}  // namespace yilian::identity
