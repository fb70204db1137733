// yilian::webhook signing — the headers every webhook POST carries and how its
// body is signed (docs/webhooks.md is the receiver's side of this).
//
// Headers of one delivery attempt (delivery_headers):
//   Content-Type: application/json; charset=utf-8
//   Idempotency-Key: <event_id>            the same on every attempt and after restarts
//   X-Yilian-Event-Id: <event_id>
//   X-Yilian-Event-Type: <body type>       "ReportIssued", "AppointmentChanged", ...
//   X-Yilian-Attempt: <n>                  1 for the first attempt
//   X-Yilian-Timestamp: <unix seconds>     when this attempt was signed
//   Authorization: Bearer <secret>                          scheme BEARER
//   Authorization: Basic base64(<username>:<secret>)        scheme BASIC
//   X-Yilian-Signature: sha256=<hex>                        scheme HMAC_SHA256
//
// The HMAC_SHA256 signature is the lowercase hex HMAC-SHA256, keyed with the
// secret's bytes, of
//     <X-Yilian-Timestamp value> "." <body bytes exactly as sent>
// e.g. "1748766600.{\"eventId\":...}". Signing the timestamp with the body lets
// a receiver refuse replays: it recomputes the HMAC over the header's
// timestamp and the raw body, compares in constant time, and refuses a
// timestamp more than a few minutes away from its clock. Each attempt is
// signed afresh (new timestamp), so a retry an hour later still passes that
// window; Idempotency-Key is what stays the same.
//
// Pure functions; no I/O except resolve_secret, which reads the environment or
// a file.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "adapters/webhook/http_client.h"
#include "engine/config/config.h"
#include "engine/core/error.h"

namespace yilian::webhook {

// Lowercase hex HMAC-SHA256 of `message` keyed with `key`.
std::string hmac_sha256_hex(std::string_view key, std::string_view message);
// Lowercase hex SHA-256.
std::string sha256_hex(std::string_view bytes);
// Standard base64 with padding (RFC 4648 section 4).
std::string base64(std::string_view bytes);

// What X-Yilian-Signature signs: "<timestamp>.<body>".
std::string signed_payload(std::string_view timestamp, std::string_view body);
// "sha256=" + hmac_sha256_hex(secret, signed_payload(timestamp, body)).
std::string signature(std::string_view secret, std::string_view timestamp, std::string_view body);

// How one destination authenticates. `secret` is the resolved value (never
// logged); empty for NONE.
struct auth {
  config::v1::AuthScheme scheme = config::v1::AUTH_SCHEME_NONE;
  std::string username;  // BASIC
  std::string secret;
};

struct delivery {
  std::string event_id;
  std::string event_type;  // body type name
  std::uint32_t attempt = 1;
  std::int64_t unix_seconds = 0;  // the attempt's X-Yilian-Timestamp
};

// The headers above for one attempt with `body`.
std::vector<header> delivery_headers(const delivery& d, const auth& a, std::string_view body);

// The value of a secret reference: the environment variable, or the file
// (relative to the consortium directory) without its trailing newline.
// Errors: errc::config_error saying which variable or file (never the value).
result<std::string> resolve_secret(const config::v1::SecretRef& ref, const config::loaded_consortium& consortium);

}  // namespace yilian::webhook
