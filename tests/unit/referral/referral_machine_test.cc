// The referral transition table (engine/workflows/referral/machine.h),
// checked exhaustively against an expectation written here, independently,
// from DESIGN.md "Workflows" and issue 5:
//
//   DRAFT -> REQUESTED -> RECEIVED -> ACCEPTED | REJECTED (with a reason);
//   ACCEPTED -> SCHEDULED -> ARRIVED -> COMPLETED -> REPORT_RETURNED;
//   CANCELLED (by the initiator), EXPIRED (not answered in a configured time:
//   the engine's timer, or RF1-1 E from the receiver), NO_SHOW, TERMINATED
//   (an operator).
//
// Besides the spec's path the expectation takes these rows, which follow
// from the channels (issue 5 item 2) and are kept on purpose:
//  - CREATE straight to REQUESTED (REF^I12) or to DRAFT (a clinic's draft);
//    MODIFY (REF^I13) while the referral waits for its answer, state kept;
//  - ACCEPT / REJECT from REQUESTED (an RRI with RF1-1 A/R and no separate
//    acknowledgement first);
//  - SCHEDULE again from SCHEDULED (rescheduled: SIU^S13/S14);
//  - ARRIVE from ACCEPTED (an ADT^A04 without an appointment), COMPLETE from
//    SCHEDULED (an A03 whose A04 never came), RETURN_REPORT from ARRIVED (an
//    ORU^R01 before the A03) and from REPORT_RETURNED (a corrected report);
//  - EXPIRE of an ACCEPTED referral never scheduled (the engine only:
//    ReferralSettings.accepted_expire_days);
//  - the receiving side's progress comes from the receiver or the engine
//    (which follows the booking, ADT and report events), never the referrer.
//
// Where this expectation and the code differ, the test fails with the list
// of rows that differ (see the report of the session that wrote it).
#include <catch2/catch.hpp>

#include <cctype>
#include <expected>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "engine/workflows/referral/machine.h"

using namespace yilian;
using namespace yilian::workflows::referral;
namespace ev = yilian::events::v1;

