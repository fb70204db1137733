// Envelopes arriving as protobuf JSON (the REST publish endpoint, `yilian
// events publish`): parsed strictly and checked before anything is published.
#pragma once

#include <string>
#include <string_view>

#include "engine/bus/bus.h"
#include "engine/core/error.h"
#include "yilian/events/v1/envelope.pb.h"

namespace yilian::app {

// Rejects unknown fields, a missing event_id or type, and a type that does not
// name the body that is set ("yilian.events.v1.PatientRegistered" with a
// patientRegistered body). Fills recorded_at with now when absent.
result<events::v1::Envelope> parse_envelope_json(std::string_view json);

// The bus record for an envelope: serialized value, event_id and type headers.
bus::message envelope_message(std::string topic, std::string key, const events::v1::Envelope& envelope);

}  // namespace yilian::app
