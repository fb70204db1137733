#include <catch2/catch.hpp>

#include <algorithm>

#include "engine/identity/blocking.h"

using namespace yilian::identity;

namespace {
const civil_date today{.year = 2024, .month = 6, .day = 1};

std::vector<block_key> keys_of(const demographics& d, std::string_view card = {}) {
  const features f = make_features(d, {}, {card, {}}, today);
  std::vector<block_key> out;
  blocking_keys(f.view(), out);
  return out;
}

bool share_key(const std::vector<block_key>& a, const std::vector<block_key>& b) {
  return std::any_of(a.begin(), a.end(), [&](const block_key& k) { return std::find(b.begin(), b.end(), k) != b.end(); });
}
}  // namespace

TEST_CASE("a true match survives an error in any one field", "[unit]") {
  const demographics base{.family_name = "neumann", .given_name = "michaela",
                          .birth_date = {.year = 1915, .month = 11, .day = 11}, .postcode = "4223"};
  const auto k = keys_of(base);
  auto with = [&](auto&& change) {
    demographics d = base;
    change(d);
    return keys_of(d);
  };
  CHECK(share_key(k, with([](demographics& d) { d.family_name = "nuemann"; })));
  CHECK(share_key(k, with([](demographics& d) { d.given_name = "mikaela"; })));
  CHECK(share_key(k, with([](demographics& d) { d.birth_date.day = 12; })));
  CHECK(share_key(k, with([](demographics& d) { d.postcode = "4232"; })));
  CHECK(share_key(k, with([](demographics& d) { std::swap(d.family_name, d.given_name); })));
  // Two fields wrong (date and given name): the postcode key still holds.
  CHECK(share_key(k, with([](demographics& d) {
    d.birth_date.year = 1951;
    d.given_name = "michelle";
  })));
}

TEST_CASE("unrelated people share no key", "[unit]") {
  const auto a = keys_of({.family_name = "neumann", .given_name = "michaela",
                          .birth_date = {.year = 1915, .month = 11, .day = 11}, .postcode = "4223"});
  const auto b = keys_of({.family_name = "painter", .given_name = "courtney",
                          .birth_date = {.year = 1916, .month = 12, .day = 14}, .postcode = "4560"});
  CHECK_FALSE(share_key(a, b));
}

TEST_CASE("hanzi and pinyin forms of a name land in the same blocks", "[unit]") {
  const civil_date b{.year = 1990, .month = 1, .day = 2};
  CHECK(share_key(keys_of({.family_name = "张", .given_name = "三", .birth_date = b}),
                  keys_of({.family_name = "San", .given_name = "Zhang", .birth_date = b})));
  CHECK(share_key(keys_of({.family_name = "张三", .birth_date = b}),
                  keys_of({.family_name = "ZHANGSAN", .birth_date = b})));
}

TEST_CASE("the block index adds, removes and bounds blocks", "[unit]") {
  block_index ix;
  for (std::uint32_t r = 0; r < 5; ++r) ix.add(42, r);
  ix.add(7, 100);
  std::vector<std::uint32_t> seen;
  CHECK(ix.for_each(42, 10, [&](std::uint32_t r) { seen.push_back(r); }));
  std::sort(seen.begin(), seen.end());
  CHECK(seen == std::vector<std::uint32_t>{0, 1, 2, 3, 4});
  // Over the cap: the block is not used at all.
  seen.clear();
  CHECK_FALSE(ix.for_each(42, 4, [&](std::uint32_t r) { seen.push_back(r); }));
  CHECK(seen.empty());
  ix.remove(42, 2);
  ix.remove(42, 99);  // absent: no-op
  CHECK(ix.block_size(42) == 4);
  CHECK(ix.block_size(7) == 1);
  CHECK(ix.block_size(8) == 0);
  CHECK(ix.postings() == 5);
  ix.add(42, 2);  // reuses the freed posting
  CHECK(ix.postings() == 6);
}

TEST_CASE("the block index keeps every key through growth", "[unit]") {
  block_index ix;
  for (std::uint32_t k = 1; k <= 50000; ++k) ix.add(key_hash(1, std::to_string(k)), k);
  CHECK(ix.keys() == 50000);
  for (std::uint32_t k = 1; k <= 50000; k += 997) {
    std::vector<std::uint32_t> seen;
    ix.for_each(key_hash(1, std::to_string(k)), 8, [&](std::uint32_t r) { seen.push_back(r); });
    CHECK(std::find(seen.begin(), seen.end(), k) != seen.end());
  }
}
