#include "engine/identity/index.h"

#include <algorithm>
#include <cstring>

namespace yilian::identity {

namespace {
constexpr std::uint32_t none = 0xFFFFFFFFU;
constexpr std::uint8_t id_tag = 0xF0;  // key_hash tag of record-key identifiers
constexpr std::uint8_t name_tag_family = 0xE1, name_tag_given = 0xE2, name_tag_city = 0xE3;  // frequency counts
// Below this many records value frequencies are too noisy to use.
constexpr std::size_t min_records_for_frequencies = 1000;

// Text fields of a packed record, in blob order.
enum text_field : std::size_t {
  t_family, t_given, t_phone, t_rid, t_card0, t_card1, t_card2, t_card3, t_postcode, t_city, t_street, t_street_number,
  t_line2, t_province, t_ids, text_fields
};
static_assert(max_card_systems == 4, "packed record layout has four card slots");
constexpr std::size_t max_field_bytes = 255;

std::string_view clip(std::string_view s) { return s.substr(0, std::min(s.size(), max_field_bytes)); }
}  // namespace

std::string_view to_string(outcome o) noexcept {
  switch (o) {
    case outcome::linked: return "linked";
    case outcome::review: return "review";
    case outcome::new_person: return "new_person";
    case outcome::updated: return "updated";
  }
  return "unknown";
}

std::string_view to_string(action a) noexcept {
  switch (a) {
    case action::link: return "link";
    case action::review_queued: return "review_queued";
    case action::review_accepted: return "review_accepted";
    case action::review_rejected: return "review_rejected";
    case action::split: return "split";
    case action::move: return "move";
    case action::a40_merge: return "a40_merge";
  }
  return "unknown";
}

// One hospital record, packed: all text in one heap block, offsets in `end`.
struct identity_index::stored {
  std::unique_ptr<char[]> text;
  std::array<std::uint16_t, text_fields> end{};
  std::uint32_t person = none;
  std::uint32_t next = none;  // next record of the same person
  std::uint32_t birth = 0;
  std::uint32_t han_family = 0, han_given = 0;
  std::uint16_t hospital = 0;
  enum sex sex = sex::unknown;
  bool alive = false;

