#include "adapters/hl7v2/listener.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <unordered_map>

#include "adapters/hl7v2/ack.h"
#include "adapters/hl7v2/framer.h"
#include "engine/core/log.h"

namespace yilian::hl7v2 {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

constexpr std::size_t read_chunk = 64 * 1024;
constexpr std::string_view session_id_context = "yilian-mllp";

// The verified client certificate's subject, RFC 2253 ("CN=his-a,O=..."); ""
// without one.
std::string peer_subject(SSL* s) {
  X509* cert = SSL_get1_peer_certificate(s);
  if (cert == nullptr) return {};
  std::string out;
  if (BIO* bio = BIO_new(BIO_s_mem()); bio != nullptr) {
    if (X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0) {
      char* data = nullptr;
      const long n = BIO_get_mem_data(bio, &data);
      if (n > 0 && data != nullptr) out.assign(data, static_cast<std::size_t>(n));
    }
    BIO_free(bio);
  }
  X509_free(cert);
  return out;
}

std::string endpoint_text(const tcp::endpoint& ep) {
  const auto a = ep.address();
  return (a.is_v6() ? "[" + a.to_string() + "]" : a.to_string()) + ":" + std::to_string(ep.port());
}

std::string what_of(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "non-standard exception";
  }
}

// One accepted connection. Everything is touched only on its strand (`ex`).
struct connection : std::enable_shared_from_this<connection> {
  connection(std::uint64_t i, tcp::socket s, std::string hospital, std::string peer)
      : ex(s.get_executor()), plain(std::move(s)), deadline(ex) {
    info.hospital = std::move(hospital);
    info.peer = std::move(peer);
    info.connection_id = i;
  }

  asio::any_io_executor ex;
  tcp::socket plain;
  std::unique_ptr<ssl::stream<tcp::socket>> tls;  // when the channel is TLS; `plain` is then moved into it
  asio::steady_timer deadline;
  connection_info info;
  std::uint64_t generation = 0;
  bool timed_out = false;
  bool busy = false;      // inside on_frame or writing replies: stop() lets it finish
  bool draining = false;  // stop() was called
  std::uint64_t frames = 0;

  tcp::socket& lowest() { return tls ? tls->next_layer() : plain; }

  void close() {
    error_code ignored;
    auto& s = lowest();
    if (!s.is_open()) return;
    s.shutdown(tcp::socket::shutdown_both, ignored);
    s.close(ignored);
  }

  // When the deadline passes the socket is closed, which completes the
  // pending operation with an error.
  void arm(std::chrono::milliseconds d) {
    const auto g = ++generation;
    timed_out = false;
    deadline.expires_after(d);
    deadline.async_wait([self = shared_from_this(), g](error_code ec) {
      if (ec || g != self->generation) return;
      self->timed_out = true;
      self->close();
    });
  }
  void disarm() {
    ++generation;
    deadline.cancel();
  }

  asio::awaitable<std::size_t> read_some(asio::mutable_buffer b, error_code& ec) {
    if (tls) co_return co_await tls->async_read_some(b, asio::redirect_error(asio::use_awaitable, ec));
    co_return co_await plain.async_read_some(b, asio::redirect_error(asio::use_awaitable, ec));
  }

  asio::awaitable<void> write_all(std::string_view data, error_code& ec) {
    if (tls) {
      co_await asio::async_write(*tls, asio::buffer(data), asio::redirect_error(asio::use_awaitable, ec));
    } else {
      co_await asio::async_write(plain, asio::buffer(data), asio::redirect_error(asio::use_awaitable, ec));
    }
  }
};

}  // namespace

struct listener::impl : std::enable_shared_from_this<listener::impl> {
  impl(asio::any_io_executor e, channel_options o, frame_handler& h, metrics::registry& reg);

  asio::awaitable<void> accept_loop();
  asio::awaitable<void> session(std::shared_ptr<connection> c);
  // Writes `data` under the read_timeout deadline; false (and why) on failure.
  asio::awaitable<bool> write(connection& c, std::string_view data, std::string& reason);
  std::optional<std::string> oversized_reply(const framer::event& ev);
  std::string next_ack_id();
  void on_session_end(std::uint64_t id);
  void stop();
  void maybe_finish();
  bool is_finished() {
    std::lock_guard lock(mutex);
    return finished;
  }
  std::vector<std::shared_ptr<connection>> live_connections();
  result<void> setup_tls();

  asio::any_io_executor ex;
  channel_options opts;
  frame_handler& handler;
  log::logger lg = log::get("mllp");

