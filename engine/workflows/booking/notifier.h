// yilian::workflows::booking::notifier — both sides hear about a booking
// (DESIGN.md "Workflows": the owning hospital hears SIU^S12/S13/S15/S26 or a
// FHIR Appointment; the requesting clinic hears the same).
//
// Reads the booking topic as the consumer group "yilian-booking-notify" and
// puts every accepted decision that someone must hear about on the outbound
// topic, keyed by the destination hospital, where each hospital's outbound
// channels (HL7 v2 sender, FHIR, webhook) pick it up by event type:
//
//   book, reschedule, no-show, cancel of a BOOKED booking -> requester and owner
//   check-in, perform, report, correct                    -> requester; the owner
//                                                            too when someone else did it
//   request, hold, hold expiry, cancel before booking     -> nobody (console only)
//
// The patient hears about book, reschedule, cancel and no-show on the
// consortium's patient channel when it is configured for AppointmentChanged.
//
// The record's value is the decision envelope as it is (its event_id is the
// receivers' idempotency key). It runs on workflows::relay: offsets are
// committed only after the outbound records are durable, so a crash repeats,
// never loses, a notification.
#pragma once

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "engine/bus/bus.h"
#include "engine/config/config.h"
#include "engine/core/error.h"
#include "engine/workflows/common/relay.h"
#include "yilian/events/v1/envelope.pb.h"

namespace yilian::workflows::booking {

struct notifier_options {
  std::string booking_topic = "yilian.booking.v1";
  std::string outbound_topic = "yilian.outbound.v1";
  std::string group_prefix;
  // Hospitals with an outbound endpoint that takes AppointmentChanged (or
  // "*"); nullopt = every hospital. Nobody else gets an outbound record: no
  // channel would ever deliver it.
  std::optional<std::set<std::string>> listeners;
  // The patient channel takes AppointmentChanged (workflows::patients_hear).
  bool patients = false;
};

// The hospitals of a consortium whose profiles have an outbound endpoint for
// AppointmentChanged events.
std::set<std::string> appointment_listeners(const config::loaded_consortium& cfg);

// The hospitals that must hear about a booking decision (none for events that
// are not accepted booking decisions).
std::vector<std::string> notification_targets(const events::v1::Envelope& decision);
// Whether the patient hears about a booking decision.
bool patient_hears(const events::v1::Envelope& decision);

class notifier {
 public:
  notifier(bus::bus& b, notifier_options options);
  result<void> start() { return relay_.start(); }
  void stop() { relay_.stop(); }
  std::uint64_t sent() const { return relay_.sent(); }

 private:
  notifier_options options_;
  relay relay_;
};

}  // namespace yilian::workflows::booking
