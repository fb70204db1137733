#include "engine/api/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <charconv>
#include <memory>
#include <stdexcept>

#include "engine/core/hex.h"

namespace yilian::api {

namespace {

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool is_token68_char(char c) {
  // RFC 6750 b64token: ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" *"="
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_' || c == '~' || c == '+' || c == '/' || c == '=';
}

constexpr char base64url_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

// base64url without padding.
std::string base64url(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() * 4 + 2) / 3);
  std::uint32_t acc = 0;
  int bits = 0;
  for (const char ch : bytes) {
    acc = (acc << 8) | static_cast<unsigned char>(ch);
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += base64url_alphabet[(acc >> bits) & 0x3F];
    }
  }
  if (bits > 0) out += base64url_alphabet[(acc << (6 - bits)) & 0x3F];
  return out;
}

int base64url_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

// Strict: no padding, no other characters, no non-zero leftover bits (so
// every byte string has exactly one encoding and a token cannot be altered
// without changing what the MAC covers).
std::optional<std::string> unbase64url(std::string_view text) {
  if (text.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(text.size() * 3 / 4);
  std::uint32_t acc = 0;
  int bits = 0;
  for (const char c : text) {
    const int v = base64url_value(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  if (bits > 0 && (acc & ((1U << bits) - 1)) != 0) return std::nullopt;
  return out;
}

constexpr std::string_view patient_token_prefix = "ylp1.";

bool plain_field(std::string_view s) {
  if (s.empty() || s.size() > 128) return false;
  for (const char c : s) {
    if (c == '|' || static_cast<unsigned char>(c) < 0x20) return false;
  }
  return true;
}

}  // namespace

std::string_view to_string(role r) noexcept {
  switch (r) {
    case role::hospital_system: return "hospital_system";
    case role::clinic_user: return "clinic_user";
    case role::operator_: return "operator";
    case role::patient_gateway: return "patient_gateway";
    case role::patient: return "patient";
  }
  return "unknown";
}

result<role> parse_role(std::string_view s) {
  if (s == "hospital_system") return role::hospital_system;
  if (s == "clinic_user") return role::clinic_user;
  if (s == "operator") return role::operator_;
  if (s == "patient_gateway") return role::patient_gateway;
  if (s == "patient") return role::patient;
  return fail(errc::invalid_argument, "unknown role '" + std::string(s) + "'",
              "expected hospital_system|clinic_user|operator|patient_gateway|patient");
}

std::string_view to_string(patient_token_error e) noexcept {
  switch (e) {
    case patient_token_error::malformed: return "malformed";
    case patient_token_error::bad_signature: return "bad_signature";
    case patient_token_error::expired: return "expired";
    case patient_token_error::unknown_gateway: return "unknown_gateway";
  }
  return "unknown";
}

// ---- patient tokens -------------------------------------------------------------

result<patient_token_key> patient_token_key::from_secret(std::string_view secret) {
  if (secret.size() < min_key_bytes) {
    return fail(errc::invalid_argument,
                "the patient-token key is " + std::to_string(secret.size()) + " bytes; it needs at least " +
                    std::to_string(min_key_bytes) + " (e.g. `openssl rand -base64 48`)",
                "patient_access.token_key");
  }
  return patient_token_key(std::string(secret));
}

bool patient_token_key::looks_like(std::string_view token) noexcept { return token.starts_with(patient_token_prefix); }

std::string patient_token_key::mac(std::string_view data) const {
  std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()), reinterpret_cast<const unsigned char*>(data.data()),
           data.size(), out.data(), &len) == nullptr ||
      len != 32) {
    throw std::runtime_error("OpenSSL HMAC-SHA256 failed");
  }
  return std::string(reinterpret_cast<const char*>(out.data()), len);
}

