// A document embedded in a received HL7 v2 message (OBX-5 of type ED), as the
// claim-check of its event names it: "raw://<hospital>/<id>/<sha256>#OBX[n]-5".
// Events never carry the bytes; an authorized reader gets them from the raw
// message through this.
#pragma once

#include <string>
#include <string_view>

#include "adapters/hl7v2/charset.h"
#include "engine/core/error.h"

namespace yilian::hl7v2 {

// The decoded bytes of the ED value at `fragment` ("OBX[n]-5": the n-th OBX)
// of `raw_message` (the bytes as received; `fallback` is the sender's default
// charset for an empty MSH-18). Errors say where and why.
result<std::string> extract_document(std::string_view raw_message, std::string_view fragment, charset fallback);

}  // namespace yilian::hl7v2
