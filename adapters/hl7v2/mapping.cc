// The mapper: profile compilation, the per-message context and the readers
// shared by the message-type mappings (mapping_adt.cc, mapping_order.cc,
// mapping_report.cc, mapping_schedule.cc, mapping_referral.cc).
#include "adapters/hl7v2/mapping.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <memory>

#include <openssl/sha.h>

#include "adapters/hl7v2/mapping_internal.h"

namespace yilian::hl7v2 {

namespace cfg = config::v1;
namespace ev = events::v1;
using detail::compiled_profile;
using detail::map_context;

namespace {

constexpr std::string_view default_catalogue = "urn:yilian:catalogue:exam";

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& ch : out) {
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
  }
  return out;
}

std::string modality_code(cfg::Modality m) {
  if (m == cfg::MODALITY_UNSPECIFIED) return {};
  const auto* v = cfg::Modality_descriptor()->FindValueByNumber(m);
  if (v == nullptr) return {};
  std::string_view name = v->name();
  name.remove_prefix(std::string_view("MODALITY_").size());
  return std::string(name);
}

bool parse_uint(std::string_view s, std::uint32_t& out) {
  if (s.empty() || s.front() == '0') return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && end == s.data() + s.size();
}

// "SEG-f[rep][.c[.s]]"
std::optional<detail::location_spec> parse_location_spec(std::string_view s) {
  detail::location_spec spec;
  spec.text = std::string(s);
  if (s.size() < 5 || s[3] != '-') return std::nullopt;
  spec.segment = std::string(s.substr(0, 3));
  std::string_view rest = s.substr(4);
  auto take_number = [&rest](std::uint32_t& out) {
    std::size_t n = 0;
    while (n < rest.size() && rest[n] >= '0' && rest[n] <= '9') ++n;
    if (!parse_uint(rest.substr(0, n), out)) return false;
    rest.remove_prefix(n);
    return true;
  };
  if (!take_number(spec.field)) return std::nullopt;
  if (!rest.empty() && rest.front() == '[') {
    rest.remove_prefix(1);
    if (!take_number(spec.repetition) || rest.empty() || rest.front() != ']') return std::nullopt;
    rest.remove_prefix(1);
  }
  if (!rest.empty()) {
    if (rest.front() != '.') return std::nullopt;
    rest.remove_prefix(1);
    if (!take_number(spec.component)) return std::nullopt;
  }
  if (!rest.empty()) {
    if (rest.front() != '.') return std::nullopt;
    rest.remove_prefix(1);
    if (!take_number(spec.subcomponent)) return std::nullopt;
  }
  if (!rest.empty()) return std::nullopt;
  return spec;
}

// URN-safe: keeps [A-Za-z0-9._-], percent-encodes the rest.
std::string urn_part(std::string_view s) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    const auto u = static_cast<unsigned char>(ch);
    if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' ||
        ch == '-') {
      out += ch;
    } else {
      out += '%';
      out += hex[u >> 4];
      out += hex[u & 0x0f];
    }
  }
  return out;
}

ev::IdentifierType table_0203_type(std::string_view code) {
  if (code == "MR" || code == "PI") return ev::IDENTIFIER_TYPE_MRN;
  if (code == "NNCHN") return ev::IDENTIFIER_TYPE_RESIDENT_ID;
  if (code == "PPN") return ev::IDENTIFIER_TYPE_PASSPORT;
  if (code == "HC") return ev::IDENTIFIER_TYPE_HEALTH_CARD;
  if (code == "VN") return ev::IDENTIFIER_TYPE_VISIT;
  return ev::IDENTIFIER_TYPE_OTHER;
}

// Identifiers issued inside one hospital's domain carry it as assigner.
bool hospital_domain(ev::IdentifierType t) {
  return t == ev::IDENTIFIER_TYPE_MRN || t == ev::IDENTIFIER_TYPE_VISIT || t == ev::IDENTIFIER_TYPE_OTHER ||
         t == ev::IDENTIFIER_TYPE_UNSPECIFIED;
}

bool ascii_alnum(char ch) {
  return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
}

bool version_supported(std::string_view v) {
  static constexpr std::array<std::string_view, 12> versions{"2.3", "2.3.1", "2.4",   "2.5",   "2.5.1", "2.6",
                                                             "2.7", "2.7.1", "2.8",   "2.8.1", "2.8.2", "2.8.3"};
  return std::any_of(versions.begin(), versions.end(), [v](std::string_view x) { return detail::same(x, v); });
}

