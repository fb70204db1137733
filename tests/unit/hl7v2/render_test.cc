// Rendering events as HL7 v2 messages for outbound delivery: every message
// type reads back with yilian's own parser (message::parse), identifiers are
// mapped back through the destination's profile, text is escaped, and events
// that HL7 v2 cannot carry are refused with a reason.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>

#include "adapters/hl7v2/charset.h"
#include "adapters/hl7v2/hl7_time.h"
#include "adapters/hl7v2/mapping.h"
#include "adapters/hl7v2/message.h"
#include "adapters/hl7v2/render.h"
#include "engine/config/config.h"

using namespace yilian;
using namespace yilian::hl7v2;
namespace ev = yilian::events::v1;
namespace cfg = yilian::config::v1;

namespace {

const std::string kEventId = "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b";

cfg::HospitalProfile destination() {
  cfg::HospitalProfile p;
  p.set_hospital("zs-tertiary");
  p.set_default_charset(cfg::CHARSET_UTF8);
  p.add_facility_ids("ZSRMYY");
  auto* a = p.add_identifier_authorities();
  a->set_namespace_id("ZSRMYY");
  a->set_universal_id("2.16.156.10011.1.1.4420001");
  a->set_type_code("MR");
  a->set_system("urn:yilian:id:zs-tertiary:mrn");
  a->set_type(ev::IDENTIFIER_TYPE_MRN);
  a = p.add_identifier_authorities();
  a->set_namespace_id("CHN");
  a->set_type_code("NNCHN");
  a->set_system("urn:yilian:id:cn:resident");
  a->set_type(ev::IDENTIFIER_TYPE_RESIDENT_ID);
  auto* m = p.add_code_maps();
  m->set_source_system("ZSRMYY-EXAM");
  m->set_target_system("urn:yilian:catalogue:exam");
  (*m->mutable_mappings())["CT0101"] = "CT-HEAD-PLAIN";
  (*p.mutable_resource_ids())["CT-01"] = "zs-ct-1";
  return p;
}

google::protobuf::Timestamp at(std::int64_t seconds) {
  google::protobuf::Timestamp t;
  t.set_seconds(seconds);
  return t;
}

// 2025-06-01T08:30:00Z
constexpr std::int64_t kJune1 = 1748766600;

ev::Envelope base_event() {
  ev::Envelope e;
  e.set_event_id(kEventId);
  *e.mutable_recorded_at() = at(kJune1);
  *e.mutable_occurred_at() = at(kJune1 - 60);
  auto* id = e.mutable_subject()->add_identifiers();
  id->set_system("urn:yilian:id:zs-tertiary:mrn");
  id->set_value("MRN0001");
  id->set_type(ev::IDENTIFIER_TYPE_MRN);
  id = e.mutable_subject()->add_identifiers();
  id->set_system("urn:yilian:id:dc-chc:mrn");  // the destination does not know this system
  id->set_value("DC-77");
  id->set_type(ev::IDENTIFIER_TYPE_MRN);
  return e;
}

render_options options() {
  render_options o;
  o.sending_facility = "zs-yilian";
  return o;
}

message parsed(const rendered_message& r) {
  auto m = message::parse(r.text);
  INFO(r.text);
  REQUIRE(m.has_value());
  return std::move(*m);
}

message render_ok(const ev::Envelope& e, const render_options& o = options(),
                  const cfg::HospitalProfile& dest = destination()) {
  auto r = render(e, dest, o);
  if (!r) FAIL(r.error().describe());
  auto m = parsed(*r);
  CHECK(m.control_id() == r->control_id);
  CHECK(m.get_raw("MSH-9") == r->message_type);
  return m;
}

}  // namespace

TEST_CASE("the MSH header names yilian, the destination and the event as the control id", "[unit]") {
  auto e = base_event();
  e.mutable_patient_registered()->set_trigger("A04");
  const auto m = render_ok(e);
  CHECK(m.get("MSH-3") == "YILIAN");
  CHECK(m.get("MSH-4") == "zs-yilian");
  CHECK(m.get("MSH-5").empty());
  CHECK(m.get("MSH-6") == "ZSRMYY");
  CHECK(m.get("MSH-7") == "20250601083000+0000");
  CHECK(m.get_raw("MSH-9") == "ADT^A04^ADT_A01");
  CHECK(m.control_id() == kEventId);
  CHECK(m.get("MSH-11") == "P");
  CHECK(m.version() == "2.5");
  CHECK(m.get("MSH-18") == "UNICODE UTF-8");

  SECTION("without facility_ids the destination is named by its expected sending facility, then its id") {
    auto dest = destination();
    dest.clear_facility_ids();
    dest.mutable_inbound()->mutable_mllp()->add_expected_sending_facilities("ZSHIS");
    CHECK(render_ok(e, options(), dest).get("MSH-6") == "ZSHIS");
    dest.clear_inbound();
    CHECK(render_ok(e, options(), dest).get("MSH-6") == "zs-tertiary");
  }
  SECTION("MSH-18 follows the destination's charset, or the option") {
    auto dest = destination();
    dest.set_default_charset(cfg::CHARSET_GB18030);
    CHECK(render_ok(e, options(), dest).get("MSH-18") == "GB 18030-2000");
    auto o = options();
    o.charset = cfg::CHARSET_GBK;
    CHECK(render_ok(e, o, dest).get("MSH-18") == std::string(msh18_name(cfg::CHARSET_GBK)));
  }
  SECTION("a control id longer than 199 characters is cut") {
    e.set_event_id(std::string(250, 'a'));
    CHECK(render_ok(e).control_id() == std::string(199, 'a'));
  }
  SECTION("timestamps are local to the destination when a zone is given") {
    auto zone = time_zone::fixed(8 * 3600);
    auto o = options();
    o.utc_offset = [zone](std::chrono::sys_seconds t) {
      return std::chrono::seconds{zone.offset_at(t.time_since_epoch().count())};
    };
    const auto m2 = render_ok(e, o);
    CHECK(m2.get("MSH-7") == "20250601163000+0800");
    // The parser of the lead reads it back as the same instant.
    auto back = parse_timestamp(m2.get("MSH-7"), time_zone{});
    REQUIRE(back.has_value());
    CHECK(back->seconds() == kJune1);
  }
  SECTION("rendering is deterministic: a redelivery is byte-identical") {
    auto o2 = options();
    o2.now = std::chrono::system_clock::now() + std::chrono::hours(5);
    CHECK(render(e, destination(), options())->text == render(e, destination(), o2)->text);
  }
}

