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

#include <optional>
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

// The Envelope.type of body message Body ("yilian.events.v1.ReportIssued").
template <class Body>
const std::string& type_of() {
  return Body::descriptor()->full_name();
}

}  // namespace yilian::workflows