using handler = result<void> (*)(map_context&);

// A code of up to three characters as one number (0 for longer ones, which
// no route has): the routes are matched on two integer compares.
constexpr std::uint32_t short_code(std::string_view s) {
  if (s.size() > 3) return 0;
  std::uint32_t k = static_cast<std::uint32_t>(s.size()) << 24;
  for (std::size_t i = 0; i < s.size(); ++i) k |= static_cast<std::uint32_t>(static_cast<unsigned char>(s[i])) << (8 * i);
  return k;
}

struct route {
  constexpr route(std::string_view c, std::string_view t, handler f) : code(short_code(c)), trigger(short_code(t)), fn(f) {}
  std::uint32_t code;
  std::uint32_t trigger;
  handler fn;
};

constexpr std::array<route, 25> routes{{
    {"ADT", "A01", detail::map_adt},      {"ADT", "A04", detail::map_adt},      {"ADT", "A08", detail::map_adt},
    {"ADT", "A28", detail::map_adt},      {"ADT", "A31", detail::map_adt},      {"ADT", "A40", detail::map_merge},
    {"ORM", "O01", detail::map_order},    {"OMG", "O19", detail::map_order},    {"OMI", "O23", detail::map_order},
    {"SIU", "S12", detail::map_schedule}, {"SIU", "S13", detail::map_schedule}, {"SIU", "S14", detail::map_schedule},
    {"SIU", "S15", detail::map_schedule}, {"SIU", "S17", detail::map_schedule}, {"SIU", "S26", detail::map_schedule},
    {"SIU", "S23", detail::map_schedule}, {"SIU", "S24", detail::map_schedule}, {"ORU", "R01", detail::map_report},
    {"REF", "I12", detail::map_referral}, {"REF", "I13", detail::map_referral}, {"REF", "I14", detail::map_referral},
    {"RRI", "I12", detail::map_referral}, {"RRI", "I13", detail::map_referral}, {"RRI", "I14", detail::map_referral},
    {"RRI", "I15", detail::map_referral},
}};

void to_hex(const unsigned char* digest, std::size_t n, std::string& out) {
  static constexpr char hex[] = "0123456789abcdef";
  out.resize(n * 2);
  for (std::size_t i = 0; i < n; ++i) {
    out[2 * i] = hex[digest[i] >> 4];
    out[2 * i + 1] = hex[digest[i] & 0x0f];
  }
}

}  // namespace

std::string hl7_event_id(std::string_view hospital, std::string_view facility, std::string_view control_id,
                         std::string_view suffix) {
  // The input is short: it is put together on the stack when it fits.
  constexpr std::string_view tag = "|hl7v2|";
  const std::size_t size = hospital.size() + tag.size() + facility.size() + control_id.size() + suffix.size() + 2;
  std::array<char, 256> stack;
  std::string heap;
  char* buf = stack.data();
  if (size > stack.size()) {
    heap.resize(size);
    buf = heap.data();
  }
  char* at = buf;
  for (const std::string_view part : {hospital, tag, facility, std::string_view("|"), control_id, std::string_view("|"), suffix}) {
    if (part.empty()) continue;  // (a null data() is not memcpy's to take)
    std::memcpy(at, part.data(), part.size());
    at += part.size();
  }
  const std::string_view input(buf, size);
  // SHA-256 straight through OpenSSL's low-level interface: the EVP one
  // (provider dispatch, context reset) costs a third again of hashing these
  // few bytes, and SHA256() fetches the algorithm on every call. The
  // low-level functions are deprecated in OpenSSL 3 but kept, and use the
  // same block function (SHA-NI where the CPU has it).
  unsigned char digest[SHA256_DIGEST_LENGTH];
  const unsigned int len = SHA256_DIGEST_LENGTH;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  SHA256_CTX sha;
  SHA256_Init(&sha);
  SHA256_Update(&sha, input.data(), input.size());
  SHA256_Final(digest, &sha);
#pragma GCC diagnostic pop
  std::string out;
  to_hex(digest, len, out);
  return out;
}

std::string hl7_event_id(std::string_view hospital, std::string_view facility, std::string_view control_id,
                         std::uint32_t event_index) {
  char index[16];
  const auto [index_end, ec] = std::to_chars(index, index + sizeof index, event_index);
  (void)ec;  // 16 characters always hold a uint32
  return hl7_event_id(hospital, facility, control_id,
                      std::string_view(index, static_cast<std::size_t>(index_end - index)));
}

