// Feeds Febrl person records through yilian's identity index and writes what
// it compared (the candidate pairs its blocking produced, with scores) and
// what it linked. Driven by febrl_eval.py, which computes the figures and
// runs recordlinkage's ECM classifier on exactly these candidate pairs.
//
//   identity_febrl_eval link|dedup RECORDS.tsv CANDIDATES.tsv LINKS.tsv [--em] [--no-household-holds]
//
// RECORDS.tsv: rec_id side given_name surname street_number address_1
// address_2 suburb postcode state date_of_birth soc_sec_id (tab-separated,
// empty = missing). link: side A is loaded first, then every side B record is
// upserted; candidates are the (A, B) pairs compared. dedup: records are
// upserted in file order; candidates are all (earlier, new) pairs compared.
// --em: a first pass collects the comparison vectors of all candidate pairs,
// EM estimates m/u from them (unsupervised), and a second pass links with
// those weights.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "engine/identity/index.h"

using namespace yilian::identity;

namespace {

struct febrl_record {
  std::string id, side;
  source_record r;
};

const std::string key_system = "urn:febrl:rec";
const std::string soc_sec_system = "urn:febrl:soc_sec";

civil_date parse_date(const std::string& s) {
  if (s.size() != 8) return {};
  for (char c : s) {
    if (c < '0' || c > '9') return {};
  }
  const int y = std::stoi(s.substr(0, 4)), m = std::stoi(s.substr(4, 2)), d = std::stoi(s.substr(6, 2));
  if (!is_real_date(y, m, d)) return {};
  return civil_date{.year = static_cast<std::int16_t>(y), .month = static_cast<std::uint8_t>(m),
                    .day = static_cast<std::uint8_t>(d)};
}

std::vector<febrl_record> read_records(const std::string& path) {
  std::ifstream in(path);
  std::vector<febrl_record> out;
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    std::string cell;
    while (std::getline(ss, cell, '\t')) f.push_back(cell);
    f.resize(12);
    febrl_record fr{.id = f[0], .side = f[1]};
    fr.r.hospital = f[1];
    fr.r.identifiers.push_back({.system = key_system, .value = f[0]});
    if (!f[11].empty()) fr.r.identifiers.push_back({.system = soc_sec_system, .value = f[11]});
    fr.r.demo.given_name = f[2];
    fr.r.demo.family_name = f[3];
    fr.r.demo.street_number = f[4];
    fr.r.demo.line1 = f[5];
    fr.r.demo.line2 = f[6];
    fr.r.demo.city = f[7];
    fr.r.demo.postcode = f[8];
    fr.r.demo.province = f[9];
    fr.r.demo.birth_date = parse_date(f[10]);
    out.push_back(std::move(fr));
  }
  return out;
}

struct run_result {
  std::vector<comparison> vectors;
};

run_result run(const std::vector<febrl_record>& recs, bool link_mode, const identity_options& opt,
               std::ostream* candidates, std::ostream* links) {
  identity_index ix(opt);
  run_result rr;
  std::map<std::uint32_t, const febrl_record*> by_record;
  std::vector<candidate_trace> trace;
  auto feed = [&](const febrl_record& fr, bool record_pairs) {
    trace.clear();
    ix.upsert(fr.r, &trace);
    const auto rec = *ix.record_of(fr.r.identifiers.front());
    by_record[rec] = &fr;
    if (!record_pairs) return;
    for (const auto& t : trace) {
      const febrl_record* other = by_record[t.record];
      if (link_mode && other->side != "A") continue;
      rr.vectors.push_back(t.c);
      if (candidates) {
        *candidates << other->id << '\t' << fr.id << '\t' << t.verdict.score << '\t' << to_string(t.verdict.v)
                    << '\t' << to_string(t.verdict.by) << '\t' << to_string(t.verdict.held) << '\n';
      }
    }
  };
  if (link_mode) {
    for (const auto& fr : recs) {
      if (fr.side == "A") feed(fr, false);
    }
    for (const auto& fr : recs) {
      if (fr.side == "B") feed(fr, true);
    }
  } else {
    for (const auto& fr : recs) feed(fr, true);
  }
  if (links) {
    // Every pair of records sharing an enterprise person (A-B pairs only in link mode).
    std::map<std::uint32_t, std::vector<const febrl_record*>> members;
    for (const auto& [rec, fr] : by_record) members[ix.person_of(fr->r.identifiers.front())->value()].push_back(fr);
    for (const auto& [p, list] : members) {
      for (std::size_t i = 0; i < list.size(); ++i) {
        for (std::size_t j = i + 1; j < list.size(); ++j) {
          const febrl_record *x = list[i], *y = list[j];
          if (link_mode) {
            if (x->side == y->side) continue;
            if (x->side == "B") std::swap(x, y);
          }
          *links << x->id << '\t' << y->id << '\n';
        }
      }
    }
  }
  const auto st = ix.stats();
  std::cerr << "records " << st.records << " persons " << st.persons << " reviews open " << ix.open_reviews().size()
            << " candidate pairs " << rr.vectors.size() << "\n";
  return rr;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::cerr << "usage: identity_febrl_eval link|dedup RECORDS.tsv CANDIDATES.tsv LINKS.tsv [--em]\n";
    return 2;
  }
  const bool link_mode = std::string(argv[1]) == "link";
  bool em = false, household_holds = true;
  for (int i = 5; i < argc; ++i) {
    em |= std::string(argv[i]) == "--em";
    if (std::string(argv[i]) == "--no-household-holds") household_holds = false;
  }
  const auto recs = read_records(argv[2]);
  identity_options opt;
  opt.card_systems = {soc_sec_system, ""};
  // Febrl has no hospitals: in deduplication every record comes from one
  // source, so the same-domain hold (meant for a hospital's own duplicates) is off.
  opt.match.hold_same_domain = link_mode;
  // The holds that protect households (twins: a name part disagreeing or a
  // given name only similar; parent and child of the same name: birth dates
  // disagreeing) assume households exist. Febrl generates none, and its
  // errors include whole-field replacements that look exactly like them.
  opt.match.hold_name_disagrees = household_holds;
  opt.match.hold_given_name_similar = household_holds;
  opt.match.hold_birth_date_disagrees = household_holds;
  if (em) {
    const auto first = run(recs, link_mode, opt, nullptr, nullptr);
    const auto est = estimate_weights(first.vectors, opt.match.weights);
    opt.match.weights = est.weights;
    std::cerr << "EM: " << est.iterations << " iterations, match share " << est.match_share << "\n";
    for (std::size_t f = 0; f < field_count; ++f) {
      std::cerr << "  " << to_string(static_cast<field>(f)) << ":";
      for (std::size_t l = 0; l < level_count(static_cast<field>(f)); ++l) {
        std::fprintf(stderr, " m=%.4f u=%.5f w=%+.2f", est.weights.m[f][l], est.weights.u[f][l], est.weights.w[f][l]);
      }
      std::cerr << "\n";
    }
  }
  std::ofstream candidates(argv[3]), links(argv[4]);
  run(recs, link_mode, opt, &candidates, &links);
  return 0;
}
