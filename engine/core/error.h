// yilian::error — the one error type every fallible call returns.
//
// An error carries a code, a human-readable message, the place it refers to
// (segment/field path, file:line and field path, topic/partition, ...) and
// whether retrying the same operation later may succeed. The retriable flag,
// not the code, is what decides retry vs dead-letter at every boundary.
#pragma once

#include <expected>
#include <string>
#include <string_view>
#include <utility>

namespace yilian {

enum class errc : int {
  invalid_argument = 1,  // caller passed something that can never work
  parse_error,           // bytes from outside could not be parsed
  validation_failed,     // parsed, but violates the schema or a rule
  not_found,
  already_exists,
  conflict,              // a concurrent or earlier decision wins (slot taken, ...)
  unavailable,           // a dependency (bus, broker, disk lock) cannot serve now
  timeout,               // gave up waiting within the configured bound
  overloaded,            // bounded queue full: back-pressure
  io_error,
  corrupt,               // stored data is not what we wrote
  unauthenticated,
  permission_denied,
  config_error,
  cancelled,             // shutdown or explicit cancellation
  internal,              // a bug: an invariant did not hold
  unsupported,           // well-formed input of a kind we do not handle (message type, version, charset)
};

std::string_view to_string(errc code) noexcept;

// Whether an error with this code is worth retrying by default.
constexpr bool default_retriable(errc code) noexcept {
  return code == errc::unavailable || code == errc::timeout || code == errc::overloaded ||
         code == errc::io_error;
}

struct error {
  errc code = errc::internal;
  std::string message;
  std::string where;  // e.g. "PID-3[2].4", "consortium.yaml:12 hospitals[0].tier", "yilian.patient.v1/3"
  bool retriable = false;

  static error make(errc code, std::string message, std::string where = {}) {
    return error{.code = code, .message = std::move(message), .where = std::move(where),
                 .retriable = default_retriable(code)};
  }
  // "unavailable: broker down (at yilian.patient.v1)"
  std::string describe() const;
  bool operator==(const error&) const = default;
};

template <class T>
using result = std::expected<T, error>;

inline std::unexpected<error> fail(errc code, std::string message, std::string where = {}) {
  return std::unexpected(error::make(code, std::move(message), std::move(where)));
}

}  // namespace yilian
