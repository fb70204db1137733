// Helpers for the booking workflow's tests: the example consortium loaded
// once, wall-clock instants in Asia/Shanghai, BookingCommand envelopes, and a
// text form of a booking_view that covers every field (for before/after
// comparisons).
//
// The dates: Monday 2025-09-29 07:00 in Shanghai is "now". The example
// consortium closes zs-ct-1 from 2025-10-01 to 2025-10-04 (National Day).
// zs-ct-1 (zs-tertiary, CT, 30% shared) works Mon-Fri 08:00-12:00 and
// 14:00-17:30 and Saturday 08:00-12:00: the clinics share 135 minutes of a
// weekday. qh-ct-1 (qh-county, a SECONDARY hospital) works 08:00-12:00 and
// 14:30-17:30 on weekdays.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "engine/config/config.h"
#include "engine/core/time_zone.h"
#include "engine/workflows/booking/ledger.h"

namespace yilian::workflows::booking::test {

namespace ev = events::v1;
using namespace std::chrono_literals;

// Concatenation by appending: g++ 12 at -O3 warns (-Wrestrict, GCC bug
// 105329) on `"literal" + std::string` chains; see docs/architecture.md.
template <class... Parts>
std::string cat(const Parts&... parts) {
  std::string s;
  ((s += parts), ...);
  return s;
}

inline std::filesystem::path source_dir() {
  if (const char* dir = std::getenv("YILIAN_SOURCE_DIR"); dir != nullptr && *dir != '\0') return dir;
  return YILIAN_SOURCE_DIR;
}

// deploy/examples/consortium, loaded once (the ledger keeps a reference to
// it and its calendars point into it, so it lives for the whole process).
inline const config::loaded_consortium& consortium() {
  static const config::loaded_consortium loaded = [] {
    auto r = config::load_consortium(source_dir() / "deploy/examples/consortium");
    if (!r) throw std::runtime_error(cat("example consortium does not load: ", r.error().describe()));
    return std::move(*r);
  }();
  return loaded;
}

// An instant from a Shanghai wall clock (UTC+8, no DST).
inline seconds sh(int y, int mo, int d, int h = 0, int mi = 0) {
  return seconds(std::chrono::seconds(days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 - 8 * 3600));
}
// Monday 2025-09-29 at h:mi in Shanghai.
inline seconds mon(int h, int mi = 0) { return sh(2025, 9, 29, h, mi); }
inline seconds tue(int h, int mi = 0) { return sh(2025, 9, 30, h, mi); }
inline const seconds test_now = mon(7);

inline std::string next_command_id() {
  static std::atomic<int> n{0};
  return cat("cmd-", std::to_string(++n));
}

// What a test asks for; defaults: dc-chc books CT-HEAD-PLAIN on zs-ct-1.
struct cmd {
  action act = ev::BOOKING_ACTION_BOOK;
  std::string booking;
  std::optional<seconds> start;
  std::string equipment = "zs-ct-1";
  std::string exam = "CT-HEAD-PLAIN";
  std::string requesting = "dc-chc";
  std::string actor_hospital = "dc-chc";
  bool op = false;
  bool engine = false;
  std::optional<seconds> end;  // BLOCK/OPEN
  std::string id;              // command id; generated when empty
  std::string reason;
};

inline ev::Envelope make_command(const cmd& c) {
  ev::Envelope e;
  const std::string id = c.id.empty() ? next_command_id() : c.id;
  e.set_event_id(cat("booking-command:", id));
  e.set_type("yilian.events.v1.BookingCommand");
  e.set_schema_version(1);
  *e.mutable_occurred_at() = to_timestamp(test_now);
  e.mutable_source()->set_protocol(ev::PROTOCOL_API);
  e.mutable_source()->set_hospital(c.actor_hospital);
  e.mutable_source()->set_principal(c.op ? "operator" : cat(c.actor_hospital, "-user"));
  e.mutable_trace()->set_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
  auto* b = e.mutable_booking_command();
  b->set_command_id(id);
  b->set_action(c.act);
  b->set_booking_id(c.booking);
  b->set_equipment_id(c.equipment);
  if (c.start) *b->mutable_start() = to_timestamp(*c.start);
  if (c.end) *b->mutable_end() = to_timestamp(*c.end);
  b->set_exam_code(c.exam);
  b->set_requesting_hospital(c.requesting);
  b->set_actor(c.engine ? "engine" : c.op ? "operator" : cat(c.actor_hospital, "-user"));
  b->set_actor_hospital(c.actor_hospital);
  b->set_actor_is_operator(c.op);
  b->set_engine(c.engine);
  b->mutable_patient()->mutable_name()->set_hanzi("测试患者");
  b->mutable_patient()->set_birth_date("1960-05-01");
  if (!c.reason.empty()) b->mutable_reason()->set_code(c.reason);
  return e;
}

inline std::string rejection_code(const ev::Envelope& d) {
  return d.has_booking_command_rejected() ? d.booking_command_rejected().code() : std::string();
}

inline std::string text_of(seconds t) { return std::to_string(t.time_since_epoch().count()); }
inline std::string text_of(const interval& i) {
  // Appends rather than operator+ chains: g++ 12 -Wrestrict false positives.
  std::string s = "[";
  s += text_of(i.start);
  s += ",";
  s += text_of(i.end);
  s += ")";
  return s;
}

// Every field of a booking, as text: equal text = equal booking.
inline std::string describe(const booking_view& b) {
  std::string s;
  auto field = [&](std::string_view v) {
    s += v;
    s += "|";
  };
  field(b.id);
  field(b.equipment_id);
  field(b.owner);
  field(b.requesting_hospital);
  field(state_name(b.st));
  field(b.exam_code);
  field(text_of(b.slot));
  field(text_of(b.hold_expires_at));
  field(b.lapsed ? "lapsed" : "-");
  field(std::to_string(b.version));
  field(text_of(b.requested_at));
  field(text_of(b.updated_at));
  field(b.patient.SerializeAsString());
  field(b.subject.SerializeAsString());
  field(b.placer_order);
  field(b.referral_id);
  field(b.booked_by);
  field(b.conflict);
  s += "history:";
  for (const auto& h : b.history) {
    s += "{";
    field(std::to_string(h.version));
    field(state_name(h.to));
    field(action_name(h.act));
    field(text_of(h.at));
    field(h.actor);
    field(text_of(h.slot));
    field(h.reason);
    s += "}";
  }
  return s;
}

}  // namespace yilian::workflows::booking::test
