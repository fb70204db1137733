#include <catch2/catch.hpp>

#include "engine/identity/index.h"
#include "test_people.h"

using namespace yilian::identity;
using namespace yilian::identity::test;

namespace {
const civil_date born{.year = 1980, .month = 5, .day = 17};
// prefix + number, appended (g++ 12 reports -Wrestrict on literal + std::string).
std::string numbered(std::string prefix, int n) {
  prefix += std::to_string(n);
  return prefix;
}
}

TEST_CASE("the same identifier is always the same person", "[unit]") {
  identity_index ix(test_options());
  const auto d1 = ix.upsert(make_record({.mrn = "M1", .family = "张", .given = "三", .born = born}));
  CHECK(d1.outcome == outcome::new_person);
  // Same MRN, totally different demographics: still the same record and person.
  const auto d2 = ix.upsert(make_record({.mrn = "M1", .family = "李", .given = "四", .born = {.year = 1990, .month = 1, .day = 1}}));
  CHECK(d2.outcome == outcome::updated);
  CHECK(d2.person == d1.person);
  CHECK(ix.stats().records == 1);
  CHECK(ix.person_of({.system = mrn_a, .value = "M1"}) == d1.person);
  CHECK_FALSE(ix.person_of({.system = mrn_a, .value = "M2"}));
}

TEST_CASE("a second hospital's record links by resident ID rule", "[unit]") {
  identity_index ix(test_options());
  const auto rid = make_rid("320102", born, 21);
  const auto a = ix.upsert(make_record({.mrn = "A1", .family = "张", .given = "三丰", .born = born, .rid = rid}));
  const auto b = ix.upsert(make_record({.hospital = "h-b", .mrn_system = mrn_b, .mrn = "B7", .family = "ZHANG",
                                        .given = "SAN FENG", .born = born, .rid = rid}));
  CHECK(b.outcome == outcome::linked);
  CHECK(b.by == rule::resident_id);
  CHECK(b.person == a.person);
  CHECK(ix.records_of(a.person).size() == 2);
  REQUIRE(ix.history().size() == 1);
  CHECK(ix.history()[0].what == action::link);
  CHECK(ix.history()[0].actor == "yilian");
}

TEST_CASE("a weak match is queued for review and an operator decides", "[unit]") {
  identity_options o = test_options();
  o.match.upper = 1000;  // force review for anything above the lower threshold
  identity_index ix(o);
  const auto a = ix.upsert(make_record({.mrn = "A1", .family = "Wang", .given = "Fang", .born = born, .phone = "13900000001"}));
  const auto b = ix.upsert(make_record({.hospital = "h-b", .mrn_system = mrn_b, .mrn = "B1", .family = "Wang",
                                        .given = "Fang", .born = born}));
  REQUIRE(b.outcome == outcome::review);
  CHECK(b.person != a.person);
  CHECK(b.candidate == a.person);
  REQUIRE(ix.open_reviews().size() == 1);

  SECTION("accepting links the record") {
    auto d = ix.accept_review(*b.review_id, "op-1");
    REQUIRE(d);
    CHECK(d->person == a.person);
    CHECK(ix.person_of({.system = mrn_b, .value = "B1"}) == a.person);
    CHECK(ix.resolve(b.person) == a.person);
    CHECK(ix.open_reviews().empty());
    CHECK(ix.history().back().actor == "op-1");
    CHECK_FALSE(ix.accept_review(*b.review_id, "op-1"));  // decided already
  }
  SECTION("rejecting keeps them apart, also when the record is sent again") {
    REQUIRE(ix.reject_review(*b.review_id, "op-1"));
    const auto again = ix.upsert(make_record({.hospital = "h-b", .mrn_system = mrn_b, .mrn = "B1", .family = "Wang",
                                              .given = "Fang", .born = born}));
    CHECK(again.outcome == outcome::updated);
    CHECK(ix.open_reviews().empty());
    CHECK(ix.person_of({.system = mrn_b, .value = "B1"}) != a.person);
  }
}

