// Identity index through the bus: patient events linked per second end to
// end, and memory, with 100k and then 1M patients already in the index.
//
//   identity_bus_bench [--sizes 100000,1000000] [--events 50000] [--seed 7]
//                      [--dir DIR] [--window 4096] [--keep]
//
// The same population and stream as identity_bench (population.h, same seed),
// but through the engine path: PatientRegistered / PatientUpdated envelopes
// (MRN with its hospital as assigner, resident ID, insurance card; hanzi or
// pinyin name, birth date, sex, mobile phone, district) published to
// yilian.patient.v1 on an embedded log in a temporary directory, with the
// identity service running (feed -> yilian.identity.v1 -> view -> writer
// announcing PatientLinkChanged on yilian.patient.v1). "Applied" means the
// view has folded the event into its index (readers see it); announcements
// are timed separately.
//
// At each size: (a) load: the bare matcher (identity_index, same process,
// same records) and then the bus are loaded up to the size; (b) a measured
// stream (50% the same person from another hospital, 30% updates, 20% new
// people) runs through the bare matcher and then through the bus, so the
// report has the ratio bus / matcher on the same data. Latency from publish
// to applied comes from a 1 ms timeline of the view's applied offset and the
// identity-log offset of every stream event (read back afterwards). Wrong
// merges and missed links are counted against the generator's truth through
// the service's directory API (enterprise_id_of).
//
// Names: family and given are always set (as the HL7 adapter does for the
// ideographic repetition), with the whole name as hanzi or pinyin, so the
// service's index reads exactly the records the bare matcher reads.
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <google/protobuf/util/time_util.h>

#include "engine/bus/embedded_log.h"
#include "engine/core/metrics.h"
#include "engine/identity/index.h"
#include "engine/workflows/identity/service.h"
#include "tests/bench/identity/population.h"
#include "yilian/events/v1/envelope.pb.h"

using namespace yilian;
using namespace yilian::identity::bench;
namespace ev = yilian::events::v1;
namespace idx = yilian::identity;
namespace wid = yilian::workflows::identity;
using clk = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

const std::string patient_topic = "yilian.patient.v1";
const std::string referral_topic = "yilian.referral.v1";
const std::string log_topic = "yilian.identity.v1";

double since(clk::time_point t0, clk::time_point t = clk::now()) { return std::chrono::duration<double>(t - t0).count(); }

std::string loadavg() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

// The envelope a hospital's adapter would publish for `r`.
ev::Envelope envelope(const idx::source_record& r, bool update, const std::string& event_id,
                      const google::protobuf::Timestamp& now) {
  ev::Envelope e;
  e.set_event_id(event_id);
  e.set_type(update ? "yilian.events.v1.PatientUpdated" : "yilian.events.v1.PatientRegistered");
  e.set_schema_version(1);
  *e.mutable_occurred_at() = now;
  *e.mutable_recorded_at() = now;
  e.mutable_source()->set_hospital(r.hospital);
  e.mutable_source()->set_protocol(ev::PROTOCOL_HL7V2_MLLP);
  e.mutable_source()->set_system("HIS");
  for (const auto& id : r.identifiers) {
    auto* x = e.mutable_subject()->add_identifiers();
    x->set_system(id.system);
    x->set_value(id.value);
    if (id.system == "urn:yilian:resident-id") {
      x->set_type(ev::IDENTIFIER_TYPE_RESIDENT_ID);
    } else if (id.system == "urn:yilian:insurance") {
      x->set_type(ev::IDENTIFIER_TYPE_INSURANCE_CARD);
    } else {
      x->set_type(ev::IDENTIFIER_TYPE_MRN);
      x->set_assigner(r.hospital);
    }
  }
  ev::Demographics& d = update ? *e.mutable_patient_updated()->mutable_demographics()
                               : *e.mutable_patient_registered()->mutable_demographics();
  if (update) e.mutable_patient_updated()->set_trigger("A08");
  else e.mutable_patient_registered()->set_trigger("A04");
  auto* n = d.mutable_name();
  n->set_family(r.demo.family_name);
  n->set_given(r.demo.given_name);
  const bool ascii = !r.demo.family_name.empty() && static_cast<unsigned char>(r.demo.family_name[0]) < 0x80;
  if (ascii) n->set_pinyin(cat(r.demo.family_name, " ", r.demo.given_name));
  else n->set_hanzi(cat(r.demo.family_name, r.demo.given_name));
  char born[16];
  std::snprintf(born, sizeof born, "%04d-%02d-%02d", r.demo.birth_date.year, r.demo.birth_date.month,
                r.demo.birth_date.day);
  d.set_birth_date(born);
  d.set_sex(r.demo.sex == idx::sex::male ? ev::SEX_MALE : ev::SEX_FEMALE);
  auto* t = d.add_telecom();
  t->set_system("phone");
  t->set_value(r.demo.phone);
  t->set_use(ev::CONTACT_USE_MOBILE);
  d.add_addresses()->set_district(r.demo.city);
  return e;
}