// ---------------------------------------------------------------------------
// compile

result<mapper> mapper::compile(const config::loaded_consortium* consortium, const cfg::HospitalProfile* profile,
                               std::string hospital_id) {
  auto p = std::make_shared<compiled_profile>();
  p->hospital = std::move(hospital_id);
  p->generic = profile == nullptr;
  auto config_error = [&](std::string message) {
    return fail(errc::config_error, "profile of " + (p->hospital.empty() ? std::string("(generic)") : p->hospital) +
                                        ": " + std::move(message));
  };

  // Time zone: the profile's, the consortium's, else the consortium default
  // (Asia/Shanghai) for a hospital profile and UTC for the generic one.
  std::string tz;
  if (profile != nullptr && !profile->time_zone().empty()) {
    tz = profile->time_zone();
  } else if (consortium != nullptr && !consortium->consortium.time_zone().empty()) {
    tz = consortium->consortium.time_zone();
  } else {
    tz = profile != nullptr ? "Asia/Shanghai" : "UTC";
  }
  auto zone = time_zone::load(tz);
  if (!zone) return config_error("time_zone: " + zone.error().message);
  p->zone = std::move(*zone);

  // Facilities and tiers of every hospital of the consortium.
  auto add_facilities = [&p](const cfg::HospitalProfile& hp, const std::string& id) {
    if (hp.facility_ids_size() > 0) {
      for (const auto& f : hp.facility_ids()) p->facilities.emplace(f, id);
    } else if (hp.has_inbound() && hp.inbound().has_mllp()) {
      for (const auto& f : hp.inbound().mllp().expected_sending_facilities()) p->facilities.emplace(f, id);
    }
  };
  if (consortium != nullptr) {
    for (const auto& h : consortium->consortium.hospitals()) p->tiers.emplace(h.id(), static_cast<int>(h.tier()));
    for (const auto& lp : consortium->profiles) {
      add_facilities(lp.profile, lp.hospital_id);
      for (const auto& a : lp.profile.identifier_authorities()) {
        auto [it, inserted] = p->consortium_authorities[a.namespace_id()].emplace(
            a.type_code(), detail::authority{.system = a.system(), .type = a.type(), .hospital = lp.hospital_id});
        // The same pair meaning different systems in two profiles: neither.
        if (!inserted && it->second.system != a.system()) it->second.ambiguous = true;
      }
    }
    for (const auto& e : consortium->consortium.equipment()) {
      auto& eq = p->equipment_list.emplace_back(
          detail::equipment{.id = e.id(), .hospital = e.hospital(), .modality = modality_code(e.modality())});
      p->resources.emplace(e.id(), &eq);
      if (!e.ae_title().empty()) p->resources.emplace(e.ae_title(), &eq);
      for (const auto& x : e.exam_types()) {
        if (!x.name().empty()) p->catalogue_names.emplace(x.code(), x.name());
      }
    }
  }

  if (profile != nullptr) {
    const auto& hp = *profile;
    if (!hp.hospital().empty() && !p->hospital.empty() && hp.hospital() != p->hospital) {
      return config_error("the profile is for hospital " + hp.hospital());
    }
    if (p->hospital.empty()) p->hospital = hp.hospital();
    add_facilities(hp, p->hospital);
    for (const auto& a : hp.identifier_authorities()) {
      p->authorities[a.namespace_id()].emplace(
          a.type_code(), detail::authority{.system = a.system(), .type = a.type(), .hospital = p->hospital});
      if (a.type() == ev::IDENTIFIER_TYPE_RESIDENT_ID && p->resident_system.empty()) p->resident_system = a.system();
      if (a.type() == ev::IDENTIFIER_TYPE_INSURANCE_CARD && p->insurance_system.empty()) p->insurance_system = a.system();
    }
    for (const auto& m : hp.code_maps()) {
      auto& cm = p->code_maps[m.source_system()];
      cm.target_system = m.target_system().empty() ? std::string(default_catalogue) : m.target_system();
      for (const auto& [local, target] : m.mappings()) cm.codes.emplace(local, target);
    }
    for (const auto& [local, target] : hp.resource_ids()) {
      const detail::equipment* const* eq = detail::find(p->resources, target);
      if (eq == nullptr) {
        if (consortium != nullptr) {
          return config_error("resource_ids[\"" + local + "\"]: \"" + target + "\" is not an equipment id");
        }
        // A profile read on its own: the equipment is known by id only.
        auto& stub = p->equipment_list.emplace_back(detail::equipment{.id = target, .hospital = {}, .modality = {}});
        p->resources.emplace(target, &stub);
        eq = detail::find(p->resources, target);
      }
      const detail::equipment* resolved = *eq;
      p->resources.emplace(local, resolved);
    }
    const auto* items = cfg::LocatedItem_descriptor();
    for (const auto& [item, where] : hp.quirks().field_locations()) {
      const google::protobuf::EnumValueDescriptor* value = nullptr;
      for (int i = 0; i < items->value_count(); ++i) {
        std::string_view name = items->value(i)->name();
        name.remove_prefix(std::string_view("LOCATED_ITEM_").size());
        if (items->value(i)->number() != 0 && lower(name) == item) value = items->value(i);
      }
      if (value == nullptr) return config_error("quirks.field_locations: unknown item \"" + item + "\"");
      auto spec = parse_location_spec(where);
      if (!spec) return config_error("quirks.field_locations[\"" + item + "\"]: \"" + where + "\" is not SEG-n[.c[.s]]");
      p->locations[static_cast<std::size_t>(value->number())] = std::move(*spec);
    }
    if (p->location(cfg::LOCATED_ITEM_RESIDENT_ID) != nullptr && p->resident_system.empty()) {
      p->resident_system = "urn:yilian:id:cn:resident";
    }
    if (p->location(cfg::LOCATED_ITEM_INSURANCE_CARD) != nullptr && p->insurance_system.empty()) {
      return config_error("quirks.field_locations[\"insurance_card\"] needs an identifier authority of type INSURANCE_CARD");
    }
    for (const auto& s : hp.quirks().ignored_segments()) p->ignored_segments.push_back(s);
    p->birth_date_has_fake_time = hp.quirks().birth_date_has_fake_time();
  }
  return mapper(std::move(p));
}

