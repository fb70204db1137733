#include <catch2/catch.hpp>

#include "engine/identity/matcher.h"
#include "test_people.h"

using namespace yilian::identity;
using namespace yilian::identity::test;

namespace {
const civil_date today{.year = 2024, .month = 6, .day = 1};
const civil_date born{.year = 1980, .month = 5, .day = 17};

features feat(std::string_view family, std::string_view given, civil_date b, std::string_view rid = {},
              std::string_view card = {}, std::string_view phone = {}) {
  demographics d{.family_name = std::string(family), .given_name = std::string(given), .birth_date = b,
                 .phone = std::string(phone)};
  return make_features(d, rid, {card, {}}, today);
}

pair_verdict judge(const features& a, const features& b, const match_options& o = {}, bool same_domain = false) {
  const auto va = a.view(), vb = b.view();
  return decide(va, vb, compare(va, vb), same_domain, o);
}
}  // namespace

TEST_CASE("names compare across hanzi, pinyin and swapped order", "[unit]") {
  const auto han = feat("张", "三", born);
  for (auto [f, g] : std::initializer_list<std::pair<std::string_view, std::string_view>>{
           {"ZHANG", "SAN"}, {"San", "Zhang"}, {"ZHANGSAN", ""}, {"zhang san", ""}, {"Zhāng", "Sān"}}) {
    INFO(f << " / " << g);
    const auto other = feat(f, g, born);
    const auto c = compare(han.view(), other.view());
    CHECK(c.level_of(field::family) == 0);
    CHECK(c.level_of(field::given) == 0);
  }
  const auto c = compare(han.view(), feat("San", "Zhang", born).view());
  CHECK(c.names_swapped);
}

TEST_CASE("same sound but other characters is a close, not an exact, name", "[unit]") {
  const auto c = compare(feat("张", "伟", born).view(), feat("张", "薇", born).view());
  CHECK(c.level_of(field::family) == 0);
  CHECK(c.level_of(field::given) == 1);
}

TEST_CASE("valid resident ID plus name plus birth date links by rule", "[unit]") {
  const auto rid = make_rid("110105", born, 11);
  const auto v = judge(feat("张", "三", born, rid), feat("ZHANG", "SAN", born, rid));
  CHECK(v.v == verdict::link);
  CHECK(v.by == rule::resident_id);
}

TEST_CASE("a typo'd name with a valid resident ID still links", "[unit]") {
  const auto rid = make_rid("110105", born, 11);
  const auto v = judge(feat("Zhang", "Sanfeng", born, rid), feat("Zhang", "Sanfneg", born, rid));
  CHECK(v.v == verdict::link);
  CHECK(v.by == rule::resident_id);
}

TEST_CASE("an invalid resident ID is never compared", "[unit]") {
  const auto bad = break_check(make_rid("110105", born, 11));
  const auto a = feat("张", "三", born, bad), b = feat("张", "三", born, bad);
  CHECK(a.resident_id_invalid);
  CHECK(a.resident_id.empty());
  const auto c = compare(a.view(), b.view());
  CHECK_FALSE(c.present(field::resident_id));
  CHECK(judge(a, b).by != rule::resident_id);
}

TEST_CASE("insurance card plus name plus birth date links by rule", "[unit]") {
  const auto v = judge(feat("李", "四", born, {}, "A1234567"), feat("Li", "Si", born, {}, "a123-4567"));
  CHECK(v.v == verdict::link);
  CHECK(v.by == rule::card);
}

