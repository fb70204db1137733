#include "adapters/webhook/signing.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace yilian::webhook {

namespace {

std::string hex(const unsigned char* bytes, unsigned int len) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(std::size_t{len} * 2);
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(digits[bytes[i] >> 4]);
    out.push_back(digits[bytes[i] & 0x0f]);
  }
  return out;
}

}  // namespace

std::string hmac_sha256_hex(std::string_view key, std::string_view message) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(message.data()),
       message.size(), md, &len);
  return hex(md, len);
}

std::string sha256_hex(std::string_view bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(bytes.data(), bytes.size(), md, &len, EVP_sha256(), nullptr);
  return hex(md, len);
}

std::string base64(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::string signed_payload(std::string_view timestamp, std::string_view body) {
  std::string out;
  out.reserve(timestamp.size() + 1 + body.size());
  out += timestamp;
  out += '.';
  out += body;
  return out;
}

std::string signature(std::string_view secret, std::string_view timestamp, std::string_view body) {
  return "sha256=" + hmac_sha256_hex(secret, signed_payload(timestamp, body));
}

std::vector<header> delivery_headers(const delivery& d, const auth& a, std::string_view body) {
  const std::string timestamp = std::to_string(d.unix_seconds);
  std::vector<header> h{
      {"Content-Type", "application/json; charset=utf-8"},
      {"Idempotency-Key", d.event_id},
      {"X-Yilian-Event-Id", d.event_id},
      {"X-Yilian-Event-Type", d.event_type},
      {"X-Yilian-Attempt", std::to_string(d.attempt)},
      {"X-Yilian-Timestamp", timestamp},
  };
  switch (a.scheme) {
    case config::v1::AUTH_SCHEME_BEARER:
      h.emplace_back("Authorization", "Bearer " + a.secret);
      break;
    case config::v1::AUTH_SCHEME_BASIC:
      h.emplace_back("Authorization", "Basic " + base64(a.username + ":" + a.secret));
      break;
    case config::v1::AUTH_SCHEME_HMAC_SHA256:
      h.emplace_back("X-Yilian-Signature", signature(a.secret, timestamp, body));
      break;
    default:
      break;
  }
  return h;
}

result<std::string> resolve_secret(const config::v1::SecretRef& ref, const config::loaded_consortium& consortium) {
  std::string value;
  if (ref.has_env()) {
    const char* v = std::getenv(ref.env().c_str());
    if (v == nullptr) return fail(errc::config_error, "environment variable " + ref.env() + " is not set", "secret");
    value = v;
  } else if (ref.has_file()) {
    const auto path = consortium.resolve(ref.file());
    std::ifstream in(path, std::ios::binary);
    if (!in) return fail(errc::config_error, "cannot read secret file " + path.string(), "secret");
    std::ostringstream text;
    text << in.rdbuf();
    value = text.str();
  } else {
    return fail(errc::config_error, "secret reference names neither env nor file", "secret");
  }
  while (!value.empty() && (value.back() == '\n' || value.back() == '\r')) value.pop_back();
  if (value.empty()) return fail(errc::config_error, "the secret is empty", ref.has_env() ? ref.env() : ref.file());
  return value;
}

}  // namespace yilian::webhook