TEST_CASE("HL7 timestamps carry the offset and milliseconds only when there are some", "[unit]") {
  using namespace std::chrono;
  const auto t = system_clock::time_point{seconds{kJune1}};
  CHECK(format_hl7_timestamp(t, seconds{0}) == "20250601083000+0000");
  CHECK(format_hl7_timestamp(t + milliseconds{45}, seconds{8 * 3600}) == "20250601163000.045+0800");
  CHECK(format_hl7_timestamp(t, seconds{-(3 * 3600 + 30 * 60)}) == "20250601050000-0330");
}

TEST_CASE("PID-3 maps identifiers back to the destination's assigning authorities", "[unit]") {
  auto e = base_event();
  auto* id = e.mutable_subject()->add_identifiers();
  id->set_system("urn:yilian:id:cn:resident");
  id->set_value("11010519491231002X");
  id->set_type(ev::IDENTIFIER_TYPE_RESIDENT_ID);
  e.mutable_subject()->set_enterprise_patient_id("EP-42");
  e.mutable_patient_updated()->set_trigger("A08");
  const auto m = render_ok(e);
  const auto pid = *m.find("PID");
  const auto f = pid.field(3);
  REQUIRE(f.repetition_count() == 4);
  // Known systems first, as the destination sends them.
  CHECK(f.repetition(0).component(1) == "MRN0001");
  CHECK(f.repetition(0).component(4, 1) == "ZSRMYY");
  CHECK(f.repetition(0).component(4, 2) == "2.16.156.10011.1.1.4420001");
  CHECK(f.repetition(0).component(4, 3) == "ISO");
  CHECK(f.repetition(0).component(5) == "MR");
  CHECK(f.repetition(1).component(1) == "11010519491231002X");
  CHECK(f.repetition(1).component(4) == "CHN");
  CHECK(f.repetition(1).component(5) == "NNCHN");
  // Unknown systems keep the system URI as the authority.
  CHECK(f.repetition(2).component(1) == "DC-77");
  CHECK(f.repetition(2).component(4) == "urn:yilian:id:dc-chc:mrn");
  CHECK(f.repetition(2).component(5) == "MR");
  // The enterprise id last, under the consortium.
  CHECK(f.repetition(3).component(1) == "EP-42");
  CHECK(f.repetition(3).component(4) == "zs-yilian");
  CHECK(f.repetition(3).component(5) == "PT");
}

namespace {
// The identity index as the renderer asks it: one person with a record at
// dc-chc and one at zs-tertiary.
class one_person final : public identity::directory {
 public:
  std::string enterprise_id_of(std::string_view system, std::string_view value) const override {
    return knows(system, value) ? "YL000000007" : "";
  }
  std::optional<identity::cross_reference> cross_reference_of(std::string_view system, std::string_view value) const override {
    if (!knows(system, value)) return std::nullopt;
    return person("YL000000007");
  }
  std::optional<identity::cross_reference> person(std::string_view id) const override {
    if (id != "YL000000007") return std::nullopt;
    return identity::cross_reference{
        .enterprise_id = "YL000000007",
        .identifiers = {{.system = "urn:yilian:id:dc-chc:mrn", .value = "DC-77", .type = "MRN", .hospital = "dc-chc"},
                        {.system = "urn:yilian:id:zs-tertiary:mrn", .value = "ZS-5001", .type = "MRN", .hospital = "zs-tertiary"},
                        {.system = "urn:yilian:id:cn:resident", .value = "11010519491231002X", .type = "RESIDENT_ID",
                         .hospital = "zs-tertiary"}}};
  }

 private:
  static bool knows(std::string_view system, std::string_view value) {
    return (system == "urn:yilian:id:dc-chc:mrn" && value == "DC-77") ||
           (system == "urn:yilian:id:zs-tertiary:mrn" && value == "ZS-5001");
  }
};
}  // namespace

TEST_CASE("with the identity index, PID-3 leads with the destination's own number of the patient", "[unit]") {
  // A clinic's patient (only its MRN on the event) sent to the tertiary hospital.
  ev::Envelope e;
  e.set_event_id(kEventId);
  *e.mutable_recorded_at() = at(kJune1);
  auto* id = e.mutable_subject()->add_identifiers();
  id->set_system("urn:yilian:id:dc-chc:mrn");
  id->set_value("DC-77");
  id->set_type(ev::IDENTIFIER_TYPE_MRN);
  e.mutable_patient_updated()->set_trigger("A08");
  const one_person index;
  render_options o = options();
  o.directory = &index;
  const auto m = render_ok(e, o);
  const auto f = (*m.find("PID")).field(3);
  REQUIRE(f.repetition_count() == 4);
  CHECK(f.repetition(0).component(1) == "ZS-5001");  // the tertiary hospital's own MRN first
  CHECK(f.repetition(0).component(4, 1) == "ZSRMYY");
  CHECK(f.repetition(0).component(5) == "MR");
  CHECK(f.repetition(1).component(1) == "11010519491231002X");
  CHECK(f.repetition(2).component(1) == "DC-77");
  CHECK(f.repetition(3).component(1) == "YL000000007");  // the enterprise id, which the event lacked
  // Without the index: what the event carries, nothing more.
  const auto without = render_ok(e);
  const auto plain = (*without.find("PID")).field(3);
  REQUIRE(plain.repetition_count() == 1);
  CHECK(plain.repetition(0).component(1) == "DC-77");
}

