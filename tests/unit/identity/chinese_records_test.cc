// A generated population of Chinese-style records (fixed seed): hanzi and
// pinyin names in every spelling hospitals use, resident IDs with valid and
// broken check digits, insurance cards, families sharing a phone and an
// address (twins included), typos. Checks the safety properties:
// no wrong automatic link at all, invalid IDs and shared phones never link,
// typo'd names with a valid ID and hanzi-vs-pinyin records do.
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <set>

#include "engine/identity/index.h"
#include "test_people.h"

using namespace yilian::identity;
using namespace yilian::identity::test;

namespace {

struct han_pinyin {
  std::string_view han, pinyin;  // pinyin with tone marks, as a clerk may type it
};

constexpr han_pinyin surnames[] = {
    {"王", "Wáng"}, {"李", "Lǐ"},   {"张", "Zhāng"}, {"刘", "Liú"},  {"陈", "Chén"}, {"杨", "Yáng"},
    {"黄", "Huáng"}, {"赵", "Zhào"}, {"吴", "Wú"},   {"周", "Zhōu"}, {"徐", "Xú"},   {"孙", "Sūn"},
    {"马", "Mǎ"},   {"朱", "Zhū"},  {"胡", "Hú"},   {"郭", "Guō"},  {"何", "Hé"},   {"高", "Gāo"},
    {"林", "Lín"},  {"罗", "Luó"},  {"欧阳", "Ōuyáng"}, {"吕", "Lǚ"}, {"曾", "Zēng"}, {"单", "Shàn"},
};
constexpr han_pinyin given_chars[] = {
    {"伟", "wěi"}, {"芳", "fāng"}, {"娜", "nà"},  {"敏", "mǐn"}, {"静", "jìng"}, {"丽", "lì"},   {"强", "qiáng"},
    {"磊", "lěi"}, {"军", "jūn"},  {"洋", "yáng"}, {"勇", "yǒng"}, {"艳", "yàn"}, {"杰", "jié"},  {"娟", "juān"},
    {"涛", "tāo"}, {"明", "míng"}, {"超", "chāo"}, {"霞", "xiá"}, {"平", "píng"}, {"刚", "gāng"}, {"建", "jiàn"},
    {"国", "guó"}, {"华", "huá"},  {"志", "zhì"},  {"红", "hóng"}, {"海", "hǎi"}, {"燕", "yàn"},  {"东", "dōng"},
    {"文", "wén"}, {"玉", "yù"},   {"兰", "lán"},  {"春", "chūn"}, {"梅", "méi"}, {"丹", "dān"},  {"鑫", "xīn"},
    {"宇", "yǔ"},  {"浩", "hào"},  {"涵", "hán"},  {"怡", "yí"},   {"轩", "xuān"}, {"婷", "tíng"}, {"博", "bó"},
    {"佳", "jiā"}, {"诺", "nuò"},  {"秀", "xiù"},  {"英", "yīng"}, {"辉", "huī"}, {"鹏", "péng"}, {"慧", "huì"},
    {"琳", "lín"}, {"斌", "bīn"},  {"凯", "kǎi"},  {"晨", "chén"}, {"阳", "yáng"},
};
// Same sound, other character: the commonest hanzi typo (the IME offers both).
const std::map<std::string_view, std::string_view> homophones{
    {"伟", "炜"}, {"芳", "方"}, {"明", "铭"}, {"杰", "洁"}, {"华", "桦"}, {"红", "宏"}, {"婷", "亭"}, {"磊", "蕾"},
    {"军", "君"}, {"涛", "韬"}, {"平", "萍"}, {"东", "冬"}, {"文", "雯"}, {"玉", "钰"}, {"兰", "岚"}, {"梅", "玫"},
    {"浩", "皓"}, {"辉", "晖"}, {"慧", "惠"}, {"琳", "霖"}, {"斌", "彬"}, {"鹏", "朋"}, {"凯", "恺"}, {"晨", "辰"},
};
constexpr std::string_view regions[] = {"110105", "310104", "440106", "320102", "510104", "420102", "370102"};

struct person {
  int truth = 0;
  std::size_t surname = 0;
  std::vector<std::size_t> given;  // 1 or 2 characters
  civil_date born;
  enum sex sex = sex::unknown;
  std::string rid, insurance, phone, city;
};

// Concatenation without operator+ (g++ 12 -Wrestrict false positives).
std::string cat(std::string_view a, std::string_view b, std::string_view c = {}) {
  std::string s;
  s.reserve(a.size() + b.size() + c.size());
  s.append(a).append(b).append(c);
  return s;
}

std::string han_given(const person& p) {
  std::string s;
  for (auto g : p.given) s += given_chars[g].han;
  return s;
}
std::string pinyin_given(const person& p) {
  std::string s;
  for (auto g : p.given) s += given_chars[g].pinyin;
  return s;
}
std::string given_key(const person& p) {  // toneless, for "distinct names in a family"
  return normalize_name("", pinyin_given(p)).given;
}

// Pinyin spellings seen at registration desks.
std::pair<std::string, std::string> pinyin_form(const person& p, int form) {
  std::string fam(surnames[p.surname].pinyin), giv = pinyin_given(p);
  auto upper = [](std::string s) {
    for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return s;
  };
  const std::string plain_f = normalize_name(fam, "").family, plain_g = normalize_name("", giv).given;
  switch (form % 5) {
    case 0: return {fam, giv};                              // Zhāng / sānfēng (tone marks)
    case 1: return {upper(plain_f), upper(plain_g)};        // ZHANG / SANFENG
    case 2: return {cat(plain_f, plain_g), ""};                 // zhangsanfeng in one field
    case 3: return {"", cat(plain_g, " ", plain_f)};           // "sanfeng zhang": western order, one field
    default: return {plain_g, plain_f};                     // family and given swapped
  }
}

std::string typo(std::string s, std::mt19937& rng) {
  if (s.size() < 3) return cat(s, "g");
  std::uniform_int_distribution<std::size_t> at(1, s.size() - 2);
  const std::size_t i = at(rng);
  std::swap(s[i], s[i + 1]);
  return s;
}

}  // namespace

