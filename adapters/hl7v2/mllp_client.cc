#include "adapters/hl7v2/mllp_client.h"

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <openssl/ssl.h>

#include <array>

#include "adapters/hl7v2/framer.h"

namespace yilian::hl7v2 {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

std::string ms_text(std::chrono::milliseconds d) { return std::to_string(d.count()) + " ms"; }

bool is_ip_address(const std::string& host) {
  error_code ec;
  (void)asio::ip::make_address(host, ec);
  return !ec;
}

}  // namespace

struct mllp_client::impl : std::enable_shared_from_this<impl> {
  impl(asio::any_io_executor e, client_options o)
      : ex(std::move(e)), opts(std::move(o)), sock(ex), timer(ex), fr({.max_frame_bytes = opts.max_frame_bytes}) {}

  asio::any_io_executor ex;
  client_options opts;
  tcp::socket sock;
  std::optional<ssl::context> ctx;
  std::unique_ptr<ssl::stream<tcp::socket>> tls;
  asio::steady_timer timer;
  framer fr;
  bool open = false;
  bool timed_out = false;
  std::uint64_t generation = 0;  // which deadline a timer handler belongs to

  std::string where() const { return opts.host + ":" + std::to_string(opts.port); }

  tcp::socket& lowest() { return tls ? tls->next_layer() : sock; }

  // Arms the deadline: when it passes, the connection is closed, which makes
  // the pending operation complete with an error.
  void arm(std::chrono::milliseconds d, const asio::any_io_executor& handler_ex) {
    const auto g = ++generation;
    timed_out = false;
    timer.expires_after(d);
    timer.async_wait(asio::bind_executor(handler_ex, [self = shared_from_this(), g](error_code ec) {
      if (ec || g != self->generation) return;
      self->timed_out = true;
      self->shut();
    }));
  }
  void disarm() {
    ++generation;
    timer.cancel();
  }

  void shut() {
    error_code ignored;
    if (tls) {
      tls->next_layer().shutdown(tcp::socket::shutdown_both, ignored);
      tls->next_layer().close(ignored);
    } else {
      sock.shutdown(tcp::socket::shutdown_both, ignored);
      sock.close(ignored);
    }
    open = false;
  }

  result<void> setup_tls() {
    const auto& t = *opts.tls;
    error_code ec;
    ctx.emplace(ssl::context::tls_client);
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                     ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    if (t.ca_file.empty()) {
      ctx->set_default_verify_paths(ec);
    } else {
      ctx->load_verify_file(t.ca_file, ec);
    }
    if (ec) return fail(errc::config_error, "cannot load the CA file: " + ec.message(), t.ca_file);
    if (!t.cert_file.empty()) {
      ctx->use_certificate_chain_file(t.cert_file, ec);
      if (ec) return fail(errc::config_error, "cannot load the client certificate: " + ec.message(), t.cert_file);
      ctx->use_private_key_file(t.key_file, ssl::context::pem, ec);
      if (ec) return fail(errc::config_error, "cannot load the client key: " + ec.message(), t.key_file);
    }
    return {};
  }

  error failure(const error_code& ec, std::string_view doing) const {
    if (timed_out) {
      const auto d = doing == "connect" || doing == "TLS handshake" ? opts.connect_timeout : opts.ack_timeout;
      return error::make(errc::timeout, std::string(doing) + " timed out after " + ms_text(d), where());
    }
    if (ec.category() == asio::error::get_ssl_category() || ec == ssl::error::stream_truncated) {
      if (doing == "TLS handshake") {
        return error::make(errc::unauthenticated, "TLS handshake failed: " + ec.message(), where());
      }
    }
    if (ec == asio::error::eof) {
      return error::make(errc::unavailable, std::string(doing) + ": connection closed by the peer", where());
    }
    return error::make(errc::unavailable, std::string(doing) + " failed: " + ec.message(), where());
  }

  asio::awaitable<result<void>> connect() {
    const auto handler_ex = co_await asio::this_coro::executor;
    if (open || sock.is_open() || (tls && tls->next_layer().is_open())) shut();
    tls.reset();
    sock = tcp::socket(ex);
    fr = framer({.max_frame_bytes = opts.max_frame_bytes});
    if (opts.tls && !ctx) {
      if (auto r = setup_tls(); !r) co_return std::unexpected(r.error());
    }

    error_code ec;
    arm(opts.connect_timeout, handler_ex);
    tcp::resolver resolver(ex);
    // The resolver is not the socket: a deadline closing the socket does not
    // stop it, so give it its own cancellation.
    const auto g = generation;
    asio::steady_timer resolve_guard(ex, opts.connect_timeout);
    resolve_guard.async_wait(asio::bind_executor(handler_ex, [&resolver, self = shared_from_this(), g](error_code e) {
      if (!e && g == self->generation) resolver.cancel();
    }));
    const auto endpoints = co_await resolver.async_resolve(opts.host, std::to_string(opts.port),
                                                           asio::redirect_error(asio::use_awaitable, ec));
    resolve_guard.cancel();
    if (ec) {
      disarm();
      if (ec == asio::error::operation_aborted) {
        co_return fail(errc::timeout, "resolving the host timed out after " + ms_text(opts.connect_timeout), where());
      }
      co_return fail(errc::unavailable, "cannot resolve the host: " + ec.message(), where());
    }
    if (opts.tls) {
      tls = std::make_unique<ssl::stream<tcp::socket>>(ex, *ctx);
      co_await asio::async_connect(tls->next_layer(), endpoints, asio::redirect_error(asio::use_awaitable, ec));
    } else {
      co_await asio::async_connect(sock, endpoints, asio::redirect_error(asio::use_awaitable, ec));
    }
    if (ec) {
      auto e = failure(ec, "connect");
      disarm();
      shut();
      co_return std::unexpected(std::move(e));
    }
    error_code ignored;
    lowest().set_option(tcp::no_delay(true), ignored);

    if (opts.tls) {
      const auto& t = *opts.tls;
      const std::string name = t.server_name.empty() ? opts.host : t.server_name;
      if (t.verify) {
        tls->set_verify_mode(ssl::verify_peer);
        tls->set_verify_callback(ssl::host_name_verification(name));
      } else {
        tls->set_verify_mode(ssl::verify_none);
      }
      if (!is_ip_address(name)) SSL_set_tlsext_host_name(tls->native_handle(), name.c_str());
      co_await tls->async_handshake(ssl::stream_base::client, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        auto e = failure(ec, "TLS handshake");
        disarm();
        shut();
        co_return std::unexpected(std::move(e));
      }
    }
    disarm();
    open = true;
    co_return result<void>{};
  }

