// Identity index throughput: patient events linked per second, and memory,
// with 100k and then 1M patients already in the index.
//
//   identity_bench [--sizes 100000,1000000] [--events 50000] [--seed 7]
//
// Synthetic population (fixed seed): hanzi names (70%) or pinyin (30%) over
// 24 surnames and ~60 given-name characters, families sharing a phone, valid
// resident IDs (90%; 2% broken check digits), insurance cards (70%), ten
// hospitals. Loading prints its own rate; then, at each size, a measured
// stream of events: 50% the same person arriving from another hospital
// (links), 30% an update of a known MRN, 20% a new person. One thread, as in
// the engine (the index lives on the patient-topic strand).
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "engine/identity/index.h"
#include "engine/identity/resident_id.h"

using namespace yilian::identity;
using clk = std::chrono::steady_clock;

namespace {

constexpr const char* surnames[] = {"王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙",
                                    "马", "朱", "胡", "郭", "何", "高", "林", "罗", "郑", "梁", "谢", "宋"};
constexpr const char* surname_pinyin[] = {"Wang", "Li",  "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao",
                                          "Wu",   "Zhou", "Xu",   "Sun", "Ma",   "Zhu",  "Hu",    "Guo",
                                          "He",   "Gao", "Lin",   "Luo", "Zheng", "Liang", "Xie", "Song"};
constexpr const char* given_han[] = {"伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛",
                                     "明", "超", "霞", "平", "刚", "建", "国", "华", "志", "红", "海", "燕", "东", "文", "玉",
                                     "兰", "春", "梅", "丹", "鑫", "宇", "浩", "涵", "怡", "轩", "婷", "博", "佳", "诺", "秀",
                                     "英", "辉", "鹏", "慧", "琳", "斌", "凯", "晨", "阳", "欣", "雪", "飞", "波", "云", "峰"};
constexpr const char* given_py[] = {"wei", "fang", "na",  "min",  "jing", "li",   "qiang", "lei",  "jun",  "yang",
                                    "yong", "yan", "jie", "juan", "tao",  "ming", "chao",  "xia",  "ping", "gang",
                                    "jian", "guo", "hua", "zhi",  "hong", "hai",  "yan",   "dong", "wen",  "yu",
                                    "lan", "chun", "mei", "dan",  "xin",  "yu",   "hao",   "han",  "yi",   "xuan",
                                    "ting", "bo",  "jia", "nuo",  "xiu",  "ying", "hui",   "peng", "hui",  "lin",
                                    "bin", "kai",  "chen", "yang", "xin", "xue",  "fei",   "bo",   "yun",  "feng"};
constexpr const char* regions[] = {"110105", "310104", "440106", "320102", "510104", "420102", "370102", "330106"};

struct person {
  std::uint8_t surname;
  std::uint8_t g1, g2;  // g2 = 255: one-character given name
  civil_date born;
  bool male;
  std::uint8_t region;
  std::uint32_t seq;
  std::uint64_t phone;
  std::uint32_t insurance;  // 0 = none
  std::uint8_t rid_kind;    // 0 valid, 1 broken, 2 none
};

// Concatenation without operator+ (g++ 12 -Wrestrict false positives).
std::string cat(std::string_view a, std::string_view b, std::string_view c = {}) {
  std::string s;
  s.reserve(a.size() + b.size() + c.size());
  s.append(a).append(b).append(c);
  return s;
}

struct generator {
  std::mt19937_64 rng;
  std::uint64_t phone_seq = 0;
  std::uint32_t seq = 0;
  explicit generator(std::uint64_t seed) : rng(seed) {}
  std::size_t pick(std::size_t n) { return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng); }
  bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; }

  person make(const person* family) {
    person p{};
    p.surname = static_cast<std::uint8_t>(family && chance(0.8) ? family->surname : pick(std::size(surnames)));
    p.g1 = static_cast<std::uint8_t>(pick(std::size(given_han)));
    p.g2 = chance(0.7) ? static_cast<std::uint8_t>(pick(std::size(given_han))) : 255;
    p.born = civil_date{.year = static_cast<std::int16_t>(1940 + pick(80)), .month = static_cast<std::uint8_t>(1 + pick(12)),
                        .day = static_cast<std::uint8_t>(1 + pick(28))};
    p.male = chance(0.5);
    p.region = static_cast<std::uint8_t>(family ? family->region : pick(std::size(regions)));
    p.seq = seq++;
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
      std::snprintf(buf, sizeof buf, "%s%04d%02d%02d%03u", regions[p.region], p.born.year, p.born.month, p.born.day,
                    (p.seq % 499U) * 2U + (p.male ? 1U : 0U));
      std::string rid(buf, 17);
      char check = resident_id_check_character(rid);
      if (p.rid_kind == 1) check = check == '0' ? '1' : '0';
      rid.push_back(check);
      r.identifiers.push_back({.system = "urn:yilian:resident-id", .value = std::move(rid)});
    }
    if (p.insurance) r.identifiers.push_back({.system = "urn:yilian:insurance", .value = cat("YB", std::to_string(p.insurance))});
    if (pinyin) {
      r.demo.family_name = surname_pinyin[p.surname];
      r.demo.given_name = given_py[p.g1];
      if (p.g2 != 255) r.demo.given_name += given_py[p.g2];
    } else {
      r.demo.family_name = surnames[p.surname];
      r.demo.given_name = given_han[p.g1];
      if (p.g2 != 255) r.demo.given_name += given_han[p.g2];
    }
    r.demo.birth_date = p.born;
    r.demo.sex = p.male ? sex::male : sex::female;
    r.demo.phone = std::to_string(p.phone);
    r.demo.city = regions[p.region];
    return r;
  }
};

