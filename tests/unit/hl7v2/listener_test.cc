// The inbound MLLP listener against real clients over loopback: the engine's
// own mllp_client, raw sockets writing exactly the bytes a test wants, and
// python-hl7's mllp_send when installed. TLS with certificates made by the
// openssl CLI in a temporary directory. Hermetic: 127.0.0.1, port 0.
#include <catch2/catch.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <unistd.h>

#include "adapters/hl7v2/ack.h"
#include "adapters/hl7v2/framer.h"
#include "adapters/hl7v2/listener.h"
#include "adapters/hl7v2/mllp_client.h"
#include "engine/core/io_pool.h"
#include "tests/support/eventually.h"

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using namespace yilian;
using namespace yilian::hl7v2;
using steady = std::chrono::steady_clock;

namespace {

using yilian::test::eventually;

// An io_context run by two threads for the listener and the async clients.
class test_pool {
 public:
  test_pool() : work_(asio::make_work_guard(io_)) {
    for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { io_.run(); });
  }
  ~test_pool() {
    work_.reset();
    io_.stop();
    for (auto& t : threads_) t.join();
  }
  asio::any_io_executor executor() { return io_.get_executor(); }

  // Runs a coroutine (a callable returning an awaitable) on a fresh strand
  // and waits for it, at most 30 s.
  template <class F>
  auto run(F f) {
    auto fut = asio::co_spawn(asio::make_strand(io_), std::move(f), asio::use_future);
    if (fut.wait_for(30s) != std::future_status::ready) throw std::runtime_error("coroutine did not finish in 30 s");
    return fut.get();
  }

 private:
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::vector<std::thread> threads_;
};

// Replies "ACK:<payload>" to each frame; a few payload prefixes ask for
// other behaviour.
class test_handler : public frame_handler {
 public:
  asio::awaitable<std::vector<std::string>> on_frame(const connection_info& c, std::string payload) override {
    {
      std::lock_guard lock(mu);
      received.push_back(payload);
      infos.push_back(c);
    }
    if (payload.starts_with("SLOW")) {
      in_slow = true;
      asio::steady_timer t(co_await asio::this_coro::executor, 400ms);
      co_await t.async_wait(asio::use_awaitable);
    }
    if (payload.starts_with("THROW")) throw std::runtime_error("handler failure");
    if (payload.starts_with("TWO")) co_return std::vector<std::string>{"C:" + payload, "A:" + payload};
    if (payload.starts_with("NONE")) co_return std::vector<std::string>{};
    co_return std::vector<std::string>{"ACK:" + payload};
  }
  void on_framing_error(const connection_info&, const error& err, std::string_view prefix) override {
    std::lock_guard lock(mu);
    errors.emplace_back(err, std::string(prefix));
  }

  std::size_t received_count() {
    std::lock_guard lock(mu);
    return received.size();
  }
  std::vector<std::pair<error, std::string>> framing_errors() {
    std::lock_guard lock(mu);
    return errors;
  }
  connection_info last_info() {
    std::lock_guard lock(mu);
    return infos.empty() ? connection_info{} : infos.back();
  }

  std::mutex mu;
  std::vector<std::string> received;
  std::vector<connection_info> infos;
  std::vector<std::pair<error, std::string>> errors;
  std::atomic<bool> in_slow{false};
};

// A blocking client writing exact bytes; every read has a deadline.
class raw_client {
 public:
  explicit raw_client(std::uint16_t port) {
    sock_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  }
  void send(std::string_view bytes) { asio::write(sock_, asio::buffer(bytes.data(), bytes.size())); }

  // The next reply frame, or nothing when the deadline passes or the server closes.
  std::optional<std::string> read_frame(std::chrono::milliseconds timeout = 5s) {
    const auto until = steady::now() + timeout;
    for (;;) {
      for (;;) {
        auto ev = fr_.next();
        if (ev.kind == framer::event_kind::frame) return std::move(ev.payload);
        if (ev.kind == framer::event_kind::need_more) break;
      }
      if (closed_ || steady::now() >= until) return std::nullopt;
      if (!read_some(until)) return std::nullopt;
    }
  }