const std::string& mapper::hospital() const { return p_->hospital; }
bool mapper::generic() const { return p_->generic; }
const time_zone& mapper::zone() const { return p_->zone; }

mapped_batch::mapped_batch(std::size_t initial_block_bytes) : block_bytes_(initial_block_bytes) {}

mapped_batch::~mapped_batch() {
  events_.clear();
  arena_.reset();  // before the block it may live in
}

mapped_batch& mapped_batch::operator=(mapped_batch&& other) noexcept {
  if (this != &other) {
    events_.clear();
    arena_.reset();  // before the block it may live in
    block_ = std::move(other.block_);
    block_bytes_ = std::exchange(other.block_bytes_, 0);
    arena_ = std::move(other.arena_);
    events_ = std::move(other.events_);
  }
  return *this;
}

google::protobuf::Arena* mapped_batch::arena() {
  if (!arena_) {
    // Made on first use: a batch that never gets an event costs nothing.
    if (!block_ && block_bytes_ > 0) block_ = std::make_unique_for_overwrite<char[]>(block_bytes_);
    google::protobuf::ArenaOptions options;
    options.initial_block = block_.get();
    options.initial_block_size = block_ ? block_bytes_ : 0;
    // Past the first block (a big ORU), blocks of a useful size at once.
    options.start_block_size = std::max<std::size_t>(block_bytes_, 4096);
    options.max_block_size = std::max<std::size_t>(block_bytes_, 4096) * 8;
    arena_ = std::make_unique<google::protobuf::Arena>(options);
  }
  return arena_.get();
}

mapped_event& mapped_batch::add(events::v1::Topic topic, std::string key) {
  auto* envelope = google::protobuf::Arena::CreateMessage<events::v1::Envelope>(arena());
  return events_.emplace_back(mapped_event{.topic = topic, .key = std::move(key), .envelope = envelope});
}

void mapped_batch::clear() {
  events_.clear();
  if (arena_) arena_->Reset();
}

result<mapped_batch> mapper::map(const message& msg, const ev::ClaimCheck& raw_ref,
                                 std::chrono::system_clock::time_point recorded_at) const {
  mapped_batch out;
  if (auto mapped = map_into(msg, raw_ref, recorded_at, out); !mapped) return std::unexpected(std::move(mapped.error()));
  return out;
}