  std::string_view get(std::size_t f) const noexcept {
    const std::uint16_t b = f == 0 ? 0 : end[f - 1];
    return {text.get() + b, static_cast<std::size_t>(end[f] - b)};
  }
};

struct identity_index::classified {
  features f;
  std::vector<identifier> keys;
};

struct identity_index::match_result {
  verdict v = verdict::no_link;
  std::uint32_t person = none;
  rule by = rule::none;
  hold held = hold::none;
  double score = 0.0;
  std::uint32_t compared = 0;
  std::uint32_t walked = 0;
};

identity_index::identity_index(identity_options opt) : opt_(std::move(opt)) {
  opt_.match.weights.finalize();
  (void)warm_up_names();
}

identity_index::~identity_index() = default;

std::uint16_t identity_index::intern_system(std::string_view s) {
  auto [it, inserted] = system_ids_.try_emplace(std::string(s), static_cast<std::uint16_t>(systems_.size()));
  if (inserted) systems_.emplace_back(s);
  return it->second;
}

std::uint16_t identity_index::intern_hospital(std::string_view s) {
  auto [it, inserted] = hospital_ids_.try_emplace(std::string(s), static_cast<std::uint16_t>(hospitals_.size()));
  if (inserted) hospitals_.emplace_back(s);
  return it->second;
}

std::optional<std::uint16_t> identity_index::find_system(std::string_view s) const {
  auto it = system_ids_.find(std::string(s));
  if (it == system_ids_.end()) return std::nullopt;
  return it->second;
}

identity_index::classified identity_index::classify(const source_record& r) const {
  classified c;
  std::string_view rid;
  std::array<std::string_view, max_card_systems> cards{};
  for (const identifier& id : r.identifiers) {
    if (id.value.empty()) continue;
    if (std::find(opt_.resident_id_systems.begin(), opt_.resident_id_systems.end(), id.system) !=
        opt_.resident_id_systems.end()) {
      if (rid.empty()) rid = id.value;
      continue;
    }
    bool card = false;
    for (std::size_t i = 0; i < max_card_systems; ++i) {
      if (!opt_.card_systems[i].empty() && opt_.card_systems[i] == id.system) {
        if (cards[i].empty()) cards[i] = id.value;
        card = true;
      }
    }
    if (card) continue;
    identifier k{.system = std::string(clip(id.system)), .value = std::string(clip(id.value))};
    if (std::find(c.keys.begin(), c.keys.end(), k) == c.keys.end()) c.keys.push_back(std::move(k));
  }
  c.f = make_features(r.demo, rid, cards, today_.known() ? today_ : today_utc());
  return c;
}

features_view identity_index::view_of(std::uint32_t record) const {
  const stored& s = records_[record];
  features_view v{.family = s.get(t_family), .given = s.get(t_given), .han_family = s.han_family,
                  .han_given = s.han_given, .birth = civil_date::unpack(s.birth), .sex = s.sex,
                  .phone = s.get(t_phone), .resident_id = s.get(t_rid)};
  v.cards[0] = s.get(t_card0);
  v.cards[1] = s.get(t_card1);
  v.cards[2] = s.get(t_card2);
  v.cards[3] = s.get(t_card3);
  v.postcode = s.get(t_postcode);
  v.city = s.get(t_city);
  v.street = s.get(t_street);
  v.street_number = s.get(t_street_number);
  v.line2 = s.get(t_line2);
  v.province = s.get(t_province);
  return v;
}

void identity_index::restore(std::uint32_t record, const classified& c) {
  stored& s = records_[record];
  const features& f = c.f;
  std::array<std::string_view, t_ids> parts{clip(f.name.family), clip(f.name.given), clip(f.phone),
                                            clip(f.resident_id), clip(f.cards[0]), clip(f.cards[1]),
                                            clip(f.cards[2]), clip(f.cards[3]),
                                            clip(f.postcode), clip(f.city), clip(f.street),
                                            clip(f.street_number), clip(f.line2), clip(f.province)};
  std::string ids;
  for (const identifier& k : c.keys) {
    const std::uint16_t sys = intern_system(k.system);
    ids.push_back(static_cast<char>(sys & 0xFF));
    ids.push_back(static_cast<char>(sys >> 8));
    ids.push_back(static_cast<char>(k.value.size()));
    ids += k.value;
  }
  std::size_t total = ids.size();
  for (auto p : parts) total += p.size();
  total = std::min<std::size_t>(total, 0xFFFF);
  auto text = std::make_unique<char[]>(std::max<std::size_t>(total, 1));
  std::size_t at = 0;
  auto put = [&](std::size_t field_no, std::string_view v) {
    const std::size_t n = std::min(v.size(), total - at);
    std::memcpy(text.get() + at, v.data(), n);
    at += n;
    s.end[field_no] = static_cast<std::uint16_t>(at);
  };
  for (std::size_t i = 0; i < parts.size(); ++i) put(i, parts[i]);
  put(t_ids, ids);
  s.text = std::move(text);
  s.birth = f.birth.packed();
  s.han_family = f.name.han_family;
  s.han_given = f.name.han_given;
  s.sex = f.sex;
}

template <class F>
void identity_index::for_each_identifier(std::uint32_t record, F&& f) const {
  if (record >= records_.size() || !records_[record].alive) return;
  const std::string_view ids = records_[record].get(t_ids);
  for (std::size_t i = 0; i + 3 <= ids.size();) {
    const auto sys = static_cast<std::uint16_t>(static_cast<unsigned char>(ids[i]) |
                                                (static_cast<unsigned char>(ids[i + 1]) << 8));
    const std::size_t len = static_cast<unsigned char>(ids[i + 2]);
    f(std::string_view(systems_[sys]), ids.substr(i + 3, len));
    i += 3 + len;
  }
}

std::vector<identifier> identity_index::identifiers_of(std::uint32_t record) const {
  std::vector<identifier> out;
  for_each_identifier(record, [&](std::string_view system, std::string_view value) {
    out.push_back(identifier{.system = std::string(system), .value = std::string(value)});
  });
  return out;
}

std::string_view identity_index::hospital_of(std::uint32_t record) const {
  if (record >= records_.size()) return {};
  return hospitals_[records_[record].hospital];
}

// Every hash a record is filed under: blocks, name frequencies, identifiers.
struct identity_index::filed_keys {
  std::vector<std::uint32_t> blocks, names, ids;
};

identity_index::filed_keys identity_index::keys_of(std::uint32_t record) const {
  filed_keys out;
  const features_view v = view_of(record);
  std::vector<block_key> keys;
  blocking_keys(v, keys);
  for (const block_key& k : keys) out.blocks.push_back(k.hash);
  for (auto [tag, part] : {std::pair<std::uint8_t, std::string_view>{name_tag_family, v.family},
                           std::pair<std::uint8_t, std::string_view>{name_tag_given, v.given},
                           std::pair<std::uint8_t, std::string_view>{name_tag_city, v.city}}) {
    if (!part.empty()) out.names.push_back(key_hash(tag, part));
  }
  for_each_identifier(record, [&](std::string_view system, std::string_view value) {
    out.ids.push_back(key_hash(id_tag, system, value));
  });
  return out;
}

void identity_index::file(std::uint32_t record, const filed_keys& k, bool add) {
  for (std::uint32_t h : k.blocks) blocks_.prefetch(h);
  for (std::uint32_t h : k.blocks) {
    if (add) blocks_.add(h, record);
    else blocks_.remove(h, record);
  }
  for (std::uint32_t h : k.names) {
    if (add) name_counts_.add(h);
    else name_counts_.remove(h);
  }
  for (std::uint32_t h : k.ids) {
    if (add) ids_.add(h, record);
    else ids_.remove(h, record);
  }
}

void identity_index::index_record(std::uint32_t record, bool add) { file(record, keys_of(record), add); }

void identity_index::refile(std::uint32_t record, const classified& c) {
  // An update usually changes a phone or an address, not the name and birth
  // date: only the keys that changed are moved. Removing a posting walks its
  // block, and name blocks grow with the population, so re-filing every key
  // would make updates dearer as the index grows.
  filed_keys before = keys_of(record);
  restore(record, c);
  filed_keys after = keys_of(record);
  filed_keys gone, added;
  auto diff = [](std::vector<std::uint32_t>& a, std::vector<std::uint32_t>& b, std::vector<std::uint32_t>& a_only,
                 std::vector<std::uint32_t>& b_only) {
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(a_only));
    std::set_difference(b.begin(), b.end(), a.begin(), a.end(), std::back_inserter(b_only));
  };
  diff(before.blocks, after.blocks, gone.blocks, added.blocks);
  diff(before.names, after.names, gone.names, added.names);
  diff(before.ids, after.ids, gone.ids, added.ids);
  file(record, gone, false);
  file(record, added, true);
}

