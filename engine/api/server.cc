#include "engine/api/server.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/read_size.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <mutex>
#include <random>
#include <unordered_map>

#include "engine/api/problem.h"
#include "engine/core/log.h"

namespace yilian::api {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;

namespace {

constexpr std::string_view unmatched_route = "unmatched";
constexpr std::size_t max_drain_bytes = 4 * 1024 * 1024;

beast::string_view bsv(std::string_view s) { return {s.data(), s.size()}; }

bool valid_request_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (const char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                    c == '_' || c == '.' || c == ':';
    if (!ok) return false;
  }
  return true;
}

std::string new_request_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(32, '0');
  for (std::size_t half = 0; half < 2; ++half) {
    auto v = rng();
    for (std::size_t i = 0; i < 16; ++i, v >>= 4) out[half * 16 + i] = digits[v & 0xF];
  }
  return out;
}

std::string method_label(http::verb v) {
  if (v == http::verb::unknown) return "OTHER";
  return std::string(std_view(http::to_string(v)));
}

const beast::error_category& http_category() { return http::make_error_code(http::error::bad_method).category(); }

// One accepted connection. Everything but `id` is touched only on the
// connection's strand (the stream's executor).
struct connection {
  connection(std::uint64_t i, tcp::socket s, std::string r) : id(i), stream(std::move(s)), remote(std::move(r)) {}
  std::uint64_t id;
  beast::tcp_stream stream;
  std::string remote;
  bool idle = true;       // waiting for the first byte of a request
  bool draining = false;  // shutdown: answer what is in progress, then close
};

// A response as it goes on the wire: the status line and headers rendered
// into one string (no Beast serializer: its buffer sequences cost more than
// the request they answer), then the body. `connection` is the last header,
// added once the session knows whether the connection stays open.
struct wire {
  unsigned version = 11;
  unsigned status = 0;
  std::string head;  // status line and every header but Connection, each ending in CRLF
  std::string body;
};

// A response ready for the wire plus what metrics and the access log need.
struct outcome {
  wire res;
  std::string route{unmatched_route};
  std::string principal;
  std::string request_id;
};

// A header name or value as written: CR and LF would end the header early
// (and let a value smuggle in another header), so they become spaces.
void append_header_text(std::string& out, std::string_view text) {
  for (const char ch : text) out += (ch == '\r' || ch == '\n') ? ' ' : ch;
}

void append_header(std::string& out, std::string_view name, std::string_view value) {
  append_header_text(out, name);
  out += ": ";
  append_header_text(out, value);
  out += "\r\n";
}

// The server alone frames a response (Content-Length, Connection): a
// handler's own copy of these is dropped, as Beast's prepare_payload did.
bool framing_header(std::string_view name) {
  return beast::iequals(bsv(name), "Content-Length") || beast::iequals(bsv(name), "Connection") ||
         beast::iequals(bsv(name), "Transfer-Encoding");
}

// 1xx, 204 and 304 answers have no body and no Content-Length (RFC 9110 8.6).
bool bodiless(unsigned status) { return status < 200 || status == 204 || status == 304; }

wire to_wire(response r, unsigned version, std::string_view request_id, std::string_view server_name, bool head) {
  wire w;
  w.version = version;
  w.status = static_cast<unsigned>(r.status);
  w.head.reserve(192 + r.content_type.size() + request_id.size());
  w.head += version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
  w.head += std::to_string(w.status);
  w.head += ' ';
  w.head += std_view(http::obsolete_reason(r.status));
  w.head += "\r\n";
  append_header(w.head, "Server", server_name);
  if (!r.content_type.empty()) append_header(w.head, "Content-Type", r.content_type);
  for (const auto& [k, v] : r.headers) {
    if (!framing_header(k)) append_header(w.head, k, v);
  }
  append_header(w.head, "X-Request-Id", request_id);
  // HEAD: the same headers (Content-Length included) as GET, no body.
  if (!bodiless(w.status)) append_header(w.head, "Content-Length", std::to_string(r.body.size()));
  if (!head && !bodiless(w.status)) w.body = std::move(r.body);
  return w;
}

