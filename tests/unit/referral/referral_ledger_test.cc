// The referral ledger (engine/workflows/referral/ledger.h) on the example
// consortium: decide() against the ledger, apply() in log order, the undo log
// the writer uses for its batches, the answer deadlines and the indexes
// (by booking, by patient, by hospital).
//
// Written from DESIGN.md "Workflows" (referral), issue 5 and the headers;
// now is Monday 2025-09-29 09:00 in Shanghai (see referral_test_support.h).
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "tests/unit/referral/referral_test_support.h"

using namespace yilian;
using namespace yilian::workflows;
using namespace yilian::workflows::referral;
using namespace yilian::workflows::referral::test;

namespace {

constexpr auto CREATE = ev::REFERRAL_ACTION_CREATE;
constexpr auto SUBMIT = ev::REFERRAL_ACTION_SUBMIT;
constexpr auto MODIFY = ev::REFERRAL_ACTION_MODIFY;
constexpr auto RECEIVE = ev::REFERRAL_ACTION_RECEIVE;
constexpr auto ACCEPT = ev::REFERRAL_ACTION_ACCEPT;
constexpr auto REJECT = ev::REFERRAL_ACTION_REJECT;
constexpr auto SCHEDULE = ev::REFERRAL_ACTION_SCHEDULE;
constexpr auto ARRIVE = ev::REFERRAL_ACTION_ARRIVE;
constexpr auto COMPLETE = ev::REFERRAL_ACTION_COMPLETE;
constexpr auto RETURN_REPORT = ev::REFERRAL_ACTION_RETURN_REPORT;
constexpr auto CANCEL = ev::REFERRAL_ACTION_CANCEL;
constexpr auto EXPIRE = ev::REFERRAL_ACTION_EXPIRE;
constexpr auto NO_SHOW = ev::REFERRAL_ACTION_NO_SHOW;
constexpr auto TERMINATE = ev::REFERRAL_ACTION_TERMINATE;

constexpr auto S_DRAFT = ev::REFERRAL_STATE_DRAFT;
constexpr auto S_REQUESTED = ev::REFERRAL_STATE_REQUESTED;
constexpr auto S_RECEIVED = ev::REFERRAL_STATE_RECEIVED;
constexpr auto S_ACCEPTED = ev::REFERRAL_STATE_ACCEPTED;
constexpr auto S_REJECTED = ev::REFERRAL_STATE_REJECTED;
constexpr auto S_SCHEDULED = ev::REFERRAL_STATE_SCHEDULED;
constexpr auto S_ARRIVED = ev::REFERRAL_STATE_ARRIVED;
constexpr auto S_COMPLETED = ev::REFERRAL_STATE_COMPLETED;
constexpr auto S_RETURNED = ev::REFERRAL_STATE_REPORT_RETURNED;
constexpr auto S_CANCELLED = ev::REFERRAL_STATE_CANCELLED;
constexpr auto S_EXPIRED = ev::REFERRAL_STATE_EXPIRED;
constexpr auto S_NO_SHOW = ev::REFERRAL_STATE_NO_SHOW;
constexpr auto S_TERMINATED = ev::REFERRAL_STATE_TERMINATED;

const std::vector<std::string> all_hospitals{"zs-tertiary", "qh-county", "dc-chc", "xz-thc", "nh-chc"};
// Every state a referral is open in (for find_by_patient).
const std::initializer_list<state> open_states{S_DRAFT,     S_REQUESTED, S_RECEIVED,  S_ACCEPTED,
                                               S_SCHEDULED, S_ARRIVED,   S_COMPLETED, S_RETURNED};

// A new referral `id` from `from` to `to`, asked by `from`.
cmd create(std::string id, std::string from = "dc-chc", std::string to = "zs-tertiary") {
  cmd c;
  c.act = CREATE;
  c.referral = std::move(id);
  c.actor_hospital = from;
  c.from = std::move(from);
  c.to = std::move(to);
  return c;
}

// `a` on referral `id`, asked by a user of `hospital`.
cmd by(ev::ReferralAction a, std::string id, std::string hospital) {
  cmd c;
  c.act = a;
  c.referral = std::move(id);
  c.actor_hospital = std::move(hospital);
  return c;
}
cmd by_operator(ev::ReferralAction a, std::string id) {
  auto c = by(a, std::move(id), "");
  c.op = true;
  return c;
}
cmd by_engine(ev::ReferralAction a, std::string id) {
  auto c = by(a, std::move(id), "");
  c.engine = true;
  return c;
}
cmd with_id(cmd c, std::string id) {
  c.id = std::move(id);
  return c;
}
cmd with_reason(cmd c, std::string code, std::string text = "") {
  c.reason = std::move(code);
  c.reason_text = std::move(text);
  return c;
}

struct lx {
  ledger l;

  explicit lx(ledger_options o = {}) : l(consortium(), std::move(o)) {}

  ev::Envelope decide(const cmd& c, seconds at = test_now) const { return l.decide(make_command(c, at), at); }

  // Decides and applies, as the writer and then every view would.
  ev::Envelope run(const cmd& c, seconds at = test_now) {
    auto d = decide(c, at);
    const auto a = l.apply(d);
    CHECK(a.is_decision);
    CHECK(a.command_id == command_id_of(d));
    if (!d.has_referral_command_rejected()) {
      INFO("accepted at decide time, so it applies: " << (a.refused ? a.refused->message : std::string()));
      CHECK(a.changed);
      CHECK_FALSE(a.voided);
      CHECK(a.subject_id == c.referral);
    } else {
      CHECK_FALSE(a.changed);
      REQUIRE(a.refused);
      CHECK(a.refused->code == rejection_code(d));
    }
    return d;
  }

  // Runs `c` and requires it accepted.
  const referral_view& ok(const cmd& c, seconds at = test_now) {
    const auto d = run(c, at);
    INFO(action_name(c.act) << " " << c.referral << " by " << c.actor_hospital << ": "
                            << (d.has_referral_command_rejected() ? d.referral_command_rejected().message() : ""));
    REQUIRE(rejection_code(d).empty());
    return get(c.referral);
  }

  // Runs `c` and returns its rejection code ("" when accepted).
  std::string code(const cmd& c, seconds at = test_now) { return rejection_code(run(c, at)); }

  const referral_view& get(const std::string& id) const {
    const auto* r = l.find(id);
    if (r == nullptr) FAIL("no referral " << id);
    return *r;
  }

  std::vector<std::string> ids_of(const std::string& hospital) const {
    std::vector<std::string> out;
    for (const auto* r : l.referrals_of(hospital, 1000)) out.push_back(r->id);
    return out;
  }

  std::vector<std::string> overdue_ids(seconds at) const {
    std::vector<std::string> out;
    for (const auto* r : l.overdue(at)) out.push_back(r->id);
    return out;
  }

  // Brings `id` (dc-chc -> zs-tertiary, created at `at`) to `target` along the spec's path.
  void to_state(const std::string& id, state target, seconds at = test_now) {
    ok(create(id), at);
    if (target == S_REQUESTED) return;
    ok(by(RECEIVE, id, "zs-tertiary"), at);
    if (target == S_RECEIVED) return;
    ok(by(ACCEPT, id, "zs-tertiary"), at);
    if (target == S_ACCEPTED) return;
    auto s = by(SCHEDULE, id, "zs-tertiary");
    s.booking = cat("bk-", id);
    s.appointment_start = at + 24h;
    ok(s, at);
    if (target == S_SCHEDULED) return;
    ok(by(ARRIVE, id, "zs-tertiary"), at);
    if (target == S_ARRIVED) return;
    ok(by(COMPLETE, id, "zs-tertiary"), at);
    if (target == S_COMPLETED) return;
    auto r = by_engine(RETURN_REPORT, id);
    r.report = cat("rpt-", id);
    ok(r, at);
  }
};

google::protobuf::RepeatedPtrField<ev::Identifier> ids(std::initializer_list<ev::Identifier> list) {
  google::protobuf::RepeatedPtrField<ev::Identifier> out;
  for (const auto& i : list) *out.Add() = i;
  return out;
}

}  // namespace

