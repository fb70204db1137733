// yilian::api::router — method + path pattern -> handler.
//
// Patterns are literal segments and `{name}` parameters, one per segment:
//   /fhir/r4/Patient/{id}      /fhir/r4/Patient/{id}/_history/{vid}
// Matching is on percent-decoded segments (so an id may contain "%2F"); a
// literal segment beats a parameter in the same position, so
// /fhir/r4/Patient/_search wins over /fhir/r4/Patient/{id}. No trailing-slash
// or case folding: /healthz/ is not /healthz.
//
// A path that matches no pattern is 404; a path that matches patterns none of
// which has the method is 405 with the methods they do have (Allow). HEAD is
// served by the GET route when no HEAD route exists.
//
// Built once (add() before the server starts), then only read — by every
// connection strand at once, without locks.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "engine/api/http.h"
#include "engine/core/error.h"

namespace yilian::api {

enum class auth_mode {
  bearer,  // Authorization: Bearer <token> required (the default)
  none,    // public: /healthz, /readyz, /metrics
};

struct route_options {
  auth_mode auth = auth_mode::bearer;
  std::vector<role> roles;  // empty: any authenticated principal; else 403 for other roles
};

struct route {
  http::verb method = http::verb::get;
  std::string pattern;
  api::handler handle;
  route_options options;
  std::vector<std::string> segments;  // parsed pattern; "{x}" kept as is

  bool allows(role r) const;
};

class router {
 public:
  // Throws std::invalid_argument for a malformed pattern (not starting with
  // '/', empty or half-braced parameter, repeated parameter name) and
  // std::logic_error for a method + pattern registered twice (bugs, found at
  // startup).
  void add(http::verb method, std::string_view pattern, api::handler h, route_options opts = {});

  struct match_result {
    const route* found = nullptr;      // null: 404 (allowed empty) or 405 (allowed not empty)
    params path_params;                // when found
    std::string path;                  // the percent-decoded path
    std::vector<http::verb> allowed;   // when not found: methods of the patterns that match the path
  };
  // `raw_path` is the target's path without query, still percent-encoded.
  // Fails with invalid_argument on a bad percent-escape or a NUL (raw or %00).
  result<match_result> match(http::verb method, std::string_view raw_path) const;

  const std::vector<route>& routes() const noexcept { return routes_; }

 private:
  std::vector<route> routes_;
};

// "%41b+c" -> "Ab+c" (plus_is_space: "Ab c"). Fails on a bad escape or a NUL
// byte, raw or %00: a decoded value never holds a NUL.
result<std::string> percent_decode(std::string_view s, bool plus_is_space = false);
// "a=1&b=x+y&a=2" -> {a:1, b:"x y", a:2}; "flag" -> {flag:""}; empty pairs skipped.
result<params> parse_query(std::string_view query);
// "GET, HEAD, POST" (sorted, HEAD added when GET is present).
std::string allow_header(const std::vector<http::verb>& methods);

}  // namespace yilian::api