std::optional<std::uint32_t> identity_index::record_of(const identifier& id) const {
  std::optional<std::uint32_t> found;
  const std::string_view system = clip(id.system), value = clip(id.value);
  ids_.for_each(key_hash(id_tag, system, value), static_cast<std::size_t>(-1), [&](std::uint32_t r) {
    if (found || !records_[r].alive) return;
    for_each_identifier(r, [&](std::string_view s, std::string_view v) {
      if (s == system && v == value) found = r;  // verified: a hash collision is not a match
    });
  });
  return found;
}

std::vector<enterprise_id> identity_index::persons_with(const identifier& id) const {
  source_record q;
  q.identifiers.push_back(id);
  const classified c = classify(q);
  const features_view v = c.f.view();
  std::vector<block_key> keys;
  blocking_keys(v, keys);
  std::vector<std::uint32_t> persons;
  for (const block_key& k : keys) {
    if (k.kind != block_kind::resident_id && k.kind != block_kind::card) continue;
    blocks_.for_each(k.hash, static_cast<std::size_t>(-1), [&](std::uint32_t r) {
      if (!records_[r].alive) return;
      const features_view o = view_of(r);
      bool same = !v.resident_id.empty() && o.resident_id == v.resident_id;
      for (std::size_t i = 0; i < max_card_systems; ++i) same |= !v.cards[i].empty() && o.cards[i] == v.cards[i];
      const std::uint32_t p = root(records_[r].person);
      if (same && std::find(persons.begin(), persons.end(), p) == persons.end()) persons.push_back(p);
    });
  }
  std::sort(persons.begin(), persons.end());
  std::vector<enterprise_id> out;
  for (std::uint32_t p : persons) out.push_back(enterprise_id(p));
  return out;
}

std::optional<enterprise_id> identity_index::person_of(const identifier& id) const {
  auto r = record_of(id);
  if (!r) return std::nullopt;
  return enterprise_id(root(records_[*r].person));
}

