// The identity benches' synthetic population (header-only; shared by
// identity_bench, the matcher alone, and identity_bus_bench, the same
// population through the bus and the identity service).
//
// Fixed seed: hanzi names (70%) or pinyin (30%) with a realistic Chinese name
// distribution (surnames by census share, 120 of them; given-name characters
// Zipf-like over 140; 80% two-character given names), so the same name and
// birth date recur; families of 1-4 sharing phone and district (3% twins);
// valid, unique resident IDs (90%; 2% broken check digits), insurance cards
// (70%), ten hospitals. The population keeps the truth (which person each
// MRN is), so the benches count wrong merges and missed links against it.
//
// Both benches draw from the generator in the same order (grow, then
// make_stream), so one seed gives them the same records and the same stream.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/identity/index.h"
#include "engine/identity/names.h"
#include "engine/identity/resident_id.h"

namespace yilian::identity::bench {

// Surnames with their approximate share of China's population (2020 census
// order; the top 30 cover ~63%), then a tail of less common ones sharing the
// rest. Given-name characters in rough order of popularity, drawn Zipf-like,
// so 张伟, 王伟, 王芳, 李娜 recur hundreds of times per million as they do in
// a real city, while most names are rare.
struct weighted {
  const char* han;
  double share;  // percent; 0 = part of the tail
};
constexpr weighted surname_table[] = {
    {"王", 7.12}, {"李", 7.00}, {"张", 6.74}, {"刘", 5.10}, {"陈", 4.61}, {"杨", 3.22}, {"黄", 2.45}, {"赵", 2.29},
    {"吴", 2.05}, {"周", 1.94}, {"徐", 1.61}, {"孙", 1.48}, {"马", 1.42}, {"朱", 1.28}, {"胡", 1.27}, {"郭", 1.18},
    {"何", 1.15}, {"高", 1.07}, {"林", 1.06}, {"罗", 0.96}, {"郑", 0.91}, {"梁", 0.90}, {"谢", 0.80}, {"宋", 0.76},
    {"唐", 0.74}, {"许", 0.69}, {"韩", 0.68}, {"冯", 0.67}, {"邓", 0.66}, {"曹", 0.64}, {"彭", 0}, {"曾", 0},
    {"肖", 0}, {"田", 0}, {"董", 0}, {"袁", 0}, {"潘", 0}, {"于", 0}, {"蒋", 0}, {"蔡", 0}, {"余", 0}, {"杜", 0},
    {"叶", 0}, {"程", 0}, {"苏", 0}, {"魏", 0}, {"吕", 0}, {"丁", 0}, {"任", 0}, {"沈", 0}, {"姚", 0}, {"卢", 0},
    {"姜", 0}, {"崔", 0}, {"钟", 0}, {"谭", 0}, {"陆", 0}, {"汪", 0}, {"范", 0}, {"金", 0}, {"石", 0}, {"廖", 0},
    {"贾", 0}, {"夏", 0}, {"韦", 0}, {"付", 0}, {"方", 0}, {"白", 0}, {"邹", 0}, {"孟", 0}, {"熊", 0}, {"秦", 0},
    {"邱", 0}, {"江", 0}, {"尹", 0}, {"薛", 0}, {"闫", 0}, {"段", 0}, {"雷", 0}, {"侯", 0}, {"龙", 0}, {"史", 0},
    {"陶", 0}, {"黎", 0}, {"贺", 0}, {"顾", 0}, {"毛", 0}, {"郝", 0}, {"龚", 0}, {"邵", 0}, {"万", 0}, {"钱", 0},
    {"严", 0}, {"覃", 0}, {"武", 0}, {"戴", 0}, {"莫", 0}, {"孔", 0}, {"向", 0}, {"汤", 0}, {"欧阳", 0}, {"司马", 0},
    {"诸葛", 0}, {"上官", 0}, {"单", 0}, {"仇", 0}, {"查", 0}, {"解", 0}, {"区", 0}, {"朴", 0}, {"常", 0}, {"温", 0}};
constexpr const char* given_chars[] = {
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明", "超", "秀", "霞", "平",
    "刚", "桂", "英", "华", "建", "国", "文", "红", "志", "玉", "兰", "海", "燕", "东", "春", "梅", "丹", "鑫", "宇", "浩",
    "涵", "怡", "轩", "婷", "博", "佳", "诺", "辉", "鹏", "慧", "琳", "斌", "凯", "晨", "阳", "欣", "雪", "飞", "波", "云",
    "峰", "晓", "小", "子", "梓", "萱", "雨", "思", "一", "嘉", "欣", "宏", "林", "亮", "成", "永", "金", "荣", "新", "玲",
    "凤", "光", "德", "清", "生", "福", "龙", "元", "全", "胜", "祥", "才", "发", "武", "利", "宁", "彬", "琴", "淑", "惠",
    "珍", "莉", "萍", "秋", "颖", "洁", "倩", "蕾", "薇", "悦", "瑶", "璐", "娇", "晶", "妍", "茜", "露", "瑞", "凡", "乐",
    "俊", "豪", "帅", "旭", "昊", "睿", "泽", "铭", "航", "翔", "楠", "媛", "菲", "蓉", "蓓", "彤", "岚", "双", "琪", "然"};
constexpr const char* regions[] = {"110105", "110108", "310104", "310115", "440106", "440304", "320102", "320506",
                                   "510104", "510107", "420102", "420111", "370102", "370212", "330106", "330108"};

struct person {
  std::uint16_t surname;
  std::uint8_t g1, g2;  // g2 = 255: one-character given name
  civil_date born;
  bool male;
  std::uint8_t region;
  std::uint16_t rid_seq;  // unique per (region, birth date): resident IDs are unique
  std::uint64_t phone;
  std::uint32_t insurance;  // 0 = none
  std::uint8_t rid_kind;    // 0 valid, 1 broken, 2 none
};

// Concatenation without operator+ (g++ 12 -Wrestrict false positives).
inline std::string cat(std::string_view a, std::string_view b, std::string_view c = {}) {
  std::string s;
  s.reserve(a.size() + b.size() + c.size());
  s.append(a).append(b).append(c);
  return s;
}

struct generator {
  std::mt19937_64 rng;
  std::uint64_t phone_seq = 0;
  std::uint32_t seq = 0;
  std::discrete_distribution<std::size_t> surname_dist, given_dist;
  std::vector<std::string> surname_py, given_py;  // pinyin as the index itself reads the hanzi
  std::unordered_map<std::uint64_t, std::uint16_t> rid_seqs;  // (region, date) -> next sequence
  explicit generator(std::uint64_t seed) : rng(seed) {
    std::vector<double> w;
    double top = 0;
    std::size_t tail = 0;
    for (const auto& s : surname_table) top += s.share, tail += s.share == 0 ? 1 : 0;
    for (const auto& s : surname_table) w.push_back(s.share > 0 ? s.share : (100.0 - top) / static_cast<double>(tail));
    surname_dist = std::discrete_distribution<std::size_t>(w.begin(), w.end());
    w.clear();
    for (std::size_t i = 0; i < std::size(given_chars); ++i) w.push_back(1.0 / (static_cast<double>(i) + 3.0));
    given_dist = std::discrete_distribution<std::size_t>(w.begin(), w.end());
    for (const auto& s : surname_table) surname_py.push_back(normalize_name(s.han, "").family);
    for (const char* g : given_chars) given_py.push_back(normalize_name("", g).given);
  }
  std::size_t pick(std::size_t n) { return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng); }
  bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; }

  person make(const person* family, const person* twin_of = nullptr, std::span<const person> siblings = {}) {
    person p{};
    p.surname = static_cast<std::uint16_t>(family && chance(0.8) ? family->surname : surname_dist(rng));
    do {  // parents do not give two of their children the same name
      p.g1 = static_cast<std::uint8_t>(given_dist(rng));
      p.g2 = chance(0.8) ? static_cast<std::uint8_t>(given_dist(rng)) : 255;
    } while (std::any_of(siblings.begin(), siblings.end(), [&](const person& o) { return o.g1 == p.g1 && o.g2 == p.g2; }));
    p.born = twin_of ? twin_of->born
                     : civil_date{.year = static_cast<std::int16_t>(1940 + pick(80)),
                                  .month = static_cast<std::uint8_t>(1 + pick(12)),
                                  .day = static_cast<std::uint8_t>(1 + pick(28))};
    p.male = chance(0.5);
    p.region = static_cast<std::uint8_t>(family ? family->region : pick(std::size(regions)));
    p.rid_seq = rid_seqs[static_cast<std::uint64_t>(p.region) << 32 | p.born.packed()]++;
    seq++;
    p.phone = family ? family->phone : 13000000000ULL + (phone_seq++ * 7919ULL) % 999999999ULL;
    p.insurance = chance(0.7) ? 10000000U + seq : 0;
    const double r = std::uniform_real_distribution<double>(0, 1)(rng);
    p.rid_kind = r < 0.90 ? 0 : r < 0.92 ? 1 : 2;
    return p;
  }

  source_record record(const person& p, std::uint32_t hospital, std::uint64_t mrn, bool pinyin) {
    source_record r;
    r.hospital = cat("h", std::to_string(hospital));
    r.identifiers.push_back({.system = cat("urn:yilian:h", std::to_string(hospital), ":mrn"), .value = std::to_string(mrn)});
    if (p.rid_kind != 2) {
      char buf[24];
      // Sequence digits: odd for men; 500 per sex per (county, day) is plenty here.
      std::snprintf(buf, sizeof buf, "%s%04d%02d%02d%03u", regions[p.region], p.born.year, p.born.month, p.born.day,
                    (p.rid_seq % 500U) * 2U + (p.male ? 1U : 0U));
      std::string rid(buf, 17);
      char check = resident_id_check_character(rid);
      if (p.rid_kind == 1) check = check == '0' ? '1' : '0';
      rid.push_back(check);
      r.identifiers.push_back({.system = "urn:yilian:resident-id", .value = std::move(rid)});
    }
    if (p.insurance) r.identifiers.push_back({.system = "urn:yilian:insurance", .value = cat("YB", std::to_string(p.insurance))});
    if (pinyin) {
      r.demo.family_name = surname_py[p.surname];
      r.demo.given_name = given_py[p.g1];
      if (p.g2 != 255) r.demo.given_name += given_py[p.g2];
    } else {
      r.demo.family_name = surname_table[p.surname].han;
      r.demo.given_name = given_chars[p.g1];
      if (p.g2 != 255) r.demo.given_name += given_chars[p.g2];
    }
    r.demo.birth_date = p.born;
    r.demo.sex = p.male ? sex::male : sex::female;
    r.demo.phone = std::to_string(p.phone);
    r.demo.city = regions[p.region];
    return r;
  }
};

