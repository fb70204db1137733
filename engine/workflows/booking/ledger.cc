#include "engine/workflows/booking/ledger.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <limits>
#include <set>

namespace yilian::workflows::booking {

namespace {

using namespace std::chrono_literals;

// Rejection codes -> how the API answers them (engine/api/problem.h maps errc).
errc refusal_kind(std::string_view code) {
  if (code == "unknown_equipment" || code == "unknown_booking") return errc::not_found;
  if (code == "not_allowed") return errc::permission_denied;
  if (code == "unknown_exam" || code == "slot_in_past" || code == "outside_schedule" || code == "invalid" ||
      code == "too_early") {
    return errc::validation_failed;
  }
  return errc::conflict;  // slot_taken, blocked, over_share, hold_expired, hold_not_expired, wrong_transition, stale
}

refusal make_refusal(std::string code, std::string message) {
  const errc kind = refusal_kind(code);
  return refusal{.kind = kind, .code = std::move(code), .message = std::move(message)};
}

// The slot a booking counts in its machine's use with (ledger::use_of): the
// one it has, or had last (a cancelled booking keeps it in its history); none
// for holds and requests that never became bookings.
std::optional<interval> counted_slot(const booking_view& b) {
  if (std::none_of(b.history.begin(), b.history.end(),
                   [](const booking_step& h) { return h.to == ev::BOOKING_STATE_BOOKED; })) {
    return std::nullopt;
  }
  if (b.has_slot()) return b.slot;
  for (auto h = b.history.rbegin(); h != b.history.rend(); ++h) {
    if (h->slot.end > h->slot.start) return h->slot;
  }
  return std::nullopt;
}

std::string two(int v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%02d", v);
  return buf;
}

}  // namespace

std::string format_local(seconds t, const time_zone& zone) {
  const std::int64_t utc = t.time_since_epoch().count();
  const std::int32_t off = zone.offset_at(utc);
  const std::int64_t local = utc + off;
  const std::int64_t day = floor_div(local, 86400);
  const std::int64_t sod = local - day * 86400;
  const auto date = civil_from_days(day);
  const std::int32_t aoff = off < 0 ? -off : off;
  // Written into a buffer: this runs for every time in every booking answer.
  char buf[48];
  char* p = std::to_chars(buf, buf + 16, date.year).ptr;
  auto put = [&p](char sep, std::int64_t v) {
    *p++ = sep;
    *p++ = static_cast<char>('0' + v / 10 % 10);
    *p++ = static_cast<char>('0' + v % 10);
  };
  put('-', date.month);
  put('-', date.day);
  put('T', sod / 3600);
  put(':', sod / 60 % 60);
  put(':', sod % 60);
  put(off < 0 ? '-' : '+', aoff / 3600);
  put(':', aoff / 60 % 60);
  return std::string(buf, p);
}

result<seconds> parse_instant(std::string_view text, const time_zone& zone) {
  auto bad = [&] {
    return fail(errc::invalid_argument,
                "not a date-time: expected YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][Z|+HH:MM]");
  };
  auto num = [&](std::size_t pos, std::size_t n, std::int32_t& out) {
    if (pos + n > text.size()) return false;
    const auto [ptr, ec] = std::from_chars(text.data() + pos, text.data() + pos + n, out);
    return ec == std::errc{} && ptr == text.data() + pos + n;
  };
  std::int32_t y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  if (!num(0, 4, y) || text.size() < 10 || text[4] != '-' || text[7] != '-' || !num(5, 2, mo) || !num(8, 2, d) ||
      mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo)) {
    return bad();
  }
  std::size_t pos = 10;
  if (pos < text.size()) {
    if (text[pos] != 'T' && text[pos] != ' ') return bad();
    if (!num(pos + 1, 2, h) || pos + 3 >= text.size() || text[pos + 3] != ':' || !num(pos + 4, 2, mi)) return bad();
    pos += 6;
    if (pos < text.size() && text[pos] == ':') {
      if (!num(pos + 1, 2, s)) return bad();
      pos += 3;
      if (pos < text.size() && text[pos] == '.') {
        ++pos;
        while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') ++pos;  // fractions are dropped
      }
    }
    if (h > 23 || mi > 59 || s > 60) return bad();
  }
  const std::int64_t local = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + std::min(s, 59);
  if (pos == text.size()) return seconds(std::chrono::seconds(zone.to_utc(local)));
  if (text[pos] == 'Z' && pos + 1 == text.size()) return seconds(std::chrono::seconds(local));
  std::int32_t oh = 0, om = 0;
  if ((text[pos] != '+' && text[pos] != '-') || text.size() != pos + 6 || !num(pos + 1, 2, oh) ||
      text[pos + 3] != ':' || !num(pos + 4, 2, om) || oh > 14 || om > 59) {
    return bad();
  }
  const std::int64_t off = (oh * 3600 + om * 60) * (text[pos] == '-' ? -1 : 1);
  return seconds(std::chrono::seconds(local - off));
}

result<std::unique_ptr<ledger>> ledger::create(const config::loaded_consortium& cfg, ledger_options options) {
  std::unique_ptr<ledger> l(new ledger(cfg, options));
  for (const auto& e : cfg.consortium.equipment()) {
    auto cal = calendar::compile(e, cfg.consortium.time_zone());
    if (!cal) return std::unexpected(cal.error());
    equipment_state st;
    st.cal = std::move(*cal);
    st.modality = e.modality();
    if (const auto* h = cfg.hospital(e.hospital())) st.owner_tier = h->tier();
    l->equipment_.emplace(e.id(), std::move(st));
  }
  return l;
}

