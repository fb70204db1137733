#include "engine/api/problem.h"

#include <nlohmann/json.hpp>

namespace yilian::api {

error_mapping map_error(errc code) noexcept {
  using s = http::status;
  switch (code) {
    case errc::invalid_argument: return {s::bad_request, "invalid", true};
    case errc::parse_error: return {s::bad_request, "structure", true};
    case errc::validation_failed: return {s::unprocessable_entity, "invariant", true};
    case errc::not_found: return {s::not_found, "not-found", true};
    case errc::already_exists: return {s::conflict, "duplicate", true};
    case errc::conflict: return {s::conflict, "conflict", true};
    case errc::unavailable: return {s::service_unavailable, "transient", true};
    case errc::timeout: return {s::gateway_timeout, "timeout", true};
    case errc::overloaded: return {s::service_unavailable, "throttled", true};
    case errc::io_error: return {s::service_unavailable, "transient", true};
    case errc::corrupt: return {s::internal_server_error, "exception", false};
    case errc::unauthenticated: return {s::unauthorized, "login", true};
    case errc::permission_denied: return {s::forbidden, "forbidden", true};
    case errc::config_error: return {s::internal_server_error, "exception", false};
    case errc::cancelled: return {s::service_unavailable, "transient", true};
    case errc::internal: return {s::internal_server_error, "exception", false};
    case errc::unsupported: return {s::unprocessable_entity, "not-supported", true};
  }
  return {s::internal_server_error, "exception", false};
}

bool is_fhir_path(std::string_view path) noexcept {
  constexpr std::string_view prefix = "/fhir/r4";
  return path.starts_with(prefix) && (path.size() == prefix.size() || path[prefix.size()] == '/');
}

response problem_response(http::status status, std::string_view code, std::string_view fhir_issue_code,
                          std::string_view detail, std::string_view where, std::string_view path,
                          std::string_view request_id, bool retriable) {
  response r;
  r.status = status;
  if (is_fhir_path(path)) {
    nlohmann::json issue = {{"severity", status == http::status::internal_server_error ? "fatal" : "error"},
                            {"code", fhir_issue_code},
                            {"diagnostics", detail}};
    if (!where.empty()) issue["expression"] = nlohmann::json::array({where});
    const nlohmann::json body = {{"resourceType", "OperationOutcome"}, {"issue", nlohmann::json::array({issue})}};
    r.content_type = std::string(fhir_content_type);
    r.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } else {
    const auto reason = http::obsolete_reason(status);
    nlohmann::json body = {{"type", "about:blank"},
                           {"title", std::string_view(reason.data(), reason.size())},
                           {"status", static_cast<unsigned>(status)},
                           {"code", code},
                           {"detail", detail},
                           {"retriable", retriable}};
    if (!where.empty()) body["where"] = where;
    if (!request_id.empty()) body["request_id"] = request_id;
    r.content_type = std::string(problem_content_type);
    r.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  if (status == http::status::unauthorized) r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"yilian\"");
  if (status == http::status::service_unavailable) r.headers.emplace_back("Retry-After", "1");
  return r;
}

response error_response(const error& e, std::string_view path, std::string_view request_id) {
  const auto m = map_error(e.code);
  if (m.expose_detail) {
    return problem_response(m.status, to_string(e.code), m.fhir_issue_code, e.message, e.where, path, request_id,
                            e.retriable);
  }
  const std::string detail = "internal error; request id " + std::string(request_id);
  return problem_response(m.status, to_string(e.code), m.fhir_issue_code, detail, {}, path, request_id, e.retriable);
}

}  // namespace yilian::api
