// Patient notification templates: which template an event gets, what the
// placeholders become, what the gateway's JSON holds; and every template of the
// example consortium rendered against an event it is meant for.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <cstdlib>

#include "adapters/webhook/notification.h"
#include "engine/config/config.h"

using namespace yilian;
using namespace yilian::webhook;
namespace ev = yilian::events::v1;
namespace cfg = yilian::config::v1;
using Catch::Matchers::Contains;

namespace {

cfg::Consortium consortium() {
  cfg::Consortium c;
  c.set_id("zs-yilian");
  c.set_time_zone("Asia/Shanghai");
  auto add = [&](const char* id, const char* name) {
    auto* h = c.add_hospitals();
    h->set_id(id);
    h->set_name(name);
  };
  add("zs-tertiary", "中山市人民医院");
  add("dc-chc", "东城街道社区卫生服务中心");
  auto* e = c.add_equipment();
  e->set_id("zs-ct-1");
  e->set_hospital("zs-tertiary");
  auto* x = e->add_exam_types();
  x->set_code("CT-HEAD-PLAIN");
  x->set_name("头颅CT平扫");
  return c;
}

render_context context(const cfg::Consortium& c) {
  auto zone = time_zone::load("Asia/Shanghai");
  REQUIRE(zone.has_value());
  return render_context{.consortium = &c, .zone = *zone};
}

cfg::NotificationTemplate tmpl(const std::string& type, const std::string& when, const std::string& text) {
  cfg::NotificationTemplate t;
  t.set_event_type(type);
  t.set_when(when);
  t.set_text(text);
  return t;
}

ev::Envelope with_patient(const std::string& event_id) {
  ev::Envelope e;
  e.set_event_id(event_id);
  e.mutable_occurred_at()->set_seconds(1748741400);  // 2025-06-01T01:30:00Z
  e.mutable_source()->set_hospital("zs-tertiary");
  e.mutable_subject()->set_enterprise_patient_id("ent-1");
  auto* id = e.mutable_subject()->add_identifiers();
  id->set_system("urn:yilian:id:cn:resident");
  id->set_value("110101199003070019");
  id->set_type(ev::IDENTIFIER_TYPE_RESIDENT_ID);
  auto* mrn = e.mutable_subject()->add_identifiers();
  mrn->set_system("urn:yilian:id:zs-tertiary:mrn");
  mrn->set_value("MRN-7");
  mrn->set_type(ev::IDENTIFIER_TYPE_MRN);
  mrn->set_assigner("zs-tertiary");
  e.mutable_correlation()->set_referral_id("REF-9");
  return e;
}

ev::Envelope report(const std::string& event_id, const std::string& status) {
  auto e = with_patient(event_id);
  e.set_type("yilian.events.v1.ReportIssued");
  auto* r = e.mutable_report_issued();
  r->set_report_id("RPT-1");
  r->set_status_code(status);
  r->set_performing_hospital("zs-tertiary");
  r->mutable_exam()->set_code("CT0101");
  r->mutable_exam()->set_display("头颅平扫");
  r->mutable_catalogue_code()->set_code("CT-HEAD-PLAIN");
  r->set_appointment_id("BK-3");
  return e;
}

ev::Envelope booking(const std::string& event_id, ev::BookingState state) {
  auto e = with_patient(event_id);
  e.set_type("yilian.events.v1.AppointmentChanged");
  auto* a = e.mutable_appointment_changed();
  a->set_appointment_id("BK-3");
  a->set_state(state);
  a->set_owning_hospital("zs-tertiary");
  a->set_requesting_hospital("dc-chc");
  a->mutable_start()->set_seconds(1748914200);  // 2025-06-03T01:30:00Z = 09:30 in Shanghai
  a->mutable_catalogue_code()->set_code("CT-HEAD-PLAIN");
  auto* phone = a->mutable_patient()->add_telecom();
  phone->set_system("phone");
  phone->set_value("13800138000");
  phone->set_use(ev::CONTACT_USE_MOBILE);
  auto* again = a->mutable_patient()->add_telecom();
  *again = *phone;  // the same number twice is sent once
  auto* mail = a->mutable_patient()->add_telecom();
  mail->set_system("email");
  mail->set_value("p@example.cn");
  return e;
}

ev::Envelope referral(const std::string& event_id, ev::ReferralState state) {
  auto e = with_patient(event_id);
  e.set_type("yilian.events.v1.ReferralStateChanged");
  auto* r = e.mutable_referral_state_changed();
  r->set_referral_id("REF-9");
  r->set_state(state);
  r->set_from_hospital("dc-chc");
  r->set_to_hospital("zs-tertiary");
  return e;
}

cfg::PatientNotifications channel() {
  cfg::PatientNotifications pn;
  *pn.add_templates() = tmpl("ReportIssued", "", "{hospital}的{exam}{status}已出，报告号{report_id}。");
  *pn.add_templates() = tmpl("ReportIssued", "C", "{exam}报告已更正，{supersedes}。");
  *pn.add_templates() = tmpl("AppointmentChanged", "booked", "您已预约{start}在{hospital}做{exam}。");
  *pn.add_templates() = tmpl("AppointmentChanged", "", "{exam}预约{state}。");
  *pn.add_templates() = tmpl("ReferralStateChanged", "", "转诊{referral_id}{state}（{hospital}）。");
  return pn;
}

}  // namespace

