// ingest_store_bench — the ingest store alone, as the HL7 v2 pipeline drives
// it: callers reserve distinct ~1.5 KB messages (2 event ids each) with a
// bounded number in flight (like concurrent MLLP senders waiting for their
// ACK), and complete each one when its reserve is durable. Prints messages/s
// and reserve latency percentiles (submit -> durable handler).
//
//   ingest_store_bench --threads 2 --concurrency 64 --messages 200000 --size 1500
//
// Never gates CI; see docs/performance.md for recorded figures.
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/store/ingest_store.h"

namespace {

using clock_type = std::chrono::steady_clock;
using namespace yilian::store;

std::string make_message(std::size_t size) {
  std::string m = "MSH|^~\\&|HIS|FAC-A|YILIAN|HUB|20250601120000||ORU^R01|CONTROLID0000000000|P|2.5\r";
  m += "PID|1||123456^^^HOSP^MR||DOE^JOHN||19700101|M\r";
  while (m.size() < size) m += "OBX|1|NM|GLU^Glucose||5.5|mmol/L|3.9-6.1|N|||F\r";
  m.resize(size);
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ingest store throughput: reserve + complete"};
  int threads = 2;
  std::size_t concurrency = 64;
  std::size_t messages = 200'000;
  std::size_t size = 1500;
  std::size_t events = 2;
  std::size_t senders = 64;
  std::string dir;
  bool complete = true;
  app.add_option("--complete", complete, "complete each message after its reserve (as the pipeline does)");
  app.add_option("--threads", threads, "submitting threads");
  app.add_option("--concurrency", concurrency, "reserves in flight at once, over all threads");
  app.add_option("--messages", messages, "messages in total");
  app.add_option("--size", size, "bytes per message");
  app.add_option("--events", events, "event ids per message");
  app.add_option("--senders", senders, "distinct sending facilities (control ids increase per facility)");
  app.add_option("--dir", dir, "directory for the store (default: a new one under /tmp, removed after)");
  CLI11_PARSE(app, argc, argv);
  if (threads < 1 || concurrency < static_cast<std::size_t>(threads) || senders == 0) {
    std::fprintf(stderr, "need threads >= 1, concurrency >= threads, senders >= 1\n");
    return 2;
  }

  bool remove_dir = false;
  if (dir.empty()) {
    std::string pattern = "/tmp/yilian-ingest-bench-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) return 1;
    dir = pattern;
    remove_dir = true;
  }
  auto opened = ingest_store::open({.file = std::filesystem::path(dir) / "ingest.db",
                                    .max_in_flight = std::max<std::size_t>(8192, concurrency * 2)});
  if (!opened) {
    std::fprintf(stderr, "open: %s\n", opened.error().describe().c_str());
    return 1;
  }
  auto& store = **opened;
  const std::string body = make_message(size);

  std::vector<std::int64_t> latency_us(messages, -1);
  std::atomic<std::size_t> next{0};
  std::atomic<std::size_t> failures{0};
  std::atomic<std::size_t> not_fresh{0};
  const std::size_t window = concurrency / static_cast<std::size_t>(threads);

  const auto started = clock_type::now();
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      std::mutex mu;
      std::condition_variable cv;
      std::size_t in_flight = 0;
      for (;;) {
        const std::size_t n = next.fetch_add(1);
        if (n >= messages) break;
        {
          std::unique_lock lock(mu);
          cv.wait(lock, [&] { return in_flight < window; });
          ++in_flight;
        }
        const std::size_t sender = n % senders;
        char control[32];
        std::snprintf(control, sizeof control, "%019zu", n / senders);
        receipt_key key{.hospital = "bench-hospital", .facility = "FAC-" + std::to_string(sender),
                        .control_id = control};
        std::string raw = body;
        std::copy(control, control + 19, raw.begin() + 60);  // distinct content per message
        std::vector<std::string> ids;
        for (std::size_t e = 0; e < events; ++e) {
          ids.push_back(sha256_hex(key.facility + "|" + key.control_id + "|" + std::to_string(e)));
        }
        const auto submitted = clock_type::now();
        store.reserve(
            reserve_request{.key = key, .sha256 = {}, .raw = std::move(raw), .meta = {}, .event_ids = std::move(ids),
                            .message_type = "ORU^R01"},
            [&, n, submitted, key](yilian::result<reserve_outcome> r) mutable {
              latency_us[n] = std::chrono::duration_cast<std::chrono::microseconds>(clock_type::now() - submitted)
                                  .count();
              if (!r) {
                failures.fetch_add(1);
              } else {
                if (r->what != reserve_outcome::kind::fresh) not_fresh.fetch_add(1);
                if (complete) store.complete(std::move(key));  // the events are "published": mark done
              }
              {
                std::lock_guard lock(mu);
                --in_flight;
              }
              cv.notify_one();
            });
      }
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return in_flight == 0; });
    });
  }
  for (auto& w : workers) w.join();
  const auto reserved = clock_type::now();
  if (auto r = store.flush(std::chrono::minutes(5)); !r) {
    std::fprintf(stderr, "flush: %s\n", r.error().describe().c_str());
  }
  const auto finished = clock_type::now();

  std::vector<std::int64_t> lat;
  lat.reserve(messages);
  for (const auto v : latency_us) {
    if (v >= 0) lat.push_back(v);
  }
  std::sort(lat.begin(), lat.end());
  auto pct = [&](double p) -> double {
    if (lat.empty()) return 0;
    const auto i = static_cast<std::size_t>(p * static_cast<double>(lat.size() - 1));
    return static_cast<double>(lat[i]) / 1000.0;
  };
  const double secs = std::chrono::duration<double>(reserved - started).count();
  const double with_flush = std::chrono::duration<double>(finished - started).count();
  const auto st = store.stats();
  std::printf("messages=%zu size=%zu events=%zu threads=%d concurrency=%zu senders=%zu\n", messages, size, events,
              threads, concurrency, senders);
  std::printf("reserve+complete: %.0f msgs/s (%.2f s; %.2f s including the last completes)\n",
              static_cast<double>(messages) / secs, secs, with_flush);
  std::printf("reserve latency ms: p50 %.2f  p99 %.2f  p99.9 %.2f  max %.2f\n", pct(0.50), pct(0.99), pct(0.999),
              pct(1.0));
  std::printf("transactions=%llu (%.1f requests each) largest_batch=%llu failures=%zu not_fresh=%zu\n",
              static_cast<unsigned long long>(st.transactions),
              st.transactions ? static_cast<double>(messages * 2) / static_cast<double>(st.transactions) : 0.0,
              static_cast<unsigned long long>(st.largest_batch), failures.load(), not_fresh.load());
  std::printf("writer thread CPU: %.1f us per message (%.0f%% of the run)\n",
              static_cast<double>(st.writer_cpu_ns) / 1000.0 / static_cast<double>(messages),
              100.0 * static_cast<double>(st.writer_cpu_ns) / 1e9 / with_flush);
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  const double cpu = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                     static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
  std::printf("process CPU (bench callers included): %.1f us per message\n",
              cpu * 1e6 / static_cast<double>(messages));
  {
    // Bytes this process had the kernel write (WAL + checkpoints into the database file).
    std::FILE* io = std::fopen("/proc/self/io", "r");
    char line[128];
    while (io != nullptr && std::fgets(line, sizeof line, io) != nullptr) {
      unsigned long long v = 0;
      if (std::sscanf(line, "write_bytes: %llu", &v) == 1) {
        std::printf("written to disk: %.0f bytes per message\n", static_cast<double>(v) / static_cast<double>(messages));
      }
    }
    if (io != nullptr) std::fclose(io);
  }
  std::error_code ec;
  const auto db_size = std::filesystem::file_size(std::filesystem::path(dir) / "ingest.db", ec);
  std::printf("file size %.1f MiB\n", ec ? 0.0 : static_cast<double>(db_size) / (1024.0 * 1024.0));
  opened->reset();
  if (remove_dir) std::filesystem::remove_all(dir, ec);
  return failures.load() == 0 && not_fresh.load() == 0 ? 0 : 1;
}
