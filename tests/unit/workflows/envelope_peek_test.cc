// engine/workflows/common/envelope_peek: the head of a serialized Envelope
// read without decoding it must say what a full parse says.
#include <catch2/catch.hpp>

#include <string>

#include "engine/workflows/common/envelope_peek.h"
#include "yilian/events/v1/envelope.pb.h"

namespace {

namespace ev = yilian::events::v1;
using yilian::workflows::peek_envelope;
using yilian::workflows::peek_type;
using yilian::workflows::type_of;

ev::Envelope a_report() {
  ev::Envelope e;
  e.set_event_id("3f1c9a");
  e.set_type(type_of<ev::ReportIssued>());
  e.set_schema_version(1);
  e.mutable_occurred_at()->set_seconds(1767576600);
  e.mutable_recorded_at()->set_seconds(1767576601);
  e.mutable_source()->set_hospital("zs-tertiary");
  e.mutable_source()->set_system("RIS");
  e.mutable_source()->set_control_id("MSG0001");
  auto* id = e.mutable_subject()->add_identifiers();
  id->set_system("urn:yilian:id:zs-tertiary:mrn");
  id->set_value("L0001");
  auto* r = e.mutable_report_issued();
  r->set_report_id("F0001");
  r->set_performing_hospital("zs-tertiary");
  return e;
}

// Appends a length-delimited field (wire type 2) by hand.
void put_bytes(std::string& out, unsigned field, const std::string& bytes) {
  out.push_back(static_cast<char>((field << 3U) | 2U));
  out.push_back(static_cast<char>(bytes.size()));
  out += bytes;
}

}  // namespace

TEST_CASE("the head of a serialized envelope says what a full parse says", "[unit]") {
  const auto e = a_report();
  const auto bytes = e.SerializeAsString();
  const auto head = peek_envelope(bytes);
  REQUIRE(head.has_value());
  CHECK(head->event_id == "3f1c9a");
  CHECK(head->type == "yilian.events.v1.ReportIssued");
  CHECK(head->source_hospital == "zs-tertiary");
  CHECK(peek_type(bytes) == "yilian.events.v1.ReportIssued");
  CHECK(type_of<ev::ReportIssued>() == e.type());

  SECTION("without the source hospital the scan stops after the type") {
    const auto short_head = peek_envelope(bytes, false);
    REQUIRE(short_head.has_value());
    CHECK(short_head->type == "yilian.events.v1.ReportIssued");
    CHECK(short_head->source_hospital.empty());
  }
}

TEST_CASE("fields written out of order are still found", "[unit]") {
  ev::Source source;
  source.set_hospital("nh-chc");
  std::string bytes;
  put_bytes(bytes, 6, source.SerializeAsString());
  put_bytes(bytes, 2, "yilian.events.v1.PatientRegistered");
  put_bytes(bytes, 1, "id-7");
  ev::Envelope parsed;
  REQUIRE(parsed.ParseFromString(bytes));
  const auto head = peek_envelope(bytes);
  REQUIRE(head.has_value());
  CHECK(head->event_id == parsed.event_id());
  CHECK(head->type == parsed.type());
  CHECK(head->source_hospital == parsed.source().hospital());
}

TEST_CASE("an envelope without a type or source peeks as empty, not as an error", "[unit]") {
  ev::Envelope e;
  e.set_event_id("only-an-id");
  const auto bytes = e.SerializeAsString();  // the head's views point into it
  const auto head = peek_envelope(bytes);
  REQUIRE(head.has_value());
  CHECK(head->event_id == "only-an-id");
  CHECK(head->type.empty());
  CHECK(head->source_hospital.empty());
  CHECK(peek_type(bytes).empty());
  CHECK(peek_envelope("").has_value());
}

