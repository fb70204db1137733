#include "engine/api/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <memory>
#include <stdexcept>

namespace yilian::api {

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool is_token68_char(char c) {
  // RFC 6750 b64token: ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" *"="
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_' || c == '~' || c == '+' || c == '/' || c == '=';
}

}  // namespace

std::string_view to_string(role r) noexcept {
  switch (r) {
    case role::hospital_system: return "hospital_system";
    case role::clinic_user: return "clinic_user";
    case role::operator_: return "operator";
  }
  return "unknown";
}

result<role> parse_role(std::string_view s) {
  if (s == "hospital_system") return role::hospital_system;
  if (s == "clinic_user") return role::clinic_user;
  if (s == "operator") return role::operator_;
  return fail(errc::invalid_argument, "unknown role '" + std::string(s) + "'",
              "expected hospital_system|clinic_user|operator");
}

token_digest digest_token(std::string_view token) {
  token_digest out{};
  unsigned int len = 0;
  const std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), token.data(), token.size()) != 1 ||
      EVP_DigestFinal_ex(ctx.get(), out.data(), &len) != 1 || len != out.size()) {
    throw std::runtime_error("OpenSSL SHA-256 failed");
  }
  return out;
}

std::string hash_token(std::string_view token) {
  static constexpr char digits[] = "0123456789abcdef";
  const auto d = digest_token(token);
  std::string out;
  out.reserve(64);
  for (const auto b : d) {
    out += digits[b >> 4];
    out += digits[b & 0xF];
  }
  return out;
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

std::optional<principal> credential_store::authenticate(std::string_view token) const {
  if (token.empty()) return std::nullopt;
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