// HTTP/1.1 connections stay open unless told otherwise, HTTP/1.0 ones close
// unless told otherwise (RFC 9112 9.3).
std::string_view connection_header(unsigned version, bool keep_alive) {
  if (version >= 11) return keep_alive ? "\r\n" : "Connection: close\r\n\r\n";
  return keep_alive ? "Connection: keep-alive\r\n\r\n" : "\r\n";
}

// Writes the response in one gather write.
asio::awaitable<void> write_wire(beast::tcp_stream& stream, wire& w, bool keep_alive, beast::error_code& ec) {
  w.head += connection_header(w.version, keep_alive);
  const std::array<asio::const_buffer, 2> buffers{asio::buffer(w.head), asio::buffer(w.body)};
  co_await asio::async_write(stream, buffers, asio::redirect_error(asio::use_awaitable, ec));
}

// Reads one request into `parser`: parses what `buffer` already holds first
// and reads from the socket only when the parser needs more, so a request
// that arrived whole costs no extra trip through the scheduler. Answers
// "Expect: 100-continue" once the header is in. Errors as Beast's http::read:
// end_of_stream when the peer closed before a byte of the request,
// partial_message when it closed in the middle, the parser's errors
// (header_limit, body_limit, bad_*), or the socket's.
asio::awaitable<void> read_request(beast::tcp_stream& stream, beast::flat_buffer& buffer,
                                   http::request_parser<http::string_body>& parser, beast::error_code& ec) {
  bool header_seen = false;
  for (;;) {
    if (buffer.size() > 0) {
      const auto used = parser.put(buffer.data(), ec);
      buffer.consume(used);
      if (ec == http::error::need_more) {
        ec = {};
      } else if (ec) {
        co_return;
      }
      if (parser.is_done()) co_return;
      if (parser.is_header_done() && !header_seen) {
        header_seen = true;
        if (beast::iequals(parser.get()[http::field::expect], "100-continue")) {
          static constexpr std::string_view cont = "HTTP/1.1 100 Continue\r\n\r\n";
          co_await asio::async_write(stream, asio::buffer(cont), asio::redirect_error(asio::use_awaitable, ec));
          if (ec) co_return;
        }
      }
      if (used > 0 && buffer.size() > 0) continue;  // the parser stops after the header; go on with the body
    }
    const auto n = co_await stream.async_read_some(buffer.prepare(beast::read_size(buffer, 65536)),
                                                   asio::redirect_error(asio::use_awaitable, ec));
    if (ec == asio::error::eof) ec = parser.got_some() ? http::error::partial_message : http::error::end_of_stream;
    if (ec) co_return;
    buffer.commit(n);
  }
}

// Half-closes, reads (and drops) what the client still sends for a short
// while, then closes: closing with unread input would reset the connection
// and could destroy the response we just sent.
asio::awaitable<void> graceful_close(beast::tcp_stream& stream, std::chrono::milliseconds linger) {
  beast::error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  std::array<char, 8192> sink{};
  std::size_t total = 0;
  stream.expires_after(linger);
  while (!ec && total < max_drain_bytes) {
    total += co_await stream.async_read_some(asio::buffer(sink), asio::redirect_error(asio::use_awaitable, ec));
  }
  stream.close();
}

}  // namespace

struct server::impl : std::enable_shared_from_this<server::impl> {
  impl(asio::io_context& ctx, server_options o, metrics::registry& reg);

  asio::awaitable<void> accept_loop();
  asio::awaitable<void> session(std::shared_ptr<connection> c);
  asio::awaitable<void> reject(tcp::socket sock);
  asio::awaitable<outcome> handle(http::request<http::string_body> msg, std::string remote);
  asio::awaitable<response> dispatch(request& req, outcome& o);
  std::optional<outcome> protocol_error(const beast::error_code& ec,
                                        const http::request_parser<http::string_body>& parser);
  void record(const outcome& o, std::string_view method, steady::time_point first_byte);
  void on_session_end(std::uint64_t id);
  void stop(std::function<void()> cb);
  void maybe_finish();
  void force_close_all();
  std::vector<std::shared_ptr<connection>> live_connections();
  std::shared_ptr<const credential_store> credentials() {
    std::lock_guard lock(creds_mutex);
    return creds;
  }
  std::chrono::milliseconds linger() const {
    return std::min(opts.read_timeout, std::chrono::milliseconds(2000));
  }

