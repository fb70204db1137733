// Helpers shared by the identity tests: valid resident IDs and records.
#pragma once

#include <string>

#include "engine/identity/demographics.h"
#include "engine/identity/index.h"
#include "engine/identity/resident_id.h"

namespace yilian::identity::test {

inline const std::string mrn_a = "urn:yilian:h-a:mrn";
inline const std::string mrn_b = "urn:yilian:h-b:mrn";
inline const std::string rid_system = "urn:yilian:resident-id";
inline const std::string insurance_system = "urn:yilian:insurance";

// A valid 18-character resident ID for a birth date and sequence.
inline std::string make_rid(std::string_view region, civil_date born, int sequence) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6s%04d%02d%02d%03d", std::string(region).c_str(), born.year, born.month, born.day,
                sequence % 1000);
  std::string s(buf, 17);
  s.push_back(resident_id_check_character(s));
  return s;
}

// The same number with a wrong check character.
inline std::string break_check(std::string rid) {
  rid[17] = rid[17] == '0' ? '1' : '0';
  return rid;
}

inline identity_options test_options() {
  identity_options o;
  o.resident_id_systems = {rid_system};
  o.card_systems = {insurance_system, ""};
  return o;
}

struct person_spec {
  std::string hospital = "h-a";
  std::string mrn_system = mrn_a;
  std::string mrn;
  std::string family, given;
  civil_date born;
  enum sex sex = sex::unknown;
  std::string rid, insurance, phone, city;
};

inline source_record make_record(const person_spec& p) {
  source_record r{.hospital = p.hospital};
  if (!p.mrn.empty()) r.identifiers.push_back({.system = p.mrn_system, .value = p.mrn});
  if (!p.rid.empty()) r.identifiers.push_back({.system = rid_system, .value = p.rid});
  if (!p.insurance.empty()) r.identifiers.push_back({.system = insurance_system, .value = p.insurance});
  r.demo.family_name = p.family;
  r.demo.given_name = p.given;
  r.demo.birth_date = p.born;
  r.demo.sex = p.sex;
  r.demo.phone = p.phone;
  r.demo.city = p.city;
  return r;
}

}  // namespace yilian::identity::test
