// yilian::hl7v2::listener — the inbound MLLP channel of one hospital: accepts
// TCP (or TLS) connections on the address and port its profile declares,
// unframes the byte stream of each (framer.h) and hands every complete frame
// to the ingest pipeline (frame_handler), writing back what it answers.
//
//   hl7v2::listener l(ex, {.hospital = "zs-tertiary", .port = 2575}, ingest, metrics);
//   if (auto r = l.start(); !r) { ... r.error() says address:port and why ... }
//   ...
//   l.stop();
//   co_await l.wait_stopped();
//
// Per connection (one coroutine on its own strand, one framer):
//  - one message at a time, as MLLP requires: a frame is handed to
//    frame_handler::on_frame and nothing more is read from that connection
//    until it returns; its replies are written in order, each framed. Frames
//    that arrived together are handled one after the other.
//  - deadlines: a frame must be complete within read_timeout once its first
//    bytes are waited for (VT seen, FS not yet; a sender trickling bytes does
//    not extend it); writing replies and the TLS handshake get read_timeout
//    too; idle_timeout between frames.
//    When one passes the connection is closed (a half-sent frame is dropped;
//    the sender got no ACK and resends).
//  - framing errors (garbage, a frame abandoned by a new VT, a frame over
//    max_frame_bytes) go to frame_handler::on_framing_error with the first
//    skipped bytes (at most 4 KiB; never log them) and the connection is kept.
//    An oversized frame whose first bytes show an MSH segment is also answered
//    with an AR (CR when MSH-15/16 ask for enhanced mode) built by ack.h from
//    that MSH (header_from_raw; ERR-3 207, the text says the limit), so the
//    sender learns why; the ACK keeps the sender's own bytes for the echoed
//    fields and is sent as is (ASCII-compatible charsets). Garbage without an
//    MSH gets no reply: there is nobody to address it to.
//  - beyond max_connections open connections, new ones are accepted and
//    closed at once (counted, logged at debug level).
//  - TLS (boost::asio::ssl): the server certificate and key; with
//    client_ca_file, client certificates are requested and verified
//    (verify_peer, plus verify_fail_if_no_peer_cert when require_client_cert);
//    the verified client certificate's subject (RFC 2253) is recorded in
//    connection_info.
//
// Shutdown: stop() stops accepting, closes connections that are idle or
// receiving a frame, and lets in-flight on_frame calls finish and their replies
// be written before closing those connections; wait_stopped() completes once
// everything is closed.
//
// Metrics (label hospital): yilian_mllp_connections (gauge, open),
// yilian_mllp_connections_total, yilian_mllp_connections_rejected_total
// (over max_connections), yilian_mllp_frames_total, yilian_mllp_framing_errors_total,
// yilian_mllp_bytes_received_total, yilian_mllp_read_timeouts_total (a frame not
// completed within read_timeout), yilian_mllp_tls_handshake_failures_total.
//
// Logs (component "mllp"): connection opened/closed with hospital, peer,
// connection id, frames handled and why it closed; framing errors with their
// code, offset and counts. Never payload bytes.
//
// Ownership and threads: the caller owns the executor's io_context (any number
// of threads). The listener's shared state is reference-counted by its accept
// loop and its connections, so destroying the `listener` early is safe (it
// calls stop()); the frame_handler and the metrics registry must outlive the
// io_context's pending work. on_frame runs on the connection's strand.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/error.h"
#include "engine/core/io_pool.h"
#include "engine/core/metrics.h"

namespace yilian::hl7v2 {

struct tls_files {
  std::string cert_file;       // PEM chain of the server
  std::string key_file;        // PEM key of cert_file
  std::string client_ca_file;  // PEM CAs for client certificates; empty = none requested
  bool require_client_cert = false;  // refuse clients without one (needs client_ca_file)
};

struct channel_options {
  std::string hospital;  // the hospital id: metrics label, logs, connection_info
  std::string bind_address = "0.0.0.0";
  std::uint16_t port = 0;  // 0: an ephemeral port (tests); read it with listener::port()
  std::size_t max_frame_bytes = 16u << 20;
  std::chrono::milliseconds read_timeout{30000};   // to complete a frame; writes; TLS handshake
  std::chrono::milliseconds idle_timeout{600000};  // between frames
  std::size_t max_connections = 256;
  std::optional<tls_files> tls;  // present = MLLP over TLS
  // For the AR the listener itself sends (oversized frames): the engine's
  // names when the sender left MSH-5/6 empty, and MSH-7's UTC offset.
  std::string ack_application = "YILIAN";
  std::string ack_facility;
  std::chrono::minutes utc_offset{0};
  // Where an accepted connection runs: an executor that runs its handlers one
  // at a time (an io_pool context, engine/core/io_pool.h). Unset: a strand on
  // the listener's executor.
  connection_executor_source connection_executor;
};

struct connection_info {
  std::string hospital;
  std::string peer;  // ip:port
  std::uint64_t connection_id = 0;  // unique per listener
  std::string client_cert_subject;  // RFC 2253, verified client certificates only
};

// Implemented by the ingest pipeline. Called on the connection's strand.
class frame_handler {
 public:
  virtual ~frame_handler() = default;
  // Once per complete frame, in order per connection; the connection reads
  // nothing more until it returns. Returns the payloads to send back, in
  // order (0, 1 or 2: e.g. a commit ACK then an application ACK), unframed.
  // An exception closes the connection without a reply (and is logged).
  virtual boost::asio::awaitable<std::vector<std::string>> on_frame(const connection_info& conn,
                                                                    std::string payload) = 0;
  // Bytes that were skipped (see framer.h): `skipped_bytes_prefix` is the
  // first of them (<= 4 KiB), for the dead-letter record. Must not block.
  virtual void on_framing_error(const connection_info& conn, const error& err,
                                std::string_view skipped_bytes_prefix) = 0;
};

class listener {
 public:
  listener(boost::asio::any_io_executor ex, channel_options opts, frame_handler& handler,
           metrics::registry& registry);
  ~listener();  // stop() without waiting
  listener(const listener&) = delete;
  listener& operator=(const listener&) = delete;

  // Loads TLS files, binds and listens, starts accepting. Errors:
  // config_error (TLS files; where = the file), invalid_argument (bad
  // address), io_error (cannot bind/listen; where = "address:port").
  result<void> start();
  // The bound port (the real one when options.port was 0); 0 before start().
  std::uint16_t port() const;
  // See "Shutdown" above. From any thread, idempotent.
  void stop();
  // Completes once stop() was called and every connection is closed (at once
  // when the listener was never started).
  boost::asio::awaitable<void> wait_stopped();

  // Open connections right now.
  std::size_t connection_count() const;

  struct impl;

 private:
  std::shared_ptr<impl> impl_;
};

}  // namespace yilian::hl7v2