TEST_CASE("ADT messages carry demographics, escaped, and read back unchanged", "[unit]") {
  auto e = base_event();
  auto* reg = e.mutable_patient_registered();
  reg->set_trigger("A04");
  auto* d = reg->mutable_demographics();
  d->mutable_name()->set_family("张");
  d->mutable_name()->set_given("三");
  d->mutable_name()->set_pinyin("ZHANG SAN");
  d->set_birth_date("1949-12-31");
  d->set_sex(ev::SEX_MALE);
  auto* addr = d->add_addresses();
  addr->set_line("中山路1号|2栋^3单元&4室\\东\n后门");
  addr->set_city("中山市");
  addr->set_province("广东省");
  addr->set_district("东区");
  auto* phone = d->add_telecom();
  phone->set_system("phone");
  phone->set_value("13800000000");
  phone->set_use(ev::CONTACT_USE_MOBILE);
  phone = d->add_telecom();
  phone->set_system("phone");
  phone->set_value("0760-1234567");
  phone->set_use(ev::CONTACT_USE_WORK);
  e.mutable_correlation()->set_encounter_id("V-9");

  const auto m = render_ok(e);
  CHECK(m.get("EVN-1") == "A04");
  CHECK(m.get("EVN-2") == "20250601082900+0000");
  CHECK(m.get("PID-5.1") == "张");
  CHECK(m.get("PID-5.2") == "三");
  CHECK(m.get("PID-5.8") == "I");
  CHECK(m.get("PID-5[2].1") == "ZHANG SAN");
  CHECK(m.get("PID-5[2].8") == "A");
  CHECK(m.get("PID-7") == "19491231");
  CHECK(m.get("PID-8") == "M");
  CHECK(m.get("PID-11.1") == "中山路1号|2栋^3单元&4室\\东\n后门");
  CHECK(m.get("PID-11.3") == "中山市");
  CHECK(m.get("PID-11.4") == "广东省");
  CHECK(m.get("PID-11.9") == "东区");
  CHECK(m.get("PID-13.1") == "13800000000");
  CHECK(m.get("PID-13.3") == "CP");
  CHECK(m.get("PID-14.1") == "0760-1234567");
  CHECK(m.get("PID-14.2") == "WPN");
  CHECK(m.get("PV1-2") == "O");
  CHECK(m.get("PV1-19") == "V-9");
  // MSH EVN PID PV1: the escapes kept the delimiters out of the structure.
  CHECK(m.segment_count() == 4);

  SECTION("A28 and A31 when the trigger says so") {
    reg->set_trigger("A28");
    auto m28 = render_ok(e);
    CHECK(m28.get_raw("MSH-9") == "ADT^A28^ADT_A05");
    CHECK(m28.get("PV1-2") == "N");
    ev::Envelope u = base_event();
    u.mutable_patient_updated()->set_trigger("A31");
    CHECK(render_ok(u).get_raw("MSH-9") == "ADT^A31^ADT_A05");
    u.mutable_patient_updated()->set_trigger("");
    CHECK(render_ok(u).get_raw("MSH-9") == "ADT^A08^ADT_A01");
  }
}

TEST_CASE("SIU triggers follow the event's trigger, else the booking state", "[unit]") {
  struct row {
    std::string trigger;
    ev::BookingState previous;
    ev::BookingState state;
    bool rescheduled;
    std::string expected;
    std::string sch25;
  };
  const std::vector<row> table{
      {"", ev::BOOKING_STATE_UNSPECIFIED, ev::BOOKING_STATE_BOOKED, false, "S12", "Booked"},
      {"", ev::BOOKING_STATE_HELD, ev::BOOKING_STATE_BOOKED, false, "S12", "Booked"},
      {"", ev::BOOKING_STATE_UNSPECIFIED, ev::BOOKING_STATE_REQUESTED, false, "S12", "Pending"},
      {"", ev::BOOKING_STATE_UNSPECIFIED, ev::BOOKING_STATE_HELD, false, "S12", "Pending"},
      {"", ev::BOOKING_STATE_BOOKED, ev::BOOKING_STATE_BOOKED, true, "S13", "Booked"},
      {"", ev::BOOKING_STATE_BOOKED, ev::BOOKING_STATE_BOOKED, false, "S14", "Booked"},
      {"", ev::BOOKING_STATE_BOOKED, ev::BOOKING_STATE_CHECKED_IN, false, "S14", "Started"},
      {"", ev::BOOKING_STATE_CHECKED_IN, ev::BOOKING_STATE_PERFORMED, false, "S14", "Complete"},
      {"", ev::BOOKING_STATE_BOOKED, ev::BOOKING_STATE_CANCELLED, false, "S15", "Cancelled"},
      {"", ev::BOOKING_STATE_BOOKED, ev::BOOKING_STATE_NO_SHOW, false, "S26", "Noshow"},
      {"S13", ev::BOOKING_STATE_BOOKED, ev::BOOKING_STATE_BOOKED, false, "S13", "Booked"},
      {"S99", ev::BOOKING_STATE_BOOKED, ev::BOOKING_STATE_CANCELLED, false, "S15", "Cancelled"},
  };
  for (const auto& r : table) {
    INFO(r.expected << " from trigger '" << r.trigger << "' state " << ev::BookingState_Name(r.state));
    auto e = base_event();
    auto* a = e.mutable_appointment_changed();
    a->set_trigger(r.trigger);
    a->set_previous_state(r.previous);
    a->set_state(r.state);
    if (r.rescheduled) *a->mutable_previous_start() = at(kJune1 - 86400);
    auto type = message_type_for(e, options());
    REQUIRE(type.has_value());
    CHECK(*type == "SIU^" + r.expected + "^SIU_S12");
    CHECK(render_ok(e).get("SCH-25") == r.sch25);
  }
  ev::Envelope none = base_event();
  none.mutable_appointment_changed();
  auto bad = render(none, destination(), options());
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().code == errc::validation_failed);
  CHECK(bad.error().where == "appointment_changed.state");
}