  asio::io_context& ioc;
  server_options opts;
  metrics::registry& registry;
  router routes;
  readiness_check readiness;
  log::logger lg = log::get("http");

  std::mutex creds_mutex;
  std::shared_ptr<const credential_store> creds;

  metrics::counter_family& requests;
  metrics::histogram_family& durations;
  metrics::gauge& open_gauge;
  metrics::counter& accepted;
  metrics::counter& rejected;
  metrics::counter& read_timeouts;

  asio::strand<asio::io_context::executor_type> strand;  // acceptor and grace timer
  tcp::acceptor acceptor;
  asio::steady_timer grace;
  std::atomic<std::uint16_t> bound_port{0};
  std::atomic<std::size_t> open_count{0};
  std::atomic<bool> stopping{false};

  // Guarded by mutex: the live connections and the shutdown bookkeeping.
  std::mutex mutex;
  std::unordered_map<std::uint64_t, std::weak_ptr<connection>> sessions;
  std::uint64_t next_id = 1;
  bool started = false;
  bool accept_done = false;
  bool finished = false;
  std::vector<std::function<void()>> on_stopped;
};

server::impl::impl(asio::io_context& ctx, server_options o, metrics::registry& reg)
    : ioc(ctx),
      opts(std::move(o)),
      registry(reg),
      requests(reg.add_counter("yilian_http_requests_total", "HTTP requests answered, by method, route pattern and status.",
                               {"method", "route", "status"})),
      durations(reg.add_histogram("yilian_http_request_duration_seconds",
                                  "Time from a request's first byte to its response written.", {"method", "route"})),
      open_gauge(reg.add_gauge("yilian_http_open_connections", "HTTP connections currently open.").get()),
      accepted(reg.add_counter("yilian_http_connections_total", "HTTP connections accepted.").get()),
      rejected(reg.add_counter("yilian_http_connections_rejected_total",
                               "HTTP connections refused with 503 because max_connections were open.")
                   .get()),
      read_timeouts(reg.add_counter("yilian_http_read_timeouts_total",
                                    "HTTP connections closed because a request was not received in time.")
                        .get()),
      strand(asio::make_strand(ctx)),
      acceptor(strand),
      grace(strand) {
  const route_options public_route{.auth = auth_mode::none, .roles = {}};
  routes.add(http::verb::get, "/healthz", [](request&) { return response::text("ok"); }, public_route);
  routes.add(
      http::verb::get, "/readyz",
      [this](request&) {
        std::vector<std::string> reasons;
        if (stopping.load()) {
          reasons.emplace_back("shutting down");
        } else if (readiness) {
          try {
            reasons = readiness();
          } catch (const std::exception& e) {
            reasons.emplace_back(std::string("readiness check failed: ") + e.what());
          }
        }
        if (reasons.empty()) return response::json({{"status", "ready"}});
        return response::json({{"status", "not_ready"}, {"reasons", reasons}}, http::status::service_unavailable);
      },
      public_route);
  routes.add(
      http::verb::get, "/metrics",
      [this](request&) {
        auto r = response::text(registry.render());
        r.content_type = std::string(metrics::content_type);
        return r;
      },
      public_route);
}

// ---- accepting ----------------------------------------------------------------

