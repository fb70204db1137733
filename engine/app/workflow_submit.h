// Sending a workflow command from an HTTP handler and waiting for its
// decision without blocking the I/O thread: the booking and referral
// services have the same send/wait/forget shape (engine/workflows/common/
// single_writer.h), so the REST and FHIR endpoints of both share this.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "engine/core/error.h"
#include "yilian/events/v1/envelope.pb.h"

namespace yilian::app {

// Resumes the coroutine with the decision for `command_id`, or a timeout.
template <class Service>
boost::asio::awaitable<result<typename Service::decision_type>> await_decision(Service& svc,
                                                                               const std::string& command_id,
                                                                               std::chrono::milliseconds timeout) {
  namespace asio = boost::asio;
  using decision = typename Service::decision_type;
  struct slot {
    explicit slot(asio::any_io_executor ex) : timer(std::move(ex)) {}
    asio::steady_timer timer;
    std::optional<decision> d;
  };
  auto ex = co_await asio::this_coro::executor;
  auto st = std::make_shared<slot>(ex);
  st->timer.expires_after(timeout);
  const auto token = svc.wait(command_id, [st](decision d) {
    asio::post(st->timer.get_executor(), [st, d = std::move(d)]() mutable {
      st->d = std::move(d);
      st->timer.cancel();
    });
  });
  for (;;) {
    boost::system::error_code ec;
    co_await st->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (st->d) break;
    if (!ec) {
      if (svc.forget(token)) {
        co_return fail(errc::timeout, "no decision yet for command " + command_id +
                                          "; send it again with the same Idempotency-Key to get its answer");
      }
      st->timer.expires_after(std::chrono::milliseconds(20));  // the answer is on its way
    }
  }
  co_return std::move(*st->d);
}

// Hands the command to the service (the caller only needs the decision) and
// resumes once it is taken: at once when this instance's writer owns the
// command's partition (take_direct), else once the command is on the bus.
template <class Service>
boost::asio::awaitable<result<void>> publish_command(Service& svc, const events::v1::Envelope& cmd) {
  namespace asio = boost::asio;
  if (svc.take_direct(cmd)) co_return result<void>{};
  auto start = [&svc, &cmd](auto handler) {
    auto ex = asio::get_associated_executor(handler);
    svc.send(cmd, [h = std::move(handler), ex](result<void> r) mutable {
      asio::post(ex, [h = std::move(h), r = std::move(r)]() mutable { std::move(h)(std::move(r)); });
    });
  };
  co_return co_await asio::async_initiate<decltype(asio::use_awaitable), void(result<void>)>(start,
                                                                                             asio::use_awaitable);
}

// Publishes the command (unless this instance knows its decision already)
// and waits for the decision, at most `timeout` (then errc::timeout).
template <class Service, class Ledger>
boost::asio::awaitable<result<typename Service::decision_type>> submit_command(Service& svc,
                                                                               const events::v1::Envelope& command,
                                                                               const std::string& command_id,
                                                                               std::chrono::milliseconds timeout) {
  const bool known = svc.read([&](const Ledger& l) { return l.decided(command_id).has_value(); });
  if (!known) {
    auto sent = co_await publish_command(svc, command);
    if (!sent) co_return std::unexpected(sent.error());
  }
  co_return co_await await_decision(svc, command_id, timeout);
}

}  // namespace yilian::app
