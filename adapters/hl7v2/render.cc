#include "adapters/hl7v2/render.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <optional>
#include <vector>

#include "adapters/hl7v2/ack.h"
#include "adapters/hl7v2/charset.h"
#include "adapters/hl7v2/message.h"

namespace yilian::hl7v2 {

namespace {

namespace ev = events::v1;
namespace cfg = config::v1;

// Outbound messages always use the standard encoding characters.
const delimiters kDelims{};

std::string esc(std::string_view text) { return escape(text, kDelims); }

// Joins already-encoded pieces with `sep`, dropping trailing empty pieces
// (HL7 says a trailing empty component need not be sent).
std::string join(std::initializer_list<std::string> pieces, char sep) {
  std::vector<std::string_view> v(pieces.begin(), pieces.end());
  while (!v.empty() && v.back().empty()) v.pop_back();
  std::string out;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i > 0) out.push_back(sep);
    out += v[i];
  }
  return out;
}

std::string comps(std::initializer_list<std::string> pieces) { return join(pieces, kDelims.component); }
std::string subs(std::initializer_list<std::string> pieces) { return join(pieces, kDelims.subcomponent); }

std::string repeat(const std::vector<std::string>& reps) {
  std::vector<std::string_view> v;
  for (const auto& r : reps) {
    if (!r.empty()) v.push_back(r);
  }
  std::string out;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i > 0) out.push_back(kDelims.repetition);
    out += v[i];
  }
  return out;
}

// One segment under construction: fields set by their standard number, each
// already encoded (escaped and joined with component separators).
class segment {
 public:
  explicit segment(std::string id) : id_(std::move(id)) {}
  segment& set(std::size_t n, std::string encoded) {
    if (n == 0) return *this;
    if (fields_.size() < n) fields_.resize(n);
    fields_[n - 1] = std::move(encoded);
    return *this;
  }
  segment& text(std::size_t n, std::string_view value) { return set(n, esc(value)); }
  std::string str() const {
    std::size_t last = fields_.size();
    while (last > 0 && fields_[last - 1].empty()) --last;
    std::string out = id_;
    // MSH-1 is the field separator itself: MSH-2 follows it directly.
    const std::size_t first = id_ == "MSH" ? 2 : 1;
    if (id_ == "MSH") out.push_back(kDelims.field);
    for (std::size_t i = first; i <= last; ++i) {
      if (i > first || id_ != "MSH") out.push_back(kDelims.field);
      out += fields_[i - 1];
    }
    return out;
  }

 private:
  std::string id_;
  std::vector<std::string> fields_;
};

struct hl7_version {
  int major = 2;
  int minor = 5;
  bool has_structure = true;  // MSH-9.3 exists from v2.3.1 on
  bool at_least(int ma, int mi) const { return major > ma || (major == ma && minor >= mi); }
};

result<hl7_version> parse_version(std::string_view v) {
  static constexpr std::array<std::string_view, 9> known = {"2.3", "2.3.1", "2.4", "2.5", "2.5.1",
                                                            "2.6", "2.7", "2.7.1", "2.8"};
  if (std::find(known.begin(), known.end(), v) == known.end()) {
    return fail(errc::unsupported, "HL7 version '" + std::string(v) + "' cannot be rendered (2.3 to 2.8)",
                "render_options.version");
  }
  return hl7_version{.major = 2, .minor = v[2] - '0', .has_structure = v != "2.3"};
}

struct message_kind {
  std::string code;       // MSH-9.1
  std::string trigger;    // MSH-9.2
  std::string structure;  // MSH-9.3
  std::string msh9(const hl7_version& v) const {
    return v.has_structure ? comps({code, trigger, structure}) : comps({code, trigger});
  }
};

bool is_one_of(std::string_view s, std::initializer_list<std::string_view> set) {
  return std::find(set.begin(), set.end(), s) != set.end();
}

std::string appointment_trigger(const ev::AppointmentChanged& a) {
  if (is_one_of(a.trigger(), {"S12", "S13", "S14", "S15", "S26"})) return a.trigger();
  switch (a.state()) {
    case ev::BOOKING_STATE_CANCELLED:
      return "S15";
    case ev::BOOKING_STATE_NO_SHOW:
      return "S26";
    case ev::BOOKING_STATE_BOOKED:
      if (a.previous_state() == ev::BOOKING_STATE_BOOKED) return a.has_previous_start() ? "S13" : "S14";
      return "S12";
    case ev::BOOKING_STATE_REQUESTED:
    case ev::BOOKING_STATE_HELD:
      return "S12";
    case ev::BOOKING_STATE_CHECKED_IN:
    case ev::BOOKING_STATE_PERFORMED:
    case ev::BOOKING_STATE_REPORTED:
    case ev::BOOKING_STATE_CORRECTED:
      return "S14";
    default:
      return {};
  }
}

std::string referral_trigger(ev::ReferralState s) {
  switch (s) {
    case ev::REFERRAL_STATE_RECEIVED:
    case ev::REFERRAL_STATE_ACCEPTED:
    case ev::REFERRAL_STATE_REJECTED:
      return "I12";
    case ev::REFERRAL_STATE_SCHEDULED:
    case ev::REFERRAL_STATE_ARRIVED:
    case ev::REFERRAL_STATE_COMPLETED:
    case ev::REFERRAL_STATE_REPORT_RETURNED:
    case ev::REFERRAL_STATE_NO_SHOW:
      return "I13";
    case ev::REFERRAL_STATE_CANCELLED:
    case ev::REFERRAL_STATE_TERMINATED:
    case ev::REFERRAL_STATE_EXPIRED:
      return "I14";
    case ev::REFERRAL_STATE_DRAFT:
    case ev::REFERRAL_STATE_REQUESTED:
      return "I15";
    default:
      return {};
  }
}

// MSH-9.1 and MSH-9.2 of a message type as sent ("REF^I13^REF_I12").
std::pair<std::string_view, std::string_view> answered_type(std::string_view msh9) {
  const auto first = msh9.find('^');
  if (first == std::string_view::npos) return {msh9, {}};
  const std::string_view rest = msh9.substr(first + 1);
  return {msh9.substr(0, first), rest.substr(0, rest.find('^'))};
}

