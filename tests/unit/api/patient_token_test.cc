// Patient tokens (engine/api/auth.h): signed by patient_token_key, accepted
// by the credential store next to the static tokens while their gateway is a
// configured patient_gateway.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "engine/api/auth.h"

using namespace yilian;
using namespace std::chrono_literals;
using api::patient_token_error;
using sys = std::chrono::system_clock;

namespace {

const std::string key_a = "0123456789abcdef0123456789abcdef-key-a";
const std::string key_b = "0123456789abcdef0123456789abcdef-key-b";
const sys::time_point t0 = sys::time_point(std::chrono::seconds(1'780'000'000));

api::patient_token_key key(const std::string& secret) {
  auto k = api::patient_token_key::from_secret(secret);
  REQUIRE(k);
  return *k;
}

api::patient_claims claims(const std::string& gateway = "patient-app") {
  return api::patient_claims{.enterprise_id = "YL000000042", .expires_at = t0 + 900s, .gateway = gateway, .nonce = {}};
}

// The token with one character of its payload (or MAC) changed.
std::string flip(std::string token, std::size_t at) {
  token[at] = token[at] == 'A' ? 'B' : 'A';
  return token;
}

std::string base64url(const std::string& s) {
  static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (const char c : s) {
    acc = (acc << 8) | static_cast<unsigned char>(c);
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += alphabet[(acc >> bits) & 0x3F];
    }
  }
  if (bits > 0) out += alphabet[(acc << (6 - bits)) & 0x3F];
  return out;
}

api::credential_store store_with_gateway(std::shared_ptr<const api::patient_token_key> k, sys::time_point now) {
  api::credential_store store;
  REQUIRE(store.add({.id = principal_id("patient-app"), .role = api::role::patient_gateway, .hospital = hospital_id("")},
                    api::hash_token("gateway-token")));
  REQUIRE(store.add({.id = principal_id("dc-chc-his"), .role = api::role::hospital_system, .hospital = hospital_id("dc-chc")},
                    api::hash_token("his-token")));
  store.accept_patient_tokens(std::move(k), [now] { return now; });
  return store;
}

}  // namespace

TEST_CASE("a patient token signed with the key verifies to its claims until it expires", "[unit]") {
  const auto k = key(key_a);
  const auto token = k.sign(claims());
  CHECK(api::patient_token_key::looks_like(token));
  CHECK(api::parse_bearer("Bearer " + token) == std::optional<std::string_view>(token));
  auto c = k.verify(token, t0);
  REQUIRE(c);
  CHECK(c->enterprise_id == "YL000000042");
  CHECK(c->gateway == "patient-app");
  CHECK(c->expires_at == t0 + 900s);
  CHECK(c->nonce.size() >= 20);  // 16 random bytes
  CHECK(k.verify(token, t0 + 899s));
  CHECK(k.verify(token, t0 + 900s).error() == patient_token_error::expired);
  CHECK(k.verify(token, t0 + 24h).error() == patient_token_error::expired);
  // Two tokens for one person differ (the nonce).
  CHECK(k.sign(claims()) != token);
}

TEST_CASE("a tampered patient token is refused before its payload is believed", "[unit]") {
  const auto k = key(key_a);
  const auto token = k.sign(claims());
  const auto dot = token.rfind('.');
  for (std::size_t at = 5; at < token.size(); ++at) {
    if (at == dot) continue;
    INFO("position " << at);
    const auto bad = k.verify(flip(token, at), t0);
    REQUIRE(!bad);
    CHECK((bad.error() == patient_token_error::bad_signature || bad.error() == patient_token_error::malformed));
  }
  SECTION("a payload naming another person with the old MAC") {
    const auto payload = "YL000000043|" + std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                                             (t0 + 900s).time_since_epoch()).count()) +
                         "|patient-app|nonce";
    const auto forged = "ylp1." + base64url(payload) + token.substr(dot);
    CHECK(k.verify(forged, t0).error() == patient_token_error::bad_signature);
  }
  SECTION("a later expiry with the old MAC") {
    const auto payload = "YL000000042|9999999999|patient-app|nonce";
    CHECK(k.verify("ylp1." + base64url(payload) + token.substr(dot), t0).error() == patient_token_error::bad_signature);
  }
  SECTION("malformed shapes") {
    const std::vector<std::string> shapes{"ylp1.", "ylp1..", "ylp1.abc", "ylp1.abc.def", "ylp1." + token.substr(5, dot - 5),
                                          token + "A", token.substr(0, token.size() - 1),
                                          std::string("ylp2") + token.substr(4)};
    for (const auto& s : shapes) {
      INFO(s);
      CHECK(!k.verify(s, t0));
    }
  }
}

