// What the patient endpoints share, REST (patient_api.cc) and FHIR
// (patient_fhir.cc): the sharing rules (who may see which person and which
// of its records' demographics), the JSON of a person, the identifier
// systems the consortium knows, and sending an operator's command to the
// identity index and waiting for its outcome.
//
// Sharing rules (docs/patients.md), in one place so REST and FHIR cannot
// drift apart:
//   - a consortium-wide operator (role operator, no hospital) sees everything
//     and alone may read the review queue and decide (accept, reject, split,
//     move);
//   - any other principal of hospital H (hospital system, clinic user, an
//     operator bound to H) sees a person only when the person has a record at
//     H — else the person does not exist for it (404, absent from searches),
//     so nobody learns that a patient is known elsewhere; it sees the
//     identifiers of all the person's records (the cross-reference is the
//     point) but the demographics of H's own records only.
// Audit records and logs carry enterprise ids, never names, ID numbers or
// phone numbers.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <nlohmann/json.hpp>

#include "engine/api/http.h"
#include "engine/config/config.h"
#include "engine/identity/directory.h"
#include "engine/workflows/identity/service.h"

namespace yilian::app::patients {

namespace wi = workflows::identity;

// The identifier system of the enterprise id itself (FHIR Identifier.system
// of "YL000000042"; a PIXm sourceIdentifier / targetSystem).
inline constexpr std::string_view enterprise_system = "urn:yilian:enterprise-patient";

// The caller's rights over persons (see the top of this file).
class access {
 public:
  explicit access(const api::principal& p);

  // A consortium-wide operator: every person, every record's demographics.
  bool everything() const noexcept { return everything_; }
  // Review queue and link commands.
  bool may_decide() const noexcept { return everything_; }
  const std::string& hospital() const noexcept { return hospital_; }

  bool may_read(const wi::person_info& p) const;
  bool may_read(const identity::cross_reference& x) const;
  bool sees_demographics(const wi::record_info& r) const;

 private:
  bool everything_ = false;
  std::string hospital_;
};

// "MRN" for IDENTIFIER_TYPE_MRN ("" when unspecified).
std::string type_name(events::v1::IdentifierType t);

// The identifier type the profiles give a system (MRN, RESIDENT_ID, ...);
// IDENTIFIER_TYPE_ENTERPRISE for enterprise_system.
events::v1::IdentifierType type_of_system(const config::loaded_consortium& cfg, std::string_view system);
// Whether the system is a patient identity domain of the consortium (an
// identifier authority of some hospital profile, or enterprise_system).
bool known_system(const config::loaded_consortium& cfg, std::string_view system);

// "system|value" (FHIR token, PIXm sourceIdentifier) -> (system, value); both
// must be present. Errors name `where`.
result<std::pair<std::string, std::string>> parse_token(std::string_view token, std::string_view where);

// REST JSON (snake_case, enums by their proto names as in the booking and
// referral endpoints):
//   identifier {"system","value","type":"IDENTIFIER_TYPE_MRN","assigner"}
//   demographics {"name":{"hanzi","pinyin","family","given"},"birth_date","sex":"SEX_FEMALE",
//                 "telecom":[{"system","value","use"}],"addresses":[{"text","province","city",
//                 "district","line","postal_code"}],"deceased","ethnic_group":{code,display}}
//   person {"enterprise_id","records":[{"hospital","hospital_name","identifiers":[...],
//           "observed_only","demographics"{...} | "demographics_withheld":true}]}
nlohmann::json identifier_json(const events::v1::Identifier& id);
// {"system","code","display"}, or null when the coding has neither code nor display.
nlohmann::json coding_json(const events::v1::Coding& c);
nlohmann::json person_json(const wi::person_info& p, const access& who, const config::loaded_consortium& cfg);

// The person an enterprise id or an identifier names, as this caller may see
// it: nullopt when unknown *or* not visible (the two look the same).
std::optional<wi::person_info> visible_person(const wi::view& v, const access& who, std::string_view enterprise_id);
std::optional<wi::person_info> visible_person_of(const wi::view& v, const access& who, std::string_view system,
                                                 std::string_view value);

// Reads answer 503 while the view has not read the identity log up to where
// it was at start: "not found" would otherwise be a lie.
result<void> ready(const wi::service& svc);

// Publishes the command to the identity log and waits for this instance's
// view to apply it, at most `timeout` (then errc::timeout: send it again with
// the same command id to get its outcome). Resumes on the caller's executor.
boost::asio::awaitable<result<wi::command_outcome>> submit(wi::service& svc, events::v1::PatientLinkCommand command,
                                                           std::string actor_hospital,
                                                           std::chrono::milliseconds timeout);

// The command id for the caller: body "command_id" or the Idempotency-Key
// header, scoped to the principal (stable, so a retry gets the first
// outcome), else random.
std::string command_id_for(const api::request& req, std::string_view given);

}  // namespace yilian::app::patients