bus::message patient_message(const idx::source_record& r, bool update, const std::string& event_id) {
  static const auto now = google::protobuf::util::TimeUtil::GetCurrentTime();
  // Keyed by hospital, as the HL7 adapter publishes patients it has no
  // enterprise id for yet.
  return bus::message{.topic = patient_topic, .key = r.hospital,
                      .value = envelope(r, update, event_id, now).SerializeAsString()};
}

// Publishes with at most `window` publishes outstanding.
class publisher {
 public:
  publisher(bus::bus& b, std::size_t window) : bus_(b), window_(window) {}
  void publish(bus::message m, std::function<void()> on_ack = {}) {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return sent_ - acked_ < window_; });
      ++sent_;
    }
    bus_.publish(std::move(m), [this, on_ack = std::move(on_ack)](result<bus::position> p) {
      if (on_ack) on_ack();
      std::lock_guard lock(mu_);
      if (!p) {
        ++failures_;
        if (first_error_.empty()) first_error_ = p.error().describe();
      }
      ++acked_;
      acked_atomic_.store(acked_, std::memory_order_relaxed);
      cv_.notify_all();
    });
  }
  void drain() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return acked_ == sent_; });
  }
  std::uint64_t acked() const { return acked_atomic_.load(std::memory_order_relaxed); }
  std::uint64_t failures() {
    std::lock_guard lock(mu_);
    return failures_;
  }
  std::string first_error() {
    std::lock_guard lock(mu_);
    return first_error_;
  }

 private:
  bus::bus& bus_;
  std::size_t window_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::uint64_t sent_ = 0, acked_ = 0, failures_ = 0;
  std::atomic<std::uint64_t> acked_atomic_{0};
  std::string first_error_;
};

// Samples the pipeline every millisecond: patient publishes acknowledged,
// records the log has committed (all topics), the view's applied offset, and
// announcements published.
struct sample {
  clk::time_point t;
  std::uint64_t acked = 0;
  std::uint64_t committed = 0;
  std::int64_t applied = 0;
  std::uint64_t announced = 0;
};

class sampler {
 public:
  sampler(bus::embedded_log& log, wid::service& svc, publisher& pub, const metrics::counter& announced)
      : log_(log), svc_(svc), pub_(pub), announced_(announced) {}
  ~sampler() { stop(); }
  void start() {
    stopping_ = false;
    samples_.clear();
    max_read_wait_ = {};
    thread_ = std::thread([this] {
      while (!stopping_.load()) {
        take();
        std::this_thread::sleep_for(1ms);
      }
      take();
    });
  }
  void stop() {
    stopping_ = true;
    if (thread_.joinable()) thread_.join();
  }
  const std::vector<sample>& samples() const { return samples_; }
  // The longest a reader (this sampler: one svc.read) waited for the view's lock.
  double max_read_wait_ms() const { return std::chrono::duration<double, std::milli>(max_read_wait_).count(); }
  sample now() const {
    sample s{.t = {}, .acked = pub_.acked(), .committed = log_.stats().records_committed,
             .applied = svc_.read([](const wid::view& v) { return v.applied_through(); }),
             .announced = static_cast<std::uint64_t>(announced_.value())};
    s.t = clk::now();
    return s;
  }

