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
  // By XPN-8 name representation: the ideographic name ("I"), else the first
  // unmarked one; the alphabetic (pinyin) one ("A" or "P").
  std::optional<std::string_view> ideographic, alphabetic, first_unmarked;
  each_repetition(f.raw(), dl, [&](std::string_view rep) {
    const std::string_view code = nth_piece(rep, dl.component, 8);
    if (code == "I" && !ideographic) ideographic = rep;
    if ((code == "A" || code == "P") && !alphabetic) alphabetic = rep;
    if (code.empty() && !first_unmarked && !rep.empty()) first_unmarked = rep;
  });
  if (!ideographic) ideographic = first_unmarked;
  auto xpn_name = [&](std::string_view raw, std::string* family, std::string* given) {
    const auto parts = split_pieces<3>(raw, dl.component);
    std::string fam = c.text(nth_piece(parts[0], dl.subcomponent, 1));
    std::string giv = c.text(parts[1]);
    const std::string more = c.text(parts[2]);
    if (!more.empty()) giv = map_context::join_name(std::move(giv), more);
    if (family != nullptr) *family = fam;
    if (given != nullptr) *given = giv;
    return map_context::join_name(std::move(fam), giv);
  };
  // Created on the first part found: an absent name is "no change".
  ev::PersonName* name = nullptr;
  auto target = [&]() -> ev::PersonName& {
    if (name == nullptr) name = d.mutable_name();
    return *name;
  };
  if (ideographic) {
    std::string family, given;
    std::string hanzi = xpn_name(*ideographic, &family, &given);
    ev::PersonName& out = target();
    out.set_hanzi(std::move(hanzi));
    out.set_family(std::move(family));
    out.set_given(std::move(given));
  }
  if (c.profile().location(cfg::LOCATED_ITEM_NAME_PINYIN) != nullptr) {
    const located_value v = c.located(cfg::LOCATED_ITEM_NAME_PINYIN, {0, c.size()});
    if (v.found) target().set_pinyin(v.whole_repetition ? xpn_name(v.raw, nullptr, nullptr) : c.text(v.raw));
  } else if (alphabetic) {
    target().set_pinyin(xpn_name(*alphabetic, nullptr, nullptr));
  }
}