TEST_CASE("SIU carries the appointment, the exam in the destination's codes and the machine", "[unit]") {
  auto e = base_event();
  auto* a = e.mutable_appointment_changed();
  a->set_state(ev::BOOKING_STATE_BOOKED);
  a->set_appointment_id("APT-1");
  a->set_filler_appointment_id("F-APT-1");
  *a->mutable_start() = at(kJune1);
  *a->mutable_end() = at(kJune1 + 900);
  a->set_duration_minutes(15);
  a->mutable_exam()->set_code("EX-9");
  a->mutable_exam()->set_display("头颅平扫");
  a->mutable_exam()->set_system("DC-EXAM");
  a->mutable_catalogue_code()->set_code("CT-HEAD-PLAIN");
  a->mutable_catalogue_code()->set_system("urn:yilian:catalogue:exam");
  a->set_equipment_id("zs-ct-1");
  a->set_placer_order("PO-1");
  const auto m = render_ok(e);
  CHECK(m.get("SCH-1") == "APT-1");
  CHECK(m.get("SCH-2") == "F-APT-1");
  CHECK(m.get("SCH-9") == "15");
  CHECK(m.get("SCH-11.4") == "20250601083000+0000");
  CHECK(m.get("SCH-11.5") == "20250601084500+0000");
  CHECK(m.get("SCH-26") == "PO-1");
  REQUIRE(m.find("RGS").has_value());
  // The destination's own code leads; the catalogue code is the alternate.
  CHECK(m.get("AIS-3.1") == "CT0101");
  CHECK(m.get("AIS-3.2") == "头颅平扫");
  CHECK(m.get("AIS-3.3") == "ZSRMYY-EXAM");
  CHECK(m.get("AIS-3.4") == "CT-HEAD-PLAIN");
  CHECK(m.get("AIS-4") == "20250601083000+0000");
  CHECK(m.get("AIG-3.1") == "CT-01");
  CHECK(m.get("AIG-8") == "20250601083000+0000");
}

TEST_CASE("orders are OMI^O23 from version 2.5 and ORM^O01 before", "[unit]") {
  auto e = base_event();
  auto* o = e.mutable_order_placed();
  o->set_control(ev::ORDER_CONTROL_NEW);
  o->set_placer_order("PO-7");
  o->set_accession("ACC-7");
  o->set_modality("CT");
  o->set_priority(ev::PRIORITY_STAT);
  o->mutable_service()->set_code("CT0101");
  o->mutable_service()->set_system("ZSRMYY-EXAM");
  o->mutable_ordering_provider()->set_id("D01");
  o->mutable_ordering_provider()->set_name("李医生");
  o->set_clinical_info("头痛 3 天");
  *o->mutable_requested_for() = at(kJune1 + 3600);
  o->set_equipment_id("zs-ct-1");
  e.mutable_correlation()->set_study_uid("1.2.3.4");

  SECTION("2.5: ORC, TQ1, OBR, IPC") {
    const auto m = render_ok(e);
    CHECK(m.get_raw("MSH-9") == "OMI^O23^OMI_O23");
    CHECK(m.get("ORC-1") == "NW");
    CHECK(m.get("ORC-2") == "PO-7");
    CHECK(m.get("ORC-12.2") == "李医生");
    CHECK(m.get("TQ1-7") == "20250601093000+0000");
    CHECK(m.get("TQ1-9") == "S");
    CHECK(m.get("OBR-4.1") == "CT0101");
    CHECK(m.get("OBR-13") == "头痛 3 天");
    CHECK(m.get("OBR-18") == "ACC-7");
    CHECK(m.get("IPC-1") == "ACC-7");
    CHECK(m.get("IPC-3") == "1.2.3.4");
    CHECK(m.get("IPC-5") == "CT");
    CHECK(m.get("IPC-7") == "CT-01");
  }
  SECTION("2.4: timing in ORC-7, no TQ1 nor IPC") {
    auto opts = options();
    opts.version = "2.4";
    const auto m = render_ok(e, opts);
    CHECK(m.get_raw("MSH-9") == "ORM^O01^ORM_O01");
    CHECK(m.version() == "2.4");
    CHECK(m.get("ORC-7.4") == "20250601093000+0000");
    CHECK(m.get("ORC-7.6") == "S");
    CHECK_FALSE(m.find("TQ1").has_value());
    CHECK_FALSE(m.find("IPC").has_value());
  }
  SECTION("2.3 has no message structure in MSH-9") {
    auto opts = options();
    opts.version = "2.3";
    CHECK(render_ok(e, opts).get_raw("MSH-9") == "ORM^O01");
  }
  SECTION("a status change carries ORC-1 and ORC-5") {
    ev::Envelope s = base_event();
    auto* c = s.mutable_order_status_changed();
    c->set_control(ev::ORDER_CONTROL_STATUS_CHANGED);
    c->set_status(ev::ORDER_STATUS_IN_PROGRESS);
    c->set_placer_order("PO-7");
    c->set_accession("ACC-7");
    const auto m = render_ok(s);
    CHECK(m.get("ORC-1") == "SC");
    CHECK(m.get("ORC-5") == "IP");
    CHECK(m.get("OBR-2") == "PO-7");
    CHECK(m.get("IPC-1") == "ACC-7");
    c->set_control(ev::ORDER_CONTROL_UNSPECIFIED);
    c->set_control_code("XX");
    CHECK(render_ok(s).get("ORC-1") == "XX");
  }
  SECTION("an unknown version is refused") {
    auto opts = options();
    opts.version = "3.0";
    auto r = render(e, destination(), opts);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == errc::unsupported);
  }
}

