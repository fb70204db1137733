// A refused referral command that a hospital's HL7 v2 message asked for is
// answered to that hospital (notifier.h); nothing else is: REST, FHIR and the
// engine's own commands (timers, bookings, encounters, reports) carry no
// origin. The writer keeps the command's origin in its refusal (ledger.cc).
#include <catch2/catch.hpp>

#include "engine/workflows/referral/notifier.h"
#include "referral_test_support.h"

using namespace yilian;
using namespace yilian::workflows;
using namespace yilian::workflows::referral;
using namespace yilian::workflows::referral::test;

namespace {

ev::ReferralCommandOrigin hl7_origin(std::string hospital) {
  ev::ReferralCommandOrigin o;
  o.set_hospital(std::move(hospital));
  o.set_protocol(ev::PROTOCOL_HL7V2_MLLP);
  o.set_application("HIS");
  o.set_facility("DCSQ");
  o.set_control_id("DCHIS-I13-0009");
  o.set_message_type("REF^I13^REF_I12");
  o.set_event_id("e-1");
  return o;
}

struct ledger_with_referral {
  ledger l{consortium(), options_from(consortium())};
  ledger_with_referral() {
    cmd c;
    c.referral = "ref-answer-1";
    const auto d = l.decide(make_command(c), test_now);
    REQUIRE(d.has_referral_requested());
    REQUIRE(l.apply(d).changed);
  }
};

}  // namespace

TEST_CASE("the writer's refusal keeps the origin of the command it refuses", "[unit][referral]") {
  ledger_with_referral t;
  cmd c;
  c.act = ev::REFERRAL_ACTION_ACCEPT;  // the referrer may not accept its own referral
  c.referral = "ref-answer-1";
  auto command = make_command(c);
  *command.mutable_referral_command()->mutable_origin() = hl7_origin("dc-chc");
  const auto d = t.l.decide(command, test_now);
  REQUIRE(d.has_referral_command_rejected());
  CHECK(d.referral_command_rejected().code() == "not_allowed");
  CHECK(d.referral_command_rejected().origin().control_id() == "DCHIS-I13-0009");
  CHECK(d.referral_command_rejected().origin().hospital() == "dc-chc");
}

TEST_CASE("a refused HL7 command is answered to the hospital that sent it, naming the referral's patient",
          "[unit][referral]") {
  ledger_with_referral t;
  ev::Envelope rejected;
  rejected.set_event_id("referral-decision:c-9");
  rejected.set_type("yilian.events.v1.ReferralCommandRejected");
  rejected.mutable_source()->set_protocol(ev::PROTOCOL_ENGINE);
  auto* rej = rejected.mutable_referral_command_rejected();
  rej->set_command_id("c-9");
  rej->set_referral_id("ref-answer-1");
  rej->set_code("wrong_transition");
  rej->set_message("referral ref-answer-1 is REQUESTED");

  SECTION("with an HL7 origin: one notice, to the sender, with the patient's identifiers") {
    *rej->mutable_origin() = hl7_origin("dc-chc");
    const auto notices = notices_for(rejected, t.l);
    REQUIRE(notices.size() == 1);
    CHECK(notices[0].destination == "dc-chc");
    CHECK(notices[0].event.has_referral_command_rejected());
    CHECK(notices[0].event.event_id() == "referral-decision:c-9");
    CHECK(notices[0].event.subject().identifiers_size() == 2);
  }
  SECTION("without an origin (REST, FHIR, the engine): nobody") {
    CHECK(notices_for(rejected, t.l).empty());
  }
  SECTION("an origin that is not HL7 v2: nobody") {
    auto o = hl7_origin("dc-chc");
    o.set_protocol(ev::PROTOCOL_FHIR_R4);
    *rej->mutable_origin() = o;
    CHECK(notices_for(rejected, t.l).empty());
  }
  SECTION("a refusal that is a hospital's own record, not the writer's: nobody") {
    *rej->mutable_origin() = hl7_origin("dc-chc");
    rejected.mutable_source()->set_protocol(ev::PROTOCOL_HL7V2_MLLP);
    CHECK(notices_for(rejected, t.l).empty());
  }
}

TEST_CASE("the engine's own commands carry no origin, so their refusals are answered to nobody",
          "[unit][referral]") {
  ledger_with_referral t;
  // The expiry timer's EXPIRE before the deadline is refused (not_due).
  cmd c;
  c.act = ev::REFERRAL_ACTION_EXPIRE;
  c.referral = "ref-answer-1";
  c.engine = true;
  c.actor_hospital.clear();
  const auto d = t.l.decide(make_command(c), test_now);
  REQUIRE(d.has_referral_command_rejected());
  CHECK_FALSE(d.referral_command_rejected().has_origin());
  CHECK(notices_for(d, t.l).empty());
}
