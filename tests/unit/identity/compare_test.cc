#include <catch2/catch.hpp>

#include "engine/identity/compare.h"

using namespace yilian::identity;
using Catch::Detail::Approx;

TEST_CASE("Jaro-Winkler matches the published values", "[unit]") {
  // Winkler (1990) / the textbook examples.
  CHECK(jaro_winkler("MARTHA", "MARHTA") == Approx(0.961).margin(0.0005));
  CHECK(jaro_winkler("DWAYNE", "DUANE") == Approx(0.840).margin(0.0005));
  CHECK(jaro_winkler("DIXON", "DICKSONX") == Approx(0.813).margin(0.0005));
  CHECK(jaro("MARTHA", "MARHTA") == Approx(0.944).margin(0.0005));
  CHECK(jaro("DWAYNE", "DUANE") == Approx(0.822).margin(0.0005));
  CHECK(jaro("DIXON", "DICKSONX") == Approx(0.767).margin(0.0005));
}

TEST_CASE("Jaro-Winkler edge cases", "[unit]") {
  CHECK(jaro_winkler("", "") == 1.0);
  CHECK(jaro_winkler("a", "") == 0.0);
  CHECK(jaro_winkler("abc", "abc") == 1.0);
  CHECK(jaro_winkler("abc", "xyz") == 0.0);
  CHECK(jaro_winkler("ab", "ba") == Approx(0.0));  // window 0: no matches
  CHECK(jaro_winkler("zhangsan", "zhangshan") > 0.94);
  CHECK(jaro_winkler(std::string(200, 'a'), std::string(200, 'a')) == 1.0);
}

TEST_CASE("edit distance counts adjacent swaps as one and stops at the limit", "[unit]") {
  CHECK(edit_distance("4066625", "4066625", 1) == 0);
  CHECK(edit_distance("4066625", "4066652", 1) == 1);
  CHECK(edit_distance("4066625", "4066620", 1) == 1);
  CHECK(edit_distance("4066625", "406662", 1) == 1);
  CHECK(edit_distance("4066625", "5066620", 1) == 2);
  CHECK(edit_distance("abc", "abcdef", 1) == 2);
}

TEST_CASE("birth dates agree despite typing errors", "[unit]") {
  const civil_date d{.year = 1985, .month = 3, .day = 7};
  CHECK(compare_dates(d, d) == date_agreement::exact);
  CHECK(compare_dates(d, {.year = 1985, .month = 7, .day = 3}) == date_agreement::typo);   // day/month swapped
  CHECK(compare_dates(d, {.year = 1986, .month = 3, .day = 7}) == date_agreement::typo);   // one digit
  CHECK(compare_dates(d, {.year = 1958, .month = 3, .day = 7}) == date_agreement::typo);   // adjacent digits swapped
  CHECK(compare_dates(d, {.year = 1985, .month = 3, .day = 28}) == date_agreement::partial);
  CHECK(compare_dates(d, {.year = 1972, .month = 11, .day = 7}) == date_agreement::disagree);
  CHECK(compare_dates(d, {}) == date_agreement::missing);
}

TEST_CASE("phone numbers are reduced to the line's digits", "[unit]") {
  CHECK(normalize_phone("138-0013-8000") == "13800138000");
  CHECK(normalize_phone("+86 138 0013 8000") == "13800138000");
  CHECK(normalize_phone("0086 13800138000") == "13800138000");
  CHECK(normalize_phone("8613800138000") == "13800138000");
  CHECK(normalize_phone("+86 10 6512 3456") == "01065123456");
  CHECK(normalize_phone("(010) 6512-3456") == "01065123456");
  CHECK(normalize_phone("010-65123456 ext 12") == "01065123456");
  CHECK(normalize_phone("010-65123456转12") == "01065123456");
  CHECK(normalize_phone("12345") == "");
  CHECK(normalize_phone("") == "");
}
