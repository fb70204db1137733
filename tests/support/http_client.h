// A test's HTTP client for the engine's API server (engine/api/server.h): one
// request on a fresh connection to 127.0.0.1, with a bearer token, the reply's
// body parsed as JSON. Blocking, so a test case reads top to bottom.
#pragma once

#include <catch2/catch.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <exception>
#include <string>

namespace yilian::test {

struct http_reply {
  unsigned status = 0;
  // Discarded (is_discarded()) when the body is not JSON; null when empty.
  nlohmann::json body;
  std::string location;
  std::string etag;
  std::string content_type;
};

// What goes with the request besides method, target and token. An empty
// field is a header not sent.
struct http_request {
  std::string body;
  // Sent only with a body.
  std::string content_type = "application/json";
  std::string accept;
  std::string idempotency_key;
  std::string if_match;
};

// One request on a fresh connection, under a 10 s deadline; fails the test
// case when no reply came.
inline http_reply http_call(std::uint16_t port, boost::beast::http::verb method, const std::string& target,
                            const std::string& token, const http_request& o = {}) {
  namespace asio = boost::asio;
  namespace beast = boost::beast;
  namespace http = beast::http;
  using namespace std::chrono_literals;
  asio::io_context ioc;
  http::response<http::string_body> res;
  bool done = false;
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        beast::tcp_stream stream(ioc);
        stream.expires_after(10s);
        co_await stream.async_connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
                                      asio::use_awaitable);
        http::request<http::string_body> req{method, target, 11};
        req.set(http::field::host, "127.0.0.1");
        req.set(http::field::authorization, "Bearer " + token);
        if (!o.accept.empty()) req.set(http::field::accept, o.accept);
        if (!o.idempotency_key.empty()) req.set("Idempotency-Key", o.idempotency_key);
        if (!o.if_match.empty()) req.set(http::field::if_match, o.if_match);
        if (!o.body.empty()) {
          req.set(http::field::content_type, o.content_type);
          req.body() = o.body;
        }
        req.prepare_payload();
        co_await http::async_write(stream, req, asio::use_awaitable);
        beast::flat_buffer buffer;
        co_await http::async_read(stream, buffer, res, asio::use_awaitable);
        done = true;
      },
      [](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);
      });
  ioc.run_for(12s);
  REQUIRE(done);
  http_reply r{.status = res.result_int()};
  if (!res.body().empty()) r.body = nlohmann::json::parse(res.body(), nullptr, false);
  r.location = std::string(res[http::field::location]);
  r.etag = std::string(res[http::field::etag]);
  r.content_type = std::string(res[http::field::content_type]);
  return r;
}

}  // namespace yilian::test
