#include "engine/workflows/identity/service.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cmath>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

#include <google/protobuf/util/time_util.h>

#include "engine/core/ids.h"
#include "engine/core/log.h"
#include "engine/identity/resident_id.h"
#include "engine/workflows/common/envelope_peek.h"
#include "engine/workflows/common/relay.h"
#include "engine/workflows/common/single_writer.h"
#include "engine/workflows/common/timestamps.h"
#include "engine/core/thread.h"

namespace yilian::workflows::identity {

using namespace std::chrono_literals;

namespace {

const auto lg = log::get("identity");
constexpr std::string_view log_key = "index";
constexpr std::uint32_t none = 0xFFFFFFFFU;

std::string type_name(ev::IdentifierType t) {
  std::string n = ev::IdentifierType_Name(t);
  constexpr std::string_view prefix = "IDENTIFIER_TYPE_";
  if (n.starts_with(prefix)) n.erase(0, prefix.size());
  return n;
}

idx::civil_date parse_birth_date(std::string_view s) {
  // "YYYY-MM-DD" (also "YYYYMMDD"); partial dates stay unknown.
  std::string digits;
  for (char ch : s) {
    if (ch >= '0' && ch <= '9') digits.push_back(ch);
  }
  if (digits.size() < 8) return {};
  int y = 0, m = 0, d = 0;
  std::from_chars(digits.data(), digits.data() + 4, y);
  std::from_chars(digits.data() + 4, digits.data() + 6, m);
  std::from_chars(digits.data() + 6, digits.data() + 8, d);
  if (!idx::is_real_date(y, m, d)) return {};
  return idx::civil_date{.year = static_cast<std::int16_t>(y), .month = static_cast<std::uint8_t>(m),
                         .day = static_cast<std::uint8_t>(d)};
}

idx::demographics to_index(const ev::Demographics& d) {
  idx::demographics out;
  const auto& n = d.name();
  if (!n.family().empty() || !n.given().empty()) {
    out.family_name = n.family();
    out.given_name = n.given();
  } else if (!n.hanzi().empty()) {
    out.family_name = n.hanzi();  // the normalizer splits a whole name
  } else {
    out.family_name = n.pinyin();
  }
  out.birth_date = parse_birth_date(d.birth_date());
  switch (d.sex()) {
    case ev::SEX_MALE: out.sex = idx::sex::male; break;
    case ev::SEX_FEMALE: out.sex = idx::sex::female; break;
    case ev::SEX_OTHER: out.sex = idx::sex::other; break;
    default: out.sex = idx::sex::unknown; break;
  }
  // Mobile first: a shared landline says less about a person.
  const ev::ContactPoint* phone = nullptr;
  for (const auto& t : d.telecom()) {
    if (t.system() != "phone" && !t.system().empty()) continue;
    if (phone == nullptr || (t.use() == ev::CONTACT_USE_MOBILE && phone->use() != ev::CONTACT_USE_MOBILE)) phone = &t;
  }
  if (phone != nullptr) out.phone = phone->value();
  if (d.addresses_size() > 0) {
    const auto& a = d.addresses(0);
    out.line1 = !a.line().empty() ? a.line() : a.text();
    out.city = !a.district().empty() ? a.district() : a.city();
    out.province = a.province();
    out.postcode = a.postal_code();
  }
  return out;
}

ev::LinkBasis basis_of(idx::rule r) {
  switch (r) {
    case idx::rule::identifier: return ev::LINK_BASIS_SAME_AUTHORITY_VALUE;
    case idx::rule::resident_id: return ev::LINK_BASIS_RESIDENT_ID;
    case idx::rule::card: return ev::LINK_BASIS_INSURANCE_CARD;
    case idx::rule::probabilistic: return ev::LINK_BASIS_SCORED;
    case idx::rule::a40_merge: return ev::LINK_BASIS_A40_MERGE;
    case idx::rule::operator_link:
    case idx::rule::operator_split: return ev::LINK_BASIS_MANUAL;
    case idx::rule::none: break;
  }
  return ev::LINK_BASIS_UNSPECIFIED;
}

// Of the workflows' topics (referral, booking), what route() copies to the
// log: referral requests, and bookings' first decisions that carry
// demographics. Told from the bytes, as most records are neither.
bool observed_here(std::string_view bytes) {
  const auto type = peek_type(bytes);
  if (type.empty() || type == type_of<ev::ReferralRequested>()) return true;  // no type: route() decodes and decides
  if (type != type_of<ev::AppointmentChanged>()) return false;
  const auto body = peek_body(bytes, ev::Envelope::kAppointmentChangedFieldNumber);
  if (!body) return true;
  static constexpr std::uint32_t kFields[] = {ev::AppointmentChanged::kVersionFieldNumber,
                                              ev::AppointmentChanged::kPatientFieldNumber};
  peeked_field f[2];
  return !peek_fields(*body, kFields, f) || (f[0].value == 1 && !f[1].bytes.empty());
}

}  // namespace

// ---------------------------------------------------------------------------
// options

result<service_options> options_from(const config::loaded_consortium& cfg) {
  service_options o;
  o.log_topic = std::string(config::topic_name(ev::TOPIC_IDENTITY));
  o.patient_topic = std::string(config::topic_name(ev::TOPIC_PATIENT));
  const auto& s = cfg.consortium.identity();
  const bool observe = !s.has_observe_workflow_patients() || s.observe_workflow_patients();
  o.observed_topics.clear();
  if (observe) {
    o.observed_topics = {std::string(config::topic_name(ev::TOPIC_REFERRAL)),
                         std::string(config::topic_name(ev::TOPIC_BOOKING))};
  }
  std::vector<std::string> cards;
  for (const auto& hp : cfg.profiles) {
    for (const auto& a : hp.profile.identifier_authorities()) {
      auto add = [&](std::vector<std::string>& list) {
        if (std::find(list.begin(), list.end(), a.system()) == list.end()) list.push_back(a.system());
      };
      if (a.type() == ev::IDENTIFIER_TYPE_RESIDENT_ID) add(o.index.resident_id_systems);
      if (a.type() == ev::IDENTIFIER_TYPE_INSURANCE_CARD || a.type() == ev::IDENTIFIER_TYPE_HEALTH_CARD) add(cards);
    }
  }
  if (cards.size() > idx::max_card_systems) {
    std::string list;
    for (const auto& c : cards) list += (list.empty() ? "" : ", ") + c;
    return fail(errc::config_error,
                "the identity index compares at most " + std::to_string(idx::max_card_systems) +
                    " insurance / health card systems; the profiles use " + std::to_string(cards.size()) + " (" + list + ")",
                "identifier_authorities");
  }
  for (std::size_t i = 0; i < cards.size(); ++i) o.index.card_systems[i] = cards[i];

  auto& m = o.index.match;
  if (s.has_upper_bits()) m.upper = s.upper_bits();
  if (s.has_lower_bits()) m.lower = s.lower_bits();
  if (s.has_scale_with_population()) m.scale_with_population = s.scale_with_population();
  if (s.has_link_margin_bits()) m.link_margin = s.link_margin_bits();
  if (s.has_review_margin_bits()) m.review_margin = s.review_margin_bits();
  if (s.has_rule_resident_id()) m.rule_resident_id = s.rule_resident_id();
  if (s.has_rule_card()) m.rule_card = s.rule_card();
  if (s.has_hold_conflicting_resident_id()) m.hold_conflicting_resident_id = s.hold_conflicting_resident_id();
  if (s.has_hold_name_disagrees()) m.hold_name_disagrees = s.hold_name_disagrees();
  if (s.has_hold_birth_date_disagrees()) m.hold_birth_date_disagrees = s.hold_birth_date_disagrees();
  if (s.has_hold_given_name_similar()) m.hold_given_name_similar = s.hold_given_name_similar();
  if (s.has_hold_uncorroborated()) m.hold_uncorroborated = s.hold_uncorroborated();
  if (s.has_hold_same_domain()) m.hold_same_domain = s.hold_same_domain();
  if (m.lower > m.upper) {
    return fail(errc::config_error, "identity.lower_bits must not exceed identity.upper_bits", "identity");
  }
  if (s.max_block() > 0) o.index.max_block = s.max_block();
  if (s.max_candidates() > 0) o.index.max_candidates = s.max_candidates();
  if (s.split_block() > 0) o.index.split_block = s.split_block();
  return o;
}

std::string format_enterprise_id(idx::enterprise_id id) {
  std::string digits = std::to_string(static_cast<std::uint64_t>(id.value()) + 1);
  if (digits.size() < 9) digits.insert(0, 9 - digits.size(), '0');
  return "YL" + digits;
}

std::optional<idx::enterprise_id> parse_enterprise_id(std::string_view text) {
  if (text.size() < 3 || text.size() > 12 || !text.starts_with("YL")) return std::nullopt;
  std::uint64_t n = 0;
  const auto* b = text.data() + 2;
  const auto* e = text.data() + text.size();
  auto [p, ec] = std::from_chars(b, e, n);
  if (ec != std::errc{} || p != e || n == 0 || n > 0xFFFFFFFFULL) return std::nullopt;
  return idx::enterprise_id(static_cast<std::uint32_t>(n - 1));
}

// ---------------------------------------------------------------------------
// the view: the identity log folded

class service::state final : public view {
 public:
  explicit state(const idx::identity_options& o) : index_(o) { actors_.emplace_back(idx::identity_index::automatic); }

