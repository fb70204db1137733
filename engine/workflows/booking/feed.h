// yilian::workflows::booking::feed — what hospitals' own systems report about
// bookings, turned into commands for the single writer (the adapters only
// translate protocols; deciding stays with the workflow).
//
// Reads the booking, patient and report topics as the consumer group
// "yilian-booking-feed":
//
//   AppointmentChanged from the owner's RIS/HIS (SIU S12-S15/S26, FHIR
//     Appointment), SCH-1 / correlation = a booking id -> reschedule (new
//     start), check-in (SCH-25 Started/Arrived), perform (Complete), cancel,
//     no-show
//   EncounterEvent A04 at the owner -> check-in of the booking it names
//     (appointment id), else of the patient's booking at the owner today
//     (shared identifier)
//   OrderStatusChanged at the owner (ORC-5 IP -> check-in, CM -> perform,
//     CA/DC -> cancel), the order number naming the booking
//   OrderPlaced (OMI^O23, ORM^O01 NW, FHIR ServiceRequest) from a hospital for
//     an exam shared equipment does -> book the requested machine and time,
//     or the earliest free slot (the requested machine, else any machine
//     doing the exam), trying the next slot when one is taken meanwhile
//   ReportIssued at the owner for a booking's order -> report (F) / correct (C)
//
// Commands carry actor "hl7:<hospital>" (or "fhir:...") and the source
// hospital as actor_hospital, so the transition table applies as for any
// other caller: a clinic's feed cannot check a patient in at a tertiary
// hospital. Command ids derive from the event id, so a replayed event is
// decided once. Offsets are committed after the commands are durable.
#pragma once

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "engine/bus/bus.h"
#include "engine/workflows/booking/service.h"

namespace yilian::workflows::booking {

struct feed_options {
  std::string booking_topic = "yilian.booking.v1";
  std::string patient_topic = "yilian.patient.v1";
  std::string report_topic = "yilian.report.v1";
  std::string group_prefix;
  std::size_t max_slot_attempts = 8;  // OrderPlaced: slots tried before giving up
  std::chrono::days search_days{28};  // how far ahead OrderPlaced looks for a slot
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
  // OrderPlaced is handled separately (it searches and retries).
  std::vector<ev::Envelope> commands_for(const ev::Envelope& event, const ledger& l) const;

 private:
  void run();
  result<void> handle(const ev::Envelope& event);
  // Whether handle() can act on an event of this Envelope.type.
  static bool acted_on(std::string_view type);
  result<void> book_order(const ev::Envelope& event);
  result<void> send_and_wait(const ev::Envelope& command);
  result<decision> decide(const ev::Envelope& command);

  bus::bus& bus_;
  service& svc_;
  feed_options options_;
  std::unique_ptr<bus::consumer> consumer_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::uint64_t> commands_{0};
};

}  // namespace yilian::workflows::booking