std::uint32_t identity_index::root(std::uint32_t person) const {
  while (person != none && persons_[person].merged_into != none) person = persons_[person].merged_into;
  return person;
}

enterprise_id identity_index::resolve(enterprise_id p) const {
  if (p.value() >= persons_.size()) return p;
  return enterprise_id(root(p.value()));
}

std::uint32_t identity_index::new_person() {
  persons_.push_back(person_slot{});  // counted live once a record is attached
  return static_cast<std::uint32_t>(persons_.size() - 1);
}

void identity_index::attach(std::uint32_t record, std::uint32_t person) {
  stored& s = records_[record];
  s.person = person;
  s.next = persons_[person].head;
  persons_[person].head = record;
  if (persons_[person].size++ == 0) ++live_persons_;
}

void identity_index::detach(std::uint32_t record) {
  stored& s = records_[record];
  person_slot& p = persons_[s.person];
  for (std::uint32_t* link = &p.head; *link != none; link = &records_[*link].next) {
    if (*link != record) continue;
    *link = s.next;
    break;
  }
  s.next = none;
  if (--p.size == 0) --live_persons_;
}

void identity_index::merge_persons(std::uint32_t from, std::uint32_t into) {
  if (from == into) return;
  std::vector<std::uint32_t> moving;
  for (std::uint32_t r = persons_[from].head; r != none; r = records_[r].next) moving.push_back(r);
  if (!moving.empty() && persons_[into].size == 0) ++live_persons_;
  for (std::uint32_t r : moving) {
    stored& s = records_[r];
    s.person = into;
    s.next = persons_[into].head;
    persons_[into].head = r;
    ++persons_[into].size;
  }
  persons_[from].head = none;
  if (persons_[from].size > 0) --live_persons_;
  persons_[from].size = 0;
  persons_[from].merged_into = into;
}

bool identity_index::do_not_link(std::uint32_t record, std::uint32_t person) const {
  if (record == none) return false;
  auto [b, e] = do_not_link_.equal_range(record);
  for (auto it = b; it != e; ++it) {
    if (root(it->second) == person) return true;
  }
  return false;
}

void identity_index::audit(action what, std::uint32_t record, std::uint32_t from, std::uint32_t to, rule by, double score,
                  std::string_view actor) {
  history_.push_back(audit_entry{.seq = ++seq_, .what = what, .record = record, .from = enterprise_id(from),
                                 .to = enterprise_id(to), .by = by, .score = static_cast<float>(score),
                                 .actor = std::string(actor)});
}

std::uint32_t identity_index::store(const classified& c, std::uint16_t hospital, std::uint32_t person) {
  const auto record = static_cast<std::uint32_t>(records_.size());
  records_.emplace_back();
  records_[record].hospital = hospital;
  records_[record].alive = true;
  restore(record, c);
  attach(record, person);
  index_record(record, true);
  ++live_records_;
  return record;
}

void identity_index::erase_record(std::uint32_t record) {
  index_record(record, false);
  detach(record);
  stored& s = records_[record];
  s.alive = false;
  s.text.reset();
  s.end.fill(0);
  --live_records_;
}

namespace {
// Whether verdict a beats b for the same or another person.
bool better(const pair_verdict& a, const pair_verdict& b) {
  if (a.v != b.v) return static_cast<int>(a.v) < static_cast<int>(b.v);  // link < review < no_link
  const bool a_rule = a.by == rule::resident_id || a.by == rule::card;
  const bool b_rule = b.by == rule::resident_id || b.by == rule::card;
  if (a_rule != b_rule) return a_rule;
  return a.score > b.score;
}
}  // namespace

population_context identity_index::frequencies_of(const features_view& q) const {
  population_context tf;
  tf.persons = static_cast<double>(live_persons_);
  if (live_records_ < min_records_for_frequencies) return tf;
  const auto n = static_cast<double>(live_records_);
  // Share of records carrying the value, counting the incoming record too
  // ((count + 1) / (n + 1)): a value seen once among a million is rare, not
  // impossible, and an exact agreement implies at least one stored holder.
  auto freq = [&](std::uint8_t tag, std::string_view part) {
    if (part.empty()) return 0.0;
    const double count = name_counts_.count(key_hash(tag, part));
    return (count + 1.0) / (n + 1.0);
  };
  tf.family = freq(name_tag_family, q.family);
  tf.given = freq(name_tag_given, q.given);
  tf.city = freq(name_tag_city, q.city);
  return tf;
}