namespace {

constexpr parties F = referrer;  // the initiator (from_hospital)
constexpr parties T = receiver;  // the hospital referred to (to_hospital)
constexpr parties P = operator_;
constexpr parties E = engine;
constexpr parties progress = T | E;

constexpr state NONE = ev::REFERRAL_STATE_UNSPECIFIED;
constexpr state DRAFT = ev::REFERRAL_STATE_DRAFT;
constexpr state REQUESTED = ev::REFERRAL_STATE_REQUESTED;
constexpr state RECEIVED = ev::REFERRAL_STATE_RECEIVED;
constexpr state ACCEPTED = ev::REFERRAL_STATE_ACCEPTED;
constexpr state REJECTED = ev::REFERRAL_STATE_REJECTED;
constexpr state SCHEDULED = ev::REFERRAL_STATE_SCHEDULED;
constexpr state ARRIVED = ev::REFERRAL_STATE_ARRIVED;
constexpr state COMPLETED = ev::REFERRAL_STATE_COMPLETED;
constexpr state RETURNED = ev::REFERRAL_STATE_REPORT_RETURNED;
constexpr state CANCELLED = ev::REFERRAL_STATE_CANCELLED;
constexpr state EXPIRED = ev::REFERRAL_STATE_EXPIRED;
constexpr state NO_SHOW = ev::REFERRAL_STATE_NO_SHOW;
constexpr state TERMINATED = ev::REFERRAL_STATE_TERMINATED;

constexpr action CREATE = ev::REFERRAL_ACTION_CREATE;
constexpr action SUBMIT = ev::REFERRAL_ACTION_SUBMIT;
constexpr action MODIFY = ev::REFERRAL_ACTION_MODIFY;
constexpr action RECEIVE = ev::REFERRAL_ACTION_RECEIVE;
constexpr action ACCEPT = ev::REFERRAL_ACTION_ACCEPT;
constexpr action REJECT = ev::REFERRAL_ACTION_REJECT;
constexpr action SCHEDULE = ev::REFERRAL_ACTION_SCHEDULE;
constexpr action ARRIVE = ev::REFERRAL_ACTION_ARRIVE;
constexpr action COMPLETE = ev::REFERRAL_ACTION_COMPLETE;
constexpr action RETURN_REPORT = ev::REFERRAL_ACTION_RETURN_REPORT;
constexpr action CANCEL = ev::REFERRAL_ACTION_CANCEL;
constexpr action EXPIRE = ev::REFERRAL_ACTION_EXPIRE;
constexpr action NO_SHOW_ACT = ev::REFERRAL_ACTION_NO_SHOW;
constexpr action TERMINATE = ev::REFERRAL_ACTION_TERMINATE;

struct expected_row {
  state to;
  parties allowed;
};

// The expectation: (from, action) -> the states it may lead to (the first is
// what next_state gives without a wanted state) and who may take it.
// Anything else is a wrong transition.
using expectation = std::map<std::pair<state, action>, std::vector<expected_row>>;

const expectation& expected_table() {
  static const expectation t{
      // The initiator drafts or sends at once, sends its draft, changes it
      // while it waits for an answer.
      {{NONE, CREATE}, {{REQUESTED, F}, {DRAFT, F}}},
      {{DRAFT, SUBMIT}, {{REQUESTED, F}}},
      {{DRAFT, MODIFY}, {{DRAFT, F}}},
      {{REQUESTED, MODIFY}, {{REQUESTED, F}}},
      {{RECEIVED, MODIFY}, {{RECEIVED, F}}},
      // The receiver acknowledges and answers.
      {{REQUESTED, RECEIVE}, {{RECEIVED, T}}},
      {{REQUESTED, ACCEPT}, {{ACCEPTED, T}}},
      {{RECEIVED, ACCEPT}, {{ACCEPTED, T}}},
      {{REQUESTED, REJECT}, {{REJECTED, T}}},
      {{RECEIVED, REJECT}, {{REJECTED, T}}},
      // The visit and the report back.
      {{ACCEPTED, SCHEDULE}, {{SCHEDULED, progress}}},
      {{SCHEDULED, SCHEDULE}, {{SCHEDULED, progress}}},
      {{ACCEPTED, ARRIVE}, {{ARRIVED, progress}}},
      {{SCHEDULED, ARRIVE}, {{ARRIVED, progress}}},
      {{SCHEDULED, COMPLETE}, {{COMPLETED, progress}}},
      {{ARRIVED, COMPLETE}, {{COMPLETED, progress}}},
      {{ARRIVED, RETURN_REPORT}, {{RETURNED, progress}}},
      {{COMPLETED, RETURN_REPORT}, {{RETURNED, progress}}},
      {{RETURNED, RETURN_REPORT}, {{RETURNED, progress}}},
      {{SCHEDULED, NO_SHOW_ACT}, {{NO_SHOW, progress}}},
      // CANCELLED by the initiator (issue 5: "CANCELLED (by the initiator)";
      // an operator has TERMINATE), until the patient arrives.
      {{DRAFT, CANCEL}, {{CANCELLED, F}}},
      {{REQUESTED, CANCEL}, {{CANCELLED, F}}},
      {{RECEIVED, CANCEL}, {{CANCELLED, F}}},
      {{ACCEPTED, CANCEL}, {{CANCELLED, F}}},
      {{SCHEDULED, CANCEL}, {{CANCELLED, F}}},
      // EXPIRED: unanswered (the engine's timer, or the receiver's RF1-1 E);
      // accepted but never scheduled (the engine's timer).
      {{REQUESTED, EXPIRE}, {{EXPIRED, E | T}}},
      {{RECEIVED, EXPIRE}, {{EXPIRED, E | T}}},
      {{ACCEPTED, EXPIRE}, {{EXPIRED, E}}},
      // TERMINATED by an operator, from any state that is not over.
      {{DRAFT, TERMINATE}, {{TERMINATED, P}}},
      {{REQUESTED, TERMINATE}, {{TERMINATED, P}}},
      {{RECEIVED, TERMINATE}, {{TERMINATED, P}}},
      {{ACCEPTED, TERMINATE}, {{TERMINATED, P}}},
      {{SCHEDULED, TERMINATE}, {{TERMINATED, P}}},
      {{ARRIVED, TERMINATE}, {{TERMINATED, P}}},
      {{COMPLETED, TERMINATE}, {{TERMINATED, P}}},
  };
  return t;
}

std::vector<state> all_states() {
  std::vector<state> out;
  for (int s = ev::ReferralState_MIN; s <= ev::ReferralState_MAX; ++s) {
    if (ev::ReferralState_IsValid(s)) out.push_back(static_cast<state>(s));
  }
  return out;
}

std::vector<action> all_actions() {
  std::vector<action> out;
  for (int a = ev::ReferralAction_MIN; a <= ev::ReferralAction_MAX; ++a) {
    if (ev::ReferralAction_IsValid(a)) out.push_back(static_cast<action>(a));
  }
  return out;
}

// Concatenation by appending (g++ 12 -Wrestrict false positives on + chains).
template <class... Parts>
std::string cat(const Parts&... parts) {
  std::string s;
  ((s += parts), ...);
  return s;
}

bool contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

std::string row_text(state from, action act, parties who, state wanted) {
  std::string s;
  s += state_name(from);
  s += " --";
  s += action_name(act);
  s += "--> ";
  if (wanted != NONE) {
    s += "(wanted ";
    s += state_name(wanted);
    s += ") ";
  }
  s += "by {";
  s += parties_text(who);
  s += "}";
  return s;
}

// "DRAFT --cancel--> CANCELLED for {referrer}": one row of a table.
std::string table_row_text(state from, action act, state to, parties allowed) {
  return cat(state_name(from), " --", action_name(act), "--> ", state_name(to), " for {", parties_text(allowed), "}");
}

std::string cat_expected(state to) { return cat("expected ", state_name(to)); }

std::string result_text(const std::expected<state, workflows::refusal>& r) {
  if (r) return std::string(state_name(*r));
  return cat(r.error().code, " (", r.error().message, ")");
}

// What next_state must answer for (from, act, who, wanted) by the
// expectation; "" when it is right, else what was wrong.
std::string judge(state from, action act, parties who, state wanted) {
  const auto got = next_state(from, act, who, wanted);
  const auto it = expected_table().find({from, act});
  // The first row leading to `wanted` (any row when nothing is wanted).
  const expected_row* picked = nullptr;
  if (it != expected_table().end()) {
    for (const auto& r : it->second) {
      if (wanted == NONE || r.to == wanted) {
        picked = &r;
        break;
      }
    }
  }
  std::string wrong;
  if (picked == nullptr) {
    if (got) return cat("expected wrong_transition, got ", result_text(got));
    if (got.error().code != "wrong_transition") wrong += cat(" code ", got.error().code);
    if (got.error().kind != errc::conflict) wrong += " kind not conflict";
    if (!contains(got.error().message, action_name(act))) wrong += " message lacks the action";
    if (!contains(got.error().message, state_name(from))) wrong += " message lacks the state";
    return wrong.empty() ? "" : cat("wrong_transition refusal:", wrong, " [", got.error().message, "]");
  }
  const auto& row = *picked;
  if ((row.allowed & who) != 0) {
    if (!got) return cat(cat_expected(row.to), ", got ", result_text(got));
    if (*got != row.to) return cat(cat_expected(row.to), ", got ", result_text(got));
    return "";
  }
  if (got) return cat("expected not_allowed (only {", parties_text(row.allowed), "}), got ", result_text(got));
  if (got.error().code != "not_allowed") wrong += cat(" code ", got.error().code);
  if (got.error().kind != errc::permission_denied) wrong += " kind not permission_denied";
  if (!contains(got.error().message, action_name(act))) wrong += " message lacks the action";
  if (!contains(got.error().message, state_name(from))) wrong += " message lacks the state";
  if (!contains(got.error().message, parties_text(row.allowed))) {
    wrong += cat(" message does not name {", parties_text(row.allowed), "}");
  }
  return wrong.empty() ? "" : cat("not_allowed refusal:", wrong, " [", got.error().message, "]");
}

}  // namespace

