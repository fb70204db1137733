// yilian::hl7v2::mapper — turns one parsed HL7 v2 message into the yilian
// events it means, through the sending hospital's profile (identifier
// authorities, code maps, facility and resource ids, quirks, time zone).
//
// A mapper is a profile compiled once into hash tables; it is immutable and
// may be shared by every session and thread (copying one copies a pointer).
// map() does no I/O, takes no locks and never logs: it is a pure function of
// the message, the claim-check of its raw bytes and the recording time, so
// replaying a message gives the same events (same event ids).
//
// What each message becomes (issue 3 item 4; field by field, the source of
// every value is the comment on its proto field in schemas/yilian/events/v1):
//
//   ADT^A01/A04/A28 -> PatientRegistered, ADT^A08/A31 -> PatientUpdated
//       (+ EncounterEvent for A01/A04/A08 when PV1 has a visit number PV1-19
//       or a patient class PV1-2 other than "N"; A28/A31 are about the
//       person, never a visit). topic patient, key = first identifier.
//   ADT^A40 -> PatientIdentifiersMerged, one per PID/MRG pair (surviving =
//       PID-3, retired = MRG-1). topic patient.
//   ORM^O01, OMG^O19, OMI^O23 -> one event per ORC group: OrderPlaced for
//       ORC-1 NW, OrderStatusChanged otherwise. The group's first OBR is the
//       order (later OBRs of an OMG group are prior results and ignored).
//       topic booking (key equipment id) when the order names a machine the
//       consortium knows (quirk equipment_id, AIG-3, OBR-21, IPC-9 AE title,
//       IPC-7 station; through resource_ids, equipment ids and AE titles),
//       else referral (key referral id: quirk referral_id or RF1-6), else
//       report (key accession, else placer order, else filler order).
//   SIU^S12/S13/S14/S15/S17/S26 -> AppointmentChanged; SIU^S23/S24 ->
//       SlotAvailabilityChanged. topic booking, key equipment id; the
//       equipment must resolve (quirk equipment_id, any AIG-3, any AIL-3),
//       else validation_failed at AIG-3.
//   ORU^R01 -> ReportIssued per OBR. topic report, key accession, else placer
//       order, else report id. OBX of type ED/RP are not copied: they become
//       claim-checks "<raw_ref.uri>#OBX[<n>]-5" (n = the OBX's occurrence in
//       the message) with the SHA-256 and size of the decoded document, in
//       both the observation and ReportIssued.documents.
//   REF^I12 -> ReferralRequested; REF^I13/I14, RRI^I12-I15 ->
//       ReferralStateChanged. topic referral, key RF1-6 (required).
//   Anything else -> errc::unsupported (where MSH-9.1 for the message code,
//       MSH-9.2 for the trigger, MSH-12 for versions outside 2.3-2.8).
//
// Envelope: event_id = lowercase hex SHA-256 of
// "<source.hospital>|hl7v2|<MSH-4.1>|<MSH-10>|<event_index>" (a resent message
// gives the same ids); type "yilian.events.v1.<Body>"; schema_version 1;
// occurred_at = EVN-6 (event occurred), else EVN-2, else MSH-7 for ADT, MSH-7
// for the rest; source.message_type = MSH-9 components joined with '^'.
//
// Identifiers (PID-3, MRG-1, every repetition): matched on (CX-4.1, CX-5)
// exactly against the profile's identifier_authorities, then against the
// other profiles of the consortium (a tertiary hospital's ORU that carries
// the referring clinic's MRN names the clinic's patient: system and assigner
// are the clinic's; a pair two profiles map to different systems is not
// used). An identifier whose pair no profile knows is kept (nothing the
// hospital sent is lost) as system
// "urn:yilian:id:<hospital>:unmapped:<CX-4.1>:<CX-5>" (parts percent-encoded
// outside [A-Za-z0-9._-]), type OTHER, assigner = the sending hospital: the
// identity index never links on OTHER, and the profile author sees the
// unmapped pair in `yilian hl7 parse` output. The assigner is the declaring
// hospital for MRN, VISIT and OTHER (domain identifiers) and empty for
// RESIDENT_ID, INSURANCE_CARD, HEALTH_CARD, PASSPORT (issued outside any one
// hospital, valid across the consortium).
//
// Codes: OBR-4 / AIS-3 go through the code map whose source_system equals
// CWE-3; a code whose system has a map but is not in it is validation_failed
// "unknown code" for orders (OrderPlaced) and appointments (the booking needs
// a catalogue exam), and leaves catalogue_code empty for reports and
// referrals (a report is never held back for a catalogue gap). A system
// without a map leaves catalogue_code empty everywhere.
//
// Report text: OBX lines whose OBX-3 is a findings or impression code are
// joined (newline) into ReportIssued.findings / conclusion: a code map with
// target_system "urn:yilian:report-section" mapping the local OBX-3 code to
// "findings" or "conclusion", or the standard codes (IHE "&GDT"/"&IMP"
// suffixes, LOINC 18782-3/59776-5 findings and 19005-8 impression, DICOM
// 121070/121071 findings and 121073 impression).
//
// PatientUpdated and the HL7 null: an empty field means "no change" and is
// left unset. The HL7 null `""` (delete) is carried where proto3 can show it:
// PID-5 `""` -> demographics.name present with every part empty; PID-13/14
// `""` -> telecom holds one ContactPoint with only `use` set (HOME for PID-13,
// WORK for PID-14) and an empty value; PID-11 `""` -> one empty Address;
// PID-22 `""` -> ethnic_group present and empty. PID-7, PID-8, PID-29, PID-30
// `""` cannot be told from "no change" in the v1 schema and are read as no
// change (see the report: a cleared_fields list in PatientUpdated would fix
// this).
//
// Errors (where = the location path, e.g. "PID-3[2].4", "OBR[2]-25"; the
// message never carries patient data): errc::validation_failed starting
// "required field missing: " or "unknown code: " (the ACK mapping relies on
// these prefixes), or naming a bad value's problem ("invalid date/time ...");
// errc::unsupported for message types, triggers and versions.
//
// Readings of the standard worth knowing (see also the field comments):
//  - SIU durations: AIS-7 with AIS-8 units (minutes when empty), AIG-11
//    with AIG-12 (v2.5 AIG-10 is the start *offset* units; the schema comment
//    "AIG-10" means the duration), SCH-11 TQ end (.5) or duration (.3 "M30"),
//    SCH-9/SCH-10. SCH-25 is matched case-insensitively; when empty the
//    trigger decides (S12-S14 BOOKED, S15/S17 CANCELLED, S26 NO_SHOW).
//    requesting_hospital: SCH-15 placer contact location facility (PL-4),
//    else the sender when it does not own the machine, else empty.
//  - Orders: ordering_hospital = ORC-21 (XON-10, XON-3, XON-1 through
//    facility_ids), else the sender; performing_hospital = the machine's
//    owner, else MSH-6 through facility_ids. Priority TQ1-9, ORC-7.6, OBR-27.6
//    (S, A, R; P, C, T, PRN carry no value); requested_for TQ1-7, OBR-27.4,
//    ORC-7.4, OBR-36.
//  - Reports: OBR-25 R and A read as PRELIMINARY; O, I, S, Y, Z are not
//    reports (unknown code). report_id = OBR-3 (quirk report_id), else the
//    accession, else OBR-2. referring_hospital = ORC-21, else MSH-6 when it
//    is not the performer. OBR-32 is NDL: id & family & given subcomponents.
//  - Referrals: PRD facility = PRD-10 (XON, v2.6+), else PRD-4.4 (PL
//    facility); without a PRD the sender (REF: from; RRI: to) and MSH-6 fill
//    in. Direction from the tiers (to a higher tier = UP) unless the quirk
//    referral_direction names a field (UP/DOWN/U/D/上转/下转). RF1-1 P is
//    REQUESTED in a REF and RECEIVED in an RRI; an RRI without RF1-1 reads
//    MSA-1 (AA/CA: RECEIVED, or CANCELLED for I14; AE/AR/CE/CR: REJECTED
//    with MSA-3 as reason); REF^I14 is CANCELLED whatever RF1-1 says; REF^I13
//    without RF1-1 stays REQUESTED. source_status is RF1-1, else "MSA-1 <code>",
//    else the trigger. In a REF^I12, RF1-11 is linked_referral_id when the
//    referral goes DOWN (the upward referral it follows) and
//    external_referral_id otherwise.
//  - PID-7 keeps the date as written; without the birth_date_has_fake_time
//    quirk the whole value must still be a valid date/time.
//
// The generic profile (compile with profile == nullptr): any sending facility;
// identifiers as sent (system "urn:yilian:id:source:<CX-4.1>:<CX-5>", type
// from table 0203: MR/PI -> MRN, NNCHN -> RESIDENT_ID, PPN -> PASSPORT,
// HC -> HEALTH_CARD, VN -> VISIT, else OTHER); no code maps; facilities and
// resources that do not resolve through the consortium are kept as sent
// (so a sample SIU maps even when its machine is unknown); time zone of the
// consortium or UTC; source.hospital = hospital_id, or when empty the
// hospital MSH-4.1 names in the consortium, else MSH-4.1 itself.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <google/protobuf/arena.h>