ledger::equipment_state* ledger::state_of(std::string_view id) {
  const auto it = equipment_.find(std::string(id));
  return it == equipment_.end() ? nullptr : &it->second;
}

const ledger::equipment_state* ledger::state_of(std::string_view id) const {
  const auto it = equipment_.find(std::string(id));
  return it == equipment_.end() ? nullptr : &it->second;
}

const booking_view* ledger::find(std::string_view booking_id) const {
  const auto it = bookings_.find(std::string(booking_id));
  return it == bookings_.end() ? nullptr : it->second.get();
}

std::shared_ptr<const booking_view> ledger::share(std::string_view booking_id) const {
  const auto it = bookings_.find(std::string(booking_id));
  return it == bookings_.end() ? nullptr : it->second;
}

const calendar* ledger::equipment(std::string_view id) const {
  const auto* st = state_of(id);
  return st == nullptr ? nullptr : &st->cal;
}

std::vector<const calendar*> ledger::all_equipment() const {
  std::vector<const calendar*> out;
  for (const auto& [id, st] : equipment_) out.push_back(&st.cal);
  std::sort(out.begin(), out.end(),
            [](const calendar* a, const calendar* b) { return a->equipment_id() < b->equipment_id(); });
  return out;
}

const std::vector<owner_block>* ledger::blocks(std::string_view equipment_id) const {
  const auto* st = state_of(equipment_id);
  return st == nullptr ? nullptr : &st->blocks;
}

std::optional<ledger::outcome> ledger::decided(std::string_view command_id) const {
  const auto it = decided_.find(std::string(command_id));
  if (it == decided_.end()) return std::nullopt;
  return it->second;
}

std::optional<refusal> ledger::check_slot(const equipment_state& eq, std::string_view booking_id,
                                          std::string_view requesting_hospital, const interval& slot,
                                          seconds at) const {
  const auto& zone = eq.cal.zone();
  if (!eq.cal.window_containing(slot)) {
    return make_refusal("outside_schedule", eq.cal.equipment_id() + " does not work from " +
                                                format_local(slot.start, zone) + " to " +
                                                format_local(slot.end, zone));
  }
  for (const auto& b : eq.cal.blocked()) {
    if (b.when.overlaps(slot)) {
      return make_refusal("blocked", eq.cal.equipment_id() + " is closed from " + format_local(b.when.start, zone) +
                                         " to " + format_local(b.when.end, zone) +
                                         (b.reason.empty() ? std::string() : ": " + b.reason));
    }
  }
  for (const auto& b : eq.blocks) {
    if (b.when.overlaps(slot)) {
      return make_refusal("blocked", "the owner closed " + eq.cal.equipment_id() + " from " +
                                         format_local(b.when.start, zone) + " to " +
                                         format_local(b.when.end, zone) +
                                         (b.reason.empty() ? std::string() : ": " + b.reason));
    }
  }
  // Occupied intervals never overlap, so they are sorted by end too: walk back
  // from the first one starting at or after the slot's end.
  auto it = eq.occupied.lower_bound(slot.end);
  while (it != eq.occupied.begin()) {
    --it;
    const auto& [start, entry] = *it;
    if (entry.first <= slot.start) break;
    if (entry.second == booking_id) continue;
    const auto* other = find(entry.second);
    if (other != nullptr && other->st == ev::BOOKING_STATE_HELD && other->hold_expires_at <= at) continue;
    return make_refusal("slot_taken", "the slot from " + format_local(slot.start, zone) + " on " +
                                          eq.cal.equipment_id() + " is taken");
  }
  if (!requesting_hospital.empty() && requesting_hospital != eq.cal.hospital()) {
    const std::int64_t day = eq.cal.local_day(slot.start);
    std::int64_t used = 0;
    if (const auto u = eq.share_used.find(day); u != eq.share_used.end()) used = u->second;
    if (const auto* self = find(booking_id);
        self != nullptr && self->takes_time() && eq.cal.local_day(self->slot.start) == day) {
      used -= self->slot.length().count();
    }
    // Holds that ran out give their minutes back even before their release.
    for (const auto& [expires, id] : holds_) {
      if (expires > at) break;
      const auto* held = find(id);
      if (held == nullptr || id == booking_id || held->equipment_id != eq.cal.equipment_id() || !held->takes_time() ||
          held->requesting_hospital == eq.cal.hospital() || eq.cal.local_day(held->slot.start) != day) {
        continue;
      }
      used -= held->slot.length().count();
    }
    const std::int64_t quota = eq.cal.share_minutes(day);
    if (used + slot.length().count() > quota) {
      return make_refusal("over_share", "the consortium's share of " + eq.cal.equipment_id() + " on that day is used up (" +
                                            std::to_string(used) + " of " + std::to_string(quota) + " minutes)");
    }
  }
  return std::nullopt;
}

namespace {

ev::Envelope decision_envelope(const ev::Envelope& command, seconds now, std::string_view hospital,
                               std::string_view system) {
  const auto& c = command.booking_command();
  ev::Envelope out;
  out.set_event_id("booking-decision:" + c.command_id());
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
  return out;
}

}  // namespace

