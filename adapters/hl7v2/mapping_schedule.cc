// SIU^S12/S13/S14/S15/S17/S26 -> AppointmentChanged; SIU^S23/S24 ->
// SlotAvailabilityChanged. Both are keyed by the machine: it must resolve.
#include <array>
#include <charconv>

#include "adapters/hl7v2/mapping_internal.h"

namespace yilian::hl7v2::detail {

namespace cfg = config::v1;

namespace {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

// SCH-25 filler status (table 0278) -> booking state; case-insensitive
// because senders write "BOOKED" as often as "Booked".
result<ev::BookingState> booking_state(std::string_view code, const field_ref& where) {
  struct entry {
    std::string_view code;
    ev::BookingState state;
  };
  static constexpr std::array<entry, 10> table{{
      {"Pending", ev::BOOKING_STATE_REQUESTED},
      {"Waitlist", ev::BOOKING_STATE_REQUESTED},
      {"Booked", ev::BOOKING_STATE_BOOKED},
      {"Overbook", ev::BOOKING_STATE_BOOKED},
      {"Started", ev::BOOKING_STATE_CHECKED_IN},
      {"Complete", ev::BOOKING_STATE_PERFORMED},
      {"Cancelled", ev::BOOKING_STATE_CANCELLED},
      {"Dc", ev::BOOKING_STATE_CANCELLED},
      {"Deleted", ev::BOOKING_STATE_CANCELLED},
      {"Noshow", ev::BOOKING_STATE_NO_SHOW},
  }};
  for (const auto& e : table) {
    if (iequals(e.code, code)) return e.state;
  }
  return unknown_code(where.path(), "filler status", code,
                      "table 0278: Pending, Waitlist, Booked, Overbook, Started, Complete, Cancelled, Dc, Deleted, "
                      "Noshow");
}

ev::BookingState state_of_trigger(std::string_view trigger) {
  if (trigger == "S15" || trigger == "S17") return ev::BOOKING_STATE_CANCELLED;
  if (trigger == "S26") return ev::BOOKING_STATE_NO_SHOW;
  return ev::BOOKING_STATE_BOOKED;
}

// Seconds per unit of a duration-units CE (AIS-8, AIG-12, SCH-10); minutes
// when not given (the chapter 10 default).
result<std::int64_t> unit_seconds(const map_context& c, std::string_view ce_raw, const field_ref& where) {
  std::string_view u = component_of(ce_raw, 1, c.delims());
  if (u.empty()) u = component_of(ce_raw, 2, c.delims());
  if (u.empty() || is_null(u)) return 60;
  for (std::string_view m : {"min", "mins", "minute", "minutes", "m", "分钟", "分"}) {
    if (iequals(u, m)) return 60;
  }
  for (std::string_view s : {"s", "sec", "second", "seconds", "秒"}) {
    if (iequals(u, s)) return 1;
  }
  for (std::string_view h : {"h", "hr", "hour", "hours", "小时"}) {
    if (iequals(u, h)) return 3600;
  }
  for (std::string_view d : {"d", "day", "days", "天"}) {
    if (iequals(u, d)) return 86400;
  }
  return unknown_code(where.path(), "duration units", u, "min, s, h, d");
}

result<std::optional<std::int64_t>> number_at(const map_context& c, const segment_view& s, std::size_t field) {
  const std::string_view raw = s.field(field).repetition(0).raw();
  if (raw.empty() || is_null(raw)) return std::optional<std::int64_t>{};
  const std::string text = c.text(raw);
  double v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || end != text.data() + text.size() || v < 0) {
    return invalid(path_of(s, field), "not a non-negative number");
  }
  return std::optional<std::int64_t>(static_cast<std::int64_t>(v * 1000));  // thousandths
}

// Duration in seconds from a (number, units) pair of fields.
result<std::optional<std::int64_t>> duration_of(const map_context& c, const segment_view& s, std::size_t number_field,
                                                std::size_t units_field) {
  auto n = number_at(c, s, number_field);
  if (!n) return std::unexpected(std::move(n.error()));
  if (!*n) return std::optional<std::int64_t>{};
  auto unit = unit_seconds(c, s.field(units_field).repetition(0).raw(), field_ref(s, units_field));
  if (!unit) return std::unexpected(std::move(unit.error()));
  return std::optional<std::int64_t>(**n * *unit / 1000);
}

// TQ-3 duration: S<n>, M<n>, H<n>, D<n>, W<n>.
std::optional<std::int64_t> tq_duration(std::string_view v) {
  if (v.size() < 2) return std::nullopt;
  std::int64_t unit = 0;
  switch (v.front()) {
    case 'S': unit = 1; break;
    case 'M': unit = 60; break;
    case 'H': unit = 3600; break;
    case 'D': unit = 86400; break;
    case 'W': unit = 7 * 86400; break;
    default: return std::nullopt;
  }
  std::int64_t n = 0;
  auto [end, ec] = std::from_chars(v.data() + 1, v.data() + v.size(), n);
  if (ec != std::errc{} || end != v.data() + v.size() || n < 0) return std::nullopt;
  return n * unit;
}

instant plus(instant t, std::int64_t seconds) {
  t.seconds += seconds;
  return t;
}

struct resolved_equipment {
  std::string id;
  std::string hospital;
  std::optional<segment_view> aig;  // the AIG that named it
};

}  // namespace