TEST_CASE("ORU^R01 has one OBX per observation and claim-checks as RP pointers", "[unit]") {
  auto e = base_event();
  auto* r = e.mutable_report_issued();
  r->set_report_id("RPT-1");
  r->set_status(ev::REPORT_STATUS_FINAL);
  r->set_placer_order("PO-7");
  r->set_accession("ACC-7");
  r->set_study_uid("1.2.840.1");
  r->mutable_exam()->set_code("CT0101");
  r->mutable_exam()->set_system("ZSRMYY-EXAM");
  r->mutable_interpreter()->set_id("R01");
  r->mutable_interpreter()->set_name("王医生");
  *r->mutable_issued_at() = at(kJune1);
  r->set_findings("颅内未见异常。\n脑室系统正常。");
  r->set_conclusion("未见异常");
  auto* ob = r->add_observations();
  ob->mutable_code()->set_code("NUM");
  ob->set_number(12.5);
  ob->set_units("mm");
  ob->add_abnormal_flags("H");
  ob->add_abnormal_flags("A");
  ob = r->add_observations();
  ob->mutable_code()->set_code("IMP");
  ob->set_text("未见异常");  // the conclusion is already an observation: not sent twice
  auto* doc = r->add_documents();
  doc->set_uri("raw://zs-tertiary/2025/06/01/report&1.pdf");
  doc->set_content_type("application/pdf");
  doc->set_sha256(std::string(64, 'a'));

  const auto m = render_ok(e);
  CHECK(m.get_raw("MSH-9") == "ORU^R01^ORU_R01");
  CHECK(m.get("ORC-1") == "RE");
  CHECK(m.get("OBR-3") == "RPT-1");
  CHECK(m.get("OBR-18") == "ACC-7");
  CHECK(m.get("OBR-22") == "20250601083000+0000");
  CHECK(m.get("OBR-25") == "F");
  CHECK(m.get("OBR-32.1.1") == "R01");
  CHECK(m.get("OBR-32.1.2") == "王医生");
  const auto obx = m.all("OBX");
  REQUIRE(obx.size() == 4);
  CHECK(obx[0].text(1) == "1");
  CHECK(obx[0].text(2) == "NM");
  CHECK(obx[0].text(5) == "12.5");
  CHECK(obx[0].text(6) == "mm");
  CHECK(obx[0].field(8).repetition_count() == 2);
  CHECK(obx[0].text(11) == "F");
  CHECK(obx[1].text(2) == "ST");
  CHECK(obx[1].text(5) == "未见异常");
  CHECK(obx[2].text(2) == "TX");
  CHECK(obx[2].component(3, 1) == "18782-3");
  CHECK(obx[2].text(5) == "颅内未见异常。\n脑室系统正常。");
  CHECK(obx[3].text(1) == "4");
  CHECK(obx[3].text(2) == "RP");
  CHECK(obx[3].component(5, 1) == "raw://zs-tertiary/2025/06/01/report&1.pdf");
  CHECK(obx[3].component(5, 2) == "YILIAN");
  CHECK(obx[3].component(5, 3) == "AP");
  CHECK(obx[3].component(5, 4) == "PDF");
  // Never the bytes: no ED values anywhere.
  for (const auto& s : obx) CHECK(s.text(2) != "ED");
  CHECK(m.get("ZDS-1.1") == "1.2.840.1");
  CHECK(m.get("ZDS-1.4") == "DICOM");
}

