// Sending a workflow command from an HTTP handler and waiting for its
// decision without blocking the I/O thread: the booking and referral
// services have the same send/wait/forget shape (engine/workflows/common/
// single_writer.h), so the REST and FHIR endpoints of both share this.
#pragma once

#include <chrono>
#include <cstdint>
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

// Waits for the decision on `command_id` without blocking the I/O thread:
// registered with the service at construction (answered at once when this
// instance's view already has the decision), then awaited with get().
template <class Service>
class decision_wait {
 public:
  using decision = typename Service::decision_type;

  decision_wait(Service& svc, const std::string& command_id, boost::asio::any_io_executor ex)
      : svc_(svc), command_id_(command_id), st_(std::make_shared<slot>(std::move(ex))) {
    token_ = svc_.wait(command_id_, [st = st_](decision d) {
      boost::asio::post(st->timer.get_executor(), [st, d = std::move(d)]() mutable {
        st->d = std::move(d);
        st->timer.cancel();
      });
    });
  }

  // The service already had the decision (a resend): nothing to send.
  bool answered() const { return token_ == 0; }
  // Stops waiting (the command could not be sent).
  void drop() {
    if (token_ != 0) svc_.forget(token_);
    token_ = 0;
  }

  // The decision, or errc::timeout after `timeout`.
  boost::asio::awaitable<result<decision>> get(std::chrono::milliseconds timeout) {
    namespace asio = boost::asio;
    if (!st_->d) st_->timer.expires_after(timeout);
    while (!st_->d) {
      boost::system::error_code ec;
      co_await st_->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (st_->d) break;
      if (!ec) {
        if (token_ != 0 && svc_.forget(token_)) {
          co_return fail(errc::timeout, "no decision yet for command " + command_id_ +
                                            "; send it again with the same Idempotency-Key to get its answer");
        }
        st_->timer.expires_after(std::chrono::milliseconds(20));  // the answer is on its way
      }
    }
    co_return std::move(*st_->d);
  }

 private:
  struct slot {
    explicit slot(boost::asio::any_io_executor ex) : timer(std::move(ex)) {}
    boost::asio::steady_timer timer;
    std::optional<decision> d;
  };
  Service& svc_;
  std::string command_id_;
  std::shared_ptr<slot> st_;
  std::uint64_t token_ = 0;
};

// Hands the command to the service (the caller only needs the decision;
// `cmd` is moved from when the writer takes it directly) and
// resumes once it is taken: at once when this instance's writer owns the
// command's partition (take_direct), else once the command is on the bus.
template <class Service>
boost::asio::awaitable<result<void>> publish_command(Service& svc, events::v1::Envelope& cmd) {
  namespace asio = boost::asio;
  if (svc.take_direct(std::move(cmd))) co_return result<void>{};  // moved only when taken
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
// and waits for the decision, at most `timeout` (then errc::timeout). The
// wait is registered before the command is sent, so the answer cannot slip
// in between.
template <class Service>
boost::asio::awaitable<result<typename Service::decision_type>> submit_command(Service& svc,
                                                                               events::v1::Envelope command,
                                                                               const std::string& command_id,
                                                                               std::chrono::milliseconds timeout) {
  decision_wait<Service> answer(svc, command_id, co_await boost::asio::this_coro::executor);
  if (!answer.answered()) {
    auto sent = co_await publish_command(svc, command);
    if (!sent) {
      answer.drop();
      co_return std::unexpected(sent.error());
    }
  }
  co_return co_await answer.get(timeout);
}

}  // namespace yilian::app