result<void> read_telecom(const map_context& c, const segment_view& pid, ev::Demographics& d) {
  const delimiters& dl = c.delims();
  auto read_field = [&](const field_view& f, ev::ContactUse default_use) {
    if (f.is_null()) {
      auto* cp = d.add_telecom();  // deleted: an entry with only the use
      cp->set_use(default_use);
      return;
    }
    each_repetition(f.raw(), dl, [&](std::string_view raw) {
      // XTN-1 number, 2 use, 3 equipment, 4 email, 6 area, 7 local number,
      // 12 unformatted number.
      const auto xtn = split_pieces<12>(raw, dl.component);
      const std::string_view use = xtn[1];
      const std::string_view equipment = xtn[2];
      const bool email = equipment == "Internet" || equipment == "X.400" || use == "NET";
      std::string value = email ? c.text(xtn[3]) : c.text(xtn[11]);
      if (value.empty()) value = c.text(xtn[0]);
      if (value.empty() && !email) {
        value = c.text(xtn[5]) + c.text(xtn[6]);
      }
      if (value.empty()) return;
      ev::ContactPoint& cp = *d.add_telecom();
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
    });
  };
  if (c.profile().location(cfg::LOCATED_ITEM_PHONE) != nullptr) {
    const located_value v = c.located(cfg::LOCATED_ITEM_PHONE, {0, c.size()});
    if (v.found) {
      std::string value = c.text(v.whole_repetition ? [&] {
        const std::string_view twelve = component_of(v.raw, 12, dl);
        return twelve.empty() ? component_of(v.raw, 1, dl) : twelve;
      }()
                                                   : v.raw);
      if (!value.empty()) {
        ev::ContactPoint& cp = *d.add_telecom();
        cp.set_system("phone");
        cp.set_value(std::move(value));
        cp.set_use(ev::CONTACT_USE_HOME);
      }
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
  each_repetition(f.raw(), dl, [&](std::string_view raw) {
    // XAD-1 street (SAD-1), 2 other designation, 3 city, 4 province, 5 postal
    // code, 9 county/district.
    const auto xad = split_pieces<9>(raw, dl.component);
    std::string line = c.text(nth_piece(xad[0], dl.subcomponent, 1));
    const std::string other = c.text(xad[1]);
    std::string city = c.text(xad[2]);
    std::string province = c.text(xad[3]);
    std::string postal_code = c.text(xad[4]);
    std::string district = c.text(xad[8]);
    // Chinese order, largest first, no separators: 广东省中山市石岐区孙文中路1号.
    std::string text;
    text.reserve(province.size() + city.size() + district.size() + line.size() + other.size());
    text += province;
    text += city;
    text += district;
    text += line;
    text += other;
    if (text.empty()) return;
    ev::Address& a = *d.add_addresses();
    put(a, &ev::Address::mutable_line, std::move(line));
    put(a, &ev::Address::mutable_city, std::move(city));
    put(a, &ev::Address::mutable_province, std::move(province));
    put(a, &ev::Address::mutable_postal_code, std::move(postal_code));
    put(a, &ev::Address::mutable_district, std::move(district));
    a.set_text(std::move(text));
  });
}

result<ev::Sex> read_sex(const segment_view& pid) {
  const std::string_view v = pid.field(8).first_component();
  if (v.empty() || is_null(v)) return ev::SEX_UNSPECIFIED;
  if (v == "M") return ev::SEX_MALE;
  if (v == "F") return ev::SEX_FEMALE;
  if (v == "O" || v == "A") return ev::SEX_OTHER;
  if (v == "U" || v == "N") return ev::SEX_UNKNOWN;
  return unknown_code(path_of(pid, 8), "administrative sex", {}, "table 0001: M, F, O, U, A, N");
}


result<ev::PatientClass> patient_class(const segment_view& pv1) {
  const std::string_view v = pv1.field(2).first_component();
  if (v.empty() || v == "N" || is_null(v)) return ev::PATIENT_CLASS_UNSPECIFIED;
  if (v == "O") return ev::PATIENT_CLASS_OUTPATIENT;
  if (v == "I") return ev::PATIENT_CLASS_INPATIENT;
  if (v == "E") return ev::PATIENT_CLASS_EMERGENCY;
  if (v == "P") return ev::PATIENT_CLASS_PREADMIT;
  if (v == "B" || v == "C" || v == "R" || v == "U") return ev::PATIENT_CLASS_OTHER;
  return unknown_code(path_of(pv1, 2), "patient class", v, "table 0004: E, I, O, P, R, B, C, N, U");
}

// Whether PV1 says something about a visit: a visit number (PV1-19) or a
// patient class (PV1-2) other than "N".
bool has_visit(const map_context& c, const segment_view& pv1) {
  const std::string visit = c.text(pv1.field(19).first_component());
  const std::string_view cls = pv1.field(2).first_component();
  return !visit.empty() || !(cls.empty() || cls == "N" || is_null(cls));
}

// PV1 -> EncounterEvent fields (PV1 has a visit, see has_visit).
result<void> encounter(const map_context& c, const segment_view& pv1, ev::EncounterEvent& e) {
  std::string visit = c.text(pv1.field(19).first_component());
  auto pc = patient_class(pv1);
  if (!pc) return std::unexpected(std::move(pc.error()));
  const std::string& trigger = c.trigger();
  e.set_action(trigger == "A01"   ? ev::ENCOUNTER_ACTION_ADMITTED
               : trigger == "A04" ? ev::ENCOUNTER_ACTION_REGISTERED
                                  : ev::ENCOUNTER_ACTION_UPDATED);
  e.set_trigger(trigger);
  e.set_encounter_id(std::move(visit));
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
  put(e, &ev::EncounterEvent::mutable_department, c.text(pv1.field(10).first_component()));
  if (const std::string_view raw = pv1.field(7).repetition(0).raw(); !raw.empty() && !is_null(raw)) {
    ev::ProviderRef& attending = *e.mutable_attending();
    c.provider_xcn(raw, attending);
    attending.set_hospital(c.hospital());
    put(attending, &ev::ProviderRef::mutable_department, e.department());
  }
  if (const std::string_view raw = pv1.field(8).repetition(0).raw(); !raw.empty() && !is_null(raw)) {
    c.provider_xcn(raw, *e.mutable_referring());
  }
  auto start = c.time_at(pv1, 44);
  if (!start) return std::unexpected(std::move(start.error()));
  if (*start) set_timestamp(*e.mutable_start(), **start);
  auto end = c.time_at(pv1, 45);
  if (!end) return std::unexpected(std::move(end.error()));
  if (*end) set_timestamp(*e.mutable_end(), **end);
  if (const std::string_view raw = pv1.field(36).repetition(0).raw(); !raw.empty() && !is_null(raw)) {
    c.coding(raw, *e.mutable_discharge_disposition());
  }
  if (const auto evn = c.find_first("EVN")) {
    if (const std::string_view raw = evn->field(4).repetition(0).raw(); !raw.empty() && !is_null(raw)) {
      c.coding(raw, *e.mutable_reason());
    }
  }
  const group_range whole{0, c.size()};
  put(e, &ev::EncounterEvent::mutable_referral_id, c.id_item(cfg::LOCATED_ITEM_REFERRAL_ID, whole, {}));
  put(e, &ev::EncounterEvent::mutable_appointment_id, c.id_item(cfg::LOCATED_ITEM_APPOINTMENT_ID, whole, {}));
  return {};
}

}  // namespace

result<void> demographics(const map_context& c, const segment_view& pid, bool registration, ev::Demographics& d) {
  if (registration && (pid.field(5).empty() || pid.field(5).is_null())) {
    return missing(path_of(pid, 5), "patient name");
  }
  read_name(c, pid, d);

  const std::string_view birth = pid.field(7).first_component();
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
    c.coding(ethnic.repetition(0).raw(), *d.mutable_ethnic_group());
  }
  auto died = c.time_at(pid, 29);
  if (!died) return std::unexpected(std::move(died.error()));
  if (*died) set_timestamp(*d.mutable_deceased_at(), **died);
  const std::string_view indicator = pid.field(30).repetition(0).raw();
  if (indicator == "Y") {
    d.set_deceased(true);
  } else if (!indicator.empty() && indicator != "N" && !is_null(indicator)) {
    return unknown_code(path_of(pid, 30), "patient death indicator", {}, "table 0136: Y, N");
  }
  return {};
}