 private:
  void take() {
    const auto t0 = clk::now();
    sample s = now();
    max_read_wait_ = std::max(max_read_wait_, s.t - t0);
    if (samples_.empty() || s.applied != samples_.back().applied || s.acked != samples_.back().acked ||
        s.announced != samples_.back().announced) {
      samples_.push_back(s);
    }
  }
  bus::embedded_log& log_;
  wid::service& svc_;
  publisher& pub_;
  const metrics::counter& announced_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::vector<sample> samples_;
  clk::duration max_read_wait_{};
};

// When each stage of a phase finished, from the samples: the first sample at
// which `f(sample)` reached `target`.
template <class F>
std::optional<double> reached(const std::vector<sample>& s, clk::time_point t0, F&& f, double target) {
  for (const auto& x : s) {
    if (static_cast<double>(f(x)) >= target) return since(t0, x.t);
  }
  return std::nullopt;
}

// Waits until the view has applied the log up to `offset` (exclusive).
void wait_applied(wid::service& svc, std::int64_t offset) {
  while (svc.read([](const wid::view& v) { return v.applied_through(); }) < offset) std::this_thread::sleep_for(1ms);
}

// Waits until the announcement count has not moved for `quiet`; returns when
// it last moved.
clk::time_point wait_announcements(const metrics::counter& c, std::chrono::milliseconds quiet) {
  double last = c.value();
  auto moved = clk::now();
  while (clk::now() - moved < quiet) {
    std::this_thread::sleep_for(5ms);
    if (c.value() != last) {
      last = c.value();
      moved = clk::now();
    }
  }
  return moved;
}

void print_stages(const char* what, const std::vector<sample>& s, clk::time_point t0, std::uint64_t acked0,
                  std::int64_t applied0, std::uint64_t n) {
  // IDBENCH_TIMELINE=prefix: the samples as "<prefix>-<what>-<n>.tsv" (seconds, acknowledged, log records
  // committed, applied, announced), for looking at where the pipeline stalls.
  if (const char* prefix = std::getenv("IDBENCH_TIMELINE")) {
    const std::string path = cat(prefix, cat("-", what, "-"), cat(std::to_string(n), ".tsv"));
    if (std::FILE* f = std::fopen(path.c_str(), "w")) {
      for (const auto& x : s) {
        std::fprintf(f, "%.4f\t%llu\t%llu\t%lld\t%llu\n", since(t0, x.t), static_cast<unsigned long long>(x.acked - acked0),
                     static_cast<unsigned long long>(x.committed), static_cast<long long>(x.applied - applied0),
                     static_cast<unsigned long long>(x.announced));
      }
      std::fclose(f);
    }
  }
  const auto pub = reached(s, t0, [&](const sample& x) { return x.acked - acked0; }, static_cast<double>(n));
  const auto app = reached(s, t0, [&](const sample& x) { return x.applied - applied0; }, static_cast<double>(n));
  const auto half = reached(s, t0, [&](const sample& x) { return x.applied - applied0; }, static_cast<double>(n) / 2);
  std::printf("  %s stages: all %llu published (acknowledged) at %.2f s; half applied at %.2f s; all applied at %.2f s\n",
              what, static_cast<unsigned long long>(n), pub.value_or(-1), half.value_or(-1), app.value_or(-1));
}