TEST_CASE("referrals: REF^I12 for a request, RRI^I12 to I15 by state", "[unit]") {
  auto e = base_event();
  auto* r = e.mutable_referral_requested();
  r->set_referral_id("REF-1");
  r->set_state(ev::REFERRAL_STATE_REQUESTED);
  r->set_priority(ev::PRIORITY_ROUTINE);
  r->set_from_hospital("dc-chc");
  r->set_to_hospital("zs-tertiary");
  r->mutable_referring_provider()->set_id("D9");
  r->mutable_referring_provider()->set_name("赵医生");
  r->mutable_reason()->set_code("I10");
  r->set_reason_text("高血压控制不佳");
  r->add_diagnoses()->set_code("I10");
  r->add_requested_services()->set_code("CT0101");
  r->set_clinical_summary("血压 180/110");
  r->set_linked_referral_id("REF-0");
  auto* att = r->add_attachments();
  att->set_uri("raw://dc-chc/letter.pdf");
  att->set_content_type("application/pdf");

  const auto m = render_ok(e);
  CHECK(m.get_raw("MSH-9") == "REF^I12^REF_I12");
  CHECK(m.get("RF1-1.1") == "P");
  CHECK(m.get("RF1-2") == "R");
  CHECK(m.get("RF1-6") == "REF-1");
  CHECK(m.get("RF1-10.1") == "I10");
  CHECK(m.get("RF1-10.2") == "高血压控制不佳");
  CHECK(m.get("RF1-11") == "REF-0");
  const auto prd = m.all("PRD");
  REQUIRE(prd.size() == 2);
  CHECK(prd[0].text(1) == "RP");
  CHECK(prd[0].text(2) == "赵医生");
  CHECK(prd[0].component(4, 4) == "dc-chc");  // no consortium given: the id itself
  CHECK(prd[0].text(7) == "D9");
  CHECK(prd[1].text(1) == "RT");
  CHECK(prd[1].component(4, 4) == "ZSRMYY");  // the destination's own facility id
  CHECK(m.get("DG1-3.1") == "I10");
  CHECK(m.get("OBR-4.1") == "CT0101");
  CHECK(m.get("OBX-2") == "RP");
  CHECK(m.get("OBX-5.1") == "raw://dc-chc/letter.pdf");
  CHECK(m.get("NTE-3") == "血压 180/110");
  // Segment order of REF_I12: RF1, PRD..., PID, DG1, OBR (OBX), NTE.
  std::string order;
  for (std::size_t i = 0; i < m.segment_count(); ++i) order += std::string(m.segment(i).id()) + " ";
  CHECK(order == "MSH RF1 PRD PRD PID DG1 OBR OBX NTE ");

  struct row {
    ev::ReferralState state;
    std::string trigger;
    std::string rf1;
    std::string alternate;  // RF1-1.4, local table 99YLN
  };
  const std::vector<row> table{
      {ev::REFERRAL_STATE_RECEIVED, "I12", "P", "RECEIVED"},
      {ev::REFERRAL_STATE_ACCEPTED, "I12", "A", ""},
      {ev::REFERRAL_STATE_REJECTED, "I12", "R", ""},
      {ev::REFERRAL_STATE_SCHEDULED, "I13", "A", "SCHEDULED"},
      {ev::REFERRAL_STATE_ARRIVED, "I13", "A", "ARRIVED"},
      {ev::REFERRAL_STATE_COMPLETED, "I13", "A", "COMPLETED"},
      {ev::REFERRAL_STATE_REPORT_RETURNED, "I13", "A", "REPORT_RETURNED"},
      {ev::REFERRAL_STATE_NO_SHOW, "I13", "A", "NO_SHOW"},
      {ev::REFERRAL_STATE_CANCELLED, "I14", "CANCELLED", ""},
      {ev::REFERRAL_STATE_TERMINATED, "I14", "TERMINATED", ""},
      {ev::REFERRAL_STATE_EXPIRED, "I14", "E", ""},
      {ev::REFERRAL_STATE_DRAFT, "I15", "P", "DRAFT"},
      {ev::REFERRAL_STATE_REQUESTED, "I15", "P", "REQUESTED"},
  };
  for (const auto& row : table) {
    INFO(ev::ReferralState_Name(row.state));
    ev::Envelope s = base_event();
    auto* c = s.mutable_referral_state_changed();
    c->set_referral_id("REF-1");
    c->set_state(row.state);
    c->set_actor_hospital("zs-tertiary");
    c->set_reason_text("床位已满");
    const auto rm = render_ok(s);
    CHECK(rm.get_raw("MSH-9") == "RRI^" + row.trigger + "^RRI_I12");
    CHECK(rm.get("RF1-1.1") == row.rf1);
    CHECK(rm.get("RF1-1.4") == row.alternate);
    CHECK(rm.get("RF1-1.3") == (row.rf1.size() == 1 ? "HL70283" : "99YLN"));
    CHECK(rm.get("RF1-1.6") == (row.alternate.empty() ? "" : "99YLN"));
    CHECK(rm.get("RF1-6") == "REF-1");
    CHECK(rm.get("RF1-10.2") == "床位已满");
    CHECK(rm.find("PID").has_value());
  }
  ev::Envelope none = base_event();
  none.mutable_referral_state_changed()->set_referral_id("REF-1");
  auto bad = render(none, destination(), options());
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().code == errc::validation_failed);
}

TEST_CASE("shared documents are MDM^T02 (T10 for a replacement) with the document by reference", "[unit]") {
  auto e = base_event();
  auto* d = e.mutable_document_shared();
  d->set_document_id("DOC-1");
  d->mutable_type()->set_code("DS");
  d->mutable_content()->set_uri("raw://zs-tertiary/doc-1.pdf");
  d->mutable_content()->set_content_type("application/pdf");
  auto m = render_ok(e);
  CHECK(m.get_raw("MSH-9") == "MDM^T02^MDM_T02");
  CHECK(m.get("TXA-12") == "DOC-1");
  CHECK(m.get("TXA-17") == "DO");
  CHECK(m.get("OBX-2") == "RP");
  CHECK(m.get("OBX-5.1") == "raw://zs-tertiary/doc-1.pdf");
  d->set_replaces_document_id("DOC-0");
  m = render_ok(e);
  CHECK(m.get_raw("MSH-9") == "MDM^T10^MDM_T02");
  CHECK(m.get("TXA-13") == "DOC-0");
  d->clear_content();
  auto bad = render(e, destination(), options());
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().code == errc::validation_failed);
  CHECK(bad.error().where == "document_shared.content.uri");
}

TEST_CASE("events HL7 v2 cannot carry are refused, with the body named", "[unit]") {
  auto e = base_event();
  e.mutable_imaging_study_available()->set_study_uid("1.2.3");
  auto r = render(e, destination(), options());
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == errc::unsupported);
  CHECK(r.error().message.find("ImagingStudyAvailable") != std::string::npos);
  CHECK_FALSE(message_type_for(e, options()).has_value());

  ev::Envelope empty = base_event();
  auto r2 = render(empty, destination(), options());
  REQUIRE_FALSE(r2.has_value());
  CHECK(r2.error().code == errc::validation_failed);

  ev::Envelope no_id = base_event();
  no_id.mutable_patient_registered();
  no_id.clear_event_id();
  auto r3 = render(no_id, destination(), options());
  REQUIRE_FALSE(r3.has_value());
  CHECK(r3.error().where == "event_id");
}