TEST_CASE("an operator splits a wrong link and it is not re-made", "[unit]") {
  identity_index ix(test_options());
  const auto rid = make_rid("440106", born, 33);
  const auto a = ix.upsert(make_record({.mrn = "A1", .family = "陈", .given = "静", .born = born, .rid = rid}));
  ix.upsert(make_record({.hospital = "h-b", .mrn_system = mrn_b, .mrn = "B1", .family = "陈", .given = "静",
                         .born = born, .rid = rid}));
  REQUIRE(ix.person_of({.system = mrn_b, .value = "B1"}) == a.person);

  auto np = ix.split({.system = mrn_b, .value = "B1"}, "op-2");
  REQUIRE(np);
  CHECK(*np != a.person);
  CHECK(ix.person_of({.system = mrn_b, .value = "B1"}) == *np);
  CHECK(ix.history().back().what == action::split);
  // An update of the split record does not pull it back.
  const auto d = ix.upsert(make_record({.hospital = "h-b", .mrn_system = mrn_b, .mrn = "B1", .family = "陈",
                                        .given = "静", .born = born, .rid = rid, .phone = "13700000000"}));
  CHECK(d.person == *np);
  // Alone in its person: nothing to split.
  CHECK_FALSE(ix.split({.system = mrn_b, .value = "B1"}, "op-2"));
  // The operator can move it back by hand.
  REQUIRE(ix.move({.system = mrn_b, .value = "B1"}, a.person, "op-2"));
  CHECK(ix.person_of({.system = mrn_b, .value = "B1"}) == a.person);
}

TEST_CASE("A40 merges two records of one hospital and replays are no-ops", "[unit]") {
  identity_index ix(test_options());
  const auto keep = ix.upsert(make_record({.mrn = "M1", .family = "刘", .given = "洋", .born = born}));
  const auto old = ix.upsert(make_record({.mrn = "M2", .family = "刘", .given = "阳", .born = born}));
  REQUIRE(keep.person != old.person);  // same domain: never auto-linked
  auto d = ix.merge_within_domain("h-a", {.system = mrn_a, .value = "M1"}, {.system = mrn_a, .value = "M2"}, "h-a");
  REQUIRE(d);
  CHECK(d->person == keep.person);
  CHECK(ix.stats().records == 1);
  CHECK(ix.person_of({.system = mrn_a, .value = "M2"}) == keep.person);
  CHECK(ix.identifiers_of(*ix.record_of({.system = mrn_a, .value = "M1"})).size() == 2);
  CHECK(ix.history().back().what == action::a40_merge);
  auto again = ix.merge_within_domain("h-a", {.system = mrn_a, .value = "M1"}, {.system = mrn_a, .value = "M2"}, "h-a");
  REQUIRE(again);
  CHECK(ix.stats().records == 1);
}

TEST_CASE("A40 is refused across hospital domains", "[unit]") {
  identity_index ix(test_options());
  ix.upsert(make_record({.mrn = "M1", .family = "刘", .given = "洋", .born = born}));
  ix.upsert(make_record({.hospital = "h-b", .mrn_system = mrn_b, .mrn = "X9", .family = "Li", .given = "Lei", .born = born}));
  auto d = ix.merge_within_domain("h-a", {.system = mrn_a, .value = "M1"}, {.system = mrn_b, .value = "X9"}, "h-a");
  REQUIRE_FALSE(d);
  CHECK(d.error().code == yilian::errc::permission_denied);
  CHECK_FALSE(ix.merge_within_domain("h-a", {.system = mrn_a, .value = "nope"}, {.system = mrn_a, .value = "M1"}, "h-a"));
}

TEST_CASE("a record carrying two known identifiers joins their persons", "[unit]") {
  identity_index ix(test_options());
  const auto a = ix.upsert(make_record({.mrn = "M1", .family = "Zhao", .given = "Lei", .born = born}));
  const auto b = ix.upsert(make_record({.hospital = "h-b", .mrn_system = mrn_b, .mrn = "B5", .family = "Qian",
                                        .given = "Yu", .born = {.year = 1970, .month = 1, .day = 1}}));
  source_record r = make_record({.mrn = "M1", .family = "Zhao", .given = "Lei", .born = born});
  r.identifiers.push_back({.system = mrn_b, .value = "B5"});
  const auto d = ix.upsert(r);
  CHECK(d.outcome == outcome::updated);
  CHECK(ix.person_of({.system = mrn_b, .value = "B5"}) == ix.person_of({.system = mrn_a, .value = "M1"}));
  CHECK(ix.resolve(b.person) == ix.resolve(a.person));
  CHECK(ix.stats().persons == 1);
}

