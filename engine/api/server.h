// yilian::api::server — the engine's HTTP/1.1 server (Boost.Beast, Asio C++20
// coroutines): keep-alive, a fresh request parser per request with body and
// header limits, a read deadline per request and an idle deadline between
// requests, a bound on concurrent connections, bearer-token authentication,
// routing, built-in /healthz /readyz /metrics, HTTP metrics, an access log
// line per request and graceful shutdown.
//
//   asio::io_context ioc;
//   metrics::registry reg;
//   api::server srv(ioc, {.address = "0.0.0.0", .port = 8080}, reg);
//   srv.routes().add(http::verb::get, "/fhir/r4/Patient/{id}", get_patient,
//                    {.roles = {api::role::hospital_system, api::role::operator_}});
//   srv.set_credentials(std::make_shared<const api::credential_store>(std::move(store)));
//   srv.set_readiness([&] { return app.readiness_problems(); });
//   if (auto r = srv.start(); !r) { ... r.error() ... }
//   ... run ioc on N threads ...
//   srv.stop([&] { /* all connections closed */ });
//
// Ownership and strands. The caller owns the io_context and runs it on as many
// threads as it likes. The server's shared state (acceptor, shutdown timer)
// lives on one strand of its own; each accepted connection gets its own strand,
// on which its session coroutine, the routing, authentication and the handler
// run. The set of live connections (needed by stop()) is guarded by a mutex;
// counters are atomics. The internal state is reference-counted by the accept
// loop and every session, so destroying the `server` object early is safe (it
// calls stop()); the metrics registry, handlers' captures and the readiness
// function must outlive the io_context's pending work.
//
// Answers the server gives by itself (all with X-Request-Id and JSON problem
// bodies, see problem.h): 400 malformed request or target, 401 missing/invalid
// token (WWW-Authenticate: Bearer; static tokens and patient tokens, see
// auth.h), 403 role not allowed (a patient or the patient gateway reaches only
// routes that list its role), 404 unknown path,
// 405 wrong method (Allow), 413 body over body_limit (also before the body is
// sent when the client uses Expect: 100-continue), 431 header over
// header_limit, 500 handler threw, 503 connection limit reached or shutting
// down. A request whose read deadline passes is not answered: the connection is
// closed (counted in yilian_http_read_timeouts_total).
//
// Metrics (registered on the registry passed in):
//   yilian_http_requests_total{method,route,status}       counter
//   yilian_http_request_duration_seconds{method,route}    histogram (first byte read -> response written)
//   yilian_http_open_connections                          gauge
//   yilian_http_connections_total                         counter (accepted)
//   yilian_http_connections_rejected_total                counter (over max_connections)
//   yilian_http_read_timeouts_total                       counter
// route is the matched pattern, "unmatched" for 404s and malformed requests.
//
// Access log: component "http", one info line per response:
//   {"msg":"request","request_id":..,"method":"GET","route":"/fhir/r4/Patient/{id}",
//    "status":200,"duration_ms":1.2,"principal":"his-a","bytes_out":123}
// No bodies, paths, query strings or header values are logged (they may carry
// personal data); the principal is its id.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/api/auth.h"
#include "engine/api/router.h"
#include "engine/core/error.h"
#include "engine/core/io_pool.h"
#include "engine/core/metrics.h"

namespace yilian::api {

struct server_options {
  std::string address = "127.0.0.1";
  std::uint16_t port = 8080;                  // 0: an ephemeral port; read it with server::port()
  std::uint64_t body_limit = 1024 * 1024;     // bytes; larger bodies get 413
  std::uint32_t header_limit = 16 * 1024;     // bytes of request line + headers; larger get 431
  std::chrono::milliseconds read_timeout{15'000};   // one request, from its first byte (and a new connection's first byte)
  std::chrono::milliseconds idle_timeout{60'000};   // keep-alive wait for the next request
  std::chrono::milliseconds write_timeout{15'000};  // one response
  std::size_t max_connections = 512;                // beyond: 503 + close
  std::chrono::milliseconds shutdown_grace{10'000};  // in-flight requests get this long after stop()
  std::string server_name = "yilian";               // Server header
  // Where an accepted connection runs: an executor that runs its handlers one
  // at a time (an io_pool context, run by one thread). Unset: a strand on the
  // server's io_context.
  connection_executor_source connection_executor;
};

// Why the engine is not ready (bus unreachable, config not loaded, ...); empty
// means ready. Called on a connection strand for each GET /readyz: must be
// cheap and must not block (report cached state).
using readiness_check = std::function<std::vector<std::string>()>;

class server {
 public:
  server(boost::asio::io_context& ioc, server_options opts, metrics::registry& metrics);
  ~server();  // stop() without waiting
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  // Add routes here before start(); the router is read-only afterwards.
  // /healthz, /readyz and /metrics (GET, public) are already registered.
  router& routes();

  // Who may call. Thread-safe; may be replaced while serving (requests in
  // progress keep the store they started with). Without one, every
  // non-public route answers 401.
  void set_credentials(std::shared_ptr<const credential_store> store);
  // Before start().
  void set_readiness(readiness_check check);

  // Binds, listens and starts accepting on the io_context. Fails with io_error
  // (address in use, permission) or invalid_argument (bad address). Call once.
  result<void> start();

  // The bound port (the real one when options.port was 0); 0 before start().
  std::uint16_t port() const noexcept;

  // Graceful shutdown, from any thread, idempotent: stop accepting; /readyz
  // answers 503; idle keep-alive connections are closed; requests being read
  // or handled finish and are answered with "Connection: close"; whatever is
  // still open after shutdown_grace is closed. `on_stopped` runs once every
  // connection is closed (on an io_context thread, or inline if that already
  // happened). The io_context then runs out of server work.
  void stop(std::function<void()> on_stopped = {});
  bool stopping() const noexcept;

  struct impl;

 private:
  std::shared_ptr<impl> impl_;
};

}  // namespace yilian::api
