// yilian::workflows::relay — reads workflow topics as one consumer group and
// puts what someone must hear about on the outbound topic, keyed by the
// destination (a hospital id, or patient_channel for the consortium's patient
// notification channel), where each destination's senders (HL7 v2, webhook,
// FHIR) pick it up by event type.
//
// A route function says, per record, which outbound records it leads to.
// Offsets are committed only after all of a batch's outbound records are
// durable, so a crash repeats, never loses, a notification; the receivers
// deduplicate by the event id (the idempotency key).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "engine/bus/bus.h"
#include "engine/config/config.h"
#include "engine/core/error.h"

namespace yilian::workflows {

// Outbound key of the consortium's patient notification channel (not a valid
// hospital id, so it never collides with one).
inline constexpr std::string_view patient_channel = "@patients";

// The hospitals whose profiles have an outbound endpoint taking `event_type`
// (a body message name, e.g. "AppointmentChanged") or "*".
std::set<std::string> listeners_of(const config::loaded_consortium& cfg, std::string_view event_type);
// Whether the patient notification channel is configured and takes `event_type`.
bool patients_hear(const config::loaded_consortium& cfg, std::string_view event_type);

struct relay_options {
  std::string name;             // for logs: "booking-notify"
  std::string group;            // consumer group (prefix included)
  std::vector<std::string> topics;
  std::string outbound_topic = "yilian.outbound.v1";
};

class relay {
 public:
  // Appends the outbound records `record` leads to (topic left empty: the
  // outbound topic).
  using route_fn = std::function<void(const bus::record& record, std::vector<bus::message>& out)>;

  relay(bus::bus& b, relay_options options, route_fn route)
      : bus_(b), options_(std::move(options)), route_(std::move(route)) {}
  ~relay() { stop(); }
  relay(const relay&) = delete;
  relay& operator=(const relay&) = delete;

  result<void> start();
  void stop();
  std::uint64_t sent() const { return sent_.load(); }

 private:
  void run();
  bus::bus& bus_;
  relay_options options_;
  route_fn route_;
  std::unique_ptr<bus::consumer> consumer_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::uint64_t> sent_{0};
};

}  // namespace yilian::workflows
