// Reading an Envelope's head without decoding it: the event id, the type and
// the source hospital are the first fields a serialized Envelope carries
// (fields 1, 2 and 6; protobuf writes fields in number order), so a consumer
// that only routes, lists or filters by type reads a few dozen bytes instead
// of parsing and allocating the whole event. Every engine consumer reads
// every record of its topics (a feed following the patient topic sees all
// ADT traffic), so this is where most of their per-record cost went.
//
// The views point into the record's bytes. Fields written out of order (a
// foreign encoder may) are still found: the scan walks the top-level fields
// until it has what was asked for. A field that occurs twice (legal, never
// written by protobuf's serializers) is read at its first occurrence, where a
// full parse would keep the last.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace yilian::workflows {

struct envelope_head {
  std::string_view event_id;
  std::string_view type;             // "yilian.events.v1.ReportIssued"
  std::string_view source_hospital;  // empty when asked not to read it
};

// nullopt when `bytes` is not a well-formed protobuf message (truncated
// varint or length, a group, a length past the end) in the part scanned.
std::optional<envelope_head> peek_envelope(std::string_view bytes, bool with_source_hospital = true);

// The type alone (empty when absent or malformed): stops at field 2.
std::string_view peek_type(std::string_view bytes);

// Top-level fields of any serialized message, read without decoding it
// (a consumer that acts on few of the records it reads looks at the one or
// two fields that decide, e.g. an AppointmentChanged's referral id inside an
// Envelope's body, and parses only what it acts on). For each number in
// `numbers`, `out` (same size) gets the field's first occurrence: its bytes
// when length-delimited (a string, bytes, a message), its value when a
// varint; fields not there stay `present` false. The scan stops once all
// asked for are found. false when `message` is malformed in the part scanned.
struct peeked_field {
  bool present = false;
  std::string_view bytes;   // wire type 2
  std::uint64_t value = 0;  // wire type 0
};
bool peek_fields(std::string_view message, std::span<const std::uint32_t> numbers, std::span<peeked_field> out);

// The body message of a serialized Envelope: the bytes of its field
// `body_field` (ev::Envelope::kAppointmentChangedFieldNumber, ...); nullopt
// when it is not that body or the bytes are malformed.
std::optional<std::string_view> peek_body(std::string_view envelope, std::uint32_t body_field);

// The Envelope.type of body message Body ("yilian.events.v1.ReportIssued").
template <class Body>
const std::string& type_of() {
  return Body::descriptor()->full_name();
}

}  // namespace yilian::workflows