  // One link decision to announce (PatientLinkChanged), in log order.
  struct announcement {
    std::int64_t offset = 0;
    std::uint32_t record = none;
    std::uint32_t from = none, to = none;  // persons, as they were at the decision
    std::uint32_t review = none;
    std::uint32_t actor = 0;               // actors_ index
    std::uint32_t reason = 0;              // reasons_ index (0 = none)
    float score_bits = 0.0F;
    float persons = 0.0F;                  // live persons when decided (for the posterior)
    ev::LinkAction action = ev::LINK_ACTION_UNSPECIFIED;
    ev::LinkBasis basis = ev::LINK_BASIS_UNSPECIFIED;
    idx::hold held = idx::hold::none;
    std::int64_t decided_ms = 0;
    // Earlier announcements of the same record / from-person / to-person
    // (history() follows these chains instead of scanning every announcement).
    std::uint32_t prev_of_record = none, prev_of_from = none, prev_of_to = none;
    std::uint32_t nth = 0;  // among the announcements of the same log offset (the event id's last part)
  };

  // What applying one log record did, for the service's waiters.
  struct applied {
    std::optional<command_outcome> outcome;
  };

  applied apply(const bus::record& r, const ev::Envelope& e);

  // view
  const idx::identity_index& index() const override { return index_; }
  std::optional<person_info> person(std::string_view enterprise_id) const override;
  std::optional<person_info> person_of(std::string_view system, std::string_view value) const override;
  std::vector<search_hit> search(const ev::Demographics& query, const std::vector<ev::Identifier>& identifiers,
                                 std::size_t limit) const override;
  std::vector<review_info> reviews(bool open_only) const override;
  std::vector<ev::PatientLinkChanged> history(std::string_view enterprise_id) const override;
  std::int64_t applied_through() const override { return next_offset_; }

