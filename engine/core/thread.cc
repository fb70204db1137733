#include "engine/core/thread.h"

#include <pthread.h>
#include <time.h>

namespace yilian {

void name_this_thread(const char* name) { pthread_setname_np(pthread_self(), name); }

std::uint64_t thread_cpu_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000U + static_cast<std::uint64_t>(ts.tv_nsec);
}

}  // namespace yilian