result<message_kind> decide_kind(const ev::Envelope& e, const hl7_version& v) {
  switch (e.body_case()) {
    case ev::Envelope::kPatientRegistered:
      if (e.patient_registered().trigger() == "A28") return message_kind{"ADT", "A28", "ADT_A05"};
      return message_kind{"ADT", "A04", "ADT_A01"};
    case ev::Envelope::kPatientUpdated:
      if (e.patient_updated().trigger() == "A31") return message_kind{"ADT", "A31", "ADT_A05"};
      return message_kind{"ADT", "A08", "ADT_A01"};
    case ev::Envelope::kAppointmentChanged: {
      auto t = appointment_trigger(e.appointment_changed());
      if (t.empty()) {
        return fail(errc::validation_failed, "AppointmentChanged has neither a SIU trigger nor a booking state",
                    "appointment_changed.state");
      }
      return message_kind{"SIU", t, "SIU_S12"};
    }
    case ev::Envelope::kOrderPlaced:
    case ev::Envelope::kOrderStatusChanged:
      if (v.at_least(2, 5)) return message_kind{"OMI", "O23", "OMI_O23"};
      return message_kind{"ORM", "O01", "ORM_O01"};
    case ev::Envelope::kReportIssued:
      return message_kind{"ORU", "R01", "ORU_R01"};
    case ev::Envelope::kReferralRequested:
      return message_kind{"REF", "I12", "REF_I12"};
    case ev::Envelope::kReferralStateChanged: {
      auto t = referral_trigger(e.referral_state_changed().state());
      if (t.empty()) {
        return fail(errc::validation_failed, "ReferralStateChanged without a state", "referral_state_changed.state");
      }
      return message_kind{"RRI", t, "RRI_I12"};
    }
    case ev::Envelope::kDocumentShared:
      if (!e.document_shared().replaces_document_id().empty()) return message_kind{"MDM", "T10", "MDM_T02"};
      return message_kind{"MDM", "T02", "MDM_T02"};
    case ev::Envelope::kReferralCommandRejected: {
      // The application acknowledgment of the hospital message that asked.
      const auto& o = e.referral_command_rejected().origin();
      if (o.control_id().empty()) {
        return fail(errc::unsupported,
                    "a refusal without the HL7 message it answers (origin.control_id) has no HL7 v2 rendering",
                    "referral_command_rejected.origin.control_id");
      }
      const auto [code, trigger] = answered_type(o.message_type());
      if (code == "REF" && is_one_of(trigger, {"I12", "I13", "I14", "I15"})) {
        return message_kind{"RRI", std::string(trigger), "RRI_I12"};
      }
      return message_kind{"ACK", std::string(trigger), "ACK"};
    }
    case ev::Envelope::BODY_NOT_SET:
      return fail(errc::validation_failed, "the envelope has no body", "body");
    default: {
      const auto* field = ev::Envelope::descriptor()->FindFieldByNumber(static_cast<int>(e.body_case()));
      const std::string name = field != nullptr ? field->message_type()->name() : "unknown body";
      return fail(errc::unsupported, name + " has no HL7 v2 rendering", "body");
    }
  }
}

// Two decimal digits (callers pass 0-99).
std::string two(int v) {
  const auto u = static_cast<unsigned>(v < 0 ? 0 : v % 100);
  return std::string{static_cast<char>('0' + u / 10), static_cast<char>('0' + u % 10)};
}

// Everything a renderer needs, in one place.
struct context {
  const ev::Envelope& e;
  const cfg::HospitalProfile& dest;
  const render_options& o;
  hl7_version version;

  std::chrono::seconds offset_at(std::chrono::sys_seconds t) const {
    return o.utc_offset ? o.utc_offset(t) : std::chrono::seconds{0};
  }

  std::string ts(const google::protobuf::Timestamp& t) const {
    if (t.seconds() == 0 && t.nanos() == 0) return {};
    const auto tp = std::chrono::system_clock::time_point{std::chrono::seconds{t.seconds()}} +
                    std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::nanoseconds{t.nanos()});
    return format_hl7_timestamp(tp, offset_at(std::chrono::floor<std::chrono::seconds>(tp)));
  }

  // The facility id (HD-1) by which a hospital is known in HL7 messages.
  std::string facility_of(std::string_view hospital) const {
    const cfg::HospitalProfile* p = nullptr;
    if (hospital == dest.hospital()) p = &dest;
    else if (o.consortium != nullptr) p = o.consortium->profile(hospital);
    if (p != nullptr) {
      if (p->facility_ids_size() > 0 && !p->facility_ids(0).empty()) return p->facility_ids(0);
      if (p->has_inbound() && p->inbound().has_mllp() && p->inbound().mllp().expected_sending_facilities_size() > 0) {
        return p->inbound().mllp().expected_sending_facilities(0);
      }
    }
    return std::string(hospital);
  }

  std::string hospital_name(std::string_view hospital) const {
    if (o.consortium != nullptr) {
      if (const auto* h = o.consortium->hospital(hospital); h != nullptr && !h->name().empty()) return h->name();
    }
    return std::string(hospital);
  }

  // XON: organization name ^...^ organization identifier (XON-10).
  std::string xon(std::string_view hospital) const {
    if (hospital.empty()) return {};
    return comps({esc(hospital_name(hospital)), "", "", "", "", "", "", "", "", esc(facility_of(hospital))});
  }

  // Equipment id -> the destination's local resource code (reverse of
  // profile.resource_ids), else the id itself.
  std::string resource_code(std::string_view equipment_id) const {
    std::string best;
    for (const auto& [local, target] : dest.resource_ids()) {
      if (target == equipment_id && (best.empty() || local < best)) best = local;  // map order is unspecified
    }
    return best.empty() ? std::string(equipment_id) : best;
  }

  const cfg::Equipment* equipment(std::string_view id) const {
    return o.consortium != nullptr ? o.consortium->equipment(id) : nullptr;
  }

  // CE for a coded value, led by the destination's local code for the
  // catalogue code when its code maps have one.
  std::string coded(const ev::Coding& c, const ev::Coding& catalogue = {}) const {
    if (!catalogue.code().empty()) {
      std::string local;
      std::string local_system;
      for (const auto& m : dest.code_maps()) {
        if (!catalogue.system().empty() && m.target_system() != catalogue.system()) continue;
        for (const auto& [from, to] : m.mappings()) {
          if (to == catalogue.code() && (local.empty() || from < local)) {
            local = from;
            local_system = m.source_system();
          }
        }
        if (!local.empty()) break;
      }
      const std::string cat = comps({esc(catalogue.code()), esc(catalogue.display()), esc(catalogue.system())});
      if (!local.empty()) {
        const std::string text = !c.display().empty() ? c.display() : catalogue.display();
        return comps({esc(local), esc(text), esc(local_system), esc(catalogue.code()), esc(catalogue.display()),
                      esc(catalogue.system())});
      }
      if (c.code().empty()) return cat;
      return comps({esc(c.code()), esc(c.display()), esc(c.system()), esc(catalogue.code()), esc(catalogue.display()),
                    esc(catalogue.system())});
    }
    return comps({esc(c.code()), esc(c.display()), esc(c.system())});
  }

  // CE for a reason given as a code and/or free text.
  std::string reason(const ev::Coding& c, std::string_view text) const {
    if (c.code().empty() && c.display().empty()) return text.empty() ? std::string{} : comps({"", esc(text)});
    return comps({esc(c.code()), esc(!c.display().empty() ? c.display() : text), esc(c.system())});
  }

  // XCN: id ^ family name (the whole name: ProviderRef keeps it as one string).
  static std::string xcn(const ev::ProviderRef& p) { return comps({esc(p.id()), esc(p.name())}); }
  // NDL (OBR-32): its first component is a CNN, whose parts are subcomponents.
  static std::string ndl(const ev::ProviderRef& p) { return subs({esc(p.id()), esc(p.name())}); }
  // EI: entity identifier alone.
  static std::string ei(std::string_view id) { return esc(id); }
};

