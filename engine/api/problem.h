// The HTTP boundary's one error mapping: yilian::error -> status + body.
//
// Outside /fhir/r4 the body is an RFC 9457 problem document
// (application/problem+json):
//   {"type":"about:blank","title":"Not Found","status":404,"code":"not_found",
//    "detail":"no patient p1","where":"id","retriable":false,"request_id":"..."}
// Under /fhir/r4 it is a FHIR R4 OperationOutcome (application/fhir+json):
//   {"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found",
//    "diagnostics":"no patient p1","expression":["id"]}]}
//
// Server-side failures (internal, corrupt, config_error) do not echo the
// message — it may name files or internals — only "internal error; request id
// <id>"; the server logs the full error under that request id.
// 401 adds `WWW-Authenticate: Bearer`; 503 adds `Retry-After`.
#pragma once

#include <string>
#include <string_view>

#include "engine/api/http.h"
#include "engine/core/error.h"

namespace yilian::api {

struct error_mapping {
  http::status status;
  std::string_view fhir_issue_code;  // FHIR R4 IssueType (http://hl7.org/fhir/issue-type)
  bool expose_detail;                // false: the message stays in the logs
  bool operator==(const error_mapping&) const = default;
};

// The table (tests/unit/api/problem_test.cc checks every errc):
//   invalid_argument 400 invalid       parse_error    400 structure
//   validation_failed 422 invariant    not_found      404 not-found
//   already_exists   409 duplicate     conflict       409 conflict
//   unavailable      503 transient     timeout        504 timeout
//   overloaded       503 throttled     io_error       503 transient
//   corrupt          500 exception*    unauthenticated 401 login
//   permission_denied 403 forbidden    config_error   500 exception*
//   cancelled        503 transient     internal       500 exception*
//   (* detail hidden)
error_mapping map_error(errc code) noexcept;

// The one function every error answer goes through.
response error_response(const error& e, std::string_view path, std::string_view request_id);

// The body builder shared with protocol failures that have no errc (405, 413,
// 431, malformed HTTP): same two shapes, explicit status and codes.
response problem_response(http::status status, std::string_view code, std::string_view fhir_issue_code,
                          std::string_view detail, std::string_view where, std::string_view path,
                          std::string_view request_id, bool retriable = false);

// Whether answers for this path are FHIR resources ("/fhir/r4" or below).
bool is_fhir_path(std::string_view path) noexcept;

}  // namespace yilian::api
