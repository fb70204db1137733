// The referral endpoints under /api/v1 (issue 5; DESIGN.md "Workflows",
// referral):
//
//   POST /api/v1/referrals                  {"to_hospital", "identifiers":[{system,value}],
//        "patient":{Demographics JSON}, "reason", "reason_text", "priority" (routine|urgent|
//        asap|stat), "services":[{"code","display"}], "diagnoses":[...], "clinical_summary",
//        "linked_referral_id" (a downward referral follows an upward one), "draft": bool,
//        "expires_at", "from_hospital" (operators)}   -> 201 referral | 4xx why
//   GET  /api/v1/referrals[?role=sent|received&state=&direction=UP|DOWN&hospital=&limit=]
//        the caller's hospital's referrals, both ways (operators name the hospital or see all)
//   GET  /api/v1/referrals/{id}             one referral with its timeline and linked referrals
//   POST /api/v1/referrals/{id}/{action}    submit, receive, accept, reject, cancel, schedule,
//        arrive, complete, no-show, terminate; body {"reason","reason_text","external_id",
//        "booking_id","appointment_start"}
//
// Commands go to the referral's single writer; the answer is the decision as
// this instance's view applied it (Idempotency-Key: a retry gets the first
// answer). A referral the caller's hospital takes no part in is 404. A
// patient (patient token, patient_access.h) may use the two GETs and sees
// only the referrals about their own person (followed through the identity
// index at query time; `patient=` other than their own is 403, `role` 400);
// every change is 403 to them. Every read and change is audited.
#pragma once

#include <chrono>

#include "engine/api/audit.h"
#include "engine/api/router.h"
#include "engine/identity/directory.h"
#include "engine/workflows/referral/service.h"

namespace yilian::app {

struct referral_api_options {
  std::chrono::milliseconds decision_timeout{std::chrono::seconds(10)};
  // The identity index, for GET /api/v1/referrals?patient=<enterprise id>
  // and for patients' own reads (null: 503 to them).
  const identity::directory* patients = nullptr;
};

void add_referral_routes(api::router& routes, workflows::referral::service& svc, api::audit_log& audit,
                         referral_api_options options = {});

}  // namespace yilian::app