  asio::awaitable<result<void>> write_frame(std::string_view payload) {
    if (!open) co_return fail(errc::unavailable, "not connected", where());
    const auto framed = mllp_frame(payload);
    error_code ec;
    if (tls) {
      co_await asio::async_write(*tls, asio::buffer(framed), asio::redirect_error(asio::use_awaitable, ec));
    } else {
      co_await asio::async_write(sock, asio::buffer(framed), asio::redirect_error(asio::use_awaitable, ec));
    }
    if (ec) {
      auto e = failure(ec, "sending the message");
      shut();
      co_return std::unexpected(std::move(e));
    }
    co_return result<void>{};
  }

  asio::awaitable<result<std::string>> next_frame() {
    std::array<char, 64 * 1024> buf{};
    for (;;) {
      for (;;) {
        auto ev = fr.next();
        if (ev.kind == framer::event_kind::need_more) break;
        if (ev.kind == framer::event_kind::frame) co_return std::move(ev.payload);
        if (ev.err.code == errc::overloaded) {
          shut();
          co_return fail(errc::parse_error,
                         "the reply is larger than " + std::to_string(opts.max_frame_bytes) + " bytes", where());
        }
        // Garbage between replies: skipped, the next frame is what counts.
      }
      if (!open) co_return fail(errc::unavailable, "not connected", where());
      error_code ec;
      std::size_t n = 0;
      if (tls) {
        n = co_await tls->async_read_some(asio::buffer(buf), asio::redirect_error(asio::use_awaitable, ec));
      } else {
        n = co_await sock.async_read_some(asio::buffer(buf), asio::redirect_error(asio::use_awaitable, ec));
      }
      if (n > 0) fr.feed(std::string_view(buf.data(), n));
      if (ec) {
        // Whatever arrived with the error still counts (a reply then EOF).
        auto ev = fr.next();
        if (ev.kind == framer::event_kind::frame) {
          shut();
          co_return std::move(ev.payload);
        }
        auto e = failure(ec, "waiting for the reply");
        shut();
        co_return std::unexpected(std::move(e));
      }
    }
  }

  asio::awaitable<result<std::vector<std::string>>> exchange(std::string_view payload, std::size_t replies) {
    const auto handler_ex = co_await asio::this_coro::executor;
    std::vector<std::string> out;
    arm(opts.ack_timeout, handler_ex);
    auto w = co_await write_frame(payload);
    if (!w) {
      disarm();
      co_return std::unexpected(w.error());
    }
    for (std::size_t i = 0; i < replies; ++i) {
      if (i > 0) arm(opts.ack_timeout, handler_ex);
      auto r = co_await next_frame();
      if (!r) {
        disarm();
        co_return std::unexpected(r.error());
      }
      out.push_back(std::move(*r));
    }
    disarm();
    co_return out;
  }
};

mllp_client::mllp_client(asio::any_io_executor ex, client_options opts)
    : impl_(std::make_shared<impl>(std::move(ex), std::move(opts))) {}

mllp_client::~mllp_client() {
  impl_->disarm();
  impl_->shut();
}

asio::awaitable<result<void>> mllp_client::connect() {
  auto self = impl_;
  co_return co_await self->connect();
}

asio::awaitable<result<std::string>> mllp_client::exchange(std::string_view payload) {
  auto self = impl_;
  auto r = co_await self->exchange(payload, 1);
  if (!r) co_return std::unexpected(r.error());
  co_return std::move(r->front());
}

asio::awaitable<result<std::vector<std::string>>> mllp_client::exchange_all(std::string_view payload,
                                                                            std::size_t replies) {
  auto self = impl_;
  co_return co_await self->exchange(payload, replies);
}

asio::awaitable<result<void>> mllp_client::send(std::string_view payload) {
  auto self = impl_;
  const auto handler_ex = co_await asio::this_coro::executor;
  self->arm(self->opts.ack_timeout, handler_ex);
  auto r = co_await self->write_frame(payload);
  self->disarm();
  co_return r;
}

asio::awaitable<result<std::string>> mllp_client::read_frame() {
  auto self = impl_;
  const auto handler_ex = co_await asio::this_coro::executor;
  self->arm(self->opts.ack_timeout, handler_ex);
  auto r = co_await self->next_frame();
  self->disarm();
  co_return r;
}

void mllp_client::close() {
  impl_->disarm();
  impl_->shut();
}

bool mllp_client::connected() const { return impl_->open; }

std::string mllp_client::peer() const { return impl_->where(); }

}  // namespace yilian::hl7v2