std::string identifier_type_code(ev::IdentifierType t) {
  switch (t) {
    case ev::IDENTIFIER_TYPE_MRN: return "MR";
    case ev::IDENTIFIER_TYPE_RESIDENT_ID: return "NNCHN";
    case ev::IDENTIFIER_TYPE_INSURANCE_CARD: return "SN";
    case ev::IDENTIFIER_TYPE_HEALTH_CARD: return "HC";
    case ev::IDENTIFIER_TYPE_PASSPORT: return "PPN";
    case ev::IDENTIFIER_TYPE_VISIT: return "VN";
    case ev::IDENTIFIER_TYPE_ENTERPRISE: return "PT";
    default: return {};
  }
}

// CX value^^^namespace_id[&universal_id&ISO]^type_code in the given
// delimiters (outbound messages use the standard ones; a PIX answer those of
// the query it answers).
std::string cx(std::string_view value, const cfg::IdentifierAuthority& a, const delimiters& d = kDelims) {
  std::string hd = a.universal_id().empty()
                       ? escape(a.namespace_id(), d)
                       : join({escape(a.namespace_id(), d), escape(a.universal_id(), d), "ISO"}, d.subcomponent);
  return join({escape(value, d), "", "", std::move(hd), escape(a.type_code(), d)}, d.component);
}

const cfg::IdentifierAuthority* authority_for(const cfg::HospitalProfile& p, std::string_view system) {
  for (const auto& a : p.identifier_authorities()) {
    if (a.system() == system) return &a;
  }
  return nullptr;
}

// The destination's own identifiers of the patient, from the identity index:
// those of the person's records at the destination hospital that the event
// does not already carry. Also the enterprise id when the event has none.
struct cross_referenced {
  std::vector<ev::Identifier> own;
  std::string enterprise;
};

cross_referenced cross_reference(const context& c) {
  cross_referenced out;
  if (c.o.directory == nullptr) return out;
  const auto& subject = c.e.subject();
  std::optional<identity::cross_reference> x;
  if (!subject.enterprise_patient_id().empty()) x = c.o.directory->person(subject.enterprise_patient_id());
  for (int i = 0; !x && i < subject.identifiers_size(); ++i) {
    const auto& id = subject.identifiers(i);
    if (!id.value().empty()) x = c.o.directory->cross_reference_of(id.system(), id.value());
  }
  if (!x) return out;
  out.enterprise = x->enterprise_id;
  for (const auto& id : x->identifiers) {
    if (id.hospital != c.dest.hospital() || authority_for(c.dest, id.system) == nullptr) continue;
    const bool carried = std::any_of(subject.identifiers().begin(), subject.identifiers().end(), [&](const ev::Identifier& s) {
      return s.system() == id.system && s.value() == id.value;
    });
    const bool listed = std::any_of(out.own.begin(), out.own.end(), [&](const ev::Identifier& s) {
      return s.system() == id.system && s.value() == id.value;
    });
    if (carried || listed) continue;
    ev::Identifier& o = out.own.emplace_back();
    o.set_system(id.system);
    o.set_value(id.value);
    o.set_assigner(id.hospital);
    ev::IdentifierType t = ev::IDENTIFIER_TYPE_OTHER;
    (void)ev::IdentifierType_Parse("IDENTIFIER_TYPE_" + id.type, &t);
    o.set_type(t);
  }
  return out;
}

std::string pid3(const context& c) {
  std::vector<std::string> known;
  std::vector<std::string> unknown;
  const cross_referenced x = cross_reference(c);
  // The destination's own numbers first: the first repetition is the one
  // most receiving systems file the message under.
  for (const auto& id : x.own) {
    known.push_back(render_identifier(id.value(), id.system(), id.type(), c.dest, c.o.consortium, kDelims).text);
  }
  for (const auto& id : c.e.subject().identifiers()) {
    if (id.value().empty()) continue;
    auto r = render_identifier(id.value(), id.system(), id.type(), c.dest, c.o.consortium, kDelims);
    (r.reader_knows ? known : unknown).push_back(std::move(r.text));
  }
  const std::string& enterprise =
      c.e.subject().enterprise_patient_id().empty() ? x.enterprise : c.e.subject().enterprise_patient_id();
  if (!enterprise.empty()) {
    const cfg::IdentifierAuthority* auth = nullptr;
    for (const auto& a : c.dest.identifier_authorities()) {
      if (a.type() == ev::IDENTIFIER_TYPE_ENTERPRISE) {
        auth = &a;
        break;
      }
    }
    if (auth != nullptr) known.push_back(cx(enterprise, *auth));
    else unknown.push_back(comps({esc(enterprise), "", "", esc(c.o.sending_facility.empty() ? c.o.sending_application : c.o.sending_facility), "PT"}));
  }
  known.insert(known.end(), unknown.begin(), unknown.end());
  return repeat(known);
}

std::string sex_code(ev::Sex s) {
  switch (s) {
    case ev::SEX_MALE: return "M";
    case ev::SEX_FEMALE: return "F";
    case ev::SEX_OTHER: return "O";
    case ev::SEX_UNKNOWN: return "U";
    default: return {};
  }
}

std::string hl7_date(std::string_view iso) {
  std::string out;
  for (char ch : iso) {
    if (ch != '-') out.push_back(ch);
  }
  return out;
}

