#include <catch2/catch.hpp>

#include "engine/identity/resident_id.h"

using namespace yilian::identity;

namespace {
const civil_date today{.year = 2024, .month = 6, .day = 1};

std::optional<resident_id_rule> rule_of(std::string_view id) {
  auto r = parse_resident_id(id, today);
  if (r) return std::nullopt;
  return failed_rule(r.error());
}
}  // namespace

TEST_CASE("the GB 11643 example number validates with its birth date and sex", "[unit]") {
  auto r = parse_resident_id("11010519491231002X", today);
  REQUIRE(r);
  CHECK(r->number == "11010519491231002X");
  CHECK(r->birth_date == civil_date{.year = 1949, .month = 12, .day = 31});
  CHECK(r->sex == sex::female);  // sequence 002: even
  CHECK_FALSE(r->converted_from_15);
}

TEST_CASE("the MOD 11-2 check character follows ISO 7064", "[unit]") {
  CHECK(resident_id_check_character("11010519491231002") == 'X');
  CHECK(resident_id_check_character("44052418800101001") == '4');
  CHECK(resident_id_check_character("00000000000000000") == '1');  // remainder 0 -> '1'
}

TEST_CASE("a lowercase x and surrounding spaces are accepted and normalized", "[unit]") {
  auto r = parse_resident_id("  11010519491231002x\t", today);
  REQUIRE(r);
  CHECK(r->number == "11010519491231002X");
}

TEST_CASE("an odd sequence number means male", "[unit]") {
  std::string first17 = "32010219800101001";
  auto r = parse_resident_id(first17 + resident_id_check_character(first17), today);
  REQUIRE(r);
  CHECK(r->sex == sex::male);
}

TEST_CASE("each broken rule is named in the error", "[unit]") {
  CHECK(rule_of("1101051949123100") == resident_id_rule::length);
  CHECK(rule_of("") == resident_id_rule::length);
  CHECK(rule_of("1101051949123100AX") == resident_id_rule::characters);
  CHECK(rule_of("11010519491231002Y") == resident_id_rule::characters);
  // Province 99 does not exist; fix the check digit so only the region is wrong.
  std::string bad_region = "99010519491231002";
  CHECK(rule_of(bad_region + resident_id_check_character(bad_region)) == resident_id_rule::region);
  std::string feb30 = "11010519490230002";
  CHECK(rule_of(feb30 + resident_id_check_character(feb30)) == resident_id_rule::birth_date);
  std::string future = "11010520990101002";
  CHECK(rule_of(future + resident_id_check_character(future)) == resident_id_rule::birth_date);
  // The standard's other example has a valid check digit but an 1880 birth date.
  CHECK(rule_of("440524188001010014") == resident_id_rule::birth_date);
  CHECK(rule_of("110105194912310021") == resident_id_rule::check_digit);
}

TEST_CASE("a leap day is a real birth date only in leap years", "[unit]") {
  std::string leap = "11010520000229001", not_leap = "11010519000229001";
  CHECK(parse_resident_id(leap + resident_id_check_character(leap), today));
  CHECK(rule_of(not_leap + resident_id_check_character(not_leap)) == resident_id_rule::birth_date);
}

TEST_CASE("a single-digit typo or an adjacent swap never passes the check digit", "[unit]") {
  const std::string good = "11010519491231002X";
  for (std::size_t i = 0; i < 17; ++i) {
    for (char d = '0'; d <= '9'; ++d) {
      if (d == good[i]) continue;
      std::string typo = good;
      typo[i] = d;
      auto r = parse_resident_id(typo, today);
      CHECK_FALSE(r);
    }
    if (i + 1 < 17 && good[i] != good[i + 1]) {
      std::string swapped = good;
      std::swap(swapped[i], swapped[i + 1]);
      CHECK_FALSE(parse_resident_id(swapped, today));
    }
  }
}

TEST_CASE("a legacy 15-digit number is converted to 18 with the century and check digit", "[unit]") {
  auto r = parse_resident_id("110105491231002", today);
  REQUIRE(r);
  CHECK(r->number == "11010519491231002X");
  CHECK(r->converted_from_15);
  CHECK(r->birth_date.year == 1949);
  CHECK(rule_of("11010549123100A") == resident_id_rule::characters);
  CHECK(rule_of("110105491331002") == resident_id_rule::birth_date);  // month 13
}

TEST_CASE("error messages never repeat the number", "[unit]") {
  for (std::string_view id : {"110105194912310021", "99010519491231002X", "1101051949123100AX"}) {
    auto r = parse_resident_id(id, today);
    REQUIRE_FALSE(r);
    CHECK(r.error().message.find(std::string(id.substr(0, 10))) == std::string::npos);
    CHECK(r.error().code == yilian::errc::validation_failed);
  }
}

TEST_CASE("card numbers are opaque: trimmed, uppercased, spaces and hyphens dropped", "[unit]") {
  CHECK(normalize_card_number(" a12-345 678 ") == "A12345678");
  CHECK(normalize_card_number("") == "");
}

TEST_CASE("province codes are the GB/T 2260 province-level divisions", "[unit]") {
  for (int c : {11, 15, 21, 23, 31, 37, 41, 46, 50, 54, 61, 65, 71, 81, 82, 91}) CHECK(is_province_code(c));
  for (int c : {0, 10, 16, 20, 24, 30, 38, 40, 47, 49, 55, 60, 66, 70, 72, 80, 83, 90, 92, 99}) {
    CHECK_FALSE(is_province_code(c));
  }
}