#include "adapters/hl7v2/hl7_time.h"
#include "adapters/hl7v2/message.h"
#include "engine/config/config.h"
#include "engine/core/error.h"
#include "yilian/config/v1/profile.pb.h"
#include "yilian/events/v1/envelope.pb.h"
#include "yilian/events/v1/topics.pb.h"

namespace yilian::hl7v2 {

// One event of a message: where it goes (topic, partition key) and the
// envelope, which lives on the arena of the mapped_batch that holds it (valid
// while the batch lives and is not cleared).
struct mapped_event {
  events::v1::Topic topic = events::v1::TOPIC_UNSPECIFIED;
  std::string key;
  events::v1::Envelope* envelope = nullptr;
};

// The events of one message, their envelopes built in place on one protobuf
// arena the batch owns: the sub-messages and string objects of a message's
// events are bump allocations freed at once, not a malloc/free each (the
// text of a string longer than 15 bytes still comes from malloc: protobuf
// 3.21 strings are std::string). The arena starts on a block the batch
// allocates once and clear() keeps, so a batch reused message after message
// (mapper::map_into) needs no new blocks once warm. Not copyable; moving
// keeps the envelopes where they are.
class mapped_batch {
 public:
  static constexpr std::size_t default_block_bytes = 16384;

  mapped_batch() : mapped_batch(default_block_bytes) {}
  explicit mapped_batch(std::size_t initial_block_bytes);
  mapped_batch(mapped_batch&&) noexcept = default;
  mapped_batch& operator=(mapped_batch&& other) noexcept;
  mapped_batch(const mapped_batch&) = delete;
  mapped_batch& operator=(const mapped_batch&) = delete;
  ~mapped_batch();

