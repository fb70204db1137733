// yilian::api authentication base: who is calling (a principal) and how a
// bearer token is checked.
//
// Static tokens are never stored: the configuration holds the lowercase hex
// SHA-256 of each principal's token (`yilian token hash` prints it), and a
// presented token is hashed and compared in constant time against every
// stored hash.
//
// Patients are not configured one by one. The consortium's patient app
// backend (a configured principal of role patient_gateway, which has already
// authenticated the person, e.g. by an SMS code) asks the engine for a
// short-lived *patient token* naming the person's enterprise id
// (docs/patient-access.md). Those tokens are signed, not stored: HMAC-SHA256
// under the consortium's patient-token key over a compact payload
//   "ylp1." base64url("<enterprise id>|<expires unix s>|<gateway id>|<nonce>") "." base64url(mac)
// and the credential store accepts them next to the static tokens while the
// gateway that asked for them is still a configured patient_gateway.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
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
  patient_gateway,  // the consortium's patient app backend: asks for patient tokens, reads nothing itself
  patient,          // one person, by a patient token: reads their own reports and referrals
};

// "hospital_system", "clinic_user", "operator", "patient_gateway", "patient".
std::string_view to_string(role r) noexcept;
result<role> parse_role(std::string_view s);

// Roles that reach only the routes naming them (a route open to "any
// principal" is open to staff and hospital systems, never to a patient or to
// the gateway acting for patients): new routes are closed to them by default.
constexpr bool narrow_role(role r) noexcept { return r == role::patient || r == role::patient_gateway; }

// Who a request acts for. Logs and audit records carry `id`, never `display_name`.
struct principal {
  principal_id id;
  api::role role = api::role::clinic_user;
  hospital_id hospital;      // the hospital (or clinic) the principal belongs to
  std::string display_name;  // for the console only
  // A patient: the enterprise patient id is `id`; `via` is the gateway
  // principal whose request issued the token (audited with every read).
  principal_id via;
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

// What a patient token says. Plain values: the enterprise id is an id, never
// a name or an identifier value.
struct patient_claims {
  std::string enterprise_id;                    // "YL000000042"
  std::chrono::system_clock::time_point expires_at;  // whole seconds
  std::string gateway;                          // the issuing patient_gateway principal's id
  std::string nonce;                            // random, base64url; tells two tokens of one person apart
  bool operator==(const patient_claims&) const = default;
};

// Why a patient token was refused (for tests and the debug log; the client
// only ever hears "invalid bearer token").
enum class patient_token_error {
  malformed,      // not "ylp1.<payload>.<mac>", bad base64url, wrong field count
  bad_signature,  // MAC mismatch: tampered, or signed with another key
  expired,
  unknown_gateway,  // the issuing gateway is no longer a configured patient_gateway
};
std::string_view to_string(patient_token_error e) noexcept;

// Signs and verifies patient tokens under one key. Immutable and thread-safe.
class patient_token_key {
 public:
  // The key is the secret's bytes as configured (at least min_key_bytes);
  // invalid_argument for a shorter one (the message says how long, never the
  // key).
  static constexpr std::size_t min_key_bytes = 32;
  static result<patient_token_key> from_secret(std::string_view secret);

  // A token for these claims (the nonce is generated when empty). Throws
  // std::runtime_error only if OpenSSL fails (a bug or a broken library).
  std::string sign(patient_claims claims) const;

  // The claims of a token this key signed that has not expired at `now`. The
  // MAC is compared in constant time before anything in the payload is
  // believed.
  std::expected<patient_claims, patient_token_error> verify(std::string_view token,
                                                            std::chrono::system_clock::time_point now) const;

  // Whether the token has the patient-token form (its prefix); no checking.
  static bool looks_like(std::string_view token) noexcept;

 private:
  explicit patient_token_key(std::string key) : key_(std::move(key)) {}
  std::string mac(std::string_view data) const;
  std::string key_;
};

// Principals and their token hashes. Immutable once handed to the server
// (which holds it through a shared_ptr<const credential_store>); reloading
// credentials means building a new store and calling server::set_credentials.
class credential_store {
 public:
  // Fails with invalid_argument when the hash is not 64 hex digits, or when
  // the principal id or the hash is already present.
  result<void> add(principal p, std::string_view token_sha256_hex);

  // Accept patient tokens signed with this key (without one, patient tokens
  // are refused like any unknown token). `now` is the clock expiry is checked
  // against (the system clock by default; tests pass their own).
  using clock_fn = std::function<std::chrono::system_clock::time_point()>;
  void accept_patient_tokens(std::shared_ptr<const patient_token_key> key, clock_fn now = {});

  // The principal whose token hashes to the same digest (compares against all
  // entries in constant time per entry, no early exit); or, for a patient
  // token, a principal of role patient whose id is the token's enterprise id,
  // when the token verifies, has not expired and its gateway is still a
  // patient_gateway here.
  std::optional<principal> authenticate(std::string_view token) const;
  // The same, saying why a patient token was refused.
  std::expected<principal, patient_token_error> authenticate_patient(std::string_view token) const;

  // A configured principal by id (the gateway a patient token names).
  const principal* find(const principal_id& id) const;

  std::size_t size() const noexcept { return entries_.size(); }

 private:
  struct entry {
    principal who;
    token_digest digest;
  };
  std::vector<entry> entries_;
  std::shared_ptr<const patient_token_key> patient_key_;
  clock_fn now_;
};

}  // namespace yilian::api