asio::awaitable<void> server::impl::accept_loop() {
  auto self = shared_from_this();
  for (;;) {
    tcp::socket sock(opts.connection_executor ? opts.connection_executor()
                                              : asio::any_io_executor(asio::make_strand(ioc)));
    beast::error_code ec;
    co_await acceptor.async_accept(sock, asio::redirect_error(asio::use_awaitable, ec));
    if (stopping.load() || ec == asio::error::operation_aborted || !acceptor.is_open()) {
      sock.close(ec);
      break;
    }
    if (ec) {
      // Out of descriptors and the like: say so and back off instead of spinning.
      lg.warn("accept failed", {{"error", ec.message()}});
      asio::steady_timer pause(strand, std::chrono::milliseconds(100));
      co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    if (open_count.load() >= opts.max_connections) {
      rejected.inc();
      auto ex = sock.get_executor();
      asio::co_spawn(ex, reject(std::move(sock)), [self](std::exception_ptr) {});
      continue;
    }
    beast::error_code rec;
    const auto ep = sock.remote_endpoint(rec);
    std::string remote = rec ? std::string{} : ep.address().to_string();
    std::shared_ptr<connection> c;
    {
      std::lock_guard lock(mutex);
      c = std::make_shared<connection>(next_id++, std::move(sock), std::move(remote));
      sessions.emplace(c->id, c);
    }
    open_count.fetch_add(1);
    open_gauge.inc();
    accepted.inc();
    const auto id = c->id;
    auto ex = c->stream.get_executor();
    asio::co_spawn(ex, session(std::move(c)), [self, id](std::exception_ptr e) {
      if (e) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& x) {
          self->lg.error("session failed", {{"error", x.what()}});
        } catch (...) {
          self->lg.error("session failed", {{"error", "unknown exception"}});
        }
      }
      self->on_session_end(id);
    });
  }
  {
    std::lock_guard lock(mutex);
    accept_done = true;
  }
  maybe_finish();
}

asio::awaitable<void> server::impl::reject(tcp::socket sock) {
  beast::tcp_stream stream(std::move(sock));
  const auto id = new_request_id();
  auto r = problem_response(http::status::service_unavailable, "overloaded", "throttled",
                            "too many open connections; retry later", {}, {}, id, true);
  auto res = to_wire(std::move(r), 11, id, opts.server_name, false);
  beast::error_code ec;
  stream.expires_after(opts.write_timeout);
  co_await write_wire(stream, res, false, ec);
  co_await graceful_close(stream, linger());
}

// ---- one connection -------------------------------------------------------------

asio::awaitable<void> server::impl::session(std::shared_ptr<connection> c) {
  auto self = shared_from_this();
  beast::flat_buffer buffer;
  bool first = true;
  for (;;) {
    beast::error_code ec;
    if (buffer.size() == 0) {
      // Idle: between requests on a keep-alive connection (or before the
      // first one). This is the only state in which shutdown closes us.
      c->idle = true;
      if (c->draining || stopping.load()) break;
      c->stream.expires_after(first ? opts.read_timeout : opts.idle_timeout);
      const auto n =
          co_await c->stream.async_read_some(buffer.prepare(8192), asio::redirect_error(asio::use_awaitable, ec));
      c->idle = false;
      if (ec) {
        if (first && ec == beast::error::timeout) read_timeouts.inc();
        break;
      }
      buffer.commit(n);
    }
    c->idle = false;
    first = false;

    const auto first_byte = steady::now();
    http::request_parser<http::string_body> parser;
    parser.header_limit(opts.header_limit);
    parser.body_limit(opts.body_limit);
    c->stream.expires_after(opts.read_timeout);  // the whole request, headers and body
    co_await read_request(c->stream, buffer, parser, ec);
    if (ec) {
      if (ec == beast::error::timeout) {
        read_timeouts.inc();
        lg.debug("request read timed out", {{"remote", c->remote}});
        break;
      }
      auto o = protocol_error(ec, parser);
      if (!o) break;  // the client went away
      c->stream.expires_after(opts.write_timeout);
      co_await write_wire(c->stream, o->res, false, ec);
      if (!ec) {
        record(*o, parser.is_header_done() ? method_label(parser.get().method()) : "OTHER", first_byte);
        co_await graceful_close(c->stream, linger());
      }
      break;
    }

    auto msg = parser.release();
    const bool client_keeps = msg.keep_alive();
    const auto method = method_label(msg.method());
    auto o = co_await handle(std::move(msg), c->remote);
    const bool keep = client_keeps && !c->draining && !stopping.load();
    c->stream.expires_after(opts.write_timeout);
    co_await write_wire(c->stream, o.res, keep, ec);
    if (ec) {
      lg.debug("response not delivered", {{"request_id", o.request_id}, {"error", ec.message()}});
      break;
    }
    record(o, method, first_byte);
    if (!keep) {
      co_await graceful_close(c->stream, linger());
      break;
    }
  }
  beast::error_code ignored;
  c->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  c->stream.close();
}

