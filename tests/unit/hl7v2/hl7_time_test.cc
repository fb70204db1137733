#include <string>

#include <catch2/catch.hpp>
#include <google/protobuf/util/time_util.h>

#include "adapters/hl7v2/hl7_time.h"

using namespace yilian;
using namespace yilian::hl7v2;
using google::protobuf::util::TimeUtil;

namespace {

std::string iso(const google::protobuf::Timestamp& t) { return TimeUtil::ToString(t); }

std::string at(std::string_view dtm, const time_zone& zone) {
  auto t = parse_timestamp(dtm, zone);
  REQUIRE(t.has_value());
  return iso(*t);
}

time_zone zone(std::string_view name) {
  auto z = time_zone::load(name);
  REQUIRE(z.has_value());
  return *z;
}

}  // namespace

TEST_CASE("every DTM precision from year to fractions of a second is read as the start of its period", "[unit]") {
  const time_zone utc;
  CHECK(at("2025", utc) == "2025-01-01T00:00:00Z");
  CHECK(at("202506", utc) == "2025-06-01T00:00:00Z");
  CHECK(at("20250615", utc) == "2025-06-15T00:00:00Z");
  CHECK(at("2025061508", utc) == "2025-06-15T08:00:00Z");
  CHECK(at("202506150830", utc) == "2025-06-15T08:30:00Z");
  CHECK(at("20250615083015", utc) == "2025-06-15T08:30:15Z");
  CHECK(at("20250615083015.1", utc) == "2025-06-15T08:30:15.100Z");
  CHECK(at("20250615083015.1234", utc) == "2025-06-15T08:30:15.123400Z");

  auto v = parse_dtm("202506150830");
  REQUIRE(v.has_value());
  CHECK(v->precision == dtm_precision::minute);
  CHECK_FALSE(v->has_offset);
}

TEST_CASE("an explicit offset wins over the zone; without one the zone's offset applies", "[unit]") {
  const time_zone shanghai = zone("Asia/Shanghai");
  CHECK(at("20250615083000", shanghai) == "2025-06-15T00:30:00Z");
  CHECK(at("20250615083000+0800", time_zone()) == "2025-06-15T00:30:00Z");
  CHECK(at("20250615083000-0500", shanghai) == "2025-06-15T13:30:00Z");
  CHECK(at("20250615+0800", time_zone()) == "2025-06-14T16:00:00Z");
  CHECK(at("20250101000000", time_zone::fixed(8 * 3600)) == "2024-12-31T16:00:00Z");
  CHECK(shanghai.name() == "Asia/Shanghai");
}

TEST_CASE("historical rules come from the transitions, later ones from the POSIX footer", "[unit]") {
  const time_zone shanghai = zone("Asia/Shanghai");
  // China observed DST from 1986 to 1991.
  CHECK(at("19880701120000", shanghai) == "1988-07-01T03:00:00Z");
  CHECK(at("20400101000000", shanghai) == "2039-12-31T16:00:00Z");

  const time_zone ny = zone("America/New_York");
  CHECK(at("20250115120000", ny) == "2025-01-15T17:00:00Z");  // EST
  CHECK(at("20250715120000", ny) == "2025-07-15T16:00:00Z");  // EDT
  CHECK(at("20600715120000", ny) == "2060-07-15T16:00:00Z");  // beyond any transition list: the footer rule
  CHECK(at("20601215120000", ny) == "2060-12-15T17:00:00Z");
}

TEST_CASE("a skipped local time moves forward; a repeated one takes the earlier instant", "[unit]") {
  const time_zone ny = zone("America/New_York");
  // 2025-03-09 02:30 does not exist in New York (clocks jump 02:00 -> 03:00).
  CHECK(at("20250309023000", ny) == "2025-03-09T07:30:00Z");
  // 2025-11-02 01:30 happens twice (EDT, then EST): the first one.
  CHECK(at("20251102013000", ny) == "2025-11-02T05:30:00Z");
}

TEST_CASE("malformed date/times are refused with the reason, never the value", "[unit]") {
  for (const char* bad : {"", "25", "2025013", "20251301", "20250230", "2025061525", "202506151261",
                          "20250615120061", "2025061512.5", "20250615120000.", "20250615120000+08",
                          "20250615120000+2500", "2025-06-15", "20250615120000.1234567890"}) {
    INFO(bad);
    auto v = parse_dtm(bad);
    REQUIRE_FALSE(v.has_value());
    CHECK(v.error().code == errc::validation_failed);
    if (std::string(bad).size() > 4) CHECK(v.error().message.find(bad) == std::string::npos);
  }
  // A leap second is read as the last second of its minute.
  CHECK(at("20161231235960", time_zone()) == "2016-12-31T23:59:59Z");
}

TEST_CASE("dates without a time of day keep what the sender wrote", "[unit]") {
  CHECK(dtm_date("19800312").value() == "1980-03-12");
  CHECK(dtm_date("19800312000000").value() == "1980-03-12");
  CHECK(dtm_date("198003120000+0800").value() == "1980-03-12");
  CHECK(dtm_date("198003").value() == "1980-03");
  CHECK(dtm_date("1980").value() == "1980");
  CHECK_FALSE(dtm_date("19801312").has_value());
  CHECK_FALSE(dtm_date("80-03-12").has_value());
}

TEST_CASE("zone names are checked before any file is opened", "[unit]") {
  CHECK(time_zone::load("UTC").value().offset_at(0) == 0);
  CHECK(time_zone::load("../etc/passwd").error().code == errc::invalid_argument);
  CHECK(time_zone::load("/etc/passwd").error().code == errc::invalid_argument);
  CHECK(time_zone::load("Mars/Olympus_Mons").error().code == errc::not_found);
}