TEST_CASE("the template with the event's status wins over the event type's fallback", "[unit]") {
  const auto pn = channel();
  const auto* f = select_template(pn.templates(), "ReportIssued", "F");
  REQUIRE(f != nullptr);
  CHECK(f->when().empty());
  const auto* c = select_template(pn.templates(), "ReportIssued", "C");
  REQUIRE(c != nullptr);
  CHECK(c->when() == "C");
  // `when` is matched without regard to case.
  const auto* b = select_template(pn.templates(), "AppointmentChanged", "BOOKED");
  REQUIRE(b != nullptr);
  CHECK(b->when() == "booked");
  CHECK(select_template(pn.templates(), "AppointmentChanged", "NO_SHOW")->when().empty());
  CHECK(select_template(pn.templates(), "CarePlanOccurrence", "BOOKED") == nullptr);
  cfg::PatientNotifications narrow_only;
  *narrow_only.add_templates() = tmpl("ReportIssued", "F", "x");
  CHECK(select_template(narrow_only.templates(), "ReportIssued", "P") == nullptr);
}

TEST_CASE("an event's status is the report status code or the state's name", "[unit]") {
  CHECK(event_status(report("r", "f ")) == "F");
  ev::Envelope no_code = report("r", "");
  no_code.mutable_report_issued()->set_status(ev::REPORT_STATUS_CORRECTED);
  CHECK(event_status(no_code) == "C");
  CHECK(event_status(booking("b", ev::BOOKING_STATE_NO_SHOW)) == "NO_SHOW");
  CHECK(event_status(referral("f", ev::REFERRAL_STATE_ACCEPTED)) == "ACCEPTED");
  ev::Envelope occ;
  occ.mutable_care_plan_occurrence()->set_care_plan_id("cp-1");
  CHECK(event_status(occ) == "BOOKED");
  occ.mutable_care_plan_occurrence()->set_failure("no_slot");
  CHECK(event_status(occ) == "FAILED");
  ev::Envelope other;
  other.mutable_imaging_study_available();
  CHECK(event_status(other).empty());
  CHECK(body_type(other) == "ImagingStudyAvailable");
}

TEST_CASE("placeholders are filled; other text in braces is kept; an unknown name is an error", "[unit]") {
  const placeholder_values v{{"hospital", "中山市人民医院"}, {"exam", "头颅CT平扫"}};
  CHECK(fill("{hospital}：{exam}", v) == "中山市人民医院：头颅CT平扫");
  CHECK(fill("{ 1 } {} {Exam} {{exam}} {exam", v) == "{ 1 } {} {Exam} {头颅CT平扫} {exam");
  auto bad = fill("{hospital} {phone}", v);
  REQUIRE(!bad.has_value());
  CHECK(bad.error().code == errc::config_error);
  CHECK_THAT(bad.error().message, Contains("unknown placeholder {phone}"));
  CHECK(unknown_placeholders("{phone} {hospital} {phone} {name_x} {A}") == std::vector<std::string>{"phone", "name_x"});
}

TEST_CASE("report placeholders name the performing hospital, the catalogue exam and a correction", "[unit]") {
  const auto c = consortium();
  const auto ctx = context(c);
  const auto final_values = placeholders(report("r1", "F"), ctx);
  CHECK(final_values.at("hospital") == "中山市人民医院");
  CHECK(final_values.at("exam") == "头颅CT平扫");
  CHECK(final_values.at("report_id") == "RPT-1");
  CHECK(final_values.at("status") == "正式报告");
  CHECK(final_values.at("referral_id") == "REF-9");
  CHECK(final_values.at("supersedes").empty());
  CHECK(final_values.at("start").empty());
  CHECK(final_values.size() == placeholder_names().size());

  auto corrected = report("r2", "C");
  corrected.mutable_report_issued()->set_supersedes_event_id("r1");
  const auto c_values = placeholders(corrected, ctx);
  CHECK(c_values.at("status") == "更正报告");
  CHECK(c_values.at("supersedes") == "取代此前发出的报告");
  // An exam outside the catalogue falls back to the sender's display text.
  auto local = report("r3", "P");
  local.mutable_report_issued()->clear_catalogue_code();
  CHECK(placeholders(local, ctx).at("exam") == "头颅平扫");
  CHECK(placeholders(local, ctx).at("status") == "初步报告");
}

