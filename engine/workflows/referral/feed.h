// yilian::workflows::referral::feed — what hospitals report about referrals,
// and what the engine sees happen to the patient, turned into commands for
// the referral workflow's single writer (adapters only translate protocols;
// deciding stays with the workflow).
//
// Reads, as the consumer group "yilian-referral-feed":
//
//   yilian.referral.v1  ReferralRequested from a hospital (REF^I12, FHIR
//                       ServiceRequest) -> CREATE; ReferralStateChanged
//                       (REF^I13/I14, RRI^I12-I15 RF1-1 / MSA) -> MODIFY,
//                       CANCEL, RECEIVE, ACCEPT, REJECT, EXPIRE, ...
//   yilian.booking.v1   the booking workflow's decisions for a booking that
//                       serves a referral (BookingCommand.referral_id):
//                       book/reschedule -> SCHEDULE, check-in -> ARRIVE,
//                       perform -> COMPLETE, no-show -> NO_SHOW; and the
//                       receiving hospital's own SIU naming the referral
//                       (RF1-6 or the profile's location): S12/S13 ->
//                       SCHEDULE, S26 -> NO_SHOW
//   yilian.patient.v1   EncounterEvent at the hospital referred to: A01/A04
//                       -> ARRIVE, A03 -> COMPLETE (by the referral id it
//                       names, else the patient's open referral there)
//   yilian.report.v1    ReportIssued by the hospital referred to ->
//                       RETURN_REPORT (the report router sends it back)
//
// ReferralRequested may also come from an order the sender's profile marks as
// a referral (OMG^O19 / ORM^O01 ORC-1 NW, quirk referred_to; ORC-1 CA is a
// ReferralStateChanged CANCELLED): the same CREATE / CANCEL.
//
// Commands from hospitals carry actor "hl7:<hospital>" and the hospital as
// actor_hospital, so the transition table applies as for any caller (a
// clinic's RRI cannot accept its own referral); what the engine observes
// (bookings, encounters, reports) carries the engine party. A command made
// from a hospital's HL7 v2 message carries its origin (hospital, MSH-3/4,
// MSH-9, MSH-10), so a refusal can be answered (notifier.h); the engine's
// own commands never do. Command ids
// derive from the event id, so a replayed event is decided once. Offsets
// are committed after the commands are durable.
#pragma once

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "engine/bus/bus.h"
#include "engine/workflows/referral/service.h"

namespace yilian::workflows::referral {

struct feed_options {
  std::string referral_topic = "yilian.referral.v1";
  std::string booking_topic = "yilian.booking.v1";
  std::string patient_topic = "yilian.patient.v1";
  std::string report_topic = "yilian.report.v1";
  std::string group_prefix;
};

class feed {
 public:
  feed(bus::bus& b, service& svc, feed_options options) : bus_(b), svc_(svc), options_(std::move(options)) {}
  ~feed() { stop(); }
  feed(const feed&) = delete;
  feed& operator=(const feed&) = delete;

  result<void> start();
  void stop();
  std::uint64_t commands() const { return commands_.load(); }

  // The commands one event leads to, given the ledger (exposed for tests).
  std::vector<ev::Envelope> commands_for(const ev::Envelope& event, const ledger& l) const;

 private:
  void run();
  result<void> handle(const ev::Envelope& event);
  // Whether handle() can act on an event of this Envelope.type.
  static bool acted_on(std::string_view type);
  // Whether a booking decision (its serialized Envelope) is for a booking
  // that serves a referral: one it names, or one a referral knows by id.
  // Read without decoding it, as most bookings serve none.
  bool serves_referral(std::string_view decision) const;

  bus::bus& bus_;
  service& svc_;
  feed_options options_;
  std::unique_ptr<bus::consumer> consumer_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::uint64_t> commands_{0};
};

}  // namespace yilian::workflows::referral