ev::Envelope ledger::decide(const ev::Envelope& command, seconds now) const {
  const auto& c = command.booking_command();
  const auto* eq = state_of(c.equipment_id());
  const std::string owner_hospital = eq != nullptr ? eq->cal.hospital() : std::string();
  auto out = decision_envelope(command, now, owner_hospital, options_.engine_system);
  *out.mutable_subject() = command.subject();
  auto reject = [&](const refusal& r) {
    out.set_type("yilian.events.v1.BookingCommandRejected");
    auto* rej = out.mutable_booking_command_rejected();
    rej->set_command_id(c.command_id());
    rej->set_booking_id(c.booking_id());
    rej->set_action(c.action());
    rej->set_code(r.code);
    rej->set_message(r.message);
    rej->set_equipment_id(c.equipment_id());
    out.mutable_correlation()->set_appointment_id(c.booking_id());
    return out;
  };
  if (c.command_id().empty()) return reject(make_refusal("invalid", "command_id is required"));
  if (eq == nullptr) {
    return reject(make_refusal("unknown_equipment", "no shared equipment \"" + c.equipment_id() + "\""));
  }
  const booking_view* b = c.booking_id().empty() ? nullptr : find(c.booking_id());
  if (b != nullptr && b->equipment_id != c.equipment_id()) {
    return reject(make_refusal("invalid", "booking " + c.booking_id() + " is on " + b->equipment_id));
  }
  const std::string requesting = b != nullptr ? b->requesting_hospital : c.requesting_hospital();
  parties who = 0;
  if (c.actor_is_operator()) who |= operator_;
  if (c.engine()) who |= engine;
  if (!c.actor_hospital().empty()) {
    if (c.actor_hospital() == requesting) who |= requester;
    if (c.actor_hospital() == owner_hospital) who |= owner;
  }
  if (c.action() == ev::BOOKING_ACTION_BLOCK || c.action() == ev::BOOKING_ACTION_OPEN) {
    return decide_availability(command, c, who, now);
  }
  if (c.booking_id().empty()) return reject(make_refusal("invalid", "booking_id is required"));
  const bool creates = c.action() == ev::BOOKING_ACTION_REQUEST || c.action() == ev::BOOKING_ACTION_HOLD ||
                       c.action() == ev::BOOKING_ACTION_BOOK;
  if (b == nullptr && creates && cfg_.hospital(requesting) == nullptr) {
    return reject(make_refusal("invalid", "requesting hospital \"" + requesting + "\" is not in the consortium"));
  }
  const state from = b != nullptr ? b->st : ev::BOOKING_STATE_UNSPECIFIED;
  const auto to = next_state(from, c.action(), who);
  if (!to) return reject(to.error());

  out.set_type("yilian.events.v1.AppointmentChanged");
  auto* ac = out.mutable_appointment_changed();
  ac->set_appointment_id(c.booking_id());
  ac->set_previous_state(from);
  ac->set_state(*to);
  ac->set_action(c.action());
  ac->set_version((b != nullptr ? b->version : 0) + 1);
  ac->set_command_id(c.command_id());
  ac->set_filler_status_code(std::string(hl7_filler_status(*to)));
  ac->set_equipment_id(c.equipment_id());
  ac->set_owning_hospital(owner_hospital);
  ac->set_requesting_hospital(requesting);
  ac->set_booked_by(c.actor());
  ac->set_actor_hospital(c.actor_hospital());
  *ac->mutable_requested_at() = to_timestamp(b != nullptr ? b->requested_at : now);
  if (b != nullptr) {
    *ac->mutable_patient() = b->patient;
    *out.mutable_subject() = b->subject;
    ac->set_placer_order(b->placer_order);
    ac->set_referral_id(b->referral_id);
  } else {
    *ac->mutable_patient() = c.patient();
    // Without the clinic's own order number yilian is the placer: the
    // booking id is the order number the owner's RIS echoes back (ORC-2).
    ac->set_placer_order(c.placer_order().empty() ? c.booking_id() : c.placer_order());
    ac->set_referral_id(c.referral_id());
  }
  if (c.has_reason()) *ac->mutable_reason() = c.reason();
  std::string exam = !c.exam_code().empty() ? c.exam_code() : (b != nullptr ? b->exam_code : std::string());
  interval slot = b != nullptr ? b->slot : interval{};

  switch (c.action()) {
    case ev::BOOKING_ACTION_REQUEST:
    case ev::BOOKING_ACTION_HOLD:
    case ev::BOOKING_ACTION_BOOK:
    case ev::BOOKING_ACTION_RESCHEDULE: {
      if (exam.empty()) return reject(make_refusal("invalid", "exam_code is required"));
      const auto duration = eq->cal.duration_of(exam);
      if (!duration) {
        return reject(make_refusal("unknown_exam", c.equipment_id() + " does not do exam " + exam));
      }
      if (c.action() == ev::BOOKING_ACTION_REQUEST) {
        slot = interval{};
        break;
      }
      if (c.has_start()) {
        const seconds start = to_seconds(c.start());
        slot = interval{start, start + std::chrono::duration_cast<std::chrono::seconds>(*duration)};
      } else if (c.action() == ev::BOOKING_ACTION_BOOK && b != nullptr && b->st == ev::BOOKING_STATE_HELD) {
        if (b->hold_expires_at <= now || b->lapsed) {
          return reject(make_refusal("hold_expired", "the hold on this slot lapsed at " +
                                                         format_local(b->hold_expires_at, eq->cal.zone())));
        }
      } else {
        return reject(make_refusal("invalid", "start is required to " + std::string(action_name(c.action()))));
      }
      if (slot.start < now) {
        return reject(make_refusal("slot_in_past", "the slot starts at " + format_local(slot.start, eq->cal.zone()) +
                                                       ", before now (" + format_local(now, eq->cal.zone()) + ")"));
      }
      if (auto why = check_slot(*eq, c.booking_id(), requesting, slot, now)) return reject(*why);
      if (c.action() == ev::BOOKING_ACTION_HOLD) *ac->mutable_hold_expires_at() = to_timestamp(now + options_.hold_ttl);
      if (c.action() == ev::BOOKING_ACTION_RESCHEDULE && b != nullptr) {
        *ac->mutable_previous_start() = to_timestamp(b->slot.start);
      }
      break;
    }
    case ev::BOOKING_ACTION_EXPIRE_HOLD:
      if (b != nullptr && b->hold_expires_at > now) {
        return reject(make_refusal("hold_not_expired", "the hold runs until " +
                                                           format_local(b->hold_expires_at, eq->cal.zone())));
      }
      slot = interval{};
      break;
    case ev::BOOKING_ACTION_NO_SHOW:
      if (b != nullptr && now < b->slot.start) {
        return reject(make_refusal("too_early", "no-show before the slot starts at " +
                                                    format_local(b->slot.start, eq->cal.zone())));
      }
      break;
    default: break;
  }
  ac->set_trigger(c.action() == ev::BOOKING_ACTION_RESCHEDULE ? "S13"
                  : *to == ev::BOOKING_STATE_CANCELLED    ? "S15"
                  : *to == ev::BOOKING_STATE_NO_SHOW      ? "S26"
                  : *to == ev::BOOKING_STATE_BOOKED       ? "S12"
                                                          : "S14");
  auto* code = ac->mutable_catalogue_code();
  code->set_system("urn:yilian:exam");
  code->set_code(exam);
  if (const auto* et = eq->cal.exam(exam)) code->set_display(et->name());
  *ac->mutable_exam() = *code;
  if (slot.end > slot.start) {
    *ac->mutable_start() = to_timestamp(slot.start);
    *ac->mutable_end() = to_timestamp(slot.end);
    ac->set_duration_minutes(static_cast<std::uint32_t>(slot.length().count()));
  }
  auto* corr = out.mutable_correlation();
  corr->set_appointment_id(c.booking_id());
  corr->set_placer_order(ac->placer_order());
  corr->set_referral_id(ac->referral_id());
  return out;
}

