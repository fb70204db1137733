// Issue 5 leftovers on the HL7 v2 side of referrals:
//  - an order that the sender's profile marks as a referral (quirk
//    referred_to) maps to the referral itself (ReferralRequested, or a
//    cancellation), while every other order keeps its booking/report meaning;
//  - a refused referral command that came from a hospital's HL7 message is
//    rendered as the application error answering that message (RRI or ACK
//    with MSA-1 AE, MSA-2 = the original MSH-10, ERR saying why), through one
//    refusal -> ERR mapping (ack.h refusal_error), table-tested here.
// Runs against the example consortium (nh-chc addresses its referral orders
// in MSH-6; dc-chc has no such location).
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>

#include "adapters/hl7v2/ack.h"
#include "adapters/hl7v2/mapping.h"
#include "adapters/hl7v2/message.h"
#include "adapters/hl7v2/render.h"
#include "engine/config/config.h"

using namespace yilian;
using namespace yilian::hl7v2;
namespace ev = yilian::events::v1;

namespace {

const config::loaded_consortium& consortium() {
  static const config::loaded_consortium loaded = [] {
    const char* root = std::getenv("YILIAN_SOURCE_DIR");
    auto r = config::load_consortium(std::filesystem::path(root != nullptr ? root : ".") / "deploy/examples/consortium");
    if (!r) throw std::runtime_error("example consortium does not load: " + r.error().describe());
    return std::move(*r);
  }();
  return loaded;
}

mapper mapper_of(const std::string& hospital) {
  const auto* p = consortium().profile(hospital);
  REQUIRE(p != nullptr);
  auto m = mapper::compile(&consortium(), p, hospital);
  REQUIRE(m.has_value());
  return std::move(*m);
}

result<mapped_batch> map_text(const mapper& m, const std::string& text) {
  auto msg = message::parse(text);
  REQUIRE(msg.has_value());
  ev::ClaimCheck raw;
  raw.set_uri("raw://test/1");
  return m.map(*msg, raw, std::chrono::sys_days{std::chrono::year{2026} / 1 / 1});
}

std::string omg(std::string_view msh6, std::string_view control, std::string_view orc, std::string_view obr) {
  std::string s = "MSH|^~\\&|HIS|NHSQ|YILIAN|";
  s += msh6;
  s += "|20250702093000||OMG^O19^OMG_O19|NH-T-1|P|2.5.1\r";
  s += "PID|1||NH000077^^^NHSQ^MR~442000197702213840^^^CHN^NNCHN||唐^晓红^^^^^L^I||19770221|F\r";
  s += "ORC|";
  s += control;
  s += orc;
  s += "\r";
  s += obr;
  s += "\r";
  return s;
}

std::vector<std::string> segments_of(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < text.size()) {
    const auto end = text.find('\r', start);
    out.push_back(text.substr(start, end - start));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

ev::Envelope refusal(std::string code, std::string message, std::string message_type) {
  ev::Envelope e;
  e.set_event_id("referral-decision:feed:abc:XZ-REF-1");
  e.set_type("yilian.events.v1.ReferralCommandRejected");
  e.mutable_source()->set_protocol(ev::PROTOCOL_ENGINE);
  e.mutable_recorded_at()->set_seconds(1748766600);  // 2025-06-01T08:30:00Z
  auto* id = e.mutable_subject()->add_identifiers();
  id->set_system("urn:yilian:id:xz-thc:mrn");
  id->set_value("XZ000301");
  id->set_type(ev::IDENTIFIER_TYPE_MRN);
  auto* r = e.mutable_referral_command_rejected();
  r->set_command_id("feed:abc:XZ-REF-1");
  r->set_referral_id("XZ-REF-1");
  r->set_code(std::move(code));
  r->set_message(std::move(message));
  auto* o = r->mutable_origin();
  o->set_hospital("xz-thc");
  o->set_protocol(ev::PROTOCOL_HL7V2_MLLP);
  o->set_application("CLINIC");
  o->set_facility("XZWSY");
  o->set_control_id("I13-0042");
  o->set_message_type(std::move(message_type));
  return e;
}

render_options options_for(std::string version = "2.5") {
  render_options o;
  o.version = std::move(version);
  o.sending_facility = "ZSYL";
  o.consortium = &consortium();
  return o;
}

}  // namespace

TEST_CASE("an OMG^O19 the profile marks as a referral becomes the referral request itself", "[unit]") {
  const mapper m = mapper_of("nh-chc");
  const auto got = map_text(
      m, omg("ZSRMYY", "NW",
             "|NH-ORD-0311^NHSQ|||||^^^^^R||20250702092500|||NH12^赵^敏",
             "OBR|1|NH-ORD-0311^NHSQ||US0501^心脏彩超^ZSRMYY-EXAM|||||||||胸闷两周||||||||||||||||||R07.4^胸痛^ICD10\r"
             "DG1|1||I20.9^心绞痛^ICD10||20250702|W"));
  REQUIRE(got.has_value());
  REQUIRE(got->size() == 1);
  const auto& e = got->front();
  CHECK(e.topic == ev::TOPIC_REFERRAL);
  CHECK(e.key == "NH-ORD-0311");
  REQUIRE(e.envelope->has_referral_requested());
  const auto& q = e.envelope->referral_requested();
  CHECK(q.referral_id() == "NH-ORD-0311");
  CHECK(q.state() == ev::REFERRAL_STATE_REQUESTED);
  CHECK(q.direction() == ev::REFERRAL_DIRECTION_UP);
  CHECK(q.from_hospital() == "nh-chc");
  CHECK(q.to_hospital() == "zs-tertiary");
  CHECK(q.priority() == ev::PRIORITY_ROUTINE);
  CHECK(q.patient().name().hanzi() == "唐晓红");
  CHECK(q.patient().birth_date() == "1977-02-21");
  REQUIRE(q.requested_services_size() == 1);
  CHECK(q.requested_services(0).code() == "US0501");
  CHECK(q.reason().code() == "R07.4");
  CHECK(q.reason_text() == "胸痛");
  REQUIRE(q.diagnoses_size() == 1);  // DG1 gives the diagnoses; OBR-31 only when there is none
  CHECK(q.diagnoses(0).code() == "I20.9");
  CHECK(q.clinical_summary() == "胸闷两周");
  CHECK(q.referring_provider().id() == "NH12");
  CHECK(q.referring_provider().hospital() == "nh-chc");
  CHECK(e.envelope->correlation().referral_id() == "NH-ORD-0311");
  CHECK(e.envelope->correlation().placer_order() == "NH-ORD-0311");
  CHECK(e.envelope->subject().identifiers_size() == 2);
}

TEST_CASE("ORC-1 CA on a referral order cancels the referral; XO changes it", "[unit]") {
  const mapper m = mapper_of("nh-chc");
  const auto cancel = map_text(m, omg("ZSRMYY", "CA", "|NH-ORD-0311^NHSQ||||||||||NH12^赵^敏||||PATREQ^患者要求取消",
                                      "OBR|1|NH-ORD-0311^NHSQ||US0501^心脏彩超^ZSRMYY-EXAM"));
  REQUIRE(cancel.has_value());
  REQUIRE(cancel->size() == 1);
  const auto& c = *cancel->front().envelope;
  REQUIRE(c.has_referral_state_changed());
  CHECK(c.referral_state_changed().referral_id() == "NH-ORD-0311");
  CHECK(c.referral_state_changed().state() == ev::REFERRAL_STATE_CANCELLED);
  CHECK(c.referral_state_changed().source_status() == "ORC-1 CA");
  CHECK(c.referral_state_changed().reason_text() == "患者要求取消");
  CHECK(c.referral_state_changed().actor_hospital() == "nh-chc");

  const auto change = map_text(m, omg("ZSRMYY", "XO", "|NH-ORD-0311^NHSQ", "OBR|1|NH-ORD-0311^NHSQ||US0301^甲状腺彩超^ZSRMYY-EXAM"));
  REQUIRE(change.has_value());
  REQUIRE(change->front().envelope->has_referral_requested());  // the feed makes it a MODIFY
  CHECK(change->front().envelope->referral_requested().requested_services(0).code() == "US0301");
}

TEST_CASE("orders that are not referral orders keep their booking and report meaning", "[unit]") {
  SECTION("the same hospital's order naming a shared machine is a booking") {
    const auto got = map_text(mapper_of("nh-chc"),
                              omg("ZSRMYY", "NW", "|NH-ORD-0400^NHSQ",
                                  "OBR|1|NH-ORD-0400^NHSQ||CT0101^头颅CT平扫^ZSRMYY-EXAM|||||||||||||||||zs-ct-1"));
    REQUIRE(got.has_value());
    CHECK(got->front().topic == ev::TOPIC_BOOKING);
    CHECK(got->front().envelope->has_order_placed());
  }
  SECTION("an order addressed to no other member (MSH-6 its own facility) stays an order") {
    const auto got = map_text(mapper_of("nh-chc"),
                              omg("NHSQ", "NW", "|NH-ORD-0401^NHSQ", "OBR|1|NH-ORD-0401^NHSQ||US0501^心脏彩超^ZSRMYY-EXAM"));
    REQUIRE(got.has_value());
    CHECK(got->front().topic == ev::TOPIC_REPORT);
    CHECK(got->front().envelope->has_order_placed());
  }
  SECTION("a hospital whose profile has no referred_to location never sends referral orders") {
    std::string text = omg("ZSRMYY", "NW", "|DC-ORD-1^DCSQ", "OBR|1|DC-ORD-1^DCSQ||JC010^腹部超声^DCSQ-JC");
    text.replace(text.find("NHSQ"), 4, "DCSQ");
    const auto got = map_text(mapper_of("dc-chc"), text);
    REQUIRE(got.has_value());
    CHECK(got->front().topic == ev::TOPIC_REPORT);
    CHECK(got->front().envelope->order_placed().performing_hospital() == "zs-tertiary");
  }
  SECTION("another ORC-1 (a status change) on a referral order is about the order: referral topic") {
    const auto got = map_text(mapper_of("nh-chc"), omg("ZSRMYY", "SC", "|NH-ORD-0311^NHSQ|||IP",
                                                       "OBR|1|NH-ORD-0311^NHSQ||US0501^心脏彩超^ZSRMYY-EXAM"));
    REQUIRE(got.has_value());
    CHECK(got->front().topic == ev::TOPIC_REFERRAL);
    CHECK(got->front().envelope->has_order_status_changed());
    CHECK(got->front().envelope->correlation().referral_id() == "NH-ORD-0311");
  }
}

TEST_CASE("a referral order needs its placer number and its patient", "[unit]") {
  const mapper m = mapper_of("nh-chc");
  const auto no_id = map_text(m, omg("ZSRMYY", "NW", "|", "OBR|1|||US0501^心脏彩超^ZSRMYY-EXAM"));
  REQUIRE_FALSE(no_id.has_value());
  CHECK(no_id.error().where == "ORC-2");
  CHECK_THAT(no_id.error().message, Catch::Contains("required field missing"));

  std::string text = omg("ZSRMYY", "NW", "|NH-ORD-0312^NHSQ", "OBR|1|NH-ORD-0312^NHSQ||US0501^心脏彩超^ZSRMYY-EXAM");
  text.erase(text.find("PID|"), text.find("ORC|") - text.find("PID|"));
  const auto no_pid = map_text(m, text);
  REQUIRE_FALSE(no_pid.has_value());
  CHECK(no_pid.error().where == "PID");
}

TEST_CASE("a refusal maps to one ERR: table 0357 code, location by message, ERR-5 the refusal code", "[unit]") {
  struct row {
    const char* refusal;
    const char* message_code;
    const char* code;
    const char* where;  // ERR-2 as a path, "" for none
  };
  const row rows[] = {
      {"not_found", "REF", "204", "RF1-6"},
      {"not_found", "RRI", "204", "RF1-6"},
      {"not_found", "OMG", "204", "ORC-2"},
      {"not_found", "SIU", "204", ""},
      {"duplicate_referral_id", "REF", "205", "RF1-6"},
      {"duplicate_referral_id", "ORM", "205", "ORC-2"},
      {"unknown_linked_referral", "REF", "204", "RF1-11"},
      {"unknown_hospital", "REF", "204", ""},
      {"reason_required", "RRI", "101", "RF1-10"},
      {"wrong_transition", "REF", "207", ""},
      {"not_allowed", "RRI", "207", ""},
      {"version_mismatch", "ADT", "207", ""},
      {"invalid", "OMG", "207", ""},
  };
  for (const auto& r : rows) {
    INFO(r.refusal << " for " << r.message_code);
    const ack_error e = refusal_error(r.refusal, "why", r.message_code);
    CHECK(e.code == r.code);
    CHECK(e.where.path() == r.where);
    CHECK(e.application_code == r.refusal);
    CHECK(e.text == "why");
    CHECK(e.severity == 'E');
  }
}

TEST_CASE("a refused REF^I13 is answered with RRI^I13: MSA AE with the original control id, ERR, RF1, PID",
          "[unit]") {
  const auto* dest = consortium().profile("xz-thc");
  REQUIRE(dest != nullptr);
  const auto e = refusal("wrong_transition", "referral XZ-REF-1 is CANCELLED: no MODIFY", "REF^I13^REF_I12");
  const auto r = render(e, *dest, options_for());
  REQUIRE(r.has_value());
  CHECK(r->message_type == "RRI^I13^RRI_I12");
  CHECK(r->control_id == e.event_id());
  const auto segs = segments_of(r->text);
  REQUIRE(segs.size() >= 5);
  CHECK(segs[0] ==
        "MSH|^~\\&|YILIAN|ZSYL|CLINIC|XZWSY|20250601083000+0000||RRI^I13^RRI_I12|referral-decision:feed:abc:XZ-REF-1|P|2.5"
        "|||AL|NE||GBK");
  CHECK(segs[1] == "MSA|AE|I13-0042|referral XZ-REF-1 is CANCELLED: no MODIFY");
  CHECK(segs[2] ==
        "ERR|||207^Application internal error^HL70357|E|wrong_transition^^99YLN|||referral XZ-REF-1 is CANCELLED: no MODIFY");
  CHECK(segs[3] == "RF1||||||XZ-REF-1");
  CHECK(segs[4] == "PID|1||XZ000301^^^XZWSY^MR");
  // It reads back as an acknowledgment of the original message.
  const auto ack = parse_ack(r->text);
  REQUIRE(ack.has_value());
  CHECK(ack->code == ack_code::AE);
  CHECK(ack->acknowledged_control_id == "I13-0042");
  CHECK(ack->error_code == "207");
}

TEST_CASE("refusals of other messages are answered with ACK^<trigger> AE; v2.4 gets ERR-1", "[unit]") {
  const auto* dest = consortium().profile("zs-tertiary");
  REQUIRE(dest != nullptr);
  auto e = refusal("not_found", "no referral XZ-REF-9", "RRI^I12^RRI_I12");
  e.mutable_referral_command_rejected()->mutable_origin()->set_hospital("zs-tertiary");
  e.mutable_referral_command_rejected()->mutable_origin()->set_application("HIS");
  e.mutable_referral_command_rejected()->mutable_origin()->set_facility("ZSRMYY");
  const auto r = render(e, *dest, options_for());
  REQUIRE(r.has_value());
  CHECK(r->message_type == "ACK^I12^ACK");
  auto segs = segments_of(r->text);
  REQUIRE(segs.size() == 3);
  CHECK(segs[1] == "MSA|AE|I13-0042|no referral XZ-REF-9");
  CHECK(segs[2] == "ERR||RF1^1^6|204^Unknown key identifier^HL70357|E|not_found^^99YLN|||no referral XZ-REF-9");

  const auto old = render(e, *dest, options_for("2.4"));
  REQUIRE(old.has_value());
  segs = segments_of(old->text);
  REQUIRE(segs.size() == 3);
  CHECK(segs[2] == "ERR|RF1^1^6^204&Unknown key identifier&HL70357");

  e.mutable_referral_command_rejected()->mutable_origin()->set_message_type("SIU^S12^SIU_S12");
  const auto siu = render(e, *dest, options_for());
  REQUIRE(siu.has_value());
  CHECK(siu->message_type == "ACK^S12^ACK");
}

TEST_CASE("a refusal that no HL7 message asked for has no HL7 rendering", "[unit]") {
  auto e = refusal("wrong_transition", "x", "REF^I13^REF_I12");
  e.mutable_referral_command_rejected()->clear_origin();
  const auto r = render(e, *consortium().profile("xz-thc"), options_for());
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == errc::unsupported);
  CHECK(r.error().where == "referral_command_rejected.origin.control_id");
}