TEST_CASE("a rendered message survives encoding to the destination's charset and back", "[unit]") {
  auto e = base_event();
  e.mutable_patient_registered()->mutable_demographics()->mutable_name()->set_family("欧阳");
  auto dest = destination();
  dest.set_default_charset(cfg::CHARSET_GB18030);
  auto r = render(e, dest, options());
  REQUIRE(r.has_value());
  auto bytes = encode_text(r->text, cfg::CHARSET_GB18030);
  REQUIRE(bytes.has_value());
  CHECK(*bytes != r->text);
  auto back = decode_message(*bytes, cfg::CHARSET_UTF8);  // MSH-18 says GB 18030
  REQUIRE(back.has_value());
  CHECK(back->utf8 == r->text);
  auto m = message::parse(back->utf8);
  REQUIRE(m.has_value());
  CHECK(m->get("PID-5.1") == "欧阳");
}

namespace {

const config::loaded_consortium& example_consortium() {
  static const config::loaded_consortium loaded = [] {
    const char* root = std::getenv("YILIAN_SOURCE_DIR");
    auto r = config::load_consortium(std::filesystem::path(root != nullptr ? root : YILIAN_SOURCE_DIR) /
                                     "deploy/examples/consortium");
    if (!r) throw std::runtime_error(r.error().describe());
    return std::move(*r);
  }();
  return loaded;
}

// What the hospital's side reads: renders `e` for `hospital` (example
// consortium), converts it to the hospital's charset and back, parses it and
// maps it with yilian's own mapper compiled for that hospital's profile.
ev::Envelope through_the_hospital(const ev::Envelope& e, const std::string& hospital) {
  const auto& c = example_consortium();
  const auto* profile = c.profile(hospital);
  REQUIRE(profile != nullptr);
  render_options o;
  o.sending_facility = c.consortium.id();
  o.consortium = &c;
  auto r = render(e, *profile, o);
  if (!r) FAIL(r.error().describe());
  auto bytes = encode_text(r->text, profile->default_charset());
  REQUIRE(bytes.has_value());
  auto decoded = decode_message(*bytes, profile->default_charset());
  REQUIRE(decoded.has_value());
  auto msg = message::parse(decoded->utf8);
  REQUIRE(msg.has_value());
  auto m = mapper::compile(&c, profile, hospital);
  REQUIRE(m.has_value());
  ev::ClaimCheck raw;
  raw.set_uri("raw://" + hospital + "/test.hl7");
  auto events = m->map(*msg, raw, std::chrono::system_clock::now());
  INFO(decoded->utf8);
  if (!events) FAIL(events.error().describe());
  REQUIRE(events->size() >= 1);
  return *events->front().envelope;
}

ev::Envelope dc_patient_event() {
  ev::Envelope e;
  e.set_event_id(kEventId);
  *e.mutable_recorded_at() = at(kJune1);
  *e.mutable_occurred_at() = at(kJune1);
  auto add = [&](const std::string& system, const std::string& value, ev::IdentifierType t) {
    auto* id = e.mutable_subject()->add_identifiers();
    id->set_system(system);
    id->set_value(value);
    id->set_type(t);
  };
  add("urn:yilian:id:dc-chc:mrn", "DC0001", ev::IDENTIFIER_TYPE_MRN);
  add("urn:yilian:id:cn:resident", "11010519491231002X", ev::IDENTIFIER_TYPE_RESIDENT_ID);
  add("urn:yilian:id:zs-tertiary:mrn", "ZS0001", ev::IDENTIFIER_TYPE_MRN);  // another member's
  return e;
}

std::vector<std::pair<std::string, std::string>> ids_of(const ev::Envelope& e) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& id : e.subject().identifiers()) out.emplace_back(id.system(), id.value());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE("what yilian renders for a hospital, yilian's own mapper with that hospital's profile reads back",
          "[unit]") {
  // dc-chc: a GBK community HIS with its own exam codes and resource codes.
  SECTION("ADT: identifiers (the destination's, national, another member's) and demographics") {
    auto e = dc_patient_event();
    auto* d = e.mutable_patient_registered()->mutable_demographics();
    e.mutable_patient_registered()->set_trigger("A04");
    d->mutable_name()->set_family("张");
    d->mutable_name()->set_given("三丰");
    d->mutable_name()->set_pinyin("ZHANG SANFENG");
    d->set_birth_date("1949-12-31");
    d->set_sex(ev::SEX_MALE);
    auto* t = d->add_telecom();
    t->set_system("phone");
    t->set_value("13800000000");
    t->set_use(ev::CONTACT_USE_MOBILE);
    const auto back = through_the_hospital(e, "dc-chc");
    CHECK(back.patient_registered().trigger() == "A04");
    CHECK(ids_of(back) == ids_of(e));
    const auto& bd = back.patient_registered().demographics();
    CHECK(bd.name().family() == "张");
    CHECK(bd.name().given() == "三丰");
    CHECK(bd.name().pinyin() == "ZHANG SANFENG");
    CHECK(bd.birth_date() == "1949-12-31");
    CHECK(bd.sex() == ev::SEX_MALE);
    REQUIRE(bd.telecom_size() == 1);
    CHECK(bd.telecom(0).value() == "13800000000");
    CHECK(back.occurred_at().seconds() == kJune1);
  }
  SECTION("SIU: the machine and the exam in the clinic's own codes") {
    auto e = dc_patient_event();
    auto* a = e.mutable_appointment_changed();
    a->set_state(ev::BOOKING_STATE_BOOKED);
    a->set_appointment_id("APT-1");
    a->set_equipment_id("zs-ct-1");
    a->mutable_catalogue_code()->set_code("CT-HEAD-PLAIN");
    a->mutable_catalogue_code()->set_system("urn:yilian:catalogue:exam");
    *a->mutable_start() = at(kJune1);
    *a->mutable_end() = at(kJune1 + 900);
    a->set_duration_minutes(15);
    const auto back = through_the_hospital(e, "dc-chc");
    const auto& b = back.appointment_changed();
    CHECK(b.trigger() == "S12");
    CHECK(b.state() == ev::BOOKING_STATE_BOOKED);
    CHECK(b.appointment_id() == "APT-1");
    CHECK(b.equipment_id() == "zs-ct-1");
    CHECK(b.exam().code() == "JC001");
    CHECK(b.catalogue_code().code() == "CT-HEAD-PLAIN");
    CHECK(b.start().seconds() == kJune1);
    CHECK(b.end().seconds() == kJune1 + 900);
    CHECK(ids_of(back) == ids_of(e));
  }
  SECTION("orders") {
    auto e = dc_patient_event();
    auto* o = e.mutable_order_placed();
    o->set_control(ev::ORDER_CONTROL_NEW);
    o->set_placer_order("PO-7");
    o->set_accession("ACC-7");
    o->mutable_catalogue_code()->set_code("CT-HEAD-PLAIN");
    o->mutable_catalogue_code()->set_system("urn:yilian:catalogue:exam");
    o->set_priority(ev::PRIORITY_STAT);
    *o->mutable_requested_for() = at(kJune1 + 3600);
    o->set_equipment_id("zs-ct-1");
    const auto back = through_the_hospital(e, "dc-chc");
    REQUIRE(back.has_order_placed());
    const auto& b = back.order_placed();
    CHECK(b.control() == ev::ORDER_CONTROL_NEW);
    CHECK(b.placer_order() == "PO-7");
    CHECK(b.accession() == "ACC-7");
    CHECK(b.service().code() == "JC001");
    CHECK(b.catalogue_code().code() == "CT-HEAD-PLAIN");
    CHECK(b.priority() == ev::PRIORITY_STAT);
    CHECK(b.requested_for().seconds() == kJune1 + 3600);
    CHECK(b.equipment_id() == "zs-ct-1");
  }
  SECTION("reports") {
    auto e = dc_patient_event();
    auto* r = e.mutable_report_issued();
    r->set_report_id("RPT-1");
    r->set_status(ev::REPORT_STATUS_FINAL);
    r->set_accession("ACC-7");
    r->mutable_catalogue_code()->set_code("CT-HEAD-PLAIN");
    r->mutable_catalogue_code()->set_system("urn:yilian:catalogue:exam");
    r->set_findings("颅内未见异常。\n脑室系统正常。");
    r->set_conclusion("未见异常");
    *r->mutable_issued_at() = at(kJune1);
    const auto back = through_the_hospital(e, "dc-chc");
    const auto& b = back.report_issued();
    CHECK(b.report_id() == "RPT-1");
    CHECK(b.status() == ev::REPORT_STATUS_FINAL);
    CHECK(b.accession() == "ACC-7");
    CHECK(b.catalogue_code().code() == "CT-HEAD-PLAIN");
    CHECK(b.findings() == r->findings());
    CHECK(b.conclusion() == r->conclusion());
    CHECK(b.issued_at().seconds() == kJune1);
  }
  SECTION("referrals") {
    auto e = dc_patient_event();
    auto* r = e.mutable_referral_requested();
    r->set_referral_id("REF-1");
    r->set_state(ev::REFERRAL_STATE_REQUESTED);
    r->set_priority(ev::PRIORITY_ROUTINE);
    r->set_from_hospital("dc-chc");
    r->set_to_hospital("zs-tertiary");
    r->set_reason_text("高血压控制不佳");
    r->set_clinical_summary("血压 180/110");
    const auto back = through_the_hospital(e, "dc-chc");
    const auto& b = back.referral_requested();
    CHECK(b.referral_id() == "REF-1");
    CHECK(b.state() == ev::REFERRAL_STATE_REQUESTED);
    CHECK(b.priority() == ev::PRIORITY_ROUTINE);
    CHECK(b.from_hospital() == "dc-chc");
    CHECK(b.to_hospital() == "zs-tertiary");
    CHECK(b.direction() == ev::REFERRAL_DIRECTION_UP);
    CHECK(b.reason_text() == "高血压控制不佳");
    CHECK(b.clinical_summary() == "血压 180/110");

    ev::Envelope s = dc_patient_event();
    auto* c = s.mutable_referral_state_changed();
    c->set_referral_id("REF-1");
    c->set_state(ev::REFERRAL_STATE_ACCEPTED);
    c->set_actor_hospital("zs-tertiary");
    auto sb = through_the_hospital(s, "dc-chc");
    CHECK(sb.referral_state_changed().state() == ev::REFERRAL_STATE_ACCEPTED);
    CHECK(sb.referral_state_changed().referral_id() == "REF-1");
    // A progress state reads as ACCEPTED by a receiver that knows only table 0283.
    c->set_state(ev::REFERRAL_STATE_SCHEDULED);
    sb = through_the_hospital(s, "dc-chc");
    CHECK(sb.referral_state_changed().state() == ev::REFERRAL_STATE_ACCEPTED);
  }
}