identity_index::match_result identity_index::match(const features_view& q, std::uint16_t hospital, std::uint32_t self,
                                 std::vector<candidate_trace>* trace) const {
  std::vector<block_key> keys;
  blocking_keys(q, keys);
  for (const block_key& k : keys) blocks_.prefetch(k.hash);
  struct best_of_person {
    std::uint32_t person;
    pair_verdict v;
  };
  std::vector<best_of_person> persons;
  std::vector<std::uint32_t> cands, seen;
  match_result m;
  const population_context tf = frequencies_of(q);
  const auto is_rule = [](rule r) { return r == rule::resident_id || r == rule::card; };
  auto score_all = [&] {
    std::sort(cands.begin(), cands.end());
    cands.erase(std::unique(cands.begin(), cands.end()), cands.end());
    for (std::uint32_t r : cands) {
      if (seen.size() >= opt_.max_candidates) break;
      if (std::binary_search(seen.begin(), seen.end(), r)) continue;
      seen.insert(std::upper_bound(seen.begin(), seen.end(), r), r);
      if (r == self || !records_[r].alive) continue;
      const std::uint32_t p = root(records_[r].person);
      if (do_not_link(self, p)) continue;
      const features_view other = view_of(r);
      const comparison c = compare(q, other);
      const pair_verdict v = decide(q, other, c, records_[r].hospital == hospital, opt_.match, tf);
      ++m.compared;
      if (trace) trace->push_back(candidate_trace{.record = r, .person = enterprise_id(p), .c = c, .verdict = v});
      auto it = std::find_if(persons.begin(), persons.end(), [&](const best_of_person& x) { return x.person == p; });
      if (it == persons.end()) persons.push_back(best_of_person{.person = p, .v = v});
      else if (better(v, it->v)) it->v = v;
    }
    cands.clear();
  };
  // Phase 1: records sharing a resident ID or card. Only these can meet a
  // deterministic rule, and a rule link is never outvoted by a score link
  // (see below), so when exactly one person is rule-linked here and every
  // identifier block was usable, the demographic blocks cannot change the
  // decision and are skipped: the common case (a known person at another
  // hospital) costs a handful of comparisons whatever the index size. A
  // trace (search, evaluation) always gets every candidate.
  bool identifier_blocks_complete = true;
  for (const block_key& k : keys) {
    if (k.kind != block_kind::resident_id && k.kind != block_kind::card) continue;
    identifier_blocks_complete &=
        blocks_.for_each(k.hash, opt_.max_block, [&](std::uint32_t r) { cands.push_back(r); });
  }
  m.walked += static_cast<std::uint32_t>(cands.size());
  score_all();
  const auto rule_links = std::count_if(persons.begin(), persons.end(), [&](const best_of_person& x) {
    return x.v.v == verdict::link && is_rule(x.v.by);
  });
  if (trace != nullptr || rule_links != 1 || !identifier_blocks_complete) {
    // Phase 2: demographic blocks.
    // A coarse name block grown past split_block gives way to the record's
    // finer blocks of that kind (blocking.h); without them (one name part
    // only) it is used up to max_block.
    const auto has_finer = [&](block_kind coarse) {
      return std::any_of(keys.begin(), keys.end(), [&](const block_key& k) { return finer_than(k.kind) == coarse; });
    };
    std::uint32_t split = 0;  // bit per coarse kind given way
    const auto bit = [](block_kind k) { return 1U << static_cast<unsigned>(k); };
    for (const block_key& k : keys) {
      if (k.kind == block_kind::resident_id || k.kind == block_kind::card || finer_than(k.kind)) continue;
      if ((k.kind == block_kind::name_birth || k.kind == block_kind::name_birth_year) && has_finer(k.kind) &&
          blocks_.block_size(k.hash) > opt_.split_block) {
        split |= bit(k.kind);
        continue;
      }
      blocks_.for_each(k.hash, opt_.max_block, [&](std::uint32_t r) { cands.push_back(r); });
    }
    for (const block_key& k : keys) {
      const auto coarse = finer_than(k.kind);
      if (coarse && (split & bit(*coarse)) != 0) {
        blocks_.for_each(k.hash, opt_.max_block, [&](std::uint32_t r) { cands.push_back(r); });
      }
    }
    m.walked += static_cast<std::uint32_t>(cands.size());
    score_all();
  }
  if (persons.empty()) return m;
  std::sort(persons.begin(), persons.end(), [](const best_of_person& a, const best_of_person& b) {
    return better(a.v, b.v) || (!better(b.v, a.v) && a.person < b.person);
  });
  const best_of_person& top = persons.front();
  m.person = top.person;
  m.v = top.v.v;
  m.by = top.v.by;
  m.held = top.v.held;
  m.score = top.v.score;
  if (m.v == verdict::link && persons.size() > 1 && persons[1].v.v == verdict::link) {
    // An identifier rule names one person; a score alone does not outvote it.
    // Two rule links, or two score links: two people fit, never guess.
    if (!(is_rule(top.v.by) && !is_rule(persons[1].v.by))) {
      m.v = verdict::review;
      m.held = hold::ambiguous;
    }
  }
  return m;
}