TEST_CASE("a late resident ID links a record that was alone", "[unit]") {
  identity_index ix(test_options());
  const auto rid = make_rid("510104", born, 45);
  const auto a = ix.upsert(make_record({.mrn = "A1", .family = "杨", .given = "帆", .born = born, .rid = rid}));
  const auto b = ix.upsert(make_record({.hospital = "h-b", .mrn_system = mrn_b, .mrn = "B1", .family = "Yang",
                                        .given = "Fan", .born = {}}));
  CHECK(b.outcome != outcome::linked);
  const auto b2 = ix.upsert(make_record({.hospital = "h-b", .mrn_system = mrn_b, .mrn = "B1", .family = "Yang",
                                         .given = "Fan", .born = born, .rid = rid}));
  CHECK(b2.outcome == outcome::linked);
  CHECK(b2.person == a.person);
}

TEST_CASE("search by demographics ranks persons without storing anything", "[unit]") {
  identity_index ix(test_options());
  const auto rid = make_rid("310104", born, 7);
  const auto a = ix.upsert(make_record({.mrn = "A1", .family = "周", .given = "杰", .born = born, .rid = rid}));
  const auto hits = ix.search(make_record({.family = "Zhou", .given = "Jie", .born = born, .rid = rid}));
  REQUIRE_FALSE(hits.empty());
  CHECK(hits[0].person == a.person);
  CHECK(hits[0].verdict.v == verdict::link);
  CHECK(ix.stats().records == 1);
}

TEST_CASE("a resident-ID link skips the demographic blocks but decides exactly as the full comparison", "[unit]") {
  // Twenty namesakes (same name and birth date, other IDs) and the person.
  auto load = [](identity_index& ix) {
    for (int i = 0; i < 20; ++i) {
      ix.upsert(make_record({.mrn = numbered("N", i), .family = "王", .given = "伟", .born = born,
                             .rid = make_rid("110105", born, 100 + 2 * i)}));
    }
    ix.upsert(make_record({.mrn = "P", .family = "王", .given = "伟", .born = born, .rid = make_rid("110105", born, 11)}));
  };
  const auto incoming = make_record({.hospital = "h-b", .mrn_system = mrn_b, .mrn = "B1", .family = "Wang",
                                     .given = "Wei", .born = born, .rid = make_rid("110105", born, 11)});
  identity_index fast(test_options()), traced(test_options());
  load(fast);
  load(traced);
  const auto d = fast.upsert(incoming);
  std::vector<candidate_trace> trace;
  const auto t = traced.upsert(incoming, &trace);
  CHECK(d.outcome == outcome::linked);
  CHECK(d.by == rule::resident_id);
  CHECK(d.person == fast.person_of({.system = mrn_a, .value = "P"}));
  CHECK(t.outcome == d.outcome);
  CHECK(t.person == d.person);
  CHECK(d.compared == 1);       // only the record sharing the resident ID
  CHECK(t.compared == 21);      // the trace sees every namesake too
}

TEST_CASE("namesakes without a shared identifier, phone or address are never linked automatically", "[unit]") {
  identity_index ix(test_options());
  // A large index makes the population-scaled threshold bite; the namesakes
  // below would clear the configured 18 bits.
  for (int i = 0; i < 3000; ++i) {
    ix.upsert(make_record({.mrn = numbered("F", i), .family = "李", .given = numbered("明", i % 7),
                           .born = {.year = static_cast<std::int16_t>(1940 + i % 60), .month = 1, .day = 1}}));
  }
  const auto a = ix.upsert(make_record({.mrn = "A1", .family = "张", .given = "伟", .born = born, .sex = sex::male,
                                        .rid = make_rid("110105", born, 11), .city = "海淀区"}));
  const auto b = ix.upsert(make_record({.hospital = "h-b", .mrn_system = mrn_b, .mrn = "B1", .family = "Zhang",
                                        .given = "Wei", .born = born, .sex = sex::male, .city = "海淀区"}));
  CHECK(b.person != a.person);
  CHECK(b.outcome == outcome::review);
  CHECK(b.held == hold::uncorroborated);
  // The same person again, now with the phone both records carry: corroborated, linked.
  ix.upsert(make_record({.mrn = "A2", .family = "赵", .given = "云", .born = born, .phone = "13912345678"}));
  const auto c = ix.upsert(make_record({.hospital = "h-b", .mrn_system = mrn_b, .mrn = "B2", .family = "Zhao",
                                        .given = "Yun", .born = born, .phone = "139-1234-5678"}));
  CHECK(c.outcome == outcome::linked);
  CHECK(c.by == rule::probabilistic);
}

