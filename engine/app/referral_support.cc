#include "engine/app/referral_support.h"

#include "engine/core/ids.h"
#include "engine/workflows/referral/service.h"

namespace yilian::app::referral {

namespace ev = events::v1;

bool sees(const api::principal& p, const rf::referral_view& r, const person_filter* person) {
  if (p.role == api::role::patient) return person != nullptr && person->matches(r.subject);
  if (p.role == api::role::operator_ && p.hospital.value().empty()) return true;
  if (p.hospital.value().empty()) return false;
  return p.hospital.value() == r.from_hospital || p.hospital.value() == r.to_hospital;
}

ev::Envelope command_for(const api::request& req, ev::ReferralAction act, const std::string& referral_id,
                         workflows::seconds now, std::string_view system, int n) {
  const auto& p = *req.principal;
  const auto key = req.header("Idempotency-Key");
  ev::ReferralCommand c;
  std::string id = key.empty() ? random_id("cmd-") : stable_id("cmd-", p.id.value() + "\n" + std::string(key));
  if (n > 0) id += ":" + std::to_string(n);
  c.set_command_id(std::move(id));
  c.set_action(act);
  c.set_referral_id(referral_id);
  c.set_actor(p.id.value());
  c.set_actor_hospital(p.hospital.value());
  c.set_actor_is_operator(p.role == api::role::operator_);
  auto cmd = rf::command_envelope(std::move(c), now, ev::PROTOCOL_API);
  cmd.mutable_source()->set_system(std::string(system));
  cmd.mutable_source()->set_control_id(req.request_id);
  return cmd;
}

std::string_view priority_code(ev::Priority p) {
  switch (p) {
    case ev::PRIORITY_ROUTINE: return "routine";
    case ev::PRIORITY_URGENT: return "urgent";
    case ev::PRIORITY_ASAP: return "asap";
    case ev::PRIORITY_STAT: return "stat";
    default: return "";
  }
}

std::string_view direction_code(ev::ReferralDirection d) {
  return d == ev::REFERRAL_DIRECTION_UP ? "UP" : d == ev::REFERRAL_DIRECTION_DOWN ? "DOWN" : "";
}

}  // namespace yilian::app::referral