TEST_CASE("booking and referral placeholders: local start time, states in words, the hospital that acted",
          "[unit]") {
  const auto c = consortium();
  const auto ctx = context(c);
  const auto booked = placeholders(booking("b1", ev::BOOKING_STATE_BOOKED), ctx);
  CHECK(booked.at("start") == "2025-06-03 09:30");
  CHECK(booked.at("hospital") == "中山市人民医院");
  CHECK(booked.at("state") == "已预约");
  CHECK(placeholders(booking("b2", ev::BOOKING_STATE_NO_SHOW), ctx).at("state") == "未到检");

  auto accepted = referral("f1", ev::REFERRAL_STATE_ACCEPTED);
  accepted.mutable_referral_state_changed()->set_actor_hospital("zs-tertiary");
  CHECK(placeholders(accepted, ctx).at("state") == "已接收");
  // Expired: nobody acted; the hospital that did not answer is named.
  const auto expired = placeholders(referral("f2", ev::REFERRAL_STATE_EXPIRED), ctx);
  CHECK(expired.at("hospital") == "中山市人民医院");
  CHECK(expired.at("state") == "已过期");
  auto cancelled = referral("f3", ev::REFERRAL_STATE_CANCELLED);
  cancelled.mutable_referral_state_changed()->set_actor_hospital("dc-chc");
  CHECK(placeholders(cancelled, ctx).at("hospital") == "东城街道社区卫生服务中心");
  auto scheduled = referral("f4", ev::REFERRAL_STATE_SCHEDULED);
  scheduled.mutable_referral_state_changed()->mutable_appointment_start()->set_seconds(1748914200);
  CHECK(placeholders(scheduled, ctx).at("start") == "2025-06-03 09:30");
  // An unknown hospital id is shown as itself.
  auto elsewhere = referral("f5", ev::REFERRAL_STATE_ACCEPTED);
  elsewhere.mutable_referral_state_changed()->set_actor_hospital("xx-new");
  CHECK(placeholders(elsewhere, ctx).at("hospital") == "xx-new");
}

TEST_CASE("the gateway gets the text, the patient's identifiers and contact points, the hospital and the ids",
          "[unit]") {
  const auto c = consortium();
  const auto ctx = context(c);
  auto n = render_notification(booking("evt-b1", ev::BOOKING_STATE_BOOKED), channel(), ctx);
  REQUIRE(n.has_value());
  CHECK(n->text == "您已预约2025-06-03 09:30在中山市人民医院做头颅CT平扫。");
  CHECK(n->template_event_type == "AppointmentChanged");
  CHECK(n->template_when == "booked");
  CHECK(n->status == "BOOKED");
  const auto body = nlohmann::json::parse(n->body);
  const auto expected = nlohmann::json::parse(R"({
    "event_id": "evt-b1",
    "type": "AppointmentChanged",
    "occurred_at": "2025-06-01T01:30:00Z",
    "template": {"event_type": "AppointmentChanged", "when": "booked"},
    "text": "您已预约2025-06-03 09:30在中山市人民医院做头颅CT平扫。",
    "status": "BOOKED",
    "patient": {
      "enterprise_patient_id": "ent-1",
      "identifiers": [
        {"system": "urn:yilian:id:cn:resident", "value": "110101199003070019", "type": "RESIDENT_ID"},
        {"system": "urn:yilian:id:zs-tertiary:mrn", "value": "MRN-7", "type": "MRN", "assigner": "zs-tertiary"}
      ],
      "telecom": [
        {"system": "phone", "value": "13800138000", "use": "MOBILE"},
        {"system": "email", "value": "p@example.cn"}
      ]
    },
    "hospital": {"id": "zs-tertiary", "name": "中山市人民医院"},
    "ids": {"appointment_id": "BK-3", "referral_id": "REF-9"}
  })");
  CHECK(body == expected);
  // Keys keep the documented order.
  CHECK(n->body.starts_with(R"({"event_id":"evt-b1","type":"AppointmentChanged","occurred_at")"));

  auto corrected = report("evt-r2", "C");
  corrected.mutable_report_issued()->set_supersedes_event_id("evt-r1");
  auto rn = render_notification(corrected, channel(), ctx);
  REQUIRE(rn.has_value());
  CHECK(rn->text == "头颅CT平扫报告已更正，取代此前发出的报告。");
  const auto rbody = nlohmann::json::parse(rn->body);
  CHECK(rbody["ids"] == nlohmann::json::parse(
                            R"({"report_id":"RPT-1","appointment_id":"BK-3","referral_id":"REF-9","supersedes_event_id":"evt-r1"})"));
  CHECK(rbody["patient"]["telecom"] == nlohmann::json::array());  // a report carries no Demographics
}

