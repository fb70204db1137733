// yilian::hl7v2::render — turns an event (yilian.events.v1.Envelope) into the
// HL7 v2 message a destination hospital receives over MLLP (the outbound
// sender, sender.h, is the only caller in the engine).
//
// Which message (MSH-9):
//   PatientRegistered      ADT^A04^ADT_A01 (ADT^A28^ADT_A05 when body.trigger is "A28")
//   PatientUpdated         ADT^A08^ADT_A01 (ADT^A31^ADT_A05 when body.trigger is "A31")
//   AppointmentChanged     SIU^<S12|S13|S14|S15|S26>^SIU_S12: body.trigger when it is one of
//                          those, else by state: CANCELLED S15, NO_SHOW S26, BOOKED after
//                          BOOKED S13 when previous_start is set (rescheduled) else S14,
//                          REQUESTED/HELD/BOOKED (new) S12, CHECKED_IN..CORRECTED S14.
//   OrderPlaced,           OMI^O23^OMI_O23 (ORC + TQ1 + OBR + IPC) for version 2.5 and
//   OrderStatusChanged     later, ORM^O01^ORM_O01 (ORC + OBR, timing in ORC-7) before 2.5.
//   ReportIssued           ORU^R01^ORU_R01: ORC (RE) + OBR + one OBX per observation, OBX TX
//                          lines for findings/conclusion not already among the observations,
//                          one OBX RP per document, ZDS-1 (IHE) for the study UID.
//   ReferralRequested      REF^I12^REF_I12: RF1 + PRD (RP, RT) + PID + DG1 + OBR (requested
//                          services) + OBX RP (attachments) + NTE (clinical summary).
//   ReferralStateChanged   RRI^<trigger>^RRI_I12, by the new state:
//                            I12 (answer to the referral)   RECEIVED (RF1-1 P), ACCEPTED (A),
//                                                           REJECTED (R)
//                            I13 (the referral progressed)  SCHEDULED, ARRIVED, COMPLETED,
//                                                           REPORT_RETURNED, NO_SHOW
//                            I14 (the referral ended)       CANCELLED, TERMINATED, EXPIRED (E)
//                            I15 (status notice)            DRAFT, REQUESTED (P)
//                          RF1-1 (CE) leads with a code of table 0283 (user-defined: A, P,
//                          R, E; system HL70283) wherever one is true, so receivers that
//                          check the table accept it: P for DRAFT/REQUESTED/RECEIVED, A for
//                          ACCEPTED and the progress states, R, E. When the yilian state says
//                          more, it follows as the CE alternate (components 4-6, e.g.
//                          "A^Accepted^HL70283^SCHEDULED^^99YLN"; 99YLN is a local table,
//                          HL7's "99zzz" convention). CANCELLED and TERMINATED have no
//                          table code: "CANCELLED^^99YLN" (the I14 trigger says it too).
//   DocumentShared         MDM^T02^MDM_T02 (T10 when it replaces a document): TXA + OBX RP.
//   ReferralCommandRejected the application error answering the hospital message the
//                          refused command came from (origin): RRI^<I12-I15>^RRI_I12 for a
//                          REF^I12-I15 (MSA + ERR + RF1-6 + PID-3), ACK^<trigger>^ACK for
//                          anything else (MSA + ERR); MSA-1 AE, MSA-2 = origin.control_id,
//                          ERR from ack.h refusal_error (code, where, ERR-5 the refusal code,
//                          ERR-8 the reason: no patient data); MSH-5/6 = the original MSH-3/4;
//                          MSH-15 AL / MSH-16 NE (enhanced mode: the hospital answers it with
//                          a commit ACK only). Without an origin: errc::unsupported.
// Anything else (ImagingStudyAvailable, merges, links, DeliveryAcknowledged, ...) is
// errc::unsupported: the sender dead-letters it at once.
//
// Header: MSH-3 sending_application ("YILIAN"), MSH-4 sending_facility (the
// consortium id), MSH-5 receiving_application (empty unless given: profiles have
// no field for it yet), MSH-6 the destination's facility_ids[0], else
// inbound.mllp.expected_sending_facilities[0], else its hospital id; MSH-7 the
// envelope's recorded_at (else occurred_at, else options.now), so a redelivery
// is byte-identical; MSH-10 the event_id (the idempotency key: a redelivery
// after a crash carries the same control id and the receiver can dedupe;
// truncated to 199 characters, event ids are 64 hex or a UUID); MSH-11 "P";
// MSH-12 the version; MSH-18 the table 0211 name of options.charset (always
// filled, so the receiver never has to guess).
//
// Patients (PID-3): each subject identifier whose system the destination's
// profile knows (identifier_authorities[].system) goes out as that hospital
// sends it: value^^^namespace_id&universal_id&ISO^type_code (universal id only
// when the profile gives one). Identifiers whose system the destination does not
// know follow: as the consortium member that knows the system writes them (its
// authority and type code, e.g. the referring clinic's MRN as "DCSQ^MR"), else
// with the system URI itself as the assigning authority and a table 0203 type
// code from the identifier type (MR, NNCHN, SN, HC, PPN, VN, PT; empty for
// OTHER). The enterprise patient id, when set,
// goes last as <id>^^^<sending_facility>^PT unless the destination has an
// authority of type ENTERPRISE. Demographics (PID-5/7/8/11/13/14/22/29/30) only
// exist on ADT events; other messages carry identifiers only.
//
// Codes: an exam/service Coding goes out as CE code^text^system; when the event
// has a catalogue code, the destination's code maps are searched backwards for
// the local code that maps to it, which then leads (local^text^source_system)
// with the catalogue code as the CE alternate (components 4-6). Equipment ids
// are mapped back through the destination's resource_ids the same way.
//
// Claim-checks (report documents, observation attachments, referral attachments,
// shared documents) are rendered as RP reference pointers (uri^YILIAN^type^subtype,
// OBX-2 "RP"), never as inline bytes: the receiver fetches the document from the
// raw store by its URI.
//
// Timestamps are written YYYYMMDDHHMMSS+ZZZZ with the offset options.utc_offset
// gives (UTC, +0000, when it is empty); dates (birth date) YYYYMMDD.
//
// Every text value is escaped with hl7v2::escape for the standard delimiters
// |^~\&; segments end with CR; the result is UTF-8 (the sender converts it to
// the destination's charset with encode_text). message::parse reads it back.
//
// Errors: errc::unsupported (body type without an HL7 v2 rendering, or an
// unsupported version), errc::validation_failed (the event lacks what the
// message cannot do without, e.g. no event_id, an AppointmentChanged without
// trigger and state), each with `where` naming the envelope field.
//
// Thread-safety: pure functions of their arguments.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <string_view>