  // True when the server closes the connection within the deadline.
  bool wait_closed(std::chrono::milliseconds timeout = 5s) {
    const auto until = steady::now() + timeout;
    while (!closed_ && steady::now() < until) {
      if (!read_some(until)) break;
    }
    return closed_;
  }

 private:
  bool read_some(steady::time_point until) {
    std::array<char, 4096> buf{};
    boost::system::error_code rec = asio::error::would_block;
    std::size_t n = 0;
    sock_.async_read_some(asio::buffer(buf), [&](boost::system::error_code ec, std::size_t k) {
      rec = ec;
      n = k;
    });
    io_.restart();
    io_.run_until(until);
    if (rec == asio::error::would_block) {
      sock_.cancel();
      io_.restart();
      io_.run();
      return false;
    }
    if (n > 0) fr_.feed(std::string_view(buf.data(), n));
    if (rec) closed_ = true;
    return true;
  }

  asio::io_context io_;
  tcp::socket sock_{io_};
  framer fr_;
  bool closed_ = false;
};

std::string hl7(std::string_view control_id, std::string_view extra = {}) {
  return "MSH|^~\\&|HIS|ZSRMYY|YILIAN|LIAN|20240501083000||ADT^A04^ADT_A01|" + std::string(control_id) +
         "|P|2.5\rPID|1||123^^^ZS^MR\r" + std::string(extra);
}

double counter_value(metrics::registry& reg, std::string_view name, std::string_view hospital) {
  return reg.add_counter(name, "", {"hospital"}).with({hospital}).value();
}

client_options client_for(std::uint16_t port) {
  return {.host = "127.0.0.1", .port = port, .connect_timeout = 5s, .ack_timeout = 5s};
}

// Certificates for the TLS tests, made once per run by the openssl CLI.
struct test_pki {
  std::filesystem::path dir;
  bool ok = false;

  test_pki() {
    std::string pattern = (std::filesystem::temp_directory_path() / "yilian-mllp-tls-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) return;
    dir = pattern;
    const auto d = dir.string();
    {
      std::ofstream ext(dir / "server.ext");
      ext << "subjectAltName=DNS:localhost,IP:127.0.0.1\n";
    }
    const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    const std::string script =
        "cd '" + d + "' && " +
        "openssl req -x509 " + ec + " -keyout ca.key -out ca.pem -days 2 -subj '/CN=yilian test CA' && " +
        "openssl req " + ec + " -keyout server.key -out server.csr -subj '/CN=localhost' && " +
        "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 "
        "-extfile server.ext && " +
        "openssl req " + ec + " -keyout client.key -out client.csr -subj '/O=ZS Hospital/CN=his-a' && " +
        "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2 "
        ">/dev/null 2>&1";
    ok = std::system((script + " >/dev/null 2>&1").c_str()) == 0;
  }
  ~test_pki() {
    std::error_code ec;
    if (!dir.empty()) std::filesystem::remove_all(dir, ec);
  }
  std::string file(std::string_view name) const { return (dir / name).string(); }
};

const test_pki& pki() {
  static const test_pki p;
  return p;
}

}  // namespace

// Connections on strands of the listener's context, or on a context per
// thread (yilian::io_pool, as `yilian serve` runs them).
channel_options test_channel(std::unique_ptr<yilian::io_pool>& connections, bool pooled) {
  channel_options o{.hospital = "h1", .bind_address = "127.0.0.1"};
  if (pooled) {
    connections = std::make_unique<yilian::io_pool>(2, "test-conn");
    o.connection_executor = [p = connections.get()] { return p->next(); };
  }
  return o;
}