TEST_CASE("an upward referral from a clinic to the tertiary hospital is decided as ReferralRequested",
          "[unit][referral]") {
  lx t;
  const auto command = make_command(with_id(create("ref-1"), "c-create-1"));
  const auto d = t.l.decide(command, test_now);
  REQUIRE(d.has_referral_requested());
  const auto& q = d.referral_requested();

  SECTION("the decision says what was decided, by whom, for which command") {
    CHECK(d.type() == "yilian.events.v1.ReferralRequested");
    CHECK(d.event_id() == "referral-decision:c-create-1");
    CHECK(d.causation_id() == command.event_id());
    CHECK(d.trace().traceparent() == command.trace().traceparent());
    CHECK(d.source().protocol() == ev::PROTOCOL_ENGINE);
    CHECK(d.source().hospital() == "dc-chc");
    CHECK(d.source().principal() == "dc-chc-user");
    CHECK(d.correlation().referral_id() == "ref-1");
    CHECK(to_seconds(d.occurred_at()) == test_now);
    CHECK(d.subject().identifiers_size() == 2);
    CHECK(q.referral_id() == "ref-1");
    CHECK(q.command_id() == "c-create-1");
    CHECK(q.version() == 1);
    CHECK(q.state() == S_REQUESTED);
    CHECK(q.direction() == ev::REFERRAL_DIRECTION_UP);  // PRIMARY -> TERTIARY, from the tiers
    CHECK(q.from_hospital() == "dc-chc");
    CHECK(q.to_hospital() == "zs-tertiary");
    CHECK(q.actor_hospital() == "dc-chc");
    CHECK(q.clinical_summary() == "chest pain, suspected ACS");
    CHECK(to_seconds(q.effective_at()) == test_now);
    // Unanswered, it expires after the consortium's answer time (72 h by default).
    REQUIRE(q.has_expires_at());
    CHECK(to_seconds(q.expires_at()) == test_now + 72h);
  }
  SECTION("decide is pure: the same command decided twice gives the same event and changes nothing") {
    CHECK(t.l.decide(command, test_now).SerializeAsString() == d.SerializeAsString());
    CHECK(t.l.size() == 0);
    CHECK(t.l.find("ref-1") == nullptr);
    CHECK_FALSE(t.l.decided("c-create-1"));
  }
  SECTION("applied, the referral is in the ledger at version 1 with its history") {
    const auto a = t.l.apply(d);
    CHECK(a.changed);
    CHECK(a.is_decision);
    CHECK(a.command_id == "c-create-1");
    CHECK(a.subject_id == "ref-1");
    CHECK_FALSE(a.refused);
    const auto& r = t.get("ref-1");
    CHECK(r.id == "ref-1");
    CHECK(r.st == S_REQUESTED);
    CHECK(r.version == 1);
    CHECK(r.direction == ev::REFERRAL_DIRECTION_UP);
    CHECK(r.from_hospital == "dc-chc");
    CHECK(r.to_hospital == "zs-tertiary");
    CHECK(r.created_at == test_now);
    CHECK(r.updated_at == test_now);
    CHECK(r.expires_at == test_now + 72h);
    CHECK(r.subject.identifiers_size() == 2);
    CHECK(r.request.clinical_summary() == "chest pain, suspected ACS");
    CHECK(r.linked_referral_id.empty());
    REQUIRE(r.history.size() == 1);
    CHECK(r.history[0].version == 1);
    CHECK(r.history[0].from == ev::REFERRAL_STATE_UNSPECIFIED);
    CHECK(r.history[0].to == S_REQUESTED);
    CHECK(r.history[0].act == CREATE);
    CHECK(r.history[0].at == test_now);
    CHECK(r.history[0].actor == "dc-chc-user");
    CHECK(r.history[0].actor_hospital == "dc-chc");
    CHECK(r.history[0].event_id == "referral-decision:c-create-1");
    REQUIRE(t.l.decided("c-create-1"));
    CHECK_FALSE(t.l.decided("c-create-1")->refused);
    CHECK(t.l.decided("c-create-1")->subject_id == "ref-1");
    CHECK(t.ids_of("dc-chc") == std::vector<std::string>{"ref-1"});
    CHECK(t.ids_of("zs-tertiary") == std::vector<std::string>{"ref-1"});
  }
}

TEST_CASE("a command that expects a version (FHIR If-Match) is refused once the referral has moved on",
          "[unit][referral]") {
  lx t;
  t.ok(create("ref-v"));
  auto receive = make_command(by(RECEIVE, "ref-v", "zs-tertiary"));
  receive.mutable_referral_command()->set_expected_version(1);
  auto d = t.l.decide(receive, test_now);
  REQUIRE(d.has_referral_state_changed());  // at version 1: decided
  REQUIRE_FALSE(t.l.apply(d).refused);
  auto accept = make_command(by(ACCEPT, "ref-v", "zs-tertiary"));
  accept.mutable_referral_command()->set_expected_version(1);  // read before RECEIVE
  d = t.l.decide(accept, test_now);
  REQUIRE(d.has_referral_command_rejected());
  CHECK(rejection_code(d) == "version_mismatch");
  CHECK_THAT(d.referral_command_rejected().message(), Catch::Contains("at version 2, not 1"));
  accept.mutable_referral_command()->set_expected_version(2);
  CHECK(t.l.decide(accept, test_now).has_referral_state_changed());
}

TEST_CASE("the direction comes from the tiers: up to a higher tier, down to a lower one", "[unit][referral]") {
  lx t;
  CHECK(t.ok(create("a", "dc-chc", "qh-county")).direction == ev::REFERRAL_DIRECTION_UP);
  CHECK(t.ok(create("b", "qh-county", "zs-tertiary")).direction == ev::REFERRAL_DIRECTION_UP);
  CHECK(t.ok(create("c", "zs-tertiary", "xz-thc")).direction == ev::REFERRAL_DIRECTION_DOWN);
  CHECK(t.ok(create("d", "qh-county", "nh-chc")).direction == ev::REFERRAL_DIRECTION_DOWN);
  CHECK(t.ok(create("e", "zs-tertiary", "qh-county")).direction == ev::REFERRAL_DIRECTION_DOWN);
}

TEST_CASE("a draft has no answer deadline until it is sent", "[unit][referral]") {
  lx t;
  auto c = create("draft-1");
  c.draft = true;
  const auto& r = t.ok(c);
  CHECK(r.st == S_DRAFT);
  CHECK(r.expires_at == seconds{});
  CHECK(t.overdue_ids(test_now + 1000h).empty());
  // Receivers do not answer drafts.
  CHECK(t.code(by(ACCEPT, "draft-1", "zs-tertiary")) == "wrong_transition");
  CHECK(t.code(by(RECEIVE, "draft-1", "zs-tertiary")) == "wrong_transition");
  const auto& sent = t.ok(by(SUBMIT, "draft-1", "dc-chc"), test_now + 5h);
  CHECK(sent.st == S_REQUESTED);
  CHECK(sent.version == 2);
  CHECK(sent.expires_at == test_now + 5h + 72h);
  CHECK(sent.history.back().act == SUBMIT);
  CHECK(sent.history.back().from == S_DRAFT);
}

TEST_CASE("a downward referral is a new referral linked to the upward one it follows", "[unit][referral]") {
  lx t;
  t.to_state("up-1", S_RETURNED);
  auto down = create("down-1", "zs-tertiary", "dc-chc");
  down.linked = "up-1";
  const auto d = t.run(down, test_now + 1h);
  REQUIRE(d.has_referral_requested());
  CHECK(d.referral_requested().linked_referral_id() == "up-1");
  CHECK(d.referral_requested().direction() == ev::REFERRAL_DIRECTION_DOWN);
  const auto& r = t.get("down-1");
  CHECK(r.direction == ev::REFERRAL_DIRECTION_DOWN);
  CHECK(r.linked_referral_id == "up-1");
  CHECK(r.st == S_REQUESTED);
  CHECK(r.version == 1);
  CHECK(t.get("up-1").followed_by == std::vector<std::string>{"down-1"});
  CHECK(t.get("up-1").st == S_RETURNED);  // the first one is unchanged otherwise
  // Both sides see both referrals.
  CHECK(t.ids_of("dc-chc") == std::vector<std::string>{"down-1", "up-1"});
  CHECK(t.ids_of("zs-tertiary") == std::vector<std::string>{"down-1", "up-1"});
  // A change of the down referral carries the link.
  const auto acc = t.run(by(ACCEPT, "down-1", "dc-chc"), test_now + 2h);
  REQUIRE(acc.has_referral_state_changed());
  CHECK(acc.referral_state_changed().linked_referral_id() == "up-1");
  CHECK(acc.referral_state_changed().direction() == ev::REFERRAL_DIRECTION_DOWN);

  SECTION("linked to an unknown referral: refused") {
    auto c = create("down-2", "zs-tertiary", "dc-chc");
    c.linked = "up-404";
    const auto rej = t.run(c);
    CHECK(rejection_code(rej) == "unknown_linked_referral");
    CHECK(t.l.find("down-2") == nullptr);
    CHECK(t.l.decided(command_id_of(rej))->refused->kind == errc::validation_failed);
  }
  SECTION("linked to a referral the sender had no part in: refused") {
    t.ok(create("up-2", "xz-thc", "qh-county"));
    auto c = create("down-3", "zs-tertiary", "dc-chc");
    c.linked = "up-2";
    CHECK(t.code(c) == "not_allowed");
    auto c2 = create("down-4", "nh-chc", "zs-tertiary");
    c2.linked = "up-1";
    CHECK(t.code(c2) == "not_allowed");
    CHECK(t.l.find("down-3") == nullptr);
    CHECK(t.l.find("down-4") == nullptr);
    CHECK(t.get("up-2").followed_by.empty());
    CHECK(t.get("up-1").followed_by == std::vector<std::string>{"down-1"});
  }
}

