// The MLLP client against a scripted server (a blocking socket on its own
// thread that answers exactly what a test says): deadlines, errors as values
// with the right retriable flag, garbage and split replies, oversized replies.
#include <catch2/catch.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>

#include <functional>
#include <future>
#include <thread>

#include "adapters/hl7v2/framer.h"
#include "adapters/hl7v2/mllp_client.h"

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using namespace yilian;
using namespace yilian::hl7v2;

namespace {

// Accepts one connection and runs `script` on it (blocking I/O).
class scripted_server {
 public:
  using script = std::function<void(tcp::socket&)>;
  explicit scripted_server(script s) : acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this, s = std::move(s)] {
      boost::system::error_code ec;
      tcp::socket sock(io_);
      acceptor_.accept(sock, ec);
      if (!ec) s(sock);
    });
  }
  ~scripted_server() {
    boost::system::error_code ec;
    acceptor_.close(ec);
    thread_.join();
  }
  std::uint16_t port() const { return port_; }

 private:
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;
  std::thread thread_;
};

// Reads one framed message (blocking).
std::string read_message(tcp::socket& s) {
  framer f;
  std::array<char, 1024> buf{};
  for (;;) {
    auto ev = f.next();
    if (ev.kind == framer::event_kind::frame) return ev.payload;
    boost::system::error_code ec;
    const auto n = s.read_some(asio::buffer(buf), ec);
    if (ec) return {};
    f.feed(std::string_view(buf.data(), n));
  }
}

void write(tcp::socket& s, std::string_view bytes) {
  boost::system::error_code ec;
  asio::write(s, asio::buffer(bytes.data(), bytes.size()), ec);
}

// Connects and exchanges `payload` with a client made from `opts`; what
// connect or exchange returned. (No Catch macros inside coroutines.)
struct outcome {
  result<void> connected;
  result<std::string> reply;
  bool still_connected = false;
};

outcome exchange_once(client_options opts, std::string payload = "MSH|^~\\&|ping") {
  asio::io_context io;
  auto fut = asio::co_spawn(
      io,
      [&]() -> asio::awaitable<outcome> {
        mllp_client c(co_await asio::this_coro::executor, opts);
        outcome out;
        out.connected = co_await c.connect();
        if (!out.connected) co_return out;
        out.reply = co_await c.exchange(payload);
        out.still_connected = c.connected();
        co_return out;
      },
      asio::use_future);
  io.run();
  return fut.get();
}

client_options local(std::uint16_t port) {
  return {.host = "127.0.0.1", .port = port, .connect_timeout = 2s, .ack_timeout = 2s};
}

}  // namespace

TEST_CASE("the client sends a framed message and returns the reply's payload", "[unit]") {
  std::string seen;
  scripted_server srv([&](tcp::socket& s) {
    seen = read_message(s);
    write(s, mllp_frame("MSH|^~\\&|ack"));
    std::this_thread::sleep_for(200ms);
  });
  const auto o = exchange_once(local(srv.port()));
  REQUIRE(o.connected.has_value());
  REQUIRE(o.reply.has_value());
  CHECK(*o.reply == "MSH|^~\\&|ack");
  CHECK(o.still_connected);
  CHECK(seen == "MSH|^~\\&|ping");
}

TEST_CASE("garbage before the reply and a reply split into pieces are handled", "[unit]") {
  scripted_server srv([](tcp::socket& s) {
    (void)read_message(s);
    const auto framed = mllp_frame("the reply");
    write(s, "\r\njunk");
    write(s, framed.substr(0, 4));
    std::this_thread::sleep_for(50ms);
    write(s, framed.substr(4));
    std::this_thread::sleep_for(200ms);
  });
  const auto o = exchange_once(local(srv.port()));
  REQUIRE(o.reply.has_value());
  CHECK(*o.reply == "the reply");
}

TEST_CASE("no reply within ack_timeout is a retriable timeout and the connection is dropped", "[unit]") {
  scripted_server srv([](tcp::socket& s) {
    (void)read_message(s);
    std::this_thread::sleep_for(1500ms);
  });
  auto opts = local(srv.port());
  opts.ack_timeout = 300ms;
  const auto t0 = std::chrono::steady_clock::now();
  const auto o = exchange_once(opts);
  CHECK(std::chrono::steady_clock::now() - t0 < 1200ms);
  REQUIRE_FALSE(o.reply.has_value());
  CHECK(o.reply.error().code == errc::timeout);
  CHECK(o.reply.error().retriable);
  CHECK(o.reply.error().where == "127.0.0.1:" + std::to_string(srv.port()));
  CHECK_FALSE(o.still_connected);
}

TEST_CASE("a peer that closes before replying is a retriable unavailable", "[unit]") {
  scripted_server srv([](tcp::socket& s) {
    (void)read_message(s);
    s.close();
  });
  const auto o = exchange_once(local(srv.port()));
  REQUIRE_FALSE(o.reply.has_value());
  CHECK(o.reply.error().code == errc::unavailable);
  CHECK(o.reply.error().retriable);
}

TEST_CASE("a reply larger than max_frame_bytes is an error", "[unit]") {
  scripted_server srv([](tcp::socket& s) {
    (void)read_message(s);
    write(s, mllp_frame(std::string(5000, 'x')));
    std::this_thread::sleep_for(200ms);
  });
  auto opts = local(srv.port());
  opts.max_frame_bytes = 1000;
  const auto o = exchange_once(opts);
  REQUIRE_FALSE(o.reply.has_value());
  CHECK(o.reply.error().code == errc::parse_error);
  CHECK_FALSE(o.still_connected);
}

TEST_CASE("connecting to a closed port or an unknown host fails retriably, with where", "[unit]") {
  std::uint16_t closed_port = 0;
  {
    asio::io_context io;
    tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    closed_port = a.local_endpoint().port();
  }
  const auto refused = exchange_once(local(closed_port));
  REQUIRE_FALSE(refused.connected.has_value());
  CHECK(refused.connected.error().code == errc::unavailable);
  CHECK(refused.connected.error().retriable);
  CHECK(refused.connected.error().where == "127.0.0.1:" + std::to_string(closed_port));

  auto unknown = local(2575);
  unknown.host = "no-such-host.invalid";
  const auto u = exchange_once(unknown);
  REQUIRE_FALSE(u.connected.has_value());
  CHECK(u.connected.error().retriable);
}

TEST_CASE("exchanging without a connection, or with unloadable TLS files, fails cleanly", "[unit]") {
  asio::io_context io;
  auto fut = asio::co_spawn(
      io,
      [&]() -> asio::awaitable<result<std::string>> {
        mllp_client c(co_await asio::this_coro::executor, local(1));
        co_return co_await c.exchange("x");
      },
      asio::use_future);
  io.run();
  const auto r = fut.get();
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == errc::unavailable);

  auto opts = local(1);
  opts.tls = client_tls{.ca_file = "/nonexistent/ca.pem"};
  const auto o = exchange_once(opts);
  REQUIRE_FALSE(o.connected.has_value());
  CHECK(o.connected.error().code == errc::config_error);
  CHECK(o.connected.error().where == "/nonexistent/ca.pem");
}
