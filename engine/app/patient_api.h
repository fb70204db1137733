// The identity index's REST endpoints under /api/v1 (issue 6; DESIGN.md
// "Identity"; docs/patients.md):
//
//   GET  /api/v1/patients?identifier=<system>|<value>
//        the person holding the identifier: {"patients":[person]} or {"patients":[]}
//   GET  /api/v1/patients?family=&given=&name=&birth_date=&sex=&phone=&limit=
//        persons that may be the one described, best first, each with
//        "match":{"verdict":"link|review|no_link","score_bits"}; nothing is stored
//   GET  /api/v1/patients/{enterprise_id}          the person (an id merged away
//        answers the survivor): records, each with hospital, identifiers and
//        demographics where the sharing rules allow
//   GET  /api/v1/patients/{enterprise_id}/history  the link decisions that touched
//        the person, oldest first (PatientLinkChanged as JSON)
//   GET  /api/v1/patient-reviews?state=open|all    the review queue (consortium operators)
//   POST /api/v1/patient-reviews/{id}/accept|reject   {"command_id"?, "reason"?}
//   POST /api/v1/patients/{enterprise_id}/split    {"identifier":{"system","value"},"reason"}
//        the record with that identifier leaves the person and becomes a new one
//   POST /api/v1/patients/{enterprise_id}/records  {"identifier":{"system","value"},"reason"}
//        the record with that identifier moves into this person
//
// Commands (consortium operators only, 403 for anyone else) go to the
// identity log; the answer is the outcome as this instance's view applied
// it: 200 {"command_id","enterprise_id","patient":person}, or the refusal
// (404 no such review/record, 409 already decided, 422 not allowed). No
// outcome within the timeout: 504, and the same command_id (or
// Idempotency-Key) again gets the first outcome. Reads answer 503 while the
// index is still reading its log. Sharing rules and audit: patient_support.h.
#pragma once

#include <chrono>

#include "engine/api/audit.h"
#include "engine/api/router.h"
#include "engine/config/config.h"
#include "engine/workflows/identity/service.h"

namespace yilian::app {

struct patient_api_options {
  std::chrono::milliseconds decision_timeout{std::chrono::seconds(10)};
};

void add_patient_routes(api::router& routes, workflows::identity::service& svc, api::audit_log& audit,
                        const config::loaded_consortium& cfg, patient_api_options options = {});

}  // namespace yilian::app