TEST_CASE("creation refusals: duplicate id, unknown hospitals, malformed commands, someone else's referral",
          "[unit][referral]") {
  lx t;
  t.ok(create("ref-1"));
  const auto before = describe(t.get("ref-1"));
  struct bad {
    const char* what;
    cmd c;
    std::string code;
    errc kind;
  };
  auto unknown_to = create("ref-2", "dc-chc", "zz-nowhere");
  auto unknown_from = create("ref-3", "zz-nowhere", "zs-tertiary");
  auto same = create("ref-4", "dc-chc", "dc-chc");
  auto no_patient = create("ref-5");
  no_patient.patient.clear();
  auto no_id = create("");
  auto for_other = create("ref-6");
  for_other.actor_hospital = "xz-thc";  // xz-thc sending a referral as if from dc-chc
  auto by_op = create("ref-7");
  by_op.actor_hospital = "";
  by_op.op = true;
  auto by_receiver = create("ref-8");
  by_receiver.actor_hospital = "zs-tertiary";
  const std::vector<bad> cases{
      {"the same referral id again", create("ref-1"), "duplicate_referral_id", errc::conflict},
      {"the same referral id from another clinic", create("ref-1", "xz-thc"), "duplicate_referral_id",
       errc::conflict},
      {"to a hospital not in the consortium", unknown_to, "unknown_hospital", errc::validation_failed},
      {"from a hospital not in the consortium", unknown_from, "unknown_hospital", errc::validation_failed},
      {"to itself", same, "invalid", errc::validation_failed},
      {"without a patient identifier", no_patient, "invalid", errc::validation_failed},
      {"without a referral id", no_id, "invalid", errc::validation_failed},
      {"by a clinic for another clinic", for_other, "not_allowed", errc::permission_denied},
      {"by an operator", by_op, "not_allowed", errc::permission_denied},
      {"by the hospital referred to", by_receiver, "not_allowed", errc::permission_denied},
  };
  for (const auto& b : cases) {
    INFO(b.what);
    const auto d = t.run(b.c);
    REQUIRE(d.has_referral_command_rejected());
    const auto& rej = d.referral_command_rejected();
    CHECK(rej.code() == b.code);
    CHECK_FALSE(rej.message().empty());
    CHECK(rej.action() == CREATE);
    CHECK(d.type() == "yilian.events.v1.ReferralCommandRejected");
    CHECK(d.source().protocol() == ev::PROTOCOL_ENGINE);
    const auto o = t.l.decided(command_id_of(d));
    REQUIRE(o);
    REQUIRE(o->refused);
    CHECK(o->refused->code == b.code);
    CHECK(o->refused->kind == b.kind);
  }
  CHECK(t.l.size() == 1);
  CHECK(describe(t.get("ref-1")) == before);
  SECTION("a command without a command id is refused") {
    auto c = make_command(create("ref-9"));
    c.mutable_referral_command()->clear_command_id();
    const auto d = t.l.decide(c, test_now);
    CHECK(rejection_code(d) == "invalid");
  }
}

TEST_CASE("who answers: the receiver accepts or rejects (with a reason); the clinic may not", "[unit][referral]") {
  lx t;
  t.ok(create("ref-1"));

  SECTION("the referring clinic cannot accept its own referral (403)") {
    const auto d = t.run(by(ACCEPT, "ref-1", "dc-chc"));
    CHECK(rejection_code(d) == "not_allowed");
    CHECK(t.l.decided(command_id_of(d))->refused->kind == errc::permission_denied);
    CHECK(t.get("ref-1").st == S_REQUESTED);
    CHECK(t.get("ref-1").version == 1);
  }
  SECTION("a hospital with no part in it can neither accept nor cancel it") {
    CHECK(t.code(by(ACCEPT, "ref-1", "qh-county")) == "not_allowed");
    CHECK(t.code(by(CANCEL, "ref-1", "xz-thc")) == "not_allowed");
    CHECK(t.code(by(TERMINATE, "ref-1", "xz-thc")) == "not_allowed");
  }
  SECTION("the receiver cannot cancel (it rejects)") {
    CHECK(t.code(by(CANCEL, "ref-1", "zs-tertiary")) == "not_allowed");
  }
  SECTION("a rejection without a reason is refused; with a code or a text it is taken") {
    const auto d = t.run(by(REJECT, "ref-1", "zs-tertiary"));
    CHECK(rejection_code(d) == "reason_required");
    CHECK(t.l.decided(command_id_of(d))->refused->kind == errc::validation_failed);
    CHECK(t.get("ref-1").st == S_REQUESTED);
    const auto rej = t.run(with_reason(by(REJECT, "ref-1", "zs-tertiary"), "NO-BED", "no cardiology bed this week"));
    REQUIRE(rej.has_referral_state_changed());
    CHECK(rej.referral_state_changed().reason().code() == "NO-BED");
    CHECK(rej.referral_state_changed().reason_text() == "no cardiology bed this week");
    const auto& r = t.get("ref-1");
    CHECK(r.st == S_REJECTED);
    CHECK(r.history.back().reason == "no cardiology bed this week");
    CHECK(r.expires_at == seconds{});
    // Final: nothing more, by anyone.
    CHECK(t.code(by(ACCEPT, "ref-1", "zs-tertiary")) == "wrong_transition");
    CHECK(t.code(by(CANCEL, "ref-1", "dc-chc")) == "wrong_transition");
    CHECK(t.code(by_operator(TERMINATE, "ref-1")) == "wrong_transition");
    t.ok(create("ref-2"));
    CHECK(t.ok(with_reason(by(REJECT, "ref-2", "zs-tertiary"), "NO-BED")).history.back().reason == "NO-BED");
  }
  SECTION("accepting an accepted referral is a wrong transition (409); so is scheduling a requested one") {
    t.ok(by(ACCEPT, "ref-1", "zs-tertiary"));
    const auto d = t.run(by(ACCEPT, "ref-1", "zs-tertiary"));
    CHECK(rejection_code(d) == "wrong_transition");
    CHECK(t.l.decided(command_id_of(d))->refused->kind == errc::conflict);
    CHECK(t.code(with_reason(by(REJECT, "ref-1", "zs-tertiary"), "late")) == "wrong_transition");
    t.ok(create("ref-2"));
    CHECK(t.code(by(SCHEDULE, "ref-2", "zs-tertiary")) == "wrong_transition");
  }
  SECTION("an action on a referral that does not exist is not found (404)") {
    const auto d = t.run(by(ACCEPT, "ref-404", "zs-tertiary"));
    CHECK(rejection_code(d) == "not_found");
    CHECK(t.l.decided(command_id_of(d))->refused->kind == errc::not_found);
    CHECK(d.referral_command_rejected().referral_id() == "ref-404");
    CHECK(t.l.find("ref-404") == nullptr);
  }
  SECTION("the initiator cancels; an operator terminates") {
    t.ok(create("ref-2"));
    const auto& c = t.ok(with_reason(by(CANCEL, "ref-1", "dc-chc"), "", "patient went elsewhere"));
    CHECK(c.st == S_CANCELLED);
    CHECK(c.history.back().actor_hospital == "dc-chc");
    const auto& x = t.ok(by_operator(TERMINATE, "ref-2"));
    CHECK(x.st == S_TERMINATED);
    CHECK(x.history.back().actor == "operator");
    CHECK(x.history.back().actor_hospital.empty());
  }
}

