#include "engine/core/io_pool.h"

#include "engine/core/thread.h"

namespace yilian {

io_pool::io_pool(std::size_t threads, std::string name) {
  if (threads == 0) threads = 1;
  for (std::size_t i = 0; i < threads; ++i) {
    // Concurrency hint 1: one thread runs the context (other threads may
    // still post to it; the scheduler keeps its lock for that).
    contexts_.push_back(std::make_unique<boost::asio::io_context>(1));
    guards_.push_back(boost::asio::make_work_guard(*contexts_.back()));
  }
  for (std::size_t i = 0; i < threads; ++i) {
    threads_.emplace_back([ctx = contexts_[i].get(), thread_name = (name + "-" + std::to_string(i)).substr(0, 15)] {
      name_this_thread(thread_name.c_str());
      ctx->run();
    });
  }
}

io_pool::~io_pool() { stop(); }

boost::asio::any_io_executor io_pool::next() {
  const std::size_t i = next_.fetch_add(1, std::memory_order_relaxed) % contexts_.size();
  return contexts_[i]->get_executor();
}

void io_pool::stop() {
  for (auto& g : guards_) g.reset();
  for (auto& c : contexts_) c->stop();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
}

}  // namespace yilian