result<void> mapper::map_into(const message& msg, const ev::ClaimCheck& raw_ref,
                              std::chrono::system_clock::time_point recorded_at, mapped_batch& out) const {
  out.clear();
  auto mapped = map_events(msg, raw_ref, recorded_at, out);
  if (!mapped) out.clear();
  return mapped;
}

result<void> mapper::map_events(const message& msg, const ev::ClaimCheck& raw_ref,
                                std::chrono::system_clock::time_point recorded_at, mapped_batch& out) const {
  map_context c(*p_, msg, raw_ref, to_instant(recorded_at), out);
  if (auto started = c.start(); !started) return started;
  handler fn = nullptr;
  bool code_known = false;
  const std::uint32_t code = short_code(c.code());
  const std::uint32_t trigger = short_code(c.trigger());
  for (const auto& r : routes) {
    if (r.fn == nullptr || code == 0 || r.code != code) continue;
    code_known = true;
    if (trigger != 0 && r.trigger == trigger) {
      fn = r.fn;
      break;
    }
  }
  const auto msh = msg.msh();
  if (!code_known) {
    return fail(errc::unsupported, "unsupported message type " + c.code() + " (ADT, ORM, OMG, OMI, SIU, ORU, REF, RRI)",
                detail::path_of(msh, 9, 0, 1));
  }
  if (fn == nullptr) {
    return fail(errc::unsupported, "unsupported trigger event " + c.code() + "^" + c.trigger(),
                detail::path_of(msh, 9, 0, 2));
  }
  // The version is checked after the type so that a message of a kind we do
  // not take is answered as such whatever its version.
  const std::string version = msg.version();
  if (version.empty()) return detail::missing(detail::path_of(msh, 12), "version id");
  if (!version_supported(version)) {
    return fail(errc::unsupported, "unsupported HL7 version " + version + " (2.3 to 2.8)", detail::path_of(msh, 12));
  }
  if (auto mapped = fn(c); !mapped) return mapped;
  c.finish();
  return {};
}

// ---------------------------------------------------------------------------
// detail