segment pid_segment(const context& c, const ev::Demographics* d) {
  segment pid("PID");
  pid.set(1, "1").set(3, pid3(c));
  if (d == nullptr) return pid;
  const auto& n = d->name();
  std::vector<std::string> names;
  if (!n.family().empty() || !n.given().empty()) {
    names.push_back(comps({esc(n.family()), esc(n.given()), "", "", "", "", "L", "I"}));
  } else if (!n.hanzi().empty()) {
    names.push_back(comps({esc(n.hanzi()), "", "", "", "", "", "L", "I"}));
  }
  if (!n.pinyin().empty()) names.push_back(comps({esc(n.pinyin()), "", "", "", "", "", "L", "A"}));
  pid.set(5, repeat(names));
  pid.set(7, esc(hl7_date(d->birth_date())));
  pid.set(8, sex_code(d->sex()));
  std::vector<std::string> addresses;
  for (const auto& a : d->addresses()) {
    if (a.line().empty() && a.city().empty() && a.province().empty() && a.postal_code().empty() &&
        a.district().empty()) {
      addresses.push_back(esc(a.text()));
    } else {
      addresses.push_back(comps({esc(a.line()), "", esc(a.city()), esc(a.province()), esc(a.postal_code()), "", "",
                                 "", esc(a.district())}));
    }
  }
  pid.set(11, repeat(addresses));
  std::vector<std::string> home;
  std::vector<std::string> work;
  for (const auto& t : d->telecom()) {
    if (t.value().empty()) continue;
    if (t.system() == "email") {
      (t.use() == ev::CONTACT_USE_WORK ? work : home).push_back(comps({"", "NET", "Internet", esc(t.value())}));
    } else if (t.use() == ev::CONTACT_USE_WORK) {
      work.push_back(comps({esc(t.value()), "WPN", "PH"}));
    } else {
      home.push_back(comps({esc(t.value()), "PRN", t.use() == ev::CONTACT_USE_MOBILE ? "CP" : "PH"}));
    }
  }
  pid.set(13, repeat(home)).set(14, repeat(work));
  if (!d->ethnic_group().code().empty()) pid.set(22, c.coded(d->ethnic_group()));
  if (d->has_deceased_at()) pid.set(29, c.ts(d->deceased_at()));
  if (d->deceased()) pid.set(30, "Y");
  return pid;
}

std::string priority_code(ev::Priority p) {
  // Tables 0027 (TQ1-9) and 0280 (RF1-2): S stat, A ASAP, R routine. The
  // tables have no "urgent" between ASAP and routine; ASAP is the closer one.
  switch (p) {
    case ev::PRIORITY_STAT: return "S";
    case ev::PRIORITY_ASAP:
    case ev::PRIORITY_URGENT: return "A";
    case ev::PRIORITY_ROUTINE: return "R";
    default: return {};
  }
}

std::string order_control_code(ev::OrderControl c) {
  switch (c) {
    case ev::ORDER_CONTROL_NEW: return "NW";
    case ev::ORDER_CONTROL_ACCEPTED: return "OK";
    case ev::ORDER_CONTROL_UNABLE_TO_ACCEPT: return "UA";
    case ev::ORDER_CONTROL_CANCEL_REQUEST: return "CA";
    case ev::ORDER_CONTROL_CANCELED: return "OC";
    case ev::ORDER_CONTROL_CHANGE_REQUEST: return "XO";
    case ev::ORDER_CONTROL_CHANGED: return "XX";
    case ev::ORDER_CONTROL_DISCONTINUE: return "DC";
    case ev::ORDER_CONTROL_HOLD: return "HD";
    case ev::ORDER_CONTROL_RELEASE: return "RL";
    case ev::ORDER_CONTROL_STATUS_CHANGED: return "SC";
    case ev::ORDER_CONTROL_NUMBER_ASSIGNED: return "NA";
    case ev::ORDER_CONTROL_REPLACE: return "RP";
    case ev::ORDER_CONTROL_RESULTS_FOLLOW: return "RE";
    default: return {};
  }
}

std::string order_status_code(ev::OrderStatus s) {
  switch (s) {
    case ev::ORDER_STATUS_SCHEDULED: return "SC";
    case ev::ORDER_STATUS_IN_PROGRESS: return "IP";
    case ev::ORDER_STATUS_SOME_RESULTS: return "A";
    case ev::ORDER_STATUS_COMPLETED: return "CM";
    case ev::ORDER_STATUS_CANCELED: return "CA";
    case ev::ORDER_STATUS_DISCONTINUED: return "DC";
    case ev::ORDER_STATUS_ON_HOLD: return "HD";
    case ev::ORDER_STATUS_REPLACED: return "RP";
    case ev::ORDER_STATUS_ERROR: return "ER";
    default: return {};
  }
}

std::string report_status_code(ev::ReportStatus s, std::string_view as_sent) {
  switch (s) {
    case ev::REPORT_STATUS_PRELIMINARY: return "P";
    case ev::REPORT_STATUS_FINAL: return "F";
    case ev::REPORT_STATUS_CORRECTED: return "C";
    case ev::REPORT_STATUS_CANCELLED: return "X";
    default: return esc(as_sent);
  }
}

std::string filler_status(ev::BookingState s, std::string_view as_sent) {
  // HL7 table 0278.
  switch (s) {
    case ev::BOOKING_STATE_REQUESTED:
    case ev::BOOKING_STATE_HELD: return "Pending";
    case ev::BOOKING_STATE_BOOKED: return "Booked";
    case ev::BOOKING_STATE_CHECKED_IN: return "Started";
    case ev::BOOKING_STATE_PERFORMED:
    case ev::BOOKING_STATE_REPORTED:
    case ev::BOOKING_STATE_CORRECTED: return "Complete";
    case ev::BOOKING_STATE_CANCELLED: return "Cancelled";
    case ev::BOOKING_STATE_NO_SHOW: return "Noshow";
    default: return esc(as_sent);
  }
}

std::string ascii_upper(std::string_view s) {
  std::string out(s);
  for (auto& ch : out) {
    if (ch >= 'a' && ch <= 'z') ch = static_cast<char>(ch - 'a' + 'A');
  }
  return out;
}

// RP: pointer ^ application id ^ type of data (table 0191) ^ subtype (0291).
std::string rp(const context& c, const ev::ClaimCheck& claim) {
  std::string_view ct = claim.content_type();
  if (const auto semi = ct.find(';'); semi != std::string_view::npos) ct = ct.substr(0, semi);
  const auto slash = ct.find('/');
  const std::string_view major = slash == std::string_view::npos ? ct : ct.substr(0, slash);
  const std::string_view minor = slash == std::string_view::npos ? std::string_view{} : ct.substr(slash + 1);
  std::string type = "AP";
  if (major == "image") type = "IM";
  else if (major == "text") type = "TEXT";
  else if (major == "audio") type = "AU";
  else if (major == "multipart") type = "multipart";
  std::string subtype;
  if (minor == "octet-stream" || minor.empty()) subtype = type == "AP" ? "Octet-stream" : "";
  else if (minor == "hl7-v2") subtype = "HL7V2";
  else if (minor == "fhir+json") subtype = "FHIR";
  else subtype = ascii_upper(minor);
  return comps({esc(claim.uri()), esc(c.o.sending_application), type, esc(subtype)});
}

