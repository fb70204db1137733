// yilian::io_pool — one io_context per thread, for the connections of the
// HTTP and MLLP servers.
//
// Why not one io_context run by several threads (Asio's usual pool): then
// every completion goes through the shared scheduler's mutex, an idle thread
// is woken (futex) for each handler posted, and each connection needs a strand
// to keep its handlers in order. With a context per thread, a connection lives
// on one thread for its whole life: its handlers are serialized without a
// strand, handlers it posts to itself stay in that thread's private queue, and
// the threads never contend for one lock. Work from other threads (a workflow
// answering a waiting request) is posted to the connection's executor as
// before. Connections are spread round-robin when they are accepted.
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

namespace yilian {

// Where a server puts an accepted connection: an executor that runs its
// handlers one at a time (io_pool::next, or a strand when unset).
using connection_executor_source = std::function<boost::asio::any_io_executor()>;

class io_pool {
 public:
  // `threads` contexts, each run by its own thread named "<name>-<i>".
  io_pool(std::size_t threads, std::string name);
  // stop() and join.
  ~io_pool();
  io_pool(const io_pool&) = delete;
  io_pool& operator=(const io_pool&) = delete;

  // The next context's executor, round-robin (thread-safe).
  boost::asio::any_io_executor next();

  // Stops the contexts now (pending handlers are dropped) and joins.
  void stop();

 private:
  using guard = boost::asio::executor_work_guard<boost::asio::io_context::executor_type>;
  std::vector<std::unique_ptr<boost::asio::io_context>> contexts_;
  std::vector<guard> guards_;
  std::vector<std::thread> threads_;
  std::atomic<std::size_t> next_{0};
};

}  // namespace yilian
