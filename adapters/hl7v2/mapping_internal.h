// Internal to the mapper (mapping*.cc): the compiled profile, the per-message
// context and the field readers the message-type mappings share.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "adapters/hl7v2/hl7_time.h"
#include "adapters/hl7v2/mapping.h"
#include "adapters/hl7v2/message.h"
#include "yilian/config/v1/consortium.pb.h"
#include "yilian/events/v1/envelope.pb.h"

namespace yilian::hl7v2::detail {

namespace ev = yilian::events::v1;

// Hash maps looked up with string_view keys (no temporary strings).
struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
template <class V>
using string_map = std::unordered_map<std::string, V, string_hash, std::equal_to<>>;

template <class V>
const V* find(const string_map<V>& m, std::string_view key) {
  const auto it = m.find(key);
  return it == m.end() ? nullptr : &it->second;
}

struct authority {
  std::string system;
  ev::IdentifierType type = ev::IDENTIFIER_TYPE_UNSPECIFIED;
  std::string hospital;  // whose profile declares it (the assigner of domain identifiers)
  bool ambiguous = false;  // declared by several profiles with different systems
};

struct code_map {
  std::string target_system;
  string_map<std::string> codes;
};

struct equipment {
  std::string id;
  std::string hospital;
  std::string modality;  // DICOM code, "CT"
};

// A quirks.field_locations value: SEG-field[rep][.component[.subcomponent]].
struct location_spec {
  std::string segment;
  std::uint32_t field = 0;
  std::uint32_t repetition = 0;  // 1-based; 0 = first
  std::uint32_t component = 0;   // 0 = the whole repetition
  std::uint32_t subcomponent = 0;
  std::string text;              // as configured, for error messages
};

inline constexpr std::size_t located_item_count = 18;  // LocatedItem values 0..17

inline constexpr std::string_view report_section_system = "urn:yilian:report-section";

struct compiled_profile {
  std::string hospital;  // empty: generic without a hospital (MSH-4.1 is used)
  bool generic = false;
  time_zone zone;
  // CX-4.1 -> CX-5 -> authority: this profile's, then the other profiles'
  // of the consortium (a tertiary hospital's message naming a clinic's MRN).
  string_map<string_map<authority>> authorities;
  string_map<string_map<authority>> consortium_authorities;
  // systems for identifiers read from quirk locations (resident_id, insurance_card)
  std::string resident_system;
  std::string insurance_system;
  // CWE-3 -> local code map
  string_map<code_map> code_maps;
  // catalogue code -> display name (consortium exam types)
  string_map<std::string> catalogue_names;
  // HD-1 facility id (all profiles) -> hospital id
  string_map<std::string> facilities;
  // hospital id -> tier number (1 = tertiary, the highest)
  string_map<int> tiers;
  std::deque<equipment> equipment_list;
  // local resource code / equipment id / AE title -> equipment
  string_map<const equipment*> resources;
  std::array<std::optional<location_spec>, located_item_count> locations;
  std::vector<std::string> ignored_segments;
  bool birth_date_has_fake_time = false;

  bool ignored(std::string_view segment_id) const {
    for (const auto& s : ignored_segments) {
      if (s == segment_id) return true;
    }
    return false;
  }
  const location_spec* location(config::v1::LocatedItem item) const {
    const auto i = static_cast<std::size_t>(item);
    return i < locations.size() && locations[i] ? &*locations[i] : nullptr;
  }
};

// ---------------------------------------------------------------------------
// Reading fields

// Decoded text of a raw value: the HL7 null `""` reads as empty; escapes are
// decoded only when the escape character occurs.
std::string text_of(std::string_view raw, const delimiters& d);

// Component c (1-based; 0 reads as 1) of a raw repetition/field value, as sent.
inline std::string_view component_of(std::string_view raw, std::size_t c, const delimiters& d) {
  return nth_piece(raw, d.component, c == 0 ? 1 : c);
}
// Subcomponent s of a raw component.
inline std::string_view subcomponent_of(std::string_view raw_component, std::size_t s, const delimiters& d) {
  return nth_piece(raw_component, d.subcomponent, s == 0 ? 1 : s);
}

// Equality of short strings (codes, segment ids) without a memcmp call.
inline bool same(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i]) return false;
  }
  return true;
}

inline bool is_null(std::string_view raw) { return raw.size() == 2 && raw[0] == '"' && raw[1] == '"'; }

// Sets a string field only when the value is not empty: in proto3 an empty
// string and an unset field read the same, and setting one still puts a
// string on the arena. `field` is the mutable accessor (&ev::Coding::mutable_code).
template <class M>
inline void put(M& m, std::string* (M::*field)(), std::string&& value) {
  if (!value.empty()) *(m.*field)() = std::move(value);
}
template <class M>
inline void put(M& m, std::string* (M::*field)(), const std::string& value) {
  if (!value.empty()) (m.*field)()->assign(value);
}
// The decoded text of a raw value (see text_of), set when not empty; values
// without escape sequences are copied straight from the message.
template <class M>
inline void put_text(M& m, std::string* (M::*field)(), std::string_view raw, const delimiters& d) {
  if (raw.empty() || is_null(raw)) return;
  if (find_char(raw, d.escape) == std::string_view::npos) {
    (m.*field)()->assign(raw.data(), raw.size());
  } else {
    put(m, field, unescape(raw, d));
  }
}

