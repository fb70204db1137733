// Who a hospital's event speaks for, as workflow commands name their actor.
#pragma once

#include <string>

#include "yilian/events/v1/envelope.pb.h"

namespace yilian::workflows {

// "hl7:<hospital>", "file:<hospital>", the FHIR/API principal, else
// "fhir:<hospital>" / "api:<hospital>".
inline std::string actor_of(const events::v1::Envelope& e) {
  namespace ev = events::v1;
  switch (e.source().protocol()) {
    case ev::PROTOCOL_HL7V2_MLLP: return "hl7:" + e.source().hospital();
    case ev::PROTOCOL_FHIR_R4: return e.source().principal().empty() ? "fhir:" + e.source().hospital() : e.source().principal();
    case ev::PROTOCOL_FILE_DROP: return "file:" + e.source().hospital();
    default: return e.source().principal().empty() ? "api:" + e.source().hospital() : e.source().principal();
  }
}

}  // namespace yilian::workflows