inline long rss_kb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return 0;
}

inline identity_options options() {
  identity_options o;
  o.resident_id_systems = {"urn:yilian:resident-id"};
  o.card_systems = {"urn:yilian:insurance", ""};
  return o;
}

inline std::string mrn_system(std::uint32_t hospital) {
  return cat("urn:yilian:h", std::to_string(hospital), ":mrn");
}

// One event of the measured stream.
enum class stream_kind : std::uint8_t {
  link,    // the same person arriving from another hospital (a new MRN there)
  update,  // a known MRN again, new phone
  fresh,   // a new person
};

struct stream_event {
  stream_kind kind;
  source_record record;
};

// What the truth says about an index, over every MRN issued so far.
struct truth_figures {
  std::size_t records = 0;  // MRNs the index knows
  std::size_t wrong = 0;    // records sharing an enterprise person with someone else's
  std::size_t missed = 0;   // records apart from their person's first record
};

// The people, their hospital records and the truth.
struct population {
  generator gen;
  std::vector<person> people;
  std::vector<std::uint8_t> home;       // hospital of each person's first record
  std::vector<std::uint32_t> mrn_of;    // MRN of that record
  std::vector<std::uint8_t> pinyin_of;  // whether that record came in pinyin
  std::vector<std::uint32_t> truth_of{0};  // MRN -> person
  std::vector<std::uint8_t> hosp_of{0};    // MRN -> hospital
  std::uint32_t next_mrn = 1;

