// Blocking: which stored records an incoming record is compared with.
//
// Comparing every new record with every stored one costs O(N) per record;
// instead each record is filed under a few keys, and a new record is compared
// only with the records sharing at least one key. The keys (blocking_keys())
// are chosen so that a true match survives typical errors in any one field:
//
//   resident_id       valid resident ID
//   card              each card number (insurance, health card)
//   phone             normalized phone (blocking only: a phone never links alone)
//   name_birth        Soundex(family) + birth date, and Soundex(given) + birth
//                     date, under one kind (one name part wrong, or the parts swapped)
//   name_birth_year   both name parts, order-free, + birth year (date typo)
//   name_postcode     Soundex(each name part) + postcode (date and the other part wrong)
//   birth_postcode    birth date + postcode (both names wrong or replaced)
//
// and the finer keys used instead of a coarse block grown large (below):
//
//   names_birth       Soundex of both name parts, order-free, + birth date,
//                     for name_birth
//   names_year_month, both name parts + birth year and month, and + birth
//   names_year_day    year and day, for name_birth_year (a typo in the month
//                     or in the day still meets one of them)
//
// Blocks are bounded: a key shared by more than max_block records (a clinic's
// switchboard number entered for every patient, an empty-looking value) is not
// used for candidates. The name blocks grow with the population (birth dates,
// Soundex codes and common full names are fixed, their holders are not:
// about 34 people share a birth date per million, a few of them a surname's
// Soundex code), so when one holds more than split_block records the match
// uses the record's finer blocks of that kind instead (finer_than()), which
// need one more field to agree but are as small at a million patients as the
// coarse ones are at a hundred thousand. Per-record cost then stays flat as
// the index grows.
//
// block_index is a compact multimap from a 32-bit key hash to record numbers:
// an open-addressing table of (key, head, size) and a pool of (record, next)
// postings — 12 bytes per key and 8 per posting, no per-block allocation. A
// hash collision only merges two blocks (more candidates, never a wrong
// link: every candidate is compared in full). Not thread-safe; the index that
// owns it serializes access.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "engine/identity/chunked.h"
#include "engine/identity/matcher.h"

namespace yilian::identity {

enum class block_kind : std::uint8_t {
  resident_id,
  card,
  phone,
  name_birth,
  name_birth_year,
  name_postcode,
  birth_postcode,
  names_birth,
  names_year_month,
  names_year_day,
};
std::string_view to_string(block_kind k) noexcept;
// The coarse kind a finer kind stands in for; nullopt for the other kinds.
std::optional<block_kind> finer_than(block_kind k) noexcept;

struct block_key {
  block_kind kind;
  std::uint32_t hash;
  bool operator==(const block_key&) const = default;
};

// The keys of a record, appended to `out` (at most 14).
void blocking_keys(const features_view& f, std::vector<block_key>& out);

// 32-bit hash of a tagged byte string (FNV-1a 64 folded), never 0.
std::uint32_t key_hash(std::uint8_t tag, std::string_view a, std::string_view b = {}, std::uint32_t extra = 0) noexcept;

class block_index {
 public:
  static constexpr std::uint32_t none = 0xFFFFFFFFU;

  void add(std::uint32_t key, std::uint32_t record);
  // Removes one posting of `record` under `key` (no-op when absent).
  void remove(std::uint32_t key, std::uint32_t record);
  // Calls f(record) for each record under `key`; when the block holds more
  // than `cap` records nothing is called and false is returned (the size is
  // kept per key, so an oversized block costs one probe, not a walk).
  template <class F>
  bool for_each(std::uint32_t key, std::size_t cap, F&& f) const {
    const slot* s = find(key);
    if (s == nullptr) return true;
    if (s->count > cap) return false;
    for (std::uint32_t p = s->head; p != none; p = postings_[p].next) f(postings_[p].record);
    return true;
  }
  std::size_t block_size(std::uint32_t key) const;
  // Starts loading the table line `key` lives in (the probes of a record's
  // dozen keys then overlap instead of missing the cache one after another).
  void prefetch(std::uint32_t key) const noexcept {
    if (!slots_.empty()) __builtin_prefetch(&slots_[(static_cast<std::size_t>(key) * 0x9E3779B1U) & (slots_.size() - 1)]);
  }
  std::size_t keys() const noexcept { return used_; }
  std::size_t postings() const noexcept { return postings_.size() - free_count_; }
  std::size_t memory_bytes() const noexcept;

 private:
  struct slot {
    std::uint32_t key = 0;  // 0 = empty
    std::uint32_t head = none;
    std::uint32_t count = 0;
  };
  const slot* find(std::uint32_t key) const noexcept;
  std::size_t slot_of(std::uint32_t key) const noexcept;
  void grow();

  std::vector<slot> slots_;
  std::size_t used_ = 0;
  // A posting's record and link share a cache line; the pool grows by
  // chunks, so filing a record never copies millions of postings.
  struct posting {
    std::uint32_t record = 0;
    std::uint32_t next = none;
  };
  chunked_vector<posting, 16> postings_;
  std::uint32_t free_ = none;  // free list of postings, chained through next
  std::size_t free_count_ = 0;
};

// How many records carry each value (a 32-bit hash, never 0): the name
// frequencies of the match weights. Open addressing, 8 bytes per value; a
// count that drops to 0 keeps its slot (a name seen once is likely again).
class count_table {
 public:
  void add(std::uint32_t key);
  void remove(std::uint32_t key);  // no-op when absent or already 0
  std::uint32_t count(std::uint32_t key) const noexcept;
  void prefetch(std::uint32_t key) const noexcept {
    if (!slots_.empty()) __builtin_prefetch(&slots_[slot_of(key)]);
  }
  std::size_t size() const noexcept { return used_; }
  std::size_t memory_bytes() const noexcept { return slots_.capacity() * sizeof(slot); }

 private:
  struct slot {
    std::uint32_t key = 0;  // 0 = empty
    std::uint32_t count = 0;
  };
  std::size_t slot_of(std::uint32_t key) const noexcept {
    return (static_cast<std::size_t>(key) * 0x9E3779B1U) & (slots_.size() - 1);
  }
  std::size_t find(std::uint32_t key) const noexcept;  // the key's slot or the empty one it would take
  std::vector<slot> slots_;
  std::size_t used_ = 0;
};

}  // namespace yilian::identity
