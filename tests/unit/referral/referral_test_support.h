// Helpers for the referral workflow's tests: the example consortium loaded
// once, wall-clock instants in Asia/Shanghai, ReferralCommand envelopes, and
// a text form of a referral_view that covers every field (for before/after
// comparisons).
//
// The example consortium: zs-tertiary (TERTIARY), qh-county (SECONDARY),
// dc-chc, xz-thc, nh-chc (PRIMARY). "Now" is Monday 2025-09-29 09:00 in
// Shanghai. Patients are named by identifiers only (no names, ids in logs).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <catch2/catch.hpp>

#include "engine/config/config.h"
#include "engine/core/time_zone.h"
#include "engine/workflows/referral/ledger.h"
#include "engine/workflows/referral/service.h"

namespace yilian::workflows::referral::test {

namespace ev = events::v1;
using namespace std::chrono_literals;

// Concatenation by appending: g++ 12 at -O3 warns (-Wrestrict, GCC bug
// 105329) on `"literal" + std::string` chains.
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

// deploy/examples/consortium, loaded once (the ledger keeps a reference).
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
inline const seconds test_now = sh(2025, 9, 29, 9);

inline std::string next_command_id() {
  static std::atomic<int> n{0};
  return cat("rc-", std::to_string(++n));
}

// The patient of most tests: a resident id and dc-chc's MRN.
inline ev::Identifier resident(std::string value) {
  ev::Identifier i;
  i.set_system("urn:yilian:id:cn:resident");
  i.set_value(std::move(value));
  i.set_type(ev::IDENTIFIER_TYPE_RESIDENT_ID);
  return i;
}
inline ev::Identifier mrn(std::string hospital, std::string value) {
  ev::Identifier i;
  i.set_system(cat("urn:yilian:id:", hospital, ":mrn"));
  i.set_value(std::move(value));
  i.set_type(ev::IDENTIFIER_TYPE_MRN);
  i.set_assigner(std::move(hospital));
  return i;
}

// What a test asks for; defaults: dc-chc refers its patient up to zs-tertiary.
struct cmd {
  action act = ev::REFERRAL_ACTION_CREATE;
  std::string referral;
  std::string actor_hospital = "dc-chc";
  bool op = false;
  bool engine = false;
  std::string id;  // command id; generated when empty
  // CREATE / MODIFY
  std::string from = "dc-chc";
  std::string to = "zs-tertiary";
  bool draft = false;
  std::string linked;
  std::optional<seconds> expires_at;  // RF1-8
  std::string summary = "chest pain, suspected ACS";
  std::vector<ev::Identifier> patient{resident("110101196005010011"), mrn("dc-chc", "DC-0001")};
  ev::ReferralDirection direction = ev::REFERRAL_DIRECTION_UNSPECIFIED;
  // transitions
  std::string reason;       // reason code
  std::string reason_text;
  std::string booking;
  std::string appointment;
  std::optional<seconds> appointment_start;
  std::string encounter;
  std::string report;
  std::string external_id;  // ACCEPT: RF1-11 of the receiver's RRI
  std::string source_status;
};

inline ev::ReferralCommand make_referral_command(const cmd& c) {
  ev::ReferralCommand r;
  r.set_command_id(c.id.empty() ? next_command_id() : c.id);
  r.set_action(c.act);
  r.set_referral_id(c.referral);
  r.set_actor(c.engine ? "engine" : c.op ? "operator" : cat(c.actor_hospital, "-user"));
  r.set_actor_hospital(c.actor_hospital);
  r.set_actor_is_operator(c.op);
  r.set_engine(c.engine);
  if (c.act == ev::REFERRAL_ACTION_CREATE || c.act == ev::REFERRAL_ACTION_MODIFY) {
    auto* q = r.mutable_request();
    q->set_referral_id(c.referral);
    q->set_from_hospital(c.from);
    q->set_to_hospital(c.to);
    q->set_state(c.draft ? ev::REFERRAL_STATE_DRAFT : ev::REFERRAL_STATE_REQUESTED);
    q->set_direction(c.direction);
    q->set_linked_referral_id(c.linked);
    q->set_clinical_summary(c.summary);
    q->set_priority(ev::PRIORITY_URGENT);
    q->mutable_referral_type()->set_code("CARD");
    q->mutable_patient()->set_birth_date("1960-05-01");
    if (c.expires_at) *q->mutable_expires_at() = to_timestamp(*c.expires_at);
  }
  if (!c.reason.empty()) r.mutable_reason()->set_code(c.reason);
  r.set_reason_text(c.reason_text);
  r.set_booking_id(c.booking);
  r.set_appointment_id(c.appointment);
  if (c.appointment_start) *r.mutable_appointment_start() = to_timestamp(*c.appointment_start);
  r.set_encounter_id(c.encounter);
  r.set_report_id(c.report);
  r.set_external_referral_id(c.external_id);
  r.set_source_status(c.source_status);
  return r;
}

inline ev::Envelope make_command(const cmd& c, seconds at = test_now) {
  auto e = command_envelope(make_referral_command(c), at, c.engine ? ev::PROTOCOL_ENGINE : ev::PROTOCOL_API);
  e.mutable_trace()->set_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
  if (c.act == ev::REFERRAL_ACTION_CREATE || c.act == ev::REFERRAL_ACTION_MODIFY) {
    for (const auto& i : c.patient) *e.mutable_subject()->add_identifiers() = i;
  }
  return e;
}

inline std::string rejection_code(const ev::Envelope& d) {
  return d.has_referral_command_rejected() ? d.referral_command_rejected().code() : std::string();
}

inline std::string command_id_of(const ev::Envelope& d) {
  if (d.has_referral_requested()) return d.referral_requested().command_id();
  if (d.has_referral_state_changed()) return d.referral_state_changed().command_id();
  return d.referral_command_rejected().command_id();
}

inline std::string text_of(seconds t) { return std::to_string(t.time_since_epoch().count()); }

// Every field of a referral, as text: equal text = equal referral.
inline std::string describe(const referral_view& r) {
  std::string s;
  auto field = [&](std::string_view v) {
    s += v;
    s += "|";
  };
  field(r.id);
  field(ev::ReferralDirection_Name(r.direction));
  field(state_name(r.st));
  field(std::to_string(r.version));
  field(r.from_hospital);
  field(r.to_hospital);
  field(r.request.ShortDebugString());
  field(r.subject.ShortDebugString());
  field(text_of(r.created_at));
  field(text_of(r.updated_at));
  field(text_of(r.expires_at));
  field(r.external_id);
  field(r.linked_referral_id);
  s += "followed_by:";
  for (const auto& f : r.followed_by) field(f);
  field(r.booking_id);
  field(r.appointment_id);
  field(text_of(r.appointment_start));
  field(r.encounter_id);
  s += "reports:";
  for (const auto& f : r.report_ids) field(f);
  s += "history:";
  for (const auto& h : r.history) {
    s += "{";
    field(std::to_string(h.version));
    field(state_name(h.from));
    field(state_name(h.to));
    field(action_name(h.act));
    field(text_of(h.at));
    field(h.actor);
    field(h.actor_hospital);
    field(h.reason);
    field(h.detail);
    field(h.event_id);
    s += "}";
  }
  return s;
}

}  // namespace yilian::workflows::referral::test

// Instants print relative to the tests' "now" in failed checks.
template <>
struct Catch::StringMaker<yilian::workflows::seconds> {
  static std::string convert(yilian::workflows::seconds t) {
    using yilian::workflows::referral::test::test_now;
    if (t == yilian::workflows::seconds{}) return "(none)";
    const auto d = (t - test_now).count();
    std::string s = "now";
    s += d < 0 ? "-" : "+";
    s += std::to_string((d < 0 ? -d : d) / 3600);
    s += "h";
    if (d % 3600 != 0) {
      s += std::to_string((d < 0 ? -d : d) % 3600);
      s += "s";
    }
    return s;
  }
};