ev::Envelope ledger::decide_availability(const ev::Envelope& command, const ev::BookingCommand& c, parties who,
                                         seconds now) const {
  const auto* eq = state_of(c.equipment_id());
  auto out = decision_envelope(command, now, eq->cal.hospital(), options_.engine_system);
  const bool allowed = (who & (owner | operator_)) != 0;
  const interval range{to_seconds(c.start()), to_seconds(c.end())};
  std::optional<refusal> why;
  if (!allowed) {
    why = make_refusal("not_allowed", "only the owner of " + c.equipment_id() + " or an operator may " +
                                          std::string(action_name(c.action())) + " its time");
  } else if (!c.has_start() || !c.has_end() || range.end <= range.start) {
    why = make_refusal("invalid", "start and end are required, end after start");
  } else if (c.action() == ev::BOOKING_ACTION_BLOCK && c.booking_id().empty()) {
    why = make_refusal("invalid", "a block needs an id (booking_id)");
  }
  if (why) {
    out.set_type("yilian.events.v1.BookingCommandRejected");
    auto* rej = out.mutable_booking_command_rejected();
    rej->set_command_id(c.command_id());
    rej->set_booking_id(c.booking_id());
    rej->set_action(c.action());
    rej->set_code(why->code);
    rej->set_message(why->message);
    rej->set_equipment_id(c.equipment_id());
    return out;
  }
  out.set_type("yilian.events.v1.SlotAvailabilityChanged");
  auto* sac = out.mutable_slot_availability_changed();
  sac->set_equipment_id(c.equipment_id());
  sac->set_hospital(eq->cal.hospital());
  sac->set_slot_id(c.booking_id());
  *sac->mutable_start() = c.start();
  *sac->mutable_end() = c.end();
  sac->set_status(c.action() == ev::BOOKING_ACTION_BLOCK ? ev::SLOT_STATUS_BUSY_UNAVAILABLE : ev::SLOT_STATUS_FREE);
  sac->set_reason(c.reason().display().empty() ? c.reason().code() : c.reason().display());
  sac->set_origin(c.actor_is_operator() ? ev::SLOT_ORIGIN_OPERATOR : ev::SLOT_ORIGIN_HOSPITAL_FEED);
  sac->set_command_id(c.command_id());
  sac->set_capacity(1);
  if (c.action() == ev::BOOKING_ACTION_BLOCK) {
    for (auto it = eq->occupied.begin(); it != eq->occupied.end(); ++it) {
      const interval taken{it->first, it->second.first};
      if (!taken.overlaps(range)) continue;
      const auto* booked = find(it->second.second);
      if (booked != nullptr && booked->takes_time()) sac->add_conflicting_bookings(booked->id);
    }
  }
  return out;
}

