// What a route handler sees and returns.
//
// A handler takes the request context and returns a response or a
// yilian::error; errors become HTTP responses through the one mapping in
// engine/api/problem.h (problem+json, or a FHIR OperationOutcome under
// /fhir/r4). Two forms are accepted, and `handler` tells them apart by the
// callable's return type:
//
//   synchronous:  [](api::request& r) -> api::response / result<api::response>
//   awaitable:    [](api::request& r) -> asio::awaitable<api::response>
//                                      / asio::awaitable<result<api::response>>
//
// Both run on the connection's strand (one strand per connection, created by
// the server). A synchronous handler runs inline: it must not block (no disk
// waits, no broker round trips); anything that waits belongs in an awaitable
// handler, which may co_await other executors and is resumed on the
// connection's strand. The request reference stays valid until the handler
// completes; a coroutine lambda's captures live in the router, which outlives
// every request.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <nlohmann/json_fwd.hpp>

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "engine/api/auth.h"
#include "engine/core/error.h"

namespace yilian::api {

namespace http = boost::beast::http;

// A Beast string view (a target, a header value) as a std::string_view.
inline std::string_view std_view(boost::beast::string_view s) { return {s.data(), s.size()}; }

using params = std::vector<std::pair<std::string, std::string>>;

// One request, owned by its connection's session while the handler runs.
struct request {
  http::request<http::string_body> message;  // method, target, headers and body as received
  std::string path;                          // percent-decoded path, no query
  std::string route;                         // the matched pattern, e.g. "/fhir/r4/Patient/{id}"
  params path_params;                        // decoded, by pattern order
  params query;                              // decoded ('+' is a space), in order, repeats kept
  std::optional<api::principal> principal;   // set on every route that requires a token
  std::string request_id;                    // X-Request-Id (the client's, or generated)
  std::string remote_address;                // peer IP, for audit records

  http::verb method() const { return message.method(); }
  std::string_view target() const;
  std::string_view header(http::field f) const;
  std::string_view header(std::string_view name) const;
  const std::string& body() const { return message.body(); }
  // "" when the pattern has no such parameter.
  std::string_view path_param(std::string_view name) const;
  // The first value of a query parameter; nullopt when absent.
  std::optional<std::string_view> query_param(std::string_view name) const;
  std::vector<std::string_view> query_params(std::string_view name) const;
  // A positive count parameter ("limit", "_count"), at most `most`; `fallback`
  // when absent or not a positive number.
  std::size_t count_param(std::string_view name, std::size_t fallback, std::size_t most) const;
};

struct response {
  http::status status = http::status::ok;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  params headers;  // extra headers (Location, ETag, ...); Content-Type/Length are set from the fields above

  static response text(std::string body, http::status s = http::status::ok);
  static response json(const nlohmann::json& j, http::status s = http::status::ok);  // application/json
  static response json_text(std::string body, http::status s = http::status::ok);  // written by json_out
  static response fhir(const nlohmann::json& j, http::status s = http::status::ok);  // application/fhir+json
  static response empty(http::status s = http::status::no_content);
  response& with_header(std::string name, std::string value) {
    headers.emplace_back(std::move(name), std::move(value));
    return *this;
  }
  bool operator==(const response&) const = default;
};

inline constexpr std::string_view json_content_type = "application/json";
inline constexpr std::string_view fhir_content_type = "application/fhir+json; charset=utf-8";
inline constexpr std::string_view problem_content_type = "application/problem+json";

using sync_handler = std::function<result<response>(request&)>;
using async_handler = std::function<boost::asio::awaitable<result<response>>(request&)>;

// A route's handler in either form (see the top of this file).
class handler {
 public:
  handler() = default;
  template <class F>
    requires std::is_invocable_v<F&, request&>
  handler(F f) {  // NOLINT(google-explicit-constructor): lambdas convert implicitly
    using R = std::invoke_result_t<F&, request&>;
    if constexpr (std::is_same_v<R, boost::asio::awaitable<result<response>>>) {
      fn_ = async_handler(std::move(f));
    } else if constexpr (std::is_same_v<R, boost::asio::awaitable<response>>) {
      fn_ = async_handler([g = std::move(f)](request& r) -> boost::asio::awaitable<result<response>> {
        co_return result<response>(co_await g(r));
      });
    } else {
      static_assert(std::is_convertible_v<R, result<response>>,
                    "a handler returns response, result<response> or an awaitable of either");
      fn_ = sync_handler(std::move(f));
    }
  }

  bool is_async() const noexcept { return std::holds_alternative<async_handler>(fn_); }
  const sync_handler& sync() const { return std::get<sync_handler>(fn_); }
  const async_handler& async() const { return std::get<async_handler>(fn_); }

 private:
  std::variant<sync_handler, async_handler> fn_;
};

}  // namespace yilian::api
