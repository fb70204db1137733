// The booking transition table (engine/workflows/booking/machine.h), checked
// exhaustively against an expectation written here, independently, from
// DESIGN.md "Workflows" and issue 4:
//
//   REQUESTED -> HELD (hold expires -> REQUESTED) -> BOOKED -> CHECKED_IN
//   -> PERFORMED -> REPORTED (-> CORRECTED); BOOKED -> CANCELLED | NO_SHOW;
//   reschedule keeps BOOKED.
//
// Who: the clinic side (requester, owner, operator) asks for, holds, books,
// reschedules and cancels; only the owner or an operator checks in, records a
// no-show or a performed exam; reports and corrections come from the owner,
// an operator or the engine (ReportIssued); hold expiry is the engine's timer
// or an operator.
#include <catch2/catch.hpp>

#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "engine/workflows/booking/machine.h"

using namespace yilian;
using namespace yilian::workflows::booking;
namespace ev = yilian::events::v1;

namespace {

constexpr parties R = requester;
constexpr parties O = owner;
constexpr parties P = operator_;
constexpr parties E = engine;
constexpr parties clinic_side = R | O | P;
constexpr parties at_machine = O | P;
constexpr parties reports = O | P | E;

struct expected_row {
  state to;
  parties allowed;
};

// The expectation: (from, action) -> (to, who may). Anything else is refused.
const std::map<std::pair<state, action>, expected_row>& expected_table() {
  static const std::map<std::pair<state, action>, expected_row> t{
      // A booking starts as a request, a hold or a booking.
      {{ev::BOOKING_STATE_UNSPECIFIED, ev::BOOKING_ACTION_REQUEST}, {ev::BOOKING_STATE_REQUESTED, clinic_side}},
      {{ev::BOOKING_STATE_UNSPECIFIED, ev::BOOKING_ACTION_HOLD}, {ev::BOOKING_STATE_HELD, clinic_side}},
      {{ev::BOOKING_STATE_UNSPECIFIED, ev::BOOKING_ACTION_BOOK}, {ev::BOOKING_STATE_BOOKED, clinic_side}},
      {{ev::BOOKING_STATE_REQUESTED, ev::BOOKING_ACTION_HOLD}, {ev::BOOKING_STATE_HELD, clinic_side}},
      {{ev::BOOKING_STATE_REQUESTED, ev::BOOKING_ACTION_BOOK}, {ev::BOOKING_STATE_BOOKED, clinic_side}},
      {{ev::BOOKING_STATE_REQUESTED, ev::BOOKING_ACTION_CANCEL}, {ev::BOOKING_STATE_CANCELLED, clinic_side}},
      {{ev::BOOKING_STATE_HELD, ev::BOOKING_ACTION_BOOK}, {ev::BOOKING_STATE_BOOKED, clinic_side}},
      {{ev::BOOKING_STATE_HELD, ev::BOOKING_ACTION_CANCEL}, {ev::BOOKING_STATE_CANCELLED, clinic_side}},
      {{ev::BOOKING_STATE_HELD, ev::BOOKING_ACTION_EXPIRE_HOLD}, {ev::BOOKING_STATE_REQUESTED, E | P}},
      {{ev::BOOKING_STATE_BOOKED, ev::BOOKING_ACTION_RESCHEDULE}, {ev::BOOKING_STATE_BOOKED, clinic_side}},
      {{ev::BOOKING_STATE_BOOKED, ev::BOOKING_ACTION_CANCEL}, {ev::BOOKING_STATE_CANCELLED, clinic_side}},
      {{ev::BOOKING_STATE_BOOKED, ev::BOOKING_ACTION_CHECK_IN}, {ev::BOOKING_STATE_CHECKED_IN, at_machine}},
      {{ev::BOOKING_STATE_BOOKED, ev::BOOKING_ACTION_NO_SHOW}, {ev::BOOKING_STATE_NO_SHOW, at_machine}},
      {{ev::BOOKING_STATE_CHECKED_IN, ev::BOOKING_ACTION_PERFORM}, {ev::BOOKING_STATE_PERFORMED, at_machine}},
      {{ev::BOOKING_STATE_PERFORMED, ev::BOOKING_ACTION_REPORT}, {ev::BOOKING_STATE_REPORTED, reports}},
      {{ev::BOOKING_STATE_REPORTED, ev::BOOKING_ACTION_CORRECT}, {ev::BOOKING_STATE_CORRECTED, reports}},
      {{ev::BOOKING_STATE_CORRECTED, ev::BOOKING_ACTION_CORRECT}, {ev::BOOKING_STATE_CORRECTED, reports}},
  };
  return t;
}

std::vector<state> all_states() {
  std::vector<state> out;
  for (int s = ev::BookingState_MIN; s <= ev::BookingState_MAX; ++s) {
    if (ev::BookingState_IsValid(s)) out.push_back(static_cast<state>(s));
  }
  return out;
}

std::vector<action> all_actions() {
  std::vector<action> out;
  for (int a = ev::BookingAction_MIN; a <= ev::BookingAction_MAX; ++a) {
    if (ev::BookingAction_IsValid(a)) out.push_back(static_cast<action>(a));
  }
  return out;
}

bool contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace

TEST_CASE("the enums cover what the expectation is written over", "[unit][booking]") {
  CHECK(all_states().size() == 10);   // UNSPECIFIED + nine states
  CHECK(all_actions().size() == 14);  // UNSPECIFIED + thirteen actions
}

TEST_CASE("every state, action and set of parties gets the designed next state or the designed refusal",
          "[unit][booking]") {
  std::size_t checked = 0;
  for (const state from : all_states()) {
    for (const action act : all_actions()) {
      for (parties who = 0; who < 16; ++who) {
        INFO("from " << state_name(from) << " action " << action_name(act) << " who {" << parties_text(who) << "}");
        const auto got = next_state(from, act, who);
        const auto row = expected_table().find({from, act});
        if (row != expected_table().end()) {
          if ((row->second.allowed & who) != 0) {
            REQUIRE(got.has_value());
            CHECK(*got == row->second.to);
          } else {
            REQUIRE_FALSE(got.has_value());
            CHECK(got.error().code == "not_allowed");
            CHECK(got.error().kind == errc::permission_denied);
            // The message says what was asked, in which state, and who may.
            CHECK(contains(got.error().message, action_name(act)));
            CHECK(contains(got.error().message, state_name(from)));
            CHECK(contains(got.error().message, parties_text(row->second.allowed)));
          }
        } else if (from == ev::BOOKING_STATE_UNSPECIFIED) {
          REQUIRE_FALSE(got.has_value());
          CHECK(got.error().code == "unknown_booking");
          CHECK(got.error().kind == errc::not_found);
          CHECK(contains(got.error().message, action_name(act)));
        } else {
          REQUIRE_FALSE(got.has_value());
          CHECK(got.error().code == "wrong_transition");
          CHECK(got.error().kind == errc::conflict);
          CHECK(contains(got.error().message, action_name(act)));
          CHECK(contains(got.error().message, state_name(from)));
        }
        ++checked;
      }
    }
  }
  CHECK(checked == 10 * 14 * 16);
}

TEST_CASE("the transition table holds exactly the designed rows, one per state and action", "[unit][booking]") {
  std::set<std::pair<state, action>> seen;
  for (const auto& t : transition_table()) {
    INFO(state_name(t.from) << " --" << action_name(t.act) << "--> " << state_name(t.to));
    CHECK(seen.insert({t.from, t.act}).second);  // no (state, action) twice: the first row would shadow the next
    const auto row = expected_table().find({t.from, t.act});
    REQUIRE(row != expected_table().end());
    CHECK(t.to == row->second.to);
    CHECK(t.allowed == row->second.allowed);
  }
  CHECK(seen.size() == expected_table().size());
}

TEST_CASE("a wrong transition lists what the state can take, and a final state says it is final",
          "[unit][booking]") {
  SECTION("BOOKED cannot be held; it can be rescheduled, cancelled, checked in or marked no-show") {
    const auto r = next_state(ev::BOOKING_STATE_BOOKED, ev::BOOKING_ACTION_HOLD, R);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().message == "a BOOKED booking cannot take hold; it can take: reschedule, cancel, check-in, no-show");
  }
  SECTION("CANCELLED and NO_SHOW take nothing") {
    for (const state s : {ev::BOOKING_STATE_CANCELLED, ev::BOOKING_STATE_NO_SHOW}) {
      for (const action a : all_actions()) {
        const auto r = next_state(s, a, R | O | P | E);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == "wrong_transition");
        CHECK(contains(r.error().message, "it is final"));
      }
    }
  }
  SECTION("a party unrelated to the booking is named as such") {
    const auto r = next_state(ev::BOOKING_STATE_BOOKED, ev::BOOKING_ACTION_CANCEL, 0);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == "not_allowed");
    CHECK(contains(r.error().message, "a party unrelated to the booking"));
  }
  SECTION("a requester asking to check in is told who may") {
    const auto r = next_state(ev::BOOKING_STATE_BOOKED, ev::BOOKING_ACTION_CHECK_IN, R);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().message == "check-in of a BOOKED booking is for owner,operator, not for requester");
  }
}

