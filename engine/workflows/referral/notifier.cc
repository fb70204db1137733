#include "engine/workflows/referral/notifier.h"

#include <algorithm>

namespace yilian::workflows::referral {

std::vector<notice> notices_for(const ev::Envelope& e, const ledger& l) {
  std::vector<notice> out;
  if (e.source().protocol() != ev::PROTOCOL_ENGINE) return out;
  if (e.has_referral_command_rejected()) {
    // Only a hospital's own HL7 message is answered: REST and FHIR callers
    // got their answer synchronously, and the engine's commands (timers,
    // bookings, encounters, reports) carry no origin.
    const auto& origin = e.referral_command_rejected().origin();
    if (origin.protocol() != ev::PROTOCOL_HL7V2_MLLP || origin.hospital().empty() || origin.control_id().empty()) {
      return out;
    }
    ev::Envelope answer = e;
    // The answer names the patient as the referral does (RRI needs a PID);
    // the refusal itself carries no patient data.
    if (const auto* r = l.find(e.referral_command_rejected().referral_id());
        r != nullptr && answer.subject().identifiers().empty()) {
      *answer.mutable_subject() = r->subject;
    }
    out.push_back(notice{origin.hospital(), std::move(answer)});
    return out;
  }
  if (e.has_referral_requested()) {
    const auto& q = e.referral_requested();
    if (q.command_id().empty() || q.state() == ev::REFERRAL_STATE_DRAFT) return out;
    if (q.actor_hospital() != q.to_hospital()) out.push_back(notice{q.to_hospital(), e});
    return out;
  }
  if (!e.has_referral_state_changed()) return out;
  const auto& c = e.referral_state_changed();
  if (c.command_id().empty()) return out;
  const std::string& from = c.from_hospital();
  const std::string& to = c.to_hospital();
  bool to_referrer = false, to_receiver = false;
  switch (c.action()) {
    case ev::REFERRAL_ACTION_SUBMIT: {
      // The receiver gets the referral itself, as it now stands.
      const auto* r = l.find(c.referral_id());
      if (r == nullptr) return out;
      ev::Envelope req = e;
      req.set_type("yilian.events.v1.ReferralRequested");
      auto* body = req.mutable_referral_requested();
      *body = r->request;
      body->set_referral_id(r->id);
      body->set_state(c.state());
      body->set_command_id(c.command_id());
      body->set_version(c.version());
      body->set_actor_hospital(c.actor_hospital());
      if (c.has_expires_at()) *body->mutable_expires_at() = c.expires_at();
      if (c.actor_hospital() != to) out.push_back(notice{to, std::move(req)});
      return out;
    }
    case ev::REFERRAL_ACTION_CANCEL: to_receiver = true; break;
    case ev::REFERRAL_ACTION_EXPIRE:
    case ev::REFERRAL_ACTION_TERMINATE: to_referrer = to_receiver = true; break;
    case ev::REFERRAL_ACTION_MODIFY: break;  // carried as ReferralRequested
    default: to_referrer = true; break;
  }
  if (to_referrer && c.actor_hospital() != from) out.push_back(notice{from, e});
  if (to_receiver && c.actor_hospital() != to) out.push_back(notice{to, e});
  switch (c.state()) {
    case ev::REFERRAL_STATE_ACCEPTED:
    case ev::REFERRAL_STATE_REJECTED:
    case ev::REFERRAL_STATE_EXPIRED:
    case ev::REFERRAL_STATE_SCHEDULED: out.push_back(notice{std::string(patient_channel), e}); break;
    default: break;
  }
  return out;
}

namespace {

// Hospitals with an HL7 v2 (MLLP) outbound endpoint taking refusals: an
// application error answers an HL7 message, so only such a channel carries it.
std::set<std::string> hl7_answer_listeners(const config::loaded_consortium& cfg) {
  std::set<std::string> out;
  for (const auto& p : cfg.profiles) {
    for (const auto& endpoint : p.profile.outbound()) {
      if (endpoint.kind() != config::v1::ENDPOINT_KIND_MLLP) continue;
      for (const auto& t : endpoint.event_types()) {
        if (t == "*" || t == "ReferralCommandRejected") out.insert(p.profile.hospital());
      }
    }
  }
  return out;
}

}  // namespace

notifier::notifier(bus::bus& b, const service& svc, const config::loaded_consortium& cfg, notifier_options options)
    : svc_(svc),
      hear_requests_(listeners_of(cfg, "ReferralRequested")),
      hear_changes_(listeners_of(cfg, "ReferralStateChanged")),
      hear_refusals_(hl7_answer_listeners(cfg)),
      patients_(patients_hear(cfg, "ReferralStateChanged")),
      options_(std::move(options)),
      relay_(b,
             relay_options{.name = "referral-notify",
                           .group = options_.group_prefix + "yilian-referral-notify",
                           .topics = {options_.referral_topic},
                           .outbound_topic = options_.outbound_topic},
             [this](const bus::record& r, std::vector<bus::message>& out) {
               if (!header_is(r, "origin", "engine")) return;
               if (header_is(r, "type", "yilian.events.v1.ReferralCommand")) return;
               ev::Envelope e;
               if (!e.ParseFromString(r.value)) return;
               // The ledger may be ahead of this record: only a submitted
               // draft's content is read from it, and that does not change
               // once submitted except by MODIFY, which sends it again.
               auto notices = svc_.read([&](const ledger& l) { return notices_for(e, l); });
               for (auto& n : notices) {
                 const bool patient = n.destination == patient_channel;
                 const auto& hear = n.event.has_referral_requested()          ? hear_requests_
                                    : n.event.has_referral_command_rejected() ? hear_refusals_
                                                                              : hear_changes_;
                 if (patient ? !patients_ : !hear.contains(n.destination)) continue;
                 out.push_back(bus::message{.key = n.destination, .value = n.event.SerializeAsString(),
                                            .headers = {{"event_id", n.event.event_id()}, {"type", n.event.type()}}});
               }
             }) {}

}  // namespace yilian::workflows::referral
