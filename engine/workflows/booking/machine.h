// yilian::workflows::booking — the booking state machine's transition table
// (DESIGN.md "Workflows", booking):
//
//   (new) -> REQUESTED -> HELD (hold lapses -> REQUESTED) -> BOOKED
//   BOOKED -> CHECKED_IN -> PERFORMED -> REPORTED (-> CORRECTED)
//   BOOKED -> CANCELLED | NO_SHOW;  RESCHEDULE keeps BOOKED on a new slot
//
// Each row says which parties may take it. A party is how the actor stands to
// the booking: the requesting hospital, the equipment's owner, a consortium
// operator, or the engine itself (timers, report events). One principal can
// be two parties at once (an owner booking its own machine).
//
// The table is data and the only place these rules live: the ledger asks it
// before any other check, the REST and HL7 channels only translate.
#pragma once

#include <cstdint>
#include <expected>
#include <span>
#include <string>
#include <string_view>

#include "engine/core/error.h"
#include "engine/workflows/common/single_writer.h"
#include "yilian/events/v1/booking.pb.h"

namespace yilian::workflows::booking {

using state = events::v1::BookingState;
using action = events::v1::BookingAction;

// Parties as a bit set.
enum party : std::uint8_t {
  requester = 1U << 0,
  owner = 1U << 1,
  operator_ = 1U << 2,
  engine = 1U << 3,
};
using parties = std::uint8_t;

struct transition {
  state from;  // BOOKING_STATE_UNSPECIFIED: no booking yet
  action act;
  state to;
  parties allowed;
};

// Every legal transition, in the order of DESIGN.md.
std::span<const transition> transition_table();

// Why a command cannot be taken. `code` is BookingCommandRejected.code.
using workflows::refusal;

// The state `act` leads to from `from` when asked by `who`:
//  - no row for (from, act): refusal{conflict, "wrong_transition"}
//  - a row none of whose parties `who` is: refusal{permission_denied, "not_allowed"}
std::expected<state, refusal> next_state(state from, action act, parties who);

// Whether a booking in `s` takes machine time (holds, bookings and exams in
// progress or done) — what the slot search and the no-double-booking rule see.
bool occupies_time(state s);
// No further transition exists out of `s` (CANCELLED, NO_SHOW).
bool is_final(state s);

// "BOOKED" / "hold" — names for messages and JSON (lower case for actions).
std::string_view state_name(state s);
std::string_view action_name(action a);
// Inverse of action_name; BOOKING_ACTION_UNSPECIFIED for an unknown name.
action action_from_name(std::string_view name);
// FHIR R4 Appointment.status for a booking state.
std::string_view fhir_appointment_status(state s);
// HL7 v2 table 0278 filler status code (SCH-25) for a booking state.
std::string_view hl7_filler_status(state s);
// "requester,owner" for messages.
std::string parties_text(parties p);

}  // namespace yilian::workflows::booking