TEST_CASE("the listener answers every frame in order over many concurrent connections", "[unit]") {
  const bool pooled = GENERATE(false, true);
  INFO("connections on an io_pool: " << pooled);
  metrics::registry reg;  // before the pool: it outlives every handler the pool runs
  test_handler h;
  test_pool pool;
  std::unique_ptr<yilian::io_pool> conns;
  listener l(pool.executor(), test_channel(conns, pooled), h, reg);
  REQUIRE(l.start().has_value());
  REQUIRE(l.port() != 0);

  constexpr int connections = 16;
  constexpr int per_connection = 25;
  std::vector<std::future<int>> done;
  for (int c = 0; c < connections; ++c) {
    done.push_back(asio::co_spawn(
        asio::make_strand(pool.executor()),
        [&, c]() -> asio::awaitable<int> {
          mllp_client client(co_await asio::this_coro::executor, client_for(l.port()));
          const auto connected = co_await client.connect();
          if (!connected) co_return -1;
          int good = 0;
          for (int i = 0; i < per_connection; ++i) {
            const auto msg = hl7("C" + std::to_string(c) + "-" + std::to_string(i));
            auto r = co_await client.exchange(msg);
            if (r && *r == "ACK:" + msg) ++good;
          }
          client.close();
          co_return good;
        },
        asio::use_future));
  }
  for (auto& f : done) {
    REQUIRE(f.wait_for(30s) == std::future_status::ready);
    CHECK(f.get() == per_connection);
  }
  CHECK(h.received_count() == connections * per_connection);
  CHECK(counter_value(reg, "yilian_mllp_frames_total", "h1") == connections * per_connection);
  CHECK(counter_value(reg, "yilian_mllp_connections_total", "h1") == connections);
  CHECK(counter_value(reg, "yilian_mllp_bytes_received_total", "h1") > 0);
  CHECK(eventually([&] { return l.connection_count() == 0; }));
  CHECK(reg.add_gauge("yilian_mllp_connections", "", {"hospital"}).with({"h1"}).value() == 0);
  CHECK(reg.render().find("yilian_mllp_frames_total{hospital=\"h1\"} 400") != std::string::npos);
  CHECK(h.last_info().hospital == "h1");
  CHECK(h.last_info().peer.starts_with("127.0.0.1:"));
  CHECK(h.last_info().connection_id >= 1);
  l.stop();
  pool.run([&]() -> asio::awaitable<void> { co_await l.wait_stopped(); });
}

TEST_CASE("a handler may answer with two replies or none", "[unit]") {
  metrics::registry reg;  // before the pool: it outlives every handler the pool runs
  test_handler h;
  test_pool pool;
  listener l(pool.executor(), {.hospital = "h1", .bind_address = "127.0.0.1"}, h, reg);
  REQUIRE(l.start().has_value());
  // Catch's macros stay out of coroutines (g++ 12 mishandles co_await inside
  // them); the coroutine returns what the test checks.
  struct outcome {
    result<void> connected;
    result<std::vector<std::string>> two;
    result<void> sent;
    result<std::string> next;
  };
  const auto o = pool.run([&]() -> asio::awaitable<outcome> {
    mllp_client client(co_await asio::this_coro::executor, client_for(l.port()));
    outcome out;  // (no co_await inside braced initializers: another g++ 12 coroutine bug)
    out.connected = co_await client.connect();
    out.two = co_await client.exchange_all("TWO replies", 2);
    // No reply to NONE: the next reply on the connection is for the next message.
    out.sent = co_await client.send("NONE");
    out.next = co_await client.exchange(hl7("N2"));
    co_return out;
  });
  REQUIRE(o.connected.has_value());
  INFO((o.two ? std::string() : o.two.error().describe()));
  REQUIRE(o.two.has_value());
  CHECK(*o.two == std::vector<std::string>{"C:TWO replies", "A:TWO replies"});
  REQUIRE(o.sent.has_value());
  REQUIRE(o.next.has_value());
  CHECK(*o.next == "ACK:" + hl7("N2"));
}

TEST_CASE("frames split across writes and several frames in one write are all answered in order", "[unit]") {
  metrics::registry reg;  // before the pool: it outlives every handler the pool runs
  test_handler h;
  test_pool pool;
  listener l(pool.executor(), {.hospital = "h1", .bind_address = "127.0.0.1"}, h, reg);
  REQUIRE(l.start().has_value());
  raw_client c(l.port());
  const auto framed = mllp_frame(hl7("SPLIT"));
  c.send(framed.substr(0, 7));
  std::this_thread::sleep_for(50ms);
  c.send(framed.substr(7, 40));
  std::this_thread::sleep_for(50ms);
  c.send(framed.substr(47));
  CHECK(c.read_frame() == "ACK:" + hl7("SPLIT"));

  c.send(mllp_frame("one") + mllp_frame("two") + mllp_frame("three"));
  CHECK(c.read_frame() == "ACK:one");
  CHECK(c.read_frame() == "ACK:two");
  CHECK(c.read_frame() == "ACK:three");
  CHECK(h.framing_errors().empty());
}