std::string format_number(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  if (r.ec != std::errc{}) return {};
  return std::string(buf, r.ptr);
}

// --- message builders --------------------------------------------------------

using segments = std::vector<segment>;

segment msh_segment(const context& c, const message_kind& kind) {
  segment msh("MSH");
  std::string control = c.e.event_id().substr(0, 199);
  google::protobuf::Timestamp when = c.e.recorded_at();
  if (when.seconds() == 0 && when.nanos() == 0) when = c.e.occurred_at();
  std::string msh7 = c.ts(when);
  if (msh7.empty()) {
    msh7 = format_hl7_timestamp(c.o.now, c.offset_at(std::chrono::floor<std::chrono::seconds>(c.o.now)));
  }
  const auto cs = c.o.charset != cfg::CHARSET_UNSPECIFIED ? c.o.charset : c.dest.default_charset();
  msh.set(2, "^~\\&")
      .text(3, c.o.sending_application)
      .text(4, c.o.sending_facility)
      .text(5, c.o.receiving_application)
      .text(6, c.facility_of(c.dest.hospital()))
      .set(7, msh7)
      .set(9, kind.msh9(c.version))
      .text(10, control)
      .text(11, c.o.processing_id)
      .text(12, c.o.version)
      .text(18, cs == cfg::CHARSET_UNSPECIFIED ? std::string_view{} : msh18_name(cs));
  return msh;
}

void adt(const context& c, const message_kind& kind, segments& out) {
  const ev::Demographics* d = c.e.has_patient_registered() ? &c.e.patient_registered().demographics()
                                                           : &c.e.patient_updated().demographics();
  google::protobuf::Timestamp when = c.e.occurred_at();
  if (when.seconds() == 0 && when.nanos() == 0) when = c.e.recorded_at();
  out.push_back(std::move(segment("EVN").set(1, kind.trigger).set(2, c.ts(when))));
  out.push_back(pid_segment(c, d));
  // PV1 is required in ADT_A01 and ADT_A05. Class O (outpatient) for a
  // registration, N (not applicable) for person-level messages.
  segment pv1("PV1");
  pv1.set(1, "1").set(2, kind.trigger == "A04" ? "O" : "N");
  if (!c.e.correlation().encounter_id().empty()) pv1.text(19, c.e.correlation().encounter_id());
  out.push_back(std::move(pv1));
}

void siu(const context& c, segments& out) {
  const auto& a = c.e.appointment_changed();
  const std::string start = c.ts(a.start());
  const std::string end = c.ts(a.end());
  const std::string duration = a.duration_minutes() > 0 ? std::to_string(a.duration_minutes()) : std::string{};
  segment sch("SCH");
  sch.set(1, context::ei(!a.appointment_id().empty() ? a.appointment_id() : c.e.correlation().appointment_id()))
      .set(2, context::ei(a.filler_appointment_id()))
      .set(6, c.reason(a.reason(), {}))
      .set(9, duration)
      .set(10, duration.empty() ? std::string{} : "min")
      .set(11, comps({"", "", "", start, end}))
      .set(25, filler_status(a.state(), a.filler_status_code()))
      .set(26, context::ei(a.placer_order()))
      .set(27, context::ei(a.filler_order()));
  out.push_back(std::move(sch));
  out.push_back(pid_segment(c, a.has_patient() ? &a.patient() : nullptr));
  out.push_back(std::move(segment("RGS").set(1, "1")));
  segment ais("AIS");
  ais.set(1, "1").set(3, c.coded(a.exam(), a.catalogue_code())).set(4, start).set(7, duration)
      .set(8, duration.empty() ? std::string{} : "min");
  out.push_back(std::move(ais));
  if (!a.equipment_id().empty()) {
    segment aig("AIG");
    const auto* eq = c.equipment(a.equipment_id());
    aig.set(1, "1")
        .set(3, comps({esc(c.resource_code(a.equipment_id())), eq != nullptr ? esc(eq->name()) : std::string{}}))
        .set(4, eq != nullptr ? esc(config::modality_code(eq->modality())) : std::string{})
        .set(8, start)
        .set(11, duration)
        .set(12, duration.empty() ? std::string{} : "min");
    out.push_back(std::move(aig));
  }
}

void order(const context& c, const message_kind& kind, segments& out) {
  const bool omi = kind.code == "OMI";
  out.push_back(pid_segment(c, nullptr));
  segment orc("ORC");
  segment obr("OBR");
  obr.set(1, "1");
  std::string accession;
  std::string modality;
  std::string equipment_id;
  if (c.e.has_order_placed()) {
    const auto& o = c.e.order_placed();
    accession = !o.accession().empty() ? o.accession() : c.e.correlation().accession();
    modality = o.modality();
    equipment_id = o.equipment_id();
    const std::string requested = c.ts(o.requested_for());
    orc.set(1, order_control_code(o.control() != ev::ORDER_CONTROL_UNSPECIFIED ? o.control() : ev::ORDER_CONTROL_NEW))
        .set(2, context::ei(o.placer_order()))
        .set(3, context::ei(o.filler_order()))
        .set(4, context::ei(o.placer_group()))
        .set(9, c.ts(o.ordered_at()))
        .set(12, context::xcn(o.ordering_provider()))
        .set(21, c.xon(o.ordering_hospital()));
    if (!omi) orc.set(7, comps({"", "", "", requested, "", priority_code(o.priority())}));
    obr.set(2, context::ei(o.placer_order()))
        .set(3, context::ei(o.filler_order()))
        .set(4, c.coded(o.service(), o.catalogue_code()))
        .text(13, o.clinical_info())
        .set(16, context::xcn(o.ordering_provider()))
        .text(18, accession)
        .text(24, modality)
        .set(36, requested);
    std::vector<std::string> reasons;
    for (const auto& r : o.reasons()) reasons.push_back(c.coded(r));
    obr.set(31, repeat(reasons));
    out.push_back(std::move(orc));
    if (omi) {
      out.push_back(std::move(segment("TQ1").set(1, "1").set(7, requested).set(9, priority_code(o.priority()))));
    }
  } else {
    const auto& s = c.e.order_status_changed();
    accession = !s.accession().empty() ? s.accession() : c.e.correlation().accession();
    std::string control = order_control_code(s.control());
    if (control.empty()) control = esc(s.control_code());
    if (control.empty()) control = "SC";
    std::string status = order_status_code(s.status());
    if (status.empty()) status = esc(s.status_code());
    orc.set(1, control)
        .set(2, context::ei(!s.placer_order().empty() ? s.placer_order() : c.e.correlation().placer_order()))
        .set(3, context::ei(!s.filler_order().empty() ? s.filler_order() : c.e.correlation().filler_order()))
        .set(5, status)
        .set(9, c.ts(s.changed_at()))
        .set(16, c.reason(s.reason(), {}));
    obr.set(2, context::ei(!s.placer_order().empty() ? s.placer_order() : c.e.correlation().placer_order()))
        .set(3, context::ei(!s.filler_order().empty() ? s.filler_order() : c.e.correlation().filler_order()))
        .text(18, accession);
    out.push_back(std::move(orc));
    if (omi) out.push_back(std::move(segment("TQ1").set(1, "1")));
  }
  out.push_back(std::move(obr));
  if (omi) {
    segment ipc("IPC");
    ipc.text(1, accession).text(3, c.e.correlation().study_uid()).text(5, modality);
    if (!equipment_id.empty()) {
      ipc.text(7, c.resource_code(equipment_id));
      if (const auto* eq = c.equipment(equipment_id); eq != nullptr) ipc.text(9, eq->ae_title());
    }
    out.push_back(std::move(ipc));
  }
}