result<void> map_schedule(map_context& c) {
  const auto sch = c.find_first("SCH");
  if (!sch) return missing("SCH", "schedule activity information");
  const group_range whole{0, c.size()};
  const delimiters& dl = c.delims();

  // The patient (its identifiers, which cannot fail when not required, are
  // read into the event).
  const auto pid = c.find_first("PID");

  // The machine: quirk location, any AIG-3, any AIL-3.
  resolved_equipment eq;
  std::optional<segment_view> first_aig;
  std::string first_unresolved_where;
  std::string first_unresolved;
  auto consider = [&](std::string_view code, const field_ref& where, std::optional<segment_view> aig) {
    if (!eq.id.empty() || code.empty() || is_null(code)) return;
    if (const equipment* e = c.resource(code)) {
      eq = {.id = e->id, .hospital = e->hospital, .aig = aig};
    } else if (first_unresolved.empty()) {
      first_unresolved = c.text(code);
      first_unresolved_where = where.path();
    }
  };
  if (c.profile().location(cfg::LOCATED_ITEM_EQUIPMENT_ID) != nullptr) {
    const located_value v = c.located(cfg::LOCATED_ITEM_EQUIPMENT_ID, whole);
    consider(v.whole_repetition ? component_of(v.raw, 1, dl) : v.raw, v.where, std::nullopt);
  }
  for (std::size_t i = 0; i < c.size(); ++i) {
    const segment_view s = c.seg(i);
    if (c.skip(s)) continue;
    if (s.id() == "AIG") {
      if (!first_aig) first_aig = s;
      consider(c.comp(s, 3, 1), field_ref(s, 3), s);
    } else if (s.id() == "AIL") {
      consider(c.comp(s, 3, 1), field_ref(s, 3), std::nullopt);
    }
  }
  if (eq.id.empty()) {
    if (c.profile().generic && !first_unresolved.empty()) {
      eq.id = first_unresolved;  // the generic profile keeps resources as sent
      eq.aig = first_aig;
    } else if (!first_unresolved.empty()) {
      return unknown_code(first_unresolved_where, "resource", first_unresolved,
                          "not an equipment id, AE title or resource_ids entry of the profile");
    } else {
      return missing(first_aig ? path_of(*first_aig, 3) : std::string("AIG-3"), "resource id of the equipment");
    }
  }
  if (!eq.aig) eq.aig = first_aig;

  const auto ais = c.find_first("AIS");
  std::string referral = c.id_item(cfg::LOCATED_ITEM_REFERRAL_ID, whole, {});
  if (referral.empty() && c.profile().location(cfg::LOCATED_ITEM_REFERRAL_ID) == nullptr) {
    if (const auto rf1 = c.find_first("RF1")) referral = c.comp_text(*rf1, 6, 1);
  }
  std::string appointment = c.id_item(cfg::LOCATED_ITEM_APPOINTMENT_ID, whole, c.comp(*sch, 1, 1));
  const std::string filler_appointment = c.comp_text(*sch, 2, 1);
  const std::string_view tq = sch->field(11).repetition(0).raw();

  // The exam (AIS-3, or the quirk's place) through the code map.
  // Read before the event exists (it is looked up in the code map first)
  // and copied into it.
  ev::Coding exam;
  field_ref exam_where = ais ? field_ref(*ais, 3) : field_ref("AIS-3");
  if (c.profile().location(cfg::LOCATED_ITEM_EXAM_CODE) != nullptr) {
    const located_value v = c.located(cfg::LOCATED_ITEM_EXAM_CODE, whole);
    if (v.found) {
      exam_where = v.where;
      if (v.whole_repetition) {
        c.coding(v.raw, exam);
      } else {
        exam.set_code(c.text(v.raw));
      }
    }
  } else if (ais) {
    c.coding(ais->field(3).repetition(0).raw(), exam);
  }
  map_context::catalogue_lookup catalogue;
  if (!exam.code().empty()) {
    catalogue = c.catalogue(exam);
    if (catalogue.system_has_map && !catalogue.mapped) {
      return unknown_code(exam_where.path(), "exam", exam.code(), "not in the profile's code map for " + exam.system());
    }
  }

  // Start: AIS-4, SCH-11.4, AIG-8, AIL-6 (slots: AIG-8 first).
  const bool slot = c.trigger() == "S23" || c.trigger() == "S24";
  std::optional<instant> start;
  auto take_start = [&](std::string_view raw, const field_ref& where) -> result<void> {
    if (start || raw.empty()) return {};
    auto t = c.time_of(raw, where);
    if (!t) return std::unexpected(std::move(t.error()));
    if (*t) start = *t;
    return {};
  };
  auto start_from_aig = [&]() -> result<void> {
    if (!eq.aig) return {};
    return take_start(eq.aig->field(8).repetition(0).raw(), field_ref(*eq.aig, 8));
  };
  auto start_from_ais = [&]() -> result<void> {
    if (!ais) return {};
    return take_start(ais->field(4).repetition(0).raw(), field_ref(*ais, 4));
  };
  if (slot) {
    if (auto r = start_from_aig(); !r) return r;
    if (auto r = take_start(component_of(tq, 4, dl), field_ref(*sch, 11, 0, 4)); !r) return r;
    if (auto r = start_from_ais(); !r) return r;
  } else {
    if (auto r = start_from_ais(); !r) return r;
    if (auto r = take_start(component_of(tq, 4, dl), field_ref(*sch, 11, 0, 4)); !r) return r;
    if (auto r = start_from_aig(); !r) return r;
  }
  if (const auto ail = c.find_first("AIL"); ail && !start) {
    if (auto r = take_start(ail->field(6).repetition(0).raw(), field_ref(*ail, 6)); !r) return r;
  }

  // Duration: AIS-7/8 (appointments) or AIG-11/12 (slots) first, then the
  // other, then SCH-11.5 end / SCH-11.3 duration, then SCH-9/10.
  std::optional<std::int64_t> seconds;
  auto take_duration = [&](const std::optional<segment_view>& s, std::size_t number, std::size_t units) -> result<void> {
    if (seconds || !s) return {};
    auto d = duration_of(c, *s, number, units);
    if (!d) return std::unexpected(std::move(d.error()));
    seconds = *d;
    return {};
  };
  if (slot) {
    if (auto r = take_duration(eq.aig, 11, 12); !r) return r;
    if (auto r = take_duration(ais, 7, 8); !r) return r;
  } else {
    if (auto r = take_duration(ais, 7, 8); !r) return r;
    if (auto r = take_duration(eq.aig, 11, 12); !r) return r;
  }
  std::optional<instant> end;
  if (!seconds && start) {
    if (const std::string_view raw = component_of(tq, 5, dl); !raw.empty()) {
      auto t = c.time_of(raw, field_ref(*sch, 11, 0, 5));
      if (!t) return std::unexpected(std::move(t.error()));
      if (*t) {
        end = *t;
        seconds = (*t)->seconds - start->seconds;
      }
    }
  }
  if (!seconds) {
    if (const std::string_view raw = component_of(tq, 3, dl); !raw.empty()) seconds = tq_duration(raw);
  }
  if (auto r = take_duration(sch, 9, 10); !r) return r;
  if (start && seconds && !end) end = plus(*start, *seconds);

  ev::Envelope& e = *c.emit(ev::TOPIC_BOOKING, eq.id).envelope;
  if (pid) {
    if (auto read = patient_identifiers(c, *pid, /*required=*/false, *e.mutable_subject()->mutable_identifiers());
        !read) {
      return read;
    }
  }
  auto* corr = e.mutable_correlation();
  put(*corr, &ev::Correlation::mutable_appointment_id, !appointment.empty() ? appointment : filler_appointment);
  put(*corr, &ev::Correlation::mutable_referral_id, referral);

  if (slot) {
    if (!start) return missing(eq.aig ? path_of(*eq.aig, 8) : std::string("AIG-8"), "start date/time of the slot");
    if (!end) return missing(eq.aig ? path_of(*eq.aig, 11) : std::string("AIG-11"), "duration of the slot");
    auto* body = e.mutable_slot_availability_changed();
    body->set_equipment_id(eq.id);
    body->set_hospital(eq.hospital);
    body->set_slot_id(!filler_appointment.empty() ? filler_appointment : appointment);
    set_timestamp(*body->mutable_start(), *start);
    set_timestamp(*body->mutable_end(), *end);
    body->set_status(c.trigger() == "S23" ? ev::SLOT_STATUS_BUSY_UNAVAILABLE : ev::SLOT_STATUS_FREE);
    if (catalogue.mapped && !catalogue.code->empty()) body->add_exam_codes(*catalogue.code);
    if (eq.aig) {
      auto q = number_at(c, *eq.aig, 6);
      if (!q) return std::unexpected(std::move(q.error()));
      if (*q) body->set_capacity(static_cast<std::uint32_t>(**q / 1000));
    }
    const std::string_view reason = sch->field(6).repetition(0).raw();
    std::string reason_text = c.text(component_of(reason, 2, dl));
    if (reason_text.empty()) reason_text = c.text(component_of(reason, 1, dl));
    body->set_reason(std::move(reason_text));
    body->set_origin(ev::SLOT_ORIGIN_HOSPITAL_FEED);
    return {};
  }

  auto* body = e.mutable_appointment_changed();
  body->set_appointment_id(appointment);
  body->set_filler_appointment_id(filler_appointment);
  const std::string_view status = sch->field(25).first_component();
  if (!status.empty() && !is_null(status)) {
    auto st = booking_state(status, field_ref(*sch, 25));
    if (!st) return std::unexpected(std::move(st.error()));
    body->set_state(*st);
    body->set_filler_status_code(c.text(status));
  } else {
    body->set_state(state_of_trigger(c.trigger()));
  }
  body->set_trigger(c.trigger());
  body->set_equipment_id(eq.id);
  body->set_owning_hospital(eq.hospital);
  // The clinic that booked: SCH-15 placer contact location facility (PL-4),
  // else the sender when it is not the owner; the booking store knows the
  // rest.
  std::string requesting = c.facility_hospital(subcomponent_of(component_of(sch->field(15).repetition(0).raw(), 4, dl), 1, dl));
  if (requesting.empty() && c.hospital() != eq.hospital) requesting = c.hospital();
  put(*body, &ev::AppointmentChanged::mutable_requesting_hospital, std::move(requesting));
  if (start) set_timestamp(*body->mutable_start(), *start);
  if (end) set_timestamp(*body->mutable_end(), *end);
  if (seconds) body->set_duration_minutes(static_cast<std::uint32_t>(*seconds / 60));
  if (!exam.code().empty()) *body->mutable_exam() = exam;
  if (catalogue.mapped && !catalogue.code->empty()) catalogue.write(*body->mutable_catalogue_code());
  put(*body, &ev::AppointmentChanged::mutable_placer_order, c.comp_text(*sch, 26, 1));
  put(*body, &ev::AppointmentChanged::mutable_filler_order, c.comp_text(*sch, 27, 1));
  put(*body, &ev::AppointmentChanged::mutable_referral_id, referral);
  if (const std::string_view reason = sch->field(6).repetition(0).raw(); !reason.empty() && !is_null(reason)) {
    c.coding(reason, *body->mutable_reason());
  }
  put(*corr, &ev::Correlation::mutable_placer_order, body->placer_order());
  put(*corr, &ev::Correlation::mutable_filler_order, body->filler_order());
  return {};
}

}  // namespace yilian::hl7v2::detail
