// yilian::workflows::referral — the referral state machine's transition table
// (DESIGN.md "Workflows", referral):
//
//   (new) -> DRAFT | REQUESTED;  DRAFT -> REQUESTED
//   REQUESTED -> RECEIVED -> ACCEPTED | REJECTED (with a reason)
//   ACCEPTED -> SCHEDULED -> ARRIVED -> COMPLETED -> REPORT_RETURNED
//   CANCELLED (by the initiator), EXPIRED (not answered in time; the engine's
//   timer), NO_SHOW, TERMINATED (an operator)
//
// Each row says which parties may take it. A party is how the actor stands to
// the referral: the referring hospital (the initiator), the hospital referred
// to (the receiver), a consortium operator, or the engine itself (timers, and
// the booking, encounter and report events it follows). The direction (UP or
// DOWN) changes nothing here: a downward referral is a new referral, linked
// to the upward one, whose initiator is the hospital that received the first.
//
// The table is data and the only place these rules live: the ledger asks it
// first; HL7, FHIR and REST only translate.
#pragma once

#include <cstdint>
#include <expected>
#include <span>
#include <string>
#include <string_view>

#include "engine/workflows/common/single_writer.h"
#include "yilian/events/v1/referral.pb.h"

namespace yilian::workflows::referral {

using state = events::v1::ReferralState;
using action = events::v1::ReferralAction;

enum party : std::uint8_t {
  referrer = 1U << 0,  // the initiating hospital (from_hospital)
  receiver = 1U << 1,  // the hospital referred to (to_hospital)
  operator_ = 1U << 2,
  engine = 1U << 3,
};
using parties = std::uint8_t;

struct transition {
  state from;  // REFERRAL_STATE_UNSPECIFIED: no referral yet
  action act;
  state to;
  parties allowed;
};

// Every legal transition, in the order of DESIGN.md.
std::span<const transition> transition_table();

// The state `act` leads to from `from` when asked by `who`. When several rows
// exist for (from, act) — only CREATE, to DRAFT or REQUESTED — `wanted`
// chooses (UNSPECIFIED: the first).
//  - no row for (from, act [, wanted]): refusal{conflict, "wrong_transition"}
//  - a row none of whose parties `who` is: refusal{permission_denied, "not_allowed"}
std::expected<state, refusal> next_state(state from, action act, parties who,
                                         state wanted = events::v1::REFERRAL_STATE_UNSPECIFIED);

// No transition leaves `s` (REJECTED, CANCELLED, EXPIRED, NO_SHOW, TERMINATED).
// REPORT_RETURNED is not final: a corrected report is returned again.
bool is_final(state s);
// Waiting for the receiver's answer (REQUESTED, RECEIVED): the answer timer runs.
bool awaits_answer(state s);

// "REQUESTED" / "accept" — names for messages and JSON.
std::string_view state_name(state s);
std::string_view action_name(action a);
// Inverses; UNSPECIFIED for an unknown name (case-insensitive).
action action_from_name(std::string_view name);
state state_from_name(std::string_view name);
// FHIR R4 Task.status and Task.businessStatus code for a referral state
// (businessStatus empty where Task.status says it all).
std::string_view fhir_task_status(state s);
std::string_view fhir_business_status(state s);
// HL7 v2 table 0283 referral status (RF1-1): A, P, R, E; empty for states
// the table has no code for.
std::string_view hl7_referral_status(state s);
// "referrer,receiver" for messages.
std::string parties_text(parties p);

}  // namespace yilian::workflows::referral
