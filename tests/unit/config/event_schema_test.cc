// The event schemas (schemas/yilian/events/v1) through the two forms the engine
// uses: binary on the bus, JSON in the API and the console.
#include <set>
#include <string>

#include <catch2/catch.hpp>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <google/protobuf/util/time_util.h>

#include "engine/config/config.h"
#include "yilian/events/v1/envelope.pb.h"
#include "yilian/events/v1/topics.pb.h"

using namespace yilian::events::v1;
using google::protobuf::util::MessageDifferencer;
using google::protobuf::util::TimeUtil;
using Catch::Matchers::Contains;

namespace {

Envelope report_event() {
  Envelope e;
  e.set_event_id("9f1c0a3e5b7d4c2a8e6f1b3d5c7a9e0f2b4d6c8a0e2f4b6d8c0a2e4f6b8d0c2a");
  e.set_type("yilian.events.v1.ReportIssued");
  e.set_schema_version(1);
  *e.mutable_occurred_at() = TimeUtil::SecondsToTimestamp(1748766600);  // 2025-06-01T08:30:00Z
  *e.mutable_recorded_at() = TimeUtil::SecondsToTimestamp(1748766601);
  auto& s = *e.mutable_source();
  s.set_hospital("zs-tertiary");
  s.set_system("RIS");
  s.set_protocol(PROTOCOL_HL7V2_MLLP);
  s.set_control_id("MSG00042");
  s.set_facility("ZSRMYY");
  s.set_message_type("ORU^R01^ORU_R01");
  auto& subject = *e.mutable_subject();
  subject.set_enterprise_patient_id("ep-000123");
  auto& id = *subject.add_identifiers();
  id.set_system("urn:yilian:id:zs-tertiary:mrn");
  id.set_value("0012345");
  id.set_type(IDENTIFIER_TYPE_MRN);
  id.set_assigner("zs-tertiary");
  auto& c = *e.mutable_correlation();
  c.set_placer_order("DC-20250601-7");
  c.set_accession("CT2025060100042");
  c.set_study_uid("1.2.156.112605.1.20250601.42");
  auto& raw = *e.mutable_raw_ref();
  raw.set_uri("raw://zs-tertiary/2025/06/01/msg00042.hl7");
  raw.set_sha256(std::string(64, 'a'));
  raw.set_size_bytes(2048);
  raw.set_content_type("application/hl7-v2");
  e.mutable_trace()->set_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  auto& r = *e.mutable_report_issued();
  r.set_report_id("RPT-42");
  r.set_version(1);
  r.set_status(REPORT_STATUS_FINAL);
  r.set_status_code("F");
  r.set_accession("CT2025060100042");
  r.mutable_exam()->set_code("CT0101");
  r.mutable_exam()->set_system("ZSRMYY-EXAM");
  r.mutable_catalogue_code()->set_code("CT-HEAD-PLAIN");
  r.set_conclusion("颅内未见明显异常。");
  auto& o = *r.add_observations();
  o.set_value_type("NM");
  o.mutable_code()->set_code("CTDIvol");
  o.set_number(42.5);
  o.set_units("mGy");
  auto& pdf = *r.add_documents();
  pdf.set_uri("raw://zs-tertiary/reports/RPT-42.pdf");
  pdf.set_content_type("application/pdf");
  r.set_referring_hospital("dc-chc");
  return e;
}

}  // namespace

TEST_CASE("an envelope with a body survives serialization and parsing", "[unit]") {
  const Envelope original = report_event();
  const std::string bytes = original.SerializeAsString();
  Envelope parsed;
  REQUIRE(parsed.ParseFromString(bytes));
  CHECK(MessageDifferencer::Equals(original, parsed));
  CHECK(parsed.body_case() == Envelope::kReportIssued);
  CHECK(parsed.report_issued().observations(0).value_case() == Observation::kNumber);
  CHECK(parsed.report_issued().conclusion() == "颅内未见明显异常。");
}

TEST_CASE("an envelope converts to JSON with the expected names", "[unit]") {
  std::string json;
  REQUIRE(google::protobuf::util::MessageToJsonString(report_event(), &json).ok());
  INFO(json);
  CHECK_THAT(json, Contains("\"eventId\":\"9f1c0a3e"));
  CHECK_THAT(json, Contains("\"type\":\"yilian.events.v1.ReportIssued\""));
  CHECK_THAT(json, Contains("\"occurredAt\":\"2025-06-01T08:30:00Z\""));
  CHECK_THAT(json, Contains("\"protocol\":\"PROTOCOL_HL7V2_MLLP\""));
  CHECK_THAT(json, Contains("\"controlId\":\"MSG00042\""));
  CHECK_THAT(json, Contains("\"enterprisePatientId\":\"ep-000123\""));
  CHECK_THAT(json, Contains("\"type\":\"IDENTIFIER_TYPE_MRN\""));
  CHECK_THAT(json, Contains("\"studyUid\":\"1.2.156.112605.1.20250601.42\""));
  CHECK_THAT(json, Contains("\"sizeBytes\":\"2048\""));  // 64-bit integers are strings in proto3 JSON
  CHECK_THAT(json, Contains("\"traceparent\":\"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\""));
  CHECK_THAT(json, Contains("\"reportIssued\":{"));
  CHECK_THAT(json, Contains("\"status\":\"REPORT_STATUS_FINAL\""));
  CHECK_THAT(json, Contains("\"number\":42.5"));
  CHECK_THAT(json, Contains("\"conclusion\":\"颅内未见明显异常。\""));

  SECTION("and back, to an equal message") {
    Envelope back;
    REQUIRE(google::protobuf::util::JsonStringToMessage(json, &back).ok());
    CHECK(MessageDifferencer::Equals(report_event(), back));
  }

  SECTION("with proto field names when asked") {
    google::protobuf::util::JsonPrintOptions options;
    options.preserve_proto_field_names = true;
    std::string snake;
    REQUIRE(google::protobuf::util::MessageToJsonString(report_event(), &snake, options).ok());
    CHECK_THAT(snake, Contains("\"event_id\":"));
    CHECK_THAT(snake, Contains("\"report_issued\":{"));
  }
}