  metrics::gauge& open_gauge;
  metrics::counter& accepted;
  metrics::counter& rejected;
  metrics::counter& frames;
  metrics::counter& framing_errors;
  metrics::counter& bytes;
  metrics::counter& read_timeouts;
  metrics::counter& tls_failures;

  asio::strand<asio::any_io_executor> strand;  // acceptor and the stopped signal
  tcp::acceptor acceptor;
  asio::steady_timer stopped_signal;  // never expires; cancelled when everything is closed
  std::optional<ssl::context> tls_ctx;
  std::atomic<std::uint16_t> bound_port{0};
  std::atomic<std::size_t> open_count{0};
  std::atomic<bool> stopping{false};
  std::atomic<std::uint64_t> ack_seq{0};

  // Guarded by mutex: the live connections and the shutdown bookkeeping.
  std::mutex mutex;
  std::unordered_map<std::uint64_t, std::weak_ptr<connection>> sessions;
  std::uint64_t next_id = 1;
  bool started = false;
  bool accept_done = false;
  bool finished = false;
};

listener::impl::impl(asio::any_io_executor e, channel_options o, frame_handler& h, metrics::registry& reg)
    : ex(std::move(e)),
      opts(std::move(o)),
      handler(h),
      open_gauge(reg.add_gauge("yilian_mllp_connections", "Open inbound MLLP connections, by hospital.", {"hospital"})
                     .with({opts.hospital})),
      accepted(reg.add_counter("yilian_mllp_connections_total", "Inbound MLLP connections accepted, by hospital.",
                               {"hospital"})
                   .with({opts.hospital})),
      rejected(reg.add_counter("yilian_mllp_connections_rejected_total",
                               "Inbound MLLP connections closed at once because max_connections were open.",
                               {"hospital"})
                   .with({opts.hospital})),
      frames(reg.add_counter("yilian_mllp_frames_total", "Complete MLLP frames received, by hospital.", {"hospital"})
                 .with({opts.hospital})),
      framing_errors(reg.add_counter("yilian_mllp_framing_errors_total",
                                     "MLLP framing errors (garbage, abandoned or oversized frames), by hospital.",
                                     {"hospital"})
                         .with({opts.hospital})),
      bytes(reg.add_counter("yilian_mllp_bytes_received_total", "Bytes received on inbound MLLP connections.",
                            {"hospital"})
                .with({opts.hospital})),
      read_timeouts(reg.add_counter("yilian_mllp_read_timeouts_total",
                                    "Inbound MLLP connections closed because a frame was not completed in time.",
                                    {"hospital"})
                        .with({opts.hospital})),
      tls_failures(reg.add_counter("yilian_mllp_tls_handshake_failures_total",
                                   "Inbound MLLP TLS handshakes that failed (bad or missing client certificate, ...).",
                                   {"hospital"})
                       .with({opts.hospital})),
      strand(asio::make_strand(ex)),
      acceptor(strand),
      stopped_signal(strand) {
  stopped_signal.expires_at(asio::steady_timer::time_point::max());
}

result<void> listener::impl::setup_tls() {
  const auto& t = *opts.tls;
  error_code ec;
  tls_ctx.emplace(ssl::context::tls_server);
  auto& ctx = *tls_ctx;
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                      ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use,
                  ec);
  ctx.use_certificate_chain_file(t.cert_file, ec);
  if (ec) return fail(errc::config_error, "cannot load the MLLP server certificate: " + ec.message(), t.cert_file);
  ctx.use_private_key_file(t.key_file, ssl::context::pem, ec);
  if (ec) return fail(errc::config_error, "cannot load the MLLP server key: " + ec.message(), t.key_file);
  if (t.client_ca_file.empty()) {
    if (t.require_client_cert) {
      return fail(errc::config_error, "require_client_cert needs client_ca_file", opts.hospital);
    }
    return {};
  }
  ctx.load_verify_file(t.client_ca_file, ec);
  if (ec) return fail(errc::config_error, "cannot load the client CA file: " + ec.message(), t.client_ca_file);
  // Tell clients which CAs we accept, so they pick the right certificate.
  if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(t.client_ca_file.c_str()); names != nullptr) {
    SSL_CTX_set_client_CA_list(ctx.native_handle(), names);
  }
  // Needed for session resumption with client certificates.
  SSL_CTX_set_session_id_context(ctx.native_handle(),
                                 reinterpret_cast<const unsigned char*>(session_id_context.data()),
                                 static_cast<unsigned int>(session_id_context.size()));
  ssl::verify_mode mode = ssl::verify_peer;
  if (t.require_client_cert) mode |= ssl::verify_fail_if_no_peer_cert;
  ctx.set_verify_mode(mode, ec);
  if (ec) return fail(errc::config_error, "cannot set the client verification mode: " + ec.message(), opts.hospital);
  return {};
}

