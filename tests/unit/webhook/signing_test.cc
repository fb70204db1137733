// The pure parts of a webhook delivery: HMAC signatures and the headers of
// each auth scheme, URL parsing, Retry-After, the HTTP status -> outcome
// mapping and the patient channel's retry window.
#include <catch2/catch.hpp>

#include <map>

#include "adapters/webhook/http_client.h"
#include "adapters/webhook/sender.h"
#include "adapters/webhook/signing.h"

using namespace yilian;
using namespace yilian::webhook;
using namespace std::chrono_literals;
namespace cfg = yilian::config::v1;

namespace {

std::map<std::string, std::string> as_map(const std::vector<header>& headers) {
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : headers) out[k] = v;
  return out;
}

}  // namespace

TEST_CASE("HMAC-SHA256 matches the RFC 4231 test vectors, as lowercase hex", "[unit]") {
  // RFC 4231 test case 2.
  CHECK(hmac_sha256_hex("Jefe", "what do ya want for nothing?") ==
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  // Test case 1: key = 20 bytes of 0x0b, data "Hi There".
  CHECK(hmac_sha256_hex(std::string(20, '\x0b'), "Hi There") ==
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(base64("user:pass") == "dXNlcjpwYXNz");
  CHECK(base64("") == "");
  CHECK(base64("a") == "YQ==");
}

TEST_CASE("the signature covers the timestamp and the body exactly as sent", "[unit]") {
  const std::string body = R"({"eventId":"e-1","type":"yilian.events.v1.ReportIssued"})";
  CHECK(signed_payload("1748766600", body) == "1748766600." + body);
  CHECK(signature("k3y", "1748766600", body) == "sha256=" + hmac_sha256_hex("k3y", "1748766600." + body));
  // Another timestamp or one changed byte gives another signature.
  CHECK(signature("k3y", "1748766601", body) != signature("k3y", "1748766600", body));
  CHECK(signature("k3y", "1748766600", body + " ") != signature("k3y", "1748766600", body));
}

TEST_CASE("every attempt carries the idempotency key, the event and the scheme's credentials", "[unit]") {
  const delivery d{.event_id = "e-42", .event_type = "ReportIssued", .attempt = 3, .unix_seconds = 1748766600};
  const std::string body = "{}";

  SECTION("no credentials") {
    const auto h = as_map(delivery_headers(d, auth{}, body));
    CHECK(h == std::map<std::string, std::string>{{"Content-Type", "application/json; charset=utf-8"},
                                                  {"Idempotency-Key", "e-42"},
                                                  {"X-Yilian-Event-Id", "e-42"},
                                                  {"X-Yilian-Event-Type", "ReportIssued"},
                                                  {"X-Yilian-Attempt", "3"},
                                                  {"X-Yilian-Timestamp", "1748766600"}});
  }
  SECTION("bearer") {
    const auto h = as_map(delivery_headers(d, auth{.scheme = cfg::AUTH_SCHEME_BEARER, .username = {}, .secret = "tok"}, body));
    CHECK(h.at("Authorization") == "Bearer tok");
    CHECK(!h.contains("X-Yilian-Signature"));
  }
  SECTION("basic") {
    const auto h =
        as_map(delivery_headers(d, auth{.scheme = cfg::AUTH_SCHEME_BASIC, .username = "user", .secret = "pass"}, body));
    CHECK(h.at("Authorization") == "Basic dXNlcjpwYXNz");
  }
  SECTION("hmac") {
    const auto h =
        as_map(delivery_headers(d, auth{.scheme = cfg::AUTH_SCHEME_HMAC_SHA256, .username = {}, .secret = "k"}, body));
    CHECK(!h.contains("Authorization"));
    CHECK(h.at("X-Yilian-Signature") == "sha256=" + hmac_sha256_hex("k", "1748766600.{}"));
  }
}

TEST_CASE("webhook URLs are parsed into host, port and target; user info and other schemes are refused", "[unit]") {
  struct row {
    std::string text;
    bool tls;
    std::string host;
    std::uint16_t port;
    std::string target;
    std::string origin;
    std::string host_header;
  };
  const std::vector<row> good{
      {"https://dc-chc.example.cn/yilian/events", true, "dc-chc.example.cn", 443, "/yilian/events",
       "https://dc-chc.example.cn:443", "dc-chc.example.cn"},
      {"http://127.0.0.1:6670/notify", false, "127.0.0.1", 6670, "/notify", "http://127.0.0.1:6670",
       "127.0.0.1:6670"},
      {"http://gw", false, "gw", 80, "/", "http://gw:80", "gw"},
      {"http://gw?x=1#frag", false, "gw", 80, "/?x=1", "http://gw:80", "gw"},
      {"https://[::1]:8443/a?b=c", true, "::1", 8443, "/a?b=c", "https://[::1]:8443", "[::1]:8443"},
  };
  for (const auto& r : good) {
    INFO(r.text);
    auto u = parse_url(r.text);
    REQUIRE(u.has_value());
    CHECK(u->tls == r.tls);
    CHECK(u->host == r.host);
    CHECK(u->port == r.port);
    CHECK(u->target == r.target);
    CHECK(u->origin() == r.origin);
    CHECK(u->host_header() == r.host_header);
  }
  for (const char* bad : {"ftp://x/", "127.0.0.1:6670", "http://", "http://user:pw@gw/", "http://gw:0/",
                          "http://gw:99999/", "http://gw:/", "https://[::1/", "http://gw/a b"}) {
    INFO(bad);
    auto u = parse_url(bad);
    REQUIRE(!u.has_value());
    CHECK(u.error().code == errc::config_error);
  }
}

TEST_CASE("Retry-After is read as seconds or as an HTTP date", "[unit]") {
  // 2015-10-21T07:28:00Z
  const auto now = std::chrono::system_clock::time_point(std::chrono::seconds(1445412480));
  CHECK(parse_retry_after("120", now) == 120s);
  CHECK(parse_retry_after(" 0 ", now) == 0s);
  CHECK(parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now) == 120s);
  CHECK(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now) == 0s);  // past: now
  CHECK(!parse_retry_after("soon", now).has_value());
  CHECK(!parse_retry_after("Wed, 32 Oct 2015 07:30:00 GMT", now).has_value());
  CHECK(!parse_retry_after("-5", now).has_value());
}

