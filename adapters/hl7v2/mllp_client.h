// yilian::hl7v2::mllp_client — an MLLP client over TCP or TLS, as Asio
// coroutines: the outbound sender, `yilian hl7 send`, tests and benchmarks use
// it to send a message and wait for its ACK.
//
//   hl7v2::mllp_client c(ex, {.host = "his.example", .port = 2575});
//   if (auto r = co_await c.connect(); !r) { ... r.error() ... }
//   auto ack = co_await c.exchange(payload);      // one reply frame, within ack_timeout
//   // enhanced mode: a commit ACK now, the application ACK later
//   auto more = co_await c.read_frame();
//
// Every operation has a deadline (connect_timeout for resolve + connect + TLS
// handshake, ack_timeout for a write and the reply it waits for), enforced by a
// timer that closes the connection when it fires: after a timeout the reply
// might still come and would be taken for the answer to the next message, so
// the connection is not reused; connect() again.
//
// Errors (as values, never exceptions), all with where = "host:port":
//   errc::unavailable (retriable)    cannot resolve or connect, connection
//                                    closed or reset, not connected
//   errc::timeout (retriable)        a deadline passed
//   errc::unauthenticated            TLS handshake failed (certificate not
//                                    trusted, name mismatch, client cert refused)
//   errc::config_error               TLS files cannot be loaded
//   errc::parse_error                the reply is larger than max_frame_bytes
// Garbage between reply frames is skipped.
//
// Ownership and threads: not thread-safe. Use one client from one coroutine
// at a time, running on a strand or a single-threaded io_context (the deadline
// timer's handler runs on the calling coroutine's executor). Destroying the
// client closes the connection; pending handlers keep the internal state alive.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/error.h"

namespace yilian::hl7v2 {

struct client_tls {
  // PEM CAs trusted for the server's certificate; empty = the system store.
  std::string ca_file;
  // Client certificate chain and key for mutual TLS; empty = none.
  std::string cert_file;
  std::string key_file;
  // Name sent as SNI and checked against the certificate; empty = the host.
  std::string server_name;
  // Check the server's certificate (chain and name). Off only in tests.
  bool verify = true;
};

struct client_options {
  std::string host;
  std::uint16_t port = 0;
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds ack_timeout{30000};
  std::size_t max_frame_bytes = 16u << 20;  // largest reply accepted
  std::optional<client_tls> tls;            // present = MLLP over TLS
};

class mllp_client {
 public:
  mllp_client(boost::asio::any_io_executor ex, client_options opts);
  ~mllp_client();
  mllp_client(const mllp_client&) = delete;
  mllp_client& operator=(const mllp_client&) = delete;

  // Resolves, connects (and handshakes) within connect_timeout. A connection
  // already open is closed first.
  boost::asio::awaitable<result<void>> connect();

  // Frames and writes `payload`, then reads exactly one reply frame, all
  // within ack_timeout. Returns the reply's payload (unframed).
  boost::asio::awaitable<result<std::string>> exchange(std::string_view payload);

  // exchange() that waits for `replies` reply frames (each within
  // ack_timeout), e.g. 2 for a commit ACK followed by an application ACK.
  boost::asio::awaitable<result<std::vector<std::string>>> exchange_all(std::string_view payload,
                                                                        std::size_t replies);

  // The two halves of exchange(), for callers that pipeline or read late replies.
  boost::asio::awaitable<result<void>> send(std::string_view payload);
  boost::asio::awaitable<result<std::string>> read_frame();

  void close();
  bool connected() const;
  // "host:port", for logs and errors.
  std::string peer() const;

  struct impl;

 private:
  std::shared_ptr<impl> impl_;
};

}  // namespace yilian::hl7v2