// ---- accepting ---------------------------------------------------------------------

asio::awaitable<void> listener::impl::accept_loop() {
  auto self = shared_from_this();
  for (;;) {
    tcp::socket sock(opts.connection_executor ? opts.connection_executor()
                                              : asio::any_io_executor(asio::make_strand(ex)));
    error_code ec;
    co_await acceptor.async_accept(sock, asio::redirect_error(asio::use_awaitable, ec));
    if (stopping.load() || ec == asio::error::operation_aborted || !acceptor.is_open()) {
      sock.close(ec);
      break;
    }
    if (ec) {
      // Out of descriptors and the like: say so and back off instead of spinning.
      lg.warn("mllp accept failed", {{"hospital", opts.hospital}, {"error", ec.message()}});
      asio::steady_timer pause(strand, std::chrono::milliseconds(100));
      co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    error_code rec;
    const auto ep = sock.remote_endpoint(rec);
    std::string peer = rec ? std::string("unknown") : endpoint_text(ep);
    if (open_count.load() >= opts.max_connections) {
      rejected.inc();
      lg.debug("mllp connection refused: max_connections open",
               {{"hospital", opts.hospital}, {"peer", peer}, {"max_connections", opts.max_connections}});
      sock.shutdown(tcp::socket::shutdown_both, rec);
      sock.close(rec);
      continue;
    }
    sock.set_option(tcp::no_delay(true), rec);
    std::shared_ptr<connection> c;
    {
      std::lock_guard lock(mutex);
      c = std::make_shared<connection>(next_id++, std::move(sock), opts.hospital, std::move(peer));
      sessions.emplace(c->info.connection_id, c);
    }
    if (tls_ctx) c->tls = std::make_unique<ssl::stream<tcp::socket>>(std::move(c->plain), *tls_ctx);
    open_count.fetch_add(1);
    open_gauge.inc();
    accepted.inc();
    const auto id = c->info.connection_id;
    auto cex = c->ex;
    asio::co_spawn(cex, session(std::move(c)), [self, id](std::exception_ptr e) {
      if (e) {
        self->lg.error("mllp session failed",
                       {{"hospital", self->opts.hospital}, {"connection_id", id}, {"error", what_of(e)}});
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

// ---- one connection ----------------------------------------------------------------

asio::awaitable<bool> listener::impl::write(connection& c, std::string_view data, std::string& reason) {
  error_code ec;
  c.arm(opts.read_timeout);
  co_await c.write_all(data, ec);
  c.disarm();
  if (!ec) co_return true;
  reason = c.timed_out ? "writing the reply timed out" : "writing the reply failed: " + ec.message();
  co_return false;
}

std::string listener::impl::next_ack_id() {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  return "L" + std::to_string(ms) + "." + std::to_string(ack_seq.fetch_add(1) % 100000);
}

std::optional<std::string> listener::impl::oversized_reply(const framer::event& ev) {
  const auto h = header_from_raw(ev.payload);
  if (!h.has_msh) return std::nullopt;
  const bool enhanced = !h.accept_ack_type.empty() || !h.application_ack_type.empty();
  const auto err = to_ack_error(ev.err);
  const ack_build_options o{.control_id = next_ack_id(),
                            .timestamp = std::chrono::system_clock::now(),
                            .utc_offset = opts.utc_offset,
                            .application = opts.ack_application,
                            .facility = opts.ack_facility};
  return build_ack(h, ack_code_for(ev.err, enhanced), std::span<const ack_error>(&err, 1), o);
}

asio::awaitable<void> listener::impl::session(std::shared_ptr<connection> c) {
  auto self = shared_from_this();
  const auto& info = c->info;
  error_code ec;
  if (c->tls) {
    c->arm(opts.read_timeout);
    co_await c->tls->async_handshake(ssl::stream_base::server, asio::redirect_error(asio::use_awaitable, ec));
    c->disarm();
    if (ec) {
      tls_failures.inc();
      lg.warn("mllp TLS handshake failed",
              {{"hospital", info.hospital},
               {"peer", info.peer},
               {"connection_id", info.connection_id},
               {"error", c->timed_out ? std::string("timed out") : ec.message()}});
      c->close();
      co_return;
    }
    c->info.client_cert_subject = peer_subject(c->tls->native_handle());
  }
  lg.info("mllp connection opened", {{"hospital", info.hospital},
                                     {"peer", info.peer},
                                     {"connection_id", info.connection_id},
                                     {"tls", c->tls != nullptr},
                                     {"client_cert_subject", info.client_cert_subject}});

  framer fr({.max_frame_bytes = opts.max_frame_bytes});
  std::vector<char> buf(read_chunk);
  std::string reason = "closed by the peer";
  // When the frame being received must be complete: read_timeout after we
  // started waiting for its rest (not after its first byte arrived: frames
  // queued behind a slow on_frame must not pay for it). Cleared by every
  // frame or error the framer returns.
  std::optional<std::chrono::steady_clock::time_point> frame_deadline;
  bool done = false;
  while (!done) {
    // Everything already received, one frame at a time.
    for (;;) {
      if (c->draining) {
        reason = "listener stopping";
        done = true;
        break;
      }
      auto ev = fr.next();
      if (ev.kind == framer::event_kind::need_more) break;
      frame_deadline.reset();
      if (ev.kind == framer::event_kind::frame) {
        frames.inc();
        ++c->frames;
        c->busy = true;
        std::vector<std::string> replies;
        std::exception_ptr failed;
        try {
          replies = co_await handler.on_frame(info, std::move(ev.payload));
        } catch (...) {
          failed = std::current_exception();
        }
        if (failed) {
          lg.error("mllp frame handler failed; closing the connection without a reply",
                   {{"hospital", info.hospital}, {"connection_id", info.connection_id}, {"error", what_of(failed)}});
          reason = "frame handler failed";
          done = true;
        } else if (!replies.empty()) {
          std::string out;
          for (const auto& r : replies) out += mllp_frame(r);
          const bool written = co_await write(*c, out, reason);
          done = !written;
        }
        c->busy = false;
        if (done) break;
        continue;
      }

      framing_errors.inc();
      lg.warn("mllp framing error", {{"hospital", info.hospital},
                                     {"connection_id", info.connection_id},
                                     {"code", to_string(ev.err.code)},
                                     {"error", ev.err.message},
                                     {"where", ev.err.where},
                                     {"skipped_bytes", ev.skipped_bytes}});
      try {
        handler.on_framing_error(info, ev.err, ev.payload);
      } catch (const std::exception& x) {
        lg.error("mllp framing error handler threw", {{"hospital", info.hospital}, {"error", x.what()}});
      }
      if (ev.err.code == errc::overloaded) {
        if (auto reply = oversized_reply(ev)) {
          c->busy = true;
          const bool written = co_await write(*c, mllp_frame(*reply), reason);
          done = !written;
          c->busy = false;
          if (done) break;
        }
      }
    }
    if (done) break;
    if (c->draining || stopping.load()) {
      reason = "listener stopping";
      break;
    }

    const bool mid_frame = fr.in_frame();
    if (mid_frame) {
      const auto now = std::chrono::steady_clock::now();
      if (!frame_deadline) frame_deadline = now + opts.read_timeout;
      c->arm(std::chrono::duration_cast<std::chrono::milliseconds>(std::max(*frame_deadline - now,
                                                                            std::chrono::steady_clock::duration{})));
    } else {
      frame_deadline.reset();
      c->arm(opts.idle_timeout);
    }
    const auto n = co_await c->read_some(asio::buffer(buf), ec);
    c->disarm();
    if (ec) {
      if (c->timed_out && mid_frame) {
        read_timeouts.inc();
        reason = "frame not completed within read_timeout";
      } else if (c->timed_out) {
        reason = "idle timeout";
      } else if (c->draining) {
        reason = "listener stopping";
      } else if (ec == asio::error::eof || ec == ssl::error::stream_truncated) {
        reason = mid_frame ? "closed by the peer inside a frame" : "closed by the peer";
      } else {
        reason = ec.message();
      }
      break;
    }
    bytes.inc(static_cast<double>(n));
    fr.feed(std::string_view(buf.data(), n));
  }
  c->close();
  lg.info("mllp connection closed", {{"hospital", info.hospital},
                                     {"peer", info.peer},
                                     {"connection_id", info.connection_id},
                                     {"frames", c->frames},
                                     {"reason", reason}});
}

// ---- shutdown ---------------------------------------------------------------------------

void listener::impl::on_session_end(std::uint64_t id) {
  {
    std::lock_guard lock(mutex);
    sessions.erase(id);
  }
  open_count.fetch_sub(1);
  open_gauge.dec();
  maybe_finish();
}

std::vector<std::shared_ptr<connection>> listener::impl::live_connections() {
  std::vector<std::shared_ptr<connection>> out;
  std::lock_guard lock(mutex);
  for (const auto& [id, w] : sessions) {
    if (auto c = w.lock()) out.push_back(std::move(c));
  }
  return out;
}

void listener::impl::stop() {
  if (stopping.exchange(true)) return;
  asio::post(strand, [self = shared_from_this()] {
    error_code ec;
    self->acceptor.close(ec);  // the accept loop ends with operation_aborted
    {
      std::lock_guard lock(self->mutex);
      if (!self->started) self->accept_done = true;
    }
    const auto live = self->live_connections();
    for (const auto& c : live) {
      asio::post(c->ex, [c] {
        c->draining = true;
        if (!c->busy) c->close();  // wakes a pending read or handshake
      });
    }
    self->lg.info("mllp listener stopping", {{"hospital", self->opts.hospital}, {"open_connections", live.size()}});
    self->maybe_finish();
  });
}

void listener::impl::maybe_finish() {
  {
    std::lock_guard lock(mutex);
    if (!stopping.load() || !accept_done || !sessions.empty() || finished) return;
    finished = true;
  }
  asio::post(strand, [self = shared_from_this()] { self->stopped_signal.cancel(); });
  lg.info("mllp listener stopped", {{"hospital", opts.hospital}});
}

// ---- the public face ----------------------------------------------------------------------

listener::listener(asio::any_io_executor ex, channel_options opts, frame_handler& handler,
                   metrics::registry& registry)
    : impl_(std::make_shared<impl>(std::move(ex), std::move(opts), handler, registry)) {}

listener::~listener() { impl_->stop(); }

result<void> listener::start() {
  auto& s = *impl_;
  {
    std::lock_guard lock(s.mutex);
    if (s.started) return fail(errc::invalid_argument, "MLLP listener already started", s.opts.hospital);
    if (s.stopping.load()) return fail(errc::cancelled, "MLLP listener is stopping", s.opts.hospital);
  }
  if (s.opts.tls) {
    if (auto r = s.setup_tls(); !r) return r;
  }
  error_code ec;
  const auto where = s.opts.bind_address + ":" + std::to_string(s.opts.port);
  const auto address = asio::ip::make_address(s.opts.bind_address, ec);
  if (ec) return fail(errc::invalid_argument, "bad MLLP bind address: " + ec.message(), where);
  const tcp::endpoint ep(address, s.opts.port);
  s.acceptor.open(ep.protocol(), ec);
  if (!ec) s.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) s.acceptor.bind(ep, ec);
  if (!ec) s.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    error_code ignored;
    s.acceptor.close(ignored);
    return fail(errc::io_error, "cannot listen for MLLP (hospital " + s.opts.hospital + "): " + ec.message(), where);
  }
  s.bound_port.store(s.acceptor.local_endpoint(ec).port());
  {
    std::lock_guard lock(s.mutex);
    s.started = true;
  }
  s.lg.info("mllp listener started", {{"hospital", s.opts.hospital},
                                      {"address", s.opts.bind_address},
                                      {"port", s.bound_port.load()},
                                      {"tls", s.opts.tls.has_value()}});
  asio::co_spawn(s.strand, s.accept_loop(), [self = impl_](std::exception_ptr e) {
    if (!e) return;
    self->lg.critical("mllp accept loop failed", {{"hospital", self->opts.hospital}, {"error", what_of(e)}});
    {
      std::lock_guard lock(self->mutex);
      self->accept_done = true;
    }
    self->maybe_finish();
  });
  return {};
}

std::uint16_t listener::port() const { return impl_->bound_port.load(); }

void listener::stop() { impl_->stop(); }

std::size_t listener::connection_count() const { return impl_->open_count.load(); }

namespace {

// Checked and waited for on the listener's strand, where the signal is
// cancelled: no wake-up can slip between the check and the wait. (A plain
// function rather than a capturing lambda: the state lives in the frame.)
asio::awaitable<void> wait_finished(std::shared_ptr<listener::impl> self) {
  while (!self->is_finished()) {
    error_code ec;
    co_await self->stopped_signal.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

}  // namespace

asio::awaitable<void> listener::wait_stopped() {
  auto self = impl_;
  auto on_strand = wait_finished(self);
  co_await asio::co_spawn(self->strand, std::move(on_strand), asio::use_awaitable);
}

}  // namespace yilian::hl7v2
