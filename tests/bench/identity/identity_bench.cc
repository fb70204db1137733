// Identity index throughput: patient events linked per second, and memory,
// with 100k and then 1M patients already in the index.
//
//   identity_bench [--sizes 100000,1000000] [--events 50000] [--seed 7]
//
// Synthetic population (fixed seed; population.h, shared with
// identity_bus_bench): realistic Chinese names, families, twins, resident
// IDs, insurance cards, ten hospitals; the generator keeps the truth, and the
// bench counts wrong merges and missed links against it. Loading prints its
// own rate; then, at each size, a measured
// stream of events: 50% the same person arriving from another hospital
// (links), 30% an update of a known MRN, 20% a new person. One thread, as in
// the engine (the index lives on the patient-topic strand).
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <ctime>

#include "engine/identity/index.h"
#include "tests/bench/identity/population.h"

using namespace yilian::identity;
using namespace yilian::identity::bench;
using clk = std::chrono::steady_clock;

// CPU seconds of this thread: the cost of linking whatever else runs on the
// machine (wall-clock rates swing with the load of a shared 2-core box).
static double thread_cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

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
  population pop(seed);
  identity_index ix(options());
  const long rss_base = rss_kb();
  std::printf("ICU name tables: %ld kB\n", rss_base - rss0);

  for (std::size_t target : sizes) {
    // Load up to `target` patients. Every person is distinct, so any link
    // made while loading is a wrong merge.
    std::array<std::size_t, 8> load_links{}, load_reviews{};
    const auto load_start = clk::now();
    const std::size_t before = pop.people.size();
    pop.grow(target, [&](std::uint32_t who) {
      std::vector<candidate_trace> tr;
      const decision d = ix.upsert(pop.first_record(who), debug ? &tr : nullptr);
      if (d.outcome == outcome::review) ++load_reviews[static_cast<std::size_t>(d.held)];
      if (d.outcome == outcome::linked) ++load_links[static_cast<std::size_t>(d.by)];
      if (d.outcome == outcome::linked || d.outcome == outcome::review) {
        for (const auto& t : tr) {
          if (t.verdict.v == verdict::no_link) continue;
          std::string lv;
          for (auto l : t.c.level) lv += l == missing_level ? '-' : static_cast<char>('0' + l);
          std::printf("  load %s: levels %s score %.1f rule %s\n", std::string(to_string(t.verdict.v)).c_str(), lv.c_str(),
                      t.verdict.score, std::string(to_string(t.verdict.by)).c_str());
        }
      }
    });
    const double load_s = std::chrono::duration<double>(clk::now() - load_start).count();
    const auto st = ix.stats();
    const long rss = rss_kb();
    std::printf("\nloaded %zu patients (%zu new) in %.1f s: %.0f records/s\n", pop.people.size(), pop.people.size() - before,
                load_s, static_cast<double>(pop.people.size() - before) / load_s);
    std::size_t wrong_load = 0;
    std::printf("  links while loading distinct people (each a wrong merge):");
    for (std::size_t r = 0; r < load_links.size(); ++r) {
      if (load_links[r]) std::printf(" %s %zu", std::string(to_string(static_cast<rule>(r))).c_str(), load_links[r]);
      wrong_load += load_links[r];
    }
    std::printf("%s; thresholds in force: upper %.1f, lower %.1f bits\n", wrong_load ? "" : " none",
                thresholds_for(options().match, static_cast<double>(st.persons)).upper,
                thresholds_for(options().match, static_cast<double>(st.persons)).lower);
    std::printf("  queued for review while loading, by hold:");
    for (std::size_t h = 0; h < load_reviews.size(); ++h) {
      if (load_reviews[h]) std::printf(" %s %zu", std::string(to_string(static_cast<hold>(h))).c_str(), load_reviews[h]);
    }
    std::printf("\n");
    std::printf("  index: %zu records, %zu persons, %zu block keys, %zu postings, ~%.0f bytes/record (own estimate)\n",
                st.records, st.persons, st.block_keys, st.block_postings,
                static_cast<double>(st.memory_bytes) / static_cast<double>(st.records));
    const double truth_kb = static_cast<double>(pop.bytes()) / 1024.0;
    std::printf("  RSS %.0f MB; %.0f bytes per record over the empty index (allocator overhead included, the bench's "
                "own %.0f MB truth tables excluded)\n",
                static_cast<double>(rss) / 1024.0,
                (static_cast<double>(rss - rss_base) - truth_kb) * 1024.0 / static_cast<double>(st.records),
                truth_kb / 1024.0);

    // Pre-build the measured events so generation is not timed.
    const std::size_t known = pop.people.size();
    const std::vector<stream_event> stream = pop.make_stream(events);
    std::vector<double> lat;
    lat.reserve(events);
    std::size_t linked = 0, review = 0, updated = 0, fresh_persons = 0, compared = 0, walked = 0;
    const auto t0 = clk::now();
    const double cpu0 = thread_cpu_s();
    for (const auto& ev : stream) {
      const auto a = clk::now();
      const decision d = ix.upsert(ev.record);
      lat.push_back(std::chrono::duration<double, std::micro>(clk::now() - a).count());
      compared += d.compared;
      walked += d.walked;
      switch (d.outcome) {
        case outcome::linked: ++linked; break;
        case outcome::review: ++review; break;
        case outcome::updated: ++updated; break;
        case outcome::new_person: ++fresh_persons; break;
      }
    }
    const double secs = std::chrono::duration<double>(clk::now() - t0).count();
    const double cpu_secs = thread_cpu_s() - cpu0;
    std::sort(lat.begin(), lat.end());
    auto pct = [&](double q) { return lat[static_cast<std::size_t>(q * static_cast<double>(lat.size() - 1))]; };
    std::printf("  %zu events at %zu patients: %.0f events/s, %.0f events per CPU-second (%.2f us CPU/event), p50 %.1f us, "
                "p99 %.1f us, max %.0f us, %.2f candidates/event (%.2f block postings read)\n",
                events, known, static_cast<double>(events) / secs, static_cast<double>(events) / cpu_secs,
                cpu_secs * 1e6 / static_cast<double>(events), pct(0.5), pct(0.99), lat.back(),
                static_cast<double>(compared) / static_cast<double>(events),
                static_cast<double>(walked) / static_cast<double>(events));
    std::printf("  outcomes: linked %zu, review %zu, updated %zu, new %zu\n", linked, review, updated, fresh_persons);

    // Against the truth, over every record issued so far.
    const truth_figures truth = pop.check([&](const std::string& system, const std::string& value) {
      const auto e = ix.person_of({.system = system, .value = value});
      return e ? std::optional<std::uint64_t>(e->value()) : std::nullopt;
    });
    std::printf("  truth over %zu records: wrong merges %zu (records sharing a person with someone else's), "
                "missed links %zu; open reviews %zu\n",
                truth.records, truth.wrong, truth.missed, ix.open_reviews().size());
  }
  return 0;
}