TEST_CASE("a shared phone never links by itself", "[unit]") {
  // Father and son: same surname, same phone, different given name and birth date.
  const auto father = feat("王", "建国", {.year = 1955, .month = 2, .day = 3}, {}, {}, "13800138000");
  const auto son = feat("王", "小明", {.year = 1985, .month = 9, .day = 12}, {}, {}, "13800138000");
  CHECK(judge(father, son).v == verdict::no_link);
  // Twins: everything but the given name agrees; never an automatic link.
  const auto twin1 = feat("王", "大明", born, {}, {}, "13800138000");
  const auto twin2 = feat("王", "小红", born, {}, {}, "13800138000");
  CHECK(judge(twin1, twin2).v != verdict::link);
  // Twins whose names differ by one character look alike in pinyin.
  const auto twin3 = feat("王", "晓明", born, {}, {}, "13800138000");
  const auto twin4 = feat("王", "晓敏", born, {}, {}, "13800138000");
  const auto t = judge(twin3, twin4);
  CHECK(t.v == verdict::review);
  CHECK(t.held == hold::given_name_similar);
  const auto twin5 = feat("Wang", "Xiaoming", born, {}, {}, "13800138000");
  const auto twin6 = feat("Wang", "Xiaomei", born, {}, {}, "13800138000");
  CHECK(judge(twin5, twin6).v != verdict::link);
}

TEST_CASE("different valid resident IDs hold a high score for review", "[unit]") {
  const auto a = feat("张", "三", born, make_rid("110105", born, 11), "C1");
  const auto b = feat("张", "三", born, make_rid("110105", born, 13), "C1");
  const auto v = judge(a, b);
  CHECK(v.v == verdict::review);
  CHECK(v.held == hold::conflicting_resident_id);
}

TEST_CASE("records of one hospital are never linked by score alone", "[unit]") {
  const auto a = feat("Zhang", "Sanfeng", born, {}, {}, "13800138000");
  const auto b = feat("Zhang", "Sanfeng", born, {}, {}, "13800138000");
  match_options o;
  o.upper = 10;
  CHECK(judge(a, b, o, false).v == verdict::link);
  const auto held = judge(a, b, o, true);
  CHECK(held.v == verdict::review);
  CHECK(held.held == hold::same_domain);
}

TEST_CASE("thresholds split link, review and no link", "[unit]") {
  const auto a = feat("Zhang", "Sanfeng", born), b = feat("Zhang", "Sanfeng", born);
  const double s = score(compare(a.view(), b.view()), field_weights::defaults());
  match_options o;
  o.upper = s + 1;
  o.lower = s - 1;
  CHECK(judge(a, b, o).v == verdict::review);
  o.upper = s - 0.5;
  CHECK(judge(a, b, o).v == verdict::link);
  o.upper = s + 2;
  o.lower = s + 1;
  CHECK(judge(a, b, o).v == verdict::no_link);
}

TEST_CASE("rules can be switched off by configuration", "[unit]") {
  const auto rid = make_rid("110105", born, 11);
  match_options o;
  o.rule_resident_id = false;
  o.upper = 1000;
  CHECK(judge(feat("张", "三", born, rid), feat("张", "三", born, rid), o).v == verdict::review);
}

TEST_CASE("EM recovers that agreement means match from unlabelled pairs", "[unit]") {
  // 200 matches agreeing almost everywhere, 800 non-matches agreeing rarely.
  std::vector<comparison> pairs;
  for (int i = 0; i < 1000; ++i) {
    comparison c;
    c.level.fill(missing_level);
    const bool match = i < 200;
    auto lv = [&](int agree_every) { return static_cast<std::uint8_t>((i % agree_every == 0) ? 0 : 3); };
    c.level[static_cast<std::size_t>(field::family)] = match ? (i % 10 == 0 ? 1 : 0) : lv(20);
    c.level[static_cast<std::size_t>(field::given)] = match ? 0 : lv(30);
    c.level[static_cast<std::size_t>(field::birth_date)] = match ? (i % 7 == 0 ? 1 : 0) : lv(25);
    c.level[static_cast<std::size_t>(field::sex)] = match ? 0 : static_cast<std::uint8_t>(i % 2);
    pairs.push_back(c);
  }
  const auto r = estimate_weights(pairs, field_weights::defaults());
  CHECK(r.match_share == Catch::Detail::Approx(0.2).margin(0.02));
  const auto& w = r.weights.w;
  CHECK(w[static_cast<std::size_t>(field::given)][0] > 3.0);
  CHECK(w[static_cast<std::size_t>(field::given)][3] < -3.0);
  CHECK(r.iterations > 1);
}
