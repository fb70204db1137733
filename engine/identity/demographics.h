// The plain data the identity index is fed with: one hospital's view of one
// patient (its identifiers and demographics) as the HL7/FHIR adapters map it.
// Everything here is raw, as received (hanzi or pinyin, typos, blanks); the
// matcher normalizes it (see features.h). No I/O, no virtuals.
#pragma once

#include <compare>
#include <cstdint>
#include <string>
#include <vector>

namespace yilian::identity {

// A calendar date; 0 in a component means "unknown". Not a time point: birth
// dates are civil dates with no zone.
struct civil_date {
  std::int16_t year = 0;
  std::uint8_t month = 0;
  std::uint8_t day = 0;

  bool known() const noexcept { return year != 0 && month != 0 && day != 0; }
  // YYYYMMDD as an integer (0 when unknown) — compact storage and a cheap key.
  std::uint32_t packed() const noexcept {
    return known() ? static_cast<std::uint32_t>(year) * 10000U + month * 100U + day : 0U;
  }
  static civil_date unpack(std::uint32_t yyyymmdd) noexcept {
    return civil_date{.year = static_cast<std::int16_t>(yyyymmdd / 10000U),
                      .month = static_cast<std::uint8_t>(yyyymmdd / 100U % 100U),
                      .day = static_cast<std::uint8_t>(yyyymmdd % 100U)};
  }
  auto operator<=>(const civil_date&) const = default;
  bool operator==(const civil_date&) const = default;
};

// Whether y-m-d exists in the proleptic Gregorian calendar.
bool is_real_date(int year, int month, int day) noexcept;
// Today's date in UTC (birth-date plausibility checks).
civil_date today_utc() noexcept;

enum class sex : std::uint8_t { unknown, male, female, other };

// (system, value): the system is the consortium identifier system the hospital
// profile derives from the assigning authority (e.g. "urn:yilian:h1:mrn").
struct identifier {
  std::string system;
  std::string value;
  bool operator==(const identifier&) const = default;
};

// Demographics as one source holds them. Family/given may both be filled
// (PID-5.1/5.2) or the whole name may sit in one of them (a clinic's free text
// "张三" or "ZHANG SAN"); the normalizer copes with either.
struct demographics {
  std::string family_name;
  std::string given_name;
  civil_date birth_date;
  enum sex sex = sex::unknown;
  std::string phone;
  // Address parts. Chinese sources usually fill `line1` (free text) and
  // `city`; the Febrl evaluation uses all of them.
  std::string street_number;
  std::string line1;
  std::string line2;
  std::string city;  // city / district / suburb
  std::string postcode;
  std::string province;  // province / state
  bool operator==(const demographics&) const = default;
};

// One hospital's record of one patient. `identifiers` holds every identifier
// the source sent; which systems are record keys (MRN: same pair, same
// person), the resident ID, or a person-level card (insurance, health card) is
// decided by identity::options, not by the caller.
struct source_record {
  std::string hospital;
  std::vector<identifier> identifiers;
  demographics demo;
  bool operator==(const source_record&) const = default;
};

}  // namespace yilian::identity
