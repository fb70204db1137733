// Closed-loop publish load: `publishers` concurrent publishers, each with one
// publish outstanding at a time (it publishes the next message when the
// previous one is acknowledged), until `total` messages have been acknowledged.
// Reports throughput and acknowledgement latency percentiles. The same harness
// drives the yilian buses and the raw baselines, so the figures are comparable.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace yilian::bench {

using clock = std::chrono::steady_clock;

struct publish_figures {
  std::string label;
  std::size_t publishers = 0;
  std::size_t messages = 0;
  std::size_t failures = 0;
  double seconds = 0;
  double per_second = 0;
  double p50_us = 0;
  double p99_us = 0;
};

// `publish_one(index, done)` must start publishing message `index` and call
// `done(ok)` exactly once, from any thread, when it is acknowledged.
using publish_fn = std::function<void(std::size_t index, std::function<void(bool ok)> done)>;

inline publish_figures run_closed_loop(std::string label, std::size_t publishers, std::size_t total,
                                       const publish_fn& publish_one) {
  std::vector<std::uint32_t> latencies_us(total);
  std::atomic<std::size_t> next{0};
  std::atomic<std::size_t> completed{0};
  std::atomic<std::size_t> failures{0};
  std::mutex mu;
  std::condition_variable all_done;

  std::function<void()> start_next = [&] {
    const std::size_t i = next.fetch_add(1);
    if (i >= total) return;
    const auto started = clock::now();
    publish_one(i, [&, i, started](bool ok) {
      latencies_us[i] = static_cast<std::uint32_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(clock::now() - started).count());
      if (!ok) failures.fetch_add(1);
      if (completed.fetch_add(1) + 1 == total) {
        std::lock_guard lock(mu);
        all_done.notify_all();
        return;
      }
      start_next();
    });
  };

  const auto t0 = clock::now();
  for (std::size_t p = 0; p < publishers; ++p) start_next();
  {
    std::unique_lock lock(mu);
    all_done.wait(lock, [&] { return completed.load() == total; });
  }
  const double seconds = std::chrono::duration<double>(clock::now() - t0).count();
  std::sort(latencies_us.begin(), latencies_us.end());
  auto pct = [&](double q) {
    return static_cast<double>(latencies_us[std::min(total - 1, static_cast<std::size_t>(q * static_cast<double>(total)))]);
  };
  return publish_figures{.label = std::move(label), .publishers = publishers, .messages = total,
                         .failures = failures.load(), .seconds = seconds,
                         .per_second = static_cast<double>(total) / seconds, .p50_us = pct(0.50), .p99_us = pct(0.99)};
}

inline void print_header() {
  std::printf("%-34s %10s %10s %9s %12s %10s %10s\n", "run", "publishers", "messages", "failures", "msgs/s",
              "p50 us", "p99 us");
}

inline void print(const publish_figures& f) {
  std::printf("%-34s %10zu %10zu %9zu %12.0f %10.0f %10.0f\n", f.label.c_str(), f.publishers, f.messages, f.failures,
              f.per_second, f.p50_us, f.p99_us);
  std::fflush(stdout);
}

}  // namespace yilian::bench
