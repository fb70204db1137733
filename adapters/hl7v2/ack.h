// yilian::hl7v2 acknowledgments — building the ACKs the engine answers with,
// THE mapping from yilian::error to HL7 acknowledgment codes and ERR segments
// (one mapping for this boundary, table-tested in ack_test.cc), and reading
// the ACKs other systems answer the engine with.
//
// Who calls what:
//  - the ingest pipeline: header_from(msg) (or header_from_raw(bytes) when the
//    bytes did not decode or parse), ack_code_for / to_ack_error on whatever
//    went wrong, build_ack; the result is UTF-8, encoded back to the sender's
//    charset with charset.h encode_text before framing;
//  - the listener: the same for an oversized frame (header_from_raw on the
//    first bytes the framer kept);
//  - the outbound sender and `yilian hl7 send`: parse_ack on the reply.
//
// Everything here is pure (no I/O, no clock: the timestamp is an option), and
// safe to call from any thread.
//
// The mapping (see ack_code_for and to_ack_error):
//
//   errc                          ACK (commit)  ERR-3 (table 0357)
//   ----------------------------  ------------  --------------------------------------------
//   parse_error                   AE (CE)       102 data type error when `where` names a field,
//                                               100 segment sequence error otherwise
//   validation_failed             AE (CE)       101 when the message starts with "required",
//                                               103 when it starts with "unknown code", else 207
//   unsupported                   AR (CR)       200 MSH-9/MSH-9.1/MSH-9.3, 201 MSH-9.2,
//                                               202 MSH-11, 203 MSH-12, else 207
//   conflict, already_exists      AE (CE)       205 duplicate key identifier
//   not_found                     AE (CE)       204 unknown key identifier
//   permission_denied,            AR (CR)       207 (sending facility/application not accepted
//   unauthenticated                                  on this channel: profile.proto says AR)
//   unavailable, timeout,         AR (CR)       207
//   overloaded, io_error,
//   cancelled
//   invalid_argument, corrupt,    AE (CE)       207
//   config_error, internal
//   any error with retriable set  AR (CR)       as above
//
// Why: AR ("reject") tells the sender to try again later or that the message
// is not for us at all (HL7 original-mode rules answer an unacceptable MSH-9,
// MSH-11 or MSH-12 with AR); AE ("error") says the content is wrong and
// resending the same bytes will not help. `retriable` is what decides, plus
// the reject classes above. Every retriable failure gets 207, not 206
// ("application record locked"): 206 promises a lock that frees soon, and a
// bus outage or a full queue is not that.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "adapters/hl7v2/message.h"
#include "engine/core/error.h"

