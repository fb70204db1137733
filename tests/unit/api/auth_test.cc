#include <catch2/catch.hpp>

#include <set>

#include "engine/api/auth.h"

using namespace yilian;
using namespace yilian::api;

TEST_CASE("token hashes are lowercase hex SHA-256", "[unit]") {
  // FIPS 180-2 test vectors.
  CHECK(hash_token("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(hash_token("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST_CASE("generated tokens are 43 base64url characters and differ", "[unit]") {
  std::set<std::string> seen;
  for (int i = 0; i < 20; ++i) {
    const auto t = generate_token();
    CHECK(t.size() == 43);
    CHECK(t.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == std::string::npos);
    seen.insert(t);
  }
  CHECK(seen.size() == 20);
}

TEST_CASE("bearer tokens are taken from the Authorization header", "[unit]") {
  CHECK(parse_bearer("Bearer abc.def-_~+/=") == std::optional<std::string_view>("abc.def-_~+/="));
  CHECK(parse_bearer("bearer   tok  ") == std::optional<std::string_view>("tok"));
  CHECK(parse_bearer("BEARER tok") == std::optional<std::string_view>("tok"));
  CHECK_FALSE(parse_bearer("").has_value());
  CHECK_FALSE(parse_bearer("Bearer").has_value());
  CHECK_FALSE(parse_bearer("Bearer ").has_value());
  CHECK_FALSE(parse_bearer("Bearertok").has_value());
  CHECK_FALSE(parse_bearer("Basic dXNlcjpwYXNz").has_value());
  CHECK_FALSE(parse_bearer("Bearer two words").has_value());
}

TEST_CASE("the credential store finds the principal whose token hashes to a stored hash", "[unit]") {
  credential_store store;
  const principal his{.id = principal_id("his-a"), .role = role::hospital_system, .hospital = hospital_id("h-a"),
                      .display_name = "HIS A"};
  const principal clinic{.id = principal_id("clinic-1"), .role = role::clinic_user, .hospital = hospital_id("c-1"),
                         .display_name = "Clinic 1"};
  REQUIRE(store.add(his, hash_token("tok-his")));
  REQUIRE(store.add(clinic, hash_token("tok-clinic")));
  CHECK(store.size() == 2);

  CHECK(store.authenticate("tok-his") == his);
  CHECK(store.authenticate("tok-clinic") == clinic);
  CHECK_FALSE(store.authenticate("tok-hi").has_value());
  CHECK_FALSE(store.authenticate("").has_value());
  CHECK_FALSE(store.authenticate(hash_token("tok-his")).has_value());  // the hash is not the token

  SECTION("bad or duplicate entries are refused") {
    CHECK(store.add(principal{.id = principal_id("x")}, "abc").error().code == errc::invalid_argument);
    CHECK(store.add(principal{.id = principal_id("x")}, std::string(64, 'g')).error().code == errc::invalid_argument);
    CHECK(store.add(his, hash_token("other")).error().code == errc::already_exists);
    CHECK(store.add(principal{.id = principal_id("y")}, hash_token("tok-his")).error().code == errc::already_exists);
    // Uppercase hex is accepted.
    std::string upper = hash_token("tok-op");
    for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    REQUIRE(store.add(principal{.id = principal_id("op"), .role = role::operator_}, upper));
    CHECK(store.authenticate("tok-op")->id == principal_id("op"));
  }
}

TEST_CASE("roles have stable names", "[unit]") {
  for (const auto r : {role::hospital_system, role::clinic_user, role::operator_}) {
    CHECK(parse_role(to_string(r)).value() == r);
  }
  CHECK(to_string(role::operator_) == "operator");
  CHECK(parse_role("admin").error().code == errc::invalid_argument);
}
