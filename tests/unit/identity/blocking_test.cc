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

TEST_CASE("a record is also filed under both name parts with its birth date, in either order", "[unit]") {
  const demographics a{.family_name = "zhang", .given_name = "wei", .birth_date = {.year = 1980, .month = 5, .day = 17}};
  demographics swapped = a;
  std::swap(swapped.family_name, swapped.given_name);
  demographics other_given = a;
  other_given.given_name = "jun";
  auto fine = [](const std::vector<block_key>& ks) {
    std::vector<block_key> out;
    std::copy_if(ks.begin(), ks.end(), std::back_inserter(out),
                 [](const block_key& k) { return k.kind == block_kind::names_birth; });
    return out;
  };
  REQUIRE(fine(keys_of(a)).size() == 1);
  CHECK(fine(keys_of(a)) == fine(keys_of(swapped)));
  CHECK_FALSE(fine(keys_of(a)) == fine(keys_of(other_given)));
  // One name part only: no fine key (the coarse one is then always used).
  demographics family_only = a;
  family_only.given_name.clear();
  CHECK(fine(keys_of(family_only)).empty());
}

TEST_CASE("the block index knows each block's size without walking it", "[unit]") {
  block_index ix;
  for (std::uint32_t r = 0; r < 1000; ++r) ix.add(5, r);
  CHECK(ix.block_size(5) == 1000);
  for (std::uint32_t r = 0; r < 1000; r += 2) ix.remove(5, r);
  CHECK(ix.block_size(5) == 500);
  ix.remove(5, 0);  // already gone: the size does not drop twice
  CHECK(ix.block_size(5) == 500);
  std::size_t n = 0;
  CHECK(ix.for_each(5, 500, [&](std::uint32_t r) { n += r % 2; }));
  CHECK(n == 500);
  CHECK_FALSE(ix.for_each(5, 499, [](std::uint32_t) {}));
  ix.prefetch(5);
  ix.prefetch(6);  // a hint only, for present and absent keys
  block_index empty;
  empty.prefetch(5);
  CHECK(empty.block_size(5) == 0);
}

TEST_CASE("the count table counts values through growth and removal", "[unit]") {
  count_table t;
  CHECK(t.count(9) == 0);
  t.remove(9);  // absent: no-op
  for (std::uint32_t k = 1; k <= 20000; ++k) {
    for (std::uint32_t i = 0; i < k % 3 + 1; ++i) t.add(key_hash(2, std::to_string(k)));
  }
  CHECK(t.size() == 20000);
  for (std::uint32_t k = 1; k <= 20000; k += 331) CHECK(t.count(key_hash(2, std::to_string(k))) == k % 3 + 1);
  const std::uint32_t h = key_hash(2, "3");
  t.remove(h);
  CHECK(t.count(h) == 0);
  t.remove(h);  // never below zero
  CHECK(t.count(h) == 0);
  t.add(h);
  CHECK(t.count(h) == 1);
}

TEST_CASE("a typo in the birth month or day still meets one of the finer name and birth-year keys", "[unit]") {
  const demographics a{.family_name = "zhang", .given_name = "wei", .birth_date = {.year = 1980, .month = 5, .day = 17}};
  auto of_kind = [](const std::vector<block_key>& ks, block_kind kind) {
    std::vector<block_key> out;
    std::copy_if(ks.begin(), ks.end(), std::back_inserter(out), [&](const block_key& k) { return k.kind == kind; });
    return out;
  };
  demographics day_typo = a;
  day_typo.birth_date.day = 18;
  demographics month_typo = a;
  month_typo.birth_date.month = 6;
  CHECK(of_kind(keys_of(a), block_kind::names_year_month) == of_kind(keys_of(day_typo), block_kind::names_year_month));
  CHECK(of_kind(keys_of(a), block_kind::names_year_day) == of_kind(keys_of(month_typo), block_kind::names_year_day));
  CHECK_FALSE(of_kind(keys_of(a), block_kind::names_year_day) == of_kind(keys_of(day_typo), block_kind::names_year_day));
  CHECK(finer_than(block_kind::names_year_day) == block_kind::name_birth_year);
  CHECK(finer_than(block_kind::names_birth) == block_kind::name_birth);
  CHECK_FALSE(finer_than(block_kind::phone));
}