TEST_CASE("each HTTP status maps to delivered, endpoint unavailable or refused", "[unit]") {
  for (unsigned s : {200u, 201u, 202u, 204u, 299u}) CHECK(classify(s) == outcome_class::delivered);
  // The endpoint is not taking anything now, or its URL / credentials are wrong.
  for (unsigned s : {401u, 403u, 404u, 405u, 407u, 408u, 410u, 421u, 425u, 429u, 500u, 502u, 503u, 504u, 599u}) {
    INFO(s);
    CHECK(classify(s) == outcome_class::unavailable);
  }
  // This event was refused.
  for (unsigned s : {100u, 301u, 302u, 400u, 409u, 411u, 413u, 415u, 422u, 451u, 600u}) {
    INFO(s);
    CHECK(classify(s) == outcome_class::refused);
  }
}

TEST_CASE("the retry window is the sum of the waits between max_attempts attempts", "[unit]") {
  CHECK(retry_window(1000, 300000, 1) == 0ms);
  CHECK(retry_window(1000, 300000, 2) == 1000ms);
  CHECK(retry_window(1000, 300000, 4) == 7000ms);  // 1 + 2 + 4
  CHECK(retry_window(100, 250, 5) == 100ms + 200ms + 250ms + 250ms);
  // The defaults: 1+2+...+256 s, then ten waits of 5 min: about 59 minutes.
  CHECK(retry_window(1000, 300000, 20) == std::chrono::milliseconds(511000 + 10 * 300000));
}