result<void> map_adt(map_context& c) {
  if (auto t = adt_time(c); !t) return t;
  const auto pid = c.find_first("PID");
  if (!pid) return missing("PID", "patient identification segment");
  mapped_event& person = c.emit(ev::TOPIC_PATIENT);
  ev::Envelope& e = *person.envelope;
  identifier_list& ids = *e.mutable_subject()->mutable_identifiers();
  if (auto read = patient_identifiers(c, *pid, /*required=*/true, ids); !read) return read;
  person.key = identifier_key(ids);
  const bool registration = is_registration(c.trigger());
  if (registration) {
    auto* body = e.mutable_patient_registered();
    if (auto d = demographics(c, *pid, registration, *body->mutable_demographics()); !d) return d;
    body->set_trigger(c.trigger());
  } else {
    auto* body = e.mutable_patient_updated();
    if (auto d = demographics(c, *pid, registration, *body->mutable_demographics()); !d) return d;
    body->set_trigger(c.trigger());
  }

  const auto pv1 = c.find_first("PV1");
  if (!pv1 || !is_visit_trigger(c.trigger()) || !has_visit(c, *pv1)) return {};
  // The visit: a second event about the same person.
  std::string key = person.key;
  ev::Envelope& v = *c.emit(ev::TOPIC_PATIENT, std::move(key)).envelope;
  const ev::EncounterEvent& enc = *v.mutable_encounter_event();
  if (auto read = encounter(c, *pv1, *v.mutable_encounter_event()); !read) return read;
  *v.mutable_subject()->mutable_identifiers() = ids;
  for (ev::Envelope* x : {&e, &v}) {
    auto* corr = x->mutable_correlation();
    put(*corr, &ev::Correlation::mutable_encounter_id, enc.encounter_id());
    put(*corr, &ev::Correlation::mutable_referral_id, enc.referral_id());
    put(*corr, &ev::Correlation::mutable_appointment_id, enc.appointment_id());
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
    mapped_event& merged = c.emit(ev::TOPIC_PATIENT);
    ev::Envelope& e = *merged.envelope;
    identifier_list& surviving = *e.mutable_subject()->mutable_identifiers();
    if (auto read = patient_identifiers(c, pid, /*required=*/true, surviving); !read) return read;
    auto* body = e.mutable_patient_identifiers_merged();
    c.add_identifiers(mrg->field(1), *body->mutable_retired());
    if (body->retired().empty()) return missing(path_of(*mrg, 1), "prior patient identifier list");
    merged.key = identifier_key(surviving);
    body->set_hospital(c.hospital());
    *body->mutable_surviving() = surviving;
    any = true;
  }
  if (!any) return missing("PID", "patient identification segment");
  return {};
}

}  // namespace yilian::hl7v2::detail