applied ledger::apply(const ev::Envelope& event) {
  switch (event.body_case()) {
    case ev::Envelope::kAppointmentChanged: return apply_appointment(event);
    case ev::Envelope::kSlotAvailabilityChanged: return apply_availability(event);
    case ev::Envelope::kBookingCommandRejected: return apply_rejection(event);
    default: return {};
  }
}

applied ledger::apply_tentatively(const ev::Envelope& event, undo_log& log) {
  undo_ = &log;
  auto r = apply(event);
  undo_ = nullptr;
  return r;
}

namespace {
// Erases the last element that `matches` (other machines' later changes may
// stand behind it).
template <class Seq, class Pred>
void erase_last(Seq& seq, Pred matches) {
  for (auto it = seq.end(); it != seq.begin();) {
    --it;
    if (matches(*it)) {
      seq.erase(it);
      return;
    }
  }
}
}  // namespace

void ledger::undo(undo_log& log) {
  while (!log.entries.empty()) {
    auto u = std::move(log.entries.back());
    log.entries.pop_back();
    if (!u.command_id.empty()) {
      decided_.erase(u.command_id);
      erase_last(decided_order_, [&](const auto& d) { return d.second == u.command_id; });
    }
    if (u.blocks_before) {
      if (auto* eq = state_of(u.equipment_id)) eq->blocks = std::move(*u.blocks_before);
    }
    if (u.booking_id.empty()) continue;
    auto it = bookings_.find(u.booking_id);
    if (it == bookings_.end()) continue;
    auto* eq = state_of(it->second->equipment_id);
    if (eq == nullptr) continue;
    if (u.before) {
      put_booking(*eq, it->second.get(), std::move(u.before));
    } else {
      // Created by the undone decision: take it out of every index.
      const auto kept = it->second;  // `current` outlives its map entry
      const booking_view& current = *kept;
      put_booking(*eq, &current, booking_view{.id = current.id, .equipment_id = current.equipment_id});
      for (auto [it2, end] = by_order_.equal_range(current.placer_order); it2 != end; ++it2) {
        if (it2->second == current.id) {
          by_order_.erase(it2);
          break;
        }
      }
      for (const auto& h : {current.requesting_hospital, current.owner}) {
        erase_last(by_hospital_[h], [&](const std::string& id) { return id == current.id; });
      }
      bookings_.erase(current.id);
    }
  }
}

void ledger::remember(const std::string& command_id, outcome o, seconds at) {
  if (command_id.empty()) return;
  if (undo_ != nullptr) undo_->entries.push_back(undo_entry{.command_id = command_id});
  decided_.insert_or_assign(command_id, std::move(o));
  decided_order_.emplace_back(at, command_id);
  // Tentative or not: an undo of an entry forgotten here finds nothing to do.
  while (!decided_order_.empty() && decided_order_.front().first + options_.idempotency_window < at) {
    decided_.erase(decided_order_.front().second);
    decided_order_.pop_front();
  }
}

void ledger::put_booking(equipment_state& eq, const booking_view* before, booking_view after) {
  put_booking(eq, before, std::make_shared<const booking_view>(std::move(after)));
}

void ledger::put_booking(equipment_state& eq, const booking_view* before, std::shared_ptr<const booking_view> next) {
  const booking_view& after = *next;
  if (undo_ != nullptr) {
    // The version replaced is kept as it is (versions are immutable).
    undo_->entries.push_back(
        undo_entry{.booking_id = after.id, .before = before != nullptr ? share(after.id) : nullptr});
  }
  if (before != nullptr) {
    if (const auto slot = counted_slot(*before)) eq.booked.erase({slot->start, before->id});
  }
  if (const auto slot = counted_slot(after)) {
    eq.booked.insert_or_assign({slot->start, after.id}, slot->end);
    eq.longest_booked = std::max(eq.longest_booked, slot->end - slot->start);
  }
  auto share_delta = [&](const booking_view& b, std::int64_t sign) {
    if (b.requesting_hospital == eq.cal.hospital()) return;
    eq.share_used[eq.cal.local_day(b.slot.start)] += sign * b.slot.length().count();
  };
  if (before != nullptr && before->takes_time()) {
    const auto it = eq.occupied.find(before->slot.start);
    if (it != eq.occupied.end() && it->second.second == before->id) eq.occupied.erase(it);
    share_delta(*before, -1);
  }
  if (before != nullptr && before->st == ev::BOOKING_STATE_HELD) holds_.erase({before->hold_expires_at, before->id});
  if (after.takes_time()) {
    eq.occupied.insert_or_assign(after.slot.start, std::make_pair(after.slot.end, after.id));
    share_delta(after, +1);
  }
  // Lapsed holds stay listed: they still need their EXPIRE_HOLD.
  if (after.st == ev::BOOKING_STATE_HELD) holds_.insert({after.hold_expires_at, after.id});
  if (before == nullptr) {
    if (!after.placer_order.empty()) by_order_.emplace(after.placer_order, after.id);
    by_hospital_[after.requesting_hospital].push_back(after.id);
    if (after.owner != after.requesting_hospital) by_hospital_[after.owner].push_back(after.id);
  }
  if (after.st == ev::BOOKING_STATE_UNSPECIFIED) return;  // undo of a creation: the caller erases it
  std::string id = after.id;
  bookings_.insert_or_assign(std::move(id), std::move(next));
}