TEST_CASE("garbage before a frame is reported and the frame still answered", "[unit]") {
  metrics::registry reg;  // before the pool: it outlives every handler the pool runs
  test_handler h;
  test_pool pool;
  listener l(pool.executor(), {.hospital = "h1", .bind_address = "127.0.0.1"}, h, reg);
  REQUIRE(l.start().has_value());
  raw_client c(l.port());
  c.send("GET / HTTP/1.0\r\n\r\n" + mllp_frame(hl7("AFTER")));
  CHECK(c.read_frame() == "ACK:" + hl7("AFTER"));
  const auto errs = h.framing_errors();
  REQUIRE(errs.size() == 1);
  CHECK(errs[0].first.code == errc::parse_error);
  CHECK(errs[0].second == "GET / HTTP/1.0\r\n\r\n");
  CHECK(counter_value(reg, "yilian_mllp_framing_errors_total", "h1") == 1);
}

TEST_CASE("an oversized frame gets an AR when its MSH is visible, and the connection stays usable", "[unit]") {
  metrics::registry reg;  // before the pool: it outlives every handler the pool runs
  test_handler h;
  test_pool pool;
  listener l(pool.executor(), {.hospital = "h1", .bind_address = "127.0.0.1", .max_frame_bytes = 1024}, h, reg);
  REQUIRE(l.start().has_value());
  raw_client c(l.port());

  SECTION("with an MSH: AR echoing its control id") {
    c.send(mllp_frame(hl7("BIG1", "OBX|1|ED|PDF||" + std::string(5000, 'x') + "\r")));
    const auto reply = c.read_frame();
    REQUIRE(reply.has_value());
    const auto ack = parse_ack(*reply);
    REQUIRE(ack.has_value());
    CHECK(ack->code == ack_code::AR);
    CHECK(ack->acknowledged_control_id == "BIG1");
    CHECK(ack->error_code == "207");
    CHECK(ack->text.find("1024") != std::string::npos);
    CHECK(reply->starts_with("MSH|^~\\&|YILIAN|LIAN|HIS|ZSRMYY|"));
  }
  SECTION("in enhanced mode: CR") {
    c.send(mllp_frame("MSH|^~\\&|HIS|ZSRMYY|YILIAN|LIAN|20240501||ADT^A01|BIG2|P|2.5|||AL|NE\r" +
                      std::string(5000, 'y')));
    const auto reply = c.read_frame();
    REQUIRE(reply.has_value());
    const auto ack = parse_ack(*reply);
    REQUIRE(ack.has_value());
    CHECK(ack->code == ack_code::CR);
    CHECK(ack->acknowledged_control_id == "BIG2");
  }
  SECTION("without an MSH: no reply") {
    c.send(mllp_frame(std::string(5000, 'z')));
    CHECK_FALSE(c.read_frame(300ms).has_value());
  }
  c.send(mllp_frame(hl7("SMALL")));
  CHECK(c.read_frame() == "ACK:" + hl7("SMALL"));
  const auto errs = h.framing_errors();
  REQUIRE(errs.size() == 1);
  CHECK(errs[0].first.code == errc::overloaded);
  CHECK(errs[0].second.size() <= 4096);
}

