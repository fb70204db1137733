// Fuzz target: the Authorization header (untrusted) through
// yilian::api::parse_bearer, and what the server does with the token
// (credential_store::authenticate), plus parse_role.
//
// Invariants checked, beyond "does not crash":
//  - parse_bearer agrees with a reference reading of its grammar
//    ("bearer" in any case, one or more spaces, token68 characters, trailing
//    spaces or tabs): it accepts exactly those headers and returns exactly
//    that token, as a view into the header it was given;
//  - a store holding the token's hash authenticates that token and no other
//    (the token with one more character);
//  - credential_store::add accepts the header as a hash exactly when it is 64
//    hex digits, and rejects a second principal with the same id;
//  - parse_role accepts exactly the three role names, and to_string reverses it.
#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <string_view>

#include "engine/api/auth.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

namespace api = yilian::api;
using yilian::fuzz::printable;

bool token68(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_' || c == '~' || c == '+' || c == '/' || c == '=';
}

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

std::optional<std::string_view> reference_bearer(std::string_view h) {
  constexpr std::string_view scheme = "bearer";
  if (h.size() < scheme.size()) return std::nullopt;
  for (std::size_t i = 0; i < scheme.size(); ++i) {
    if (lower(h[i]) != scheme[i]) return std::nullopt;
  }
  std::size_t i = scheme.size();
  const std::size_t spaces = i;
  while (i < h.size() && h[i] == ' ') ++i;
  if (i == spaces) return std::nullopt;
  const std::size_t start = i;
  while (i < h.size() && token68(h[i])) ++i;
  const std::size_t end = i;
  if (end == start) return std::nullopt;
  while (i < h.size() && (h[i] == ' ' || h[i] == '\t')) ++i;
  if (i != h.size()) return std::nullopt;
  return h.substr(start, end - start);
}

bool is_hex64(std::string_view s) {
  if (s.size() != 64) return false;
  for (const char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) return false;
  }
  return true;
}

void run(std::string_view header) {
  const auto got = api::parse_bearer(header);
  const auto want = reference_bearer(header);
  FUZZ_CHECK(got.has_value() == want.has_value())
      << "parse_bearer(" << printable(header) << ") " << (got ? "accepted" : "rejected");
  if (got) {
    FUZZ_CHECK(*got == *want) << printable(header) << " gave token " << printable(*got);
    FUZZ_CHECK(got->data() >= header.data() && got->data() + got->size() <= header.data() + header.size())
        << "the token is not a view into the header";

    const api::principal who{.id = yilian::principal_id{"p1"},
                             .role = api::role::hospital_system,
                             .hospital = yilian::hospital_id{"h1"},
                             .display_name = {}};
    api::credential_store store;
    const auto added = store.add(who, api::hash_token(*got));
    FUZZ_CHECK(added.has_value()) << added.error().describe();
    const auto found = store.authenticate(*got);
    FUZZ_CHECK(found.has_value() && *found == who) << "the token's own hash does not authenticate it";
    FUZZ_CHECK(!store.authenticate(std::string(*got) + "x").has_value()) << "another token authenticates";
  }

  api::credential_store store;
  const api::principal p{.id = yilian::principal_id{"p"}, .role = api::role::operator_, .hospital = {}, .display_name = {}};
  const auto added = store.add(p, header);
  FUZZ_CHECK(added.has_value() == is_hex64(header)) << "credential_store::add(" << printable(header) << ")";
  if (added) {
    FUZZ_CHECK(store.size() == 1);
    FUZZ_CHECK(!store.add(p, header).has_value()) << "the same principal was added twice";
  } else {
    FUZZ_CHECK(!added.error().message.empty());
  }

  const auto role = api::parse_role(header);
  const bool known = header == "hospital_system" || header == "clinic_user" || header == "operator";
  FUZZ_CHECK(role.has_value() == known) << printable(header);
  if (role) FUZZ_CHECK(api::to_string(*role) == header);
}

}  // namespace

YILIAN_FUZZ_ENTRY(run)
