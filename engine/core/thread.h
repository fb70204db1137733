// Names for the engine's threads, so `top -H`, `ps -L`, perf and gdb say
// which part of the engine a thread is (the kernel keeps 15 characters).
#pragma once

#include <cstdint>

namespace yilian {

// Names the calling thread, e.g. name_this_thread("yl-log-writer").
void name_this_thread(const char* name);

// CPU time the calling thread has used, in nanoseconds.
std::uint64_t thread_cpu_ns();

}  // namespace yilian