namespace yilian::hl7v2 {

// What an ACK needs from the message it answers. Values are as sent (escape
// sequences and components included), in the message's own delimiters, so
// they can be copied into the ACK verbatim.
struct ack_header {
  delimiters delims;
  std::string sending_application;    // MSH-3 (HD, raw)
  std::string sending_facility;       // MSH-4
  std::string receiving_application;  // MSH-5
  std::string receiving_facility;     // MSH-6
  std::string message_code;           // MSH-9.1 "ADT"
  std::string trigger;                // MSH-9.2 "A04"
  std::string control_id;             // MSH-10
  std::string processing_id;          // MSH-11 (raw, may carry components)
  std::string version;                // MSH-12 (raw, may carry components)
  std::string accept_ack_type;        // MSH-15 (AL, NE, ER, SU or empty)
  std::string application_ack_type;   // MSH-16
  std::string charset;                // MSH-18 (raw)
  // False when no usable MSH segment was found (header_from_raw on garbage):
  // the other members are then defaults ('|^~\&', version 2.5, empty ids).
  bool has_msh = true;
  bool operator==(const ack_header&) const = default;
};

ack_header header_from(const message& msg);

// Best effort over bytes that failed to decode or to parse: finds an MSH
// segment (at the start, after a segment terminator, or anywhere), reads its
// delimiters and fields up to MSH-18, and stops at the segment's end. Never
// fails: without a usable MSH the defaults are returned (has_msh = false).
// Values keep the bytes as sent, except that control characters are dropped
// and each is cut at 256 bytes (they are echoed to the sender, so garbage must
// not grow an ACK nor break its framing). Bytes in a charset other than UTF-8
// stay as they are, so an ACK built from this header echoes the sender's own
// bytes in an otherwise ASCII text: send it without charset conversion (right
// for every ASCII-compatible charset: GB 18030, GBK, 8859/x, UTF-8).
ack_header header_from_raw(std::string_view bytes);

// MSA-1 (HL7 table 0008): original mode AA/AE/AR, enhanced-mode commit
// (accept) acknowledgments CA/CE/CR.
enum class ack_code { AA, AE, AR, CA, CE, CR };
std::string_view to_string(ack_code code) noexcept;
bool is_commit(ack_code code) noexcept;       // CA, CE, CR
bool is_positive(ack_code code) noexcept;     // AA, CA

// One ERR segment (v2.5+) or one ERR-1 repetition (v2.3/2.4).
struct ack_error {
  location where;             // ERR-2 (ERL); segment empty = no location
  std::string code = "207";   // ERR-3.1, HL7 table 0357
  std::string text;           // ERR-8 user message (and MSA-3 for the first); never patient data
  char severity = 'E';        // ERR-4, HL7 table 0516: E error, W warning, I information
  // ERR-5 application error code (CWE, user-defined table 0533): written as
  // <code>^^99YLN when set (yilian's own reason, e.g. "wrong_transition").
  std::string application_code;
  bool operator==(const ack_error&) const = default;
};

// The table 0357 description of a code ("Required field missing"); "" for
// codes outside the table.
std::string_view hl7_error_description(std::string_view code_0357) noexcept;

// "PID-3[2].4", "OBR[2]-25", "MSH-9.2", "PID-3.4.1", "PID" -> location (the
// segment sequence is 1 when a segment is named without one). Text after the
// path (" at byte 12") is ignored; anything that is not a path gives an empty
// location.
location parse_location(std::string_view where);

// THE mapping from an engine error to what the sender is told; see the table
// at the top of this file.
ack_error to_ack_error(const error& e);
ack_code ack_code_for(const error& e, bool enhanced_commit);

// THE mapping from a referral workflow refusal (ReferralCommandRejected.code,
// engine/workflows/referral/ledger.cc) to the ERR of the application error
// that answers the hospital message that asked (notifier.h, render.h).
// `message_code` is MSH-9.1 of that message ("REF", "RRI", "OMG", "SIU" ...):
// it decides where ERR-2 points.
//
//   refusal                  ERR-3 (0357)  ERR-2 (REF/RRI; OMG/ORM/OMI)
//   -----------------------  ------------  -----------------------------
//   not_found                204           RF1^1^6; ORC^1^2
//   duplicate_referral_id    205           RF1^1^6; ORC^1^2
//   unknown_linked_referral  204           RF1^1^11
//   unknown_hospital         204           (none)
//   reason_required          101           RF1^1^10 (RRI)
//   anything else            207           (none)
//   (wrong_transition, not_allowed, version_mismatch, invalid, ...)
//
// ERR-5 carries the refusal code itself (table 99YLN), ERR-8 and MSA-3 the
// writer's message (ids and states, never patient data). Table 0357 has no
// "refused by a business rule" code: 207 is the catch-all, and ERR-5 says
// which rule.
ack_error refusal_error(std::string_view refusal_code, std::string_view text, std::string_view message_code);

// MSA (MSA-1 `code`, MSA-2 `acknowledged_control_id`, MSA-3 the first error's
// text before v2.7) and the ERR segment(s) as build_response writes them for
// `version` (MSH-12, raw), in delimiters `d`, each segment ended by CR. For
// messages that answer another one later (an application acknowledgment
// rendered by render.h) and so build their own MSH.
std::string msa_and_err_segments(ack_code code, std::string_view acknowledged_control_id,
                                 std::span<const ack_error> errors, std::string_view version, const delimiters& d);

struct ack_build_options {
  // The ACK's own MSH-10. Required (unique per ACK, e.g. from a counter).
  std::string control_id;
  // MSH-7, rendered YYYYMMDDHHMMSS+ZZZZ at utc_offset (the consortium's time
  // zone offset at that instant; the caller resolves the zone name).
  std::chrono::system_clock::time_point timestamp = std::chrono::system_clock::now();
  std::chrono::minutes utc_offset{0};
  // The engine's names, used as ACK MSH-3/MSH-4 when the message left its
  // MSH-5/MSH-6 empty. Plain text (escaped here).
  std::string application = "YILIAN";
  std::string facility;
};

// The ACK for `received`, UTF-8, segments ended by CR, no MLLP framing:
//   MSH: the received delimiters; MSH-3/4 = received MSH-5/6 (or the options'
//        names), MSH-5/6 = received MSH-3/4, MSH-7 the timestamp,
//        MSH-9 ACK^<trigger>^ACK, MSH-10 the new id, MSH-11 and MSH-12 copied
//        (P and 2.5 when empty), MSH-18 copied when present;
//   MSA: MSA-1 code, MSA-2 = received MSH-10, MSA-3 = the first error's text
//        for versions before 2.7 (it was withdrawn there);
//   ERR: for 2.5 and later one ERR per error (ERR-2 location, ERR-3
//        code^description^HL70357, ERR-4 severity, ERR-8 text); before 2.5 a
//        single ERR whose ERR-1 repeats (segment^sequence^field^code&description&HL70357).
std::string build_ack(const ack_header& received, ack_code code, std::span<const ack_error> errors,
                      const ack_build_options& opts);

// The same MSH, MSA and ERR segments heading a response of another type, for
// answers that carry more than an acknowledgment: MSH-9 is
// <message_code>^<trigger>^<structure> (e.g. RSP^K23^RSP_K23 for a PIX query,
// pix.h); the caller appends the response's own segments (QAK, QPD, PID ...)
// in reply_delimiters(received). build_ack is build_response with
// ACK^<received trigger>^ACK.
std::string build_response(const ack_header& received, std::string_view message_code, std::string_view trigger,
                           std::string_view structure, ack_code code, std::span<const ack_error> errors,
                           const ack_build_options& opts);

// The delimiters a reply to `received` is written in: the received ones when
// usable for writing, else the standard |^~\&.
delimiters reply_delimiters(const ack_header& received);

// An ACK another system sent us.
struct parsed_ack {
  ack_code code = ack_code::AA;          // MSA-1
  std::string acknowledged_control_id;   // MSA-2: the MSH-10 of our message
  std::string control_id;                // MSH-10 of the ACK itself
  std::string text;                      // ERR-8 texts joined by "; ", else MSA-3, else the ERR code descriptions
  std::string error_code;                // first ERR-3.1, else ERR-1.4.1, else MSA-6.1; "" when none
};

// Parses an ACK payload (unframed). The MSA segment is required: errors are
// errc::parse_error (not HL7, where = byte offset / segment) or
// errc::validation_failed (no MSA, or an MSA-1 outside table 0008; where =
// "MSA" / "MSA-1"). Non-UTF-8 texts are kept as bytes.
result<parsed_ack> parse_ack(std::string_view payload);

}  // namespace yilian::hl7v2