TEST_CASE("a patient token signed with another key is refused", "[unit]") {
  const auto token = key(key_a).sign(claims());
  CHECK(key(key_b).verify(token, t0).error() == patient_token_error::bad_signature);
}

TEST_CASE("a patient-token key shorter than 32 bytes is refused without echoing it", "[unit]") {
  auto k = api::patient_token_key::from_secret("short-secret-value");
  REQUIRE(!k);
  CHECK(k.error().code == errc::invalid_argument);
  CHECK(k.error().message.find("short-secret-value") == std::string::npos);
  CHECK(k.error().message.find("18 bytes") != std::string::npos);
}

TEST_CASE("the credential store accepts patient tokens of a configured gateway as role patient", "[unit]") {
  auto k = std::make_shared<const api::patient_token_key>(key(key_a));
  const auto store = store_with_gateway(k, t0 + 10s);

  SECTION("a token of the gateway is a patient principal with the enterprise id") {
    auto p = store.authenticate(k->sign(claims()));
    REQUIRE(p);
    CHECK(p->id == principal_id("YL000000042"));
    CHECK(p->role == api::role::patient);
    CHECK(p->hospital.value().empty());
    CHECK(p->via == principal_id("patient-app"));
  }
  SECTION("static tokens still work") {
    auto p = store.authenticate("his-token");
    REQUIRE(p);
    CHECK(p->role == api::role::hospital_system);
  }
  SECTION("a token naming a gateway that is not configured is refused") {
    CHECK(!store.authenticate(k->sign(claims("other-app"))));
    CHECK(store.authenticate_patient(k->sign(claims("other-app"))).error() == patient_token_error::unknown_gateway);
  }
  SECTION("a token naming a principal that is not a gateway is refused") {
    CHECK(store.authenticate_patient(k->sign(claims("dc-chc-his"))).error() == patient_token_error::unknown_gateway);
  }
  SECTION("an expired token is refused") {
    auto c = claims();
    c.expires_at = t0 + 10s;
    CHECK(store.authenticate_patient(k->sign(c)).error() == patient_token_error::expired);
    CHECK(!store.authenticate(k->sign(c)));
  }
  SECTION("a token under another key is refused") {
    CHECK(!store.authenticate(key(key_b).sign(claims())));
  }
  SECTION("without a patient key every patient token is refused") {
    api::credential_store plain;
    REQUIRE(plain.add({.id = principal_id("patient-app"), .role = api::role::patient_gateway, .hospital = hospital_id("")},
                      api::hash_token("gateway-token")));
    CHECK(!plain.authenticate(k->sign(claims())));
  }
}

TEST_CASE("the narrow roles are patient and patient_gateway, and their names round-trip", "[unit]") {
  for (auto r : {api::role::hospital_system, api::role::clinic_user, api::role::operator_, api::role::patient_gateway,
                 api::role::patient}) {
    auto parsed = api::parse_role(api::to_string(r));
    REQUIRE(parsed);
    CHECK(*parsed == r);
  }
  CHECK(api::narrow_role(api::role::patient));
  CHECK(api::narrow_role(api::role::patient_gateway));
  CHECK(!api::narrow_role(api::role::operator_));
  CHECK(!api::narrow_role(api::role::clinic_user));
  CHECK(!api::narrow_role(api::role::hospital_system));
}