// Calls fn(repetition) for each repetition of a raw field, in one pass (as
// field_view::repetition(i) for i < repetition_count(), without rescanning).
template <class F>
void each_repetition(std::string_view raw, const delimiters& d, F&& fn) {
  if (raw.empty()) return;
  std::size_t start = 0;
  while (true) {
    const std::size_t p = find_char(raw, d.repetition, start);
    fn(raw.substr(start, p == std::string_view::npos ? std::string_view::npos : p - start));
    if (p == std::string_view::npos) return;
    start = p + 1;
  }
}

// "PID-3", "PID-3[2]", "OBR[2]-25.1" (segment occurrence shown when > 1,
// repetition when > 1).
std::string path_of(const segment_view& s, std::size_t field, std::size_t rep = 0, std::size_t comp = 0);

// The range of segment indices [begin, end) a group covers.
struct group_range {
  std::size_t begin = 0;
  std::size_t end = 0;
};

// A place in the message ("PID-3", "OBR[2]-25.1"), spelled out by path()
// only when an error message needs it; or a fixed text ("AIS-3") when the
// segment is absent.
struct field_ref {
  field_ref() = default;
  field_ref(const segment_view& s, std::size_t f, std::size_t r = 0, std::size_t c = 0)
      : seg(s), field(f), rep(r), comp(c), present(true) {}
  // Implicit: a fixed path ("RF1-1") may stand where a place is expected.
  field_ref(const char* fixed) : text(fixed) {}
  std::string path() const { return present ? path_of(seg, field, rep, comp) : std::string(text); }

  segment_view seg;
  std::size_t field = 0;
  std::size_t rep = 0;
  std::size_t comp = 0;
  std::string_view text;
  bool present = false;
};

// One value read through a quirk location (or its standard place).
struct located_value {
  std::string_view raw;  // the component/subcomponent, or the whole repetition when no component was given
  bool whole_repetition = false;
  field_ref where;
  bool found = false;
};

// ---------------------------------------------------------------------------
// The per-message context

using identifier_list = google::protobuf::RepeatedPtrField<ev::Identifier>;

// Every event is built in place on the batch's arena: the mappings fill the
// envelope emit() returns (sub-messages through mutable_x() / add_x()), never
// a temporary message copied in afterwards (a heap message moved into an
// arena message is a deep copy).
class map_context {
 public:
  map_context(const compiled_profile& p, const message& m, const ev::ClaimCheck& raw_ref, instant recorded_at,
              mapped_batch& out);

  const compiled_profile& profile() const { return p_; }
  const message& msg() const { return msg_; }
  const delimiters& delims() const { return msg_.delims(); }
  const ev::ClaimCheck& raw_ref() const { return raw_ref_; }
  const std::string& trigger() const { return trigger_; }
  const std::string& code() const { return code_; }
  const std::string& hospital() const { return hospital_; }

  // Sets up the source fields common to every event; checks MSH.
  result<void> start();

  // A new event with the common envelope fields; the caller fills the body
  // through `*event.envelope` and may set `event.key` until the next emit
  // (the reference is not valid after it; the envelope is).
  mapped_event& emit(ev::Topic topic, std::string key = {});
  // Finishes the events (type names, empty sub-messages dropped).
  void finish();
  std::size_t event_count() const { return out_.size(); }

  // occurred_at for the events emitted from now on (default MSH-7).
  void set_occurred_at(instant t) { occurred_at_ = t; }
  instant msh_time() const { return msh_time_; }

  // -- segments
  // The segments of the message other than the profile's ignored ones.
  std::size_t size() const { return msg_.segment_count(); }
  segment_view seg(std::size_t i) const { return msg_.segment(i); }
  bool skip(const segment_view& s) const { return p_.ignored(s.id()); }
  // First segment `id` in [r.begin, r.end), else nullopt.
  std::optional<segment_view> find_in(std::string_view id, group_range r) const;
  // First segment `id` of the message (not ignored).
  std::optional<segment_view> find_first(std::string_view id) const;

  // -- reading
  std::string text(std::string_view raw) const { return text_of(raw, delims()); }
  std::string_view comp(const segment_view& s, std::size_t field, std::size_t c) const {
    const field_view f = s.field(field);
    return c == 1 ? f.first_component() : f.repetition(0).component_raw(c);
  }
  std::string comp_text(const segment_view& s, std::size_t field, std::size_t c) const {
    return text(comp(s, field, c));
  }
  // A quirk location (when configured) or nothing; looks in the group first,
  // then in the whole message.
  located_value located(config::v1::LocatedItem item, group_range r) const;
  // The value of an id-like item: the quirk location when configured, else
  // `fallback` (already read from the standard place).
  std::string id_item(config::v1::LocatedItem item, group_range r, std::string_view fallback_raw) const;

