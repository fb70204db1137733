// What the referral endpoints share, REST (referral_api.cc) and FHIR
// (referral_fhir.cc): who may see a referral, the command for the caller, the
// codes both show.
#pragma once

#include <string>
#include <string_view>

#include "engine/api/http.h"
#include "engine/app/person_filter.h"
#include "engine/workflows/referral/ledger.h"

namespace yilian::app::referral {

namespace rf = workflows::referral;

// Whether the caller takes part in the referral (its hospital sent or
// received it) or is a consortium-wide operator; a patient (role patient)
// sees the referrals about their person (`person`, patient_person() in
// patient_access.h) and nothing without it.
bool sees(const api::principal& p, const rf::referral_view& r, const person_filter* person = nullptr);

// A command for the authenticated caller. The command id comes from the
// Idempotency-Key header (per principal) when there is one; `n` > 0 for the
// n-th follow-up command of one request. `system` is Source.system ("api", "fhir").
events::v1::Envelope command_for(const api::request& req, events::v1::ReferralAction act,
                                 const std::string& referral_id, workflows::seconds now, std::string_view system,
                                 int n = 0);

// "routine" / "urgent" / "asap" / "stat" (FHIR request-priority); "" when unset.
std::string_view priority_code(events::v1::Priority p);
// "UP" / "DOWN"; "" when unset.
std::string_view direction_code(events::v1::ReferralDirection d);

}  // namespace yilian::app::referral
