// ADT^A01/A04/A08/A28/A31 (registration, update, encounter) and ADT^A40 (merge).
#include "adapters/hl7v2/mapping_internal.h"

namespace yilian::hl7v2::detail {

namespace cfg = config::v1;

namespace {

bool is_registration(std::string_view trigger) { return trigger == "A01" || trigger == "A04" || trigger == "A28"; }
// Triggers about a visit (A28/A31 are about the person only).
bool is_visit_trigger(std::string_view trigger) { return trigger == "A01" || trigger == "A04" || trigger == "A08"; }

// occurred_at: EVN-6 (event occurred), else EVN-2 (recorded), else MSH-7.
result<void> adt_time(map_context& c) {
  const auto evn = c.find_first("EVN");
  if (!evn) return {};
  for (std::size_t field : {std::size_t{6}, std::size_t{2}}) {
    auto t = c.time_at(*evn, field);
    if (!t) return std::unexpected(std::move(t.error()));
    if (*t) {
      c.set_occurred_at(**t);
      return {};
    }
  }
  return {};
}

// PID-5 (and the pinyin quirk location).
void read_name(const map_context& c, const segment_view& pid, ev::Demographics& d) {
  const field_view f = pid.field(5);
  const delimiters& dl = c.delims();
  if (f.is_null()) {
    d.mutable_name();  // present and empty: the name was deleted
    return;
  }
  const std::size_t n = f.repetition_count();
  int ideographic = -1;
  int alphabetic = -1;
  int first_unmarked = -1;
  for (std::size_t i = 0; i < n; ++i) {
    const std::string_view code = f.repetition(i).component_raw(8);
    if (code == "I" && ideographic < 0) ideographic = static_cast<int>(i);
    if ((code == "A" || code == "P") && alphabetic < 0) alphabetic = static_cast<int>(i);
    if (code.empty() && first_unmarked < 0 && !f.repetition(i).empty()) first_unmarked = static_cast<int>(i);
  }
  if (ideographic < 0) ideographic = first_unmarked;
  auto xpn_name = [&](std::string_view raw, std::string* family, std::string* given) {
    std::string fam = c.text(subcomponent_of(component_of(raw, 1, dl), 1, dl));
    std::string giv = c.text(component_of(raw, 2, dl));
    const std::string more = c.text(component_of(raw, 3, dl));
    if (!more.empty()) giv = map_context::join_name(std::move(giv), more);
    if (family != nullptr) *family = fam;
    if (given != nullptr) *given = giv;
    return map_context::join_name(std::move(fam), giv);
  };
  ev::PersonName name;
  bool any = false;
  if (ideographic >= 0) {
    std::string family, given;
    name.set_hanzi(xpn_name(f.repetition(static_cast<std::size_t>(ideographic)).raw(), &family, &given));
    name.set_family(std::move(family));
    name.set_given(std::move(given));
    any = true;
  }
  if (c.profile().location(cfg::LOCATED_ITEM_NAME_PINYIN) != nullptr) {
    const located_value v = c.located(cfg::LOCATED_ITEM_NAME_PINYIN, {0, c.size()});
    if (v.found) {
      name.set_pinyin(v.whole_repetition ? xpn_name(v.raw, nullptr, nullptr) : c.text(v.raw));
      any = true;
    }
  } else if (alphabetic >= 0) {
    name.set_pinyin(xpn_name(f.repetition(static_cast<std::size_t>(alphabetic)).raw(), nullptr, nullptr));
    any = true;
  }
  if (any) *d.mutable_name() = std::move(name);
}

result<void> read_telecom(const map_context& c, const segment_view& pid, ev::Demographics& d) {
  const delimiters& dl = c.delims();
  auto read_field = [&](const field_view& f, ev::ContactUse default_use) {
    if (f.is_null()) {
      auto* cp = d.add_telecom();  // deleted: an entry with only the use
      cp->set_use(default_use);
      return;
    }
    const std::size_t n = f.repetition_count();
    for (std::size_t i = 0; i < n; ++i) {
      const std::string_view raw = f.repetition(i).raw();
      const std::string_view use = component_of(raw, 2, dl);
      const std::string_view equipment = component_of(raw, 3, dl);
      const bool email = equipment == "Internet" || equipment == "X.400" || use == "NET";
      std::string value = email ? c.text(component_of(raw, 4, dl)) : c.text(component_of(raw, 12, dl));
      if (value.empty()) value = c.text(component_of(raw, 1, dl));
      if (value.empty() && !email) {
        value = c.text(component_of(raw, 6, dl)) + c.text(component_of(raw, 7, dl));
      }
      if (value.empty()) continue;
      ev::ContactPoint cp;
      cp.set_system(email ? "email" : "phone");
      cp.set_value(std::move(value));
      if (equipment == "CP") {
        cp.set_use(ev::CONTACT_USE_MOBILE);
      } else if (use == "WPN") {
        cp.set_use(ev::CONTACT_USE_WORK);
      } else if (use == "PRN" || use == "ORN" || use == "VHN") {
        cp.set_use(ev::CONTACT_USE_HOME);
      } else {
        cp.set_use(default_use);
      }
      *d.add_telecom() = std::move(cp);
    }
  };
  if (c.profile().location(cfg::LOCATED_ITEM_PHONE) != nullptr) {
    const located_value v = c.located(cfg::LOCATED_ITEM_PHONE, {0, c.size()});
    if (v.found) {
      ev::ContactPoint cp;
      cp.set_system("phone");
      cp.set_value(c.text(v.whole_repetition ? [&] {
        const std::string_view twelve = component_of(v.raw, 12, dl);
        return twelve.empty() ? component_of(v.raw, 1, dl) : twelve;
      }()
                                             : v.raw));
      cp.set_use(ev::CONTACT_USE_HOME);
      if (!cp.value().empty()) *d.add_telecom() = std::move(cp);
    }
  } else {
    read_field(pid.field(13), ev::CONTACT_USE_HOME);
  }
  read_field(pid.field(14), ev::CONTACT_USE_WORK);
  return {};
}

void read_addresses(const map_context& c, const segment_view& pid, ev::Demographics& d) {
  const field_view f = pid.field(11);
  const delimiters& dl = c.delims();
  if (f.is_null()) {
    d.add_addresses();  // deleted
    return;
  }
  const std::size_t n = f.repetition_count();
  for (std::size_t i = 0; i < n; ++i) {
    const std::string_view raw = f.repetition(i).raw();
    ev::Address a;
    a.set_line(c.text(subcomponent_of(component_of(raw, 1, dl), 1, dl)));
    const std::string other = c.text(component_of(raw, 2, dl));
    a.set_city(c.text(component_of(raw, 3, dl)));
    a.set_province(c.text(component_of(raw, 4, dl)));
    a.set_postal_code(c.text(component_of(raw, 5, dl)));
    a.set_district(c.text(component_of(raw, 9, dl)));
    // Chinese order, largest first, no separators: 广东省中山市石岐区孙文中路1号.
    std::string text = a.province() + a.city() + a.district() + a.line() + other;
    if (text.empty()) continue;
    a.set_text(std::move(text));
    *d.add_addresses() = std::move(a);
  }
}

result<ev::Sex> read_sex(const segment_view& pid) {
  const std::string_view v = pid.field(8).repetition(0).component_raw(1);
  if (v.empty() || is_null(v)) return ev::SEX_UNSPECIFIED;
  if (v == "M") return ev::SEX_MALE;
  if (v == "F") return ev::SEX_FEMALE;
  if (v == "O" || v == "A") return ev::SEX_OTHER;
  if (v == "U" || v == "N") return ev::SEX_UNKNOWN;
  return unknown_code(path_of(pid, 8), "administrative sex", {}, "table 0001: M, F, O, U, A, N");
}


result<ev::PatientClass> patient_class(const segment_view& pv1) {
  const std::string_view v = pv1.field(2).repetition(0).component_raw(1);
  if (v.empty() || v == "N" || is_null(v)) return ev::PATIENT_CLASS_UNSPECIFIED;
  if (v == "O") return ev::PATIENT_CLASS_OUTPATIENT;
  if (v == "I") return ev::PATIENT_CLASS_INPATIENT;
  if (v == "E") return ev::PATIENT_CLASS_EMERGENCY;
  if (v == "P") return ev::PATIENT_CLASS_PREADMIT;
  if (v == "B" || v == "C" || v == "R" || v == "U") return ev::PATIENT_CLASS_OTHER;
  return unknown_code(path_of(pv1, 2), "patient class", v, "table 0004: E, I, O, P, R, B, C, N, U");
}

// PV1 -> EncounterEvent fields; false when PV1 says nothing about a visit.
result<bool> encounter(const map_context& c, const segment_view& pv1, ev::EncounterEvent& e) {
  const std::string visit = c.text(pv1.field(19).repetition(0).component_raw(1));
  const std::string_view cls = pv1.field(2).repetition(0).component_raw(1);
  if (visit.empty() && (cls.empty() || cls == "N" || is_null(cls))) return false;
  auto pc = patient_class(pv1);
  if (!pc) return std::unexpected(std::move(pc.error()));
  const std::string& trigger = c.trigger();
  e.set_action(trigger == "A01"   ? ev::ENCOUNTER_ACTION_ADMITTED
               : trigger == "A04" ? ev::ENCOUNTER_ACTION_REGISTERED
                                  : ev::ENCOUNTER_ACTION_UPDATED);
  e.set_trigger(trigger);
  e.set_encounter_id(visit);
  e.set_patient_class(*pc);
  // PV1-3 (PL): point of care / room / bed.
  const std::string_view loc = pv1.field(3).repetition(0).raw();
  std::string location;
  for (std::size_t i = 1; i <= 3; ++i) {
    const std::string part = c.text(component_of(loc, i, c.delims()));
    if (part.empty()) continue;
    if (!location.empty()) location += '/';
    location += part;
  }
  e.set_location(std::move(location));
  e.set_department(c.text(pv1.field(10).repetition(0).component_raw(1)));
  if (const std::string_view raw = pv1.field(7).repetition(0).raw(); !raw.empty() && !is_null(raw)) {
    *e.mutable_attending() = c.provider_xcn(raw);
    e.mutable_attending()->set_hospital(c.hospital());
    e.mutable_attending()->set_department(e.department());
  }
  if (const std::string_view raw = pv1.field(8).repetition(0).raw(); !raw.empty() && !is_null(raw)) {
    *e.mutable_referring() = c.provider_xcn(raw);
  }
  auto start = c.time_at(pv1, 44);
  if (!start) return std::unexpected(std::move(start.error()));
  if (*start) *e.mutable_start() = **start;
  auto end = c.time_at(pv1, 45);
  if (!end) return std::unexpected(std::move(end.error()));
  if (*end) *e.mutable_end() = **end;
  if (const std::string_view raw = pv1.field(36).repetition(0).raw(); !raw.empty() && !is_null(raw)) {
    *e.mutable_discharge_disposition() = c.coding(raw);
  }
  if (const auto evn = c.find_first("EVN")) {
    if (const std::string_view raw = evn->field(4).repetition(0).raw(); !raw.empty() && !is_null(raw)) {
      *e.mutable_reason() = c.coding(raw);
    }
  }
  const group_range whole{0, c.size()};
  e.set_referral_id(c.id_item(cfg::LOCATED_ITEM_REFERRAL_ID, whole, {}));
  e.set_appointment_id(c.id_item(cfg::LOCATED_ITEM_APPOINTMENT_ID, whole, {}));
  return true;
}

}  // namespace

result<ev::Demographics> demographics(const map_context& c, const segment_view& pid, bool registration) {
  ev::Demographics d;
  if (registration && (pid.field(5).empty() || pid.field(5).is_null())) {
    return missing(path_of(pid, 5), "patient name");
  }
  read_name(c, pid, d);

  const std::string_view birth = pid.field(7).repetition(0).component_raw(1);
  if (!birth.empty() && !is_null(birth)) {
    if (!c.profile().birth_date_has_fake_time) {
      // The whole value must be a valid date/time; only its date is kept.
      if (auto v = parse_dtm(birth); !v) return invalid(path_of(pid, 7), "not an HL7 date/time: " + v.error().message);
    }
    auto date = dtm_date(birth);
    if (!date) return invalid(path_of(pid, 7), "not an HL7 date: " + date.error().message);
    d.set_birth_date(std::move(*date));
  }
  auto sex = read_sex(pid);
  if (!sex) return std::unexpected(std::move(sex.error()));
  d.set_sex(*sex);
  if (auto t = read_telecom(c, pid, d); !t) return std::unexpected(std::move(t.error()));
  read_addresses(c, pid, d);

  const field_view ethnic = pid.field(22);
  if (ethnic.is_null()) {
    d.mutable_ethnic_group();
  } else if (!ethnic.empty()) {
    *d.mutable_ethnic_group() = c.coding(ethnic.repetition(0).raw());
  }
  auto died = c.time_at(pid, 29);
  if (!died) return std::unexpected(std::move(died.error()));
  if (*died) *d.mutable_deceased_at() = **died;
  const std::string_view indicator = pid.field(30).repetition(0).raw();
  if (indicator == "Y") {
    d.set_deceased(true);
  } else if (!indicator.empty() && indicator != "N" && !is_null(indicator)) {
    return unknown_code(path_of(pid, 30), "patient death indicator", {}, "table 0136: Y, N");
  }
  return d;
}

result<void> map_adt(map_context& c) {
  if (auto t = adt_time(c); !t) return t;
  const auto pid = c.find_first("PID");
  if (!pid) return missing("PID", "patient identification segment");
  auto ids = patient_identifiers(c, *pid, /*required=*/true);
  if (!ids) return std::unexpected(std::move(ids.error()));
  const bool registration = is_registration(c.trigger());
  auto demo = demographics(c, *pid, registration);
  if (!demo) return std::unexpected(std::move(demo.error()));

  ev::EncounterEvent enc;
  bool has_encounter = false;
  const auto pv1 = c.find_first("PV1");
  if (pv1 && is_visit_trigger(c.trigger())) {
    auto e = encounter(c, *pv1, enc);
    if (!e) return std::unexpected(std::move(e.error()));
    has_encounter = *e;
  }
  const std::string key = identifier_key(*ids);
  ev::Envelope& e = c.emit(ev::TOPIC_PATIENT, key);
  if (has_encounter) {
    set_subject(e, *ids);
  } else {
    set_subject(e, std::move(*ids));
  }
  if (has_encounter) {
    e.mutable_correlation()->set_encounter_id(enc.encounter_id());
    e.mutable_correlation()->set_referral_id(enc.referral_id());
    e.mutable_correlation()->set_appointment_id(enc.appointment_id());
  }
  if (registration) {
    auto* body = e.mutable_patient_registered();
    *body->mutable_demographics() = std::move(*demo);
    body->set_trigger(c.trigger());
  } else {
    auto* body = e.mutable_patient_updated();
    *body->mutable_demographics() = std::move(*demo);
    body->set_trigger(c.trigger());
  }
  if (has_encounter) {
    ev::Envelope& v = c.emit(ev::TOPIC_PATIENT, key);
    set_subject(v, std::move(*ids));
    v.mutable_correlation()->set_encounter_id(enc.encounter_id());
    v.mutable_correlation()->set_referral_id(enc.referral_id());
    v.mutable_correlation()->set_appointment_id(enc.appointment_id());
    *v.mutable_encounter_event() = std::move(enc);
  }
  return {};
}

result<void> map_merge(map_context& c) {
  if (auto t = adt_time(c); !t) return t;
  const std::size_t n = c.size();
  bool any = false;
  for (std::size_t i = 0; i < n; ++i) {
    const segment_view pid = c.seg(i);
    if (pid.id() != "PID" || c.skip(pid)) continue;
    // The MRG of this pair: before the next PID.
    std::optional<segment_view> mrg;
    for (std::size_t j = i + 1; j < n; ++j) {
      const segment_view s = c.seg(j);
      if (s.id() == "PID") break;
      if (s.id() == "MRG") {
        mrg = s;
        break;
      }
    }
    if (!mrg) return missing("MRG", "merge patient information for " + path_of(pid, 0));
    auto surviving = patient_identifiers(c, pid, /*required=*/true);
    if (!surviving) return std::unexpected(std::move(surviving.error()));
    std::vector<ev::Identifier> retired = c.identifiers(mrg->field(1));
    if (retired.empty()) return missing(path_of(*mrg, 1), "prior patient identifier list");
    ev::Envelope& e = c.emit(ev::TOPIC_PATIENT, identifier_key(*surviving));
    set_subject(e, *surviving);
    auto* body = e.mutable_patient_identifiers_merged();
    body->set_hospital(c.hospital());
    for (auto& id : *surviving) *body->add_surviving() = std::move(id);
    for (auto& id : retired) *body->add_retired() = std::move(id);
    any = true;
  }
  if (!any) return missing("PID", "patient identification segment");
  return {};
}

}  // namespace yilian::hl7v2::detail