TEST_CASE("the enums cover what the expectation is written over", "[unit][referral]") {
  CHECK(all_states().size() == 14);   // UNSPECIFIED + thirteen states
  CHECK(all_actions().size() == 15);  // UNSPECIFIED + fourteen actions
}

TEST_CASE("every state, action and set of parties gets the designed next state or the designed refusal",
          "[unit][referral]") {
  std::vector<std::string> mismatches;
  std::size_t checked = 0;
  for (const state from : all_states()) {
    for (const action act : all_actions()) {
      for (parties who = 0; who < 16; ++who) {
        if (auto wrong = judge(from, act, who, NONE); !wrong.empty()) {
          mismatches.push_back(cat(row_text(from, act, who, NONE), ": ", wrong));
        }
        ++checked;
      }
    }
  }
  CHECK(checked == 14 * 15 * 16);
  CHECK(mismatches == std::vector<std::string>{});
}

TEST_CASE("a wanted state picks the row: only rows that lead there count", "[unit][referral]") {
  // next_state(from, act, who, wanted) for every wanted state: the ledger
  // re-checks decisions this way (and CREATE picks DRAFT or REQUESTED).
  std::vector<std::string> mismatches;
  for (const state from : all_states()) {
    for (const action act : all_actions()) {
      for (const state wanted : all_states()) {
        if (wanted == NONE) continue;
        for (parties who = 0; who < 16; ++who) {
          if (auto wrong = judge(from, act, who, wanted); !wrong.empty()) {
            mismatches.push_back(cat(row_text(from, act, who, wanted), ": ", wrong));
          }
        }
      }
    }
  }
  CHECK(mismatches == std::vector<std::string>{});
  SECTION("a new referral is REQUESTED unless a draft is wanted") {
    CHECK(next_state(NONE, CREATE, F) == REQUESTED);
    CHECK(next_state(NONE, CREATE, F, DRAFT) == DRAFT);
    CHECK(next_state(NONE, CREATE, F, REQUESTED) == REQUESTED);
    const auto accepted = next_state(NONE, CREATE, F, ACCEPTED);
    REQUIRE_FALSE(accepted.has_value());
    CHECK(accepted.error().code == "wrong_transition");
    CHECK(next_state(NONE, CREATE, T | P | E, DRAFT).error().code == "not_allowed");
  }
}

