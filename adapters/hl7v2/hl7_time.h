// yilian::hl7v2 time — HL7 v2 DTM/TS values to instants, with IANA time zones
// for the values that carry no offset.
//
// HL7 v2 date/time (DTM; TS component 1 in v2.3-2.5):
//   YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]
// A value without an offset is local time of the sending hospital: its
// profile's time_zone (HospitalProfile.time_zone, default the consortium's).
// Missing parts are the start of the period ("202506" = 1 June 00:00 local).
//
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <google/protobuf/timestamp.pb.h>

#include "engine/core/error.h"
#include "engine/core/time_zone.h"

namespace yilian::hl7v2 {

using yilian::time_zone;

// How much of a DTM was given.
enum class dtm_precision : std::uint8_t { year, month, day, hour, minute, second, fraction };

// A DTM taken apart, not yet placed in a zone.
struct dtm_value {
  std::int32_t year = 0;
  std::int32_t month = 1;   // 1-12
  std::int32_t day = 1;     // 1-31
  std::int32_t hour = 0;
  std::int32_t minute = 0;
  std::int32_t second = 0;
  std::int32_t nanos = 0;
  dtm_precision precision = dtm_precision::year;
  bool has_offset = false;
  std::int32_t offset_seconds = 0;  // east of UTC, when has_offset
  bool operator==(const dtm_value&) const = default;
};

// Parses a DTM (the first component of a TS is the caller's business: pass
// only the DTM). Errors: errc::validation_failed with a message naming the
// problem ("month 13 out of range", "expected digits"), never the value
// itself; `where` is left empty for the caller to fill in.
result<dtm_value> parse_dtm(std::string_view text);

// An instant as a protobuf Timestamp holds it, as a plain value (the mapper
// keeps times this way and writes them into the events it builds in place).
struct instant {
  std::int64_t seconds = 0;
  std::int32_t nanos = 0;  // [0, 1e9)
  bool operator==(const instant&) const = default;
};

// Seconds since the Unix epoch of the wall-clock value (ignoring any offset).
std::int64_t local_seconds(const dtm_value& v);

// The instant `v` names: its own offset when it has one, else `zone`.
google::protobuf::Timestamp to_timestamp(const dtm_value& v, const time_zone& zone);

// A clock instant as a protobuf Timestamp (nanos always in [0, 1e9)).
google::protobuf::Timestamp to_timestamp(std::chrono::system_clock::time_point t);

// The same two as plain values.
instant to_instant(const dtm_value& v, const time_zone& zone);
instant to_instant(std::chrono::system_clock::time_point t);
// Writes `t` into a Timestamp (set in place, no temporary message).
inline void set_timestamp(google::protobuf::Timestamp& out, instant t) {
  out.set_seconds(t.seconds);
  out.set_nanos(t.nanos);
}

// parse_dtm + to_timestamp.
result<google::protobuf::Timestamp> parse_timestamp(std::string_view text, const time_zone& zone);

// "YYYY-MM-DD" / "YYYY-MM" / "YYYY" from a DTM, for dates without a time of
// day (birth dates): the date as written, whatever time or offset follows.
result<std::string> dtm_date(std::string_view text);

}  // namespace yilian::hl7v2
