// Helpers over bus::publish: a blocking call for CLI tools and tests, and an
// Asio completion-token form that resumes the caller on its own executor.
#pragma once

#include <chrono>
#include <future>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>

#include "engine/bus/bus.h"

namespace yilian::bus {

// Blocks the calling thread until the publish completes. Never call it from a
// bus-owned thread (e.g. inside a publish handler).
result<position> publish_sync(bus& b, message msg);

// co_await async_publish(bus, msg, asio::use_awaitable) -> result<position>.
// The bus's thread posts the result back to the handler's associated executor.
template <class CompletionToken>
auto async_publish(bus& b, message msg, CompletionToken&& token) {
  return boost::asio::async_initiate<CompletionToken, void(result<position>)>(
      [&b](auto handler, message m) {
        auto executor = boost::asio::get_associated_executor(handler);
        b.publish(std::move(m), [handler = std::move(handler), executor](result<position> r) mutable {
          boost::asio::post(executor, [handler = std::move(handler), r = std::move(r)]() mutable {
            std::move(handler)(std::move(r));
          });
        });
      },
      token, std::move(msg));
}

}  // namespace yilian::bus