TEST_CASE("final states are exactly the states with no way out", "[unit][booking]") {
  for (const state s : all_states()) {
    if (s == ev::BOOKING_STATE_UNSPECIFIED) continue;
    bool has_exit = false;
    for (const auto& [key, row] : expected_table()) has_exit = has_exit || key.first == s;
    INFO(state_name(s));
    CHECK(is_final(s) == !has_exit);
  }
  CHECK_FALSE(is_final(ev::BOOKING_STATE_UNSPECIFIED));
}

TEST_CASE("holds, bookings and exams in progress or done take machine time; requests and ends do not",
          "[unit][booking]") {
  const std::set<state> takes{ev::BOOKING_STATE_HELD,      ev::BOOKING_STATE_BOOKED,   ev::BOOKING_STATE_CHECKED_IN,
                              ev::BOOKING_STATE_PERFORMED, ev::BOOKING_STATE_REPORTED, ev::BOOKING_STATE_CORRECTED};
  for (const state s : all_states()) {
    INFO(state_name(s));
    CHECK(occupies_time(s) == takes.contains(s));
  }
}

TEST_CASE("state and action names, FHIR Appointment.status and HL7 SCH-25 for every state", "[unit][booking]") {
  struct row {
    state s;
    std::string_view name;
    std::string_view fhir;  // FHIR R4 AppointmentStatus
    std::string_view hl7;   // HL7 v2 table 0278 filler status code
  };
  const std::vector<row> rows{
      {ev::BOOKING_STATE_UNSPECIFIED, "NONE", "entered-in-error", ""},
      {ev::BOOKING_STATE_REQUESTED, "REQUESTED", "proposed", "Pending"},
      {ev::BOOKING_STATE_HELD, "HELD", "pending", "Pending"},
      {ev::BOOKING_STATE_BOOKED, "BOOKED", "booked", "Booked"},
      {ev::BOOKING_STATE_CHECKED_IN, "CHECKED_IN", "checked-in", "Started"},
      {ev::BOOKING_STATE_PERFORMED, "PERFORMED", "fulfilled", "Complete"},
      {ev::BOOKING_STATE_REPORTED, "REPORTED", "fulfilled", "Complete"},
      {ev::BOOKING_STATE_CORRECTED, "CORRECTED", "fulfilled", "Complete"},
      {ev::BOOKING_STATE_CANCELLED, "CANCELLED", "cancelled", "Cancelled"},
      {ev::BOOKING_STATE_NO_SHOW, "NO_SHOW", "noshow", "Noshow"},
  };
  REQUIRE(rows.size() == all_states().size());
  for (const auto& r : rows) {
    INFO(r.name);
    CHECK(state_name(r.s) == r.name);
    CHECK(fhir_appointment_status(r.s) == r.fhir);
    CHECK(hl7_filler_status(r.s) == r.hl7);
  }
  // The FHIR R4 value set (AppointmentStatus) and HL7 table 0278 hold every value used.
  const std::set<std::string_view> fhir_codes{"proposed", "pending",   "booked",  "arrived",  "fulfilled",
                                              "cancelled", "noshow", "entered-in-error", "checked-in", "waitlist"};
  const std::set<std::string_view> table_0278{"Pending", "Waitlist", "Booked",  "Started", "Complete", "Cancelled",
                                              "Dc",      "Deleted",  "Blocked", "Overbook", "Noshow"};
  for (const state s : all_states()) {
    CHECK(fhir_codes.contains(fhir_appointment_status(s)));
    if (s != ev::BOOKING_STATE_UNSPECIFIED) CHECK(table_0278.contains(hl7_filler_status(s)));
  }
}