TEST_CASE("every body of DESIGN.md is in the envelope's oneof, as its type name", "[unit]") {
  const auto names = yilian::config::event_type_names();
  const std::set<std::string> got(names.begin(), names.end());
  const std::set<std::string> expected{
      "PatientRegistered",     "PatientUpdated",   "PatientIdentifiersMerged", "PatientLinkChanged",
      "ReferralRequested",     "ReferralStateChanged", "OrderPlaced",          "OrderStatusChanged",
      "SlotAvailabilityChanged", "AppointmentChanged", "EncounterEvent",       "ImagingStudyAvailable",
      "ReportIssued",          "DocumentShared",   "DeliveryAcknowledged",     "ConsentRecorded",
      "DeadLetter",
      // The booking workflow's commands and refusals (issue 4): on the booking
      // topic next to the decisions they lead to.
      "BookingCommand",        "BookingCommandRejected",
      // The referral workflow's (issue 5), likewise on the referral topic.
      "ReferralCommand",       "ReferralCommandRejected",
      // Recurring exams (issue 5): care plans and each period fired.
      "CarePlanChanged",       "CarePlanOccurrence",
      // The identity log (issue 6): patient data seen in referrals and
      // bookings, and operators' link decisions.
      "PatientRecordObserved", "PatientLinkCommand"};
  CHECK(got == expected);
  // Each body field's message type agrees with Envelope.type's convention.
  const auto* body = Envelope::descriptor()->FindOneofByName("body");
  for (int i = 0; i < body->field_count(); ++i) {
    CHECK(body->field(i)->message_type()->full_name().starts_with("yilian.events.v1."));
  }
}

TEST_CASE("a dead letter keeps the claim-check of the raw bytes and says why", "[unit]") {
  Envelope e;
  e.set_type("yilian.events.v1.DeadLetter");
  auto& d = *e.mutable_dead_letter();
  d.mutable_raw()->set_uri("raw://qh-county/2025/06/01/bad.hl7");
  d.set_reason("PID-7 is not a date");
  d.set_error_code("parse_error");
  d.set_where("PID-7");
  d.set_source_hospital("qh-county");
  d.set_protocol(PROTOCOL_HL7V2_MLLP);
  std::string json;
  REQUIRE(google::protobuf::util::MessageToJsonString(e, &json).ok());
  CHECK_THAT(json, Contains("\"deadLetter\":{\"raw\":{\"uri\":\"raw://qh-county/2025/06/01/bad.hl7\"}"));
  CHECK_THAT(json, Contains("\"sourceHospital\":\"qh-county\""));
  CHECK_THAT(json, Contains("\"where\":\"PID-7\""));
}

TEST_CASE("referral and booking states cover the workflows of DESIGN.md", "[unit]") {
  const std::set<std::string> referral{"DRAFT",     "REQUESTED", "RECEIVED",        "ACCEPTED",  "REJECTED",
                                       "SCHEDULED", "ARRIVED",   "COMPLETED",       "REPORT_RETURNED",
                                       "CANCELLED", "EXPIRED",   "NO_SHOW",         "TERMINATED"};
  std::set<std::string> got;
  for (int i = 0; i < ReferralState_descriptor()->value_count(); ++i) {
    const auto* v = ReferralState_descriptor()->value(i);
    if (v->number() != 0) got.insert(v->name().substr(std::string("REFERRAL_STATE_").size()));
  }
  CHECK(got == referral);
  const std::set<std::string> booking{"REQUESTED", "HELD",      "BOOKED",    "CHECKED_IN", "PERFORMED",
                                      "REPORTED",  "CORRECTED", "CANCELLED", "NO_SHOW"};
  got.clear();
  for (int i = 0; i < BookingState_descriptor()->value_count(); ++i) {
    const auto* v = BookingState_descriptor()->value(i);
    if (v->number() != 0) got.insert(v->name().substr(std::string("BOOKING_STATE_").size()));
  }
  CHECK(got == booking);
}