TEST_CASE("the transition table holds exactly the designed rows", "[unit][referral]") {
  std::vector<std::string> mismatches;
  std::set<std::pair<state, action>> pairs;
  std::set<std::tuple<state, action, state>> seen;
  for (const auto& t : transition_table()) {
    const std::string row = table_row_text(t.from, t.act, t.to, t.allowed);
    if (!seen.insert({t.from, t.act, t.to}).second) mismatches.push_back(cat(row, ": twice"));
    pairs.insert({t.from, t.act});
    const auto it = expected_table().find({t.from, t.act});
    if (it == expected_table().end()) {
      mismatches.push_back(cat(row, ": not designed"));
      continue;
    }
    bool found = false;
    for (const auto& r : it->second) {
      if (r.to != t.to) continue;
      found = true;
      if (r.allowed != t.allowed) mismatches.push_back(cat(row, ": designed for {", parties_text(r.allowed), "}"));
    }
    if (!found) mismatches.push_back(cat(row, ": leads to a state not designed"));
  }
  for (const auto& [key, rows] : expected_table()) {
    for (const auto& r : rows) {
      if (!seen.contains({key.first, key.second, r.to})) {
        mismatches.push_back(cat(table_row_text(key.first, key.second, r.to, r.allowed), ": designed, missing"));
      }
    }
  }
  CHECK(mismatches == std::vector<std::string>{});
  // Only CREATE has a choice of rows; everything else has one way.
  for (const auto& [key, rows] : expected_table()) {
    if (key.second != CREATE) CHECK(rows.size() == 1);
  }
  CHECK(pairs.size() == expected_table().size());
  // A row never leads back to "no referral", and every state but DRAFT and
  // REQUESTED is reached only from an existing referral.
  for (const auto& t : transition_table()) {
    CHECK(t.to != NONE);
    if (t.from == NONE) CHECK((t.to == DRAFT || t.to == REQUESTED));
  }
}