namespace detail {

std::string text_of(std::string_view raw, const delimiters& d) {
  if (raw.empty() || is_null(raw)) return {};
  if (find_char(raw, d.escape) == std::string_view::npos) return std::string(raw);
  return unescape(raw, d);
}

std::string path_of(const segment_view& s, std::size_t field, std::size_t rep, std::size_t comp) {
  std::string out(s.id());
  if (s.seq() > 1) {
    out += '[';
    out += std::to_string(s.seq());
    out += ']';
  }
  if (field == 0) return out;
  out += '-';
  out += std::to_string(field);
  if (rep > 1) {
    out += '[';
    out += std::to_string(rep);
    out += ']';
  }
  if (comp > 0) {
    out += '.';
    out += std::to_string(comp);
  }
  return out;
}

std::unexpected<error> missing(std::string where, std::string_view what) {
  std::string message = "required field missing: " + where;
  if (!what.empty()) {
    message += " (";
    message += what;
    message += ')';
  }
  return fail(errc::validation_failed, std::move(message), std::move(where));
}

std::unexpected<error> unknown_code(std::string where, std::string_view what, std::string_view value,
                                    std::string_view expected) {
  // An empty value: a code that is itself patient data (sex) is not echoed.
  std::string message = "unknown code: " + where + " " + std::string(what);
  if (!value.empty()) message += " \"" + std::string(value) + "\"";
  if (!expected.empty()) {
    message += " (";
    message += expected;
    message += ')';
  }
  return fail(errc::validation_failed, std::move(message), std::move(where));
}

std::unexpected<error> invalid(std::string where, std::string_view what) {
  std::string message = "invalid value at " + where + ": " + std::string(what);
  return fail(errc::validation_failed, std::move(message), std::move(where));
}

map_context::map_context(const compiled_profile& p, const message& m, const ev::ClaimCheck& raw_ref,
                         instant recorded_at, mapped_batch& out)
    : p_(p), msg_(m), raw_ref_(raw_ref), out_(out), recorded_at_(recorded_at) {}

result<void> map_context::start() {
  const segment_view msh = msg_.msh();
  // MSH-9 taken apart once: code, trigger, and all of it for
  // source.message_type (components decoded, joined with '^', trailing empty
  // ones dropped).
  {
    const std::string_view type = msh.field(9).repetition(0).raw();
    const delimiters& d = delims();
    std::size_t from = 0;
    for (std::size_t i = 1;; ++i) {
      const std::size_t cut = type.find(d.component, from);
      const std::string_view piece = type.substr(from, cut == std::string_view::npos ? cut : cut - from);
      std::string decoded = text(piece);
      if (i > 1) message_type_ += '^';
      message_type_ += decoded;
      if (i == 1) code_ = std::move(decoded);
      if (i == 2) trigger_ = std::move(decoded);
      if (cut == std::string_view::npos) break;
      from = cut + 1;
    }
    while (!message_type_.empty() && message_type_.back() == '^') message_type_.pop_back();
  }
  if (code_.empty()) return missing(path_of(msh, 9, 0, 1), "message code");
  control_id_ = text(msh.field(10).repetition(0).raw());
  if (control_id_.empty()) return missing(path_of(msh, 10), "message control id");
  facility_ = text(msh.field(4).repetition(0).subcomponent_raw(1, 1));
  if (facility_.empty()) facility_ = text(msh.field(4).first_component());
  // Generic without a hospital: the consortium's name for MSH-4, else MSH-4.
  if (!p_.hospital.empty()) {
    hospital_ = p_.hospital;
  } else if (const std::string* h = find(p_.facilities, facility_)) {
    hospital_ = *h;
  } else {
    hospital_ = facility_;
  }
  auto t = time_at(msh, 7);
  if (!t) return std::unexpected(std::move(t.error()));
  if (!*t) return missing(path_of(msh, 7), "date/time of message");
  msh_time_ = **t;
  occurred_at_ = msh_time_;

  system_ = text(msh.field(3).first_component());
  return {};
}

mapped_event& map_context::emit(ev::Topic topic, std::string key) {
  const auto index = static_cast<std::uint32_t>(out_.size());
  mapped_event& out = out_.add(topic, std::move(key));
  ev::Envelope& e = *out.envelope;
  e.set_event_id(hl7_event_id(hospital_, facility_, control_id_, index));
  e.set_schema_version(1);
  set_timestamp(*e.mutable_occurred_at(), occurred_at_);
  set_timestamp(*e.mutable_recorded_at(), recorded_at_);
  ev::Source& source = *e.mutable_source();
  source.set_hospital(hospital_);
  source.set_system(system_);
  source.set_protocol(ev::PROTOCOL_HL7V2_MLLP);
  source.set_control_id(control_id_);
  source.set_facility(facility_);
  source.set_message_type(message_type_);
  source.set_event_index(index);
  *e.mutable_raw_ref() = raw_ref_;
  return out;
}

namespace {

// Body field number -> "yilian.events.v1.<Body>", read from the schema once.
const std::vector<std::string>& body_type_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    const auto* body = ev::Envelope::descriptor()->FindOneofByName("body");
    for (int i = 0; i < body->field_count(); ++i) {
      const auto* f = body->field(i);
      const auto n = static_cast<std::size_t>(f->number());
      if (out.size() <= n) out.resize(n + 1);
      out[n] = f->message_type()->full_name();
    }
    return out;
  }();
  return names;
}

bool empty_correlation(const ev::Correlation& c) {
  return c.referral_id().empty() && c.placer_order().empty() && c.filler_order().empty() &&
         c.appointment_id().empty() && c.accession().empty() && c.study_uid().empty() && c.encounter_id().empty();
}

}  // namespace

void map_context::finish() {
  const auto& names = body_type_names();
  for (auto& m : out_) {
    ev::Envelope& e = *m.envelope;
    // Setters with empty values leave empty sub-messages behind.
    if (e.has_correlation() && empty_correlation(e.correlation())) e.clear_correlation();
    if (e.has_subject() && e.subject().identifiers_size() == 0 && e.subject().enterprise_patient_id().empty()) {
      e.clear_subject();
    }
    const auto n = static_cast<std::size_t>(e.body_case());
    if (n < names.size()) e.set_type(names[n]);
  }
}

std::optional<segment_view> map_context::find_in(std::string_view id, group_range r) const {
  for (std::size_t i = r.begin; i < r.end && i < msg_.segment_count(); ++i) {
    segment_view s = msg_.segment(i);
    if (same(s.id(), id) && !skip(s)) return s;
  }
  return std::nullopt;
}

std::optional<segment_view> map_context::find_first(std::string_view id) const {
  if (p_.ignored(id)) return std::nullopt;
  return msg_.find(id);
}