std::optional<outcome> server::impl::protocol_error(const beast::error_code& ec,
                                                    const http::request_parser<http::string_body>& parser) {
  if (ec.category() != http_category() || ec == http::error::end_of_stream || ec == http::error::partial_message) {
    return std::nullopt;  // I/O error, reset, or the peer closed: nobody to answer
  }
  outcome o;
  o.request_id = new_request_id();
  std::string_view path;
  unsigned version = 11;
  if (parser.is_header_done()) {
    const auto target = std_view(parser.get().target());
    path = target.substr(0, target.find('?'));
    version = parser.get().version();
    const auto client_id = std_view(parser.get()[bsv("X-Request-Id")]);
    if (valid_request_id(client_id)) o.request_id = std::string(client_id);
  }
  response r;
  if (ec == http::error::body_limit) {
    r = problem_response(http::status::payload_too_large, "payload_too_large", "too-long",
                         "request body exceeds " + std::to_string(opts.body_limit) + " bytes", {}, path, o.request_id);
  } else if (ec == http::error::header_limit) {
    r = problem_response(http::status::request_header_fields_too_large, "header_too_large", "too-long",
                         "request header exceeds " + std::to_string(opts.header_limit) + " bytes", {}, path,
                         o.request_id);
  } else {
    r = problem_response(http::status::bad_request, "bad_request", "structure", "malformed HTTP request: " + ec.message(),
                         {}, path, o.request_id);
  }
  o.res = to_wire(std::move(r), version, o.request_id, opts.server_name, false);
  return o;
}

// ---- one request ------------------------------------------------------------------

asio::awaitable<outcome> server::impl::handle(http::request<http::string_body> msg, std::string remote) {
  outcome o;
  request req;
  const auto client_id = std_view(msg[bsv("X-Request-Id")]);
  req.request_id = valid_request_id(client_id) ? std::string(client_id) : new_request_id();
  o.request_id = req.request_id;
  const unsigned version = msg.version();
  const bool head = msg.method() == http::verb::head;
  req.message = std::move(msg);
  req.remote_address = std::move(remote);
  auto r = co_await dispatch(req, o);
  o.res = to_wire(std::move(r), version, o.request_id, opts.server_name, head);
  co_return o;
}