#include "adapters/hl7v2/message.h"
#include "engine/config/config.h"
#include "engine/core/error.h"
#include "engine/identity/directory.h"
#include "yilian/config/v1/profile.pb.h"
#include "yilian/events/v1/envelope.pb.h"

namespace yilian::hl7v2 {

struct render_options {
  // MSH-12. "2.5" and later get OMI^O23 for orders, earlier versions ORM^O01.
  // Accepted: 2.3, 2.3.1, 2.4, 2.5, 2.5.1, 2.6, 2.7, 2.7.1, 2.8 (others:
  // errc::unsupported).
  std::string version = "2.5";
  std::string sending_application = "YILIAN";  // MSH-3
  std::string sending_facility;                // MSH-4: the consortium id
  std::string receiving_application;           // MSH-5; empty when unknown
  std::string processing_id = "P";             // MSH-11
  // MSH-18. CHARSET_UNSPECIFIED = the destination profile's default_charset.
  config::v1::Charset charset = config::v1::CHARSET_UNSPECIFIED;
  // Offset from UTC of the destination's local time at a given instant, for
  // timestamps. Empty = UTC (written with +0000, so never ambiguous).
  std::function<std::chrono::seconds(std::chrono::sys_seconds)> utc_offset;
  // MSH-7 when the envelope has neither recorded_at nor occurred_at.
  std::chrono::system_clock::time_point now = std::chrono::system_clock::now();
  // The consortium, for what events name by id: equipment modality (AIG-4)
  // and AE title (IPC-9), hospital names and facility ids (ORC-21, PRD-4,
  // PRD-7). Optional: without it ids are written as they are.
  const config::loaded_consortium* consortium = nullptr;
  // The identity index. When set, PID-3 leads with the destination's own
  // identifiers of the patient (its MRN, as the index cross-references it),
  // so a hospital receives a referral or a report under the number its own
  // system knows, and the enterprise id is added if the event lacks it.
  // Optional: without it PID-3 holds what the event carries.
  const identity::directory* directory = nullptr;
};

struct rendered_message {
  std::string text;          // UTF-8, segments separated by CR, no MLLP framing
  std::string message_type;  // MSH-9 as written, e.g. "ORU^R01^ORU_R01"
  std::string control_id;    // MSH-10 as written
};

// Renders `event` for the hospital whose profile is `destination`.
result<rendered_message> render(const events::v1::Envelope& event, const config::v1::HospitalProfile& destination,
                                const render_options& options);

// MSH-9 the event would be rendered as ("ADT^A04^ADT_A01"), or the error
// render() would give for it. Cheap: no message is built.
result<std::string> message_type_for(const events::v1::Envelope& event, const render_options& options);

// One identifier of consortium system `system` as the hospital whose profile
// is `reader` writes it in a CX (outbound PID-3 above; the PID-3 of a PIX
// answer, pix.h): value^^^namespace_id[&universal_id&ISO]^type_code through
// the reader's authority for the system, else through the authority of the
// first other consortium member (profile order) that has one, else with the
// system URI as assigning authority and the table 0203 code of `type`.
// Every part is escaped for `delims`, and the text uses its separators.
struct rendered_cx {
  std::string text;
  bool reader_knows = false;  // the reader's own profile has an authority for the system
};
rendered_cx render_identifier(std::string_view value, std::string_view system, events::v1::IdentifierType type,
                              const config::v1::HospitalProfile& reader, const config::loaded_consortium* consortium,
                              const delimiters& delims = {});

// YYYYMMDDHHMMSS[.SSS]+ZZZZ for an instant, with the given offset from UTC
// (milliseconds only when not zero). Exposed for tests.
std::string format_hl7_timestamp(std::chrono::system_clock::time_point t, std::chrono::seconds utc_offset);

}  // namespace yilian::hl7v2