TEST_CASE("bytes that are not a protobuf message are refused wherever they break", "[unit]") {
  const auto bytes = a_report().SerializeAsString();
  SECTION("truncated inside the type") {
    const std::string cut = bytes.substr(0, 12);
    CHECK_FALSE(peek_envelope(cut).has_value());
    CHECK(peek_type(cut).empty());
  }
  SECTION("a length running past the end") {
    std::string bad;
    bad.push_back(static_cast<char>((2U << 3U) | 2U));
    bad.push_back(100);
    bad += "short";
    CHECK_FALSE(peek_envelope(bad).has_value());
  }
  SECTION("JSON") { CHECK_FALSE(peek_envelope(R"({"eventId":"x"})").has_value()); }
  SECTION("a field number of zero") { CHECK_FALSE(peek_envelope(std::string("\x02\x01x", 3)).has_value()); }
  SECTION("a varint that never ends") {
    CHECK_FALSE(peek_envelope(std::string(12, static_cast<char>(0xff))).has_value());
  }
}

TEST_CASE("fields of a body read without decoding say what a full parse says", "[unit]") {
  using yilian::workflows::peek_body;
  using yilian::workflows::peek_fields;
  using yilian::workflows::peeked_field;
  ev::Envelope e = a_report();
  e.set_type(type_of<ev::AppointmentChanged>());
  auto* a = e.mutable_appointment_changed();
  a->set_appointment_id("bk-1");
  a->set_version(300);  // a varint of two bytes
  a->set_requesting_hospital("nh-chc");
  a->mutable_patient()->set_birth_date("1960-01-02");
  const auto bytes = e.SerializeAsString();

  const auto body = peek_body(bytes, ev::Envelope::kAppointmentChangedFieldNumber);
  REQUIRE(body.has_value());
  CHECK(*body == a->SerializeAsString());
  CHECK_FALSE(peek_body(bytes, ev::Envelope::kReportIssuedFieldNumber).has_value());  // another body

  const std::uint32_t numbers[] = {ev::AppointmentChanged::kVersionFieldNumber,
                                   ev::AppointmentChanged::kRequestingHospitalFieldNumber,
                                   ev::AppointmentChanged::kReferralIdFieldNumber,
                                   ev::AppointmentChanged::kPatientFieldNumber};
  peeked_field f[4];
  REQUIRE(peek_fields(*body, numbers, f));
  CHECK(f[0].present);
  CHECK(f[0].value == 300);
  CHECK(f[1].bytes == "nh-chc");
  CHECK_FALSE(f[2].present);  // not set: not written
  CHECK(f[2].bytes.empty());
  CHECK(f[3].bytes == a->patient().SerializeAsString());

  SECTION("an empty message that is set is present with no bytes") {
    a->mutable_patient()->Clear();
    const auto again = e.SerializeAsString();
    const auto b = peek_body(again, ev::Envelope::kAppointmentChangedFieldNumber);
    REQUIRE(b.has_value());
    REQUIRE(peek_fields(*b, numbers, f));
    CHECK(f[3].present);
    CHECK(f[3].bytes.empty());
  }
  SECTION("malformed bytes are refused") {
    CHECK_FALSE(peek_body(bytes.substr(0, bytes.size() - 3), ev::Envelope::kAppointmentChangedFieldNumber));
    CHECK_FALSE(peek_fields(body->substr(0, body->size() - 1), numbers, f));
  }
}

TEST_CASE("a field written twice is read at its first occurrence by every peek", "[unit]") {
  ev::Source first, second;
  first.set_hospital("h-first");
  second.set_hospital("h-second");
  std::string bytes;
  put_bytes(bytes, 1, "id-first");
  put_bytes(bytes, 2, "type.First");
  put_bytes(bytes, 1, "id-second");
  put_bytes(bytes, 2, "type.Second");
  put_bytes(bytes, 6, first.SerializeAsString());
  put_bytes(bytes, 6, second.SerializeAsString());
  const auto head = peek_envelope(bytes);
  REQUIRE(head.has_value());
  CHECK(head->event_id == "id-first");
  CHECK(head->type == "type.First");
  CHECK(head->source_hospital == "h-first");
  CHECK(peek_type(bytes) == head->type);
}