TEST_CASE("every action has a unique lower-case name that reads back", "[unit][booking]") {
  const std::map<action, std::string_view> names{
      {ev::BOOKING_ACTION_REQUEST, "request"},       {ev::BOOKING_ACTION_HOLD, "hold"},
      {ev::BOOKING_ACTION_BOOK, "book"},             {ev::BOOKING_ACTION_RESCHEDULE, "reschedule"},
      {ev::BOOKING_ACTION_CANCEL, "cancel"},         {ev::BOOKING_ACTION_CHECK_IN, "check-in"},
      {ev::BOOKING_ACTION_NO_SHOW, "no-show"},       {ev::BOOKING_ACTION_PERFORM, "perform"},
      {ev::BOOKING_ACTION_REPORT, "report"},         {ev::BOOKING_ACTION_CORRECT, "correct"},
      {ev::BOOKING_ACTION_EXPIRE_HOLD, "expire-hold"}, {ev::BOOKING_ACTION_BLOCK, "block"},
      {ev::BOOKING_ACTION_OPEN, "open"},
  };
  std::set<std::string_view> seen;
  for (const action a : all_actions()) {
    if (a == ev::BOOKING_ACTION_UNSPECIFIED) continue;
    INFO(ev::BookingAction_Name(a));
    REQUIRE(names.contains(a));
    CHECK(action_name(a) == names.at(a));
    CHECK(action_from_name(action_name(a)) == a);
    CHECK(seen.insert(action_name(a)).second);
  }
  CHECK(action_name(ev::BOOKING_ACTION_UNSPECIFIED) == "unspecified");
  CHECK(action_from_name("unspecified") == ev::BOOKING_ACTION_UNSPECIFIED);
  CHECK(action_from_name("") == ev::BOOKING_ACTION_UNSPECIFIED);
  CHECK(action_from_name("BOOK") == ev::BOOKING_ACTION_UNSPECIFIED);  // names are case-sensitive
  CHECK(action_from_name("check_in") == ev::BOOKING_ACTION_UNSPECIFIED);
}

TEST_CASE("parties read as a comma-separated list in a fixed order", "[unit][booking]") {
  CHECK(parties_text(0).empty());
  CHECK(parties_text(R) == "requester");
  CHECK(parties_text(E | R) == "requester,engine");
  CHECK(parties_text(R | O | P | E) == "requester,owner,operator,engine");
  CHECK(parties_text(P | O) == "owner,operator");
}
