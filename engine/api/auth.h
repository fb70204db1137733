// yilian::api authentication base: who is calling (a principal) and how a
// bearer token is checked.
//
// Tokens are never stored: the configuration holds the lowercase hex SHA-256 of
// each principal's token (`yilian token hash` prints it), and a presented token
// is hashed and compared in constant time against every stored hash.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/error.h"
#include "engine/core/named_type.h"

namespace yilian::api {

enum class role {
  hospital_system,  // a hospital's HIS/RIS/LIS talking machine to machine
  clinic_user,      // a person at a primary clinic (console or the clinic's own system)
  operator_,        // a consortium operator ("operator" is a C++ keyword)
};

// "hospital_system", "clinic_user", "operator".
std::string_view to_string(role r) noexcept;
result<role> parse_role(std::string_view s);

// Who a request acts for. Logs and audit records carry `id`, never `display_name`.
struct principal {
  principal_id id;
  api::role role = api::role::clinic_user;
  hospital_id hospital;      // the hospital (or clinic) the principal belongs to
  std::string display_name;  // for the console only
  bool operator==(const principal&) const = default;
};

using token_digest = std::array<std::uint8_t, 32>;

// Lowercase hex SHA-256 of the token (64 characters), via OpenSSL EVP.
std::string hash_token(std::string_view token);
token_digest digest_token(std::string_view token);
// A new random token: 32 bytes from the OpenSSL CSPRNG, base64url without
// padding (43 characters). Throws std::runtime_error if the CSPRNG fails.
std::string generate_token();

// The token of an "Authorization: Bearer <token>" header value; the scheme is
// case-insensitive. nullopt for another scheme, a missing or malformed token.
std::optional<std::string_view> parse_bearer(std::string_view authorization);

// Principals and their token hashes. Immutable once handed to the server
// (which holds it through a shared_ptr<const credential_store>); reloading
// credentials means building a new store and calling server::set_credentials.
class credential_store {
 public:
  // Fails with invalid_argument when the hash is not 64 hex digits, or when
  // the principal id or the hash is already present.
  result<void> add(principal p, std::string_view token_sha256_hex);

  // The principal whose token hashes to the same digest; compares against all
  // entries in constant time per entry (no early exit).
  std::optional<principal> authenticate(std::string_view token) const;

  std::size_t size() const noexcept { return entries_.size(); }

 private:
  struct entry {
    principal who;
    token_digest digest;
  };
  std::vector<entry> entries_;
};

}  // namespace yilian::api