// Per thread of this process (by thread id), from /proc/self/task/*/schedstat:
// seconds on a CPU and seconds runnable but waiting for one (the machine is
// shared: a thread that waits for a CPU is starved, not blocked).
struct thread_time {
  double cpu = 0, runqueue = 0;
};
std::map<int, thread_time> thread_cpu() {
  std::map<int, thread_time> out;
  std::error_code ec;
  for (const auto& t : std::filesystem::directory_iterator("/proc/self/task", ec)) {
    std::ifstream in(t.path() / "schedstat");
    unsigned long long on_cpu = 0, waiting = 0;
    if (!(in >> on_cpu >> waiting)) continue;
    out[std::stoi(t.path().filename().string())] =
        thread_time{.cpu = static_cast<double>(on_cpu) / 1e9, .runqueue = static_cast<double>(waiting) / 1e9};
  }
  return out;
}

// Who is who: the threads the service started (feed relay first, then the
// view + writer thread), the embedded log's, the bench's main thread.
struct thread_roles {
  int main = 0, feed = 0, service = 0;
  std::string name_of(int tid) const {
    if (tid == main) return "bench main (generate, publish)";
    if (tid == feed) return "feed relay";
    if (tid == service) return "service view + writer";
    std::ifstream in("/proc/self/task/" + std::to_string(tid) + "/comm");
    std::string n;
    std::getline(in, n);
    return n;
  }
};

// Returns the service (view + writer) thread's seconds on a CPU.
double print_cpu(const char* what, const std::map<int, thread_time>& before, const std::map<int, thread_time>& after,
                 const thread_roles& roles, double wall) {
  double service_cpu = 0;
  // Per thread: seconds on a CPU / seconds runnable but waiting for a CPU;
  // the rest of the wall time the thread was blocked (polls, fsync waits).
  std::printf("  %s, %.2f s wall; thread seconds on CPU / waiting for a CPU:", what, wall);
  thread_time other;
  for (const auto& [tid, t] : after) {
    auto b = before.find(tid);
    const thread_time d{.cpu = t.cpu - (b == before.end() ? 0.0 : b->second.cpu),
                        .runqueue = t.runqueue - (b == before.end() ? 0.0 : b->second.runqueue)};
    const std::string n = roles.name_of(tid);
    if (tid == roles.service) service_cpu = d.cpu;
    if (tid == roles.main || tid == roles.feed || tid == roles.service || n.starts_with("yl-log")) {
      std::printf(" %s %.2f / %.2f;", n.c_str(), d.cpu, d.runqueue);
    } else {
      other.cpu += d.cpu;
      other.runqueue += d.runqueue;
    }
  }
  std::printf(" other threads %.2f / %.2f\n", other.cpu, other.runqueue);
  return service_cpu;
}

// This thread's CPU seconds.
double thread_cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