TEST_CASE("the whole loop: every step a new version, in the history, with what it carries", "[unit][referral]") {
  lx t;
  const auto t0 = test_now;
  t.ok(create("ref-1"), t0);
  auto r = t.ok(by(RECEIVE, "ref-1", "zs-tertiary"), t0 + 10min);
  CHECK(r.st == S_RECEIVED);
  auto acc = by(ACCEPT, "ref-1", "zs-tertiary");
  acc.external_id = "ZS-RF-0042";  // the receiver's own id, RF1-11 of its RRI
  acc.source_status = "A";
  const auto accepted = t.run(acc, t0 + 1h);
  REQUIRE(accepted.has_referral_state_changed());
  {
    const auto& c = accepted.referral_state_changed();
    CHECK(accepted.type() == "yilian.events.v1.ReferralStateChanged");
    CHECK(c.referral_id() == "ref-1");
    CHECK(c.previous_state() == S_RECEIVED);
    CHECK(c.state() == S_ACCEPTED);
    CHECK(c.action() == ACCEPT);
    CHECK(c.version() == 3);
    CHECK(c.source_status() == "A");
    CHECK(c.actor_hospital() == "zs-tertiary");
    CHECK(c.from_hospital() == "dc-chc");
    CHECK(c.to_hospital() == "zs-tertiary");
    CHECK(c.direction() == ev::REFERRAL_DIRECTION_UP);
    CHECK(accepted.source().hospital() == "zs-tertiary");
    CHECK(accepted.correlation().referral_id() == "ref-1");
    CHECK(accepted.subject().identifiers_size() == 2);
  }
  CHECK(t.get("ref-1").external_id == "ZS-RF-0042");

  auto sch = by_engine(SCHEDULE, "ref-1");
  sch.booking = "bk-77";
  sch.appointment = "appt-77";
  sch.appointment_start = sh(2025, 9, 30, 10);
  const auto scheduled = t.run(sch, t0 + 2h);
  REQUIRE(scheduled.has_referral_state_changed());
  CHECK(scheduled.referral_state_changed().booking_id() == "bk-77");
  CHECK(scheduled.correlation().appointment_id() == "bk-77");
  CHECK(scheduled.source().hospital() == "zs-tertiary");  // the engine acts on the receiver's side
  r = t.get("ref-1");
  CHECK(r.st == S_SCHEDULED);
  CHECK(r.booking_id == "bk-77");
  CHECK(r.appointment_id == "appt-77");
  CHECK(r.appointment_start == sh(2025, 9, 30, 10));
  CHECK(r.expires_at == seconds{});  // scheduled: no deadline any more
  CHECK(t.l.find_by_booking("bk-77") == t.l.find("ref-1"));

  auto arr = by(ARRIVE, "ref-1", "zs-tertiary");
  arr.encounter = "enc-9";
  const auto arrived = t.run(arr, sh(2025, 9, 30, 9, 50));
  // What the referral knew stays in the later decisions.
  CHECK(arrived.referral_state_changed().booking_id() == "bk-77");
  CHECK(arrived.referral_state_changed().appointment_id() == "appt-77");
  CHECK(to_seconds(arrived.referral_state_changed().appointment_start()) == sh(2025, 9, 30, 10));
  CHECK(t.get("ref-1").encounter_id == "enc-9");
  const auto completed = t.run(by_engine(COMPLETE, "ref-1"), sh(2025, 9, 30, 12));
  CHECK(completed.referral_state_changed().encounter_id() == "enc-9");
  auto rep = by_engine(RETURN_REPORT, "ref-1");
  rep.report = "rpt-1";
  t.ok(rep, sh(2025, 9, 30, 15));
  auto corr = by(RETURN_REPORT, "ref-1", "zs-tertiary");
  corr.report = "rpt-1-c";
  t.ok(corr, sh(2025, 9, 30, 17));
  auto again = corr;
  again.report = "rpt-1";
  t.ok(again, sh(2025, 9, 30, 18));  // the first report again: not listed twice

  r = t.get("ref-1");
  CHECK(r.st == S_RETURNED);
  CHECK(r.version == 9);
  CHECK(r.report_ids == std::vector<std::string>{"rpt-1", "rpt-1-c"});
  CHECK(r.created_at == t0);
  CHECK(r.updated_at == sh(2025, 9, 30, 18));
  CHECK(r.booking_id == "bk-77");
  CHECK(r.encounter_id == "enc-9");
  struct h_t {
    state from, to;
    action act;
    std::string actor_hospital;
    std::string detail;
  };
  const std::vector<h_t> expected{
      {ev::REFERRAL_STATE_UNSPECIFIED, S_REQUESTED, CREATE, "dc-chc", ""},
      {S_REQUESTED, S_RECEIVED, RECEIVE, "zs-tertiary", ""},
      {S_RECEIVED, S_ACCEPTED, ACCEPT, "zs-tertiary", ""},
      {S_ACCEPTED, S_SCHEDULED, SCHEDULE, "", "bk-77"},
      {S_SCHEDULED, S_ARRIVED, ARRIVE, "zs-tertiary", "enc-9"},
      {S_ARRIVED, S_COMPLETED, COMPLETE, "", "enc-9"},
      {S_COMPLETED, S_RETURNED, RETURN_REPORT, "", "rpt-1"},
      {S_RETURNED, S_RETURNED, RETURN_REPORT, "zs-tertiary", "rpt-1-c"},
      {S_RETURNED, S_RETURNED, RETURN_REPORT, "zs-tertiary", "rpt-1"},
  };
  REQUIRE(r.history.size() == expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    INFO("history " << i);
    CHECK(r.history[i].version == i + 1);
    CHECK(r.history[i].from == expected[i].from);
    CHECK(r.history[i].to == expected[i].to);
    CHECK(r.history[i].act == expected[i].act);
    CHECK(r.history[i].actor_hospital == expected[i].actor_hospital);
    CHECK(r.history[i].detail == expected[i].detail);
    CHECK_FALSE(r.history[i].event_id.empty());
    if (i > 0) CHECK(r.history[i].at >= r.history[i - 1].at);
  }
  CHECK(r.history[3].actor == "engine");
  // The loop is over for cancelling; an operator cannot terminate a returned report either.
  CHECK(t.code(by(CANCEL, "ref-1", "dc-chc")) == "wrong_transition");
  CHECK(t.code(by(ARRIVE, "ref-1", "zs-tertiary")) == "wrong_transition");
}

TEST_CASE("a scheduled patient who does not come: NO_SHOW, final, only once scheduled", "[unit][referral]") {
  lx t;
  t.to_state("r", S_ACCEPTED);
  CHECK(t.code(by_engine(NO_SHOW, "r")) == "wrong_transition");
  auto s = by(SCHEDULE, "r", "zs-tertiary");
  s.booking = "bk-r";
  t.ok(s);
  CHECK(t.code(by(NO_SHOW, "r", "dc-chc")) == "not_allowed");
  const auto& r = t.ok(with_reason(by_engine(NO_SHOW, "r"), "", "booking bk-r no-show"), test_now + 26h);
  CHECK(r.st == S_NO_SHOW);
  CHECK(r.history.back().reason == "booking bk-r no-show");
  CHECK(r.booking_id == "bk-r");
  CHECK(t.code(by(ARRIVE, "r", "zs-tertiary"), test_now + 27h) == "wrong_transition");
  CHECK(t.code(by(CANCEL, "r", "dc-chc"), test_now + 27h) == "wrong_transition");
  CHECK(t.overdue_ids(test_now + std::chrono::days(100)).empty());
}

TEST_CASE("the referrer changes its referral while it waits; the change travels as ReferralRequested",
          "[unit][referral]") {
  lx t;
  t.ok(create("ref-1"));
  auto m = by(MODIFY, "ref-1", "dc-chc");
  m.summary = "chest pain, troponin raised";
  m.from = "dc-chc";
  m.to = "zs-tertiary";
  const auto d = t.run(m, test_now + 1h);
  REQUIRE(d.has_referral_requested());
  CHECK(d.referral_requested().version() == 2);
  CHECK(d.referral_requested().state() == S_REQUESTED);
  const auto& r = t.get("ref-1");
  CHECK(r.st == S_REQUESTED);
  CHECK(r.version == 2);
  CHECK(r.request.clinical_summary() == "chest pain, troponin raised");
  CHECK(r.history.back().act == MODIFY);
  CHECK(r.history.back().from == S_REQUESTED);
  CHECK(r.history.back().to == S_REQUESTED);
  CHECK(r.created_at == test_now);
  CHECK(r.expires_at == test_now + 72h);  // changing it does not buy more time

  SECTION("not by the receiver, not once accepted") {
    auto by_to = m;
    by_to.actor_hospital = "zs-tertiary";
    CHECK(t.code(by_to) == "not_allowed");
    t.ok(by(ACCEPT, "ref-1", "zs-tertiary"));
    CHECK(t.code(m) == "wrong_transition");
  }
  SECTION("an earlier RF1-8 expiry in the change moves the deadline earlier") {
    auto earlier = m;
    earlier.expires_at = test_now + 30h;
    t.ok(earlier, test_now + 2h);
    CHECK(t.get("ref-1").expires_at == test_now + 30h);
  }
}

