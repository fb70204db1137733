// ORM^O01, OMG^O19, OMI^O23: one event per ORC group.
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
result<ev::Priority> priority_of(std::string_view code, const std::string& where) {
  if (code.empty() || is_null(code)) return ev::PRIORITY_UNSPECIFIED;
  if (code == "S") return ev::PRIORITY_STAT;
  if (code == "A") return ev::PRIORITY_ASAP;
  if (code == "R") return ev::PRIORITY_ROUTINE;
  if (code == "P" || code == "C" || code == "T" || code == "PRN") return ev::PRIORITY_UNSPECIFIED;
  return unknown_code(where, "priority", code, "table 0485: S, A, R, P, C, T, PRN");
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
  std::vector<ev::Identifier> ids;
  if (const auto pid = c.find_first("PID")) {
    auto read = patient_identifiers(c, *pid, /*required=*/false);
    if (!read) return std::unexpected(std::move(read.error()));
    ids = std::move(*read);
  }
  const segment_view msh = c.msg().msh();
  const std::string receiver = c.facility_hospital(msh.field(6).repetition(0).component_raw(1));
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
      if (e.code == control_code) control = &e;
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

    ev::Envelope* e = nullptr;
    if (eq != nullptr) {
      e = &c.emit(ev::TOPIC_BOOKING, eq->id);
    } else if (!referral.empty()) {
      e = &c.emit(ev::TOPIC_REFERRAL, referral);
    } else {
      std::string key = !accession.empty() ? accession : !placer.empty() ? placer : filler;
      if (key.empty()) return missing(path_of(orc, 2), "placer order number (or accession, filler order number)");
      e = &c.emit(ev::TOPIC_REPORT, std::move(key));
    }
    set_subject(*e, ids);
    auto* corr = e->mutable_correlation();
    corr->set_placer_order(placer);
    corr->set_filler_order(filler);
    corr->set_accession(accession);
    corr->set_study_uid(study_uid);
    corr->set_referral_id(referral);

    auto ordered_at = c.time_at(orc, 9);
    if (!ordered_at) return std::unexpected(std::move(ordered_at.error()));

    if (control->control == ev::ORDER_CONTROL_NEW) {
      if (!obr) return missing("OBR", "observation request of the new order " + path_of(orc, 0));
      auto* body = e->mutable_order_placed();
      body->set_control(control->control);
      body->set_placer_order(placer);
      body->set_filler_order(filler);
      body->set_placer_group(c.comp_text(orc, 4, 1));
      body->set_accession(accession);
      // The exam.
      std::string exam_where = path_of(*obr, 4);
      if (c.profile().location(cfg::LOCATED_ITEM_EXAM_CODE) != nullptr) {
        const located_value v = c.located(cfg::LOCATED_ITEM_EXAM_CODE, g);
        if (v.found) {
          exam_where = v.where;
          if (v.whole_repetition) {
            *body->mutable_service() = c.coding(v.raw);
          } else {
            body->mutable_service()->set_code(c.text(v.raw));
          }
        }
      } else {
        *body->mutable_service() = c.coding(obr->field(4).repetition(0).raw());
      }
      if (body->service().code().empty()) return missing(exam_where, "universal service identifier");
      const auto cat = c.catalogue(body->service());
      if (cat.system_has_map && !cat.mapped) {
        return unknown_code(exam_where, "exam", body->service().code(),
                            "not in the profile's code map for " + body->service().system());
      }
      if (cat.mapped) *body->mutable_catalogue_code() = cat.coding;
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
      // Priority: TQ1-9, ORC-7.6, OBR-27.6.
      std::string_view prio;
      std::string prio_where;
      if (tq1) {
        prio = c.comp(*tq1, 9, 1);
        prio_where = path_of(*tq1, 9);
      }
      if (prio.empty()) {
        prio = c.comp(orc, 7, 6);
        prio_where = path_of(orc, 7, 0, 6);
      }
      if (prio.empty()) {
        prio = c.comp(*obr, 27, 6);
        prio_where = path_of(*obr, 27, 0, 6);
      }
      auto priority = priority_of(prio, prio_where);
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
        *body->mutable_ordering_provider() = c.provider_xcn(xcn);
        body->mutable_ordering_provider()->set_hospital(ordering_hospital);
      }
      body->set_ordering_hospital(ordering_hospital);
      if (eq != nullptr) {
        body->set_performing_hospital(eq->hospital);
        body->set_equipment_id(eq->id);
      } else if (receiver != ordering_hospital) {
        body->set_performing_hospital(receiver);
      }
      if (*ordered_at) *body->mutable_ordered_at() = **ordered_at;
      // When: TQ1-7, OBR-27.4, ORC-7.4, OBR-36.
      std::optional<google::protobuf::Timestamp> when;
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
        auto t = c.time_of(raw, path_of(*pl.seg, pl.field, 0, pl.comp));
        if (!t) return std::unexpected(std::move(t.error()));
        when = *t;
      }
      if (when) *body->mutable_requested_for() = *when;
      const field_view reasons = obr->field(31);
      for (std::size_t r = 0; r < reasons.repetition_count(); ++r) {
        const std::string_view raw = reasons.repetition(r).raw();
        if (!raw.empty() && !is_null(raw)) *body->add_reasons() = c.coding(raw);
      }
      body->set_clinical_info(c.text(obr->field(13).repetition(0).raw()));
      body->set_referral_id(referral);
    } else {
      auto* body = e->mutable_order_status_changed();
      body->set_control(control->control);
      body->set_control_code(std::string(control_code));
      body->set_placer_order(placer);
      body->set_filler_order(filler);
      const std::string_view status = orc.field(5).repetition(0).raw();
      if (!status.empty() && !is_null(status)) {
        const status_entry* st = nullptr;
        for (const auto& s : order_statuses) {
          if (s.code == status) st = &s;
        }
        if (st == nullptr) {
          return unknown_code(path_of(orc, 5), "order status", status, "table 0038: A, CA, CM, DC, ER, HD, IP, RP, SC");
        }
        body->set_status(st->status);
        body->set_status_code(std::string(status));
      }
      if (const std::string_view raw = orc.field(16).repetition(0).raw(); !raw.empty() && !is_null(raw)) {
        *body->mutable_reason() = c.coding(raw);
      }
      if (*ordered_at) *body->mutable_changed_at() = **ordered_at;
      body->set_accession(accession);
    }
  }
  if (!any) return missing("ORC", "common order segment");
  return {};
}

}  // namespace yilian::hl7v2::detail
