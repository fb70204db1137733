#include "engine/workflows/referral/ledger.h"

#include <algorithm>

namespace yilian::workflows::referral {

namespace {

refusal make_refusal(std::string code, std::string message) {
  errc kind = errc::conflict;
  if (code == "not_allowed") kind = errc::permission_denied;
  if (code == "not_found") kind = errc::not_found;
  if (code == "invalid" || code == "unknown_hospital" || code == "reason_required" || code == "unknown_linked_referral") {
    kind = errc::validation_failed;
  }
  return refusal{.kind = kind, .code = std::move(code), .message = std::move(message)};
}

std::string id_key(const ev::Identifier& i) { return i.system() + "|" + i.value(); }

// The decision envelope's frame (body set by the caller).
ev::Envelope decision_envelope(const ev::Envelope& command, seconds now, std::string_view hospital,
                               std::string_view system) {
  const auto& c = command.referral_command();
  ev::Envelope out;
  out.set_event_id("referral-decision:" + c.command_id());
  out.set_schema_version(1);
  *out.mutable_occurred_at() = to_timestamp(now);
  *out.mutable_recorded_at() = to_timestamp(now);
  auto* src = out.mutable_source();
  src->set_hospital(std::string(hospital));
  src->set_system(std::string(system));
  src->set_protocol(ev::PROTOCOL_ENGINE);
  src->set_principal(c.actor());
  out.set_causation_id(command.event_id());
  *out.mutable_trace() = command.trace();
  out.mutable_correlation()->set_referral_id(c.referral_id());
  return out;
}

ev::ReferralDirection direction_between(const config::loaded_consortium& cfg, std::string_view from,
                                        std::string_view to) {
  const auto* f = cfg.hospital(from);
  const auto* t = cfg.hospital(to);
  if (f == nullptr || t == nullptr || f->tier() == t->tier()) return ev::REFERRAL_DIRECTION_UNSPECIFIED;
  // Tier numbers: 1 tertiary (highest) .. 3 primary.
  return t->tier() < f->tier() ? ev::REFERRAL_DIRECTION_UP : ev::REFERRAL_DIRECTION_DOWN;
}

}  // namespace

ledger_options options_from(const config::loaded_consortium& cfg) {
  ledger_options o;
  const auto& r = cfg.consortium.referrals();
  if (r.answer_within_hours() > 0) o.answer_within = std::chrono::hours(r.answer_within_hours());
  o.accepted_expire = std::chrono::days(r.has_accepted_expire_days() ? r.accepted_expire_days() : 30);
  return o;
}

parties ledger::parties_of(const ev::ReferralCommand& c, std::string_view from, std::string_view to) const {
  parties p = 0;
  if (c.engine()) p |= engine;
  if (c.actor_is_operator()) p |= operator_;
  if (!c.actor_hospital().empty()) {
    if (c.actor_hospital() == from) p |= referrer;
    if (c.actor_hospital() == to) p |= receiver;
  }
  return p;
}

seconds ledger::deadline_after(state s, seconds at, const referral_view* r) const {
  if (awaits_answer(s)) {
    seconds d = at + options_.answer_within;
    // Keep an earlier deadline the referral carries (RF1-8), and the first
    // one when a referral moves from REQUESTED to RECEIVED.
    if (r != nullptr && r->expires_at > seconds{} && awaits_answer(r->st)) d = std::min(d, r->expires_at);
    if (r != nullptr && r->request.has_expires_at()) {
      const seconds asked = to_seconds(r->request.expires_at());
      if (asked > seconds{}) d = std::min(d, asked);
    }
    return d;
  }
  if (s == ev::REFERRAL_STATE_ACCEPTED && options_.accepted_expire.count() > 0) return at + options_.accepted_expire;
  return seconds{};
}

ev::Envelope ledger::decide(const ev::Envelope& command, seconds now) const {
  const auto& c = command.referral_command();
  const referral_view* r = find(c.referral_id());
  const std::string hospital = r != nullptr ? r->to_hospital : c.request().to_hospital();
  auto out = decision_envelope(command, now, hospital, options_.engine_system);
  auto reject = [&](const refusal& why) {
    out.set_type("yilian.events.v1.ReferralCommandRejected");
    auto* rej = out.mutable_referral_command_rejected();
    rej->set_command_id(c.command_id());
    rej->set_referral_id(c.referral_id());
    rej->set_action(c.action());
    rej->set_code(why.code);
    rej->set_message(why.message);
    // Whom to answer when a hospital's HL7 message asked (notifier.h).
    if (c.has_origin()) *rej->mutable_origin() = c.origin();
    return out;
  };
  if (c.command_id().empty()) return reject(make_refusal("invalid", "command_id is required"));
  if (c.referral_id().empty()) return reject(make_refusal("invalid", "referral_id is required"));

  if (c.action() == ev::REFERRAL_ACTION_CREATE) {
    const auto& q = c.request();
    if (r != nullptr) {
      return reject(make_refusal("duplicate_referral_id", "referral " + c.referral_id() + " exists already (from " +
                                                              r->from_hospital + ")"));
    }
    if (cfg_.hospital(q.from_hospital()) == nullptr) {
      return reject(make_refusal("unknown_hospital", "the referring hospital '" + q.from_hospital() +
                                                         "' is not a member of the consortium"));
    }
    if (cfg_.hospital(q.to_hospital()) == nullptr) {
      return reject(make_refusal("unknown_hospital", "the hospital referred to '" + q.to_hospital() +
                                                         "' is not a member of the consortium"));
    }
    if (q.from_hospital() == q.to_hospital()) {
      return reject(make_refusal("invalid", "a referral goes to another hospital (from and to are both " +
                                                q.from_hospital() + ")"));
    }
    if (command.subject().identifiers().empty()) {
      return reject(make_refusal("invalid", "a referral names its patient by at least one identifier"));
    }
    if (!q.linked_referral_id().empty()) {
      const auto* up = find(q.linked_referral_id());
      if (up == nullptr) {
        return reject(make_refusal("unknown_linked_referral",
                                   "referral " + q.linked_referral_id() + " (the one this follows) is unknown"));
      }
      if (up->to_hospital != q.from_hospital() && up->from_hospital != q.from_hospital()) {
        return reject(make_refusal("not_allowed", "a referral may only follow one its sender took part in (" +
                                                      q.linked_referral_id() + " is between " + up->from_hospital +
                                                      " and " + up->to_hospital + ")"));
      }
    }
    const state wanted = q.state() == ev::REFERRAL_STATE_DRAFT ? ev::REFERRAL_STATE_DRAFT : ev::REFERRAL_STATE_REQUESTED;
    auto to = next_state(ev::REFERRAL_STATE_UNSPECIFIED, c.action(), parties_of(c, q.from_hospital(), q.to_hospital()),
                         wanted);
    if (!to) return reject(to.error());
    out.set_type("yilian.events.v1.ReferralRequested");
    *out.mutable_subject() = command.subject();
    auto* body = out.mutable_referral_requested();
    *body = q;
    body->set_referral_id(c.referral_id());
    body->set_state(*to);
    if (body->direction() == ev::REFERRAL_DIRECTION_UNSPECIFIED) {
      body->set_direction(direction_between(cfg_, q.from_hospital(), q.to_hospital()));
    }
    if (!body->has_effective_at()) *body->mutable_effective_at() = to_timestamp(now);
    const seconds deadline = deadline_after(*to, now, nullptr);
    if (deadline > seconds{} && (!q.has_expires_at() || to_seconds(q.expires_at()) > deadline)) {
      *body->mutable_expires_at() = to_timestamp(deadline);
    }
    body->set_command_id(c.command_id());
    body->set_version(1);
    body->set_actor_hospital(c.actor_hospital());
    out.mutable_source()->set_hospital(q.from_hospital());
    return out;
  }

  if (r == nullptr) return reject(make_refusal("not_found", "no referral " + c.referral_id()));
  // Decided by the writer, in log order: a change made between the caller's
  // read and this command is never overwritten unseen.
  if (c.expected_version() != 0 && c.expected_version() != r->version) {
    return reject(make_refusal("version_mismatch", "referral " + r->id + " is at version " + std::to_string(r->version) +
                                                       ", not " + std::to_string(c.expected_version()) + "; read it again"));
  }
  auto to = next_state(r->st, c.action(), parties_of(c, r->from_hospital, r->to_hospital));
  if (!to) return reject(to.error());
  // The engine's timer expires a referral only once its deadline has passed
  // (an answer decided in the same batch set a new one, or none).
  if (c.action() == ev::REFERRAL_ACTION_EXPIRE && c.engine() && !c.actor_is_operator() &&
      (r->expires_at == seconds{} || r->expires_at > now)) {
    return reject(make_refusal("not_due", "referral " + r->id + " has not reached its deadline"));
  }
  if (c.action() == ev::REFERRAL_ACTION_REJECT && c.reason().code().empty() && c.reason_text().empty()) {
    return reject(make_refusal("reason_required", "a rejection says why (reason code or text)"));
  }
  out.set_type("yilian.events.v1.ReferralStateChanged");
  *out.mutable_subject() = r->subject;
  auto* body = out.mutable_referral_state_changed();
  body->set_referral_id(r->id);
  body->set_direction(r->direction);
  body->set_previous_state(r->st);
  body->set_state(*to);
  body->set_source_status(c.source_status());
  *body->mutable_reason() = c.reason();
  body->set_reason_text(c.reason_text());
  body->set_actor_hospital(c.actor_hospital());
  *body->mutable_actor() = c.actor_provider();
  body->set_appointment_id(!c.appointment_id().empty() ? c.appointment_id() : r->appointment_id);
  if (c.has_appointment_start()) {
    *body->mutable_appointment_start() = c.appointment_start();
  } else if (r->appointment_start > seconds{}) {
    *body->mutable_appointment_start() = to_timestamp(r->appointment_start);
  }
  body->set_encounter_id(!c.encounter_id().empty() ? c.encounter_id() : r->encounter_id);
  body->set_report_id(c.report_id());
  body->set_linked_referral_id(r->linked_referral_id);
  body->set_command_id(c.command_id());
  body->set_version(r->version + 1);
  body->set_action(c.action());
  body->set_booking_id(!c.booking_id().empty() ? c.booking_id() : r->booking_id);
  body->set_from_hospital(r->from_hospital);
  body->set_to_hospital(r->to_hospital);
  body->set_external_referral_id(c.external_referral_id());
  // A modification may bring an earlier expiry of its own (RF1-8).
  referral_view modified;
  const referral_view* basis = r;
  if (c.action() == ev::REFERRAL_ACTION_MODIFY && c.has_request() && c.request().has_expires_at()) {
    modified = *r;
    *modified.request.mutable_expires_at() = c.request().expires_at();
    basis = &modified;
  }
  const seconds deadline = deadline_after(*to, now, basis);
  if (deadline > seconds{}) *body->mutable_expires_at() = to_timestamp(deadline);
  auto* corr = out.mutable_correlation();
  corr->set_appointment_id(body->booking_id().empty() ? body->appointment_id() : body->booking_id());
  corr->set_encounter_id(body->encounter_id());
  out.mutable_source()->set_hospital(c.actor_hospital().empty() ? r->to_hospital : c.actor_hospital());
  if (c.action() == ev::REFERRAL_ACTION_MODIFY) {
    // The new details travel in the decision too (REF^I13 to the receiver).
    out.set_type("yilian.events.v1.ReferralRequested");
    auto* req = out.mutable_referral_requested();
    // A modification without details (REF^I13 carrying only RF1) keeps them.
    *req = c.has_request() ? c.request() : r->request;
    req->set_referral_id(r->id);
    req->set_direction(r->direction);
    req->set_state(*to);
    req->set_from_hospital(r->from_hospital);
    req->set_to_hospital(r->to_hospital);
    req->set_linked_referral_id(r->linked_referral_id);
    req->set_command_id(c.command_id());
    req->set_version(r->version + 1);
    req->set_actor_hospital(c.actor_hospital());
    if (deadline > seconds{}) *req->mutable_expires_at() = to_timestamp(deadline);
    if (!command.subject().identifiers().empty()) *out.mutable_subject() = command.subject();
  }
  return out;
}

step ledger::apply(const ev::Envelope& e) {
  if (e.source().protocol() != ev::PROTOCOL_ENGINE) return {};  // hospitals' reports: the feed's business
  switch (e.body_case()) {
    case ev::Envelope::kReferralRequested: return apply_requested(e);
    case ev::Envelope::kReferralStateChanged: return apply_changed(e);
    case ev::Envelope::kReferralCommandRejected: return apply_rejection(e);
    default: return {};
  }
}

step ledger::apply_tentatively(const ev::Envelope& e) {
  tentative_ = true;
  auto s = apply(e);
  tentative_ = false;
  return s;
}

void ledger::undo_tentative() {
  while (!undo_.empty()) {
    auto u = std::move(undo_.back());
    undo_.pop_back();
    if (!u.command_id.empty()) {
      decided_.erase(u.command_id);
      if (!decided_order_.empty() && decided_order_.back().second == u.command_id) decided_order_.pop_back();
    }
    if (u.referral_id.empty()) continue;
    if (auto it = referrals_.find(u.referral_id); it != referrals_.end()) {
      index(*it->second, false);
      referrals_.erase(it);
    }
    if (u.before) {
      index(*u.before, true);
      referrals_.emplace(u.referral_id, std::move(u.before));
    }
  }
}

std::optional<outcome> ledger::decided(std::string_view command_id) const {
  const auto it = decided_.find(std::string(command_id));
  if (it == decided_.end()) return std::nullopt;
  return it->second;
}

void ledger::remember(const std::string& command_id, outcome o, seconds at) {
  if (command_id.empty()) return;
  if (tentative_) undo_.push_back(undo_entry{.command_id = command_id});
  decided_.insert_or_assign(command_id, std::move(o));
  decided_order_.emplace_back(at, command_id);
  if (tentative_) return;
  while (!decided_order_.empty() && decided_order_.front().first + options_.idempotency_window < at) {
    decided_.erase(decided_order_.front().second);
    decided_order_.pop_front();
  }
}

void ledger::index(const referral_view& r, bool add) {
  auto toggle_vec = [&](std::vector<std::string>& v) {
    if (add) {
      if (std::find(v.begin(), v.end(), r.id) == v.end()) v.push_back(r.id);
    } else {
      std::erase(v, r.id);
    }
  };
  toggle_vec(by_hospital_[r.from_hospital]);
  toggle_vec(by_hospital_[r.to_hospital]);
  if (!r.booking_id.empty()) {
    if (add) {
      by_booking_[r.booking_id] = r.id;
    } else if (auto it = by_booking_.find(r.booking_id); it != by_booking_.end() && it->second == r.id) {
      by_booking_.erase(it);
    }
  }
  for (const auto& i : r.subject.identifiers()) {
    const std::string k = id_key(i);
    auto [b, e] = by_identifier_.equal_range(k);
    auto found = std::find_if(b, e, [&](const auto& kv) { return kv.second == r.id; });
    if (add && found == e && !is_final(r.st)) by_identifier_.emplace(k, r.id);
    if (!add && found != e) by_identifier_.erase(found);
  }
  if (!r.linked_referral_id.empty()) {
    if (add) {
      by_linked_[r.linked_referral_id].insert(r.id);
    } else if (auto it = by_linked_.find(r.linked_referral_id); it != by_linked_.end()) {
      it->second.erase(r.id);
      if (it->second.empty()) by_linked_.erase(it);
    }
  }
  if (r.expires_at > seconds{}) {
    if (add) {
      deadlines_.emplace(r.expires_at, r.id);
    } else {
      deadlines_.erase({r.expires_at, r.id});
    }
  }
}

void ledger::put(const referral_view* before, referral_view after) {
  const std::string id = after.id;
  auto next = std::make_shared<const referral_view>(std::move(after));
  if (auto it = referrals_.find(id); it != referrals_.end()) {
    // The version replaced is kept as it is for the undo (versions are immutable).
    if (tentative_) undo_.push_back(undo_entry{.referral_id = id, .before = before != nullptr ? it->second : nullptr});
    index(*it->second, false);
    it->second = std::move(next);
    index(*it->second, true);
  } else {
    if (tentative_) undo_.push_back(undo_entry{.referral_id = id});
    auto [pos, ok] = referrals_.emplace(id, std::move(next));
    index(*pos->second, true);
  }
}

step ledger::apply_requested(const ev::Envelope& e) {
  const auto& q = e.referral_requested();
  step s{.is_decision = true, .command_id = q.command_id(), .subject_id = q.referral_id()};
  if (q.command_id().empty() || decided_.contains(q.command_id())) return s;
  const referral_view* cur = find(q.referral_id());
  const seconds at = to_seconds(e.occurred_at());
  const std::uint64_t expected = cur == nullptr ? 1 : cur->version + 1;
  const bool create = cur == nullptr;
  bool holds = q.version() == expected;
  if (holds && create) {
    holds = next_state(ev::REFERRAL_STATE_UNSPECIFIED, ev::REFERRAL_ACTION_CREATE, referrer, q.state()).has_value();
  }
  if (holds && !create) {
    // MODIFY: the state is kept.
    holds = next_state(cur->st, ev::REFERRAL_ACTION_MODIFY, referrer | operator_ | receiver | engine).has_value() &&
            q.state() == cur->st;
  }
  if (!holds) {
    s.voided = true;
    s.refused = make_refusal("stale", "referral " + q.referral_id() + " changed before this decision took effect");
    remember(q.command_id(), outcome{.subject_id = q.referral_id(), .refused = s.refused}, at);
    return s;
  }
  referral_view r = create ? referral_view{} : *cur;
  r.id = q.referral_id();
  r.version = q.version();
  r.updated_at = at;
  if (create) {
    r.direction = q.direction();
    r.from_hospital = q.from_hospital();
    r.to_hospital = q.to_hospital();
    r.created_at = at;
    r.linked_referral_id = q.linked_referral_id();
    r.st = q.state();
  }
  r.request = q;
  r.request.clear_command_id();
  if (!e.subject().identifiers().empty()) r.subject = e.subject();
  r.expires_at = q.has_expires_at() ? to_seconds(q.expires_at()) : seconds{};
  r.history.push_back(referral_step{.version = r.version,
                                    .from = create ? ev::REFERRAL_STATE_UNSPECIFIED : r.st,
                                    .to = r.st,
                                    .act = create ? ev::REFERRAL_ACTION_CREATE : ev::REFERRAL_ACTION_MODIFY,
                                    .at = at,
                                    .actor = e.source().principal(),
                                    .actor_hospital = q.actor_hospital(),
                                    .event_id = e.event_id()});
  if (create) {
    // Referrals that named this one before it was applied.
    if (const auto it = by_linked_.find(r.id); it != by_linked_.end()) {
      r.followed_by.assign(it->second.begin(), it->second.end());
    }
    if (!r.linked_referral_id.empty()) {
      if (const auto* up = find(r.linked_referral_id)) {
        referral_view linked = *up;
        linked.followed_by.push_back(r.id);
        std::sort(linked.followed_by.begin(), linked.followed_by.end());
        linked.followed_by.erase(std::unique(linked.followed_by.begin(), linked.followed_by.end()),
                                 linked.followed_by.end());
        put(up, std::move(linked));
      }
    }
  }
  put(cur, std::move(r));
  s.changed = true;
  remember(q.command_id(), outcome{.subject_id = q.referral_id()}, at);
  return s;
}

step ledger::apply_changed(const ev::Envelope& e) {
  const auto& c = e.referral_state_changed();
  step s{.is_decision = true, .command_id = c.command_id(), .subject_id = c.referral_id()};
  if (c.command_id().empty() || decided_.contains(c.command_id())) return s;
  const referral_view* cur = find(c.referral_id());
  const seconds at = to_seconds(e.occurred_at());
  bool holds = cur != nullptr && c.version() == cur->version + 1 && c.previous_state() == cur->st;
  if (holds) {
    // Any party that could take the row: the writer checked who asked.
    auto to = next_state(cur->st, c.action(), referrer | receiver | operator_ | engine, c.state());
    holds = to.has_value() && *to == c.state();
  }
  if (!holds) {
    s.voided = true;
    s.refused = make_refusal("stale", "referral " + c.referral_id() + " changed before this decision took effect");
    remember(c.command_id(), outcome{.subject_id = c.referral_id(), .refused = s.refused}, at);
    return s;
  }
  referral_view r = *cur;
  r.st = c.state();
  r.version = c.version();
  r.updated_at = at;
  r.expires_at = c.has_expires_at() ? to_seconds(c.expires_at()) : seconds{};
  std::string detail;
  switch (c.action()) {
    case ev::REFERRAL_ACTION_ACCEPT:
      if (!c.external_referral_id().empty()) r.external_id = c.external_referral_id();
      break;
    case ev::REFERRAL_ACTION_SCHEDULE:
      r.booking_id = c.booking_id();
      r.appointment_id = c.appointment_id();
      r.appointment_start = c.has_appointment_start() ? to_seconds(c.appointment_start()) : seconds{};
      detail = !r.booking_id.empty() ? r.booking_id : r.appointment_id;
      break;
    case ev::REFERRAL_ACTION_ARRIVE:
    case ev::REFERRAL_ACTION_COMPLETE:
      r.encounter_id = c.encounter_id();
      detail = r.encounter_id;
      break;
    case ev::REFERRAL_ACTION_RETURN_REPORT:
      if (!c.report_id().empty() &&
          std::find(r.report_ids.begin(), r.report_ids.end(), c.report_id()) == r.report_ids.end()) {
        r.report_ids.push_back(c.report_id());
      }
      detail = c.report_id();
      break;
    default:
      break;
  }
  r.history.push_back(referral_step{.version = r.version,
                                    .from = c.previous_state(),
                                    .to = c.state(),
                                    .act = c.action(),
                                    .at = at,
                                    .actor = e.source().principal(),
                                    .actor_hospital = c.actor_hospital(),
                                    .reason = !c.reason_text().empty() ? c.reason_text() : c.reason().code(),
                                    .detail = std::move(detail),
                                    .event_id = e.event_id()});
  put(cur, std::move(r));
  s.changed = true;
  remember(c.command_id(), outcome{.subject_id = c.referral_id()}, at);
  return s;
}

step ledger::apply_rejection(const ev::Envelope& e) {
  const auto& rej = e.referral_command_rejected();
  step s{.is_decision = true, .command_id = rej.command_id(), .subject_id = rej.referral_id()};
  if (rej.command_id().empty() || decided_.contains(rej.command_id())) return s;
  s.refused = make_refusal(rej.code(), rej.message());
  remember(rej.command_id(), outcome{.subject_id = rej.referral_id(), .refused = s.refused}, to_seconds(e.occurred_at()));
  return s;
}

const referral_view* ledger::find(std::string_view id) const {
  const auto it = referrals_.find(std::string(id));
  return it == referrals_.end() ? nullptr : it->second.get();
}

std::shared_ptr<const referral_view> ledger::share(std::string_view id) const {
  const auto it = referrals_.find(std::string(id));
  return it == referrals_.end() ? nullptr : it->second;
}

const referral_view* ledger::find_by_booking(std::string_view booking_id) const {
  const auto it = by_booking_.find(std::string(booking_id));
  return it == by_booking_.end() ? nullptr : find(it->second);
}

std::vector<const referral_view*> ledger::find_by_patient(std::string_view to_hospital,
                                                          const google::protobuf::RepeatedPtrField<ev::Identifier>& ids,
                                                          std::initializer_list<state> states) const {
  std::vector<const referral_view*> out;
  for (const auto& i : ids) {
    auto [b, e] = by_identifier_.equal_range(id_key(i));
    for (auto it = b; it != e; ++it) {
      const auto* r = find(it->second);
      if (r == nullptr || r->to_hospital != to_hospital) continue;
      if (std::find(states.begin(), states.end(), r->st) == states.end()) continue;
      if (std::find(out.begin(), out.end(), r) == out.end()) out.push_back(r);
    }
  }
  std::sort(out.begin(), out.end(), [](const auto* a, const auto* b) { return a->updated_at > b->updated_at; });
  return out;
}

std::vector<const referral_view*> ledger::referrals_of(std::string_view hospital, std::size_t limit) const {
  std::vector<const referral_view*> out;
  const auto it = by_hospital_.find(std::string(hospital));
  if (it == by_hospital_.end()) return out;
  for (const auto& id : it->second) {
    if (const auto* r = find(id)) out.push_back(r);
  }
  std::sort(out.begin(), out.end(), [](const auto* a, const auto* b) {
    return a->updated_at != b->updated_at ? a->updated_at > b->updated_at : a->id < b->id;
  });
  if (out.size() > limit) out.resize(limit);
  return out;
}

std::vector<const referral_view*> ledger::all(std::size_t limit) const {
  std::vector<const referral_view*> out;
  out.reserve(referrals_.size());
  for (const auto& [id, r] : referrals_) out.push_back(r.get());
  std::sort(out.begin(), out.end(), [](const auto* a, const auto* b) {
    return a->updated_at != b->updated_at ? a->updated_at > b->updated_at : a->id < b->id;
  });
  if (out.size() > limit) out.resize(limit);
  return out;
}

std::vector<const referral_view*> ledger::overdue(seconds now) const {
  std::vector<const referral_view*> out;
  for (const auto& [at, id] : deadlines_) {
    if (at > now) break;
    const auto* r = find(id);
    if (r != nullptr && (awaits_answer(r->st) || r->st == ev::REFERRAL_STATE_ACCEPTED)) out.push_back(r);
  }
  return out;
}

}  // namespace yilian::workflows::referral