long long bytes_of_dir(const std::filesystem::path& dir) {
  long long total = 0;
  std::error_code ec;
  for (const auto& f : std::filesystem::recursive_directory_iterator(dir, ec)) {
    if (f.is_regular_file(ec)) total += static_cast<long long>(f.file_size(ec));
  }
  return total;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::size_t> sizes{100000, 1000000};
  std::size_t events = 50000;
  std::uint64_t seed = 7;
  std::size_t window = 4096;
  bool keep = false;
  std::string dir_arg;
  for (int i = 1; i < argc; ++i) {
    const bool has = i + 1 < argc;
    if (!std::strcmp(argv[i], "--sizes") && has) {
      sizes.clear();
      std::string s = argv[++i];
      for (std::size_t at = 0; at < s.size();) {
        std::size_t comma = s.find(',', at);
        if (comma == std::string::npos) comma = s.size();
        sizes.push_back(std::stoul(s.substr(at, comma - at)));
        at = comma + 1;
      }
    } else if (!std::strcmp(argv[i], "--events") && has) {
      events = std::stoul(argv[++i]);
    } else if (!std::strcmp(argv[i], "--seed") && has) {
      seed = std::stoull(argv[++i]);
    } else if (!std::strcmp(argv[i], "--window") && has) {
      window = std::stoul(argv[++i]);
    } else if (!std::strcmp(argv[i], "--dir") && has) {
      dir_arg = argv[++i];
    } else if (!std::strcmp(argv[i], "--keep")) {
      keep = true;
    } else {
      std::fprintf(stderr, "usage: identity_bus_bench [--sizes N,M] [--events E] [--seed S] [--dir DIR] [--window W] [--keep]\n");
      return 2;
    }
  }

  std::filesystem::path base = dir_arg.empty() ? std::filesystem::temp_directory_path() : std::filesystem::path(dir_arg);
  std::filesystem::create_directories(base);
  std::string pattern = (base / "yilian-idbus-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  const std::filesystem::path dir = pattern;
  std::printf("load average at start: %s; log in %s; window %zu publishes\n", loadavg().c_str(), dir.c_str(), window);

  const long rss0 = rss_kb();
  population pop(seed);
  idx::identity_index bare(options());
  const long rss_tables = rss_kb();

  auto opened = bus::embedded_log::open(bus::embedded_log_options{.path = dir / "bus" / "log.db", .default_partitions = 4});
  if (!opened) {
    std::fprintf(stderr, "embedded log: %s\n", opened.error().describe().c_str());
    return 1;
  }
  bus::embedded_log& log = **opened;
  const std::vector<bus::topic_spec> topics{{.name = patient_topic, .partitions = 4},
                                            {.name = referral_topic, .partitions = 4},
                                            {.name = log_topic, .partitions = 1}};
  if (auto r = log.ensure_topics(topics); !r) {
    std::fprintf(stderr, "ensure_topics: %s\n", r.error().describe().c_str());
    return 1;
  }
  metrics::registry reg;
  wid::service_options so;
  so.index = options();
  so.observed_topics = {referral_topic};
  so.instance = "bench";
  auto svc = std::make_unique<wid::service>(log, so, &reg);
  const metrics::counter& announced =
      reg.add_counter("yilian_identity_announcements_total", "PatientLinkChanged events this instance published as the identity writer.")
          .with({});
  thread_roles roles{.main = static_cast<int>(::getpid())};
  const auto tids_before = thread_cpu();
  if (auto s = svc->start(); !s) {
    std::fprintf(stderr, "identity service: %s\n", s.error().describe().c_str());
    return 1;
  }
  while (!svc->caught_up()) std::this_thread::sleep_for(5ms);
  {
    std::vector<int> fresh;
    for (const auto& [tid, t] : thread_cpu()) {
      if (!tids_before.contains(tid)) fresh.push_back(tid);
    }
    std::sort(fresh.begin(), fresh.end());
    if (fresh.size() == 2) {
      roles.feed = fresh[0];
      roles.service = fresh[1];
    }
  }
  const long rss_base = rss_kb();
  std::printf("ICU name tables %ld kB; empty service and log %ld kB\n", rss_tables - rss0, rss_base - rss_tables);

  publisher pub(log, window);
  sampler smp(log, *svc, pub, announced);
  std::int64_t log_end = 0;  // identity-log records expected so far (one per patient event)
  long bare_rss_total_kb = 0;
  std::vector<std::string> summary;

  for (std::size_t target : sizes) {
    // (a) load, bare matcher first (it generates the people), then the bus.
    std::vector<std::uint32_t> added;
    std::size_t bare_links = 0, bare_reviews = 0;
    const long rss_pre_bare = rss_kb();
    const auto tb = clk::now();
    pop.grow(target, [&](std::uint32_t who) {
      added.push_back(who);
      const idx::decision d = bare.upsert(pop.first_record(who));
      bare_links += d.outcome == idx::outcome::linked ? 1 : 0;
      bare_reviews += d.outcome == idx::outcome::review ? 1 : 0;
    });
    const double bare_load_s = since(tb);
    bare_rss_total_kb += rss_kb() - rss_pre_bare;
    std::printf("\n== %zu patients ==\nmatcher alone: loaded %zu new in %.1f s: %.0f records/s (links %zu, reviews %zu)\n",
                target, added.size(), bare_load_s, static_cast<double>(added.size()) / bare_load_s, bare_links, bare_reviews);

    const long rss_pre_bus = rss_kb();
    const double ann_pre_load = announced.value();
    const sample s0 = smp.now();
    smp.start();
    const auto cpu_load0 = thread_cpu();
    const auto tl = clk::now();
    for (std::uint32_t who : added) pub.publish(patient_message(pop.first_record(who), false, cat("L", std::to_string(who))));
    pub.drain();
    log_end += static_cast<std::int64_t>(added.size());
    wait_applied(*svc, log_end);
    const double load_s = since(tl);
    const auto ann_done = wait_announcements(announced, 1500ms);
    smp.stop();
    if (pub.failures()) {
      std::fprintf(stderr, "publish failures: %llu (%s)\n", static_cast<unsigned long long>(pub.failures()),
                   pub.first_error().c_str());
      return 1;
    }
    const long rss_bus = rss_kb();
    const auto st = svc->read([](const wid::view& v) { return v.index().stats(); });
    const auto bst = bare.stats();
    std::printf("through the bus: loaded %zu new in %.1f s: %.0f events/s end to end (published -> applied by the view); "
                "announcements done at %.1f s (%.0f PatientLinkChanged)\n",
                added.size(), load_s, static_cast<double>(added.size()) / load_s, since(tl, ann_done),
                announced.value() - ann_pre_load);
    print_stages("load", smp.samples(), tl, s0.acked, s0.applied, added.size());
    print_cpu("load (until announcements done + 1.5 s)", cpu_load0, thread_cpu(), roles, since(tl));
    std::printf("  longest wait of a reader for the view's lock while loading: %.0f ms\n", smp.max_read_wait_ms());
    std::printf("  service index: %zu records, %zu persons, memory_bytes %.0f MB (%.0f bytes/record); "
                "bare matcher: %zu records, %zu persons, %.0f MB\n",
                st.records, st.persons, static_cast<double>(st.memory_bytes) / 1048576.0,
                static_cast<double>(st.memory_bytes) / static_cast<double>(st.records), bst.records, bst.persons,
                static_cast<double>(bst.memory_bytes) / 1048576.0);
    {
      // The service reads index().stats().persons for every applied record;
      // stats() walks every record (it sums their text for memory_bytes).
      const auto t0 = clk::now();
      std::size_t sink = 0;
      for (int k = 0; k < 20; ++k) sink += bare.stats().persons;
      std::printf("  identity_index::stats() at %zu records: %.3f ms per call (%zu)\n", bst.records,
                  since(t0) * 1000.0 / 20.0, sink / 20);
    }
    // The bare matcher and the bench's truth also live in this process:
    // the service's share is the RSS growth while the bus loaded.
    const double svc_kb = static_cast<double>(rss_bus - rss_base) - static_cast<double>(bare_rss_total_kb);
    std::printf("  RSS %.0f MB: service + log growth while loading this step %.0f MB = %.0f bytes per new patient; "
                "all steps: ~%.0f bytes per patient (RSS over the empty service minus the bare matcher's and the "
                "truth's growth); log files on disk %.0f MB\n",
                static_cast<double>(rss_bus) / 1024.0, static_cast<double>(rss_bus - rss_pre_bus) / 1024.0,
                static_cast<double>(rss_bus - rss_pre_bus) * 1024.0 / static_cast<double>(added.size()),
                svc_kb * 1024.0 / static_cast<double>(st.records), static_cast<double>(bytes_of_dir(dir)) / 1048576.0);

    // (b) the measured stream, pre-built.
    const std::size_t known = pop.people.size();
    const std::vector<stream_event> stream = pop.make_stream(events);
    std::vector<bus::message> msgs;
    msgs.reserve(stream.size());
    std::unordered_map<std::string, std::size_t> index_of;
    for (std::size_t i = 0; i < stream.size(); ++i) {
      std::string id = cat("S", std::to_string(target), cat("-", std::to_string(i)));
      index_of.emplace(id, i);
      msgs.push_back(patient_message(stream[i].record, stream[i].kind == stream_kind::update, id));
    }

    // Matcher alone, same records, same order.
    std::size_t linked = 0, review = 0, updated = 0, fresh = 0;
    const auto tm = clk::now();
    const double bare_cpu0 = thread_cpu_s();
    for (const auto& e : stream) {
      switch (bare.upsert(e.record).outcome) {
        case idx::outcome::linked: ++linked; break;
        case idx::outcome::review: ++review; break;
        case idx::outcome::updated: ++updated; break;
        case idx::outcome::new_person: ++fresh; break;
      }
    }
    const double bare_s = since(tm);
    const double bare_cpu_us = (thread_cpu_s() - bare_cpu0) * 1e6 / static_cast<double>(events);
    const double bare_rate = static_cast<double>(events) / bare_s;
    std::printf("matcher alone: %zu events at %zu patients: %.0f events/s (linked %zu, review %zu, updated %zu, new %zu)\n",
                events, known, bare_rate, linked, review, updated, fresh);

    // Through the bus.
    std::vector<clk::time_point> published(msgs.size());
    const double ann_pre = announced.value();
    const sample b0 = smp.now();
    const std::int64_t stream_from = log_end;
    const auto wall_start_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    smp.start();
    const auto cpu_stream0 = thread_cpu();
    const auto ts = clk::now();
    for (std::size_t i = 0; i < msgs.size(); ++i) {
      published[i] = clk::now();
      pub.publish(std::move(msgs[i]));
    }
    pub.drain();
    log_end += static_cast<std::int64_t>(msgs.size());
    wait_applied(*svc, log_end);
    const double bus_s = since(ts);
    const auto ann_stream = wait_announcements(announced, 1500ms);
    smp.stop();
    const auto cpu_stream1 = thread_cpu();
    const double bus_rate = static_cast<double>(events) / bus_s;

    // Latency: each stream event's identity-log offset, read back, against the
    // 1 ms timeline of the view's applied offset.
    std::vector<std::int64_t> offset_of(stream.size(), -1);
    {
      auto reader = log.subscribe(bus::consumer_options{.group = cat("idbench-reader-", std::to_string(target)),
                                                        .topics = {log_topic},
                                                        .start = bus::start_from::earliest,
                                                        .start_timestamp_ms = wall_start_ms - 1});
      if (!reader) {
        std::fprintf(stderr, "reader: %s\n", reader.error().describe().c_str());
        return 1;
      }
      std::size_t found = 0;
      for (int idle = 0; found < stream.size() && idle < 20;) {
        auto batch = (*reader)->poll(100ms, 4096);
        if (!batch || batch->empty()) {
          ++idle;
          continue;
        }
        ev::Envelope e;
        for (const auto& r : *batch) {
          if (!e.ParseFromString(r.value)) continue;
          auto it = index_of.find(e.event_id());
          if (it != index_of.end() && offset_of[it->second] < 0) {
            offset_of[it->second] = r.offset;
            ++found;
          }
        }
      }
    }
    const auto& tl2 = smp.samples();
    std::vector<double> lat;
    lat.reserve(stream.size());
    std::size_t unmatched = 0, out_of_range = 0;
    for (std::size_t i = 0; i < stream.size(); ++i) {
      if (offset_of[i] < 0) {
        ++unmatched;
        continue;
      }
      if (offset_of[i] < stream_from || offset_of[i] >= log_end) ++out_of_range;
      auto it = std::lower_bound(tl2.begin(), tl2.end(), offset_of[i] + 1,
                                 [](const sample& s, std::int64_t o) { return s.applied < o; });
      if (it == tl2.end()) continue;
      lat.push_back(std::chrono::duration<double, std::milli>(it->t - published[i]).count());
    }
    std::sort(lat.begin(), lat.end());
    auto pct = [&](double q) {
      return lat.empty() ? -1.0 : lat[static_cast<std::size_t>(q * static_cast<double>(lat.size() - 1))];
    };
    std::printf("through the bus: %zu events at %zu patients: %.0f events/s end to end = %.3f of the matcher alone; "
                "publish -> applied p50 %.0f ms, p99 %.0f ms, max %.0f ms (%zu events timed, %zu not found in the log, "
                "%zu outside the stream's offsets); announcements done at %.2f s (%.0f PatientLinkChanged)\n",
                events, known, bus_rate, bus_rate / bare_rate, pct(0.5), pct(0.99), lat.empty() ? -1.0 : lat.back(),
                lat.size(), unmatched, out_of_range, since(ts, ann_stream), announced.value() - ann_pre);
    print_stages("stream", smp.samples(), ts, b0.acked, b0.applied, events);
    const double view_cpu_us = print_cpu("stream (until announcements done + 1.5 s)", cpu_stream0, cpu_stream1, roles,
                                         since(ts, ann_stream) + 1.5) * 1e6 / static_cast<double>(events);
    std::printf("  longest wait of a reader for the view's lock during the stream: %.0f ms\n", smp.max_read_wait_ms());

    // Truth, through the service's directory API and in the bare matcher.
    const auto tt = clk::now();
    const truth_figures tbus = pop.check([&](const std::string& system, const std::string& value) {
      auto e = wid::parse_enterprise_id(svc->enterprise_id_of(system, value));
      return e ? std::optional<std::uint64_t>(e->value()) : std::nullopt;
    });
    const double truth_s = since(tt);
    const truth_figures tbare = pop.check([&](const std::string& system, const std::string& value) {
      const auto e = bare.person_of({.system = system, .value = value});
      return e ? std::optional<std::uint64_t>(e->value()) : std::nullopt;
    });
    const std::size_t open_reviews = svc->read([](const wid::view& v) { return v.index().open_reviews().size(); });
    std::printf("  truth through the service (%zu directory look-ups in %.1f s): %zu records, wrong merges %zu, missed "
                "links %zu, open reviews %zu; bare matcher: %zu records, wrong merges %zu, missed links %zu, open "
                "reviews %zu\n",
                2 * tbus.records, truth_s, tbus.records, tbus.wrong, tbus.missed, open_reviews, tbare.records,
                tbare.wrong, tbare.missed, bare.open_reviews().size());
    const long rss_end = rss_kb();
    std::printf("  RSS %.0f MB; load average %s\n", static_cast<double>(rss_end) / 1024.0, loadavg().c_str());
    char line[640];
    std::snprintf(line, sizeof line,
                  "%zu patients: load %.0f ev/s, stream %.0f ev/s (matcher %.0f ev/s, ratio %.3f), p50 %.0f ms p99 %.0f "
                  "ms, wrong merges %zu (bare %zu); CPU per stream event: view + writer thread %.1f us, matcher alone "
                  "%.1f us",
                  target, static_cast<double>(added.size()) / load_s, bus_rate, bare_rate, bus_rate / bare_rate, pct(0.5),
                  pct(0.99), tbus.wrong, tbare.wrong, view_cpu_us, bare_cpu_us);
    summary.emplace_back(line);
    std::fflush(stdout);
  }

  std::printf("\nsummary:\n");
  for (const auto& s : summary) std::printf("  %s\n", s.c_str());
  const auto es = log.stats();
  std::printf("embedded log: %llu records committed in %llu transactions (largest batch %llu); load average at end: %s\n",
              static_cast<unsigned long long>(es.records_committed), static_cast<unsigned long long>(es.transactions),
              static_cast<unsigned long long>(es.largest_batch), loadavg().c_str());
  svc->stop();
  svc.reset();
  opened->reset();
  if (!keep) {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  return 0;
}
