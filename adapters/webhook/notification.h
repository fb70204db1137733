// yilian::webhook notifications — what the consortium's patient notification
// channel (Consortium.patient_notifications, an SMS / WeChat gateway) receives
// for one event: the template chosen, its text filled in, and the patient's
// identifiers and contact points. Pure functions over an Envelope and the
// consortium config: no I/O, no clock, unit-tested directly.
//
// Choosing a template. An event's *status* is what a template's `when`
// matches (case-insensitively):
//   ReportIssued           status_code as sent (P, F, C, X, ...; from the
//                          status enum when empty)
//   AppointmentChanged     the booking state name: BOOKED, CANCELLED, NO_SHOW, ...
//   ReferralStateChanged   the referral state name: ACCEPTED, REJECTED, EXPIRED, ...
//   ReferralRequested      the referral state name (REQUESTED, DRAFT)
//   CarePlanOccurrence     BOOKED, or FAILED when the period could not be booked
//   CarePlanChanged        the care plan status: ACTIVE, ENDED, CANCELLED
//   anything else          "" (only a template with an empty `when` fits)
// The template with the event's body type and exactly that `when` wins; else
// the one with the body type and an empty `when`; else there is none (the
// sender dead-letters the event: it is never dropped silently).
//
// Placeholders (anything else in braces that is a lower-case name is an
// error; other text in braces is kept as written):
//   {hospital}     display name (Hospital.name) of the hospital that acted:
//                  ReportIssued performing_hospital; AppointmentChanged
//                  owning_hospital; ReferralStateChanged actor_hospital, else
//                  to_hospital; ReferralRequested actor_hospital, else
//                  from_hospital; CarePlanOccurrence the booked machine's
//                  hospital, else clinic_hospital; CarePlanChanged
//                  clinic_hospital; else Source.hospital
//   {exam}         the exam's name in the consortium catalogue
//                  (Equipment.exam_types[].name by catalogue code), else the
//                  code's display text, else the code
//   {report_id}    ReportIssued.report_id / ReferralStateChanged.report_id
//   {status}       ReportIssued: 初步报告 (P), 正式报告 (F), 更正报告 (C),
//                  已撤销 (X); other events: the same as {state}
//   {state}        the state in words: 已预约, 已取消, 未到检, 已接收, 未被接收,
//                  已过期, 已安排, ... (state_words() below); ReportIssued: as {status}
//   {start}        the appointment's start, local time in the consortium's
//                  time zone, "YYYY-MM-DD HH:MM"
//   {referral_id}  the referral id (body, else Envelope.correlation)
//   {supersedes}   ReportIssued with supersedes_event_id or status C:
//                  "取代此前发出的报告"; else empty
// A value the event does not have is the empty string.
//
// The JSON body (UTF-8, keys in this order):
//   {"event_id": "...", "type": "ReportIssued", "occurred_at": "2025-06-01T02:30:00Z",
//    "template": {"event_type": "ReportIssued", "when": "F"},
//    "text": "...", "status": "F",
//    "patient": {"enterprise_patient_id": "...",
//                "identifiers": [{"system": "...", "value": "...", "type": "RESIDENT_ID", "assigner": "..."}],
//                "telecom": [{"system": "phone", "value": "...", "use": "MOBILE"}]},
//    "hospital": {"id": "zs-tertiary", "name": "中山市人民医院"},
//    "ids": {"report_id": "...", "appointment_id": "...", "referral_id": "...",
//            "care_plan_id": "...", "supersedes_event_id": "..."}}
// Empty values are left out ("ids" keeps only the ids present; "telecom" is
// [] when the event carries no Demographics). telecom gathers the contact
// points of every Demographics inside the event's body (AppointmentChanged.patient,
// ReferralRequested.patient, CarePlanChanged.patient, ...), without repeats;
// the gateway looks the patient up by identifier when it is empty.
#pragma once

#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/error.h"
#include "engine/core/time_zone.h"
#include "yilian/config/v1/consortium.pb.h"
#include "yilian/events/v1/envelope.pb.h"

namespace yilian::webhook {

// The placeholder names, without braces.
std::span<const std::string_view> placeholder_names();

// The body message name ("ReportIssued"); empty without a body.
std::string body_type(const events::v1::Envelope& e);

// What a template's `when` is matched against (see above).
std::string event_status(const events::v1::Envelope& e);

// The words {state} / {status} use for an event's status; the status itself
// when there are none.
std::string state_words(std::string_view body_type, std::string_view status);

// The most specific template for (event type, status); nullptr when none fits.
const config::v1::NotificationTemplate* select_template(
    const google::protobuf::RepeatedPtrField<config::v1::NotificationTemplate>& templates,
    std::string_view event_type, std::string_view status);

using placeholder_values = std::map<std::string, std::string, std::less<>>;

// Replaces every {name} in `text` by values[name]. Errors: errc::config_error
// for a {name} that is not in `values` (the message names it).
result<std::string> fill(std::string_view text, const placeholder_values& values);

// The {names} in `text` that are not placeholder_names(), in order, once each.
std::vector<std::string> unknown_placeholders(std::string_view text);

struct render_context {
  // Hospital display names and the exam catalogue. Required.
  const config::v1::Consortium* consortium = nullptr;
  // {start} is written in this zone (the consortium's time_zone).
  time_zone zone;
};

// Every placeholder's value for `e` (all names present; unknown values "").
placeholder_values placeholders(const events::v1::Envelope& e, const render_context& ctx);

// The contact points of every Demographics inside the event's body.
std::vector<events::v1::ContactPoint> contact_points(const events::v1::Envelope& e);

struct notification {
  std::string template_event_type;
  std::string template_when;
  std::string status;  // event_status()
  std::string text;    // the filled template
  std::string body;    // the JSON above
};

// The patient notification for `e`. Errors (not retriable; the sender
// dead-letters): errc::config_error when no template fits or a template uses
// an unknown placeholder; errc::validation_failed when the event names no
// patient (no enterprise id, no identifier, no contact point).
result<notification> render_notification(const events::v1::Envelope& e,
                                         const config::v1::PatientNotifications& channel,
                                         const render_context& ctx);

}  // namespace yilian::webhook