  explicit population(std::uint64_t seed) : gen(seed) {}

  std::uint32_t issue(std::uint32_t who, std::uint32_t h) {
    truth_of.push_back(who);
    hosp_of.push_back(static_cast<std::uint8_t>(h));
    return next_mrn++;
  }

  // The bench's own memory (not the index's; subtracted from RSS).
  std::size_t bytes() const {
    return people.capacity() * sizeof(person) + home.capacity() + mrn_of.capacity() * 4 + pinyin_of.capacity() +
           truth_of.capacity() * 4 + hosp_of.capacity() + gen.rid_seqs.size() * 32;
  }

  // The first record of person `who` (as grow() issued it).
  source_record first_record(std::uint32_t who) {
    return gen.record(people[who], home[who], mrn_of[who], pinyin_of[who] != 0);
  }

  // Adds people up to `target` (families of 1-4 sharing phone and district,
  // 80% sharing the surname, 3% twins), calling `added(who)` after each, in
  // order. Every person is distinct, so any link made while loading them is a
  // wrong merge.
  void grow(std::size_t target, const std::function<void(std::uint32_t who)>& added) {
    while (people.size() < target) {
      const std::size_t fam = 1 + gen.pick(4);
      const std::size_t first = people.size();
      for (std::size_t k = 0; k < fam && people.size() < target; ++k) {
        const bool twin = k > 0 && gen.chance(0.03);
        const person p = gen.make(k == 0 ? nullptr : &people[first], twin ? &people[people.size() - 1] : nullptr,
                                  std::span<const person>(people.data() + first, people.size() - first));
        people.push_back(p);
        const auto h = static_cast<std::uint32_t>(gen.pick(10));
        const auto who = static_cast<std::uint32_t>(people.size() - 1);
        home.push_back(static_cast<std::uint8_t>(h));
        mrn_of.push_back(issue(who, h));
        pinyin_of.push_back(gen.chance(0.3) ? 1 : 0);
        added(who);
      }
    }
  }

