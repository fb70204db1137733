// Chinese resident identity card numbers (居民身份证号码, GB 11643-1999) and
// the normalization of other person-level card numbers.
//
// An 18-character number is: 6-digit administrative region code, birth date
// YYYYMMDD, 3-digit sequence (odd = male, even = female) and an ISO 7064
// MOD 11-2 check character (0-9 or X). Legacy 15-digit numbers (YYMMDD birth
// date, no check character) are converted to 18 by inserting "19" and
// computing the check character.
//
// A number that fails any rule must never be used to link records (a typo'd
// number could be somebody else's), so parse_resident_id() is the only way in.
// Error messages say which rule failed and at which character position; they
// never repeat the number itself, so they are safe to log.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "engine/core/error.h"
#include "engine/identity/demographics.h"

namespace yilian::identity {

struct resident_id {
  std::string number;  // 18 characters, check character uppercase
  civil_date birth_date;
  enum sex sex = sex::unknown;
  bool converted_from_15 = false;
  bool operator==(const resident_id&) const = default;
};

// Which rule a rejected number broke (also in error::where as "resident_id.<rule>").
enum class resident_id_rule { length, characters, region, birth_date, check_digit };
std::string_view to_string(resident_id_rule rule) noexcept;

// Validates and normalizes. Surrounding whitespace is ignored and a lowercase
// x is accepted. `today` bounds the birth date (not in the future). Errors are
// errc::validation_failed with where = "resident_id.<rule>" (and the position).
result<resident_id> parse_resident_id(std::string_view text, civil_date today);
inline result<resident_id> parse_resident_id(std::string_view text) {
  return parse_resident_id(text, today_utc());
}
// The rule that failed, if the error came from parse_resident_id.
std::optional<resident_id_rule> failed_rule(const error& e);

// MOD 11-2 check character ('0'..'9' or 'X') of the first 17 digits.
// Precondition: first17 is 17 ASCII digits.
char resident_id_check_character(std::string_view first17) noexcept;

// Whether the two leading digits name a province-level division
// (11-15, 21-23, 31-37, 41-46, 50-54, 61-65, 71, 81, 82, 91).
bool is_province_code(int two_digits) noexcept;

// Medical-insurance and health card numbers have no nationally documented
// check rule that holds across regions (the social security number is the
// resident ID; card serials are regional), so they are opaque: trimmed,
// uppercased, with spaces and hyphens removed. Empty result = no number.
std::string normalize_card_number(std::string_view text);

}  // namespace yilian::identity