TEST_CASE("answer deadlines: the consortium's answer time, an earlier RF1-8 kept, accepted but never scheduled",
          "[unit][referral]") {
  SECTION("options from the consortium: the example's defaults, and its settings when given") {
    const auto o = options_from(consortium());
    CHECK(o.answer_within == std::chrono::hours(72));
    CHECK(o.accepted_expire == std::chrono::days(30));
    auto cfg = consortium();
    cfg.consortium.mutable_referrals()->set_answer_within_hours(24);
    cfg.consortium.mutable_referrals()->set_accepted_expire_days(0);
    const auto set = options_from(cfg);
    CHECK(set.answer_within == std::chrono::hours(24));
    CHECK(set.accepted_expire == std::chrono::seconds(0));
    cfg.consortium.mutable_referrals()->set_accepted_expire_days(7);
    CHECK(options_from(cfg).accepted_expire == std::chrono::days(7));
  }
  SECTION("unanswered: due after the answer time, receiving it does not restart the clock") {
    lx t;
    t.ok(create("ref-1"));
    t.ok(create("ref-2"), test_now + 1h);
    t.ok(by(RECEIVE, "ref-1", "zs-tertiary"), test_now + 20h);
    CHECK(t.get("ref-1").expires_at == test_now + 72h);
    CHECK(t.overdue_ids(test_now + 72h - 1s).empty());
    CHECK(t.overdue_ids(test_now + 72h) == std::vector<std::string>{"ref-1"});
    CHECK(t.overdue_ids(test_now + 73h) == std::vector<std::string>{"ref-1", "ref-2"});
  }
  SECTION("the configured answer time") {
    lx t(ledger_options{.answer_within = std::chrono::hours(24)});
    CHECK(t.ok(create("ref-1")).expires_at == test_now + 24h);
  }
  SECTION("an earlier RF1-8 expiry is kept, a later one is capped by the answer time") {
    lx t;
    auto early = create("early");
    early.expires_at = test_now + 12h;
    auto late = create("late");
    late.expires_at = test_now + 200h;
    const auto d = t.run(early);
    CHECK(to_seconds(d.referral_requested().expires_at()) == test_now + 12h);
    CHECK(t.get("early").expires_at == test_now + 12h);
    CHECK(t.ok(late).expires_at == test_now + 72h);
    t.ok(by(RECEIVE, "early", "zs-tertiary"), test_now + 1h);
    CHECK(t.get("early").expires_at == test_now + 12h);
    CHECK(t.overdue_ids(test_now + 12h) == std::vector<std::string>{"early"});
    // A draft carrying RF1-8 keeps it when it is sent.
    auto draft = create("draft");
    draft.draft = true;
    draft.expires_at = test_now + 10h;
    t.ok(draft);
    CHECK(t.overdue_ids(test_now + 12h) == std::vector<std::string>{"early"});  // drafts are not answered
    CHECK(t.ok(by(SUBMIT, "draft", "dc-chc"), test_now + 1h).expires_at == test_now + 10h);
  }
  SECTION("accepted: due when never scheduled within accepted_expire; scheduled: never") {
    lx t;
    t.ok(create("a"));
    t.ok(create("s"));
    CHECK(t.ok(by(ACCEPT, "a", "zs-tertiary"), test_now + 2h).expires_at == test_now + 2h + std::chrono::days(30));
    t.ok(by(ACCEPT, "s", "zs-tertiary"), test_now + 2h);
    auto s = by(SCHEDULE, "s", "zs-tertiary");
    s.booking = "bk-s";
    CHECK(t.ok(s, test_now + 3h).expires_at == seconds{});
    CHECK(t.overdue_ids(test_now + std::chrono::days(29)).empty());
    CHECK(t.overdue_ids(test_now + 2h + std::chrono::days(30)) == std::vector<std::string>{"a"});
    CHECK(t.overdue_ids(test_now + std::chrono::days(400)) == std::vector<std::string>{"a"});
    const auto& e = t.ok(by_engine(EXPIRE, "a"), test_now + 2h + std::chrono::days(30));
    CHECK(e.st == S_EXPIRED);
    CHECK(t.overdue_ids(test_now + std::chrono::days(400)).empty());
  }
  SECTION("accepted referrals never expire when accepted_expire is 0") {
    lx t(ledger_options{.accepted_expire = std::chrono::seconds(0)});
    t.ok(create("a"));
    CHECK(t.ok(by(ACCEPT, "a", "zs-tertiary")).expires_at == seconds{});
    CHECK(t.overdue_ids(test_now + std::chrono::days(4000)).empty());
  }
}

TEST_CASE("expiry: the engine expires an overdue referral, the receiver may say it expired (RF1-1 E)",
          "[unit][referral]") {
  lx t;
  t.ok(create("ref-1"));
  const auto due = test_now + 72h;

  SECTION("the engine's EXPIRE once overdue: EXPIRED, final, told to the initiator's side") {
    auto c = with_reason(by_engine(EXPIRE, "ref-1"), "", "not answered in time");
    const auto d = t.run(c, due);
    REQUIRE(d.has_referral_state_changed());
    CHECK(d.referral_state_changed().state() == S_EXPIRED);
    CHECK(d.referral_state_changed().from_hospital() == "dc-chc");  // who is told
    CHECK(d.source().principal() == "engine");
    const auto& r = t.get("ref-1");
    CHECK(r.st == S_EXPIRED);
    CHECK(r.expires_at == seconds{});
    CHECK(r.history.back().actor == "engine");
    CHECK(r.history.back().reason == "not answered in time");
    CHECK(t.overdue_ids(due + 1000h).empty());
    CHECK(t.code(by(ACCEPT, "ref-1", "zs-tertiary"), due + 1s) == "wrong_transition");
    CHECK(t.code(by_engine(EXPIRE, "ref-1"), due + 1h) == "wrong_transition");
  }
  SECTION("the receiver's RF1-1 E at any time") {
    auto c = by(EXPIRE, "ref-1", "zs-tertiary");
    c.source_status = "E";
    CHECK(t.ok(c, test_now + 1h).st == S_EXPIRED);
  }
  SECTION("the referring clinic cannot expire it") {
    CHECK(t.code(by(EXPIRE, "ref-1", "dc-chc"), due) == "not_allowed");
  }
  SECTION("the engine does not expire a referral before its deadline") {
    // "EXPIRED: not answered in a configured time": an engine EXPIRE that
    // arrives before the deadline has nothing to act on.
    const auto d = t.run(by_engine(EXPIRE, "ref-1"), due - 1h);
    CHECK_FALSE(rejection_code(d).empty());
    CHECK(t.get("ref-1").st == S_REQUESTED);
  }
  SECTION("a timer command for the unanswered referral, decided after the answer, does not expire the answer") {
    // The writer's sweep queued "expire:ref-1:1" (version 1, overdue) and the
    // receiver's ACCEPT was decided first, at the deadline: the referral is
    // accepted, its accepted deadline is 30 days away.
    t.ok(by(ACCEPT, "ref-1", "zs-tertiary"), due);
    const auto d = t.run(with_id(by_engine(EXPIRE, "ref-1"), "expire:ref-1:1"), due);
    CHECK_FALSE(rejection_code(d).empty());
    CHECK(t.get("ref-1").st == S_ACCEPTED);
  }
}

