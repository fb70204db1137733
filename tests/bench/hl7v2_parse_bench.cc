// Parse + map throughput of the HL7 v2 adapter on the mixed corpus
// (tests/data/hl7v2/corpus): charset decoding, parsing and mapping each
// message through its hospital's profile into events, one thread. Reports
// messages per CPU-second of the benchmark thread (fair on a loaded machine)
// and per wall-second, as JSON. tests/bench/hl7v2_vs_hapi runs it side by side
// with HAPI's PipeParser on the same files.
//
//   build/bin/hl7v2_parse_bench [--corpus DIR] [--config DIR] [--seconds 10] [--warmup 3]
#include <time.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "adapters/hl7v2/charset.h"
#include "adapters/hl7v2/mapping.h"
#include "adapters/hl7v2/message.h"
#include "engine/config/config.h"

namespace fs = std::filesystem;
using namespace yilian;

namespace {

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

struct item {
  std::string file;
  std::string bytes;
  hl7v2::charset fallback;
  const hl7v2::mapper* map;
};

}  // namespace

int main(int argc, char** argv) {
  std::string source = std::getenv("YILIAN_SOURCE_DIR") ? std::getenv("YILIAN_SOURCE_DIR") : ".";
  std::string corpus = source + "/tests/data/hl7v2/corpus";
  std::string config_dir = source + "/deploy/examples/consortium";
  double seconds = 10;
  double warmup = 3;
  bool parse_only = false;
  CLI::App app{"HL7 v2 decode + parse + map throughput on the corpus (JSON on stdout)"};
  app.add_option("--corpus", corpus, "Corpus directory with index.json");
  app.add_option("--config", config_dir, "Consortium whose profiles map the messages");
  app.add_option("--seconds", seconds, "Measured CPU seconds");
  app.add_option("--warmup", warmup, "Warm-up CPU seconds");
  app.add_flag("--parse-only", parse_only, "Decode and parse only (no mapping)");
  CLI11_PARSE(app, argc, argv);

  auto cfg = config::load_consortium(config_dir, config::load_options{.data_dir = fs::temp_directory_path()});
  if (!cfg) {
    std::fprintf(stderr, "config: %s\n", cfg.error().describe().c_str());
    return 2;
  }
  std::map<std::string, hl7v2::mapper> mappers;
  auto generic = hl7v2::mapper::compile(&*cfg, nullptr, "");
  if (!generic) {
    std::fprintf(stderr, "generic mapper: %s\n", generic.error().describe().c_str());
    return 2;
  }
  for (const auto& p : cfg->profiles) {
    auto m = hl7v2::mapper::compile(&*cfg, &p.profile, p.hospital_id);
    if (!m) {
      std::fprintf(stderr, "%s: %s\n", p.hospital_id.c_str(), m.error().describe().c_str());
      return 2;
    }
    mappers.emplace(p.hospital_id, std::move(*m));
  }
  std::ifstream idx(fs::path(corpus) / "index.json");
  const auto index = nlohmann::json::parse(idx);
  std::vector<item> items;
  std::size_t total_bytes = 0;
  std::vector<std::string> skipped;
  for (const auto& e : index) {
    const std::string file = e.at("file");
    std::ifstream in(fs::path(corpus) / file, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string hospital = e.value("hospital", "");
    const auto* profile = cfg->profile(hospital);
    const hl7v2::mapper* m = mappers.contains(hospital) ? &mappers.at(hospital) : &*generic;
    item it{file, ss.str(), profile ? profile->default_charset() : config::v1::CHARSET_UTF8, m};
    // Only messages the adapter accepts are timed (errors are another path).
    auto d = hl7v2::decode_message(it.bytes, it.fallback);
    auto parsed = d ? hl7v2::message::parse(d->utf8) : std::unexpected(d.error());
    auto mapped = parsed ? m->map(*parsed, {}, std::chrono::system_clock::now())
                         : std::unexpected(parsed.error());
    if (!mapped) {
      skipped.push_back(file + ": " + mapped.error().describe());
      continue;
    }
    total_bytes += it.bytes.size();
    items.push_back(std::move(it));
  }
  if (items.empty()) {
    std::fprintf(stderr, "no usable messages in %s\n", corpus.c_str());
    return 2;
  }
  const events::v1::ClaimCheck raw;
  const auto now = std::chrono::system_clock::now();
  std::size_t events_out = 0;
  // One batch for the whole run, as a session would keep one: its arena
  // block is reused message after message.
  hl7v2::mapped_batch batch;
  auto pass = [&] {
    for (const auto& it : items) {
      auto d = hl7v2::decode_message(it.bytes, it.fallback);
      auto parsed = hl7v2::message::parse(std::move(d->utf8));
      if (parse_only) {
        events_out += parsed->segment_count();
        continue;
      }
      auto mapped = it.map->map_into(*parsed, raw, now, batch);
      events_out += mapped ? batch.size() : 0;
    }
  };
  const double w0 = thread_cpu_seconds();
  while (thread_cpu_seconds() - w0 < warmup) pass();
  std::size_t passes = 0;
  const double c0 = thread_cpu_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  while (thread_cpu_seconds() - c0 < seconds) {
    pass();
    ++passes;
  }
  const double cpu = thread_cpu_seconds() - c0;
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double messages = static_cast<double>(passes * items.size());
  std::printf(
      "{\"tool\":\"yilian\",\"what\":\"%s\",\"files\":%zu,\"skipped\":%zu,\"passes\":%zu,\"messages\":%.0f,"
      "\"cpu_seconds\":%.3f,\"msgs_per_cpu_sec\":%.0f,\"wall_seconds\":%.3f,\"msgs_per_sec\":%.0f,"
      "\"mb_per_cpu_sec\":%.1f,\"us_per_msg\":%.3f,\"events\":%zu}\n",
      parse_only ? "decode+parse" : "decode+parse+map", items.size(), skipped.size(), passes, messages, cpu,
      messages / cpu, wall, messages / wall, static_cast<double>(total_bytes * passes) / cpu / 1e6,
      cpu / messages * 1e6, events_out);
  for (const auto& s : skipped) std::fprintf(stderr, "skipped %s\n", s.c_str());
  return 0;
}
