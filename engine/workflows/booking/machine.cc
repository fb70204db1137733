#include "engine/workflows/booking/machine.h"

#include <array>

namespace yilian::workflows::booking {

namespace ev = events::v1;

namespace {

constexpr parties clinic_side = requester | owner | operator_;  // either hospital, or an operator
constexpr parties owner_side = owner | operator_;               // what happens at the machine

constexpr std::array<transition, 17> table{{
    // A new booking: a request to be placed later, a hold, or straight to a booking.
    {ev::BOOKING_STATE_UNSPECIFIED, ev::BOOKING_ACTION_REQUEST, ev::BOOKING_STATE_REQUESTED, clinic_side},
    {ev::BOOKING_STATE_UNSPECIFIED, ev::BOOKING_ACTION_HOLD, ev::BOOKING_STATE_HELD, clinic_side},
    {ev::BOOKING_STATE_UNSPECIFIED, ev::BOOKING_ACTION_BOOK, ev::BOOKING_STATE_BOOKED, clinic_side},
    {ev::BOOKING_STATE_REQUESTED, ev::BOOKING_ACTION_HOLD, ev::BOOKING_STATE_HELD, clinic_side},
    {ev::BOOKING_STATE_REQUESTED, ev::BOOKING_ACTION_BOOK, ev::BOOKING_STATE_BOOKED, clinic_side},
    {ev::BOOKING_STATE_REQUESTED, ev::BOOKING_ACTION_CANCEL, ev::BOOKING_STATE_CANCELLED, clinic_side},
    {ev::BOOKING_STATE_HELD, ev::BOOKING_ACTION_BOOK, ev::BOOKING_STATE_BOOKED, clinic_side},
    {ev::BOOKING_STATE_HELD, ev::BOOKING_ACTION_CANCEL, ev::BOOKING_STATE_CANCELLED, clinic_side},
    // The hold lapsed: the slot goes back, the request stays open.
    {ev::BOOKING_STATE_HELD, ev::BOOKING_ACTION_EXPIRE_HOLD, ev::BOOKING_STATE_REQUESTED, engine | operator_},
    {ev::BOOKING_STATE_BOOKED, ev::BOOKING_ACTION_RESCHEDULE, ev::BOOKING_STATE_BOOKED, clinic_side},
    {ev::BOOKING_STATE_BOOKED, ev::BOOKING_ACTION_CANCEL, ev::BOOKING_STATE_CANCELLED, clinic_side},
    // At the machine: only the owner (or an operator) knows.
    {ev::BOOKING_STATE_BOOKED, ev::BOOKING_ACTION_CHECK_IN, ev::BOOKING_STATE_CHECKED_IN, owner_side},
    {ev::BOOKING_STATE_BOOKED, ev::BOOKING_ACTION_NO_SHOW, ev::BOOKING_STATE_NO_SHOW, owner_side},
    {ev::BOOKING_STATE_CHECKED_IN, ev::BOOKING_ACTION_PERFORM, ev::BOOKING_STATE_PERFORMED, owner_side},
    // Reports arrive as ReportIssued events (the engine) or from the owner.
    {ev::BOOKING_STATE_PERFORMED, ev::BOOKING_ACTION_REPORT, ev::BOOKING_STATE_REPORTED, owner_side | engine},
    {ev::BOOKING_STATE_REPORTED, ev::BOOKING_ACTION_CORRECT, ev::BOOKING_STATE_CORRECTED, owner_side | engine},
    {ev::BOOKING_STATE_CORRECTED, ev::BOOKING_ACTION_CORRECT, ev::BOOKING_STATE_CORRECTED, owner_side | engine},
}};

}  // namespace

std::span<const transition> transition_table() { return table; }

std::expected<state, refusal> next_state(state from, action act, parties who) {
  for (const auto& t : table) {
    if (t.from != from || t.act != act) continue;
    if ((t.allowed & who) == 0) {
      return std::unexpected(refusal{
          .kind = errc::permission_denied,
          .code = "not_allowed",
          .message = std::string(action_name(act)) + " of a " + std::string(state_name(from)) +
                     " booking is for " + parties_text(t.allowed) + ", not for " +
                     (who == 0 ? std::string("a party unrelated to the booking") : parties_text(who))});
    }
    return t.to;
  }
  if (from == ev::BOOKING_STATE_UNSPECIFIED) {
    return std::unexpected(refusal{.kind = errc::not_found,
                                   .code = "unknown_booking",
                                   .message = std::string(action_name(act)) + " needs an existing booking"});
  }
  std::string allowed;
  for (const auto& t : table) {
    if (t.from != from) continue;
    if (!allowed.empty()) allowed += ", ";
    allowed += action_name(t.act);
  }
  return std::unexpected(refusal{
      .kind = errc::conflict,
      .code = "wrong_transition",
      .message = "a " + std::string(state_name(from)) + " booking cannot take " + std::string(action_name(act)) +
                 (allowed.empty() ? std::string("; it is final") : "; it can take: " + allowed)});
}

bool occupies_time(state s) {
  switch (s) {
    case ev::BOOKING_STATE_HELD:
    case ev::BOOKING_STATE_BOOKED:
    case ev::BOOKING_STATE_CHECKED_IN:
    case ev::BOOKING_STATE_PERFORMED:
    case ev::BOOKING_STATE_REPORTED:
    case ev::BOOKING_STATE_CORRECTED: return true;
    default: return false;
  }
}

bool is_final(state s) { return s == ev::BOOKING_STATE_CANCELLED || s == ev::BOOKING_STATE_NO_SHOW; }

std::string_view state_name(state s) {
  switch (s) {
    case ev::BOOKING_STATE_REQUESTED: return "REQUESTED";
    case ev::BOOKING_STATE_HELD: return "HELD";
    case ev::BOOKING_STATE_BOOKED: return "BOOKED";
    case ev::BOOKING_STATE_CHECKED_IN: return "CHECKED_IN";
    case ev::BOOKING_STATE_PERFORMED: return "PERFORMED";
    case ev::BOOKING_STATE_REPORTED: return "REPORTED";
    case ev::BOOKING_STATE_CORRECTED: return "CORRECTED";
    case ev::BOOKING_STATE_CANCELLED: return "CANCELLED";
    case ev::BOOKING_STATE_NO_SHOW: return "NO_SHOW";
    default: return "NONE";
  }
}

namespace {
constexpr std::array<std::pair<action, std::string_view>, 13> action_names{{
    {ev::BOOKING_ACTION_REQUEST, "request"},
    {ev::BOOKING_ACTION_HOLD, "hold"},
    {ev::BOOKING_ACTION_BOOK, "book"},
    {ev::BOOKING_ACTION_RESCHEDULE, "reschedule"},
    {ev::BOOKING_ACTION_CANCEL, "cancel"},
    {ev::BOOKING_ACTION_CHECK_IN, "check-in"},
    {ev::BOOKING_ACTION_NO_SHOW, "no-show"},
    {ev::BOOKING_ACTION_PERFORM, "perform"},
    {ev::BOOKING_ACTION_REPORT, "report"},
    {ev::BOOKING_ACTION_CORRECT, "correct"},
    {ev::BOOKING_ACTION_EXPIRE_HOLD, "expire-hold"},
    {ev::BOOKING_ACTION_BLOCK, "block"},
    {ev::BOOKING_ACTION_OPEN, "open"},
}};
}  // namespace

std::string_view action_name(action a) {
  for (const auto& [act, name] : action_names) {
    if (act == a) return name;
  }
  return "unspecified";
}

action action_from_name(std::string_view name) {
  for (const auto& [act, n] : action_names) {
    if (n == name) return act;
  }
  return ev::BOOKING_ACTION_UNSPECIFIED;
}

std::string_view fhir_appointment_status(state s) {
  switch (s) {
    case ev::BOOKING_STATE_REQUESTED: return "proposed";
    case ev::BOOKING_STATE_HELD: return "pending";
    case ev::BOOKING_STATE_BOOKED: return "booked";
    case ev::BOOKING_STATE_CHECKED_IN: return "checked-in";
    case ev::BOOKING_STATE_PERFORMED:
    case ev::BOOKING_STATE_REPORTED:
    case ev::BOOKING_STATE_CORRECTED: return "fulfilled";
    case ev::BOOKING_STATE_CANCELLED: return "cancelled";
    case ev::BOOKING_STATE_NO_SHOW: return "noshow";
    default: return "entered-in-error";
  }
}

std::string_view hl7_filler_status(state s) {
  switch (s) {
    case ev::BOOKING_STATE_REQUESTED:
    case ev::BOOKING_STATE_HELD: return "Pending";
    case ev::BOOKING_STATE_BOOKED: return "Booked";
    case ev::BOOKING_STATE_CHECKED_IN: return "Started";
    case ev::BOOKING_STATE_PERFORMED:
    case ev::BOOKING_STATE_REPORTED:
    case ev::BOOKING_STATE_CORRECTED: return "Complete";
    case ev::BOOKING_STATE_CANCELLED: return "Cancelled";
    case ev::BOOKING_STATE_NO_SHOW: return "Noshow";
    default: return "";
  }
}

std::string parties_text(parties p) {
  std::string out;
  auto add = [&](party bit, std::string_view name) {
    if ((p & bit) == 0) return;
    if (!out.empty()) out += ",";
    out += name;
  };
  add(requester, "requester");
  add(owner, "owner");
  add(operator_, "operator");
  add(engine, "engine");
  return out;
}

}  // namespace yilian::workflows::booking