  // A new event with an empty envelope on the arena. The reference is valid
  // until the next add(); the envelope until clear().
  mapped_event& add(events::v1::Topic topic, std::string key = {});
  // Drops every event and frees the arena's memory but its first block.
  void clear();

  std::size_t size() const { return events_.size(); }
  bool empty() const { return events_.empty(); }
  mapped_event& operator[](std::size_t i) { return events_[i]; }
  const mapped_event& operator[](std::size_t i) const { return events_[i]; }
  mapped_event& front() { return events_.front(); }
  const mapped_event& front() const { return events_.front(); }
  std::vector<mapped_event>::iterator begin() { return events_.begin(); }
  std::vector<mapped_event>::iterator end() { return events_.end(); }
  std::vector<mapped_event>::const_iterator begin() const { return events_.begin(); }
  std::vector<mapped_event>::const_iterator end() const { return events_.end(); }
  // The events themselves (stamp_enterprise_ids works on them in place).
  std::vector<mapped_event>& events() { return events_; }
  google::protobuf::Arena* arena();

 private:
  // Declared first: the arena that may use it is destroyed before it.
  std::unique_ptr<char[]> block_;
  std::size_t block_bytes_ = 0;
  std::unique_ptr<google::protobuf::Arena> arena_;
  std::vector<mapped_event> events_;
};

namespace detail {
struct compiled_profile;
}

// A profile compiled once into lookup tables (hash maps) for fast mapping;
// immutable, shareable across threads.
class mapper {
 public:
  // `consortium` (may be null) gives the other hospitals' facility ids and
  // tiers, the equipment and the catalogue names; `profile` == nullptr is
  // the generic profile (see above). Errors: errc::config_error when the
  // profile cannot be used (unknown time zone, a quirk location that does not
  // parse, a resource_ids target that is not an equipment id).
  static result<mapper> compile(const config::loaded_consortium* consortium, const config::v1::HospitalProfile* profile,
                                std::string hospital_id);

  // All events one message produces, in order (event_index 0..n-1).
  result<mapped_batch> map(const message& msg, const events::v1::ClaimCheck& raw_ref,
                           std::chrono::system_clock::time_point recorded_at) const;
  // The same into `out`, which is cleared first (its arena block is reused:
  // the way to map message after message without allocating envelopes). On
  // error `out` holds no events.
  result<void> map_into(const message& msg, const events::v1::ClaimCheck& raw_ref,
                        std::chrono::system_clock::time_point recorded_at, mapped_batch& out) const;

  // The hospital events are attributed to (empty for a generic mapper
  // compiled without one).
  const std::string& hospital() const;
  bool generic() const;
  const time_zone& zone() const;

 private:
  explicit mapper(std::shared_ptr<const detail::compiled_profile> p) : p_(std::move(p)) {}
  result<void> map_events(const message& msg, const events::v1::ClaimCheck& raw_ref,
                          std::chrono::system_clock::time_point recorded_at, mapped_batch& out) const;
  std::shared_ptr<const detail::compiled_profile> p_;
};

// The deterministic event id: lowercase hex SHA-256 of
// "<hospital>|hl7v2|<facility>|<control_id>|<event_index>".
std::string hl7_event_id(std::string_view hospital, std::string_view facility, std::string_view control_id,
                         std::uint32_t event_index);
// The same with a text suffix instead of the index, for the events the ingest
// pipeline makes itself ("deadletter", "conflict:<sha256>", ...).
std::string hl7_event_id(std::string_view hospital, std::string_view facility, std::string_view control_id,
                         std::string_view suffix);

}  // namespace yilian::hl7v2
