// yilian::identity::directory — what the rest of the engine asks the identity
// index: which enterprise patient an identifier belongs to, and the
// cross-reference of one person (every identifier of every hospital record
// linked to them). The HL7 v2 adapter stamps enterprise ids on the events it
// publishes and answers PIX queries (QBP^Q23) through it; the FHIR facade
// answers Patient/$ihe-pix through it.
//
// Implemented by the identity workflow (engine/workflows/identity) over its
// view of the identity log. Thread-safe; every call sees one consistent
// state. Plain values only: no patient demographics pass through here.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace yilian::identity {

// One identifier of a person, with where it comes from.
struct xref_identifier {
  std::string system;    // consortium identifier system URI ("urn:yilian:id:zs-tertiary:mrn")
  std::string value;
  std::string type;      // "MRN", "RESIDENT_ID", "INSURANCE_CARD", "HEALTH_CARD", ... (events.v1 IdentifierType without prefix)
  std::string hospital;  // the hospital whose record carries it
  bool operator==(const xref_identifier&) const = default;
};

struct cross_reference {
  std::string enterprise_id;                 // e.g. "YL000000042"
  std::vector<xref_identifier> identifiers;  // record by record, oldest record first; a national identifier (resident ID) once per record carrying it
};

class directory {
 public:
  virtual ~directory() = default;
  // The enterprise id of the person holding (system, value); "" while the
  // identifier is unknown to the index (not linked yet).
  virtual std::string enterprise_id_of(std::string_view system, std::string_view value) const = 0;
  // The person holding (system, value), with the identifiers of all their
  // records; nullopt when the identifier is unknown.
  virtual std::optional<cross_reference> cross_reference_of(std::string_view system, std::string_view value) const = 0;
  // The persons whose records carry a person-level identifier (a valid
  // resident ID or a card number, normalized as the index compares them):
  // these identify a person but are not record keys, so several persons can
  // hold one (a typo'd or shared number not yet reviewed). Empty when nobody
  // does, or the system is not a resident-ID or card system.
  virtual std::vector<std::string> persons_holding(std::string_view system, std::string_view value) const {
    (void)system;
    (void)value;
    return {};
  }
  // A person by enterprise id (an id merged away resolves to the survivor,
  // whose id is returned); nullopt when there is no such person.
  virtual std::optional<cross_reference> person(std::string_view enterprise_id) const = 0;
};

}  // namespace yilian::identity