TEST_CASE("a frame not completed within read_timeout closes the connection; so does idle_timeout", "[unit]") {
  metrics::registry reg;  // before the pool: it outlives every handler the pool runs
  test_handler h;
  test_pool pool;
  listener l(pool.executor(),
             {.hospital = "h1", .bind_address = "127.0.0.1", .read_timeout = 300ms, .idle_timeout = 2s}, h, reg);
  REQUIRE(l.start().has_value());

  SECTION("half a frame") {
    raw_client c(l.port());
    const auto t0 = steady::now();
    c.send("\x0bMSH|^~\\&|HIS|half");
    CHECK(c.wait_closed(5s));
    const auto took = steady::now() - t0;
    CHECK(took >= 250ms);
    CHECK(took < 1500ms);  // the read deadline, not the idle one
    CHECK(eventually([&] { return counter_value(reg, "yilian_mllp_read_timeouts_total", "h1") == 1; }));
    CHECK(h.received_count() == 0);
  }
  SECTION("a frame trickled byte by byte gets no more than read_timeout in all") {
    raw_client c(l.port());
    const auto t0 = steady::now();
    c.send("\x0b");
    // A byte every 100 ms would keep a per-read deadline of 300 ms happy for ever.
    std::optional<steady::duration> closed_after;
    while (!closed_after && steady::now() - t0 < 2s) {
      std::this_thread::sleep_for(100ms);
      try {
        c.send("M");
      } catch (const std::exception&) {
        closed_after = steady::now() - t0;  // the server closed: writing fails (after a reset)
      }
    }
    REQUIRE(closed_after.has_value());
    CHECK(*closed_after < 1200ms);
    CHECK(eventually([&] { return counter_value(reg, "yilian_mllp_read_timeouts_total", "h1") == 1; }));
  }
  SECTION("nothing at all") {
    raw_client c(l.port());
    const auto t0 = steady::now();
    CHECK(c.wait_closed(5s));
    CHECK(steady::now() - t0 >= 1900ms);
    CHECK(counter_value(reg, "yilian_mllp_read_timeouts_total", "h1") == 0);
  }
  SECTION("a slow sender that keeps completing frames stays connected") {
    raw_client c(l.port());
    for (int i = 0; i < 3; ++i) {
      std::this_thread::sleep_for(200ms);
      c.send(mllp_frame("p" + std::to_string(i)));
      CHECK(c.read_frame() == "ACK:p" + std::to_string(i));
    }
  }
}

TEST_CASE("beyond max_connections new connections are closed at once and counted", "[unit]") {
  metrics::registry reg;  // before the pool: it outlives every handler the pool runs
  test_handler h;
  test_pool pool;
  listener l(pool.executor(), {.hospital = "h1", .bind_address = "127.0.0.1", .max_connections = 2}, h, reg);
  REQUIRE(l.start().has_value());
  auto a = std::make_unique<raw_client>(l.port());
  raw_client b(l.port());
  a->send(mllp_frame("a"));
  b.send(mllp_frame("b"));
  REQUIRE(a->read_frame() == "ACK:a");
  REQUIRE(b.read_frame() == "ACK:b");
  CHECK(l.connection_count() == 2);

  raw_client third(l.port());
  CHECK(third.wait_closed(2s));
  CHECK(counter_value(reg, "yilian_mllp_connections_rejected_total", "h1") == 1);

  a.reset();  // frees a place
  REQUIRE(eventually([&] { return l.connection_count() == 1; }));
  raw_client fourth(l.port());
  fourth.send(mllp_frame("d"));
  CHECK(fourth.read_frame() == "ACK:d");
}

TEST_CASE("stop lets an in-flight frame finish and be answered, closes idle connections, then stops", "[unit]") {
  const bool pooled = GENERATE(false, true);
  INFO("connections on an io_pool: " << pooled);
  metrics::registry reg;  // before the pool: it outlives every handler the pool runs
  test_handler h;
  test_pool pool;
  std::unique_ptr<yilian::io_pool> conns;
  listener l(pool.executor(), test_channel(conns, pooled), h, reg);
  REQUIRE(l.start().has_value());
  const auto port = l.port();
  raw_client idle(port);
  idle.send(mllp_frame("hello"));
  REQUIRE(idle.read_frame() == "ACK:hello");

  raw_client busy(port);
  busy.send(mllp_frame("SLOW one"));
  REQUIRE(eventually([&] { return h.in_slow.load(); }));
  l.stop();
  CHECK(busy.read_frame() == "ACK:SLOW one");
  CHECK(busy.wait_closed());
  CHECK(idle.wait_closed());
  pool.run([&]() -> asio::awaitable<void> { co_await l.wait_stopped(); });
  CHECK(l.connection_count() == 0);
  // Waiting again returns at once.
  pool.run([&]() -> asio::awaitable<void> { co_await l.wait_stopped(); });

  asio::io_context io;
  tcp::socket s(io);
  boost::system::error_code ec;
  s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), ec);
  CHECK(ec);  // nobody listens any more
}

