// Fuzz target: yilian::app::parse_envelope_json (untrusted: bodies of the REST
// publish endpoint and `yilian events publish` input).
//
// Invariants checked, beyond "does not crash":
//  - nothing throws;
//  - an error has code parse_error or validation_failed, a non-empty message
//    and names where (body / the field);
//  - an accepted envelope has event_id, type and recorded_at, and a set body
//    is the one `type` names;
//  - JSON round trip: the envelope printed as protobuf JSON is accepted again
//    and equal (compared as deterministic binary, so NaN == NaN);
//  - bus round trip: envelope_message()'s value parses back (as a consumer
//    would) into an equal envelope, and its headers carry event_id and type.
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <string_view>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/util/json_util.h>

#include "engine/app/envelope_json.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using yilian::errc;
using yilian::events::v1::Envelope;
using yilian::fuzz::printable;

std::string deterministic_bytes(const Envelope& e) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    FUZZ_CHECK(e.SerializeToCodedStream(&coded)) << e.ShortDebugString();
  }
  return out;
}

void run(std::string_view input) {
  auto parsed = yilian::app::parse_envelope_json(input);
  if (!parsed) {
    const auto& err = parsed.error();
    FUZZ_CHECK(err.code == errc::parse_error || err.code == errc::validation_failed)
        << err.describe() << printable(input);
    FUZZ_CHECK(!err.message.empty()) << printable(input);
    FUZZ_CHECK(!err.where.empty()) << err.describe() << printable(input);
    FUZZ_CHECK(!err.retriable) << err.describe();
    return;
  }
  const Envelope& env = *parsed;
  FUZZ_CHECK(!env.event_id().empty()) << printable(input);
  FUZZ_CHECK(!env.type().empty()) << printable(input);
  FUZZ_CHECK(env.has_recorded_at()) << printable(input);
  const auto* body = env.GetReflection()->GetOneofFieldDescriptor(env, Envelope::descriptor()->FindOneofByName("body"));
  if (body != nullptr) {
    FUZZ_CHECK(env.type() == body->message_type()->full_name()) << env.type() << printable(input);
  }
  const std::string bytes = deterministic_bytes(env);

  // JSON round trip.
  std::string json;
  google::protobuf::util::JsonPrintOptions print;
  const auto st = google::protobuf::util::MessageToJsonString(env, &json, print);
  FUZZ_CHECK(st.ok()) << "an accepted envelope cannot be printed as JSON: " << st.ToString() << printable(input);
  auto again = yilian::app::parse_envelope_json(json);
  FUZZ_CHECK(again.has_value()) << "printed JSON is not accepted again: " << again.error().describe()
                                << " json: " << printable(json, 2000) << " input: " << printable(input);
  FUZZ_CHECK(deterministic_bytes(*again) == bytes)
      << "JSON round trip differs: " << env.ShortDebugString() << " vs " << again->ShortDebugString()
      << " input: " << printable(input);

  // Bus round trip: what a consumer reads is what was accepted.
  const auto msg = yilian::app::envelope_message("yilian.patient.v1", "key", env);
  Envelope consumed;
  FUZZ_CHECK(consumed.ParseFromString(msg.value))
      << "the published record does not parse as an Envelope: " << env.ShortDebugString()
      << " input: " << printable(input);
  FUZZ_CHECK(deterministic_bytes(consumed) == bytes)
      << "bus round trip differs: " << env.ShortDebugString() << " vs " << consumed.ShortDebugString();
  bool has_id = false;
  bool has_type = false;
  for (const auto& h : msg.headers) {
    if (h.key == "event_id") has_id = h.value == env.event_id();
    if (h.key == "type") has_type = h.value == env.type();
  }
  FUZZ_CHECK(has_id && has_type) << "record headers lack event_id/type" << printable(input);
}

}  // namespace

YILIAN_FUZZ_ENTRY(run)