void report(const context& c, segments& out) {
  const auto& r = c.e.report_issued();
  const std::string status = report_status_code(r.status(), r.status_code());
  const std::string placer = !r.placer_order().empty() ? r.placer_order() : c.e.correlation().placer_order();
  std::string filler = !r.filler_order().empty() ? r.filler_order() : r.report_id();
  if (filler.empty()) filler = c.e.correlation().filler_order();
  out.push_back(pid_segment(c, nullptr));
  out.push_back(std::move(segment("ORC")
                              .set(1, "RE")
                              .set(2, context::ei(placer))
                              .set(3, context::ei(filler))
                              .set(12, context::xcn(r.ordering_provider()))));
  segment obr("OBR");
  obr.set(1, "1")
      .set(2, context::ei(placer))
      .set(3, context::ei(filler))
      .set(4, c.coded(r.exam(), r.catalogue_code()))
      .set(7, c.ts(r.observed_at()))
      .set(16, context::xcn(r.ordering_provider()))
      .text(18, !r.accession().empty() ? r.accession() : c.e.correlation().accession())
      .set(22, c.ts(r.issued_at()))
      .set(25, status)
      .set(32, context::ndl(r.interpreter()));
  out.push_back(std::move(obr));

  const std::string obx11 = status.empty() ? "F" : status;
  const bool cwe = c.version.at_least(2, 6);
  std::uint32_t set_id = 0;
  bool findings_sent = r.findings().empty();
  bool conclusion_sent = r.conclusion().empty();
  for (const auto& o : r.observations()) {
    segment obx("OBX");
    obx.set(1, std::to_string(++set_id));
    std::string type = o.value_type();
    switch (o.value_case()) {
      case ev::Observation::kText:
        if (!is_one_of(type, {"ST", "TX", "FT"})) type = o.text().find('\n') != std::string::npos ? "TX" : "ST";
        obx.text(5, o.text());
        if (o.text() == r.findings()) findings_sent = true;
        if (o.text() == r.conclusion()) conclusion_sent = true;
        break;
      case ev::Observation::kNumber:
        type = "NM";
        obx.set(5, format_number(o.number()));
        break;
      case ev::Observation::kCoded:
        if (!is_one_of(type, {"CE", "CWE", "CNE"})) type = cwe ? "CWE" : "CE";
        obx.set(5, c.coded(o.coded()));
        break;
      case ev::Observation::kAttachment:
        type = "RP";
        obx.set(5, rp(c, o.attachment()));
        break;
      default:
        break;
    }
    obx.text(2, type)
        .set(3, c.coded(o.code()))
        .text(4, o.sub_id())
        .set(6, o.units().empty() ? std::string{} : esc(o.units()))
        .text(7, o.reference_range());
    std::vector<std::string> flags;
    for (const auto& f : o.abnormal_flags()) flags.push_back(esc(f));
    obx.set(8, repeat(flags))
        .set(11, o.result_status().empty() ? obx11 : esc(o.result_status()))
        .set(14, c.ts(o.observed_at()));
    out.push_back(std::move(obx));
  }
  auto text_obx = [&](std::string_view code, std::string_view display, const std::string& text) {
    segment obx("OBX");
    obx.set(1, std::to_string(++set_id))
        .set(2, "TX")
        .set(3, comps({esc(code), esc(display), "LN"}))
        .text(5, text)
        .set(11, obx11);
    out.push_back(std::move(obx));
  };
  if (!findings_sent) text_obx("18782-3", "Radiology Study observation (narrative)", r.findings());
  if (!conclusion_sent) text_obx("19005-8", "Radiology Imaging study [Impression] (narrative)", r.conclusion());
  for (const auto& d : r.documents()) {
    segment obx("OBX");
    obx.set(1, std::to_string(++set_id))
        .set(2, "RP")
        .set(3, comps({"18748-4", "Diagnostic imaging study", "LN"}))
        .set(5, rp(c, d))
        .set(11, obx11);
    out.push_back(std::move(obx));
  }
  const std::string& uid = !r.study_uid().empty() ? r.study_uid() : c.e.correlation().study_uid();
  if (!uid.empty()) {
    // IHE Radiology: ZDS-1 study instance UID ^ application ^ type ^ subtype.
    out.push_back(std::move(segment("ZDS").set(1, comps({esc(uid), esc(c.o.sending_application), "Application", "DICOM"}))));
  }
}

std::string state_name(ev::ReferralState s) {
  const auto* v = ev::ReferralState_descriptor()->FindValueByNumber(s);
  if (v == nullptr) return {};
  std::string name = v->name();
  const std::string prefix = "REFERRAL_STATE_";
  return name.starts_with(prefix) ? name.substr(prefix.size()) : name;
}