decision identity_index::upsert(const source_record& r, std::vector<candidate_trace>* trace) {
  classified c = classify(r);
  const std::uint16_t hospital = intern_hospital(r.hospital);
  decision d;
  d.resident_id_invalid = c.f.resident_id_invalid;

  std::vector<std::uint32_t> found;
  for (const identifier& k : c.keys) {
    if (auto rec = record_of(k); rec && std::find(found.begin(), found.end(), *rec) == found.end()) {
      found.push_back(*rec);
    }
  }

  auto queue_review = [&](std::uint32_t record, const match_result& m) {
    const auto id = static_cast<std::uint32_t>(reviews_.size());
    reviews_.push_back(
        review_item{.id = id, .record = record, .candidate = enterprise_id(m.person), .score = m.score, .held = m.held});
    reviews_of_record_.emplace(record, id);
    audit(action::review_queued, record, records_[record].person, m.person, m.by, m.score, automatic);
    d.outcome = outcome::review;
    d.candidate = enterprise_id(m.person);
    d.review_id = id;
    d.by = m.by;
    d.held = m.held;
    d.score = m.score;
  };

  if (!found.empty()) {
    const std::uint32_t rec = found.front();
    // The incoming record carries identifiers of several stored records:
    // same pair, same person, so they become one record and one person.
    std::vector<identifier> all = identifiers_of(rec);
    for (std::size_t i = 1; i < found.size(); ++i) {
      const std::uint32_t other = found[i];
      const std::uint32_t po = root(records_[other].person), pr = root(records_[rec].person);
      if (po != pr) {
        merge_persons(po, pr);
        d.absorbed.push_back(enterprise_id(po));
        audit(action::link, other, po, pr, rule::identifier, 0.0, automatic);
      }
      for (auto& k : identifiers_of(other)) {
        if (std::find(all.begin(), all.end(), k) == all.end()) all.push_back(std::move(k));
      }
      erase_record(other);
    }
    for (auto& k : c.keys) {
      if (std::find(all.begin(), all.end(), k) == all.end()) all.push_back(std::move(k));
    }
    c.keys = std::move(all);
    records_[rec].hospital = hospital;
    refile(rec, c);
    const std::uint32_t p = root(records_[rec].person);
    d.outcome = outcome::updated;
    d.by = rule::identifier;
    d.person = enterprise_id(p);
    // A record still alone may now be recognisable (a late resident ID).
    if (persons_[p].size == 1) {
      const match_result m = match(view_of(rec), hospital, rec, trace);
      d.compared = m.compared;
      d.walked = m.walked;
      d.score = m.score;
      if (m.v == verdict::link) {
        merge_persons(p, m.person);
        audit(action::link, rec, p, m.person, m.by, m.score, automatic);
        d.outcome = outcome::linked;
        d.by = m.by;
        d.person = enterprise_id(m.person);
        d.absorbed.push_back(enterprise_id(p));
      } else if (m.v == verdict::review) {
        auto [b, e] = reviews_of_record_.equal_range(rec);
        const bool open = std::any_of(b, e, [&](const auto& kv) {
          const review_item& it = reviews_[kv.second];
          return it.status == review_item::state::open && root(it.candidate.value()) == m.person;
        });
        if (!open) queue_review(rec, m);
        d.outcome = outcome::review;
      }
    }
    return d;
  }

  const match_result m = match(c.f.view(), hospital, none, trace);
  d.compared = m.compared;
  d.walked = m.walked;
  d.score = m.score;
  if (m.v == verdict::link) {
    const std::uint32_t rec = store(c, hospital, m.person);
    audit(action::link, rec, none, m.person, m.by, m.score, automatic);
    d.outcome = outcome::linked;
    d.by = m.by;
    d.person = enterprise_id(m.person);
    return d;
  }
  const std::uint32_t p = new_person();
  const std::uint32_t rec = store(c, hospital, p);
  d.person = enterprise_id(p);
  d.outcome = outcome::new_person;
  if (m.v == verdict::review) queue_review(rec, m);
  return d;
}