TEST_CASE("a decision that no longer holds at its place in the log is void (stale), changes nothing and is remembered",
          "[unit][referral]") {
  lx t;
  t.ok(create("ref-1"));
  t.ok(create("other", "xz-thc"));
  auto snapshot = [&] {
    std::vector<std::string> s;
    for (const auto* r : t.l.all(100)) s.push_back(describe(*r));
    return s;
  };

  SECTION("accept and reject decided on one version: the first in the log wins, the second is stale") {
    const auto accept = t.decide(with_id(by(ACCEPT, "ref-1", "zs-tertiary"), "c-accept"));
    const auto reject = t.decide(with_id(with_reason(by(REJECT, "ref-1", "zs-tertiary"), "NO-BED"), "c-reject"));
    const auto cancel = t.decide(with_id(by(CANCEL, "ref-1", "dc-chc"), "c-cancel"));
    REQUIRE(accept.has_referral_state_changed());
    REQUIRE(reject.has_referral_state_changed());
    REQUIRE(cancel.has_referral_state_changed());
    REQUIRE(t.l.apply(accept).changed);
    const auto before = snapshot();
    for (const auto* d : {&reject, &cancel}) {
      const auto a = t.l.apply(*d);
      INFO(command_id_of(*d));
      CHECK_FALSE(a.changed);
      CHECK(a.voided);
      CHECK(a.is_decision);
      CHECK(a.subject_id == "ref-1");
      REQUIRE(a.refused);
      CHECK(a.refused->code == "stale");
      CHECK(a.refused->kind == errc::conflict);
    }
    CHECK(snapshot() == before);
    CHECK(t.get("ref-1").st == S_ACCEPTED);
    CHECK(t.get("ref-1").version == 2);
    // Remembered: the command has its answer (a resend is not decided again).
    REQUIRE(t.l.decided("c-reject"));
    CHECK(t.l.decided("c-reject")->refused->code == "stale");
    REQUIRE(t.l.decided("c-cancel"));
    CHECK(t.l.decided("c-cancel")->refused->code == "stale");
    // The same void decision again changes nothing either.
    const auto again = t.l.apply(reject);
    CHECK_FALSE(again.changed);
    CHECK(snapshot() == before);
  }
  SECTION("two creations of one referral id (two writers): the second is stale and leaves no trace") {
    auto first = create("new-1");
    first.id = "c-new-a";
    auto second = create("new-1", "nh-chc", "qh-county");
    second.id = "c-new-b";
    const auto a = t.decide(first);
    const auto b = t.decide(second);
    REQUIRE(t.l.apply(a).changed);
    const auto before = snapshot();
    const auto s = t.l.apply(b);
    CHECK(s.voided);
    REQUIRE(s.refused);
    CHECK(s.refused->code == "stale");
    CHECK(snapshot() == before);
    CHECK(t.get("new-1").from_hospital == "dc-chc");
    CHECK(t.ids_of("nh-chc").empty());
    CHECK(t.ids_of("qh-county").empty());
    CHECK(t.l.decided("c-new-b")->refused->code == "stale");
  }
  SECTION("a decision whose previous state is not the referral's is stale") {
    auto d = t.decide(by(ACCEPT, "ref-1", "zs-tertiary"));
    d.mutable_referral_state_changed()->set_previous_state(S_RECEIVED);
    const auto before = snapshot();
    const auto a = t.l.apply(d);
    CHECK(a.voided);
    CHECK(a.refused->code == "stale");
    CHECK(snapshot() == before);
  }
  SECTION("a decision that skips a version is stale") {
    auto d = t.decide(by(ACCEPT, "ref-1", "zs-tertiary"));
    d.mutable_referral_state_changed()->set_version(3);
    CHECK(t.l.apply(d).voided);
    CHECK(t.get("ref-1").st == S_REQUESTED);
  }
  SECTION("a decision that is not a transition of the machine is void") {
    auto d = t.decide(by(ACCEPT, "ref-1", "zs-tertiary"));
    d.mutable_referral_state_changed()->set_state(S_COMPLETED);
    const auto a = t.l.apply(d);
    CHECK(a.voided);
    CHECK_FALSE(a.changed);
    CHECK(t.get("ref-1").st == S_REQUESTED);
    auto skip = t.decide(by(ACCEPT, "ref-1", "zs-tertiary"));
    skip.mutable_referral_state_changed()->set_action(ev::REFERRAL_ACTION_COMPLETE);
    CHECK(t.l.apply(skip).voided);
  }
  SECTION("a creation decision in a state a referral cannot start in is void") {
    // apply() re-checks "a legal transition": a new referral is DRAFT or REQUESTED.
    auto d = t.decide(create("forged"));
    d.mutable_referral_requested()->set_state(S_ACCEPTED);
    const auto a = t.l.apply(d);
    CHECK(a.voided);
    CHECK(t.l.find("forged") == nullptr);
  }
  SECTION("a referral change reported by a hospital's own system is input, not a decision") {
    auto d = t.decide(with_id(by(ACCEPT, "ref-1", "zs-tertiary"), "c-his"));
    d.mutable_source()->set_protocol(ev::PROTOCOL_HL7V2_MLLP);
    const auto a = t.l.apply(d);
    CHECK_FALSE(a.changed);
    CHECK_FALSE(a.voided);
    CHECK_FALSE(a.is_decision);
    CHECK_FALSE(t.l.decided("c-his"));
    CHECK(t.get("ref-1").st == S_REQUESTED);
  }
  SECTION("commands and other events are none of the ledger's business") {
    const auto c = make_command(with_id(by(ACCEPT, "ref-1", "zs-tertiary"), "c-cmd"));
    const auto engine_cmd = make_command(with_id(by_engine(EXPIRE, "ref-1"), "c-cmd-2"));
    for (const auto* e : {&c, &engine_cmd}) {
      const auto a = t.l.apply(*e);
      CHECK_FALSE(a.changed);
      CHECK_FALSE(a.is_decision);
    }
    CHECK_FALSE(t.l.decided("c-cmd"));
    CHECK_FALSE(t.l.decided("c-cmd-2"));
    CHECK(t.get("ref-1").st == S_REQUESTED);
  }
}

TEST_CASE("a command id is decided once: a second decision for it is ignored, the first stands", "[unit][referral]") {
  lx t;
  t.ok(create("ref-1"));
  const auto first = t.run(with_id(by(ACCEPT, "ref-1", "zs-tertiary"), "c-1"));
  REQUIRE(first.has_referral_state_changed());
  const auto snapshot = describe(t.get("ref-1"));

  SECTION("the same decision again (a writer publishing it twice)") {
    const auto a = t.l.apply(first);
    CHECK_FALSE(a.changed);
    CHECK_FALSE(a.voided);
    CHECK_FALSE(a.refused);
    CHECK(describe(t.get("ref-1")) == snapshot);
  }
  SECTION("a later decision of the same command id on a new version (a stale writer deciding it again)") {
    auto other = t.decide(with_id(by_engine(SCHEDULE, "ref-1"), "c-1"));
    REQUIRE(other.has_referral_state_changed());
    CHECK_FALSE(t.l.apply(other).changed);
    CHECK(describe(t.get("ref-1")) == snapshot);
  }
  SECTION("a rejection for the same command") {
    ev::Envelope rej;
    rej.mutable_source()->set_protocol(ev::PROTOCOL_ENGINE);
    *rej.mutable_occurred_at() = to_timestamp(test_now);
    rej.mutable_referral_command_rejected()->set_command_id("c-1");
    rej.mutable_referral_command_rejected()->set_referral_id("ref-1");
    rej.mutable_referral_command_rejected()->set_code("wrong_transition");
    const auto a = t.l.apply(rej);
    CHECK_FALSE(a.refused);
    CHECK_FALSE(t.l.decided("c-1")->refused);
  }
  SECTION("a rejection first, then an acceptance of the same command id: the rejection stands") {
    const auto r1 = t.run(with_id(by(ACCEPT, "ref-1", "dc-chc"), "c-2"));
    REQUIRE(rejection_code(r1) == "wrong_transition");  // nothing to accept any more
    auto forged = t.decide(with_id(by_engine(SCHEDULE, "ref-1"), "c-2"));
    CHECK_FALSE(t.l.apply(forged).changed);
    CHECK(t.l.decided("c-2")->refused->code == "wrong_transition");
    CHECK(describe(t.get("ref-1")) == snapshot);
  }
}

TEST_CASE("decided() remembers answers within the idempotency window, then forgets them", "[unit][referral]") {
  lx t(ledger_options{.idempotency_window = std::chrono::hours(1)});
  t.ok(with_id(create("ref-1"), "c-ok"));
  t.run(with_id(by(ACCEPT, "ref-1", "dc-chc"), "c-no"));
  REQUIRE(t.l.decided("c-ok"));
  CHECK(t.l.decided("c-ok")->subject_id == "ref-1");
  REQUIRE(t.l.decided("c-no"));
  CHECK(t.l.decided("c-no")->refused->code == "not_allowed");
  CHECK_FALSE(t.l.decided("c-unknown"));
  t.ok(with_id(create("late"), "c-late"), test_now + 2h);
  CHECK_FALSE(t.l.decided("c-ok"));
  CHECK_FALSE(t.l.decided("c-no"));
  CHECK(t.l.decided("c-late"));
  CHECK(t.l.find("ref-1") != nullptr);
}