TEST_CASE("a listener stopped before it started is stopped at once", "[unit]") {
  metrics::registry reg;  // before the pool: it outlives every handler the pool runs
  test_handler h;
  test_pool pool;
  listener l(pool.executor(), {.hospital = "h1", .bind_address = "127.0.0.1"}, h, reg);
  l.stop();
  pool.run([&]() -> asio::awaitable<void> { co_await l.wait_stopped(); });
  CHECK(l.start().error().code == errc::cancelled);
}

TEST_CASE("a handler that throws closes that connection without a reply; others carry on", "[unit]") {
  metrics::registry reg;  // before the pool: it outlives every handler the pool runs
  test_handler h;
  test_pool pool;
  listener l(pool.executor(), {.hospital = "h1", .bind_address = "127.0.0.1"}, h, reg);
  REQUIRE(l.start().has_value());
  raw_client bad(l.port());
  bad.send(mllp_frame("THROW"));
  CHECK_FALSE(bad.read_frame(2s).has_value());
  CHECK(bad.wait_closed());
  raw_client good(l.port());
  good.send(mllp_frame("fine"));
  CHECK(good.read_frame() == "ACK:fine");
}

TEST_CASE("start says where and why it cannot listen", "[unit]") {
  metrics::registry reg;  // before the pool: it outlives every handler the pool runs
  test_handler h;
  test_pool pool;
  listener first(pool.executor(), {.hospital = "h1", .bind_address = "127.0.0.1"}, h, reg);
  REQUIRE(first.start().has_value());
  CHECK(first.start().error().code == errc::invalid_argument);  // twice

  listener taken(pool.executor(), {.hospital = "h2", .bind_address = "127.0.0.1", .port = first.port()}, h, reg);
  const auto r = taken.start();
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == errc::io_error);
  CHECK(r.error().where == "127.0.0.1:" + std::to_string(first.port()));

  listener bad(pool.executor(), {.hospital = "h3", .bind_address = "not-an-address"}, h, reg);
  CHECK(bad.start().error().code == errc::invalid_argument);

  listener no_cert(pool.executor(),
                   {.hospital = "h4", .bind_address = "127.0.0.1", .tls = tls_files{.cert_file = "/nonexistent.pem"}},
                   h, reg);
  const auto t = no_cert.start();
  REQUIRE_FALSE(t.has_value());
  CHECK(t.error().code == errc::config_error);
  CHECK(t.error().where == "/nonexistent.pem");
}