std::vector<identity_index::search_hit> identity_index::search(const source_record& r, std::size_t limit) const {
  const classified c = classify(r);
  std::vector<candidate_trace> trace;
  (void)match(c.f.view(), 0xFFFF, none, &trace);
  std::vector<search_hit> hits;
  for (const auto& t : trace) {
    auto it = std::find_if(hits.begin(), hits.end(), [&](const search_hit& h) { return h.person == t.person; });
    if (it == hits.end()) hits.push_back(search_hit{.person = t.person, .verdict = t.verdict});
    else if (better(t.verdict, it->verdict)) it->verdict = t.verdict;
  }
  std::sort(hits.begin(), hits.end(), [](const search_hit& a, const search_hit& b) { return better(a.verdict, b.verdict); });
  if (hits.size() > limit) hits.resize(limit);
  return hits;
}

std::vector<std::uint32_t> identity_index::records_of(enterprise_id p) const {
  std::vector<std::uint32_t> out;
  if (p.value() >= persons_.size()) return out;
  const std::uint32_t rp = root(p.value());
  for (std::uint32_t r = persons_[rp].head; r != none; r = records_[r].next) out.push_back(r);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<review_item> identity_index::open_reviews() const {
  std::vector<review_item> out;
  for (const auto& it : reviews_) {
    if (it.status == review_item::state::open) out.push_back(it);
  }
  return out;
}

result<decision> identity_index::accept_review(std::uint32_t review_id, std::string_view actor) {
  if (review_id >= reviews_.size()) return fail(errc::not_found, "no such review", "review " + std::to_string(review_id));
  review_item& it = reviews_[review_id];
  if (it.status != review_item::state::open) {
    return fail(errc::conflict, "review already decided", "review " + std::to_string(review_id));
  }
  if (!records_[it.record].alive) return fail(errc::not_found, "record no longer exists", "review " + std::to_string(review_id));
  const std::uint32_t from = root(records_[it.record].person), to = root(it.candidate.value());
  if (persons_[to].size == 0) return fail(errc::not_found, "candidate person no longer exists", "review " + std::to_string(review_id));
  it.status = review_item::state::accepted;
  decision d{.outcome = outcome::linked, .person = enterprise_id(to), .by = rule::operator_link, .score = it.score};
  if (from != to) {
    merge_persons(from, to);
    d.absorbed.push_back(enterprise_id(from));
  }
  audit(action::review_accepted, it.record, from, to, rule::operator_link, it.score, actor);
  return d;
}

result<void> identity_index::reject_review(std::uint32_t review_id, std::string_view actor) {
  if (review_id >= reviews_.size()) return fail(errc::not_found, "no such review", "review " + std::to_string(review_id));
  review_item& it = reviews_[review_id];
  if (it.status != review_item::state::open) {
    return fail(errc::conflict, "review already decided", "review " + std::to_string(review_id));
  }
  it.status = review_item::state::rejected;
  do_not_link_.emplace(it.record, it.candidate.value());
  const std::uint32_t p = records_[it.record].alive ? root(records_[it.record].person) : none;
  audit(action::review_rejected, it.record, p, root(it.candidate.value()), rule::operator_split, it.score, actor);
  return {};
}

result<enterprise_id> identity_index::split(const identifier& record_key, std::string_view actor) {
  const auto rec = record_of(record_key);
  if (!rec) return fail(errc::not_found, "no record with this identifier", "identifier system " + record_key.system);
  const std::uint32_t p = root(records_[*rec].person);
  if (persons_[p].size <= 1) return fail(errc::conflict, "record is the only one of its person; nothing to split", "split");
  detach(*rec);
  const std::uint32_t np = new_person();
  attach(*rec, np);
  do_not_link_.emplace(*rec, p);
  audit(action::split, *rec, p, np, rule::operator_split, 0.0, actor);
  return enterprise_id(np);
}

result<void> identity_index::move(const identifier& record_key, enterprise_id to, std::string_view actor) {
  const auto rec = record_of(record_key);
  if (!rec) return fail(errc::not_found, "no record with this identifier", "identifier system " + record_key.system);
  if (to.value() >= persons_.size()) return fail(errc::not_found, "no such person", "move");
  const std::uint32_t target = root(to.value());
  if (persons_[target].size == 0) return fail(errc::not_found, "person has no records", "move");
  const std::uint32_t p = root(records_[*rec].person);
  if (p == target) return {};
  detach(*rec);
  attach(*rec, target);
  if (persons_[p].size == 0) persons_[p].merged_into = target;
  // An operator's link outranks an earlier rejection of the same pair.
  auto [b, e] = do_not_link_.equal_range(*rec);
  for (auto it = b; it != e;) it = root(it->second) == target ? do_not_link_.erase(it) : std::next(it);
  audit(action::move, *rec, p, target, rule::operator_link, 0.0, actor);
  return {};
}

result<decision> identity_index::merge_within_domain(std::string_view hospital, const identifier& survivor,
                                            const identifier& obsolete, std::string_view actor) {
  const auto s = record_of(survivor);
  if (!s) return fail(errc::not_found, "no record with the surviving identifier", "PID-3");
  const auto o = record_of(obsolete);
  decision d{.outcome = outcome::updated, .person = enterprise_id(root(records_[*s].person)), .by = rule::a40_merge};
  if (!o || *o == *s) return d;  // already merged (a replayed A40)
  auto h = hospital_ids_.find(std::string(hospital));
  if (h == hospital_ids_.end() || records_[*s].hospital != h->second || records_[*o].hospital != h->second) {
    return fail(errc::permission_denied, "both records must belong to the merging hospital's domain", "MRG-1");
  }
  const std::uint32_t ps = root(records_[*s].person), po = root(records_[*o].person);
  if (po != ps) {
    merge_persons(po, ps);
    d.absorbed.push_back(enterprise_id(po));
  }
  std::vector<identifier> all = identifiers_of(*s);
  for (auto& k : identifiers_of(*o)) {
    if (std::find(all.begin(), all.end(), k) == all.end()) all.push_back(std::move(k));
  }
  // Rebuild the survivor with its own demographics and both identifier sets.
  const features_view v = view_of(*s);
  classified c;
  c.f.name = normalized_name{.family = std::string(v.family), .given = std::string(v.given),
                             .han_family = v.han_family, .han_given = v.han_given};
  c.f.birth = v.birth;
  c.f.sex = v.sex;
  c.f.phone = v.phone;
  c.f.resident_id = v.resident_id;
  c.f.cards = {std::string(v.cards[0]), std::string(v.cards[1]), std::string(v.cards[2]), std::string(v.cards[3])};
  c.f.postcode = v.postcode;
  c.f.city = v.city;
  c.f.street = v.street;
  c.f.street_number = v.street_number;
  c.f.line2 = v.line2;
  c.f.province = v.province;
  c.keys = std::move(all);
  erase_record(*o);
  refile(*s, c);
  audit(action::a40_merge, *s, po, ps, rule::a40_merge, 0.0, actor);
  d.person = enterprise_id(ps);
  return d;
}

index_stats identity_index::stats() const {
  index_stats st{.records = live_records_, .persons = live_persons_, .block_keys = blocks_.keys(),
                 .block_postings = blocks_.postings()};
  std::size_t text = 0;
  for (const stored& s : records_) text += s.alive ? std::max<std::size_t>(s.end[t_ids], 1) : 0;
  st.memory_bytes = records_.capacity() * sizeof(stored) + text + persons_.capacity() * sizeof(person_slot) +
                    blocks_.memory_bytes() + ids_.memory_bytes() + name_counts_.memory_bytes() +
                    history_.capacity() * sizeof(audit_entry) + reviews_.capacity() * sizeof(review_item);
  return st;
}

}  // namespace yilian::identity
