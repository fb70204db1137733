#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "engine/api/problem.h"

using namespace yilian;
using namespace yilian::api;
using s = http::status;

namespace {

std::string header(const response& r, std::string_view name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) return v;
  }
  return {};
}

}  // namespace

TEST_CASE("every errc maps to one HTTP status and FHIR issue type", "[unit]") {
  struct row {
    errc code;
    http::status status;
    std::string_view fhir;
    bool detail;
  };
  // One row per errc, in declaration order; the loop below checks none is missing.
  const std::vector<row> table{
      {errc::invalid_argument, s::bad_request, "invalid", true},
      {errc::parse_error, s::bad_request, "structure", true},
      {errc::validation_failed, s::unprocessable_entity, "invariant", true},
      {errc::not_found, s::not_found, "not-found", true},
      {errc::already_exists, s::conflict, "duplicate", true},
      {errc::conflict, s::conflict, "conflict", true},
      {errc::unavailable, s::service_unavailable, "transient", true},
      {errc::timeout, s::gateway_timeout, "timeout", true},
      {errc::overloaded, s::service_unavailable, "throttled", true},
      {errc::io_error, s::service_unavailable, "transient", true},
      {errc::corrupt, s::internal_server_error, "exception", false},
      {errc::unauthenticated, s::unauthorized, "login", true},
      {errc::permission_denied, s::forbidden, "forbidden", true},
      {errc::config_error, s::internal_server_error, "exception", false},
      {errc::cancelled, s::service_unavailable, "transient", true},
      {errc::internal, s::internal_server_error, "exception", false},
      {errc::unsupported, s::unprocessable_entity, "not-supported", true},
  };
  REQUIRE(table.size() == static_cast<std::size_t>(errc::unsupported));
  for (std::size_t i = 0; i < table.size(); ++i) {
    const auto& r = table[i];
    INFO(to_string(r.code));
    CHECK(static_cast<std::size_t>(r.code) == i + 1);
    CHECK(map_error(r.code) == error_mapping{r.status, r.fhir, r.detail});

    const auto e = error::make(r.code, "the message", "PID-3");
    {  // problem+json outside /fhir/r4
      const auto res = error_response(e, "/api/v1/referrals/r1", "req-1");
      CHECK(res.status == r.status);
      CHECK(res.content_type == "application/problem+json");
      const auto body = nlohmann::json::parse(res.body);
      CHECK(body["status"] == static_cast<unsigned>(r.status));
      CHECK(body["code"] == to_string(r.code));
      CHECK(body["type"] == "about:blank");
      CHECK(body["request_id"] == "req-1");
      CHECK(body["retriable"] == default_retriable(r.code));
      if (r.detail) {
        CHECK(body["detail"] == "the message");
        CHECK(body["where"] == "PID-3");
      } else {
        CHECK(body["detail"] == "internal error; request id req-1");
        CHECK_FALSE(body.contains("where"));
      }
    }
    {  // OperationOutcome under /fhir/r4
      const auto res = error_response(e, "/fhir/r4/Patient/p1", "req-2");
      CHECK(res.status == r.status);
      CHECK(res.content_type == "application/fhir+json; charset=utf-8");
      const auto body = nlohmann::json::parse(res.body);
      CHECK(body["resourceType"] == "OperationOutcome");
      REQUIRE(body["issue"].size() == 1);
      CHECK(body["issue"][0]["code"] == r.fhir);
      CHECK(body["issue"][0]["severity"] == (r.status == s::internal_server_error ? "fatal" : "error"));
      CHECK(body["issue"][0]["diagnostics"] ==
            (r.detail ? std::string("the message") : std::string("internal error; request id req-2")));
    }
  }
}

TEST_CASE("401 asks for a bearer token and 503 says when to retry", "[unit]") {
  const auto unauth = error_response(error::make(errc::unauthenticated, "no token"), "/x", "r");
  CHECK(header(unauth, "WWW-Authenticate") == "Bearer realm=\"yilian\"");
  const auto busy = error_response(error::make(errc::unavailable, "bus down"), "/x", "r");
  CHECK(header(busy, "Retry-After") == "1");
  const auto nf = error_response(error::make(errc::not_found, "x"), "/x", "r");
  CHECK(nf.headers.empty());
}

TEST_CASE("only /fhir/r4 and below answer with FHIR resources", "[unit]") {
  CHECK(is_fhir_path("/fhir/r4"));
  CHECK(is_fhir_path("/fhir/r4/"));
  CHECK(is_fhir_path("/fhir/r4/Patient/1"));
  CHECK_FALSE(is_fhir_path("/fhir/r40/Patient"));
  CHECK_FALSE(is_fhir_path("/fhir"));
  CHECK_FALSE(is_fhir_path("/api/fhir/r4"));
}

TEST_CASE("problem bodies stay valid JSON whatever the message holds", "[unit]") {
  const auto res = error_response(error::make(errc::parse_error, "bad byte \xFF in \"PID\"\n"), "/x", "r");
  const auto body = nlohmann::json::parse(res.body);
  CHECK(body["detail"] == "bad byte \xEF\xBF\xBD in \"PID\"\n");
}