TEST_CASE("generated Chinese records: no wrong link, invalid IDs and shared phones never link", "[unit]") {
  std::mt19937 rng(20240601);
  auto pick = [&](std::size_t n) { return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng); };
  auto chance = [&](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };

  // Families: 1-4 people sharing a surname (mostly), phone, city; twins sometimes.
  std::vector<person> people;
  int next_seq = 1;
  while (people.size() < 3000) {
    const std::size_t size = 1 + pick(4);
    const std::size_t fam_surname = pick(std::size(surnames));
    const std::string phone = cat("13", std::to_string(100000000 + pick(899999999)));
    const std::string city = std::string(regions[pick(std::size(regions))]);
    std::set<std::string> names_in_family;
    civil_date last_born{};
    for (std::size_t k = 0; k < size; ++k) {
      person p;
      p.truth = static_cast<int>(people.size());
      p.surname = (k == 0 || chance(0.8)) ? fam_surname : pick(std::size(surnames));
      do {
        p.given.assign(1, pick(std::size(given_chars)));
        if (chance(0.7)) p.given.push_back(pick(std::size(given_chars)));
      } while (!names_in_family.insert(given_key(p)).second);
      const bool twin = k > 0 && chance(0.15);
      p.born = twin ? last_born
                    : civil_date{.year = static_cast<std::int16_t>(1940 + pick(80)),
                                 .month = static_cast<std::uint8_t>(1 + pick(12)),
                                 .day = static_cast<std::uint8_t>(1 + pick(28))};
      last_born = p.born;
      p.sex = chance(0.5) ? sex::male : sex::female;
      int seq = (next_seq++ % 499) * 2 + (p.sex == sex::male ? 1 : 0);
      p.rid = make_rid(city, p.born, seq);
      p.insurance = cat("YB", std::to_string(10000000 + p.truth * 7919 % 89999999));
      p.phone = phone;
      p.city = city;
      people.push_back(std::move(p));
    }
  }

  identity_index ix(test_options());
  std::map<std::uint32_t, int> truth_of_record;
  auto feed = [&](const source_record& r, int truth) {
    const decision d = ix.upsert(r);
    truth_of_record[*ix.record_of(r.identifiers.front())] = truth;
    return d;
  };

  // Hospital A: every person in hanzi, valid ID, insurance, phone.
  for (const person& p : people) {
    feed(make_record({.hospital = "h-a", .mrn_system = mrn_a, .mrn = cat("A", std::to_string(p.truth)),
                      .family = std::string(surnames[p.surname].han), .given = han_given(p), .born = p.born,
                      .sex = p.sex, .rid = p.rid, .insurance = p.insurance, .phone = p.phone, .city = p.city}),
         p.truth);
  }

  // Hospital B: each person once more, in one of several shapes.
  std::map<int, int> expected_links, got_links;  // by variant
  std::map<int, int> variant_count;
  int invalid_id_linked = 0, rid_rule_on_invalid = 0;
  for (const person& p : people) {
    const int variant = static_cast<int>(pick(6));
    ++variant_count[variant];
    person_spec s{.hospital = "h-b", .mrn_system = mrn_b, .mrn = cat("B", std::to_string(p.truth)), .born = p.born,
                  .sex = p.sex, .city = p.city};
    bool must_link = false;
    switch (variant) {
      case 0: {  // pinyin in some spelling + valid ID
        std::tie(s.family, s.given) = pinyin_form(p, static_cast<int>(pick(5)));
        s.rid = p.rid;
        s.phone = p.phone;
        must_link = true;
        break;
      }
      case 1: {  // hanzi with a same-sound character typo + valid ID
        s.family = std::string(surnames[p.surname].han);
        std::string g;
        for (auto gi : p.given) {
          auto it = homophones.find(given_chars[gi].han);
          g += it != homophones.end() ? it->second : given_chars[gi].han;
        }
        s.given = g;
        s.rid = p.rid;
        must_link = true;
        break;
      }
      case 2: {  // pinyin with a letter typo + valid ID (15-digit legacy form sometimes)
        auto [f, g] = pinyin_form(p, 1);
        s.family = f;
        s.given = typo(g, rng);
        s.rid = (chance(0.3) && p.born.year < 2000) ? cat(p.rid.substr(0, 6), p.rid.substr(8, 9)) : p.rid;
        must_link = true;
        break;
      }
      case 3: {  // pinyin + insurance card, no resident ID
        std::tie(s.family, s.given) = pinyin_form(p, 1);
        s.insurance = p.insurance;
        must_link = true;
        break;
      }
      case 4: {  // hanzi name + a resident ID with a broken check digit, nothing else
        s.family = std::string(surnames[p.surname].han);
        s.given = han_given(p);
        s.rid = break_check(p.rid);
        s.born = {};
        s.sex = sex::unknown;
        s.city.clear();
        break;
      }
      default: {  // pinyin + birth date + shared family phone, no identifier
        std::tie(s.family, s.given) = pinyin_form(p, static_cast<int>(pick(5)));
        s.phone = p.phone;
        break;
      }
    }
    if (s.mrn.empty()) continue;
    std::vector<candidate_trace> tr;
    const decision d = ix.upsert(make_record(s), &tr);
    truth_of_record[*ix.record_of(make_record(s).identifiers.front())] = p.truth;
    if (std::getenv("IDENTITY_DEBUG") && d.held == hold::ambiguous) {
      for (auto& t : tr) {
        std::string lv;
        for (auto l : t.c.level) lv += l == missing_level ? '-' : static_cast<char>('0' + l);
        std::printf("truth %d cand rec %u truth %d person %u verdict %s by %s score %.1f levels %s\n", p.truth, t.record,
                    truth_of_record[t.record], t.person.value(), std::string(to_string(t.verdict.v)).c_str(),
                    std::string(to_string(t.verdict.by)).c_str(), t.verdict.score, lv.c_str());
      }
    }
    const bool linked = d.outcome == outcome::linked;
    if (must_link) ++expected_links[variant];
    if (linked) ++got_links[variant];
    if (variant == 4 && linked) ++invalid_id_linked;
    if (variant == 4 && d.by == rule::resident_id) ++rid_rule_on_invalid;
    if (variant == 4) CHECK(d.resident_id_invalid);
    if (must_link && !linked) {
      INFO("variant " << variant << " [" << s.family << "|" << s.given << "] truth " << p.truth << " outcome " << to_string(d.outcome) << " score "
                      << d.score << " hold " << to_string(d.held));
      CHECK(linked);
    }
  }

  // Hospital C: adversarial records.
  //  - a family member's phone, surname and city with someone else's broken ID: a stranger.
  //  - each family member registered again with only name + phone + birth year wrong.
  int strangers_linked = 0;
  for (std::size_t i = 0; i < 400; ++i) {
    const person& victim = people[pick(people.size())];
    const int truth = 100000 + static_cast<int>(i);
    const decision d = feed(make_record({.hospital = "h-c", .mrn_system = "urn:yilian:h-c:mrn",
                                         .mrn = cat("C", std::to_string(i)), .family = std::string(surnames[victim.surname].han),
                                         .given = cat("某", given_chars[pick(std::size(given_chars))].han),
                                         .born = {.year = 1999, .month = 1, .day = 1}, .rid = break_check(victim.rid),
                                         .phone = victim.phone, .city = victim.city}),
                            truth);
    if (d.outcome == outcome::linked) ++strangers_linked;
  }

  // No enterprise person mixes two real people.
  std::map<std::uint32_t, std::set<int>> truths_by_person;
  for (auto [rec, truth] : truth_of_record) {
    auto p = ix.person_of(ix.identifiers_of(rec).front());
    REQUIRE(p);
    truths_by_person[p->value()].insert(truth);
  }
  int mixed = 0;
  for (const auto& [p, truths] : truths_by_person) mixed += truths.size() > 1 ? 1 : 0;
  CHECK(mixed == 0);
  CHECK(invalid_id_linked == 0);
  CHECK(rid_rule_on_invalid == 0);
  CHECK(strangers_linked == 0);
  for (int v : {0, 1, 2, 3}) {
    INFO("variant " << v);
    CHECK(got_links[v] == expected_links[v]);
  }
  // Pinyin + birth date + phone, no identifier: most link by score; none wrongly (checked above).
  CHECK(got_links[5] >= variant_count[5] * 8 / 10);
  // Every history entry names an actor and only ever points at records.
  for (const auto& h : ix.history()) CHECK_FALSE(h.actor.empty());
}