void ledger::put_blocks(equipment_state& eq, std::vector<owner_block> blocks) {
  if (undo_ != nullptr) {
    undo_->entries.push_back(undo_entry{.equipment_id = eq.cal.equipment_id(), .blocks_before = eq.blocks});
  }
  eq.blocks = std::move(blocks);
}

std::string ledger::conflict_text(const equipment_state& eq, const interval& slot) const {
  for (const auto& blk : eq.blocks) {
    if (!blk.when.overlaps(slot)) continue;
    return "the owner closed " + eq.cal.equipment_id() + " from " + format_local(blk.when.start, eq.cal.zone()) +
           " to " + format_local(blk.when.end, eq.cal.zone()) + (blk.reason.empty() ? std::string() : ": " + blk.reason) +
           "; move or cancel this booking";
  }
  return {};
}

void ledger::refresh_conflicts(equipment_state& eq, const interval& range) {
  std::vector<std::string> touched;
  for (const auto& [start, entry] : eq.occupied) {
    if (interval{start, entry.first}.overlaps(range)) touched.push_back(entry.second);
  }
  for (const auto& id : touched) {
    const auto* b = find(id);
    if (b == nullptr) continue;
    std::string conflict = conflict_text(eq, b->slot);
    if (conflict == b->conflict) continue;
    booking_view next = *b;
    next.conflict = std::move(conflict);
    put_booking(eq, b, std::move(next));
  }
}

applied ledger::apply_appointment(const ev::Envelope& e) {
  const auto& ac = e.appointment_changed();
  applied r{.is_decision = !ac.command_id().empty(), .command_id = ac.command_id(), .booking_id = ac.appointment_id()};
  // Appointments a hospital's own system reports (SIU from its RIS) are
  // inputs for the writer, not decisions; only the engine's decisions count.
  if (e.source().protocol() != ev::PROTOCOL_ENGINE || ac.command_id().empty()) return r;
  if (decided_.contains(ac.command_id())) return r;  // a second decision for one command: the first stands
  auto* eq = state_of(ac.equipment_id());
  if (eq == nullptr) return r;
  const seconds at = to_seconds(e.occurred_at());
  const auto it = bookings_.find(ac.appointment_id());
  const booking_view* b = it == bookings_.end() ? nullptr : it->second.get();
  // A void decision is not remembered: the command may still be decided
  // (a resend, or the writer after a rebalance), and the first decision that
  // holds is the one that counts.
  auto void_it = [&](refusal why) {
    r.voided = true;
    r.refused = std::move(why);
    return r;
  };
  const std::uint64_t current = b != nullptr ? b->version : 0;
  const state from = b != nullptr ? b->st : ev::BOOKING_STATE_UNSPECIFIED;
  if (ac.version() != current + 1 || ac.previous_state() != from) {
    return void_it(make_refusal("stale", "booking " + ac.appointment_id() +
                                             " changed before this decision was recorded; try again"));
  }
  bool legal = false;
  for (const auto& t : transition_table()) legal = legal || (t.from == from && t.act == ac.action() && t.to == ac.state());
  if (!legal) return void_it(make_refusal("wrong_transition", "not a transition of the booking state machine"));

  booking_view next = b != nullptr ? *b : booking_view{};
  next.id = ac.appointment_id();
  next.equipment_id = ac.equipment_id();
  next.owner = eq->cal.hospital();
  next.requesting_hospital = ac.requesting_hospital();
  next.st = ac.state();
  next.exam_code = ac.catalogue_code().code();
  next.slot = ac.has_start() ? interval{to_seconds(ac.start()), to_seconds(ac.end())} : interval{};
  next.hold_expires_at = ac.has_hold_expires_at() ? to_seconds(ac.hold_expires_at()) : seconds{};
  next.lapsed = false;
  next.version = ac.version();
  next.requested_at = to_seconds(ac.requested_at());
  next.updated_at = at;
  if (b == nullptr) {
    next.patient = ac.patient();
    next.subject = e.subject();
    next.placer_order = ac.placer_order();
    next.referral_id = ac.referral_id();
    next.booked_by = ac.booked_by();
  }
  next.conflict = next.takes_time() ? conflict_text(*eq, next.slot) : std::string();
  next.history.push_back(booking_step{.version = ac.version(), .to = ac.state(), .act = ac.action(), .at = at,
                                      .actor = e.source().principal(), .slot = next.slot,
                                      .reason = ac.reason().display().empty() ? ac.reason().code()
                                                                              : ac.reason().display()});
  const bool needs_check = next.takes_time() && (b == nullptr || !b->takes_time() || b->slot != next.slot);
  if (needs_check) {
    if (auto why = check_slot(*eq, next.id, next.requesting_hospital, next.slot, at)) return void_it(*why);
    // Lapsed holds in the way give their slot up for good.
    std::vector<std::string> lapsed;
    auto occ = eq->occupied.lower_bound(next.slot.end);
    while (occ != eq->occupied.begin()) {
      --occ;
      if (occ->second.first <= next.slot.start) break;
      if (occ->second.second != next.id) lapsed.push_back(occ->second.second);
    }
    for (const auto& id : lapsed) {
      const auto* held = find(id);
      if (held == nullptr) continue;
      booking_view gone = *held;
      gone.lapsed = true;
      put_booking(*eq, held, std::move(gone));
    }
  }
  put_booking(*eq, b, std::move(next));
  remember(ac.command_id(), outcome{.booking_id = ac.appointment_id()}, at);
  r.changed = true;
  return r;
}

