// Field comparators used by the matcher: string similarity, date agreement
// tolerant of the typing errors registration desks make, phone numbers.
// All functions are pure and allocation-free (strings longer than 64 bytes are
// compared on their first 64).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "engine/identity/demographics.h"

namespace yilian::identity {

// Jaro similarity in [0,1] (Jaro 1989): matches within a window of
// max(|a|,|b|)/2 - 1, transpositions counted as half the out-of-order matches.
double jaro(std::string_view a, std::string_view b) noexcept;

// Jaro-Winkler (Winkler 1990): jaro + l * p * (1 - jaro) for a common prefix
// of l <= 4 characters, p = 0.1, applied when jaro > 0.7 (the "boost
// threshold"). MARTHA/MARHTA 0.961, DWAYNE/DUANE 0.840, DIXON/DICKSONX 0.813.
double jaro_winkler(std::string_view a, std::string_view b) noexcept;

// Optimal-string-alignment edit distance (insert, delete, substitute, swap
// adjacent), stopping early: returns limit + 1 once it exceeds `limit`.
int edit_distance(std::string_view a, std::string_view b, int limit) noexcept;

// How two birth dates agree, best first.
enum class date_agreement : std::uint8_t {
  exact,
  typo,       // one digit differs, two adjacent digits swapped, or day and month swapped
  partial,    // two of year, month, day agree
  disagree,
  missing,    // either side unknown
};
date_agreement compare_dates(civil_date a, civil_date b) noexcept;

// A phone number reduced to the digits that identify the line: separators
// dropped, the country code +86 / 0086 removed (a landline keeps or regains
// its trunk 0: "+86 10 6512 3456" -> "01065123456"), an extension after
// "ext"/"转"/"-" beyond the number ignored. Empty when fewer than 7 digits
// remain (no usable number).
std::string normalize_phone(std::string_view text);

}  // namespace yilian::identity
