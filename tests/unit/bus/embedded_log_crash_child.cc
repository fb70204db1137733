// Helper for embedded_log_crash_test: publishes to the embedded log at
// argv[1] from `chains` concurrent closed-loop publishers (each publishes its
// next record from inside the previous one's handler) and writes one line per
// acknowledged publish to stdout:
//
//   ack <partition> <offset> <payload id>
//
// Each line is one write(2) to a pipe (atomic below PIPE_BUF), issued only
// after the handler reported the record durable. The parent kills this
// process with SIGKILL mid-burst; it never exits on its own before a 120 s
// safety limit.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "engine/bus/embedded_log.h"
#include "tests/unit/bus/crash_payload.h"

namespace {

using namespace yilian::bus;

void say(const std::string& line) {
  const char* p = line.data();
  std::size_t left = line.size();
  while (left > 0) {
    const auto n = ::write(STDOUT_FILENO, p, left);
    if (n <= 0) std::_Exit(3);
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

std::atomic<std::uint64_t> next_id{0};

void publish_next(bus& b) {
  const std::uint64_t id = next_id.fetch_add(1);
  b.publish(message{.topic = test::kCrashTopic, .key = test::crash_key(id), .value = test::crash_value(id)},
            [&b, id](yilian::result<position> r) {
              if (r) {
                say("ack " + std::to_string(r->partition) + " " + std::to_string(r->offset) + " " +
                    std::to_string(id) + "\n");
              } else {
                say("err " + std::to_string(id) + " " + r.error().describe() + "\n");
              }
              publish_next(b);
            });
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s <log file> <concurrent publishers>\n", argv[0]);
    return 2;
  }
  auto log = embedded_log::open(embedded_log_options{.path = argv[1], .publish_timeout = std::chrono::seconds(30)});
  if (!log) {
    std::fprintf(stderr, "open: %s\n", log.error().describe().c_str());
    return 1;
  }
  const topic_spec spec{.name = test::kCrashTopic, .partitions = test::kCrashPartitions};
  if (auto r = (*log)->ensure_topics({&spec, 1}); !r) {
    std::fprintf(stderr, "ensure_topics: %s\n", r.error().describe().c_str());
    return 1;
  }
  say("ready\n");
  const int chains = std::atoi(argv[2]);
  for (int i = 0; i < chains; ++i) publish_next(**log);
  std::this_thread::sleep_for(std::chrono::seconds(120));
  std::_Exit(4);  // never reached in the test: killed long before
}
