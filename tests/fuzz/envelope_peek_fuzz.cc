// Fuzz target: a bus record's value (untrusted: on Kafka anyone allowed to
// write a topic can put any bytes there) through the readers that look into
// a serialized Envelope without decoding it, engine/workflows/common/
// envelope_peek (peek_envelope, peek_type, peek_fields, peek_body), as the
// workflows' consumers do for every record they read.
//
// Invariants checked, beyond "does not crash" (and no sanitizer report):
//  - every view they return lies inside the bytes they were given;
//  - peek_type agrees with peek_envelope's type whenever the latter succeeds;
//  - peek_body succeeds exactly when peek_fields finds that field, with the
//    same bytes;
//  - on the canonical form of what protobuf parses from the input (known
//    fields only, serialized deterministically) they say what the parse
//    says: event id, type, source hospital; which body is set and its bytes;
//    in an AppointmentChanged body, version, requesting hospital, referral
//    id and whether demographics are set (peeking reads a field's first
//    occurrence where protobuf keeps its last, and refuses groups, so the raw
//    input is not compared).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include "engine/workflows/common/envelope_peek.h"
#include "tests/fuzz/fuzz_check.h"
#include "yilian/events/v1/envelope.pb.h"

namespace {

namespace ev = yilian::events::v1;
namespace wf = yilian::workflows;
using yilian::fuzz::printable;

bool inside(std::string_view part, std::string_view whole) {
  return part.empty() || (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

std::string deterministic(const google::protobuf::MessageLite& m) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    m.SerializeToCodedStream(&coded);
  }
  return out;
}

// What holds for any bytes.
void check_any(std::string_view bytes) {
  const auto head = wf::peek_envelope(bytes);
  const auto type = wf::peek_type(bytes);
  FUZZ_CHECK(inside(type, bytes));
  if (head) {
    FUZZ_CHECK(inside(head->event_id, bytes) && inside(head->type, bytes) && inside(head->source_hospital, bytes));
    FUZZ_CHECK(type == head->type) << printable(bytes);
  }
  static constexpr std::uint32_t kNumbers[] = {1, 2, 6, ev::Envelope::kAppointmentChangedFieldNumber,
                                               ev::Envelope::kReportIssuedFieldNumber, 1000};
  wf::peeked_field f[std::size(kNumbers)];
  const bool ok = wf::peek_fields(bytes, kNumbers, f);
  for (const auto& x : f) FUZZ_CHECK(inside(x.bytes, bytes));
  const auto body = wf::peek_body(bytes, ev::Envelope::kAppointmentChangedFieldNumber);
  if (body) FUZZ_CHECK(inside(*body, bytes));
  // peek_body is peek_fields of one number: the same answer whenever the
  // scan for it alone and the scan for all six stop at the same place.
  if (ok && f[3].present) FUZZ_CHECK(body && *body == f[3].bytes) << printable(bytes);
  if (body) {
    wf::peeked_field inner[4];
    static constexpr std::uint32_t kInner[] = {1, 9, 22, 24};
    (void)wf::peek_fields(*body, kInner, inner);
    for (const auto& x : inner) FUZZ_CHECK(inside(x.bytes, *body));
  }
}

// What holds for bytes protobuf itself wrote.
void check_canonical(const ev::Envelope& e) {
  const std::string bytes = deterministic(e);
  const auto head = wf::peek_envelope(bytes);
  FUZZ_CHECK(head.has_value()) << printable(bytes);
  FUZZ_CHECK(head->event_id == e.event_id() && head->type == e.type()) << printable(bytes);
  FUZZ_CHECK(head->source_hospital == e.source().hospital()) << printable(bytes);
  FUZZ_CHECK(wf::peek_type(bytes) == e.type());
  const auto body = wf::peek_body(bytes, ev::Envelope::kAppointmentChangedFieldNumber);
  FUZZ_CHECK(body.has_value() == e.has_appointment_changed()) << printable(bytes);
  FUZZ_CHECK(wf::peek_body(bytes, ev::Envelope::kReportIssuedFieldNumber).has_value() == e.has_report_issued());
  if (!body) return;
  const auto& a = e.appointment_changed();
  FUZZ_CHECK(*body == deterministic(a)) << printable(bytes);
  static constexpr std::uint32_t kFields[] = {
      ev::AppointmentChanged::kVersionFieldNumber, ev::AppointmentChanged::kRequestingHospitalFieldNumber,
      ev::AppointmentChanged::kReferralIdFieldNumber, ev::AppointmentChanged::kPatientFieldNumber};
  wf::peeked_field f[4];
  FUZZ_CHECK(wf::peek_fields(*body, kFields, f)) << printable(bytes);
  FUZZ_CHECK(f[0].value == a.version() && f[0].present == (a.version() != 0)) << printable(bytes);
  FUZZ_CHECK(f[1].bytes == a.requesting_hospital() && f[2].bytes == a.referral_id()) << printable(bytes);
  FUZZ_CHECK(f[3].present == a.has_patient()) << printable(bytes);
  if (a.has_patient()) FUZZ_CHECK(f[3].bytes == deterministic(a.patient()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  check_any(bytes);
  ev::Envelope e;
  if (e.ParseFromArray(data, static_cast<int>(size))) {
    e.DiscardUnknownFields();
    check_canonical(e);
  }
  return 0;
}
