// yilian::webhook::http_client — an HTTP/1.1 client over TCP or TLS (Boost.Beast,
// Asio coroutines) for the webhook sender: one POST at a time, each with a
// deadline, on a connection kept alive between POSTs.
//
//   webhook::http_client c(strand, {.address = *webhook::parse_url("https://gw.example/notify")});
//   const std::vector<webhook::header> headers{{"Content-Type", "application/json"}};
//   auto r = co_await c.post(body, headers, 10s);
//   if (!r) { ... r.error() ... } else if (r->status / 100 == 2) { ... }
//
// Deadline. `timeout` bounds the whole attempt: resolving, connecting, the TLS
// handshake (connecting alone is also bounded by connect_timeout), writing the
// request and reading the whole response. When it passes, the connection is
// closed (a late answer could otherwise be read as the next POST's).
//
// Keep-alive. A connection is reused for the next POST unless the server said
// "Connection: close", the response could not be read whole, or it sat idle
// longer than idle_timeout (servers close idle connections; 15 s is below the
// usual 60-75 s). A reused connection that turns out closed by the server
// before it answered (write fails, or the read sees EOF/reset with no byte of
// a response) is replaced by a fresh one once, within the same deadline: the
// event is not the problem, the idle connection was. This may deliver twice
// (the server may have processed the request and then closed); webhooks are
// at-least-once and carry an Idempotency-Key.
//
// TLS. https URLs verify the server certificate chain against the system trust
// store, or the PEM bundle in tls.ca_file, and its name (SNI and subjectAltName
// check against tls.server_name, default the URL's host); tls.cert_file and
// tls.key_file add a client certificate (mutual TLS). TLS 1.2 or later.
//
// Responses. The status code and, for diagnostics, the first
// max_response_bytes of the body (a longer body is cut, the status still
// counts, and the connection is not reused). Retry-After (delta-seconds or an
// HTTP date) is parsed for the caller's backoff.
//
// Errors (as values, never exceptions), where = the URL's origin
// ("https://host:port"; never the path or query, which may carry tokens):
//   errc::unavailable (retriable)   cannot resolve or connect, connection closed
//                                   or reset before the response was complete
//   errc::timeout (retriable)       the deadline (or connect_timeout) passed
//   errc::unauthenticated           TLS handshake failed (certificate not trusted,
//                                   name mismatch, client certificate refused)
//   errc::config_error              TLS files cannot be loaded
//   errc::parse_error               the answer is not HTTP/1.x
//
// Ownership and threads: not thread-safe. One coroutine uses a client at a
// time, on a strand or a single-threaded io_context. Destroying the client
// closes its connection.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/core/error.h"

namespace yilian::webhook {

// An http:// or https:// URL as the client needs it.
struct url {
  bool tls = false;
  std::string host;    // without IPv6 brackets
  std::uint16_t port = 0;
  std::string target;  // path and query, "/" when the URL has none
  // "https://host:port" (brackets kept for IPv6): safe to log and show.
  std::string origin() const;
  // Host header value: host, with ":port" when not the scheme's default.
  std::string host_header() const;
  bool operator==(const url&) const = default;
};

// Parses "http[s]://host[:port][/path][?query][#fragment]" (the fragment is
// dropped). User info ("user:pass@host") is refused: credentials belong in the
// endpoint's credentials, by reference. Errors: errc::config_error naming what
// is wrong.
result<url> parse_url(std::string_view text);

struct client_tls {
  // PEM CAs trusted for the server certificate; empty = the system store.
  std::string ca_file;
  // Client certificate chain and key (mutual TLS); empty = none.
  std::string cert_file;
  std::string key_file;
  // Name sent as SNI and verified in the certificate; empty = the URL's host.
  std::string server_name;
  // Check the server's certificate. Off only in tests.
  bool verify = true;
};

struct client_options {
  url address;
  // TLS settings for https URLs; nullopt = system trust store, verification
  // on, no client certificate. Ignored for http URLs.
  std::optional<client_tls> tls;
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds idle_timeout{15000};
  std::size_t max_response_bytes = 64 * 1024;
  std::string user_agent = "yilian-webhook/1";
};

struct http_response {
  unsigned status = 0;
  std::string body;  // at most max_response_bytes
  bool body_truncated = false;
  // Retry-After as a wait from now; nullopt when absent or unreadable.
  std::optional<std::chrono::seconds> retry_after;
};

// One request header (name as written on the wire).
using header = std::pair<std::string, std::string>;

class http_client {
 public:
  http_client(boost::asio::any_io_executor ex, client_options options);
  ~http_client();
  http_client(const http_client&) = delete;
  http_client& operator=(const http_client&) = delete;

  // POSTs `body` to the URL's target with `headers` (Host, User-Agent,
  // Content-Length and Connection are set here) and reads the response, all
  // within `timeout`. Any status is a result; errors are transport failures.
  // The arguments are references (g++ 12 mishandles temporaries in co_await
  // expressions): keep them alive until the call completes.
  boost::asio::awaitable<result<http_response>> post(const std::string& body, const std::vector<header>& headers,
                                                     std::chrono::milliseconds timeout);

  // Closes the connection (the next post() opens a new one).
  void close();
  bool connected() const;
  const client_options& options() const;

  struct impl;

 private:
  std::shared_ptr<impl> impl_;
};

// Parses a Retry-After value: delta-seconds ("120") or an IMF-fixdate
// ("Wed, 21 Oct 2015 07:28:00 GMT") relative to `now`. Past dates give 0.
std::optional<std::chrono::seconds> parse_retry_after(std::string_view value,
                                                      std::chrono::system_clock::time_point now);

}  // namespace yilian::webhook
