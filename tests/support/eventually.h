// Polls a condition until it holds or a deadline passes: for tests that wait
// on another thread, a bus or a server. Returns the condition's last value.
#pragma once

#include <chrono>
#include <thread>

namespace yilian::test {

template <class Pred>
bool eventually(Pred&& p, std::chrono::milliseconds within = std::chrono::seconds(20),
                std::chrono::milliseconds every = std::chrono::milliseconds(5)) {
  const auto deadline = std::chrono::steady_clock::now() + within;
  while (std::chrono::steady_clock::now() < deadline) {
    if (p()) return true;
    std::this_thread::sleep_for(every);
  }
  return p();
}

}  // namespace yilian::test
