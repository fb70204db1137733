// ORM^O01, OMG^O19, OMI^O23: one event per ORC group. An order the profile
// recognises as a referral (quirk referred_to names another member) becomes
// the referral itself: ReferralRequested (NW, XO) or a cancellation (CA, DC).
#include <array>

#include "adapters/hl7v2/mapping_internal.h"

namespace yilian::hl7v2::detail {

namespace cfg = config::v1;

namespace {

struct control_entry {
  std::string_view code;
  ev::OrderControl control;
};

// HL7 table 0119. Codes of the table that the event has no value for map to
// UNSPECIFIED (control_code keeps them); codes outside the table are errors.
constexpr std::array<control_entry, 50> order_controls{{
    {"NW", ev::ORDER_CONTROL_NEW},           {"OK", ev::ORDER_CONTROL_ACCEPTED},
    {"UA", ev::ORDER_CONTROL_UNABLE_TO_ACCEPT}, {"CA", ev::ORDER_CONTROL_CANCEL_REQUEST},
    {"OC", ev::ORDER_CONTROL_CANCELED},      {"CR", ev::ORDER_CONTROL_CANCELED},
    {"XO", ev::ORDER_CONTROL_CHANGE_REQUEST}, {"XX", ev::ORDER_CONTROL_CHANGED},
    {"XR", ev::ORDER_CONTROL_CHANGED},       {"DC", ev::ORDER_CONTROL_DISCONTINUE},
    {"OD", ev::ORDER_CONTROL_DISCONTINUE},   {"DR", ev::ORDER_CONTROL_DISCONTINUE},
    {"HD", ev::ORDER_CONTROL_HOLD},          {"OH", ev::ORDER_CONTROL_HOLD},
    {"HR", ev::ORDER_CONTROL_HOLD},          {"RL", ev::ORDER_CONTROL_RELEASE},
    {"OR", ev::ORDER_CONTROL_RELEASE},       {"SC", ev::ORDER_CONTROL_STATUS_CHANGED},
    {"NA", ev::ORDER_CONTROL_NUMBER_ASSIGNED}, {"RP", ev::ORDER_CONTROL_REPLACE},
    {"RO", ev::ORDER_CONTROL_REPLACE},       {"RU", ev::ORDER_CONTROL_REPLACE},
    {"RE", ev::ORDER_CONTROL_RESULTS_FOLLOW}, {"AF", ev::ORDER_CONTROL_UNSPECIFIED},
    {"CH", ev::ORDER_CONTROL_UNSPECIFIED},   {"CN", ev::ORDER_CONTROL_UNSPECIFIED},
    {"DE", ev::ORDER_CONTROL_UNSPECIFIED},   {"DF", ev::ORDER_CONTROL_UNSPECIFIED},
    {"FU", ev::ORDER_CONTROL_UNSPECIFIED},   {"LI", ev::ORDER_CONTROL_UNSPECIFIED},
    {"OE", ev::ORDER_CONTROL_UNSPECIFIED},   {"OF", ev::ORDER_CONTROL_UNSPECIFIED},
    {"OP", ev::ORDER_CONTROL_UNSPECIFIED},   {"PA", ev::ORDER_CONTROL_UNSPECIFIED},
    {"PR", ev::ORDER_CONTROL_UNSPECIFIED},   {"PY", ev::ORDER_CONTROL_UNSPECIFIED},
    {"RF", ev::ORDER_CONTROL_UNSPECIFIED},   {"RQ", ev::ORDER_CONTROL_UNSPECIFIED},
    {"RR", ev::ORDER_CONTROL_UNSPECIFIED},   {"SN", ev::ORDER_CONTROL_UNSPECIFIED},
    {"SR", ev::ORDER_CONTROL_UNSPECIFIED},   {"SS", ev::ORDER_CONTROL_UNSPECIFIED},
    {"UC", ev::ORDER_CONTROL_UNSPECIFIED},   {"UD", ev::ORDER_CONTROL_UNSPECIFIED},
    {"UF", ev::ORDER_CONTROL_UNSPECIFIED},   {"UH", ev::ORDER_CONTROL_UNSPECIFIED},
    {"UM", ev::ORDER_CONTROL_UNSPECIFIED},   {"UN", ev::ORDER_CONTROL_UNSPECIFIED},
    {"UR", ev::ORDER_CONTROL_UNSPECIFIED},   {"UX", ev::ORDER_CONTROL_UNSPECIFIED},
}};

struct status_entry {
  std::string_view code;
  ev::OrderStatus status;
};

// HL7 table 0038.
constexpr std::array<status_entry, 9> order_statuses{{
    {"SC", ev::ORDER_STATUS_SCHEDULED},
    {"IP", ev::ORDER_STATUS_IN_PROGRESS},
    {"A", ev::ORDER_STATUS_SOME_RESULTS},
    {"CM", ev::ORDER_STATUS_COMPLETED},
    {"CA", ev::ORDER_STATUS_CANCELED},
    {"DC", ev::ORDER_STATUS_DISCONTINUED},
    {"HD", ev::ORDER_STATUS_ON_HOLD},
    {"RP", ev::ORDER_STATUS_REPLACED},
    {"ER", ev::ORDER_STATUS_ERROR},
}};

// Table 0485/0027 priority (TQ1-9, TQ-6): S, A, R; P, C, T, PRN carry no
// event value.
result<ev::Priority> priority_of(std::string_view code, const field_ref& where) {
  if (code.empty() || is_null(code)) return ev::PRIORITY_UNSPECIFIED;
  if (code == "S") return ev::PRIORITY_STAT;
  if (code == "A") return ev::PRIORITY_ASAP;
  if (code == "R") return ev::PRIORITY_ROUTINE;
  if (code == "P" || code == "C" || code == "T" || code == "PRN") return ev::PRIORITY_UNSPECIFIED;
  return unknown_code(where.path(), "priority", code, "table 0485: S, A, R, P, C, T, PRN");
}

// An order's priority: TQ1-9, else ORC-7.6, else OBR-27.6.
result<ev::Priority> order_priority(const map_context& c, const std::optional<segment_view>& tq1,
                                    const segment_view& orc, const std::optional<segment_view>& obr) {
  std::string_view prio;
  field_ref where;
  if (tq1) {
    prio = c.comp(*tq1, 9, 1);
    where = field_ref(*tq1, 9);
  }
  if (prio.empty()) {
    prio = c.comp(orc, 7, 6);
    where = field_ref(orc, 7, 0, 6);
  }
  if (prio.empty() && obr) {
    prio = c.comp(*obr, 27, 6);
    where = field_ref(*obr, 27, 0, 6);
  }
  return priority_of(prio, where);
}

// OBR-24 diagnostic service section (table 0074) -> DICOM modality, when it
// names one.
std::string modality_of_section(std::string_view s) {
  static constexpr std::array<std::string_view, 14> dicom{"CT", "MR", "US", "DX", "CR", "MG", "NM",
                                                          "PT", "XA", "RF", "ES", "ECG", "OT", "IO"};
  for (auto d : dicom) {
    if (s == d) return std::string(d);
  }
  if (s == "NMR") return "MR";
  if (s == "NMS") return "NM";
  return {};
}

// The member an order refers its patient to, read at the profile's
// referred_to location (LOCATED_ITEM_REFERRED_TO): a facility id (HD-1, or an
// XON's XON-10/3/1 when the location is a whole field) or a hospital id.
// Empty when the profile has no such location or nothing there resolves.
std::string referred_to_of(const map_context& c, group_range g) {
  if (c.profile().location(cfg::LOCATED_ITEM_REFERRED_TO) == nullptr) return {};
  const located_value v = c.located(cfg::LOCATED_ITEM_REFERRED_TO, g);
  if (!v.found || is_null(v.raw)) return {};
  std::string h = v.whole_repetition ? xon_hospital(c, v.raw) : c.facility_hospital(v.raw);
  if (h.empty()) {
    std::string id = c.text(v.whole_repetition ? component_of(v.raw, 1, c.delims()) : v.raw);
    if (c.tier(id) != 0) h = std::move(id);
  }
  return h;
}

// What a referral order's ORC-1 asks of the referral: NW (and XO, the
// placer changing it) the referral itself, CA / DC its cancellation. Other
// codes (status, filler answers) are about the order, not the referral.
enum class referral_order_kind { none, request, cancel };

referral_order_kind referral_order_kind_of(std::string_view control_code) {
  if (control_code == "NW" || control_code == "XO") return referral_order_kind::request;
  if (control_code == "CA" || control_code == "DC") return referral_order_kind::cancel;
  return referral_order_kind::none;
}

// The referrer's XCN read into `p` as a provider of hospital `from`; false
// when it names nobody (id and name empty), for the caller to drop `p`.
bool read_referrer(const map_context& c, std::string_view xcn, const std::string& from, ev::ProviderRef& p) {
  c.provider_xcn(xcn, p);
  if (p.id().empty() && p.name().empty()) return false;
  p.set_hospital(from);
  return true;
}

struct referral_order {
  const segment_view& orc;
  const std::optional<segment_view>& obr;
  group_range g;
  std::string_view control_code;
  referral_order_kind kind = referral_order_kind::none;
  std::string referral_id;
  std::string placer;
  std::string filler;
  std::string to_hospital;
  ev::Priority priority = ev::PRIORITY_UNSPECIFIED;
};

// One referral order -> ReferralRequested (NW, XO) or ReferralStateChanged
// CANCELLED (CA, DC) on the referral topic, as a REF^I12 / REF^I14 would be:
// the referral feed makes the same CREATE / MODIFY / CANCEL of them.
result<void> map_referral_order(map_context& c, const referral_order& o) {
  const std::string sender = c.hospital();
  std::string from = xon_hospital(c, o.orc.field(21).repetition(0).raw());
  if (from.empty()) from = sender;
  auto direction = referral_direction(c, from, o.to_hospital);
  if (!direction) return std::unexpected(std::move(direction.error()));

  // Who refers: ORC-12 ordering provider, else OBR-16 (or the quirk location).
  std::string_view xcn = o.orc.field(12).repetition(0).raw();
  if (c.profile().location(cfg::LOCATED_ITEM_REFERRING_DOCTOR) != nullptr) {
    xcn = c.located(cfg::LOCATED_ITEM_REFERRING_DOCTOR, o.g).raw;
  } else if (xcn.empty() && o.obr) {
    xcn = o.obr->field(16).repetition(0).raw();
  }
  const bool referrer_named = !xcn.empty() && !is_null(xcn);

  ev::Envelope& e = *c.emit(ev::TOPIC_REFERRAL, o.referral_id).envelope;
  identifier_list& ids = *e.mutable_subject()->mutable_identifiers();
  const auto pid = c.find_first("PID");
  if (o.kind == referral_order_kind::request) {
    // The hospital referred to needs to know whom it receives, as with REF^I12.
    if (!pid) return missing("PID", "patient identification segment (a referral order names its patient)");
    if (auto read = patient_identifiers(c, *pid, /*required=*/true, ids); !read) return read;
    auto d = demographics(c, *pid, /*registration=*/false, *e.mutable_referral_requested()->mutable_patient());
    if (!d) return d;
  } else if (pid) {
    if (auto read = patient_identifiers(c, *pid, /*required=*/false, ids); !read) return read;
  }
  auto* corr = e.mutable_correlation();
  put(*corr, &ev::Correlation::mutable_referral_id, o.referral_id);
  put(*corr, &ev::Correlation::mutable_placer_order, o.placer);
  put(*corr, &ev::Correlation::mutable_filler_order, o.filler);

  if (o.kind == referral_order_kind::cancel) {
    auto* body = e.mutable_referral_state_changed();
    body->set_referral_id(o.referral_id);
    body->set_direction(*direction);
    body->set_state(ev::REFERRAL_STATE_CANCELLED);
    body->set_source_status("ORC-1 " + c.text(o.control_code));
    // ORC-16 order control code reason: why the referrer withdrew it.
    if (const std::string_view raw = o.orc.field(16).repetition(0).raw(); !raw.empty() && !is_null(raw)) {
      c.coding(raw, *body->mutable_reason());
      body->set_reason_text(!body->reason().display().empty() ? body->reason().display() : body->reason().code());
    }
    body->set_actor_hospital(sender);
    if (referrer_named && !read_referrer(c, xcn, from, *body->mutable_actor())) body->clear_actor();
    body->set_from_hospital(from);
    body->set_to_hospital(o.to_hospital);
    return {};
  }

  if (!o.obr) return missing("OBR", "observation request of the referral order " + path_of(o.orc, 0));
  const segment_view& obr = *o.obr;
  auto* body = e.mutable_referral_requested();
  body->set_referral_id(o.referral_id);
  body->set_state(ev::REFERRAL_STATE_REQUESTED);
  body->set_direction(*direction);
  body->set_from_hospital(from);
  body->set_to_hospital(o.to_hospital);
  if (referrer_named && !read_referrer(c, xcn, from, *body->mutable_referring_provider())) {
    body->clear_referring_provider();
  }
  body->set_priority(o.priority);
  // What is asked for: the exam (OBR-4, or the quirk exam_code location).
  ev::Coding& exam = *body->add_requested_services();
  if (c.profile().location(cfg::LOCATED_ITEM_EXAM_CODE) != nullptr) {
    const located_value v = c.located(cfg::LOCATED_ITEM_EXAM_CODE, o.g);
    if (v.found) {
      if (v.whole_repetition) {
        c.coding(v.raw, exam);
      } else {
        exam.set_code(c.text(v.raw));
      }
    }
  } else if (const std::string_view raw = obr.field(4).repetition(0).raw(); !raw.empty() && !is_null(raw)) {
    c.coding(raw, exam);
  }
  if (exam.code().empty()) body->mutable_requested_services()->RemoveLast();
  // Why: OBR-31 reason for study (the first repetition is the reason, every
  // repetition a diagnosis too unless DG1 segments give them).
  const field_view reasons = obr.field(31);
  const std::size_t reason_count = reasons.repetition_count();
  for (std::size_t r = 0; r < reason_count; ++r) {
    const std::string_view raw = reasons.repetition(r).raw();
    if (raw.empty() || is_null(raw)) continue;
    ev::Coding& reason = *body->mutable_reason();
    c.coding(raw, reason);
    body->set_reason_text(!reason.display().empty() ? reason.display() : reason.code());
    break;
  }
  std::string summary = c.text(obr.field(13).repetition(0).raw());  // relevant clinical information
  for (std::size_t i = o.g.begin; i < o.g.end; ++i) {
    const segment_view s = c.seg(i);
    if (c.skip(s)) continue;
    if (s.id() == "DG1") {
      if (const std::string_view raw = s.field(3).repetition(0).raw(); !raw.empty() && !is_null(raw)) {
        c.coding(raw, *body->add_diagnoses());
      }
    } else if (s.id() == "NTE") {
      append_notes(c, s, summary);
    } else if (s.id() == "OBX") {
      if (auto attached = attach_document(c, s, *body->mutable_attachments()); !attached) return attached;
    }
  }
  if (body->diagnoses().empty()) {
    for (std::size_t r = 0; r < reason_count; ++r) {
      const std::string_view raw = reasons.repetition(r).raw();
      if (!raw.empty() && !is_null(raw)) c.coding(raw, *body->add_diagnoses());
    }
  }
  body->set_clinical_summary(std::move(summary));
  // When it was asked: ORC-15 order effective date/time, else ORC-9.
  auto effective = c.time_at(o.orc, 15);
  if (!effective) return std::unexpected(std::move(effective.error()));
  if (!*effective) {
    effective = c.time_at(o.orc, 9);
    if (!effective) return std::unexpected(std::move(effective.error()));
  }
  if (*effective) set_timestamp(*body->mutable_effective_at(), **effective);
  return {};
}

}  // namespace

// XON -> hospital id: XON-10 organization identifier, else XON-3 id number,
// else XON-1 name, through facility_ids.
std::string xon_hospital(const map_context& c, std::string_view xon_raw) {
  for (std::size_t comp : {std::size_t{10}, std::size_t{3}, std::size_t{1}}) {
    const std::string_view v = component_of(xon_raw, comp, c.delims());
    if (v.empty()) continue;
    std::string h = c.facility_hospital(v);
    if (!h.empty()) return h;
  }
  return {};
}

result<void> map_order(map_context& c) {
  const std::size_t n = c.size();
  // The patient of every order (its identifiers are read into each event;
  // they cannot fail when not required).
  const auto pid = c.find_first("PID");
  const segment_view msh = c.msg().msh();
  const std::string receiver = c.facility_hospital(msh.field(6).first_component());
  const delimiters& dl = c.delims();
  bool any = false;
  for (std::size_t i = 0; i < n; ++i) {
    const segment_view orc = c.seg(i);
    if (orc.id() != "ORC" || c.skip(orc)) continue;
    std::size_t end = i + 1;
    while (end < n && c.seg(end).id() != "ORC") ++end;
    const group_range g{i, end};
    const auto obr = c.find_in("OBR", g);
    const auto ipc = c.find_in("IPC", g);
    const auto tq1 = c.find_in("TQ1", g);
    any = true;

    const std::string_view control_code = orc.field(1).repetition(0).raw();
    if (control_code.empty()) return missing(path_of(orc, 1), "order control");
    const control_entry* control = nullptr;
    for (const auto& e : order_controls) {
      if (same(e.code, control_code)) control = &e;
    }
    if (control == nullptr) return unknown_code(path_of(orc, 1), "order control", control_code, "table 0119");

    std::string placer = c.id_item(cfg::LOCATED_ITEM_PLACER_ORDER, g, c.comp(orc, 2, 1));
    if (placer.empty() && obr) placer = c.comp_text(*obr, 2, 1);
    std::string filler = c.id_item(cfg::LOCATED_ITEM_FILLER_ORDER, g, c.comp(orc, 3, 1));
    if (filler.empty() && obr) filler = c.comp_text(*obr, 3, 1);
    std::string accession;
    if (c.profile().location(cfg::LOCATED_ITEM_ACCESSION) != nullptr) {
      accession = c.id_item(cfg::LOCATED_ITEM_ACCESSION, g, {});
    } else {
      if (obr) accession = c.comp_text(*obr, 18, 1);
      if (accession.empty() && ipc) accession = c.comp_text(*ipc, 1, 1);
    }
    std::string study_uid;
    if (c.profile().location(cfg::LOCATED_ITEM_STUDY_UID) != nullptr) {
      study_uid = c.id_item(cfg::LOCATED_ITEM_STUDY_UID, g, {});
    } else {
      if (ipc) study_uid = c.comp_text(*ipc, 3, 1);
      if (study_uid.empty()) {
        auto zds = c.find_in("ZDS", g);
        if (!zds) zds = c.find_first("ZDS");
        if (zds) study_uid = c.comp_text(*zds, 1, 1);
      }
    }
    std::string referral = c.id_item(cfg::LOCATED_ITEM_REFERRAL_ID, g, {});
    if (referral.empty() && c.profile().location(cfg::LOCATED_ITEM_REFERRAL_ID) == nullptr) {
      if (const auto rf1 = c.find_first("RF1")) referral = c.comp_text(*rf1, 6, 1);
    }

    // The machine, when the order names one the consortium knows.
    const equipment* eq = nullptr;
    auto try_resource = [&](std::string_view code) {
      if (eq == nullptr && !code.empty() && !is_null(code)) eq = c.resource(code);
    };
    if (c.profile().location(cfg::LOCATED_ITEM_EQUIPMENT_ID) != nullptr) {
      const located_value v = c.located(cfg::LOCATED_ITEM_EQUIPMENT_ID, g);
      try_resource(v.whole_repetition ? component_of(v.raw, 1, dl) : v.raw);
    }
    if (const auto aig = c.find_in("AIG", g)) try_resource(c.comp(*aig, 3, 1));
    if (obr) try_resource(c.comp(*obr, 21, 1));
    if (ipc) {
      try_resource(ipc->field(9).repetition(0).raw());
      try_resource(c.comp(*ipc, 7, 1));
    }

    // A referral order: the profile's referred_to location names another
    // member (and the order names no machine: a booking stays a booking).
    if (eq == nullptr) {
      std::string to = referred_to_of(c, g);
      if (!to.empty() && to != c.hospital()) {
        std::string referral_id = c.profile().location(cfg::LOCATED_ITEM_REFERRAL_ID) != nullptr ? referral : placer;
        if (referral_id.empty()) {
          return missing(c.profile().location(cfg::LOCATED_ITEM_REFERRAL_ID) != nullptr
                             ? c.located(cfg::LOCATED_ITEM_REFERRAL_ID, g).where.path()
                             : path_of(orc, 2),
                         "placer order number (the referral's id)");
        }
        const referral_order_kind kind = referral_order_kind_of(control_code);
        if (kind == referral_order_kind::none) {
          referral = std::move(referral_id);  // about the order of a referral: the referral topic, as OrderStatusChanged
        } else {
          ev::Priority priority = ev::PRIORITY_UNSPECIFIED;
          if (kind == referral_order_kind::request) {
            auto p = order_priority(c, tq1, orc, obr);
            if (!p) return std::unexpected(std::move(p.error()));
            priority = *p;
          }
          auto mapped = map_referral_order(c, referral_order{.orc = orc,
                                                             .obr = obr,
                                                             .g = g,
                                                             .control_code = control_code,
                                                             .kind = kind,
                                                             .referral_id = std::move(referral_id),
                                                             .placer = placer,
                                                             .filler = filler,
                                                             .to_hospital = std::move(to),
                                                             .priority = priority});
          if (!mapped) return mapped;
          continue;
        }
      }
    }

    ev::Envelope* e = nullptr;
    if (eq != nullptr) {
      e = c.emit(ev::TOPIC_BOOKING, eq->id).envelope;
    } else if (!referral.empty()) {
      e = c.emit(ev::TOPIC_REFERRAL, referral).envelope;
    } else {
      std::string key = !accession.empty() ? accession : !placer.empty() ? placer : filler;
      if (key.empty()) return missing(path_of(orc, 2), "placer order number (or accession, filler order number)");
      e = c.emit(ev::TOPIC_REPORT, std::move(key)).envelope;
    }
    if (pid) {
      if (auto read = patient_identifiers(c, *pid, /*required=*/false, *e->mutable_subject()->mutable_identifiers());
          !read) {
        return read;
      }
    }
    auto* corr = e->mutable_correlation();
    put(*corr, &ev::Correlation::mutable_placer_order, placer);
    put(*corr, &ev::Correlation::mutable_filler_order, filler);
    put(*corr, &ev::Correlation::mutable_accession, accession);
    put(*corr, &ev::Correlation::mutable_study_uid, study_uid);
    put(*corr, &ev::Correlation::mutable_referral_id, referral);

    auto ordered_at = c.time_at(orc, 9);
    if (!ordered_at) return std::unexpected(std::move(ordered_at.error()));

    if (control->control == ev::ORDER_CONTROL_NEW) {
      if (!obr) return missing("OBR", "observation request of the new order " + path_of(orc, 0));
      auto* body = e->mutable_order_placed();
      body->set_control(control->control);
      put(*body, &ev::OrderPlaced::mutable_placer_order, placer);
      put(*body, &ev::OrderPlaced::mutable_filler_order, filler);
      put(*body, &ev::OrderPlaced::mutable_placer_group, c.comp_text(orc, 4, 1));
      put(*body, &ev::OrderPlaced::mutable_accession, accession);
      // The exam.
      field_ref exam_where(*obr, 4);
      if (c.profile().location(cfg::LOCATED_ITEM_EXAM_CODE) != nullptr) {
        const located_value v = c.located(cfg::LOCATED_ITEM_EXAM_CODE, g);
        if (v.found) {
          exam_where = v.where;
          if (v.whole_repetition) {
            c.coding(v.raw, *body->mutable_service());
          } else {
            body->mutable_service()->set_code(c.text(v.raw));
          }
        }
      } else {
        c.coding(obr->field(4).repetition(0).raw(), *body->mutable_service());
      }
      if (body->service().code().empty()) return missing(exam_where.path(), "universal service identifier");
      const auto cat = c.catalogue(body->service());
      if (cat.system_has_map && !cat.mapped) {
        return unknown_code(exam_where.path(), "exam", body->service().code(),
                            "not in the profile's code map for " + body->service().system());
      }
      if (cat.mapped) cat.write(*body->mutable_catalogue_code());
      // Modality: quirk, IPC-5, OBR-24, the machine's.
      std::string modality;
      if (c.profile().location(cfg::LOCATED_ITEM_MODALITY) != nullptr) {
        modality = c.id_item(cfg::LOCATED_ITEM_MODALITY, g, {});
      } else {
        if (ipc) modality = c.comp_text(*ipc, 5, 1);
        if (modality.empty()) modality = modality_of_section(obr->field(24).repetition(0).raw());
      }
      if (modality.empty() && eq != nullptr) modality = eq->modality;
      body->set_modality(std::move(modality));
      auto priority = order_priority(c, tq1, orc, obr);
      if (!priority) return std::unexpected(std::move(priority.error()));
      body->set_priority(*priority);
      // Who ordered, from where.
      std::string_view xcn = orc.field(12).repetition(0).raw();
      if (c.profile().location(cfg::LOCATED_ITEM_REFERRING_DOCTOR) != nullptr) {
        const located_value v = c.located(cfg::LOCATED_ITEM_REFERRING_DOCTOR, g);
        xcn = v.raw;
      } else if (xcn.empty()) {
        xcn = obr->field(16).repetition(0).raw();
      }
      std::string ordering_hospital = xon_hospital(c, orc.field(21).repetition(0).raw());
      if (ordering_hospital.empty()) ordering_hospital = c.hospital();
      if (!xcn.empty() && !is_null(xcn)) {
        ev::ProviderRef& ordering = *body->mutable_ordering_provider();
        c.provider_xcn(xcn, ordering);
        ordering.set_hospital(ordering_hospital);
      }
      body->set_ordering_hospital(ordering_hospital);
      if (eq != nullptr) {
        body->set_performing_hospital(eq->hospital);
        body->set_equipment_id(eq->id);
      } else if (receiver != ordering_hospital) {
        body->set_performing_hospital(receiver);
      }
      if (*ordered_at) set_timestamp(*body->mutable_ordered_at(), **ordered_at);
      // When: TQ1-7, OBR-27.4, ORC-7.4, OBR-36.
      std::optional<instant> when;
      if (tq1) {
        auto t = c.time_at(*tq1, 7);
        if (!t) return std::unexpected(std::move(t.error()));
        when = *t;
      }
      struct place {
        const segment_view* seg;
        std::size_t field;
        std::size_t comp;
      };
      for (const place pl : {place{&*obr, 27, 4}, place{&orc, 7, 4}, place{&*obr, 36, 1}}) {
        if (when) break;
        const std::string_view raw = c.comp(*pl.seg, pl.field, pl.comp);
        if (raw.empty()) continue;
        auto t = c.time_of(raw, field_ref(*pl.seg, pl.field, 0, pl.comp));
        if (!t) return std::unexpected(std::move(t.error()));
        when = *t;
      }
      if (when) set_timestamp(*body->mutable_requested_for(), *when);
      const field_view reasons = obr->field(31);
      for (std::size_t r = 0; r < reasons.repetition_count(); ++r) {
        const std::string_view raw = reasons.repetition(r).raw();
        if (!raw.empty() && !is_null(raw)) c.coding(raw, *body->add_reasons());
      }
      put(*body, &ev::OrderPlaced::mutable_clinical_info, c.text(obr->field(13).repetition(0).raw()));
      put(*body, &ev::OrderPlaced::mutable_referral_id, referral);
    } else {
      auto* body = e->mutable_order_status_changed();
      body->set_control(control->control);
      body->set_control_code(std::string(control_code));
      put(*body, &ev::OrderStatusChanged::mutable_placer_order, placer);
      put(*body, &ev::OrderStatusChanged::mutable_filler_order, filler);
      const std::string_view status = orc.field(5).repetition(0).raw();
      if (!status.empty() && !is_null(status)) {
        const status_entry* st = nullptr;
        for (const auto& s : order_statuses) {
          if (same(s.code, status)) st = &s;
        }
        if (st == nullptr) {
          return unknown_code(path_of(orc, 5), "order status", status, "table 0038: A, CA, CM, DC, ER, HD, IP, RP, SC");
        }
        body->set_status(st->status);
        body->set_status_code(std::string(status));
      }
      if (const std::string_view raw = orc.field(16).repetition(0).raw(); !raw.empty() && !is_null(raw)) {
        c.coding(raw, *body->mutable_reason());
      }
      if (*ordered_at) set_timestamp(*body->mutable_changed_at(), **ordered_at);
      put(*body, &ev::OrderStatusChanged::mutable_accession, accession);
    }
  }
  if (!any) return missing("ORC", "common order segment");
  return {};
}

}  // namespace yilian::hl7v2::detail