TEST_CASE("a crowded surname and birth-date block gives way to the finer block of both name parts", "[unit]") {
  identity_options o = test_options();
  o.split_block = 4;
  identity_index ix(o);
  // Twenty namesakes by surname, born the same day, each with a given name of
  // its own Soundex code: the (surname, birth date) block holds all twenty.
  const std::vector<std::string> given{"wei", "jun", "ming", "hua", "qiang", "li", "na", "fang", "yang", "jie",
                                       "tao", "bin", "yan", "ping", "gang", "hong", "xin", "bo", "kai", "rui"};
  std::vector<enterprise_id> persons;
  for (std::size_t i = 0; i < given.size(); ++i) {
    persons.push_back(ix.upsert(make_record({.mrn = numbered("A", static_cast<int>(i)), .family = "zhang",
                                             .given = given[i], .born = born, .phone = numbered("1390000", static_cast<int>(i))}))
                          .person);
  }
  // The same Zhang Wei at another hospital, same phone: compared with the
  // few records sharing both name parts and the phone, not all twenty.
  const auto d = ix.upsert(make_record({.hospital = "h-b", .mrn_system = mrn_b, .mrn = "B1", .family = "zhang",
                                        .given = "wei", .born = born, .phone = "13900000"}));
  CHECK(d.compared <= 2);
  CHECK(d.walked <= 4);
  CHECK(d.outcome == outcome::linked);
  CHECK(d.person == persons[0]);
  // Below the threshold the coarse block is used: a given name with another
  // Soundex code (a different romanisation) still meets its match.
  identity_index small(o);
  const auto a = small.upsert(make_record({.mrn = "A1", .family = "zhang", .given = "wei", .born = born,
                                           .phone = "13900000"}));
  const auto b = small.upsert(make_record({.hospital = "h-b", .mrn_system = mrn_b, .mrn = "B1", .family = "zhang",
                                           .given = "uei", .born = born}));
  CHECK(b.compared == 1);
  CHECK((b.outcome == outcome::new_person || b.candidate == a.person || b.person == a.person));
}

TEST_CASE("an update moves only the keys that changed", "[unit]") {
  identity_index ix(test_options());
  const auto first = ix.upsert(make_record({.mrn = "M1", .family = "王", .given = "芳", .born = born, .phone = "13912345678"}));
  const auto before = ix.stats();
  // New phone: one key leaves, one arrives.
  ix.upsert(make_record({.mrn = "M1", .family = "王", .given = "芳", .born = born, .phone = "13987654321"}));
  const auto after_phone = ix.stats();
  CHECK(after_phone.block_postings == before.block_postings);
  // New birth date: the record is found under it, and not under the old one.
  const civil_date corrected{.year = 1981, .month = 5, .day = 17};
  ix.upsert(make_record({.mrn = "M1", .family = "王", .given = "芳", .born = corrected, .phone = "13987654321"}));
  CHECK(ix.stats().block_postings == before.block_postings);
  const auto hit = ix.search(make_record({.family = "王", .given = "芳", .born = corrected}));
  REQUIRE_FALSE(hit.empty());
  CHECK(hit.front().person == first.person);
  const auto old = ix.search(make_record({.family = "王", .given = "芳", .born = born, .phone = "13912345678"}));
  CHECK(std::none_of(old.begin(), old.end(), [&](const auto& h) { return h.verdict.v == verdict::link; }));
  CHECK(ix.stats().records == 1);
}

TEST_CASE("the persons holding a resident ID or card are found by it, validated like a record's", "[unit]") {
  identity_index ix(test_options());
  const auto rid = make_rid("320102", born, 31);
  const auto a = ix.upsert(make_record({.mrn = "A1", .family = "张", .given = "三", .born = born, .rid = rid,
                                        .insurance = "INS-0042"}));
  // Same resident ID at the same hospital: held for review (the hospital's
  // A40 to make), so two persons hold it until then.
  const auto b = ix.upsert(make_record({.mrn = "A2", .family = "张", .given = "三", .born = born, .rid = rid}));
  REQUIRE(b.person != a.person);
  const auto holders = ix.persons_with({.system = rid_system, .value = rid});
  CHECK(holders == std::vector<enterprise_id>{a.person, b.person});
  CHECK(ix.persons_with({.system = insurance_system, .value = "INS-0042"}) == std::vector<enterprise_id>{a.person});
  // A number failing its check digit identifies nobody; nor does an MRN system.
  CHECK(ix.persons_with({.system = rid_system, .value = break_check(rid)}).empty());
  CHECK(ix.persons_with({.system = mrn_a, .value = "A1"}).empty());
  CHECK(ix.persons_with({.system = rid_system, .value = make_rid("320102", born, 32)}).empty());
}