asio::awaitable<response> server::impl::dispatch(request& req, outcome& o) {
  const auto target = req.target();
  const auto qpos = target.find('?');
  const auto raw_path = target.substr(0, qpos);
  auto m = routes.match(req.method(), raw_path);
  if (!m) co_return error_response(m.error(), raw_path, req.request_id);
  req.path = std::move(m->path);
  if (m->found == nullptr) {
    if (m->allowed.empty()) {
      co_return error_response(error::make(errc::not_found, "no route for this path"), req.path, req.request_id);
    }
    auto r = problem_response(http::status::method_not_allowed, "method_not_allowed", "not-supported",
                              "method " + method_label(req.method()) + " is not allowed here", {}, req.path,
                              req.request_id);
    r.headers.emplace_back("Allow", allow_header(m->allowed));
    co_return r;
  }
  const route& rt = *m->found;
  o.route = rt.pattern;
  req.route = rt.pattern;
  req.path_params = std::move(m->path_params);
  if (qpos != std::string_view::npos) {
    auto q = parse_query(target.substr(qpos + 1));
    if (!q) co_return error_response(q.error(), req.path, req.request_id);
    req.query = std::move(*q);
  }

  if (rt.options.auth == auth_mode::bearer) {
    const auto token = parse_bearer(req.header(http::field::authorization));
    std::optional<principal> who;
    if (token) {
      if (const auto store = credentials()) {
        who = store->authenticate(*token);
        if (!who && patient_token_key::looks_like(*token)) {
          // Why, for the operator (never the token): the client hears only "invalid".
          const auto why = store->authenticate_patient(*token);
          lg.debug("patient token refused", {{"request_id", req.request_id},
                                             {"reason", why ? "static" : to_string(why.error())}});
        }
      }
    }
    if (!who) {
      auto r = error_response(
          error::make(errc::unauthenticated, token ? "invalid bearer token" : "a bearer token is required"), req.path,
          req.request_id);
      if (token) {
        for (auto& [k, v] : r.headers) {
          if (k == "WWW-Authenticate") v = "Bearer realm=\"yilian\", error=\"invalid_token\"";
        }
      }
      co_return r;
    }
    o.principal = who->id.value();
    // A route open to any principal (no roles listed) is not open to the
    // narrow roles (a patient, the patient gateway): they reach only the
    // routes that name them.
    const bool permitted = narrow_role(who->role)
                               ? std::find(rt.options.roles.begin(), rt.options.roles.end(), who->role) !=
                                     rt.options.roles.end()
                               : rt.allows(who->role);
    if (!permitted) {
      co_return error_response(
          error::make(errc::permission_denied, "role " + std::string(to_string(who->role)) + " may not use this route"),
          req.path, req.request_id);
    }
    req.principal = std::move(who);
  }

  result<response> res = fail(errc::internal, "handler did not run");
  try {
    if (rt.handle.is_async()) {
      res = co_await rt.handle.async()(req);
    } else {
      res = rt.handle.sync()(req);
    }
  } catch (const std::exception& e) {
    res = fail(errc::internal, std::string("handler threw: ") + e.what());
  } catch (...) {
    res = fail(errc::internal, "handler threw a non-standard exception");
  }
  if (res) co_return std::move(*res);

  const auto& e = res.error();
  const auto mapping = map_error(e.code);
  const auto lvl = static_cast<unsigned>(mapping.status) >= 500 ? log::level::error : log::level::debug;
  lg.write(lvl, "request failed",
           {{"request_id", req.request_id},
            {"route", rt.pattern},
            {"code", to_string(e.code)},
            {"error", e.message},
            {"where", e.where},
            {"retriable", e.retriable}});
  co_return error_response(e, req.path, req.request_id);
}

void server::impl::record(const outcome& o, std::string_view method, steady::time_point first_byte) {
  const auto elapsed = steady::now() - first_byte;
  const auto seconds = std::chrono::duration<double>(elapsed).count();
  const auto status = o.res.status;
  const auto status_text = std::to_string(status);
  requests.with({method, o.route, status_text}).inc();
  durations.with({method, o.route}).observe(seconds);
  lg.info("request", {{"request_id", o.request_id},
                      {"method", method},
                      {"route", o.route},
                      {"status", status},
                      {"duration_ms", std::round(seconds * 1e6) / 1e3},  // microsecond resolution
                      o.principal.empty() ? log::field("principal", nullptr) : log::field("principal", o.principal),
                      {"bytes_out", o.res.body.size()}});
}

// ---- shutdown -----------------------------------------------------------------------

void server::impl::on_session_end(std::uint64_t id) {
  {
    std::lock_guard lock(mutex);
    sessions.erase(id);
  }
  open_count.fetch_sub(1);
  open_gauge.dec();
  maybe_finish();
}

std::vector<std::shared_ptr<connection>> server::impl::live_connections() {
  std::vector<std::shared_ptr<connection>> out;
  std::lock_guard lock(mutex);
  for (const auto& [id, w] : sessions) {
    if (auto c = w.lock()) out.push_back(std::move(c));
  }
  return out;
}