namespace {

// Everything observable about a ledger, as text.
std::vector<std::string> observe(const ledger& l, const std::vector<std::string>& command_ids) {
  std::vector<std::string> out;
  for (const auto& h : all_hospitals) {
    std::string line = cat("referrals_of ", h, ":");
    for (const auto* r : l.referrals_of(h, 1000)) line += cat(" ", describe(*r));
    out.push_back(line);
  }
  std::string line = "all:";
  for (const auto* r : l.all(1000)) line += cat(" ", r->id);
  out.push_back(line);
  for (const auto* b : {"bk-s", "bk-a", "bk-new", "bk-none"}) {
    const auto* r = l.find_by_booking(b);
    out.push_back(cat("booking ", b, ": ", r != nullptr ? r->id : "-"));
  }
  const std::vector<ev::Identifier> people{resident("110101196005010011"), mrn("dc-chc", "DC-0001"),
                                           resident("110101197001010022"), mrn("xz-thc", "XZ-7")};
  for (const auto& h : all_hospitals) {
    for (const auto& p : people) {
      line = cat("patient ", h, " ", p.value(), ":");
      for (const auto* r : l.find_by_patient(h, ids({p}), open_states)) line += cat(" ", r->id);
      out.push_back(line);
    }
  }
  for (const auto at : {test_now, test_now + 12h, test_now + 72h, test_now + 100h, test_now + std::chrono::days(40)}) {
    line = cat("overdue ", text_of(at), ":");
    for (const auto* r : l.overdue(at)) line += cat(" ", r->id);
    out.push_back(line);
  }
  for (const auto& id : command_ids) {
    const auto o = l.decided(id);
    out.push_back(cat("decided ", id, ": ", o ? cat(o->subject_id, "/", o->refused ? o->refused->code : "ok") : "-"));
  }
  out.push_back(cat("size ", std::to_string(l.size())));
  return out;
}

}  // namespace

TEST_CASE("tentative decisions are undone exactly: referrals, links, indexes, deadlines, decided ids",
          "[unit][referral]") {
  lx t;
  // The state before the batch, each referral changed at its own time.
  t.to_state("up", S_COMPLETED, test_now - 5h);
  t.to_state("s", S_SCHEDULED, test_now - 4h);
  t.to_state("a", S_ACCEPTED, test_now - 3h);
  t.ok(create("q"), test_now - 2h);
  auto early = create("e", "xz-thc", "qh-county");
  early.patient = {resident("110101197001010022"), mrn("xz-thc", "XZ-7")};
  early.expires_at = test_now + 12h;
  t.ok(early, test_now - 1h);
  t.run(with_id(by(ACCEPT, "q", "dc-chc"), "c-refused"), test_now - 1h);

  const auto at = test_now;
  std::vector<std::string> command_ids{"c-refused", "c-stale"};
  for (int i = 1; i <= 12; ++i) command_ids.push_back(cat("t", std::to_string(i)));
  std::vector<ev::Envelope> batch;
  auto tentative = [&](cmd c) {
    c.id = cat("t", std::to_string(batch.size() + 1));
    auto d = t.l.decide(make_command(c, at), at);
    const auto s = t.l.apply_tentatively(d);
    CHECK(s.changed == !d.has_referral_command_rejected());
    batch.push_back(d);
    return rejection_code(d);
  };
  const auto before = observe(t.l, command_ids);
  std::map<std::string, std::string> before_views;
  for (const auto* r : t.l.all(100)) before_views[r->id] = describe(*r);

  // The batch: each decision sees the ones before it.
  auto down = create("down", "zs-tertiary", "dc-chc");
  down.linked = "up";
  REQUIRE(tentative(down) == "");
  CHECK(t.get("up").followed_by == std::vector<std::string>{"down"});
  REQUIRE(tentative(by(ACCEPT, "down", "dc-chc")) == "");
  auto sch = by(SCHEDULE, "down", "dc-chc");
  sch.booking = "bk-new";
  REQUIRE(tentative(sch) == "");
  CHECK(t.l.find_by_booking("bk-new") != nullptr);
  REQUIRE(tentative(by(CANCEL, "s", "dc-chc")) == "");
  auto resch = by_engine(SCHEDULE, "a");
  resch.booking = "bk-a";
  REQUIRE(tentative(resch) == "");
  REQUIRE(tentative(with_reason(by(REJECT, "q", "zs-tertiary"), "FULL")) == "");
  REQUIRE(tentative(by(RECEIVE, "e", "qh-county")) == "");
  auto m = by(MODIFY, "e", "xz-thc");
  m.from = "xz-thc";
  m.to = "qh-county";
  m.patient = {resident("110101197001010022"), mrn("xz-thc", "XZ-8")};
  REQUIRE(tentative(m) == "");
  REQUIRE(tentative(by(ACCEPT, "q", "zs-tertiary")) == "wrong_transition");  // sees the rejection before it
  REQUIRE(tentative(create("new", "nh-chc", "zs-tertiary")) == "");
  REQUIRE(tentative(create("up")) == "duplicate_referral_id");
  auto rep = by_engine(RETURN_REPORT, "up");
  rep.report = "rpt-up";
  REQUIRE(tentative(rep) == "");
  // A void one inside the batch: a stale copy of the cancel of s.
  {
    auto stale = batch[3];
    stale.mutable_referral_state_changed()->set_command_id("c-stale");
    CHECK(t.l.apply_tentatively(stale).voided);
  }
  CHECK(observe(t.l, command_ids) != before);

  t.l.undo_tentative();

  CHECK(observe(t.l, command_ids) == before);
  std::map<std::string, std::string> after_views;
  for (const auto* r : t.l.all(100)) after_views[r->id] = describe(*r);
  CHECK(after_views == before_views);
  CHECK(t.l.find("down") == nullptr);
  CHECK(t.l.find("new") == nullptr);

  SECTION("the same batch then applies for real, in the same way") {
    for (const auto& d : batch) {
      INFO(d.ShortDebugString());
      const auto a = t.l.apply(d);
      CHECK(a.changed == !d.has_referral_command_rejected());
      CHECK_FALSE(a.voided);
    }
    CHECK(t.get("up").followed_by == std::vector<std::string>{"down"});
    CHECK(t.get("down").st == S_SCHEDULED);
    CHECK(t.get("s").st == S_CANCELLED);
    CHECK(t.get("q").st == S_REJECTED);
    CHECK(t.get("up").st == S_RETURNED);
    CHECK(t.l.find_by_booking("bk-new")->id == "down");
    CHECK(t.l.decided("t9")->refused->code == "wrong_transition");
  }
  SECTION("an empty undo does nothing") {
    t.l.undo_tentative();
    CHECK(observe(t.l, command_ids) == before);
  }
}

TEST_CASE("replaying the decisions rebuilds the same ledger, whatever the order between referrals",
          "[unit][referral]") {
  // Decisions are keyed by referral id: two referrals are on different
  // partitions, and a view rebuilding from the log may read one partition
  // before the other (DESIGN.md: stores are rebuildable by replaying the bus).
  lx live;
  std::vector<ev::Envelope> up_decisions, down_decisions;
  up_decisions.push_back(live.run(create("up")));
  up_decisions.push_back(live.run(by(ACCEPT, "up", "zs-tertiary"), test_now + 1h));
  auto down = create("down", "zs-tertiary", "dc-chc");
  down.linked = "up";
  down_decisions.push_back(live.run(down, test_now + 2h));
  down_decisions.push_back(live.run(by(RECEIVE, "down", "dc-chc"), test_now + 3h));
  up_decisions.push_back(live.run(by(CANCEL, "up", "dc-chc"), test_now + 4h));
  auto all_of = [](const ledger& l) {
    std::vector<std::string> out;
    for (const auto* r : l.all(100)) out.push_back(describe(*r));
    std::sort(out.begin(), out.end());
    return out;
  };
  REQUIRE(live.get("up").followed_by == std::vector<std::string>{"down"});

  SECTION("the up referral's partition first") {
    lx replay;
    for (const auto& d : up_decisions) CHECK(replay.l.apply(d).changed);
    for (const auto& d : down_decisions) CHECK(replay.l.apply(d).changed);
    CHECK(all_of(replay.l) == all_of(live.l));
  }
  SECTION("the down referral's partition first") {
    lx replay;
    for (const auto& d : down_decisions) CHECK(replay.l.apply(d).changed);
    for (const auto& d : up_decisions) CHECK(replay.l.apply(d).changed);
    CHECK(all_of(replay.l) == all_of(live.l));
    CHECK(replay.get("up").followed_by == std::vector<std::string>{"down"});
  }
}