long rss_kb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return 0;
}

identity_options options() {
  identity_options o;
  o.resident_id_systems = {"urn:yilian:resident-id"};
  o.card_systems = {"urn:yilian:insurance", ""};
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::size_t> sizes{100000, 1000000};
  std::size_t events = 50000;
  std::uint64_t seed = 7;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--sizes")) {
      sizes.clear();
      std::string s = argv[i + 1];
      for (std::size_t at = 0; at < s.size();) {
        std::size_t comma = s.find(',', at);
        if (comma == std::string::npos) comma = s.size();
        sizes.push_back(std::stoul(s.substr(at, comma - at)));
        at = comma + 1;
      }
    } else if (!std::strcmp(argv[i], "--events")) {
      events = std::stoul(argv[i + 1]);
    } else if (!std::strcmp(argv[i], "--seed")) {
      seed = std::stoull(argv[i + 1]);
    }
  }

  const bool debug = std::getenv("IDENTITY_DEBUG") != nullptr;
  const long rss0 = rss_kb();
  generator gen(seed);
  identity_index ix(options());
  const long rss_base = rss_kb();
  std::vector<person> people;  // the bench's own truth, not part of the index's memory
  std::vector<std::uint32_t> home;  // hospital of each person's first record
  std::vector<std::uint64_t> mrn_of;  // MRN of that record
  std::uint64_t next_mrn = 1;
  std::printf("ICU name tables: %ld kB\n", rss_base - rss0);

  for (std::size_t target : sizes) {
    // Load up to `target` patients (families of 1-4).
    std::array<std::size_t, 8> load_links{};
    const auto load_start = clk::now();
    const std::size_t before = people.size();
    while (people.size() < target) {
      const std::size_t fam = 1 + gen.pick(4);
      const std::size_t first = people.size();
      for (std::size_t k = 0; k < fam && people.size() < target; ++k) {
        people.push_back(gen.make(k == 0 ? nullptr : &people[first]));
        const auto h = static_cast<std::uint32_t>(gen.pick(10));
        home.push_back(h);
        mrn_of.push_back(next_mrn);
        std::vector<candidate_trace> tr;
        const decision d = ix.upsert(gen.record(people.back(), h, next_mrn++, gen.chance(0.3)), debug ? &tr : nullptr);
        if (d.outcome == outcome::linked) {
          ++load_links[static_cast<std::size_t>(d.by)];
          for (const auto& t : tr) {
            if (t.verdict.v != verdict::link) continue;
            std::string lv;
            for (auto l : t.c.level) lv += l == missing_level ? '-' : static_cast<char>('0' + l);
            std::printf("  load link: levels %s score %.1f rule %s\n", lv.c_str(), t.verdict.score,
                        std::string(to_string(t.verdict.by)).c_str());
          }
        }
      }
    }
    const double load_s = std::chrono::duration<double>(clk::now() - load_start).count();
    const auto st = ix.stats();
    const long rss = rss_kb();
    std::printf("\nloaded %zu patients (%zu new) in %.1f s: %.0f records/s\n", people.size(), people.size() - before,
                load_s, static_cast<double>(people.size() - before) / load_s);
    std::printf("  links while loading distinct people (generator collisions: same name, birth date and phone, or same ID):");
    for (std::size_t r = 0; r < load_links.size(); ++r) {
      if (load_links[r]) std::printf(" %s %zu", std::string(to_string(static_cast<rule>(r))).c_str(), load_links[r]);
    }
    std::printf("\n");
    std::printf("  index: %zu records, %zu persons, %zu block keys, %zu postings, ~%.0f bytes/record (own estimate)\n",
                st.records, st.persons, st.block_keys, st.block_postings,
                static_cast<double>(st.memory_bytes) / static_cast<double>(st.records));
    std::printf("  RSS %.0f MB; %.0f bytes per record over the empty index (incl. allocator overhead and the bench's "
                "own %zu-byte-per-person truth table)\n",
                static_cast<double>(rss) / 1024.0,
                static_cast<double>(rss - rss_base) * 1024.0 / static_cast<double>(st.records),
                sizeof(person) + sizeof(std::uint32_t));

    // Pre-build the measured events so generation is not timed.
    std::vector<source_record> stream;
    stream.reserve(events);
    std::vector<person> fresh;
    for (std::size_t e = 0; e < events; ++e) {
      const double r = std::uniform_real_distribution<double>(0, 1)(gen.rng);
      const std::size_t who = gen.pick(people.size());
      if (r < 0.5) {  // the same person at another hospital
        const auto h = static_cast<std::uint32_t>((home[who] + 1 + gen.pick(9)) % 10);
        stream.push_back(gen.record(people[who], h, next_mrn++, gen.chance(0.5)));
      } else if (r < 0.8) {  // update of a known record: new phone
        person p = people[who];
        p.phone += 1;
        stream.push_back(gen.record(p, home[who], mrn_of[who], false));
      } else {
        fresh.push_back(gen.make(nullptr));
        stream.push_back(gen.record(fresh.back(), static_cast<std::uint32_t>(gen.pick(10)), next_mrn++, gen.chance(0.3)));
      }
    }
    std::vector<double> lat;
    lat.reserve(events);
    std::size_t linked = 0, review = 0, updated = 0, fresh_persons = 0, compared = 0;
    const auto t0 = clk::now();
    for (const auto& rec : stream) {
      const auto a = clk::now();
      const decision d = ix.upsert(rec);
      lat.push_back(std::chrono::duration<double, std::micro>(clk::now() - a).count());
      compared += d.compared;
      switch (d.outcome) {
        case outcome::linked: ++linked; break;
        case outcome::review: ++review; break;
        case outcome::updated: ++updated; break;
        case outcome::new_person: ++fresh_persons; break;
      }
    }
    const double secs = std::chrono::duration<double>(clk::now() - t0).count();
    std::sort(lat.begin(), lat.end());
    auto pct = [&](double q) { return lat[static_cast<std::size_t>(q * static_cast<double>(lat.size() - 1))]; };
    std::printf("  %zu events at %zu patients: %.0f events/s, p50 %.1f us, p99 %.1f us, max %.0f us, "
                "%.1f candidates/event\n",
                events, people.size(), static_cast<double>(events) / secs, pct(0.5), pct(0.99), lat.back(),
                static_cast<double>(compared) / static_cast<double>(events));
    std::printf("  outcomes: linked %zu, review %zu, updated %zu, new %zu\n", linked, review, updated, fresh_persons);
  }
  return 0;
}