applied ledger::apply_availability(const ev::Envelope& e) {
  const auto& sac = e.slot_availability_changed();
  applied r{.is_decision = !sac.command_id().empty(), .command_id = sac.command_id()};
  if (!sac.command_id().empty() && decided_.contains(sac.command_id())) return r;
  auto* eq = state_of(sac.equipment_id());
  if (eq == nullptr || !sac.has_start() || !sac.has_end()) return r;
  // A schedule feed (SIU^S23/S24, FHIR Slot) counts only from the machine's owner.
  if (sac.command_id().empty() && e.source().hospital() != eq->cal.hospital()) return r;
  const interval range{to_seconds(sac.start()), to_seconds(sac.end())};
  if (range.end <= range.start) return r;
  std::vector<owner_block> blocks;
  if (sac.status() == ev::SLOT_STATUS_FREE) {
    // Opening a range takes it out of every block (splitting those that straddle it).
    for (const auto& b : eq->blocks) {
      if (!b.when.overlaps(range)) {
        blocks.push_back(b);
        continue;
      }
      if (b.when.start < range.start) blocks.push_back(owner_block{b.id, interval{b.when.start, range.start}, b.reason});
      if (range.end < b.when.end) blocks.push_back(owner_block{b.id, interval{range.end, b.when.end}, b.reason});
    }
  } else {
    blocks = eq->blocks;
    blocks.push_back(owner_block{.id = sac.slot_id().empty() ? e.event_id() : sac.slot_id(), .when = range,
                                 .reason = sac.reason()});
    std::sort(blocks.begin(), blocks.end(),
              [](const owner_block& a, const owner_block& b) { return a.when.start < b.when.start; });
  }
  put_blocks(*eq, std::move(blocks));
  refresh_conflicts(*eq, range);
  remember(sac.command_id(), outcome{.booking_id = sac.slot_id()}, to_seconds(e.occurred_at()));
  r.changed = true;
  return r;
}

applied ledger::apply_rejection(const ev::Envelope& e) {
  const auto& rej = e.booking_command_rejected();
  applied r{.is_decision = true, .command_id = rej.command_id(), .booking_id = rej.booking_id()};
  if (rej.command_id().empty() || decided_.contains(rej.command_id())) return r;
  r.refused = make_refusal(rej.code(), rej.message());
  remember(rej.command_id(), outcome{.booking_id = rej.booking_id(), .refused = r.refused}, to_seconds(e.occurred_at()));
  return r;
}

std::vector<const booking_view*> ledger::bookings_of(std::string_view hospital, std::size_t limit) const {
  std::vector<const booking_view*> out;
  const auto it = by_hospital_.find(std::string(hospital));
  if (it == by_hospital_.end()) return out;
  for (auto id = it->second.rbegin(); id != it->second.rend() && out.size() < limit; ++id) {
    if (const auto* b = find(*id)) out.push_back(b);
  }
  return out;
}

std::vector<const booking_view*> ledger::bookings_on(std::string_view equipment_id, interval when) const {
  std::vector<const booking_view*> out;
  const auto* eq = state_of(equipment_id);
  if (eq == nullptr) return out;
  for (auto it = eq->occupied.lower_bound(when.start - std::chrono::hours(24)); it != eq->occupied.end(); ++it) {
    if (it->first >= when.end) break;
    if (interval{it->first, it->second.first}.overlaps(when)) {
      if (const auto* b = find(it->second.second)) out.push_back(b);
    }
  }
  return out;
}

std::vector<free_slot> ledger::search(const slot_query& q, seconds now) const {
  std::vector<free_slot> out;
  const seconds from = std::max(q.from, now);
  if (q.to <= from || q.limit == 0) return out;
  for (const auto* cal : all_equipment()) {
    const auto& eq = *state_of(cal->equipment_id());
    if (!q.modality.empty() && config::modality_code(eq.modality) != q.modality) continue;
    if (!q.hospital.empty() && cal->hospital() != q.hospital) continue;
    if (!q.equipment_id.empty() && cal->equipment_id() != q.equipment_id) continue;
    if (q.tier != config::v1::TIER_UNSPECIFIED && eq.owner_tier != q.tier) continue;
    const bool own = q.requesting_hospital.empty() || q.requesting_hospital == cal->hospital();
    if (!own && cal->share_percent() == 0) continue;
    const auto duration = cal->duration_of(q.exam_code);
    if (!duration) continue;
    const auto step = std::chrono::duration_cast<std::chrono::seconds>(*duration);
    std::size_t found = 0;
    for (const auto& w : cal->windows(from, q.to)) {
      for (seconds s = w.start; s + step <= w.end && s < q.to && found < q.limit; s += step) {
        if (s < from) continue;
        const interval slot{s, s + step};
        if (check_slot(eq, "", q.requesting_hospital, slot, now)) continue;
        const std::int64_t local = s.time_since_epoch().count() + cal->zone().offset_at(s.time_since_epoch().count());
        const auto d = civil_from_days(floor_div(local, 86400));
        const std::int64_t sod = local - floor_div(local, 86400) * 86400;
        out.push_back(free_slot{.equipment_id = cal->equipment_id(),
                                .hospital = cal->hospital(),
                                .exam_code = q.exam_code,
                                .when = slot,
                                .slot_id = cal->equipment_id() + "." + std::to_string(d.year) + two(d.month) +
                                           two(d.day) + two(static_cast<int>(sod / 3600)) +
                                           two(static_cast<int>(sod / 60 % 60)) + "." + q.exam_code});
        ++found;
      }
      if (found >= q.limit) break;
    }
  }
  std::stable_sort(out.begin(), out.end(), [](const free_slot& a, const free_slot& b) { return a.when.start < b.when.start; });
  if (out.size() > q.limit) out.resize(q.limit);
  return out;
}

