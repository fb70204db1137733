#include "engine/app/envelope_json.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>

namespace yilian::app {

result<events::v1::Envelope> parse_envelope_json(std::string_view json) {
  events::v1::Envelope envelope;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  const auto st = google::protobuf::util::JsonStringToMessage(json, &envelope, options);
  if (!st.ok()) {
    return fail(errc::parse_error, "not a yilian.events.v1.Envelope: " + std::string(st.message()), "body");
  }
  if (envelope.event_id().empty()) return fail(errc::validation_failed, "eventId is required", "eventId");
  if (envelope.type().empty()) return fail(errc::validation_failed, "type is required", "type");
  const auto* body_field = envelope.GetReflection()->GetOneofFieldDescriptor(
      envelope, events::v1::Envelope::descriptor()->FindOneofByName("body"));
  if (body_field != nullptr && envelope.type() != body_field->message_type()->full_name()) {
    return fail(errc::validation_failed,
                "type \"" + envelope.type() + "\" does not name the body, which is " +
                    body_field->message_type()->full_name(),
                "type");
  }
  if (!envelope.has_recorded_at()) {
    *envelope.mutable_recorded_at() = google::protobuf::util::TimeUtil::GetCurrentTime();
  }
  return envelope;
}

bus::message envelope_message(std::string topic, std::string key, const events::v1::Envelope& envelope) {
  bus::message msg{.topic = std::move(topic), .key = std::move(key), .value = envelope.SerializeAsString()};
  msg.headers.push_back({"event_id", envelope.event_id()});
  msg.headers.push_back({"type", envelope.type()});
  return msg;
}

}  // namespace yilian::app
