// Delegated patient access (issue 5, report sharing: "who may read a report
// is ... the patient"; docs/patient-access.md).
//
// Patients are not principals of the configuration. The consortium's patient
// app backend — a configured principal of role patient_gateway, which has
// already authenticated the person (an SMS code, WeChat) — asks for a
// short-lived patient token:
//
//   POST /api/v1/patient-sessions   {"identifier": {"system": "urn:yilian:id:cn:resident", "value": "..."}}
//     201 {"token", "token_type": "Bearer", "expires_in", "expires_at", "enterprise_id"}
//     404 no person holds the identifier (the same answer whatever the reason)
//     503 patient access is not configured / its key did not resolve, or the
//         identity index is still reading its log
//
// The identifier is resolved to the enterprise patient id through the
// identity directory; the token (api::patient_token_key, HMAC-SHA256 under
// patient_access.token_key) names that id, its expiry, the gateway and a
// nonce. With it the person reads their own reports and referrals
// (report_api.h, referral_api.h); every other route answers 403
// (api::narrow_role). Every issue and every read is audited — ids only,
// never the identifier value.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "engine/api/audit.h"
#include "engine/api/auth.h"
#include "engine/api/router.h"
#include "engine/app/person_filter.h"
#include "engine/config/config.h"
#include "engine/identity/directory.h"

namespace yilian::app {

// The patient-token settings of a configuration, with the key resolved.
struct patient_tokens {
  std::shared_ptr<const api::patient_token_key> key;  // null: patient sessions answer 503
  std::string unavailable;                            // why key is null (names the reference, never a value)
  std::chrono::seconds lifetime{900};
};

// Resolves patient_access.token_key the way every secret reference of the
// configuration is resolved (environment variable or file). Never fails: a
// missing or unusable key disables patient sessions and says why in
// `unavailable` (the engine logs it once and keeps serving everything else).
patient_tokens patient_tokens_from(const config::loaded_consortium& cfg);

using system_clock_fn = std::function<std::chrono::system_clock::time_point()>;

struct patient_session_options {
  const identity::directory* directory = nullptr;  // null: 503
  // Whether the index has read its log up to where it was at start (a 404
  // before that would be a lie); unset: always ready.
  std::function<bool()> ready;
  patient_tokens tokens;
  system_clock_fn now;  // the system clock when unset
};

void add_patient_session_routes(api::router& routes, patient_session_options options, api::audit_log& audit);

// The person a patient principal is, as the identity index links them now
// (the filter of `?patient=<enterprise id>`: links, splits and merges are
// followed at query time). unavailable without an index; invalid_argument
// for a principal that is not a patient.
result<person_filter> patient_person(const api::principal& p, const identity::directory* directory);

}  // namespace yilian::app