  // Instant of a DTM/TS value (first component of `raw`); empty -> nullopt.
  result<std::optional<instant>> time_of(std::string_view raw, const field_ref& where) const;
  result<std::optional<instant>> time_at(const segment_view& s, std::size_t field) const;

  // -- profile lookups
  // Hospital id of a facility (HD-1); in the generic profile the value as sent.
  std::string facility_hospital(std::string_view facility) const;
  const equipment* resource(std::string_view code) const;
  // Appends the identifier of a CX repetition to `out`; nothing when CX-1 is
  // empty.
  void add_identifier(const repetition_view& cx, identifier_list& out) const;
  // Every identifier of a CX field.
  void add_identifiers(const field_view& f, identifier_list& out) const;
  // Catalogue coding for a local coding; `mapped` false when the system has
  // a map that lacks the code. The strings are the compiled profile's.
  struct catalogue_lookup {
    const std::string* system = nullptr;
    const std::string* code = nullptr;
    const std::string* display = nullptr;  // the catalogue name, when known
    bool mapped = false;
    bool system_has_map = false;
    void write(ev::Coding& out) const;
  };
  catalogue_lookup catalogue(std::string_view system, std::string_view code) const;
  catalogue_lookup catalogue(const ev::Coding& local) const { return catalogue(local.system(), local.code()); }
  // The report section ("findings", "conclusion" or "") of an OBX-3 coding.
  std::string_view report_section(const ev::Coding& code) const;
  int tier(std::string_view hospital) const;

  // -- value builders (in place)
  void coding(std::string_view cwe_raw, ev::Coding& out) const;
  void provider_xcn(std::string_view xcn_raw, ev::ProviderRef& out) const;
  // "张" + "三" -> "张三", "ZHANG" + "SAN" -> "ZHANG SAN".
  static std::string join_name(std::string family, std::string_view given);

 private:
  const compiled_profile& p_;
  const message& msg_;
  const ev::ClaimCheck& raw_ref_;
  mapped_batch& out_;
  instant recorded_at_;
  instant msh_time_;
  instant occurred_at_;
  std::string code_;
  std::string trigger_;
  std::string hospital_;
  std::string facility_;
  std::string control_id_;
  std::string system_;
  std::string message_type_;
};

// Errors with the conventions the ACK mapping relies on.
std::unexpected<error> missing(std::string where, std::string_view what);
std::unexpected<error> unknown_code(std::string where, std::string_view what, std::string_view value,
                                    std::string_view expected = {});
std::unexpected<error> invalid(std::string where, std::string_view what);

// The message-type mappings (mapping_adt.cc, mapping_order.cc, ...).
result<void> map_adt(map_context& c);
result<void> map_merge(map_context& c);
result<void> map_order(map_context& c);
result<void> map_report(map_context& c);
result<void> map_schedule(map_context& c);
result<void> map_referral(map_context& c);

// Subject identifiers from a PID segment (PID-3, plus quirk resident_id /
// insurance_card locations), appended to `out` (empty before).
result<void> patient_identifiers(const map_context& c, const segment_view& pid, bool required, identifier_list& out);
// "system|value" of the first identifier (the patient topic key).
std::string identifier_key(const identifier_list& ids);
// PID-5, 7, 8, 11, 13, 14, ... into `d`; `registration` requires a name.
result<void> demographics(const map_context& c, const segment_view& pid, bool registration, ev::Demographics& d);

// Hospital id named by an XON (ORC-21, PRD-10): XON-10, else XON-3, else
// XON-1, through facility_ids; empty when none resolves.
std::string xon_hospital(const map_context& c, std::string_view xon_raw);

// UP/DOWN between two consortium hospitals: the quirk referral_direction when
// the profile locates it (UP, DOWN, U, D, 上转, 下转), else from the tiers (to
// a higher tier is UP); UNSPECIFIED when a tier is unknown or equal.
result<ev::ReferralDirection> referral_direction(const map_context& c, const std::string& from, const std::string& to);

// Claim-check of an ED/RP OBX-5 (documents stay in the raw store), into
// `claim`.
result<void> document_claim(const map_context& c, const segment_view& obx, std::string_view value_type,
                            ev::ClaimCheck& claim);
// An OBX of value type ED or RP as a claim-check appended to `out`; other
// OBX are left alone (REF and order messages carry documents this way).
result<void> attach_document(const map_context& c, const segment_view& obx,
                             google::protobuf::RepeatedPtrField<ev::ClaimCheck>& out);
// The lines of an NTE-3 appended to `text`, one per line.
void append_notes(const map_context& c, const segment_view& nte, std::string& text);

// Observation from an OBX, into `o`.
result<void> observation(const map_context& c, const segment_view& obx, ev::Observation& o);

}  // namespace yilian::hl7v2::detail