// RF1-1 (CE). Table 0283 (user-defined: A, P, R, E) leads wherever one of
// its codes is true, so receivers that check the table accept it; the yilian
// state rides along as the CE alternate (components 4-6, local table 99YLN)
// when it says more. Cancelled and terminated referrals have no table code:
// the yilian state is the code itself (the I14 trigger says "cancel" to
// receivers that ignore an unknown RF1-1).
std::string referral_status(ev::ReferralState s) {
  const std::string name = state_name(s);
  switch (s) {
    case ev::REFERRAL_STATE_DRAFT:
    case ev::REFERRAL_STATE_REQUESTED:
    case ev::REFERRAL_STATE_RECEIVED: return comps({"P", "Pending", "HL70283", name, "", "99YLN"});
    case ev::REFERRAL_STATE_ACCEPTED: return comps({"A", "Accepted", "HL70283"});
    case ev::REFERRAL_STATE_REJECTED: return comps({"R", "Rejected", "HL70283"});
    case ev::REFERRAL_STATE_EXPIRED: return comps({"E", "Expired", "HL70283"});
    case ev::REFERRAL_STATE_SCHEDULED:
    case ev::REFERRAL_STATE_ARRIVED:
    case ev::REFERRAL_STATE_COMPLETED:
    case ev::REFERRAL_STATE_REPORT_RETURNED:
    case ev::REFERRAL_STATE_NO_SHOW: return comps({"A", "Accepted", "HL70283", name, "", "99YLN"});
    default: return name.empty() ? std::string{} : comps({name, "", "99YLN"});
  }
}

segment prd_segment(const context& c, std::string_view role, const ev::ProviderRef& p, std::string_view hospital) {
  const std::string_view h = !p.hospital().empty() ? std::string_view(p.hospital()) : hospital;
  segment prd("PRD");
  prd.set(1, std::string(role))
      .set(2, esc(p.name()))
      // PL-4 facility (HD): the hospital as HL7 messages name it.
      .set(4, h.empty() ? std::string{} : comps({esc(p.department()), "", "", esc(c.facility_of(h))}))
      .set(7, esc(p.id()));
  return prd;
}

bool provider_empty(const ev::ProviderRef& p) { return p.id().empty() && p.name().empty() && p.hospital().empty(); }

void referral_request(const context& c, segments& out) {
  const auto& r = c.e.referral_requested();
  const std::string id = !r.referral_id().empty() ? r.referral_id() : c.e.correlation().referral_id();
  segment rf1("RF1");
  rf1.set(1, referral_status(r.state() == ev::REFERRAL_STATE_UNSPECIFIED ? ev::REFERRAL_STATE_REQUESTED : r.state()))
      .set(2, priority_code(r.priority()))
      .set(3, c.coded(r.referral_type()))
      .set(6, context::ei(id))
      .set(7, c.ts(r.effective_at()))
      .set(8, c.ts(r.expires_at()))
      .set(10, c.reason(r.reason(), r.reason_text()))
      .set(11, repeat({context::ei(r.external_referral_id()), context::ei(r.linked_referral_id())}));
  out.push_back(std::move(rf1));
  if (!provider_empty(r.referring_provider()) || !r.from_hospital().empty()) {
    out.push_back(prd_segment(c, "RP", r.referring_provider(), r.from_hospital()));
  }
  if (!provider_empty(r.referred_to_provider()) || !r.to_hospital().empty()) {
    out.push_back(prd_segment(c, "RT", r.referred_to_provider(), r.to_hospital()));
  }
  out.push_back(pid_segment(c, r.has_patient() ? &r.patient() : nullptr));
  std::uint32_t n = 0;
  for (const auto& d : r.diagnoses()) {
    out.push_back(std::move(segment("DG1").set(1, std::to_string(++n)).set(3, c.coded(d)).set(6, "W")));
  }
  n = 0;
  bool attached = r.attachments().empty();
  auto attachments = [&] {
    std::uint32_t k = 0;
    for (const auto& a : r.attachments()) {
      out.push_back(std::move(segment("OBX")
                                  .set(1, std::to_string(++k))
                                  .set(2, "RP")
                                  .set(3, comps({"REFDOC", esc(!a.title().empty() ? a.title() : "Referral document"), "99YLN"}))
                                  .set(5, rp(c, a))
                                  .set(11, "F")));
    }
    attached = true;
  };
  for (const auto& s : r.requested_services()) {
    out.push_back(std::move(segment("OBR").set(1, std::to_string(++n)).set(2, context::ei(id)).set(4, c.coded(s))));
    if (!attached) attachments();
  }
  if (!attached) {
    out.push_back(std::move(segment("OBR").set(1, "1").set(2, context::ei(id)).set(4, comps({"REFERRAL", "Referral", "99YLN"}))));
    attachments();
  }
  if (!c.e.correlation().encounter_id().empty()) {
    out.push_back(std::move(segment("PV1").set(1, "1").set(2, "O").text(19, c.e.correlation().encounter_id())));
  }
  if (!r.clinical_summary().empty()) out.push_back(std::move(segment("NTE").set(1, "1").text(3, r.clinical_summary())));
}

void referral_state(const context& c, segments& out) {
  const auto& r = c.e.referral_state_changed();
  const std::string id = !r.referral_id().empty() ? r.referral_id() : c.e.correlation().referral_id();
  out.push_back(std::move(segment("RF1")
                              .set(1, referral_status(r.state()))
                              .set(6, context::ei(id))
                              .set(10, c.reason(r.reason(), r.reason_text()))
                              .set(11, context::ei(r.linked_referral_id()))));
  if (!provider_empty(r.actor()) || !r.actor_hospital().empty()) {
    // The referrer acts on drafts, requests and cancellations; the hospital
    // referred to on everything else.
    const bool referrer = is_one_of(referral_trigger(r.state()), {"I15"}) || r.state() == ev::REFERRAL_STATE_CANCELLED;
    out.push_back(prd_segment(c, referrer ? "RP" : "RT", r.actor(), r.actor_hospital()));
  }
  out.push_back(pid_segment(c, nullptr));
  const std::string& encounter = !r.encounter_id().empty() ? r.encounter_id() : c.e.correlation().encounter_id();
  if (!encounter.empty()) out.push_back(std::move(segment("PV1").set(1, "1").set(2, "O").text(19, encounter)));
}

// A refused command's answer to the message that asked for it (an
// application acknowledgment sent on the hospital's outbound channel):
// MSH (MSH-5/6 = the original MSH-3/4; MSH-15 AL, MSH-16 NE: enhanced mode,
// so the hospital commits it with a CA and never answers an answer), MSA
// (AE, MSA-2 = the original MSH-10), ERR (ack.h refusal_error); an RRI
// then names the referral (RF1-6) and the patient by identifiers (PID-3).
std::string refusal(const context& c, const message_kind& kind) {
  const auto& rej = c.e.referral_command_rejected();
  const auto& o = rej.origin();
  segment msh = msh_segment(c, kind);
  if (!o.application().empty()) msh.text(5, o.application());
  if (!o.facility().empty()) msh.text(6, o.facility());
  msh.set(15, "AL").set(16, "NE");
  const ack_error err = refusal_error(rej.code(), rej.message(), answered_type(o.message_type()).first);
  std::string text = msh.str();
  text.push_back('\r');
  text += msa_and_err_segments(ack_code::AE, o.control_id(), std::span<const ack_error>(&err, 1), c.o.version, kDelims);
  if (kind.code == "RRI") {
    text += segment("RF1").set(6, context::ei(rej.referral_id())).str();
    text.push_back('\r');
    text += pid_segment(c, nullptr).str();
    text.push_back('\r');
  }
  return text;
}