const booking_view* ledger::find_by_order(std::string_view order, std::string_view owner) const {
  if (order.empty()) return nullptr;
  if (const auto* b = find(order); b != nullptr && (owner.empty() || b->owner == owner)) return b;
  const booking_view* found = nullptr;
  for (auto [it, end] = by_order_.equal_range(std::string(order)); it != end; ++it) {
    const auto* b = find(it->second);
    if (b == nullptr || (!owner.empty() && b->owner != owner)) continue;
    if (found == nullptr || b->updated_at > found->updated_at) found = b;
  }
  return found;
}

std::vector<const booking_view*> ledger::find_by_patient(std::string_view owner,
                                                         const google::protobuf::RepeatedPtrField<ev::Identifier>& ids,
                                                         interval around) const {
  std::vector<const booking_view*> out;
  if (ids.empty()) return out;
  for (const auto* b : bookings_of(owner, 20000)) {
    if (b->owner != owner || !b->has_slot() || !b->slot.overlaps(around)) continue;
    bool same = false;
    for (const auto& mine : b->subject.identifiers()) {
      for (const auto& theirs : ids) {
        same = same || (!mine.value().empty() && mine.system() == theirs.system() && mine.value() == theirs.value());
      }
    }
    if (same) out.push_back(b);
  }
  return out;
}

std::int64_t utilization::median_wait_seconds() const {
  if (waits_seconds.empty()) return 0;
  std::vector<std::int64_t> w = waits_seconds;
  const auto mid = w.begin() + static_cast<std::ptrdiff_t>(w.size() / 2);
  std::nth_element(w.begin(), mid, w.end());
  if (w.size() % 2 == 1) return *mid;
  const auto lower = *std::max_element(w.begin(), mid);
  return (lower + *mid) / 2;
}

utilization ledger::use_of(std::string_view equipment_id, interval range) const {
  utilization u{.equipment_id = std::string(equipment_id)};
  const auto* eq = state_of(equipment_id);
  if (eq == nullptr || range.end <= range.start) return u;
  auto clip = [&](interval i) {
    const interval c{std::max(i.start, range.start), std::min(i.end, range.end)};
    return c.end > c.start ? c.length().count() : 0;
  };
  std::unordered_map<std::int64_t, std::int64_t> per_day;
  for (const auto& w : eq->cal.windows(range.start, range.end)) {
    const auto m = clip(w);
    u.working_minutes += m;
    per_day[eq->cal.local_day(w.start)] += m;
  }
  for (const auto& [day, minutes] : per_day) {
    u.offered_minutes += std::min(minutes, eq->cal.share_minutes(day));
  }
  std::int64_t blocked = 0;
  for (const auto& b : eq->cal.blocked()) {
    for (const auto& w : eq->cal.windows(b.when.start, b.when.end)) blocked += clip(interval{std::max(w.start, b.when.start), std::min(w.end, b.when.end)});
  }
  for (const auto& b : eq->blocks) {
    for (const auto& w : eq->cal.windows(b.when.start, b.when.end)) blocked += clip(interval{std::max(w.start, b.when.start), std::min(w.end, b.when.end)});
  }
  // Blocked time comes out of the offer in proportion to the share.
  u.offered_minutes = std::max<std::int64_t>(0, u.offered_minutes - blocked * eq->cal.share_percent() / 100);
  // Slots overlapping the range start at most longest_booked before it.
  for (auto it = eq->booked.lower_bound({range.start - eq->longest_booked, std::string()});
       it != eq->booked.end() && it->first.first < range.end; ++it) {
    const interval slot{it->first.first, it->second};
    if (!slot.overlaps(range)) continue;
    const auto* b = find(it->first.second);
    if (b == nullptr) continue;
    ++u.bookings;
    switch (b->st) {
      case ev::BOOKING_STATE_PERFORMED:
      case ev::BOOKING_STATE_REPORTED:
      case ev::BOOKING_STATE_CORRECTED:
        ++u.used;
        u.waits_seconds.push_back((slot.start - b->requested_at).count());
        break;
      case ev::BOOKING_STATE_NO_SHOW: ++u.no_shows; break;
      case ev::BOOKING_STATE_CANCELLED: ++u.cancelled; break;
      default: break;
    }
    if (b->takes_time() && b->st != ev::BOOKING_STATE_HELD && b->requesting_hospital != eq->cal.hospital()) {
      u.booked_minutes += clip(slot);
    }
  }
  return u;
}

std::vector<const booking_view*> ledger::lapsed_holds(seconds now) const {
  std::vector<const booking_view*> out;
  for (const auto& [expires, id] : holds_) {
    if (expires > now) break;
    if (const auto* b = find(id)) out.push_back(b);
  }
  return out;
}

}  // namespace yilian::workflows::booking