TEST_CASE("the spec's path from a draft to the returned report is open to the right party at every step",
          "[unit][referral]") {
  struct step_t {
    action act;
    parties who;
    state to;
  };
  const std::vector<step_t> path{{CREATE, F, DRAFT},     {SUBMIT, F, REQUESTED}, {RECEIVE, T, RECEIVED},
                                 {ACCEPT, T, ACCEPTED},  {SCHEDULE, E, SCHEDULED}, {ARRIVE, E, ARRIVED},
                                 {COMPLETE, T, COMPLETED}, {RETURN_REPORT, E, RETURNED}};
  state at = NONE;
  for (const auto& s : path) {
    INFO(state_name(at) << " --" << action_name(s.act) << "-->");
    const auto r = next_state(at, s.act, s.who, s.act == CREATE ? s.to : NONE);
    REQUIRE(r.has_value());
    CHECK(*r == s.to);
    at = *r;
  }
  CHECK_FALSE(is_final(at));
  CHECK(next_state(at, RETURN_REPORT, E) == RETURNED);  // a corrected report goes back again
}

TEST_CASE("refusals say who may, what was asked and in which state", "[unit][referral]") {
  SECTION("a clinic accepting its own referral is not allowed (403)") {
    const auto r = next_state(REQUESTED, ACCEPT, F);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == "not_allowed");
    CHECK(r.error().kind == errc::permission_denied);
    CHECK(contains(r.error().message, "receiver"));
    CHECK(contains(r.error().message, "accept"));
    CHECK(contains(r.error().message, "REQUESTED"));
  }
  SECTION("a hospital with no part in the referral may do nothing to it") {
    for (const state s : all_states()) {
      for (const action a : all_actions()) {
        const auto r = next_state(s, a, 0);
        REQUIRE_FALSE(r.has_value());
        CHECK((r.error().code == "not_allowed" || r.error().code == "wrong_transition"));
      }
    }
  }
  SECTION("an accepted referral cannot be rejected (409)") {
    const auto r = next_state(ACCEPTED, REJECT, T);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == "wrong_transition");
    CHECK(r.error().kind == errc::conflict);
    CHECK(contains(r.error().message, "ACCEPTED"));
    CHECK(contains(r.error().message, "reject"));
  }
  SECTION("only an operator terminates") {
    CHECK(next_state(ARRIVED, TERMINATE, F | T | E).error().code == "not_allowed");
    CHECK(next_state(ARRIVED, TERMINATE, P) == TERMINATED);
  }
}

TEST_CASE("final states are exactly the states with no way out; REPORT_RETURNED stays open for corrections",
          "[unit][referral]") {
  for (const state s : all_states()) {
    if (s == NONE) continue;
    bool has_exit = false;
    for (const auto& [key, rows] : expected_table()) has_exit = has_exit || key.first == s;
    INFO(state_name(s));
    CHECK(is_final(s) == !has_exit);
  }
  CHECK_FALSE(is_final(NONE));
  const std::set<state> finals{REJECTED, CANCELLED, EXPIRED, NO_SHOW, TERMINATED};
  for (const state s : all_states()) {
    INFO(state_name(s));
    CHECK(is_final(s) == finals.contains(s));
  }
}

TEST_CASE("the answer timer runs while the receiver has not answered", "[unit][referral]") {
  for (const state s : all_states()) {
    INFO(state_name(s));
    CHECK(awaits_answer(s) == (s == REQUESTED || s == RECEIVED));
  }
}

