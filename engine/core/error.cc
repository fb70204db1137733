#include "engine/core/error.h"

namespace yilian {

std::string_view to_string(errc code) noexcept {
  switch (code) {
    case errc::invalid_argument: return "invalid_argument";
    case errc::parse_error: return "parse_error";
    case errc::validation_failed: return "validation_failed";
    case errc::not_found: return "not_found";
    case errc::already_exists: return "already_exists";
    case errc::conflict: return "conflict";
    case errc::unavailable: return "unavailable";
    case errc::timeout: return "timeout";
    case errc::overloaded: return "overloaded";
    case errc::io_error: return "io_error";
    case errc::corrupt: return "corrupt";
    case errc::unauthenticated: return "unauthenticated";
    case errc::permission_denied: return "permission_denied";
    case errc::config_error: return "config_error";
    case errc::cancelled: return "cancelled";
    case errc::internal: return "internal";
    case errc::unsupported: return "unsupported";
  }
  return "unknown";
}

std::string error::describe() const {
  std::string out{to_string(code)};
  out += ": ";
  out += message;
  if (!where.empty()) {
    out += " (at ";
    out += where;
    out += ')';
  }
  return out;
}

}  // namespace yilian
