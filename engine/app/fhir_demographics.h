// FHIR R4 renderings of the demographics value types (events.v1 common.proto)
// shared by every Patient the facade writes: the identity index's Patient
// (patient_fhir.cc) and the referral's contained Patient (referral_fhir.cc).
#pragma once

#include <string_view>

#include <nlohmann/json.hpp>

#include "yilian/events/v1/common.pb.h"

namespace yilian::app::fhir {

// http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation: a
// HumanName's script ("IDE" hanzi, "ABC" pinyin).
inline constexpr std::string_view name_representation =
    "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation";

// Patient.gender (male | female | other | unknown); "" when unspecified.
std::string_view gender_code(events::v1::Sex s);
// ContactPoint {system, value, use}; a system FHIR does not know is "other".
nlohmann::json contact_point(const events::v1::ContactPoint& c);
// Address {text, line[], city, district, state, postalCode}; empty fields left out.
nlohmann::json address(const events::v1::Address& a);

}  // namespace yilian::app::fhir