TEST_CASE("MLLP over TLS, with and without client certificates", "[unit]") {
  const auto& p = pki();
  if (!p.ok) FAIL("could not create test certificates with the openssl CLI");
  metrics::registry reg;  // before the pool: it outlives every handler the pool runs
  test_handler h;
  test_pool pool;

  auto tls_client = [&](std::uint16_t port, bool with_cert, std::string server_name = "localhost") {
    auto o = client_for(port);
    o.tls = client_tls{.ca_file = p.file("ca.pem"),
                       .cert_file = with_cert ? p.file("client.pem") : "",
                       .key_file = with_cert ? p.file("client.key") : "",
                       .server_name = std::move(server_name)};
    return o;
  };
  // Connects and exchanges one message; the error of whichever step failed.
  auto try_exchange = [&](client_options o) {
    return pool.run([o]() -> asio::awaitable<result<std::string>> {
      mllp_client c(co_await asio::this_coro::executor, o);
      if (auto r = co_await c.connect(); !r) co_return std::unexpected(r.error());
      co_return co_await c.exchange("MSH|^~\\&|TLS");
    });
  };

  SECTION("server certificate only") {
    listener l(pool.executor(),
               {.hospital = "h1",
                .bind_address = "127.0.0.1",
                .tls = tls_files{.cert_file = p.file("server.pem"), .key_file = p.file("server.key")}},
               h, reg);
    REQUIRE(l.start().has_value());
    const auto r = try_exchange(tls_client(l.port(), false));
    REQUIRE(r.has_value());
    CHECK(*r == "ACK:MSH|^~\\&|TLS");
    CHECK(h.last_info().client_cert_subject.empty());

    SECTION("a client checking another name refuses the server") {
      const auto bad = try_exchange(tls_client(l.port(), false, "his.other.example"));
      REQUIRE_FALSE(bad.has_value());
      CHECK(bad.error().code == errc::unauthenticated);
    }
    SECTION("a plain TCP client gets nothing and is closed") {
      raw_client c(l.port());
      c.send(mllp_frame("plain"));
      CHECK_FALSE(c.read_frame(1s).has_value());
      CHECK(eventually([&] { return counter_value(reg, "yilian_mllp_tls_handshake_failures_total", "h1") == 1; }));
    }
  }

  SECTION("client certificate required") {
    listener l(pool.executor(),
               {.hospital = "h1",
                .bind_address = "127.0.0.1",
                .tls = tls_files{.cert_file = p.file("server.pem"),
                                 .key_file = p.file("server.key"),
                                 .client_ca_file = p.file("ca.pem"),
                                 .require_client_cert = true}},
               h, reg);
    REQUIRE(l.start().has_value());
    const auto with = try_exchange(tls_client(l.port(), true));
    REQUIRE(with.has_value());
    CHECK(*with == "ACK:MSH|^~\\&|TLS");
    CHECK(h.last_info().client_cert_subject == "CN=his-a,O=ZS Hospital");

    // TLS 1.3 finishes the client's handshake before the server checks the
    // certificate, so the refusal may surface at connect or at the exchange.
    const auto without = try_exchange(tls_client(l.port(), false));
    REQUIRE_FALSE(without.has_value());
    CHECK(h.received_count() == 1);
    CHECK(eventually([&] { return counter_value(reg, "yilian_mllp_tls_handshake_failures_total", "h1") == 1; }));
  }

  SECTION("client certificate requested but optional") {
    listener l(pool.executor(),
               {.hospital = "h1",
                .bind_address = "127.0.0.1",
                .tls = tls_files{.cert_file = p.file("server.pem"),
                                 .key_file = p.file("server.key"),
                                 .client_ca_file = p.file("ca.pem")}},
               h, reg);
    REQUIRE(l.start().has_value());
    REQUIRE(try_exchange(tls_client(l.port(), false)).has_value());
    CHECK(h.last_info().client_cert_subject.empty());
    REQUIRE(try_exchange(tls_client(l.port(), true)).has_value());
    CHECK(h.last_info().client_cert_subject == "CN=his-a,O=ZS Hospital");
  }
}

TEST_CASE("python-hl7's mllp_send gets its ACKs", "[unit]") {
  if (::access("/usr/bin/mllp_send", X_OK) != 0) {
    WARN("mllp_send (Debian python3-hl7) not installed; skipped");
    return;
  }
  metrics::registry reg;  // before the pool: it outlives every handler the pool runs
  test_handler h;
  test_pool pool;
  listener l(pool.executor(), {.hospital = "h1", .bind_address = "127.0.0.1"}, h, reg);
  REQUIRE(l.start().has_value());

  char path[] = "/tmp/yilian-mllp-send-XXXXXX";
  const int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  ::close(fd);
  {
    std::ofstream f(path, std::ios::binary);
    f << mllp_frame(hl7("PY1")) << mllp_frame(hl7("PY2"));  // mllp_send splits its input at FS
  }
  const std::string cmd = "/usr/bin/python3 /usr/bin/mllp_send --port " + std::to_string(l.port()) + " --file " +
                          path + " 127.0.0.1 2>&1";
  std::string out;
  if (FILE* pipe = ::popen(cmd.c_str(), "r"); pipe != nullptr) {
    std::array<char, 4096> buf{};
    while (const auto n = std::fread(buf.data(), 1, buf.size(), pipe)) out.append(buf.data(), n);
    ::pclose(pipe);
  }
  std::filesystem::remove(path);
  INFO(out);
  CHECK(h.received_count() == 2);
  CHECK(out.find("ACK:MSH|^~\\&|HIS|ZSRMYY|YILIAN|LIAN|20240501083000||ADT^A04^ADT_A01|PY1|P|2.5") !=
        std::string::npos);
  CHECK(out.find("|PY2|") != std::string::npos);
}
