// Helper for ingest_store_crash_test: reserves distinct messages into the
// ingest store at argv[1] from `chains` concurrent closed-loop callers (each
// reserves its next message from inside the previous one's handler),
// completes every other one, and writes one line per successful reserve:
//
//   ok <message number> <claim-check uri>
//
// Each line is one write(2) to a pipe, issued only after the handler reported
// the receipt durable. The parent kills this process with SIGKILL mid-burst.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "tests/unit/store/store_test_support.h"

namespace {

using namespace yilian::store;

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

void reserve_next(ingest_store& s) {
  const std::uint64_t n = next_id.fetch_add(1);
  auto req = test::request_for("CRASH" + std::to_string(n));
  auto key = req.key;
  s.reserve(std::move(req), [&s, n, key](yilian::result<reserve_outcome> r) {
    if (r && r->what == reserve_outcome::kind::fresh) {
      say("ok " + std::to_string(n) + " " + r->raw_ref.uri() + "\n");
      if (n % 2 == 0) s.complete(key);
    } else {
      say("err " + std::to_string(n) + " " + (r ? std::string("not fresh") : r.error().describe()) + "\n");
    }
    reserve_next(s);
  });
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s <store file> <concurrent callers>\n", argv[0]);
    return 2;
  }
  auto s = ingest_store::open({.file = argv[1]});
  if (!s) {
    std::fprintf(stderr, "open: %s\n", s.error().describe().c_str());
    return 1;
  }
  say("ready\n");
  const int chains = std::atoi(argv[2]);
  for (int i = 0; i < chains; ++i) reserve_next(**s);
  std::this_thread::sleep_for(std::chrono::seconds(120));
  std::_Exit(4);  // never reached in the test: killed long before
}