std::string patient_token_key::sign(patient_claims claims) const {
  if (claims.nonce.empty()) {
    std::array<unsigned char, 16> raw{};
    if (RAND_bytes(raw.data(), static_cast<int>(raw.size())) != 1) throw std::runtime_error("OpenSSL RAND_bytes failed");
    claims.nonce = base64url(std::string_view(reinterpret_cast<const char*>(raw.data()), raw.size()));
  }
  const auto expires = std::chrono::duration_cast<std::chrono::seconds>(claims.expires_at.time_since_epoch()).count();
  const std::string payload =
      claims.enterprise_id + "|" + std::to_string(expires) + "|" + claims.gateway + "|" + claims.nonce;
  // The MAC covers the prefix too: a later token version cannot be passed off
  // as this one.
  std::string signed_part = std::string(patient_token_prefix) + base64url(payload);
  return signed_part + "." + base64url(mac(signed_part));
}

std::expected<patient_claims, patient_token_error> patient_token_key::verify(
    std::string_view token, std::chrono::system_clock::time_point now) const {
  using err = patient_token_error;
  if (!looks_like(token) || token.size() > 1024) return std::unexpected(err::malformed);
  const auto dot = token.rfind('.');
  if (dot < patient_token_prefix.size()) return std::unexpected(err::malformed);
  const auto signed_part = token.substr(0, dot);
  const auto given = unbase64url(token.substr(dot + 1));
  if (!given || given->size() != 32) return std::unexpected(err::malformed);
  const auto expected = mac(signed_part);
  // CRYPTO_memcmp takes the same time whether or not (or where) bytes differ.
  if (CRYPTO_memcmp(expected.data(), given->data(), expected.size()) != 0) return std::unexpected(err::bad_signature);
  // Only now is the payload ours.
  const auto payload = unbase64url(signed_part.substr(patient_token_prefix.size()));
  if (!payload) return std::unexpected(err::malformed);
  std::vector<std::string_view> parts;
  std::string_view rest = *payload;
  for (std::size_t at = rest.find('|'); at != std::string_view::npos; at = rest.find('|')) {
    parts.push_back(rest.substr(0, at));
    rest.remove_prefix(at + 1);
  }
  parts.push_back(rest);
  if (parts.size() != 4 || !plain_field(parts[0]) || !plain_field(parts[2]) || !plain_field(parts[3])) {
    return std::unexpected(err::malformed);
  }
  std::int64_t expires = 0;
  if (auto [p, ec] = std::from_chars(parts[1].data(), parts[1].data() + parts[1].size(), expires);
      ec != std::errc() || p != parts[1].data() + parts[1].size()) {
    return std::unexpected(err::malformed);
  }
  patient_claims c{.enterprise_id = std::string(parts[0]),
                   .expires_at = std::chrono::system_clock::time_point(std::chrono::seconds(expires)),
                   .gateway = std::string(parts[2]),
                   .nonce = std::string(parts[3])};
  if (now >= c.expires_at) return std::unexpected(err::expired);
  return c;
}

token_digest digest_token(std::string_view token) {
  // Every authenticated request digests its token: the algorithm is fetched
  // once (OpenSSL 3 looks it up on each EVP_sha256() init otherwise) and each
  // thread reuses one context.
  static EVP_MD* const sha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  thread_local const std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  token_digest out{};
  unsigned int len = 0;
  if (sha256 == nullptr || !ctx || EVP_DigestInit_ex(ctx.get(), sha256, nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), token.data(), token.size()) != 1 ||
      EVP_DigestFinal_ex(ctx.get(), out.data(), &len) != 1 || len != out.size()) {
    throw std::runtime_error("OpenSSL SHA-256 failed");
  }
  return out;
}

std::string hash_token(std::string_view token) {
  return to_hex(digest_token(token));
}

