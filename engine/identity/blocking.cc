#include "engine/identity/blocking.h"

#include <algorithm>
#include <string>

#include "engine/identity/names.h"

namespace yilian::identity {

std::string_view to_string(block_kind k) noexcept {
  switch (k) {
    case block_kind::resident_id: return "resident_id";
    case block_kind::card: return "card";
    case block_kind::phone: return "phone";
    case block_kind::name_birth: return "name_birth";
    case block_kind::name_birth_year: return "name_birth_year";
    case block_kind::name_postcode: return "name_postcode";
    case block_kind::birth_postcode: return "birth_postcode";
    case block_kind::names_birth: return "names_birth";
    case block_kind::names_year_month: return "names_year_month";
    case block_kind::names_year_day: return "names_year_day";
  }
  return "unknown";
}

std::optional<block_kind> finer_than(block_kind k) noexcept {
  switch (k) {
    case block_kind::names_birth: return block_kind::name_birth;
    case block_kind::names_year_month:
    case block_kind::names_year_day: return block_kind::name_birth_year;
    default: return std::nullopt;
  }
}

std::uint32_t key_hash(std::uint8_t tag, std::string_view a, std::string_view b, std::uint32_t extra) noexcept {
  std::uint64_t h = 14695981039346656037ULL;
  auto mix = [&](unsigned char c) { h = (h ^ c) * 1099511628211ULL; };
  mix(tag);
  for (char c : a) mix(static_cast<unsigned char>(c));
  mix(0x1F);
  for (char c : b) mix(static_cast<unsigned char>(c));
  mix(0x1F);
  for (int i = 0; i < 4; ++i) mix(static_cast<unsigned char>(extra >> (8 * i)));
  // Final avalanche (splitmix64) so that the low bits used for slots are well mixed.
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  h ^= h >> 31;
  const auto k = static_cast<std::uint32_t>(h ^ (h >> 32));
  return k == 0 ? 1U : k;
}

void blocking_keys(const features_view& f, std::vector<block_key>& out) {
  auto add = [&](block_kind kind, std::string_view a, std::string_view b = {}, std::uint32_t extra = 0) {
    out.push_back(block_key{.kind = kind, .hash = key_hash(static_cast<std::uint8_t>(kind), a, b, extra)});
  };
  if (!f.resident_id.empty()) add(block_kind::resident_id, f.resident_id);
  for (std::size_t i = 0; i < max_card_systems; ++i) {
    if (!f.cards[i].empty()) add(block_kind::card, f.cards[i], {}, static_cast<std::uint32_t>(i));
  }
  if (!f.phone.empty()) add(block_kind::phone, f.phone);
  const std::string sf = soundex(f.family), sg = soundex(f.given);
  const std::uint32_t birth = f.birth.packed();
  // Name parts are filed under one kind whichever field they came in, so a
  // record with family and given swapped still meets its match.
  if (birth != 0) {
    if (!sf.empty()) add(block_kind::name_birth, sf, {}, birth);
    if (!sg.empty() && sg != sf) add(block_kind::name_birth, sg, {}, birth);
    if (!sf.empty() && !sg.empty()) add(block_kind::names_birth, std::min(sf, sg), std::max(sf, sg), birth);
    if (!f.family.empty() && !f.given.empty()) {
      const bool ordered = f.family <= f.given;
      const std::string_view lo = ordered ? f.family : f.given, hi = ordered ? f.given : f.family;
      const auto year = static_cast<std::uint32_t>(f.birth.year);
      add(block_kind::name_birth_year, lo, hi, year);
      add(block_kind::names_year_month, lo, hi, year * 100U + static_cast<std::uint32_t>(f.birth.month));
      add(block_kind::names_year_day, lo, hi, year * 100U + static_cast<std::uint32_t>(f.birth.day));
    } else if (!f.family.empty() || !f.given.empty()) {
      add(block_kind::name_birth_year, f.family.empty() ? f.given : f.family, {},
          static_cast<std::uint32_t>(f.birth.year));
    }
  }
  if (!f.postcode.empty()) {
    if (!sf.empty()) add(block_kind::name_postcode, sf, f.postcode);
    if (!sg.empty() && sg != sf) add(block_kind::name_postcode, sg, f.postcode);
    if (birth != 0) add(block_kind::birth_postcode, f.postcode, {}, birth);
  }
}

std::size_t block_index::slot_of(std::uint32_t key) const noexcept {
  const std::size_t mask = slots_.size() - 1;
  std::size_t i = (static_cast<std::size_t>(key) * 0x9E3779B1U) & mask;
  while (slots_[i].key != 0 && slots_[i].key != key) i = (i + 1) & mask;
  return i;
}

const block_index::slot* block_index::find(std::uint32_t key) const noexcept {
  if (slots_.empty()) return nullptr;
  const slot& s = slots_[slot_of(key)];
  return s.key == key ? &s : nullptr;
}

void block_index::grow() {
  std::vector<slot> old = std::move(slots_);
  slots_.assign(old.empty() ? 1024 : old.size() * 2, slot{});
  for (const slot& s : old) {
    if (s.key == 0) continue;
    slots_[slot_of(s.key)] = s;
  }
}

void block_index::add(std::uint32_t key, std::uint32_t record) {
  if ((used_ + 1) * 10 > slots_.size() * 7) grow();  // load factor <= 0.7
  slot& s = slots_[slot_of(key)];
  if (s.key == 0) {
    s.key = key;
    ++used_;
  }
  std::uint32_t p;
  if (free_ != none) {
    p = free_;
    free_ = postings_[p].next;
    --free_count_;
  } else {
    p = static_cast<std::uint32_t>(postings_.size());
    postings_.emplace_back();
  }
  postings_[p] = posting{.record = record, .next = s.head};
  s.head = p;
  ++s.count;
}

void block_index::remove(std::uint32_t key, std::uint32_t record) {
  if (slots_.empty()) return;
  slot& s = slots_[slot_of(key)];
  if (s.key != key) return;
  // Emptied blocks keep their slot (head = none) so probe chains stay intact.
  for (std::uint32_t* link = &s.head; *link != none; link = &postings_[*link].next) {
    const std::uint32_t p = *link;
    if (postings_[p].record != record) continue;
    *link = postings_[p].next;
    postings_[p].next = free_;
    free_ = p;
    ++free_count_;
    --s.count;
    return;
  }
}

std::size_t block_index::block_size(std::uint32_t key) const {
  const slot* s = find(key);
  return s == nullptr ? 0 : s->count;
}

std::size_t block_index::memory_bytes() const noexcept {
  return slots_.capacity() * sizeof(slot) + postings_.capacity() * sizeof(posting);
}

std::size_t count_table::find(std::uint32_t key) const noexcept {
  const std::size_t mask = slots_.size() - 1;
  std::size_t i = slot_of(key);
  while (slots_[i].key != 0 && slots_[i].key != key) i = (i + 1) & mask;
  return i;
}

void count_table::add(std::uint32_t key) {
  if ((used_ + 1) * 10 > slots_.size() * 7) {  // load factor <= 0.7
    std::vector<slot> old = std::move(slots_);
    slots_.assign(old.empty() ? 1024 : old.size() * 2, slot{});
    for (const slot& s : old) {
      if (s.key != 0) slots_[find(s.key)] = s;
    }
  }
  slot& s = slots_[find(key)];
  if (s.key == 0) {
    s.key = key;
    ++used_;
  }
  ++s.count;
}

void count_table::remove(std::uint32_t key) {
  if (slots_.empty()) return;
  slot& s = slots_[find(key)];
  if (s.key == key && s.count > 0) --s.count;
}

std::uint32_t count_table::count(std::uint32_t key) const noexcept {
  if (slots_.empty()) return 0;
  const slot& s = slots_[find(key)];
  return s.key == key ? s.count : 0;
}

}  // namespace yilian::identity