  idx::cross_reference xref(idx::enterprise_id p) const;
  ev::Envelope announce(std::size_t i) const;
  const idx::chunked_vector<announcement>& announcements() const { return announcements_; }
  // The first announcement of a log offset at or after `offset` (they are in log order).
  std::size_t first_announcement_at(std::int64_t offset) const {
    std::size_t lo = 0, hi = announcements_.size();
    while (lo < hi) {
      const std::size_t mid = lo + (hi - lo) / 2;
      if (announcements_[mid].offset < offset) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
  std::optional<command_outcome> outcome_of(const std::string& command_id) const {
    auto it = outcomes_.find(command_id);
    if (it == outcomes_.end()) return std::nullopt;
    return it->second;
  }
  std::uint64_t skipped() const { return skipped_; }

 private:
  // What the view keeps per index record for display: the demographics as
  // sent (serialized, compact) and where they came from.
  struct display {
    std::string demographics;  // serialized ev::Demographics
    std::string last_event_id;
    // Person-level identifiers as last sent (a valid resident ID, normalized;
    // card numbers): the index keeps them as features, not as record keys.
    std::vector<idx::identifier> person_ids;
    bool observed_only = false;
  };
  // Record keys from the index, then the person-level identifiers.
  std::vector<idx::identifier> all_identifiers(std::uint32_t record) const {
    auto ids = index_.identifiers_of(record);
    if (record < display_.size()) ids.insert(ids.end(), display_[record].person_ids.begin(), display_[record].person_ids.end());
    return ids;
  }

  void record_upsert(const bus::record& r, const ev::Envelope& e, const ev::Demographics& d, bool observed);
  void record_merge(const bus::record& r, const ev::Envelope& e);
  command_outcome record_command(const bus::record& r, const ev::Envelope& e);
  void announce_history(std::size_t from, std::int64_t offset, std::int64_t ms, const idx::decision* d,
                        std::uint32_t reason = 0);
  void note_identifiers(const ev::Subject& s);
  std::optional<std::uint32_t> key_record(const std::vector<idx::identifier>& ids) const;
  // How the index treats an identifier system (identity_options): every
  // system not named as a resident-ID or card system is a record key.
  enum class id_kind { record_key, resident_id, card };
  id_kind kind_of(const std::string& system) const {
    const auto& opt = index_.options();
    if (std::find(opt.resident_id_systems.begin(), opt.resident_id_systems.end(), system) != opt.resident_id_systems.end()) {
      return id_kind::resident_id;
    }
    if (!system.empty() && std::find(opt.card_systems.begin(), opt.card_systems.end(), system) != opt.card_systems.end()) {
      return id_kind::card;
    }
    return id_kind::record_key;
  }
  record_info info(std::uint32_t record) const;
  // The record's hospital and identifiers only (no demographics parsed).
  record_info identified(std::uint32_t record) const;
  std::uint32_t intern_actor(std::string_view a);
  std::string hospital_of(const ev::Envelope& e) const;

  idx::identity_index index_;
  // Per-record and per-decision tables grow by chunks: at a million patients
  // a std::vector's doubling would copy all of them under the exclusive lock.
  idx::chunked_vector<display> display_;  // by index record number
  std::unordered_map<std::string, ev::IdentifierType> system_types_;
  idx::chunked_vector<announcement> announcements_;
  idx::chunked_vector<std::uint32_t> last_of_record_, last_of_person_;  // newest announcement, by record / person
  void remember(announcement a);
  std::vector<std::string> actors_;
  std::unordered_map<std::string, std::uint32_t> actor_ids_;
  std::vector<std::string> reasons_{std::string()};
  std::unordered_map<std::string, command_outcome> outcomes_;  // operators' commands (few)
  std::int64_t next_offset_ = 0;
  std::uint64_t skipped_ = 0;
};

std::uint32_t service::state::intern_actor(std::string_view a) {
  if (a.empty() || a == idx::identity_index::automatic) return 0;
  auto [it, inserted] = actor_ids_.try_emplace(std::string(a), static_cast<std::uint32_t>(actors_.size()));
  if (inserted) actors_.emplace_back(a);
  return it->second;
}

void service::state::note_identifiers(const ev::Subject& s) {
  for (const auto& id : s.identifiers()) {
    if (id.type() != ev::IDENTIFIER_TYPE_UNSPECIFIED) system_types_.try_emplace(id.system(), id.type());
  }
}

std::string service::state::hospital_of(const ev::Envelope& e) const {
  // The domain of the record: the hospital that issued its record-key
  // identifier (a referral or booking decision is published by the engine,
  // but the MRN in it is the requesting hospital's), else the source.
  for (const auto& id : e.subject().identifiers()) {
    const auto t = id.type();
    if (!id.assigner().empty() && t != ev::IDENTIFIER_TYPE_RESIDENT_ID && t != ev::IDENTIFIER_TYPE_INSURANCE_CARD &&
        t != ev::IDENTIFIER_TYPE_HEALTH_CARD && t != ev::IDENTIFIER_TYPE_ENTERPRISE) {
      return id.assigner();
    }
  }
  return e.source().hospital();
}

std::optional<std::uint32_t> service::state::key_record(const std::vector<idx::identifier>& ids) const {
  for (const auto& id : ids) {
    if (auto rec = index_.record_of(id)) return rec;
  }
  return std::nullopt;
}

service::state::applied service::state::apply(const bus::record& r, const ev::Envelope& e) {
  applied out;
  next_offset_ = r.offset + 1;
  // Deterministic "today" for resident-ID plausibility: the record's own date.
  if (e.has_recorded_at() || r.timestamp_ms > 0) {
    const std::int64_t secs = e.has_recorded_at() ? e.recorded_at().seconds() : r.timestamp_ms / 1000;
    const auto days = std::chrono::floor<std::chrono::days>(std::chrono::sys_seconds(std::chrono::seconds(secs)));
    const std::chrono::year_month_day ymd(days);
    index_.set_today(idx::civil_date{.year = static_cast<std::int16_t>(static_cast<int>(ymd.year())),
                                     .month = static_cast<std::uint8_t>(static_cast<unsigned>(ymd.month())),
                                     .day = static_cast<std::uint8_t>(static_cast<unsigned>(ymd.day()))});
  }
  note_identifiers(e.subject());
  switch (e.body_case()) {
    case ev::Envelope::kPatientRegistered: record_upsert(r, e, e.patient_registered().demographics(), false); break;
    case ev::Envelope::kPatientUpdated: record_upsert(r, e, e.patient_updated().demographics(), false); break;
    case ev::Envelope::kPatientRecordObserved: record_upsert(r, e, e.patient_record_observed().demographics(), true); break;
    case ev::Envelope::kPatientIdentifiersMerged: record_merge(r, e); break;
    case ev::Envelope::kPatientLinkCommand: out.outcome = record_command(r, e); break;
    default: ++skipped_; break;
  }
  return out;
}

void service::state::record_upsert(const bus::record& r, const ev::Envelope& e, const ev::Demographics& d, bool observed) {
  idx::source_record rec{.hospital = hospital_of(e), .identifiers = {}, .demo = to_index(d)};
  for (const auto& id : e.subject().identifiers()) {
    if (id.value().empty() || id.type() == ev::IDENTIFIER_TYPE_ENTERPRISE) continue;
    rec.identifiers.push_back(idx::identifier{.system = id.system(), .value = id.value()});
  }
  if (rec.identifiers.empty()) {
    ++skipped_;
    lg.warn("identity: patient record without identifiers ignored", {log::field("event_id", e.event_id())});
    return;
  }
  // Only resident ID / card identifiers: nothing would address the record,
  // so it is not stored (checked before the upsert, which would keep it).
  if (std::none_of(rec.identifiers.begin(), rec.identifiers.end(),
                   [&](const idx::identifier& id) { return kind_of(id.system) == id_kind::record_key; })) {
    ++skipped_;
    lg.warn("identity: patient record without a record-key identifier (e.g. an MRN) ignored",
            {log::field("event_id", e.event_id())});
    return;
  }
  const auto known = key_record(rec.identifiers);
  if (observed && known) return;  // the registration feed's demographics win
  const std::size_t before = index_.history().size();
  const idx::decision dec = index_.upsert(rec);
  const auto stored = key_record(rec.identifiers);
  if (!stored) {
    lg.error("identity: an upserted record is not found by its own key (index invariant broken)",
             {log::field("event_id", e.event_id())});
    return;
  }
  if (display_.size() <= *stored) display_.grow_to(*stored + 1);
  display& disp = display_[*stored];
  disp.demographics = d.SerializeAsString();
  disp.last_event_id = e.event_id();
  disp.observed_only = observed && (!known || disp.observed_only);
  disp.person_ids.clear();
  for (const auto& id : rec.identifiers) {
    if (kind_of(id.system) == id_kind::resident_id) {
      // A number that fails validation is never shown as the person's.
      if (auto rid = idx::parse_resident_id(id.value)) disp.person_ids.push_back({.system = id.system, .value = rid->number});
    } else if (kind_of(id.system) == id_kind::card) {
      if (auto n = idx::normalize_card_number(id.value); !n.empty()) disp.person_ids.push_back({.system = id.system, .value = n});
    }
  }
  if (!known && (dec.outcome == idx::outcome::new_person || dec.outcome == idx::outcome::review)) {
    announcement a{.offset = r.offset, .record = *stored, .from = none, .to = dec.person.value(),
                   .score_bits = 0.0F, .persons = static_cast<float>(index_.persons()),
                   .action = ev::LINK_ACTION_ASSIGNED, .basis = ev::LINK_BASIS_NEW_PERSON,
                   .decided_ms = r.timestamp_ms};
    remember(a);
  }
  announce_history(before, r.offset, r.timestamp_ms, &dec);
}

void service::state::record_merge(const bus::record& r, const ev::Envelope& e) {
  const auto& m = e.patient_identifiers_merged();
  const std::string hospital = !m.hospital().empty() ? m.hospital() : e.source().hospital();
  std::vector<idx::identifier> surviving, retired;
  for (const auto& id : m.surviving()) surviving.push_back({.system = id.system(), .value = id.value()});
  for (const auto& id : m.retired()) retired.push_back({.system = id.system(), .value = id.value()});
  const auto s = key_record(surviving);
  const auto o = key_record(retired);
  const std::size_t before = index_.history().size();
  if (!s && !o) {
    ++skipped_;
    lg.info("identity: A40 for records the index does not know; nothing to merge", {log::field("event_id", e.event_id())});
    return;
  }
  if (!s) {
    // The survivor is new to the index: the retired record takes its
    // identifiers (same record, same person: it simply has new keys).
    idx::source_record rec{.hospital = hospital, .identifiers = index_.identifiers_of(*o), .demo = {}};
    for (const auto& id : surviving) rec.identifiers.push_back(id);
    ev::Demographics d;
    if (*o < display_.size()) (void)d.ParseFromString(display_[*o].demographics);
    rec.demo = to_index(d);
    const idx::decision dec = index_.upsert(rec);
    announce_history(before, r.offset, r.timestamp_ms, &dec);
    return;
  }
  const std::string actor = "hospital:" + hospital;
  for (const auto& id : retired) {
    auto done = index_.merge_within_domain(hospital, surviving.empty() ? id : [&] {
      for (const auto& sid : surviving) {
        if (index_.record_of(sid)) return sid;
      }
      return surviving.front();
    }(), id, actor);
    if (!done) {
      ++skipped_;
      lg.warn("identity: A40 merge refused", {log::field("event_id", e.event_id()), log::field("why", done.error().message)});
    }
  }
  announce_history(before, r.offset, r.timestamp_ms, nullptr);
}

command_outcome service::state::record_command(const bus::record& r, const ev::Envelope& e) {
  const auto& c = e.patient_link_command();
  if (auto earlier = outcomes_.find(c.command_id()); earlier != outcomes_.end()) return earlier->second;
  command_outcome out{.command_id = c.command_id(), .refused = std::nullopt, .enterprise_id = {}};
  const std::size_t before = index_.history().size();
  const std::string actor = c.decided_by().empty() ? "operator" : c.decided_by();
  std::uint32_t reason = 0;
  if (!c.reason().empty()) {
    reason = static_cast<std::uint32_t>(reasons_.size());
    reasons_.push_back(c.reason());
  }
  const idx::identifier key{.system = c.record().system(), .value = c.record().value()};
  auto person_of_key = [&]() -> std::string {
    auto p = index_.person_of(key);
    return p ? format_enterprise_id(*p) : std::string();
  };
  switch (c.action()) {
    case ev::PatientLinkCommand::ACTION_ACCEPT_REVIEW: {
      auto d = index_.accept_review(c.review_id(), actor);
      if (!d) out.refused = d.error();
      else out.enterprise_id = format_enterprise_id(d->person);
      break;
    }
    case ev::PatientLinkCommand::ACTION_REJECT_REVIEW: {
      std::optional<std::uint32_t> record;
      for (const auto& it : index_.open_reviews()) {
        if (it.id == c.review_id()) record = it.record;
      }
      auto d = index_.reject_review(c.review_id(), actor);
      if (!d) {
        out.refused = d.error();
      } else if (record) {
        const auto ids = index_.identifiers_of(*record);
        if (auto p = ids.empty() ? std::nullopt : index_.person_of(ids.front())) out.enterprise_id = format_enterprise_id(*p);
      }
      break;
    }
    case ev::PatientLinkCommand::ACTION_SPLIT: {
      auto d = index_.split(key, actor);
      if (!d) out.refused = d.error();
      else out.enterprise_id = format_enterprise_id(*d);
      break;
    }
    case ev::PatientLinkCommand::ACTION_MOVE: {
      auto to = parse_enterprise_id(c.to_enterprise_patient_id());
      if (!to) {
        out.refused = error::make(errc::validation_failed, "not an enterprise patient id", "to_enterprise_patient_id");
        break;
      }
      auto d = index_.move(key, *to, actor);
      if (!d) out.refused = d.error();
      else out.enterprise_id = person_of_key();
      break;
    }
    default:
      out.refused = error::make(errc::validation_failed, "unknown action", "action");
      break;
  }
  announce_history(before, r.offset, r.timestamp_ms, nullptr, reason);
  outcomes_.emplace(c.command_id(), out);
  return out;
}

void service::state::announce_history(std::size_t from, std::int64_t offset, std::int64_t ms, const idx::decision* d,
                                      std::uint32_t reason) {
  const auto& h = index_.history();
  if (from >= h.size()) return;
  const auto persons = static_cast<float>(index_.persons());
  for (std::size_t i = from; i < h.size(); ++i) {
    const idx::audit_entry& a = h[i];
    announcement out{.offset = offset, .record = a.record, .from = a.from.value(), .to = a.to.value(),
                     .actor = intern_actor(a.actor), .reason = reason, .score_bits = a.score, .persons = persons,
                     .basis = basis_of(a.by), .decided_ms = ms};
    switch (a.what) {
      case idx::action::link: out.action = ev::LINK_ACTION_LINKED; break;
      case idx::action::review_queued:
        out.action = ev::LINK_ACTION_REVIEW;
        if (d != nullptr) {
          if (d->review_id) out.review = *d->review_id;
          out.held = d->held;
        }
        break;
      case idx::action::review_accepted: out.action = ev::LINK_ACTION_LINKED; break;
      case idx::action::review_rejected: out.action = ev::LINK_ACTION_REVIEW_REJECTED; break;
      case idx::action::split: out.action = ev::LINK_ACTION_UNLINKED; break;
      case idx::action::move: out.action = ev::LINK_ACTION_LINKED; break;
      case idx::action::a40_merge: out.action = ev::LINK_ACTION_MERGED; break;
    }
    remember(out);
  }
}

void service::state::remember(announcement a) {
  const auto i = static_cast<std::uint32_t>(announcements_.size());
  auto chain = [&](idx::chunked_vector<std::uint32_t>& heads, std::uint32_t key, std::uint32_t& prev) {
    if (key == none) return;
    if (heads.size() <= key) heads.grow_to(std::size_t{key} + 1, none);
    prev = heads[key];
    heads[key] = i;
  };
  if (i > 0 && announcements_[i - 1].offset == a.offset) a.nth = announcements_[i - 1].nth + 1;
  chain(last_of_record_, a.record, a.prev_of_record);
  chain(last_of_person_, a.from, a.prev_of_from);
  if (a.to != a.from) chain(last_of_person_, a.to, a.prev_of_to);
  announcements_.push_back(a);
}

record_info service::state::info(std::uint32_t record) const {
  record_info out = identified(record);
  if (record < display_.size()) {
    (void)out.demographics.ParseFromString(display_[record].demographics);
    out.last_event_id = display_[record].last_event_id;
    out.observed_only = display_[record].observed_only;
  }
  return out;
}

record_info service::state::identified(std::uint32_t record) const {
  record_info out;
  out.hospital = std::string(index_.hospital_of(record));
  for (const auto& id : all_identifiers(record)) {
    ev::Identifier& x = out.identifiers.emplace_back();
    x.set_system(id.system);
    x.set_value(id.value);
    auto t = system_types_.find(id.system);
    x.set_type(t == system_types_.end() ? ev::IDENTIFIER_TYPE_OTHER : t->second);
    if (x.type() == ev::IDENTIFIER_TYPE_MRN || x.type() == ev::IDENTIFIER_TYPE_VISIT ||
        x.type() == ev::IDENTIFIER_TYPE_OTHER) {
      x.set_assigner(out.hospital);
    }
  }
  return out;
}

std::optional<person_info> service::state::person(std::string_view enterprise_id) const {
  auto p = parse_enterprise_id(enterprise_id);
  if (!p) return std::nullopt;
  const auto recs = index_.records_of(*p);
  if (recs.empty()) return std::nullopt;
  person_info out{.enterprise_id = format_enterprise_id(index_.resolve(*p)), .records = {}};
  for (auto r : recs) out.records.push_back(info(r));
  return out;
}

std::optional<person_info> service::state::person_of(std::string_view system, std::string_view value) const {
  auto p = index_.person_of(idx::identifier{.system = std::string(system), .value = std::string(value)});
  if (!p) return std::nullopt;
  return person(format_enterprise_id(*p));
}

std::vector<search_hit> service::state::search(const ev::Demographics& query, const std::vector<ev::Identifier>& identifiers,
                                               std::size_t limit) const {
  std::vector<search_hit> out;
  // An identifier that is a record key answers exactly.
  for (const auto& id : identifiers) {
    if (auto p = person_of(id.system(), id.value())) {
      out.push_back(search_hit{.person = std::move(*p), .verdict = "link", .score_bits = 0.0});
      return out;
    }
  }
  idx::source_record q{.hospital = {}, .identifiers = {}, .demo = to_index(query)};
  for (const auto& id : identifiers) q.identifiers.push_back({.system = id.system(), .value = id.value()});
  for (const auto& h : index_.search(q, limit)) {
    auto p = person(format_enterprise_id(h.person));
    if (!p) continue;
    out.push_back(search_hit{.person = std::move(*p), .verdict = std::string(idx::to_string(h.verdict.v)),
                             .score_bits = h.verdict.score});
  }
  return out;
}

std::vector<review_info> service::state::reviews(bool open_only) const {
  std::vector<review_info> out;
  for (const auto& it : index_.reviews()) {
    if (open_only && it.status != idx::review_item::state::open) continue;
    review_info r;
    r.id = it.id;
    r.state = it.status == idx::review_item::state::open       ? "open"
              : it.status == idx::review_item::state::accepted ? "accepted"
                                                               : "rejected";
    r.record = info(it.record);
    const auto ids = index_.identifiers_of(it.record);
    if (!ids.empty()) {
      if (auto p = index_.person_of(ids.front())) r.record_enterprise_id = format_enterprise_id(*p);
    }
    r.candidate_enterprise_id = format_enterprise_id(index_.resolve(it.candidate));
    r.score_bits = it.score;
    if (it.held != idx::hold::none) r.hold = std::string(idx::to_string(it.held));
    out.push_back(std::move(r));
  }
  return out;
}

ev::Envelope service::state::announce(std::size_t i) const {
  const announcement& a = announcements_[i];
  ev::Envelope e;
  // Deterministic: a repeated announcement (after a crash) has the same id.
  e.set_event_id("identity:" + std::to_string(a.offset) + ":" + std::to_string(a.nth));
  e.set_type("yilian.events.v1.PatientLinkChanged");
  e.set_schema_version(1);
  *e.mutable_occurred_at() = google::protobuf::util::TimeUtil::MillisecondsToTimestamp(a.decided_ms);
  *e.mutable_recorded_at() = e.occurred_at();
  e.mutable_source()->set_protocol(ev::PROTOCOL_ENGINE);
  e.mutable_source()->set_system("yilian-identity");
  auto& b = *e.mutable_patient_link_changed();
  b.set_action(a.action);
  b.set_basis(a.basis);
  const std::string to = a.to != none ? format_enterprise_id(idx::enterprise_id(a.to)) : std::string();
  b.set_enterprise_patient_id(a.action == ev::LINK_ACTION_REVIEW || a.action == ev::LINK_ACTION_REVIEW_REJECTED
                                  ? (a.from != none ? format_enterprise_id(idx::enterprise_id(a.from)) : to)
                                  : to);
  if (a.action == ev::LINK_ACTION_REVIEW || a.action == ev::LINK_ACTION_REVIEW_REJECTED) {
    b.set_candidate_enterprise_patient_id(to);
  } else if (a.from != none && a.from != a.to) {
    b.set_previous_enterprise_patient_id(format_enterprise_id(idx::enterprise_id(a.from)));
  }
  const record_info rec = identified(a.record);
  for (const auto& id : rec.identifiers) *b.add_identifiers() = id;
  b.set_hospital(rec.hospital);
  b.set_score_bits(a.score_bits);
  if (a.basis == ev::LINK_BASIS_SCORED || a.action == ev::LINK_ACTION_REVIEW) {
    // Posterior probability of one person with prior odds 1 : persons.
    const double logit = a.score_bits - std::log2(std::max(1.0F, a.persons));
    b.set_score(1.0 / (1.0 + std::exp2(-logit)));
  } else if (a.action == ev::LINK_ACTION_LINKED || a.action == ev::LINK_ACTION_MERGED) {
    b.set_score(1.0);
  }
  if (a.actor != 0) b.set_decided_by(actors_[a.actor]);
  if (a.reason != 0) b.set_reason(reasons_[a.reason]);
  if (a.review != none) b.set_review_id(a.review);
  if (a.held != idx::hold::none) b.set_hold(std::string(idx::to_string(a.held)));
  *b.mutable_decided_at() = e.occurred_at();
  b.set_sequence(a.offset);
  e.mutable_source()->set_hospital(rec.hospital);
  auto* subject = e.mutable_subject();
  subject->set_enterprise_patient_id(b.enterprise_patient_id());
  for (const auto& id : rec.identifiers) *subject->add_identifiers() = id;
  return e;
}

std::vector<ev::PatientLinkChanged> service::state::history(std::string_view enterprise_id) const {
  std::vector<ev::PatientLinkChanged> out;
  auto p = parse_enterprise_id(enterprise_id);
  if (!p) return out;
  const auto target = index_.resolve(*p);
  // The announcements touching the person: those of its records, and those
  // naming it, or a person since merged into it, as from or to. Persons
  // merged into it are found through the merges' own announcements.
  std::vector<std::uint32_t> hits, persons{target.value()};
  auto head = [](const idx::chunked_vector<std::uint32_t>& heads, std::uint32_t key) {
    return key < heads.size() ? heads[key] : none;
  };
  for (auto r : index_.records_of(target)) {
    for (std::uint32_t i = head(last_of_record_, r); i != none; i = announcements_[i].prev_of_record) hits.push_back(i);
  }
  for (std::size_t k = 0; k < persons.size(); ++k) {
    const std::uint32_t q = persons[k];
    for (std::uint32_t i = head(last_of_person_, q); i != none;) {
      const announcement& a = announcements_[i];
      for (std::uint32_t other : {a.from, a.to}) {
        if (other != none && other != q && index_.resolve(idx::enterprise_id(other)) == target &&
            std::find(persons.begin(), persons.end(), other) == persons.end()) {
          persons.push_back(other);
        }
      }
      hits.push_back(i);
      i = a.from == q ? a.prev_of_from : a.prev_of_to;
    }
  }
  std::sort(hits.begin(), hits.end());
  hits.erase(std::unique(hits.begin(), hits.end()), hits.end());
  for (std::uint32_t i : hits) out.push_back(announce(i).patient_link_changed());
  return out;
}

idx::cross_reference service::state::xref(idx::enterprise_id p) const {
  idx::cross_reference out{.enterprise_id = format_enterprise_id(index_.resolve(p)), .identifiers = {}};
  for (auto r : index_.records_of(p)) {
    const std::string hospital(index_.hospital_of(r));
    for (const auto& id : all_identifiers(r)) {
      auto t = system_types_.find(id.system);
      idx::xref_identifier x{.system = id.system, .value = id.value,
                             .type = type_name(t == system_types_.end() ? ev::IDENTIFIER_TYPE_OTHER : t->second),
                             .hospital = hospital};
      if (std::find(out.identifiers.begin(), out.identifiers.end(), x) == out.identifiers.end()) {
        out.identifiers.push_back(std::move(x));
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// the service: feed, view, writer

struct service::impl {
  bus::bus& bus;
  service_options options;
  service& owner;
  std::unique_ptr<relay> feed;
  std::unique_ptr<bus::consumer> view;
  std::unique_ptr<bus::consumer> writer;
  std::thread thread;
  std::atomic<bool> stopping{false};
  std::atomic<bool> caught_up{false};
  std::int64_t start_end = -1;

  // Writer state (engine thread only).
  bool writing = false;
  std::int64_t announce_from = -1;  // next log offset whose announcements are owed
  std::mutex done_mu;
  std::condition_variable done_cv;

  // Waiters for operators' commands.
  std::mutex waiters_mu;
  std::unordered_map<std::string, std::vector<std::move_only_function<void(result<command_outcome>)>>> waiters;

  metrics::counter* applied_total = nullptr;
  metrics::counter* announced_total = nullptr;
  std::optional<metrics::callback_handle> gauges;

  impl(bus::bus& b, service_options o, service& s) : bus(b), options(std::move(o)), owner(s) {}

  void run();
  void poll_view();
  void poll_writer();
  void publish_announcements();
  void resolve(const std::string& command_id, const command_outcome& outcome);
  void route(const bus::record& r, std::vector<bus::message>& out) const;
};

void service::impl::route(const bus::record& r, std::vector<bus::message>& out) const {
  if (header_is(r, "origin", "engine") && r.topic == options.patient_topic) return;  // our own announcements
  if (r.topic != options.patient_topic && !observed_here(r.value)) return;
  ev::Envelope e;
  if (!e.ParseFromString(r.value)) return;  // not an envelope: nothing the index reads
  auto copy = [&](const ev::Envelope& x) {
    out.push_back(bus::message{.topic = options.log_topic, .key = std::string(log_key), .value = x.SerializeAsString(),
                               .headers = record_headers(x)});
  };
  switch (e.body_case()) {
    case ev::Envelope::kPatientRegistered:
    case ev::Envelope::kPatientUpdated:
    case ev::Envelope::kPatientIdentifiersMerged:
      out.push_back(bus::message{.topic = options.log_topic, .key = std::string(log_key), .value = r.value,
                                 .headers = record_headers(e)});
      return;
    case ev::Envelope::kReferralRequested:
    case ev::Envelope::kAppointmentChanged: {
      const bool referral = e.has_referral_requested();
      const ev::Demographics& d = referral ? e.referral_requested().patient() : e.appointment_changed().patient();
      if (!referral && e.appointment_changed().version() != 1) return;  // a booking's first decision carries it
      if (e.subject().identifiers_size() == 0 || d.ByteSizeLong() == 0) return;
      ev::Envelope o;
      o.set_event_id("identity-observed:" + e.event_id());
      o.set_type("yilian.events.v1.PatientRecordObserved");
      o.set_schema_version(1);
      *o.mutable_occurred_at() = e.occurred_at();
      *o.mutable_recorded_at() = e.recorded_at();
      *o.mutable_source() = e.source();
      *o.mutable_subject() = e.subject();
      *o.mutable_correlation() = e.correlation();
      auto& b = *o.mutable_patient_record_observed();
      *b.mutable_demographics() = d;
      b.set_seen_in(referral ? "ReferralRequested" : "AppointmentChanged");
      copy(o);
      return;
    }
    default: return;
  }
}

result<void> service::start() {
  auto& m = *impl_;
  auto view = m.bus.subscribe(bus::consumer_options{
      .group = m.options.group_prefix + "yilian-identity-view-" + (m.options.instance.empty() ? random_id() : m.options.instance),
      .topics = {m.options.log_topic},
      .start = bus::start_from::earliest});
  if (!view) return std::unexpected(view.error());
  m.view = std::move(*view);
  auto writer = m.bus.subscribe(bus::consumer_options{.group = m.options.group_prefix + "yilian-identity",
                                                      .topics = {m.options.log_topic},
                                                      .start = bus::start_from::earliest});
  if (!writer) return std::unexpected(writer.error());
  m.writer = std::move(*writer);
  std::vector<std::string> feed_topics{m.options.patient_topic};
  feed_topics.insert(feed_topics.end(), m.options.observed_topics.begin(), m.options.observed_topics.end());
  m.feed = std::make_unique<relay>(m.bus,
                                   relay_options{.name = "identity-feed",
                                                 .group = m.options.group_prefix + "yilian-identity-feed",
                                                 .topics = feed_topics,
                                                 .outbound_topic = m.options.log_topic},
                                   [&m](const bus::record& r, std::vector<bus::message>& out) { m.route(r, out); });
  if (auto s = m.feed->start(); !s) return s;
  m.thread = std::thread([&m] {
    name_this_thread("yl-identity");
    m.run();
  });
  lg.info("identity index started", {log::field("log_topic", m.options.log_topic)});
  return {};
}

void service::stop() {
  auto& m = *impl_;
  m.stopping.store(true);
  // Leaving a Kafka group can take a while; the three consumers leave together.
  std::thread feed_stop([&m] {
    if (m.feed) m.feed->stop();
  });
  if (m.thread.joinable()) m.thread.join();
  std::thread writer_close([&m] {
    if (m.writer) m.writer->close();
  });
  if (m.view) m.view->close();
  writer_close.join();
  feed_stop.join();
  m.writer.reset();
  m.view.reset();
  std::unordered_map<std::string, std::vector<std::move_only_function<void(result<command_outcome>)>>> left;
  {
    std::lock_guard lock(m.waiters_mu);
    left.swap(m.waiters);
  }
  for (auto& [id, list] : left) {
    for (auto& w : list) w(fail(errc::cancelled, "the engine is stopping", "identity"));
  }
}

void service::impl::run() {
  while (!stopping.load()) {
    poll_view();
    poll_writer();
    publish_announcements();
  }
}

void service::impl::poll_view() {
  auto batch = view->poll(writing ? 20ms : 100ms, 4096);
  if (!batch) {
    lg.warn("identity view cannot read the bus", {log::field("error", batch.error().describe())});
    std::this_thread::sleep_for(200ms);
    return;
  }
  std::vector<command_outcome> outcomes;
  ev::Envelope e;
  // Readers (HTTP, PIX, the HL7 adapter's stamping) wait for the exclusive
  // lock, so it is held for a bounded slice of the batch at a time.
  constexpr std::size_t slice = 256;
  for (std::size_t begin = 0; begin < batch->size(); begin += slice) {
    std::unique_lock lock(owner.mu_);
    for (std::size_t i = begin; i < std::min(batch->size(), begin + slice); ++i) {
      const auto& r = (*batch)[i];
      if (r.offset < owner.state_->applied_through()) continue;  // redelivered
      e.Clear();
      if (!e.ParseFromString(r.value)) {
        lg.warn("identity log record is not an envelope; skipped", {log::field("offset", r.offset)});
        continue;
      }
      auto a = owner.state_->apply(r, e);
      if (a.outcome) outcomes.push_back(std::move(*a.outcome));
    }
  }
  if (applied_total != nullptr && !batch->empty()) applied_total->inc(static_cast<double>(batch->size()));
  for (const auto& o : outcomes) resolve(o.command_id, o);
  if (!caught_up.load()) {
    if (start_end < 0) {
      if (view->assignment().empty()) return;
      auto l = view->lag();
      if (!l || l->empty()) return;
      start_end = 0;
      for (const auto& p : *l) start_end = std::max(start_end, p.end);
    }
    std::shared_lock lock(owner.mu_);
    if (owner.state_->applied_through() >= start_end) {
      caught_up.store(true);
      lg.info("identity view caught up", {log::field("records", owner.state_->index().records()),
                                          log::field("persons", owner.state_->index().persons())});
    }
  }
}

void service::impl::poll_writer() {
  // The writer consumer is only the lease: whoever holds the log's partition
  // announces. Its records are not needed (the view has them); its committed
  // offset says where the previous writer stopped.
  (void)writer->poll(0ms, 4096);  // keeps the membership alive; the records themselves are the view's
  const bool owns = !writer->assignment().empty();
  if (owns && !writing) {
    auto l = writer->lag();
    if (!l || l->empty()) return;
    announce_from = std::max<std::int64_t>(0, l->front().committed);
    writing = true;
    lg.info("identity writer assignment: announcing link decisions", {log::field("from_offset", announce_from)});
  } else if (!owns && writing) {
    writing = false;
    lg.info("identity writer assignment lost");
  }
}

void service::impl::publish_announcements() {
  if (!writing || !caught_up.load()) return;
  std::vector<bus::message> out;
  std::int64_t through = 0;
  {
    std::shared_lock lock(owner.mu_);
    through = owner.state_->applied_through();
    if (through <= announce_from) return;
    const auto& list = owner.state_->announcements();
    // Whole log records per batch, so the committed offset never falls
    // inside one record's announcements.
    for (std::size_t i = owner.state_->first_announcement_at(announce_from); i < list.size() && list[i].offset < through; ++i) {
      if (out.size() >= 4096 && list[i].offset != list[i - 1].offset) {
        through = list[i].offset;
        break;
      }
      const ev::Envelope e = owner.state_->announce(i);
      out.push_back(bus::message{.topic = options.patient_topic, .key = e.subject().enterprise_patient_id(),
                                 .value = e.SerializeAsString(), .headers = record_headers(e)});
    }
  }
  std::size_t pending = out.size();
  bool failed = false;
  for (auto& m : out) {
    bus.publish(std::move(m), [&](result<bus::position> p) {
      std::lock_guard lock(done_mu);
      if (!p) failed = true;
      --pending;
      done_cv.notify_all();
    });
  }
  {
    std::unique_lock lock(done_mu);
    done_cv.wait(lock, [&] { return pending == 0; });
  }
  if (failed) {
    lg.warn("identity announcements not all published; retrying");
    std::this_thread::sleep_for(200ms);
    return;
  }
  if (announced_total != nullptr) announced_total->inc(static_cast<double>(out.size()));
  announce_from = through;
  // Commit the lease's offset: the next writer starts where this one stopped.
  bus::record mark{.topic = options.log_topic, .partition = 0, .offset = through - 1, .key = {}, .value = {}, .headers = {},
                   .timestamp_ms = 0};
  if (auto a = writer->assignment(); !a.empty()) mark.partition = a.front().second;
  if (auto c = writer->commit(std::span<const bus::record>(&mark, 1)); !c) {
    lg.warn("identity writer commit failed (announcements may repeat)", {log::field("error", c.error().describe())});
  }
}

void service::impl::resolve(const std::string& command_id, const command_outcome& outcome) {
  std::vector<std::move_only_function<void(result<command_outcome>)>> list;
  {
    std::lock_guard lock(waiters_mu);
    auto it = waiters.find(command_id);
    if (it == waiters.end()) return;
    list.swap(it->second);
    waiters.erase(it);
  }
  for (auto& w : list) w(outcome);
}

service::service(bus::bus& b, service_options options, metrics::registry* registry)
    : state_(std::make_unique<state>(options.index)), impl_(std::make_unique<impl>(b, std::move(options), *this)) {
  view_ = state_.get();
  if (registry != nullptr) {
    impl_->applied_total = &registry->add_counter("yilian_identity_log_records_applied_total",
                                                  "Identity-log records this instance's view folded into the index.")
                                .with({});
    impl_->announced_total = &registry->add_counter("yilian_identity_announcements_total",
                                                    "PatientLinkChanged events this instance published as the identity writer.")
                                  .with({});
    impl_->gauges = registry->add_callback_gauge(
        "yilian_identity_index", "Identity index size (records, persons, open reviews, records skipped as unusable).",
        {"what"}, [this] {
          std::shared_lock lock(mu_);
          const auto st = state_->index().stats();
          return std::vector<metrics::sample>{
              {{"records"}, static_cast<double>(st.records)},
              {{"persons"}, static_cast<double>(st.persons)},
              {{"open_reviews"}, static_cast<double>(state_->index().open_reviews().size())},
              {{"skipped"}, static_cast<double>(state_->skipped())},
              {{"memory_bytes"}, static_cast<double>(st.memory_bytes)}};
        });
  }
}

service::~service() { stop(); }

bool service::caught_up() const { return impl_->caught_up.load(); }

void service::submit(ev::PatientLinkCommand command, std::string actor_hospital,
                     std::move_only_function<void(result<command_outcome>)> done) {
  if (command.command_id().empty()) command.set_command_id(random_id("plc-"));
  const std::string id = command.command_id();
  {
    std::shared_lock lock(mu_);
    if (auto earlier = state_->outcome_of(id)) {
      lock.unlock();
      done(*earlier);
      return;
    }
  }
  {
    std::lock_guard lock(impl_->waiters_mu);
    impl_->waiters[id].push_back(std::move(done));
  }
  ev::Envelope e;
  e.set_event_id("patient-link-command:" + id);
  e.set_type("yilian.events.v1.PatientLinkCommand");
  e.set_schema_version(1);
  const auto now = google::protobuf::util::TimeUtil::GetCurrentTime();
  *e.mutable_occurred_at() = now;
  *e.mutable_recorded_at() = now;
  e.mutable_source()->set_protocol(ev::PROTOCOL_API);
  e.mutable_source()->set_hospital(actor_hospital);
  e.mutable_source()->set_system(command.decided_by());
  *e.mutable_patient_link_command() = std::move(command);
  impl_->bus.publish(bus::message{.topic = impl_->options.log_topic, .key = std::string(log_key),
                                  .value = e.SerializeAsString(), .headers = record_headers(e)},
                     [this, id](result<bus::position> p) {
                       if (p) return;  // the view answers once it has applied the command
                       std::vector<std::move_only_function<void(result<command_outcome>)>> list;
                       {
                         std::lock_guard lock(impl_->waiters_mu);
                         auto it = impl_->waiters.find(id);
                         if (it == impl_->waiters.end()) return;
                         list.swap(it->second);
                         impl_->waiters.erase(it);
                       }
                       for (auto& w : list) w(std::unexpected(p.error()));
                     });
}

std::string service::enterprise_id_of(std::string_view system, std::string_view value) const {
  std::shared_lock lock(mu_);
  auto p = state_->index().person_of(idx::identifier{.system = std::string(system), .value = std::string(value)});
  return p ? format_enterprise_id(state_->index().resolve(*p)) : std::string();
}

std::optional<idx::cross_reference> service::cross_reference_of(std::string_view system, std::string_view value) const {
  std::shared_lock lock(mu_);
  auto p = state_->index().person_of(idx::identifier{.system = std::string(system), .value = std::string(value)});
  if (!p) return std::nullopt;
  return state_->xref(*p);
}

std::vector<std::string> service::persons_holding(std::string_view system, std::string_view value) const {
  std::vector<std::string> out;
  std::shared_lock lock(mu_);
  for (auto p : state_->index().persons_with(idx::identifier{.system = std::string(system), .value = std::string(value)})) {
    out.push_back(format_enterprise_id(p));
  }
  return out;
}

std::optional<idx::cross_reference> service::person(std::string_view enterprise_id) const {
  auto p = parse_enterprise_id(enterprise_id);
  if (!p) return std::nullopt;
  std::shared_lock lock(mu_);
  if (state_->index().records_of(*p).empty()) return std::nullopt;
  return state_->xref(*p);
}

}  // namespace yilian::workflows::identity