TEST_CASE("a shared version stays as it was after later changes and their undo", "[unit][referral]") {
  lx t;
  t.ok(create("r1"));
  const auto first = t.l.share("r1");
  REQUIRE(first != nullptr);
  CHECK(first.get() == t.l.find("r1"));
  CHECK(t.l.share("absent") == nullptr);
  t.ok(by(ACCEPT, "r1", "zs-tertiary"), test_now + 1h);
  const auto second = t.l.share("r1");
  CHECK(first->st == S_REQUESTED);
  CHECK(first->version == 1);
  CHECK(second->st == S_ACCEPTED);
  CHECK(second->version == 2);
  // A tentative change and its undo put the same version back, not a copy.
  auto sch = by_engine(SCHEDULE, "r1");
  sch.booking = "bk-x";
  const auto d = t.decide(sch, test_now + 2h);
  CHECK(t.l.apply_tentatively(d).changed);
  CHECK(t.l.find("r1")->st == S_SCHEDULED);
  t.l.undo_tentative();
  CHECK(t.l.share("r1") == second);
  CHECK(second->st == S_ACCEPTED);
  CHECK(t.l.find_by_booking("bk-x") == nullptr);
}

TEST_CASE("find_by_booking: the referral a booking serves", "[unit][referral]") {
  lx t;
  t.to_state("r1", S_SCHEDULED);
  t.to_state("r2", S_ACCEPTED);
  REQUIRE(t.l.find_by_booking("bk-r1") != nullptr);
  CHECK(t.l.find_by_booking("bk-r1")->id == "r1");
  CHECK(t.l.find_by_booking("bk-r2") == nullptr);
  CHECK(t.l.find_by_booking("") == nullptr);
  // Rescheduled onto another booking: the new one finds it, the old one no longer does.
  auto again = by(SCHEDULE, "r1", "zs-tertiary");
  again.booking = "bk-r1-b";
  t.ok(again, test_now + 1h);
  CHECK(t.l.find_by_booking("bk-r1-b")->id == "r1");
  CHECK(t.l.find_by_booking("bk-r1") == nullptr);
  // It keeps finding it as the visit goes on.
  t.ok(by_engine(ARRIVE, "r1"), test_now + 2h);
  CHECK(t.l.find_by_booking("bk-r1-b")->id == "r1");
}

TEST_CASE("find_by_patient: open referrals to that hospital whose patient shares an identifier, newest first",
          "[unit][referral]") {
  lx t;
  // One patient (resident id + dc-chc MRN) in three referrals to zs-tertiary
  // and one to qh-county; another patient to zs-tertiary.
  t.ok(create("old"), test_now);
  t.ok(create("new"), test_now + 1h);
  t.ok(create("gone"), test_now + 2h);
  t.ok(by(CANCEL, "gone", "dc-chc"), test_now + 3h);
  t.ok(create("county", "dc-chc", "qh-county"), test_now + 4h);
  auto other = create("other", "xz-thc");
  other.patient = {resident("110101197001010022"), mrn("xz-thc", "XZ-7")};
  t.ok(other, test_now + 5h);

  auto ids_for = [&](const std::string& to, std::initializer_list<ev::Identifier> who,
                     std::initializer_list<state> states) {
    std::vector<std::string> out;
    for (const auto* r : t.l.find_by_patient(to, ids(who), states)) out.push_back(r->id);
    return out;
  };
  CHECK(ids_for("zs-tertiary", {resident("110101196005010011")}, open_states) ==
        std::vector<std::string>{"new", "old"});
  // Any one shared identifier will do; the same referral once.
  CHECK(ids_for("zs-tertiary", {mrn("dc-chc", "DC-0001")}, open_states) == std::vector<std::string>{"new", "old"});
  CHECK(ids_for("zs-tertiary", {mrn("dc-chc", "DC-0001"), resident("110101196005010011")}, open_states) ==
        std::vector<std::string>{"new", "old"});
  // Only referrals to that hospital.
  CHECK(ids_for("qh-county", {resident("110101196005010011")}, open_states) == std::vector<std::string>{"county"});
  CHECK(ids_for("dc-chc", {resident("110101196005010011")}, open_states).empty());
  // Only the states asked for; a closed referral never (even when its state is asked for).
  t.ok(by(ACCEPT, "old", "zs-tertiary"), test_now + 6h);
  CHECK(ids_for("zs-tertiary", {resident("110101196005010011")}, {S_ACCEPTED}) == std::vector<std::string>{"old"});
  CHECK(ids_for("zs-tertiary", {resident("110101196005010011")}, {S_REQUESTED, S_RECEIVED}) ==
        std::vector<std::string>{"new"});
  CHECK(ids_for("zs-tertiary", {resident("110101196005010011")}, {S_CANCELLED}).empty());
  // The same value in another system is another identifier.
  ev::Identifier same_value = resident("110101196005010011");
  same_value.set_system("urn:yilian:id:cn:insurance");
  CHECK(ids_for("zs-tertiary", {same_value}, open_states).empty());
  // Another patient.
  CHECK(ids_for("zs-tertiary", {mrn("xz-thc", "XZ-7")}, open_states) == std::vector<std::string>{"other"});
  CHECK(ids_for("zs-tertiary", {mrn("xz-thc", "XZ-9")}, open_states).empty());
  // Once it ends, it is no longer found.
  t.ok(with_reason(by(REJECT, "new", "zs-tertiary"), "FULL"), test_now + 7h);
  CHECK(ids_for("zs-tertiary", {resident("110101196005010011")}, open_states) == std::vector<std::string>{"old"});
  // A changed patient (MODIFY with new identifiers) is found by the new ones only.
  auto m = by(MODIFY, "other", "xz-thc");
  m.from = "xz-thc";
  m.patient = {mrn("xz-thc", "XZ-8")};
  t.ok(m, test_now + 8h);
  CHECK(ids_for("zs-tertiary", {mrn("xz-thc", "XZ-7")}, open_states).empty());
  CHECK(ids_for("zs-tertiary", {mrn("xz-thc", "XZ-8")}, open_states) == std::vector<std::string>{"other"});
}

TEST_CASE("referrals_of: each side sees the referrals it sent or received, newest change first",
          "[unit][referral]") {
  lx t;
  t.ok(create("u1"), test_now);                              // dc-chc -> zs-tertiary
  t.ok(create("u2", "xz-thc", "qh-county"), test_now + 1h);  // xz-thc -> qh-county
  auto d1 = create("d1", "zs-tertiary", "dc-chc");
  d1.linked = "u1";
  t.ok(d1, test_now + 2h);
  t.ok(create("u3", "nh-chc"), test_now + 3h);               // nh-chc -> zs-tertiary
  t.ok(by(RECEIVE, "u1", "zs-tertiary"), test_now + 4h);     // u1 changed last

  CHECK(t.ids_of("dc-chc") == std::vector<std::string>{"u1", "d1"});
  CHECK(t.ids_of("zs-tertiary") == std::vector<std::string>{"u1", "u3", "d1"});
  CHECK(t.ids_of("xz-thc") == std::vector<std::string>{"u2"});
  CHECK(t.ids_of("qh-county") == std::vector<std::string>{"u2"});
  CHECK(t.ids_of("nh-chc") == std::vector<std::string>{"u3"});
  CHECK(t.ids_of("zz-nowhere").empty());
  CHECK(t.l.referrals_of("zs-tertiary", 2).size() == 2);
  CHECK(t.l.referrals_of("zs-tertiary", 0).empty());
  CHECK(t.l.all(1000).size() == 4);
  // Refusals leave nothing behind for anyone.
  t.code(create("u4", "dc-chc", "zz-nowhere"));
  CHECK(t.ids_of("dc-chc") == std::vector<std::string>{"u1", "d1"});
  // Ended referrals are still listed (the timeline stays).
  t.ok(by(CANCEL, "u3", "nh-chc"), test_now + 5h);
  CHECK(t.ids_of("nh-chc") == std::vector<std::string>{"u3"});
  // Ties on the change time: by id.
  t.ok(create("z1", "xz-thc", "zs-tertiary"), test_now + 9h);
  t.ok(create("y1", "xz-thc", "zs-tertiary"), test_now + 9h);
  CHECK(t.ids_of("xz-thc") == std::vector<std::string>{"y1", "z1", "u2"});
}