std::string generate_token() {
  std::array<unsigned char, 32> raw{};
  if (RAND_bytes(raw.data(), static_cast<int>(raw.size())) != 1) throw std::runtime_error("OpenSSL RAND_bytes failed");
  static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (const auto b : raw) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += alphabet[(acc >> bits) & 0x3F];
    }
  }
  if (bits > 0) out += alphabet[(acc << (6 - bits)) & 0x3F];
  return out;
}

std::optional<std::string_view> parse_bearer(std::string_view authorization) {
  constexpr std::string_view scheme = "bearer";
  if (authorization.size() <= scheme.size()) return std::nullopt;
  for (std::size_t i = 0; i < scheme.size(); ++i) {
    if (lower(authorization[i]) != scheme[i]) return std::nullopt;
  }
  auto rest = authorization.substr(scheme.size());
  if (rest.front() != ' ') return std::nullopt;
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  while (!rest.empty() && (rest.back() == ' ' || rest.back() == '\t')) rest.remove_suffix(1);
  if (rest.empty()) return std::nullopt;
  for (const char c : rest) {
    if (!is_token68_char(c)) return std::nullopt;
  }
  return rest;
}

result<void> credential_store::add(principal p, std::string_view token_sha256_hex) {
  if (token_sha256_hex.size() != 64) {
    return fail(errc::invalid_argument, "token hash must be 64 hex digits (SHA-256)", p.id.value());
  }
  token_digest d{};
  for (std::size_t i = 0; i < d.size(); ++i) {
    const int hi = hex_value(token_sha256_hex[2 * i]);
    const int lo = hex_value(token_sha256_hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return fail(errc::invalid_argument, "token hash is not hexadecimal", p.id.value());
    d[i] = static_cast<std::uint8_t>((hi << 4) | lo);
  }
  for (const auto& e : entries_) {
    if (e.who.id == p.id) return fail(errc::already_exists, "principal already has a token", p.id.value());
    if (e.digest == d) return fail(errc::already_exists, "two principals share one token hash", p.id.value());
  }
  entries_.push_back(entry{.who = std::move(p), .digest = d});
  return {};
}

void credential_store::accept_patient_tokens(std::shared_ptr<const patient_token_key> key, clock_fn now) {
  patient_key_ = std::move(key);
  now_ = std::move(now);
}

const principal* credential_store::find(const principal_id& id) const {
  for (const auto& e : entries_) {
    if (e.who.id == id) return &e.who;
  }
  return nullptr;
}

std::expected<principal, patient_token_error> credential_store::authenticate_patient(std::string_view token) const {
  if (!patient_key_) return std::unexpected(patient_token_error::bad_signature);
  auto claims = patient_key_->verify(token, now_ ? now_() : std::chrono::system_clock::now());
  if (!claims) return std::unexpected(claims.error());
  // A gateway taken out of the configuration (or demoted) takes its tokens with it.
  const auto* gateway = find(principal_id{claims->gateway});
  if (gateway == nullptr || gateway->role != role::patient_gateway) {
    return std::unexpected(patient_token_error::unknown_gateway);
  }
  return principal{.id = principal_id{claims->enterprise_id},
                   .role = role::patient,
                   .hospital = hospital_id{},
                   .display_name = {},
                   .via = gateway->id};
}

std::optional<principal> credential_store::authenticate(std::string_view token) const {
  if (token.empty()) return std::nullopt;
  // generate_token never makes a token with the patient-token prefix, but an
  // operator may have chosen one: a prefixed token that is not a valid
  // patient token is still tried as a static one.
  if (patient_token_key::looks_like(token)) {
    if (auto p = authenticate_patient(token)) return std::move(*p);
  }
  const auto d = digest_token(token);
  const entry* found = nullptr;
  for (const auto& e : entries_) {
    // CRYPTO_memcmp takes the same time whether or not (or where) bytes differ.
    if (CRYPTO_memcmp(e.digest.data(), d.data(), d.size()) == 0) found = &e;
  }
  if (found == nullptr) return std::nullopt;
  return found->who;
}

}  // namespace yilian::api
