#include <catch2/catch.hpp>

#include <cmath>

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
  // A shared phone corroborates (see the namesake test below).
  const auto a = feat("Zhang", "Sanfeng", born, {}, {}, "13800138000");
  const auto b = feat("Zhang", "Sanfeng", born, {}, {}, "13800138000");
  const double s = judge(a, b).score;
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

TEST_CASE("name and birth date alone never link: a namesake needs an identifier, phone or address", "[unit]") {
  // Two 张伟 born the same day, one without a valid ID: everything compared agrees.
  const auto a = feat("张", "伟", born, make_rid("110105", born, 11));
  const auto b = feat("Zhang", "Wei", born);
  match_options o;
  o.upper = 10;
  const auto v = judge(a, b, o);
  CHECK(v.score >= o.upper);
  CHECK(v.v == verdict::review);
  CHECK(v.held == hold::uncorroborated);
  // The same pair with the phone agreeing links; so does one with the card one keystroke off.
  CHECK(judge(feat("张", "伟", born, {}, {}, "13800138000"), feat("Zhang", "Wei", born, {}, {}, "13800138000"), o).v ==
        verdict::link);
  CHECK(judge(feat("张", "伟", born, {}, "A1234567"), feat("Zhang", "Wei", born, {}, "A1234568"), o).v == verdict::link);
  // Configurable.
  o.hold_uncorroborated = false;
  CHECK(judge(a, b, o).v == verdict::link);
}

TEST_CASE("thresholds grow with log2 of the population and never fall below the configured floors", "[unit]") {
  match_options o;
  CHECK(thresholds_for(o, 0).upper == 18.0);
  CHECK(thresholds_for(o, 0).lower == 8.0);
  CHECK(thresholds_for(o, 1000).upper == 18.0);  // log2(1000) + 7 = 17.0: the floor holds
  CHECK(thresholds_for(o, 5000).upper == Catch::Detail::Approx(std::log2(5000.0) + 7.0));
  CHECK(thresholds_for(o, 1'000'000).upper == Catch::Detail::Approx(std::log2(1e6) + 7.0));
  CHECK(thresholds_for(o, 1'000'000).lower == Catch::Detail::Approx(std::log2(1e6) - 3.0));
  // Ten times the patients costs log2(10) = 3.3 more bits for the same posterior odds.
  CHECK(thresholds_for(o, 1'000'000).upper - thresholds_for(o, 100'000).upper ==
        Catch::Detail::Approx(std::log2(10.0)));
  o.scale_with_population = false;
  CHECK(thresholds_for(o, 1'000'000).upper == 18.0);
  // A pair scoring between the two population sizes' thresholds links in the
  // small index and is only reviewed in the large one.
  match_options p;
  p.hold_uncorroborated = false;
  const auto a = feat("Zhang", "Sanfeng", born, {}, {}, "13800138000");
  const auto b = feat("Zhang", "Sanfeng", born, {}, {}, "13800138000");
  const auto va = a.view(), vb = b.view();
  const auto c = compare(va, vb);
  const double s = decide(va, vb, c, false, p).score;
  population_context small{.persons = std::exp2(s - p.link_margin - 1.0)};
  population_context large{.persons = std::exp2(s - p.link_margin + 1.0)};
  REQUIRE(thresholds_for(p, small.persons).upper >= p.upper);
  CHECK(decide(va, vb, c, false, p, small).v == verdict::link);
  CHECK(decide(va, vb, c, false, p, large).v == verdict::review);
}

TEST_CASE("exact name agreement weighs by the value's frequency, both ways", "[unit]") {
  const auto a = feat("张", "伟", born);
  const auto b = feat("Zhang", "Wei", born);
  const auto va = a.view(), vb = b.view();
  const auto c = compare(va, vb);
  match_options o;
  const double plain = decide(va, vb, c, false, o).score;
  const auto& w = o.weights;
  const auto fam = static_cast<std::size_t>(field::family), giv = static_cast<std::size_t>(field::given);
  // 张 carried by 7% of records, 伟 by 1%: each agreement is worth log2(m / share).
  const double common = decide(va, vb, c, false, o, {.family = 0.07, .given = 0.01}).score;
  CHECK(common == Catch::Detail::Approx(plain - w.w[fam][0] - w.w[giv][0] + std::log2(w.m[fam][0] / 0.07) +
                                        std::log2(w.m[giv][0] / 0.01)));
  CHECK(common < plain);
  // A rare name (one record in 100,000) weighs more than the configured default.
  const double rare = decide(va, vb, c, false, o, {.family = 1e-5, .given = 1e-5}).score;
  CHECK(rare > plain);
  // Only exact agreement is reweighed: a typo'd given name keeps its configured weight.
  const auto d = feat("Zhang", "Wie", born);
  const auto vd = d.view();
  const auto cd = compare(va, vd);
  REQUIRE(cd.level_of(field::given) != 0);
  CHECK(decide(va, vd, cd, false, o, {.given = 1e-5}).score == Catch::Detail::Approx(decide(va, vd, cd, false, o).score));
}

TEST_CASE("a shared phone makes surname and district agreement household evidence, not extra evidence", "[unit]") {
  // Father and son sharing phone, surname and district: the surname and the
  // district add (almost) nothing once the phone agrees.
  demographics f{.family_name = "欧阳", .given_name = "建国", .birth_date = {.year = 1955, .month = 2, .day = 3},
                 .phone = "13800138000", .city = "海淀区"};
  demographics s = f;
  s.given_name = "小明";
  s.birth_date = {.year = 1985, .month = 9, .day = 12};
  const auto a = make_features(f, {}, {}, today), b = make_features(s, {}, {}, today);
  const auto va = a.view(), vb = b.view();
  const auto c = compare(va, vb);
  match_options o;
  const auto& w = o.weights;
  const auto fam = static_cast<std::size_t>(field::family), city = static_cast<std::size_t>(field::city);
  // A rare surname (1 in 10,000) would be worth 13 bits between strangers.
  const auto v = decide(va, vb, c, false, o, {.family = 1e-4, .city = 0.05});
  CHECK(v.score == Catch::Detail::Approx(score(c, w) - w.w[fam][0] - w.w[city][0] + std::log2(w.m[fam][0] / 0.8) +
                                         std::log2(w.m[city][0])));
  CHECK(v.v == verdict::no_link);
  // Without the shared phone the surname keeps its full weight.
  s.phone.clear();
  const auto b2 = make_features(s, {}, {}, today);
  const auto c2 = compare(va, b2.view());
  CHECK(decide(va, b2.view(), c2, false, o, {.family = 1e-4}).score ==
        Catch::Detail::Approx(score(c2, w) - w.w[fam][0] + std::log2(w.m[fam][0] / 1e-4)));
}