TEST_CASE("an event without a template or without a patient cannot be rendered, and says why", "[unit]") {
  const auto c = consortium();
  const auto ctx = context(c);
  cfg::PatientNotifications narrow;
  *narrow.add_templates() = tmpl("ReportIssued", "F", "正式报告");
  auto none = render_notification(report("r", "P"), narrow, ctx);
  REQUIRE(!none.has_value());
  CHECK(none.error().code == errc::config_error);
  CHECK(none.error().message ==
        "no patient notification template for ReportIssued with status \"P\" (give one with event_type ReportIssued "
        "and an empty when)");
  CHECK(none.error().where == "patient_notifications.templates");

  ev::Envelope nobody = report("r", "F");
  nobody.clear_subject();
  auto anonymous = render_notification(nobody, channel(), ctx);
  REQUIRE(!anonymous.has_value());
  CHECK(anonymous.error().code == errc::validation_failed);

  cfg::PatientNotifications typo;
  *typo.add_templates() = tmpl("ReportIssued", "", "{hospitl}");
  auto unknown = render_notification(report("r", "F"), typo, ctx);
  REQUIRE(!unknown.has_value());
  CHECK(unknown.error().code == errc::config_error);
  CHECK_THAT(unknown.error().message, Contains("{hospitl}"));
}

TEST_CASE("bytes that are not UTF-8 do not stop a notification", "[unit]") {
  const auto c = consortium();
  const auto ctx = context(c);
  auto e = report("r", "F");
  e.mutable_report_issued()->set_report_id("RPT-\xff\xfe");
  auto n = render_notification(e, channel(), ctx);
  REQUIRE(n.has_value());
  CHECK_NOTHROW(nlohmann::json::parse(n->body));
}

TEST_CASE("every template of the example consortium renders for an event it is meant for", "[unit]") {
  const char* from_env = std::getenv("YILIAN_SOURCE_DIR");
  const std::string root = from_env != nullptr && *from_env != '\0' ? from_env : YILIAN_REPO_ROOT;
  auto loaded = config::load_consortium(std::filesystem::path(root) / "deploy/examples/consortium");
  REQUIRE(loaded.has_value());
  const auto& pn = loaded->consortium.patient_notifications();
  REQUIRE(pn.templates_size() > 0);
  auto zone = time_zone::load(loaded->consortium.time_zone());
  REQUIRE(zone.has_value());
  const render_context ctx{.consortium = &loaded->consortium, .zone = *zone};
  for (const auto& t : pn.templates()) {
    INFO(t.event_type() << "/" << t.when());
    // The renderer and the config check agree on the placeholders.
    CHECK(unknown_placeholders(t.text()).empty());
    ev::Envelope e;
    if (t.event_type() == "ReportIssued") {
      e = report("x", t.when().empty() ? "A" : t.when());  // A (some results): no narrower template
    } else if (t.event_type() == "AppointmentChanged") {
      ev::BookingState s = ev::BOOKING_STATE_CHECKED_IN;
      if (!t.when().empty()) REQUIRE(ev::BookingState_Parse("BOOKING_STATE_" + t.when(), &s));
      e = booking("x", s);
    } else if (t.event_type() == "ReferralStateChanged") {
      ev::ReferralState s = ev::REFERRAL_STATE_RECEIVED;
      if (!t.when().empty()) REQUIRE(ev::ReferralState_Parse("REFERRAL_STATE_" + t.when(), &s));
      e = referral("x", s);
    } else {
      FAIL("no sample event for " << t.event_type());
    }
    auto n = render_notification(e, pn, ctx);
    REQUIRE(n.has_value());
    CHECK(n->template_event_type == t.event_type());
    CHECK(n->template_when == t.when());
    CHECK(n->text.find('{') == std::string::npos);
  }
}