located_value map_context::located(cfg::LocatedItem item, group_range r) const {
  located_value v;
  const location_spec* spec = p_.location(item);
  if (spec == nullptr) return v;
  auto s = find_in(spec->segment, r);
  if (!s) s = find_first(spec->segment);
  if (!s) return v;
  const std::size_t rep = spec->repetition == 0 ? 0 : spec->repetition - 1;
  const repetition_view rv = s->field(spec->field).repetition(rep);
  v.where = field_ref(*s, spec->field, rep + 1, spec->component);
  if (spec->component == 0) {
    v.raw = rv.raw();
    v.whole_repetition = true;
  } else if (spec->subcomponent == 0) {
    v.raw = rv.component_raw(spec->component);
  } else {
    v.raw = rv.subcomponent_raw(spec->component, spec->subcomponent);
  }
  v.found = !v.raw.empty();
  return v;
}

std::string map_context::id_item(cfg::LocatedItem item, group_range r, std::string_view fallback_raw) const {
  if (p_.location(item) == nullptr) return text(fallback_raw);
  const located_value v = located(item, r);
  return text(v.whole_repetition ? component_of(v.raw, 1, delims()) : v.raw);
}

result<std::optional<instant>> map_context::time_of(std::string_view raw, const field_ref& where) const {
  const std::string_view dtm = component_of(raw, 1, delims());
  if (dtm.empty() || is_null(dtm)) return std::optional<instant>{};
  auto v = parse_dtm(dtm);
  if (!v) return invalid(where.path(), "not an HL7 date/time: " + v.error().message);
  return std::optional<instant>(to_instant(*v, p_.zone));
}

result<std::optional<instant>> map_context::time_at(const segment_view& s, std::size_t field) const {
  const std::string_view dtm = s.field(field).first_component();
  if (dtm.empty() || is_null(dtm)) return std::optional<instant>{};
  auto v = parse_dtm(dtm);
  // The location is spelled out only when it is needed.
  if (!v) return invalid(path_of(s, field), "not an HL7 date/time: " + v.error().message);
  return std::optional<instant>(to_instant(*v, p_.zone));
}

std::string map_context::facility_hospital(std::string_view facility) const {
  if (facility.empty()) return {};
  if (const std::string* h = find(p_.facilities, facility)) return *h;
  if (p_.generic) return text(facility);
  return {};
}

const equipment* map_context::resource(std::string_view code) const {
  if (code.empty()) return nullptr;
  const equipment* const* e = find(p_.resources, code);
  return e == nullptr ? nullptr : *e;
}

void map_context::add_identifier(const repetition_view& cx, identifier_list& out) const {
  const delimiters& d = delims();
  // CX-1 ID, CX-4 assigning authority (HD-1 namespace), CX-5 type code.
  const auto parts = split_pieces<5>(cx.raw(), d.component);
  std::string value = text(parts[0]);
  if (value.empty()) return;
  const std::string_view ns = nth_piece(parts[3], d.subcomponent, 1);
  const std::string_view type = parts[4];
  ev::Identifier& id = *out.Add();
  id.set_value(std::move(value));
  if (p_.generic) {
    id.set_system("urn:yilian:id:source:" + urn_part(text(ns)) + ":" + urn_part(text(type)));
    id.set_type(table_0203_type(type));
    if (hospital_domain(id.type())) id.set_assigner(hospital_);
    return;
  }
  auto lookup = [&](const string_map<string_map<authority>>& table) -> const authority* {
    const auto* by_type = find(table, ns);
    const authority* a = by_type == nullptr ? nullptr : find(*by_type, type);
    return a == nullptr || a->ambiguous ? nullptr : a;
  };
  const authority* a = lookup(p_.authorities);
  if (a == nullptr) a = lookup(p_.consortium_authorities);
  if (a != nullptr) {
    id.set_system(a->system);
    id.set_type(a->type);
    if (hospital_domain(a->type)) id.set_assigner(a->hospital.empty() ? hospital_ : a->hospital);
  } else {
    id.set_system("urn:yilian:id:" + hospital_ + ":unmapped:" + urn_part(text(ns)) + ":" + urn_part(text(type)));
    id.set_type(ev::IDENTIFIER_TYPE_OTHER);
    id.set_assigner(hospital_);
  }
}

void map_context::add_identifiers(const field_view& f, identifier_list& out) const {
  const std::size_t n = f.repetition_count();
  for (std::size_t i = 0; i < n; ++i) add_identifier(f.repetition(i), out);
}

