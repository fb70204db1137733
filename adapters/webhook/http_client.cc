#include "adapters/webhook/http_client.h"

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <openssl/ssl.h>

#include <algorithm>
#include <array>
#include <charconv>

#include "engine/core/time_zone.h"

namespace yilian::webhook {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using clock = std::chrono::steady_clock;

namespace {

bool is_ip_address(const std::string& host) {
  error_code ec;
  (void)asio::ip::make_address(host, ec);
  return !ec;
}

std::string ms_text(std::chrono::milliseconds d) { return std::to_string(d.count()) + " ms"; }

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

// --- url ---------------------------------------------------------------------

std::string url::origin() const {
  const bool v6 = host.find(':') != std::string::npos;
  return std::string(tls ? "https://" : "http://") + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::string url::host_header() const {
  const bool v6 = host.find(':') != std::string::npos;
  std::string h = v6 ? "[" + host + "]" : host;
  if (port != (tls ? 443 : 80)) h += ":" + std::to_string(port);
  return h;
}

result<url> parse_url(std::string_view text) {
  url u;
  std::string_view rest;
  if (text.starts_with("https://")) {
    u.tls = true;
    rest = text.substr(8);
  } else if (text.starts_with("http://")) {
    rest = text.substr(7);
  } else {
    return fail(errc::config_error, "not an http:// or https:// URL", "address");
  }
  if (const auto hash = rest.find('#'); hash != std::string_view::npos) rest = rest.substr(0, hash);
  const auto path_at = rest.find_first_of("/?");
  const std::string_view authority = rest.substr(0, path_at);
  std::string_view target = path_at == std::string_view::npos ? std::string_view{} : rest.substr(path_at);
  if (authority.find('@') != std::string_view::npos) {
    return fail(errc::config_error,
                "the URL carries user info; give credentials in the endpoint's credentials, by reference", "address");
  }
  std::string_view host;
  std::string_view port;
  if (authority.starts_with('[')) {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return fail(errc::config_error, "unclosed '[' in the host", "address");
    host = authority.substr(1, close - 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return fail(errc::config_error, "unexpected text after the IPv6 host", "address");
      port = after.substr(1);
      if (port.empty()) return fail(errc::config_error, "empty port", "address");
    }
  } else {
    const auto colon = authority.rfind(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) {
      port = authority.substr(colon + 1);
      if (port.empty()) return fail(errc::config_error, "empty port", "address");
    }
  }
  if (host.empty()) return fail(errc::config_error, "the URL has no host", "address");
  if (host.find_first_of(" \t/\\") != std::string_view::npos) {
    return fail(errc::config_error, "the host contains characters a host cannot have", "address");
  }
  u.host = std::string(host);
  if (port.empty()) {
    u.port = u.tls ? 443 : 80;
  } else {
    unsigned value = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc{} || end != port.data() + port.size() || value == 0 || value > 65535) {
      return fail(errc::config_error, "port '" + std::string(port) + "' is not 1 to 65535", "address");
    }
    u.port = static_cast<std::uint16_t>(value);
  }
  if (target.find_first_of(" \r\n\t") != std::string_view::npos) {
    return fail(errc::config_error, "the path contains whitespace (percent-encode it)", "address");
  }
  u.target = target.empty() ? "/" : (target.front() == '?' ? "/" + std::string(target) : std::string(target));
  return u;
}

std::optional<std::chrono::seconds> parse_retry_after(std::string_view value,
                                                      std::chrono::system_clock::time_point now) {
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  if (all_digits(value)) {
    if (value.size() > 9) return std::chrono::seconds(999999999);
    std::int64_t s = 0;
    std::from_chars(value.data(), value.data() + value.size(), s);
    return std::chrono::seconds(s);
  }
  // IMF-fixdate (RFC 9110 5.6.7): "Sun, 06 Nov 1994 08:49:37 GMT".
  if (value.size() != 29 || value.substr(3, 2) != ", " || value.substr(25) != " GMT") return std::nullopt;
  static constexpr std::array<std::string_view, 12> months{"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const std::string_view day = value.substr(5, 2);
  const std::string_view mon = value.substr(8, 3);
  const std::string_view year = value.substr(12, 4);
  const std::string_view hh = value.substr(17, 2);
  const std::string_view mm = value.substr(20, 2);
  const std::string_view ss = value.substr(23, 2);
  if (value[7] != ' ' || value[11] != ' ' || value[16] != ' ' || value[19] != ':' || value[22] != ':') {
    return std::nullopt;
  }
  const auto m = std::find(months.begin(), months.end(), mon);
  if (m == months.end()) return std::nullopt;
  for (auto part : {day, year, hh, mm, ss}) {
    if (!all_digits(part)) return std::nullopt;
  }
  auto num = [](std::string_view s) {
    int v = 0;
    std::from_chars(s.data(), s.data() + s.size(), v);
    return v;
  };
  const int month = static_cast<int>(m - months.begin()) + 1;
  if (num(day) < 1 || num(day) > days_in_month(num(year), month) || num(hh) > 23 || num(mm) > 59 || num(ss) > 60) {
    return std::nullopt;
  }
  const std::int64_t at = days_from_civil(num(year), month, num(day)) * 86400 + num(hh) * 3600 + num(mm) * 60 + num(ss);
  const std::int64_t now_s =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  return std::chrono::seconds(std::max<std::int64_t>(0, at - now_s));
}

// --- client ------------------------------------------------------------------

struct http_client::impl : std::enable_shared_from_this<impl> {
  impl(asio::any_io_executor e, client_options o) : ex(std::move(e)), opts(std::move(o)) {}

  asio::any_io_executor ex;
  client_options opts;
  std::optional<ssl::context> ctx;
  std::unique_ptr<beast::tcp_stream> plain;
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> secure;
  beast::flat_buffer buffer;
  bool open = false;
  clock::time_point last_used{};
  struct resolve_state;
  std::shared_ptr<resolve_state> resolving;  // while a resolve is in flight

  std::string where() const { return opts.address.origin(); }

  void shut() {
    error_code ignored;
    if (secure) {
      auto& s = secure->next_layer().socket();
      s.shutdown(tcp::socket::shutdown_both, ignored);
      s.close(ignored);
    }
    if (plain) {
      plain->socket().shutdown(tcp::socket::shutdown_both, ignored);
      plain->socket().close(ignored);
    }
    open = false;
    buffer.clear();
  }

  result<void> setup_tls() {
    const client_tls t = opts.tls.value_or(client_tls{});
    error_code ec;
    ctx.emplace(ssl::context::tls_client);
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                     ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    if (t.ca_file.empty()) {
      ctx->set_default_verify_paths(ec);
    } else {
      ctx->load_verify_file(t.ca_file, ec);
    }
    if (ec) {
      ctx.reset();
      return fail(errc::config_error, "cannot load the CA file: " + ec.message(), t.ca_file);
    }
    if (!t.cert_file.empty()) {
      ctx->use_certificate_chain_file(t.cert_file, ec);
      if (ec) {
        ctx.reset();
        return fail(errc::config_error, "cannot load the client certificate: " + ec.message(), t.cert_file);
      }
      ctx->use_private_key_file(t.key_file, ssl::context::pem, ec);
      if (ec) {
        ctx.reset();
        return fail(errc::config_error, "cannot load the client key: " + ec.message(), t.key_file);
      }
    }
    return {};
  }

  error failure(const error_code& ec, std::string_view doing, std::chrono::milliseconds bound) const {
    if (ec == beast::error::timeout) {
      return error::make(errc::timeout, std::string(doing) + " timed out (deadline " + ms_text(bound) + ")", where());
    }
    if (ec == http::error::end_of_stream || ec == asio::error::eof) {
      return error::make(errc::unavailable, std::string(doing) + ": connection closed by the server", where());
    }
    if (ec == http::error::partial_message) {
      return error::make(errc::unavailable, std::string(doing) + ": connection closed in the middle of the response",
                         where());
    }
    if (ec.category() == boost::system::error_code(http::error::bad_version).category()) {
      return error::make(errc::parse_error, "the answer is not HTTP/1.x: " + ec.message(), where());
    }
    return error::make(errc::unavailable, std::string(doing) + " failed: " + ec.message(), where());
  }

  struct resolve_state {
    explicit resolve_state(const asio::any_io_executor& e) : resolver(e) {}
    tcp::resolver resolver;
    bool timed_out = false;
  };

  asio::awaitable<result<void>> connect(clock::time_point deadline) {
    const auto handler_ex = co_await asio::this_coro::executor;
    shut();
    plain.reset();
    secure.reset();
    if (opts.address.tls && !ctx) {
      if (auto r = setup_tls(); !r) co_return std::unexpected(r.error());
    }
    const auto connect_deadline = std::min(deadline, clock::now() + opts.connect_timeout);
    const auto bound = std::chrono::duration_cast<std::chrono::milliseconds>(connect_deadline - clock::now());

    // The resolver is not the stream: its deadline is a timer of its own. The
    // timer's handler owns the resolver's state, so it may run after this
    // frame has moved on.
    auto rs = std::make_shared<resolve_state>(ex);
    resolving = rs;
    asio::steady_timer guard(ex);
    guard.expires_at(connect_deadline);
    guard.async_wait(asio::bind_executor(handler_ex, [rs](error_code e) {
      if (!e) {
        rs->timed_out = true;
        rs->resolver.cancel();
      }
    }));
    error_code ec;
    const std::string port = std::to_string(opts.address.port);
    const auto endpoints =
        co_await rs->resolver.async_resolve(opts.address.host, port, asio::redirect_error(asio::use_awaitable, ec));
    guard.cancel();
    resolving.reset();
    if (ec) {
      if (rs->timed_out) co_return fail(errc::timeout, "resolving the host timed out after " + ms_text(bound), where());
      co_return fail(errc::unavailable, "cannot resolve the host: " + ec.message(), where());
    }

    beast::tcp_stream* stream = nullptr;
    if (opts.address.tls) {
      secure = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(ex, *ctx);
      stream = &secure->next_layer();
    } else {
      plain = std::make_unique<beast::tcp_stream>(ex);
      stream = plain.get();
    }
    stream->expires_at(connect_deadline);
    co_await stream->async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      auto e = ec == beast::error::timeout
                   ? error::make(errc::timeout, "connect timed out after " + ms_text(bound), where())
                   : error::make(errc::unavailable, "connect failed: " + ec.message(), where());
      shut();
      co_return std::unexpected(std::move(e));
    }
    error_code ignored;
    stream->socket().set_option(tcp::no_delay(true), ignored);

    if (opts.address.tls) {
      const client_tls t = opts.tls.value_or(client_tls{});
      const std::string name = t.server_name.empty() ? opts.address.host : t.server_name;
      if (t.verify) {
        secure->set_verify_mode(ssl::verify_peer);
        secure->set_verify_callback(ssl::host_name_verification(name));
      } else {
        secure->set_verify_mode(ssl::verify_none);
      }
      if (!is_ip_address(name)) SSL_set_tlsext_host_name(secure->native_handle(), name.c_str());
      stream->expires_at(connect_deadline);
      co_await secure->async_handshake(ssl::stream_base::client, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        auto e = ec == beast::error::timeout
                     ? error::make(errc::timeout, "TLS handshake timed out after " + ms_text(bound), where())
                     : error::make(errc::unauthenticated, "TLS handshake failed: " + ec.message(), where());
        shut();
        co_return std::unexpected(std::move(e));
      }
    }
    open = true;
    last_used = clock::now();
    co_return result<void>{};
  }

  // One request and its response on the open connection. `stale` is set when
  // the failure looks like a connection the server had already closed (the
  // write failed, or nothing of a response arrived before EOF/reset).
  template <class Stream>
  asio::awaitable<result<http_response>> exchange(Stream& s, http::request<http::string_body>& req,
                                                  clock::time_point deadline, std::chrono::milliseconds bound,
                                                  bool& stale, bool& keep) {
    error_code ec;
    beast::get_lowest_layer(s).expires_at(deadline);
    co_await http::async_write(s, req, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      // A server that closed an idle connection makes the write fail this way;
      // not a timeout, nor our own close() (operation_aborted).
      stale = ec == asio::error::broken_pipe || ec == asio::error::connection_reset || ec == asio::error::eof ||
              ec == asio::error::connection_aborted;
      co_return std::unexpected(failure(ec, "sending the request", bound));
    }
    http::response_parser<http::string_body> parser;
    parser.body_limit(opts.max_response_bytes);
    beast::get_lowest_layer(s).expires_at(deadline);
    co_await http::async_read(s, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
    bool truncated = false;
    if (ec == http::error::body_limit && parser.is_header_done()) {
      truncated = true;  // the status is known; the rest of the body is not wanted
    } else if (ec) {
      stale = !parser.got_some() && (ec == http::error::end_of_stream || ec == asio::error::eof ||
                                     ec == asio::error::connection_reset || ec == asio::error::broken_pipe);
      co_return std::unexpected(failure(ec, "waiting for the response", bound));
    }
    auto& res = parser.get();
    http_response out;
    out.status = res.result_int();
    out.body = std::move(res.body());
    if (out.body.size() > opts.max_response_bytes) out.body.resize(opts.max_response_bytes);
    out.body_truncated = truncated;
    if (auto it = res.find(http::field::retry_after); it != res.end()) {
      const auto v = it->value();
      out.retry_after = parse_retry_after(std::string_view(v.data(), v.size()), std::chrono::system_clock::now());
    }
    keep = !truncated && res.keep_alive();
    co_return out;
  }

  asio::awaitable<result<http_response>> post(const std::string& body, const std::vector<header>& headers,
                                              std::chrono::milliseconds timeout) {
    auto self = shared_from_this();  // the frame may outlive the client object
    const auto deadline = clock::now() + timeout;
    http::request<http::string_body> req{http::verb::post, opts.address.target, 11};
    req.set(http::field::host, opts.address.host_header());
    req.set(http::field::user_agent, opts.user_agent);
    for (const auto& [name, value] : headers) req.set(name, value);
    req.body() = body;
    req.keep_alive(true);
    req.prepare_payload();

    if (open && clock::now() - last_used > opts.idle_timeout) shut();
    bool reused = open;
    for (;;) {
      if (!open) {
        auto c = co_await connect(deadline);
        if (!c) co_return std::unexpected(c.error());
        reused = false;
      }
      bool stale = false;
      bool keep = false;
      result<http_response> r;
      if (secure) {
        r = co_await exchange(*secure, req, deadline, timeout, stale, keep);
      } else {
        r = co_await exchange(*plain, req, deadline, timeout, stale, keep);
      }
      if (r) {
        if (keep) {
          last_used = clock::now();
        } else {
          shut();
        }
        co_return r;
      }
      shut();
      if (reused && stale && clock::now() < deadline) {
        reused = false;  // the idle connection was closed under us: once more on a fresh one
        continue;
      }
      co_return r;
    }
  }
};

http_client::http_client(asio::any_io_executor ex, client_options options)
    : impl_(std::make_shared<impl>(std::move(ex), std::move(options))) {}

http_client::~http_client() { impl_->shut(); }

asio::awaitable<result<http_response>> http_client::post(const std::string& body, const std::vector<header>& headers,
                                                         std::chrono::milliseconds timeout) {
  auto i = impl_;
  auto r = co_await i->post(body, headers, timeout);
  co_return r;
}

void http_client::close() {
  impl_->shut();
  if (impl_->resolving) impl_->resolving->resolver.cancel();
}

bool http_client::connected() const { return impl_->open; }

const client_options& http_client::options() const { return impl_->opts; }

}  // namespace yilian::webhook
