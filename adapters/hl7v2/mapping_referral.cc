// REF^I12 -> ReferralRequested; REF^I13/I14 and RRI^I12-I15 ->
// ReferralStateChanged.
#include <optional>

#include "adapters/hl7v2/mapping_internal.h"

namespace yilian::hl7v2::detail {

namespace cfg = config::v1;

namespace {

struct provider {
  std::optional<segment_view> prd;
  std::string hospital;
  // The ProviderRef fields, written into the event when it names a person.
  std::string id;
  std::string name;
  std::string department;
  bool has_person() const { return !id.empty() || !name.empty(); }
  void write(ev::ProviderRef& out, std::string at_hospital) const {
    out.set_id(id);
    out.set_name(name);
    put(out, &ev::ProviderRef::mutable_department, department);
    out.set_hospital(std::move(at_hospital));
  }
};

// PRD -> provider: PRD-2 name (XPN), PRD-7.1 id (PLN), PRD-4.1 point of
// care as department, and the facility: PRD-10 (XON, v2.6+), else PRD-4.4
// (PL facility).
provider read_prd(const map_context& c, const segment_view& prd) {
  const delimiters& dl = c.delims();
  provider p;
  p.prd = prd;
  p.hospital = xon_hospital(c, prd.field(10).repetition(0).raw());
  if (p.hospital.empty()) p.hospital = c.facility_hospital(prd.field(4).repetition(0).subcomponent_raw(4, 1));
  const std::string_view name = prd.field(2).repetition(0).raw();
  p.id = c.text(prd.field(7).first_component());
  p.name = map_context::join_name(c.text(subcomponent_of(component_of(name, 1, dl), 1, dl)),
                                  c.text(component_of(name, 2, dl)));
  p.department = c.text(prd.field(4).first_component());
  return p;
}

}  // namespace

result<ev::ReferralDirection> referral_direction(const map_context& c, const std::string& from, const std::string& to) {
  if (c.profile().location(cfg::LOCATED_ITEM_REFERRAL_DIRECTION) != nullptr) {
    const located_value v = c.located(cfg::LOCATED_ITEM_REFERRAL_DIRECTION, {0, c.size()});
    const std::string value = c.text(v.whole_repetition ? component_of(v.raw, 1, c.delims()) : v.raw);
    if (value == "UP" || value == "U" || value == "up" || value == "上转") return ev::REFERRAL_DIRECTION_UP;
    if (value == "DOWN" || value == "D" || value == "down" || value == "下转") return ev::REFERRAL_DIRECTION_DOWN;
    if (!value.empty()) return unknown_code(v.where.path(), "referral direction", value, "UP, DOWN, U, D, 上转, 下转");
  }
  // Tier numbers: 1 tertiary (highest) .. 3 primary.
  const int f = c.tier(from);
  const int t = c.tier(to);
  if (f == 0 || t == 0 || f == t) return ev::REFERRAL_DIRECTION_UNSPECIFIED;
  return t < f ? ev::REFERRAL_DIRECTION_UP : ev::REFERRAL_DIRECTION_DOWN;
}

namespace {

// RF1-1 (table 0283). `response` = the receiver answering (RRI): its
// "pending" means it has the referral.
result<ev::ReferralState> rf1_state(std::string_view code, bool response, const field_ref& where) {
  if (code == "A") return ev::REFERRAL_STATE_ACCEPTED;
  if (code == "P") return response ? ev::REFERRAL_STATE_RECEIVED : ev::REFERRAL_STATE_REQUESTED;
  if (code == "R") return ev::REFERRAL_STATE_REJECTED;
  if (code == "E") return ev::REFERRAL_STATE_EXPIRED;
  return unknown_code(where.path(), "referral status", code, "table 0283: A, P, R, E");
}

result<ev::Priority> referral_priority(std::string_view code, const field_ref& where) {
  if (code.empty() || is_null(code)) return ev::PRIORITY_UNSPECIFIED;
  if (code == "S") return ev::PRIORITY_STAT;
  if (code == "A") return ev::PRIORITY_ASAP;
  if (code == "R") return ev::PRIORITY_ROUTINE;
  return unknown_code(where.path(), "referral priority", code, "table 0280: S, A, R");
}

}  // namespace

result<void> map_referral(map_context& c) {
  const group_range whole{0, c.size()};
  const bool response = c.code() == "RRI";
  const std::string& trigger = c.trigger();
  const auto rf1 = c.find_first("RF1");

  std::string referral = c.id_item(cfg::LOCATED_ITEM_REFERRAL_ID, whole, rf1 ? c.comp(*rf1, 6, 1) : std::string_view{});
  if (referral.empty()) {
    return missing(rf1 ? path_of(*rf1, 6) : std::string("RF1-6"), "originating referral identifier");
  }

  const bool request = !response && trigger == "I12";
  ev::Envelope& e = *c.emit(ev::TOPIC_REFERRAL, referral).envelope;
  if (const auto pid = c.find_first("PID")) {
    auto read = patient_identifiers(c, *pid, /*required=*/request, *e.mutable_subject()->mutable_identifiers());
    if (!read) return read;
    if (request) {
      // The hospital referred to needs to know whom it receives (its REF^I12 PID).
      auto d = demographics(c, *pid, /*registration=*/false, *e.mutable_referral_requested()->mutable_patient());
      if (!d) return d;
    }
  } else if (request) {
    return missing("PID", "patient identification segment");
  }

  // Providers and hospitals.
  provider referring;
  provider referred_to;
  for (std::size_t i = 0; i < c.size(); ++i) {
    const segment_view s = c.seg(i);
    if (s.id() != "PRD" || c.skip(s)) continue;
    const std::string_view role = s.field(1).first_component();
    if (role == "RP" && !referring.prd) referring = read_prd(c, s);
    if (role == "RT" && !referred_to.prd) referred_to = read_prd(c, s);
  }
  const segment_view msh = c.msg().msh();
  const std::string sender = c.hospital();
  std::string receiver = c.facility_hospital(msh.field(6).first_component());
  std::string from = referring.hospital;
  std::string to = referred_to.hospital;
  if (from.empty()) from = response ? receiver : sender;
  if (to.empty()) to = response ? sender : receiver;
  auto direction = referral_direction(c, from, to);
  if (!direction) return std::unexpected(std::move(direction.error()));

  std::string_view status_code = rf1 ? rf1->field(1).first_component() : std::string_view{};
  if (is_null(status_code)) status_code = {};
  const field_ref status_where = rf1 ? field_ref(*rf1, 1) : field_ref("RF1-1");
  const std::string reason_raw(rf1 ? rf1->field(10).repetition(0).raw() : std::string_view{});

  e.mutable_correlation()->set_referral_id(referral);

  if (request) {
    auto* body = e.mutable_referral_requested();
    body->set_referral_id(referral);
    if (!status_code.empty()) {
      // Validated, but a new referral is REQUESTED whatever it says.
      if (auto st = rf1_state(status_code, false, status_where); !st) return std::unexpected(std::move(st.error()));
    }
    body->set_state(ev::REFERRAL_STATE_REQUESTED);
    body->set_direction(*direction);
    body->set_from_hospital(from);
    body->set_to_hospital(to);
    if (referring.has_person()) referring.write(*body->mutable_referring_provider(), from);
    if (referred_to.has_person()) referred_to.write(*body->mutable_referred_to_provider(), to);
    if (rf1) {
      auto priority = referral_priority(rf1->field(2).first_component(), field_ref(*rf1, 2));
      if (!priority) return std::unexpected(std::move(priority.error()));
      body->set_priority(*priority);
      if (const std::string_view raw = rf1->field(3).repetition(0).raw(); !raw.empty() && !is_null(raw)) {
        c.coding(raw, *body->mutable_referral_type());
      }
      if (!reason_raw.empty() && !is_null(reason_raw)) {
        c.coding(reason_raw, *body->mutable_reason());
        body->set_reason_text(body->reason().display());
      }
      // RF1-11: for a downward referral the upward one it follows (by
      // convention), otherwise the receiver's own id for it.
      std::string rf1_11 = c.comp_text(*rf1, 11, 1);
      if (*direction == ev::REFERRAL_DIRECTION_DOWN) {
        body->set_linked_referral_id(std::move(rf1_11));
      } else {
        body->set_external_referral_id(std::move(rf1_11));
      }
      auto effective = c.time_at(*rf1, 7);
      if (!effective) return std::unexpected(std::move(effective.error()));
      if (*effective) set_timestamp(*body->mutable_effective_at(), **effective);
      auto expires = c.time_at(*rf1, 8);
      if (!expires) return std::unexpected(std::move(expires.error()));
      if (*expires) set_timestamp(*body->mutable_expires_at(), **expires);
    }
    std::string summary;
    for (std::size_t i = 0; i < c.size(); ++i) {
      const segment_view s = c.seg(i);
      if (c.skip(s)) continue;
      if (s.id() == "DG1") {
        if (const std::string_view raw = s.field(3).repetition(0).raw(); !raw.empty() && !is_null(raw)) {
          c.coding(raw, *body->add_diagnoses());
        }
      } else if (s.id() == "PR1") {
        if (const std::string_view raw = s.field(3).repetition(0).raw(); !raw.empty() && !is_null(raw)) {
          c.coding(raw, *body->add_requested_services());
        }
      } else if (s.id() == "OBR") {
        if (const std::string_view raw = s.field(4).repetition(0).raw(); !raw.empty() && !is_null(raw)) {
          c.coding(raw, *body->add_requested_services());
        }
      } else if (s.id() == "NTE") {
        append_notes(c, s, summary);
      } else if (s.id() == "OBX") {
        if (auto attached = attach_document(c, s, *body->mutable_attachments()); !attached) return attached;
      }
    }
    body->set_clinical_summary(std::move(summary));
    return {};
  }

  // A state change.
  auto* body = e.mutable_referral_state_changed();
  body->set_referral_id(referral);
  body->set_direction(*direction);
  std::string reason_text;
  if (!status_code.empty()) {
    auto st = rf1_state(status_code, response, status_where);
    if (!st) return std::unexpected(std::move(st.error()));
    body->set_state(*st);
    body->set_source_status(c.text(status_code));
  }
  if (!response && trigger == "I14") {
    body->set_state(ev::REFERRAL_STATE_CANCELLED);  // a cancel request cancels whatever RF1-1 says
    if (status_code.empty()) body->set_source_status("I14");
  } else if (!response && status_code.empty()) {
    body->set_state(ev::REFERRAL_STATE_REQUESTED);  // I13: modified, still requested
    body->set_source_status(trigger);
  } else if (response && status_code.empty()) {
    const auto msa = c.find_first("MSA");
    const std::string_view ack = msa ? msa->field(1).repetition(0).raw() : std::string_view{};
    if (trigger == "I15" || ack.empty()) {
      return missing(status_where.path(), "referral status (the response carries no RF1-1 and no MSA-1)");
    }
    if (ack == "AA" || ack == "CA") {
      body->set_state(trigger == "I14" ? ev::REFERRAL_STATE_CANCELLED : ev::REFERRAL_STATE_RECEIVED);
    } else if (ack == "AE" || ack == "AR" || ack == "CE" || ack == "CR") {
      body->set_state(ev::REFERRAL_STATE_REJECTED);
      reason_text = c.text(msa->field(3).repetition(0).raw());
    } else {
      return unknown_code(path_of(*msa, 1), "acknowledgment code", ack, "table 0008: AA, AE, AR, CA, CE, CR");
    }
    body->set_source_status("MSA-1 " + std::string(ack));
  }
  if (!reason_raw.empty() && !is_null(reason_raw)) {
    c.coding(reason_raw, *body->mutable_reason());
    if (reason_text.empty()) reason_text = body->reason().display();
  }
  body->set_reason_text(std::move(reason_text));
  body->set_actor_hospital(sender);
  const provider& actor = response ? referred_to : referring;
  if (actor.has_person()) actor.write(*body->mutable_actor(), actor.hospital.empty() ? sender : actor.hospital);
  return {};
}

}  // namespace yilian::hl7v2::detail