void server::impl::stop(std::function<void()> cb) {
  bool call_now = false;
  {
    std::lock_guard lock(mutex);
    if (finished) {
      call_now = true;
    } else if (cb) {
      on_stopped.push_back(std::move(cb));
    }
  }
  if (call_now) {
    if (cb) cb();
    return;
  }
  if (stopping.exchange(true)) return;
  asio::post(strand, [self = shared_from_this()] {
    beast::error_code ec;
    self->acceptor.close(ec);  // the accept loop ends with operation_aborted
    {
      std::lock_guard lock(self->mutex);
      if (!self->started) self->accept_done = true;
    }
    self->grace.expires_after(self->opts.shutdown_grace);
    self->grace.async_wait([self](beast::error_code e) {
      if (!e) self->force_close_all();
    });
    for (auto& c : self->live_connections()) {
      asio::post(c->stream.get_executor(), [c] {
        c->draining = true;
        if (c->idle) c->stream.close();  // wakes the idle read with operation_aborted
      });
    }
    self->lg.info("http server stopping", {{"open_connections", self->open_count.load()}});
    self->maybe_finish();
  });
}

void server::impl::force_close_all() {
  const auto live = live_connections();
  if (!live.empty()) lg.warn("closing connections still open after the shutdown grace period", {{"count", live.size()}});
  for (const auto& c : live) {
    asio::post(c->stream.get_executor(), [c] { c->stream.close(); });
  }
}

void server::impl::maybe_finish() {
  std::vector<std::function<void()>> callbacks;
  {
    std::lock_guard lock(mutex);
    if (!stopping.load() || !accept_done || !sessions.empty() || finished) return;
    finished = true;
    callbacks.swap(on_stopped);
  }
  asio::post(strand, [self = shared_from_this()] { self->grace.cancel(); });
  lg.info("http server stopped");
  for (auto& cb : callbacks) cb();
}

// ---- the public face -------------------------------------------------------------------

server::server(asio::io_context& ioc, server_options opts, metrics::registry& metrics)
    : impl_(std::make_shared<impl>(ioc, std::move(opts), metrics)) {}

server::~server() { impl_->stop({}); }

router& server::routes() { return impl_->routes; }

void server::set_credentials(std::shared_ptr<const credential_store> store) {
  std::lock_guard lock(impl_->creds_mutex);
  impl_->creds = std::move(store);
}

void server::set_readiness(readiness_check check) { impl_->readiness = std::move(check); }

result<void> server::start() {
  auto& s = *impl_;
  {
    std::lock_guard lock(s.mutex);
    if (s.started) return fail(errc::invalid_argument, "server already started");
    if (s.stopping.load()) return fail(errc::cancelled, "server is stopping");
  }
  beast::error_code ec;
  const auto address = asio::ip::make_address(s.opts.address, ec);
  if (ec) return fail(errc::invalid_argument, "bad listen address: " + ec.message(), s.opts.address);
  const tcp::endpoint ep(address, s.opts.port);
  const auto where = s.opts.address + ":" + std::to_string(s.opts.port);
  s.acceptor.open(ep.protocol(), ec);
  if (!ec) s.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) s.acceptor.bind(ep, ec);
  if (!ec) s.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    beast::error_code ignored;
    s.acceptor.close(ignored);
    return fail(errc::io_error, "cannot listen: " + ec.message(), where);
  }
  s.bound_port.store(s.acceptor.local_endpoint(ec).port());
  {
    std::lock_guard lock(s.mutex);
    s.started = true;
  }
  s.lg.info("http server listening", {{"address", s.opts.address}, {"port", s.bound_port.load()}});
  asio::co_spawn(s.strand, s.accept_loop(), [self = impl_](std::exception_ptr e) {
    if (e) {
      self->lg.critical("accept loop failed");
      std::lock_guard lock(self->mutex);
      self->accept_done = true;
    }
  });
  return {};
}

std::uint16_t server::port() const noexcept { return impl_->bound_port.load(); }

void server::stop(std::function<void()> on_stopped) { impl_->stop(std::move(on_stopped)); }

bool server::stopping() const noexcept { return impl_->stopping.load(); }

}  // namespace yilian::api
