// yilian::hl7v2 PIX query — the IHE PIX Query transaction (ITI TF-2a 3.9,
// [ITI-9]) on a hospital's MLLP channel: QBP^Q23 in, RSP^K23 out, answered at
// once from the identity index (identity::directory). A query is not data: it
// is never published, kept in the raw store or dead-lettered (ingest.h routes
// every QBP here before mapping).
//
// What is asked (QPD, HL7 v2.5 QBP_Q21 structure):
//   QPD-1  message query name: "IHE PIX Query" (IHE), or Q23 (HL7's own
//          conformance statement "Q23^Get Corresponding IDs^HL70471");
//   QPD-2  query tag, echoed in QAK-1;
//   QPD-3  the person identifier (CX): value ^^^ assigning authority
//          (namespace id and/or universal id & type) ^ type code;
//   QPD-4  what domains returned: repetitions of ^^^authority[^type code];
//          empty = every domain.
//
// Domains are consortium identifier systems: a CX-4 (+ CX-5) names the system
// an identifier_authorities entry of the requesting hospital's profile gives
// it (namespace id equal, or universal id equal; the type code when given
// must match), else the one the other profiles of the consortium agree on
// (a clinic may ask with the tertiary hospital's MRN authority). Within one
// tier, several systems for one CX-4 are ambiguous for QPD-3 (not recognised;
// the sender adds the type code) and all of them for QPD-4.
//
// The answer (RSP^K23^RSP_K23, the query's own delimiters, version and
// MSH-18; the header as for an ACK, ack.h build_response):
//   MSH, MSA, [ERR...], QAK (QAK-1 = QPD-2 as sent, QAK-2 status), QPD (the
//   query's QPD as sent), [PID].
//
//   situation                                 MSA-1  QAK-2  ERR (ERR-2, ERR-3)        outcome
//   found, identifiers in the asked domains   AA     OK     -                         ok
//   found, none in the asked domains          AA     NF     -                         no_data
//   QPD-3 identifier not in the index         AE     AE     QPD^1^3^1^1, 204          unknown_identifier
//   QPD-3.4 authority not recognised          AE     AE     QPD^1^3^1^4, 204          unknown_domain
//   a QPD-4 domain not recognised             AE     AE     QPD^1^4^<rep>, 204 each   unknown_target_domain
//   no QPD / QPD-3.1 / QPD-1 missing          AE     AE     QPD, QPD^1^3^1^1, QPD^1^1: 100/101  invalid_query
//   QPD-1 not a PIX query                     AE     AE     QPD^1^1, 103               invalid_query
//   no identity index (directory == nullptr)  AR     AR     207 (sender retries)       index_unavailable
//   a QBP trigger other than Q23              ACK^<trigger>^ACK, MSA-1 AR, ERR MSH^1^9^1^2 201
//                                                                                      unsupported_query
//
// PID (only with OK): PID-3 = the person's identifiers in the asked domains,
// record by record, without the queried identifier itself, each as the
// requesting hospital writes it (render.h render_identifier); PID-5 =
// "~^^^^^^S" (an empty name and a pseudo-name repetition: PID-5 is required by
// HL7 and the PIX manager returns no demographics).
//
// Errors never carry identifier values (ERR-8 / MSA-3 name fields and
// domains only). Everything here is pure (the directory is only read) and
// safe from any thread.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "adapters/hl7v2/ack.h"
#include "adapters/hl7v2/message.h"
#include "engine/config/config.h"
#include "engine/core/error.h"
#include "engine/identity/directory.h"
#include "yilian/config/v1/profile.pb.h"

namespace yilian::hl7v2 {

// A patient identification domain as a CX names it (decoded).
struct pix_domain {
  std::string namespace_id;       // CX-4.1
  std::string universal_id;       // CX-4.2
  std::string universal_id_type;  // CX-4.3
  std::string type_code;          // CX-5
  bool operator==(const pix_domain&) const = default;
};

// What a QBP^Q23 asks.
struct pix_query {
  std::string query_tag;                 // QPD-2 (decoded)
  std::string value;                     // QPD-3.1
  pix_domain domain;                     // QPD-3.4, QPD-3.5
  std::vector<pix_domain> what_domains;  // QPD-4 in order; empty = every domain
  bool operator==(const pix_query&) const = default;
};

// Reads the QPD of a QBP^Q23. Errors, with where = the place (ack.h
// parse_location reads it): validation_failed "required field missing: ..."
// ("QPD" no segment, "QPD-1" no query name, "QPD-3[1].1" no identifier
// value) and "unknown code: ..." ("QPD-1" not a PIX query).
result<pix_query> parse_pix_query(const message& msg);

// The consortium identifier systems `domain` names for `requester` (see the
// top of this file): distinct, in profile order; empty = not recognised.
std::vector<std::string> resolve_domain(const pix_domain& domain, const config::v1::HospitalProfile& requester,
                                        const config::loaded_consortium* consortium);

struct pix_context {
  std::string hospital;                                  // the channel's (requesting) hospital
  const config::v1::HospitalProfile* profile = nullptr;  // its profile (required)
  const config::loaded_consortium* consortium = nullptr;
  const identity::directory* directory = nullptr;        // null: the index is not available (AR)
};

struct pix_answer {
  std::string text;              // UTF-8, segments ended by CR, no MLLP framing
  ack_code code = ack_code::AA;  // MSA-1
  // ok, no_data, unknown_identifier, unknown_domain, unknown_target_domain,
  // invalid_query, unsupported_query, index_unavailable (table above);
  // no_profile (AR 207) when the context has no profile, a caller's bug.
  std::string outcome;
  std::size_t identifiers_returned = 0;  // PID-3 repetitions
};

// Told about every answered query, for the audit log (ids and counts only,
// never identifier values): the requesting hospital, the query's MSH-10, the
// outcome (pix_answer::outcome) and how many identifiers went back.
using pix_query_hook = std::function<void(std::string_view hospital, std::string_view control_id,
                                          std::string_view outcome, std::size_t identifiers_returned)>;

// True for a message the PIX path answers (MSH-9.1 QBP, any trigger).
bool is_query(const message& msg);

// The answer to a QBP message (see the table above). Never fails: whatever is
// wrong with the query is in the answer.
pix_answer answer_query(const message& msg, const pix_context& ctx, const ack_build_options& build);

}  // namespace yilian::hl7v2
