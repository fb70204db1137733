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
// Blocks are bounded: a key shared by more than max_block records (a clinic's
// switchboard number entered for every patient, an empty-looking value) is not
// used for candidates, so per-record cost stays flat as the index grows.
//
// block_index is a compact multimap from a 32-bit key hash to record numbers:
// an open-addressing table of (key, head) pairs and a pool of (record, next)
// postings — 8 bytes per key and 8 per posting, no per-block allocation. A
// hash collision only merges two blocks (more candidates, never a wrong
// link: every candidate is compared in full). Not thread-safe; the index that
// owns it serializes access.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

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
};
std::string_view to_string(block_kind k) noexcept;

struct block_key {
  block_kind kind;
  std::uint32_t hash;
  bool operator==(const block_key&) const = default;
};

// The keys of a record, appended to `out` (at most 11).
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
  // than `cap` records nothing is called and false is returned.
  template <class F>
  bool for_each(std::uint32_t key, std::size_t cap, F&& f) const {
    const std::uint32_t head = find_head(key);
    std::size_t n = 0;
    for (std::uint32_t p = head; p != none; p = next_[p]) {
      if (++n > cap) return false;
    }
    for (std::uint32_t p = head; p != none; p = next_[p]) f(record_[p]);
    return true;
  }
  std::size_t block_size(std::uint32_t key) const;
  std::size_t keys() const noexcept { return used_; }
  std::size_t postings() const noexcept { return record_.size() - free_count_; }
  std::size_t memory_bytes() const noexcept;

 private:
  std::uint32_t find_head(std::uint32_t key) const noexcept;
  std::size_t slot_of(std::uint32_t key) const noexcept;
  void grow();

  struct slot {
    std::uint32_t key = 0;  // 0 = empty
    std::uint32_t head = none;
  };
  std::vector<slot> slots_;
  std::size_t used_ = 0;
  std::vector<std::uint32_t> record_, next_;
  std::uint32_t free_ = none;  // free list of postings, chained through next_
  std::size_t free_count_ = 0;
};

}  // namespace yilian::identity