TEST_CASE("state names, FHIR Task.status / businessStatus and HL7 RF1-1 for every state", "[unit][referral]") {
  struct row {
    state s;
    std::string_view name;
    std::string_view task_status;    // FHIR R4 TaskStatus
    std::string_view business;       // Task.businessStatus code ("" = none)
    std::string_view rf1_1;          // HL7 v2 table 0283 ("" = no code)
  };
  const std::vector<row> rows{
      {DRAFT, "DRAFT", "draft", "", "P"},
      {REQUESTED, "REQUESTED", "requested", "", "P"},
      {RECEIVED, "RECEIVED", "received", "", "P"},
      {ACCEPTED, "ACCEPTED", "accepted", "", "A"},
      {REJECTED, "REJECTED", "rejected", "", "R"},
      {SCHEDULED, "SCHEDULED", "in-progress", "scheduled", "A"},
      {ARRIVED, "ARRIVED", "in-progress", "arrived", "A"},
      {COMPLETED, "COMPLETED", "completed", "completed", "A"},
      {RETURNED, "REPORT_RETURNED", "completed", "report-returned", "A"},
      {CANCELLED, "CANCELLED", "cancelled", "", ""},
      {EXPIRED, "EXPIRED", "failed", "expired", "E"},
      {NO_SHOW, "NO_SHOW", "failed", "no-show", ""},
      {TERMINATED, "TERMINATED", "failed", "terminated", ""},
  };
  REQUIRE(rows.size() + 1 == all_states().size());
  for (const auto& r : rows) {
    INFO(r.name);
    CHECK(state_name(r.s) == r.name);
    CHECK(fhir_task_status(r.s) == r.task_status);
    CHECK(fhir_business_status(r.s) == r.business);
    CHECK(hl7_referral_status(r.s) == r.rf1_1);
  }
  // Every code used is in FHIR R4's TaskStatus value set / HL7 table 0283.
  const std::set<std::string_view> task_status{"draft",   "requested", "received", "accepted",
                                               "rejected", "ready",    "cancelled", "in-progress",
                                               "on-hold", "failed",    "completed", "entered-in-error"};
  const std::set<std::string_view> table_0283{"A", "P", "R", "E"};
  // A FHIR reader maps (status, businessStatus) back to one state.
  std::set<std::pair<std::string_view, std::string_view>> fhir_pairs;
  for (const state s : all_states()) {
    INFO(state_name(s));
    CHECK(task_status.contains(fhir_task_status(s)));
    const auto rf1 = hl7_referral_status(s);
    CHECK((rf1.empty() || table_0283.contains(rf1)));
    if (s != NONE) CHECK(fhir_pairs.insert({fhir_task_status(s), fhir_business_status(s)}).second);
  }
}

TEST_CASE("state and action names read back, whatever the case", "[unit][referral]") {
  const std::map<action, std::string_view> names{
      {CREATE, "create"},       {SUBMIT, "submit"},     {MODIFY, "modify"},
      {RECEIVE, "receive"},     {ACCEPT, "accept"},     {REJECT, "reject"},
      {SCHEDULE, "schedule"},   {ARRIVE, "arrive"},     {COMPLETE, "complete"},
      {RETURN_REPORT, "return-report"}, {CANCEL, "cancel"}, {EXPIRE, "expire"},
      {NO_SHOW_ACT, "no-show"}, {TERMINATE, "terminate"},
  };
  std::set<std::string_view> seen;
  for (const action a : all_actions()) {
    if (a == ev::REFERRAL_ACTION_UNSPECIFIED) continue;
    INFO(ev::ReferralAction_Name(a));
    REQUIRE(names.contains(a));
    CHECK(action_name(a) == names.at(a));
    CHECK(action_from_name(action_name(a)) == a);
    std::string upper(action_name(a));
    for (auto& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    CHECK(action_from_name(upper) == a);
    CHECK(seen.insert(action_name(a)).second);
  }
  CHECK(action_from_name("") == ev::REFERRAL_ACTION_UNSPECIFIED);
  CHECK(action_from_name("approve") == ev::REFERRAL_ACTION_UNSPECIFIED);
  CHECK(action_from_name(action_name(ev::REFERRAL_ACTION_UNSPECIFIED)) == ev::REFERRAL_ACTION_UNSPECIFIED);

  std::set<std::string_view> state_names;
  for (const state s : all_states()) {
    if (s == NONE) continue;
    INFO(state_name(s));
    CHECK(state_from_name(state_name(s)) == s);
    std::string lower(state_name(s));
    for (auto& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    CHECK(state_from_name(lower) == s);
    CHECK(state_names.insert(state_name(s)).second);
  }
  CHECK(state_from_name("report-returned") == RETURNED);
  CHECK(state_from_name("no-show") == NO_SHOW);
  CHECK(state_from_name("") == NONE);
  CHECK(state_from_name("PENDING") == NONE);
  CHECK(state_from_name(state_name(NONE)) == NONE);
}

TEST_CASE("parties read as a comma-separated list in a fixed order", "[unit][referral]") {
  CHECK(parties_text(0).empty());
  CHECK(parties_text(F) == "referrer");
  CHECK(parties_text(E | F) == "referrer,engine");
  CHECK(parties_text(F | T | P | E) == "referrer,receiver,operator,engine");
  CHECK(parties_text(P | T) == "receiver,operator");
}
