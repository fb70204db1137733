#include "engine/workflows/recurring/plans.h"

#include <algorithm>

#include "engine/core/ids.h"

namespace yilian::workflows::recurring {

namespace {

bool final_status(ev::CarePlanStatus s) { return s == ev::CARE_PLAN_STATUS_CANCELLED || s == ev::CARE_PLAN_STATUS_ENDED; }

}  // namespace

bool plan_book::apply(const ev::Envelope& e) {
  const seconds at = to_seconds(e.occurred_at());
  if (e.has_care_plan_changed()) {
    const auto& c = e.care_plan_changed();
    if (c.care_plan_id().empty()) return false;
    const auto it = plans_.find(c.care_plan_id());
    if (it != plans_.end()) {
      auto& p = it->second;
      // Only the status moves, and only away from ACTIVE.
      if (final_status(p.status) || c.status() == p.status || !final_status(c.status())) return false;
      p.status = c.status();
      p.updated_at = at;
      if (c.status() == ev::CARE_PLAN_STATUS_CANCELLED) {
        p.cancelled_by = c.actor();
        p.cancel_reason = c.reason_text();
      }
      return true;
    }
    auto r = rule_of(c, zone_);
    if (!r) return false;
    care_plan p{.id = c.care_plan_id(),
                .status = c.status() == ev::CARE_PLAN_STATUS_UNSPECIFIED ? ev::CARE_PLAN_STATUS_ACTIVE : c.status(),
                .clinic = c.clinic_hospital(),
                .patient = c.patient(),
                .subject = e.subject(),
                .exam_code = c.exam_code(),
                .schedule = *r,
                .starts_at = to_seconds(c.starts_at()),
                .preferred_tier = static_cast<config::v1::Tier>(c.preferred_tier()),
                .preferred_hospital = c.preferred_hospital(),
                .created_by = c.actor(),
                .created_at = at,
                .updated_at = at};
    if (!config::v1::Tier_IsValid(static_cast<int>(c.preferred_tier()))) p.preferred_tier = config::v1::TIER_UNSPECIFIED;
    if (c.has_until()) p.until = to_seconds(c.until());
    if (p.status == ev::CARE_PLAN_STATUS_CANCELLED) {
      p.cancelled_by = c.actor();
      p.cancel_reason = c.reason_text();
    }
    order_.push_back(p.id);
    plans_.emplace(p.id, std::move(p));
    return true;
  }
  if (e.has_care_plan_occurrence()) {
    const auto& o = e.care_plan_occurrence();
    const auto it = plans_.find(o.care_plan_id());
    if (it == plans_.end()) return false;
    auto& p = it->second;
    if (p.fired(o.period())) return false;  // the first in the log wins
    p.occurrences.emplace(o.period(), occurrence{.period = o.period(),
                                                 .period_start = to_seconds(o.period_start()),
                                                 .booking_id = o.booking_id(),
                                                 .command_id = o.command_id(),
                                                 .equipment_id = o.equipment_id(),
                                                 .start = o.has_start() ? to_seconds(o.start()) : seconds{},
                                                 .failure = o.failure(),
                                                 .recorded_at = at,
                                                 .event_id = e.event_id()});
    while (p.fired(p.fired_prefix)) ++p.fired_prefix;
    return true;
  }
  return false;
}

const care_plan* plan_book::find(std::string_view id) const {
  const auto it = plans_.find(std::string(id));
  return it == plans_.end() ? nullptr : &it->second;
}

std::vector<const care_plan*> plan_book::of_clinic(std::string_view clinic) const {
  std::vector<const care_plan*> out;
  for (auto it = order_.rbegin(); it != order_.rend(); ++it) {
    const auto* p = find(*it);
    if (p != nullptr && (clinic.empty() || p->clinic == clinic)) out.push_back(p);
  }
  return out;
}

ev::CarePlanStatus plan_book::status_at(const care_plan& p, seconds now) const {
  if (p.status != ev::CARE_PLAN_STATUS_ACTIVE || !p.until || now <= *p.until) return p.status;
  // Past its until date: ended once every period it has fired.
  return period_at(p.schedule, p.fired_prefix, zone_) ? p.status : ev::CARE_PLAN_STATUS_ENDED;
}

std::string booking_id_for(std::string_view plan_id, std::uint32_t period) {
  std::string key = "careplan\n";
  key += plan_id;
  key += "\n";
  key += std::to_string(period);
  return stable_id("bk-", key);
}

std::string command_id_for(std::string_view plan_id, std::uint32_t period, std::size_t attempt) {
  std::string id = "careplan:";
  id += plan_id;
  id += ":";
  id += std::to_string(period);
  if (attempt > 0) {
    id += ":";
    id += std::to_string(attempt);
  }
  return id;
}

std::string occurrence_event_id(std::string_view plan_id, std::uint32_t period) {
  std::string id = "careplan-occurrence:";
  id += plan_id;
  id += ":";
  id += std::to_string(period);
  return id;
}

std::string_view status_name(ev::CarePlanStatus s) {
  switch (s) {
    case ev::CARE_PLAN_STATUS_ACTIVE: return "ACTIVE";
    case ev::CARE_PLAN_STATUS_ENDED: return "ENDED";
    case ev::CARE_PLAN_STATUS_CANCELLED: return "CANCELLED";
    default: return "UNSPECIFIED";
  }
}

}  // namespace yilian::workflows::recurring
