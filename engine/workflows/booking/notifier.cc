#include "engine/workflows/booking/notifier.h"

#include <algorithm>

#include "engine/workflows/booking/service.h"
#include "engine/workflows/common/envelope_peek.h"

namespace yilian::workflows::booking {

namespace ev = events::v1;
using namespace std::chrono_literals;

std::vector<std::string> notification_targets(const ev::Envelope& e) {
  if (!e.has_appointment_changed() || e.source().protocol() != ev::PROTOCOL_ENGINE) return {};
  const auto& a = e.appointment_changed();
  if (a.command_id().empty()) return {};
  const std::string& requester = a.requesting_hospital();
  const std::string& owner = a.owning_hospital();
  bool to_requester = false, to_owner = false;
  switch (a.action()) {
    case ev::BOOKING_ACTION_BOOK:
    case ev::BOOKING_ACTION_RESCHEDULE:
    case ev::BOOKING_ACTION_NO_SHOW: to_requester = to_owner = true; break;
    case ev::BOOKING_ACTION_CANCEL:
      to_requester = true;
      to_owner = a.previous_state() == ev::BOOKING_STATE_BOOKED;
      break;
    case ev::BOOKING_ACTION_CHECK_IN:
    case ev::BOOKING_ACTION_PERFORM:
    case ev::BOOKING_ACTION_REPORT:
    case ev::BOOKING_ACTION_CORRECT:
      to_requester = true;
      to_owner = a.actor_hospital() != owner;
      break;
    default: break;
  }
  std::vector<std::string> out;
  if (to_requester && !requester.empty()) out.push_back(requester);
  if (to_owner && !owner.empty() && owner != requester) out.push_back(owner);
  // The one who acted through its own system knows already.
  if (!a.actor_hospital().empty() && a.actor_hospital() == requester && a.action() != ev::BOOKING_ACTION_BOOK &&
      a.action() != ev::BOOKING_ACTION_RESCHEDULE && a.action() != ev::BOOKING_ACTION_CANCEL) {
    std::erase(out, requester);
  }
  return out;
}

bool patient_hears(const ev::Envelope& e) {
  if (!e.has_appointment_changed() || e.source().protocol() != ev::PROTOCOL_ENGINE) return false;
  const auto& a = e.appointment_changed();
  if (a.command_id().empty()) return false;
  switch (a.action()) {
    case ev::BOOKING_ACTION_BOOK:
    case ev::BOOKING_ACTION_RESCHEDULE:
    case ev::BOOKING_ACTION_NO_SHOW: return true;
    case ev::BOOKING_ACTION_CANCEL: return a.previous_state() == ev::BOOKING_STATE_BOOKED;
    default: return false;
  }
}

std::set<std::string> appointment_listeners(const config::loaded_consortium& cfg) {
  return listeners_of(cfg, "AppointmentChanged");
}

namespace {

// Whether the requesting or the owning hospital of a booking decision (its
// serialized Envelope) listens: told from the bytes, as in a consortium
// where few systems take AppointmentChanged most decisions go to nobody.
bool heard_by(std::string_view bytes, const std::set<std::string>& listeners) {
  const auto body = peek_body(bytes, ev::Envelope::kAppointmentChangedFieldNumber);
  if (!body) return true;  // decoded, and notification_targets() decides
  static constexpr std::uint32_t kFields[] = {ev::AppointmentChanged::kRequestingHospitalFieldNumber,
                                              ev::AppointmentChanged::kOwningHospitalFieldNumber};
  peeked_field f[2];
  return !peek_fields(*body, kFields, f) || listeners.contains(std::string(f[0].bytes)) ||
         listeners.contains(std::string(f[1].bytes));
}

}  // namespace

notifier::notifier(bus::bus& b, notifier_options options)
    : options_(std::move(options)),
      relay_(b,
             relay_options{.name = "booking-notify",
                           .group = options_.group_prefix + "yilian-booking-notify",
                           .topics = {options_.booking_topic},
                           .outbound_topic = options_.outbound_topic},
             [this](const bus::record& r, std::vector<bus::message>& out) {
               // Only the workflow's AppointmentChanged decisions are announced;
               // records that say what they are (headers) are skipped undecoded.
               const bool typed =
                   std::any_of(r.headers.begin(), r.headers.end(), [](const bus::header& h) { return h.key == "type"; });
               if (typed && !header_is(r, "type", "yilian.events.v1.AppointmentChanged")) return;
               if (!options_.patients && options_.listeners && !heard_by(r.value, *options_.listeners)) return;
               ev::Envelope e;
               if (!e.ParseFromString(r.value)) return;
               const std::vector<bus::header> headers{{"event_id", e.event_id()}, {"type", e.type()}};
               for (const auto& target : notification_targets(e)) {
                 if (options_.listeners && !options_.listeners->contains(target)) continue;
                 out.push_back(bus::message{.key = target, .value = r.value, .headers = headers});
               }
               if (options_.patients && patient_hears(e)) {
                 out.push_back(bus::message{.key = std::string(patient_channel), .value = r.value, .headers = headers});
               }
             }) {}

}  // namespace yilian::workflows::booking