result<void> document(const context& c, const message_kind& kind, segments& out) {
  const auto& d = c.e.document_shared();
  if (d.content().uri().empty()) {
    return fail(errc::validation_failed, "DocumentShared without content: MDM needs the document's claim-check",
                "document_shared.content.uri");
  }
  google::protobuf::Timestamp when = d.created_at();
  if (when.seconds() == 0 && when.nanos() == 0) when = c.e.occurred_at();
  out.push_back(std::move(segment("EVN").set(1, kind.trigger).set(2, c.ts(when))));
  out.push_back(pid_segment(c, nullptr));
  out.push_back(std::move(segment("PV1").set(1, "1").set(2, "N")));
  out.push_back(std::move(segment("TXA")
                              .set(1, "1")
                              .text(2, d.type().code())
                              .set(3, "AP")
                              .set(4, c.ts(d.created_at()))
                              .set(9, context::xcn(d.author()))
                              .set(12, context::ei(d.document_id()))
                              .set(13, context::ei(d.replaces_document_id()))
                              .set(17, d.completion_status().empty() ? std::string("DO") : esc(d.completion_status()))));
  const ev::Coding& t = d.type();
  out.push_back(std::move(segment("OBX")
                              .set(1, "1")
                              .set(2, "RP")
                              .set(3, t.code().empty() ? comps({"DOC", esc(!d.title().empty() ? d.title() : "Document"), "99YLN"})
                                                       : c.coded(t))
                              .set(5, rp(c, d.content()))
                              .set(11, "F")));
  return {};
}

}  // namespace

rendered_cx render_identifier(std::string_view value, std::string_view system, events::v1::IdentifierType type,
                              const config::v1::HospitalProfile& reader, const config::loaded_consortium* consortium,
                              const delimiters& d) {
  if (const auto* auth = authority_for(reader, system); auth != nullptr) {
    return rendered_cx{.text = cx(value, *auth, d), .reader_knows = true};
  }
  // Another member's identifier: as that member's own messages write it
  // (its authority and type code), which is how a reader that knows the
  // member recognises it; else the system URI itself.
  if (consortium != nullptr) {
    for (const auto& hp : consortium->profiles) {
      if (hp.hospital_id == reader.hospital()) continue;
      if (const auto* other = authority_for(hp.profile, system); other != nullptr) {
        return rendered_cx{.text = cx(value, *other, d), .reader_knows = false};
      }
    }
  }
  return rendered_cx{
      .text = join({escape(value, d), "", "", escape(system, d), identifier_type_code(type)}, d.component),
      .reader_knows = false};
}

std::string format_hl7_timestamp(std::chrono::system_clock::time_point t, std::chrono::seconds utc_offset) {
  using namespace std::chrono;
  const auto local = t + utc_offset;
  const auto day = floor<days>(local);
  const year_month_day ymd{day};
  const hh_mm_ss hms{floor<milliseconds>(local - day)};
  std::string out = std::to_string(static_cast<int>(ymd.year())) + two(static_cast<int>(static_cast<unsigned>(ymd.month()))) +
                    two(static_cast<int>(static_cast<unsigned>(ymd.day()))) + two(static_cast<int>(hms.hours().count())) +
                    two(static_cast<int>(hms.minutes().count())) + two(static_cast<int>(hms.seconds().count()));
  if (const auto ms = hms.subseconds().count(); ms != 0) {
    out += "." + std::to_string(ms / 100) + two(static_cast<int>(ms % 100));
  }
  const auto off = utc_offset.count();
  const long long mins = (off < 0 ? -off : off) / 60;
  out.push_back(off < 0 ? '-' : '+');
  out += two(static_cast<int>(mins / 60)) + two(static_cast<int>(mins % 60));
  return out;
}

result<std::string> message_type_for(const events::v1::Envelope& event, const render_options& options) {
  auto v = parse_version(options.version);
  if (!v) return std::unexpected(v.error());
  auto kind = decide_kind(event, *v);
  if (!kind) return std::unexpected(kind.error());
  return kind->msh9(*v);
}

result<rendered_message> render(const events::v1::Envelope& event, const config::v1::HospitalProfile& destination,
                                const render_options& options) {
  auto v = parse_version(options.version);
  if (!v) return std::unexpected(v.error());
  if (event.event_id().empty()) {
    return fail(errc::validation_failed, "the event has no event_id (it becomes MSH-10)", "event_id");
  }
  auto kind = decide_kind(event, *v);
  if (!kind) return std::unexpected(kind.error());
  const context c{.e = event, .dest = destination, .o = options, .version = *v};
  if (event.has_referral_command_rejected()) {
    return rendered_message{.text = refusal(c, *kind),
                            .message_type = kind->msh9(*v),
                            .control_id = event.event_id().substr(0, 199)};
  }

  segments body;
  switch (event.body_case()) {
    case ev::Envelope::kPatientRegistered:
    case ev::Envelope::kPatientUpdated:
      adt(c, *kind, body);
      break;
    case ev::Envelope::kAppointmentChanged:
      siu(c, body);
      break;
    case ev::Envelope::kOrderPlaced:
    case ev::Envelope::kOrderStatusChanged:
      order(c, *kind, body);
      break;
    case ev::Envelope::kReportIssued:
      report(c, body);
      break;
    case ev::Envelope::kReferralRequested:
      referral_request(c, body);
      break;
    case ev::Envelope::kReferralStateChanged:
      referral_state(c, body);
      break;
    case ev::Envelope::kDocumentShared:
      if (auto r = document(c, *kind, body); !r) return std::unexpected(r.error());
      break;
    default:
      return fail(errc::internal, "decide_kind accepted a body render() does not handle", "body");
  }

  rendered_message out;
  out.message_type = kind->msh9(*v);
  out.control_id = event.event_id().substr(0, 199);
  out.text = msh_segment(c, *kind).str();
  for (const auto& s : body) {
    out.text.push_back('\r');
    out.text += s.str();
  }
  out.text.push_back('\r');
  return out;
}

}  // namespace yilian::hl7v2
