#include <catch2/catch.hpp>

#include "engine/core/error.h"

using namespace yilian;

TEST_CASE("errors say what went wrong and where", "[unit]") {
  const auto e = error::make(errc::parse_error, "field is not a number", "PID-7");
  CHECK(e.describe() == "parse_error: field is not a number (at PID-7)");
  CHECK_FALSE(e.retriable);
}

TEST_CASE("only transient failures are retriable by default", "[unit]") {
  CHECK(default_retriable(errc::unavailable));
  CHECK(default_retriable(errc::timeout));
  CHECK(default_retriable(errc::overloaded));
  CHECK_FALSE(default_retriable(errc::validation_failed));
  CHECK_FALSE(default_retriable(errc::conflict));
  const result<int> r = fail(errc::unavailable, "broker down");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().retriable);
}