  // The measured stream: 50% the same person arriving from another hospital
  // (links), 30% an update of a known MRN (new phone), 20% a new person.
  std::vector<stream_event> make_stream(std::size_t events) {
    std::vector<stream_event> stream;
    stream.reserve(events);
    const std::size_t known = people.size();
    for (std::size_t e = 0; e < events; ++e) {
      const double r = std::uniform_real_distribution<double>(0, 1)(gen.rng);
      const auto who = static_cast<std::uint32_t>(gen.pick(known));
      if (r < 0.5) {
        const auto h = static_cast<std::uint32_t>((home[who] + 1 + gen.pick(9)) % 10);
        const std::uint32_t mrn = issue(who, h);
        stream.push_back({stream_kind::link, gen.record(people[who], h, mrn, gen.chance(0.5))});
      } else if (r < 0.8) {
        person p = people[who];
        p.phone += 1;
        stream.push_back({stream_kind::update, gen.record(p, home[who], mrn_of[who], false)});
      } else {
        people.push_back(gen.make(nullptr));
        const auto h = static_cast<std::uint32_t>(gen.pick(10));
        const auto nw = static_cast<std::uint32_t>(people.size() - 1);
        home.push_back(static_cast<std::uint8_t>(h));
        mrn_of.push_back(issue(nw, h));
        pinyin_of.push_back(gen.chance(0.3) ? 1 : 0);
        stream.push_back({stream_kind::fresh, gen.record(people.back(), h, mrn_of.back(), pinyin_of.back() != 0)});
      }
    }
    return stream;
  }

  // Against the truth, over every record issued so far: an enterprise person
  // holding records of two people is a wrong merge; a record apart from its
  // person's first record is a missed link (or a pending review).
  // `person_of(system, value)` answers the enterprise person of a record key,
  // or nothing when the index does not know it.
  template <class PersonOf>
  truth_figures check(PersonOf&& person_of) const {
    truth_figures out;
    std::unordered_map<std::uint64_t, std::uint32_t> owner;  // enterprise id -> person
    for (std::uint32_t m = 1; m < next_mrn; ++m) {
      const std::optional<std::uint64_t> e = person_of(mrn_system(hosp_of[m]), std::to_string(m));
      if (!e) continue;
      ++out.records;
      auto [it, fresh] = owner.try_emplace(*e, truth_of[m]);
      if (!fresh && it->second != truth_of[m]) ++out.wrong;
      const std::uint32_t first = mrn_of[truth_of[m]];
      if (first != m && person_of(mrn_system(hosp_of[first]), std::to_string(first)) != e) ++out.missed;
    }
    return out;
  }
};

}  // namespace yilian::identity::bench