void map_context::catalogue_lookup::write(ev::Coding& out) const {
  if (!mapped) return;
  out.set_system(*system);
  out.set_code(*code);
  if (display != nullptr) out.set_display(*display);
}

map_context::catalogue_lookup map_context::catalogue(std::string_view system, std::string_view code) const {
  catalogue_lookup out;
  const code_map* m = find(p_.code_maps, system);
  if (m == nullptr || m->target_system == report_section_system) return out;
  out.system_has_map = true;
  const std::string* target = find(m->codes, code);
  if (target == nullptr) return out;
  out.mapped = true;
  out.system = &m->target_system;
  out.code = target;
  if (m->target_system == default_catalogue) out.display = find(p_.catalogue_names, *target);
  return out;
}

std::string_view map_context::report_section(const ev::Coding& code) const {
  if (const code_map* m = find(p_.code_maps, code.system()); m != nullptr && m->target_system == report_section_system) {
    if (const std::string* s = find(m->codes, code.code())) {
      if (*s == "findings") return "findings";
      if (*s == "conclusion" || *s == "impression") return "conclusion";
    }
    return {};
  }
  const std::string_view c = code.code();
  if (c.ends_with("&GDT") || c == "GDT" || c == "18782-3" || c == "59776-5" || c == "121070" || c == "121071") {
    return "findings";
  }
  if (c.ends_with("&IMP") || c == "IMP" || c == "19005-8" || c == "121073") return "conclusion";
  return {};
}

int map_context::tier(std::string_view hospital) const {
  const int* t = find(p_.tiers, hospital);
  return t == nullptr ? 0 : *t;
}

void map_context::coding(std::string_view cwe_raw, ev::Coding& out) const {
  const delimiters& d = delims();
  const auto parts = split_pieces<3>(cwe_raw, d.component);
  put_text(out, &ev::Coding::mutable_code, parts[0], d);
  put_text(out, &ev::Coding::mutable_display, parts[1], d);
  put_text(out, &ev::Coding::mutable_system, parts[2], d);
}

void map_context::provider_xcn(std::string_view xcn_raw, ev::ProviderRef& out) const {
  const delimiters& d = delims();
  const auto parts = split_pieces<3>(xcn_raw, d.component);
  put_text(out, &ev::ProviderRef::mutable_id, parts[0], d);
  put(out, &ev::ProviderRef::mutable_name,
      join_name(text(nth_piece(parts[1], d.subcomponent, 1)), text(parts[2])));
}

std::string map_context::join_name(std::string family, std::string_view given) {
  if (given.empty()) return family;
  if (family.empty()) return std::string(given);
  if (ascii_alnum(family.back()) && ascii_alnum(given.front())) family += ' ';
  family += given;
  return family;
}

// ---------------------------------------------------------------------------
// shared by several message types

result<void> patient_identifiers(const map_context& c, const segment_view& pid, bool required, identifier_list& ids) {
  c.add_identifiers(pid.field(3), ids);
  const group_range whole{0, c.size()};
  auto extra = [&](cfg::LocatedItem item, const std::string& system, ev::IdentifierType type) {
    if (c.profile().location(item) == nullptr) return;
    std::string value = c.id_item(item, whole, {});
    if (value.empty()) return;
    const bool seen = std::any_of(ids.begin(), ids.end(), [&](const ev::Identifier& i) {
      return i.system() == system && i.value() == value;
    });
    if (seen) return;
    ev::Identifier& id = *ids.Add();
    id.set_system(system);
    id.set_value(std::move(value));
    id.set_type(type);
  };
  extra(cfg::LOCATED_ITEM_RESIDENT_ID, c.profile().resident_system, ev::IDENTIFIER_TYPE_RESIDENT_ID);
  extra(cfg::LOCATED_ITEM_INSURANCE_CARD, c.profile().insurance_system, ev::IDENTIFIER_TYPE_INSURANCE_CARD);
  if (required && ids.empty()) return missing(path_of(pid, 3), "patient identifier list");
  return {};
}

std::string identifier_key(const identifier_list& ids) {
  if (ids.empty()) return {};
  const ev::Identifier& first = ids.Get(0);
  std::string key;
  key.reserve(first.system().size() + 1 + first.value().size());
  key += first.system();
  key += '|';
  key += first.value();
  return key;
}

}  // namespace detail

}  // namespace yilian::hl7v2
