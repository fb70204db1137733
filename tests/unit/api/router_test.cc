#include <catch2/catch.hpp>

#include <stdexcept>

#include "engine/api/router.h"

using namespace yilian;
using namespace yilian::api;

namespace {

response named(std::string name) { return response::text(std::move(name)); }

router fhir_router() {
  router r;
  r.add(http::verb::get, "/fhir/r4/Patient/{id}", [](request&) { return named("read"); });
  r.add(http::verb::put, "/fhir/r4/Patient/{id}", [](request&) { return named("update"); });
  r.add(http::verb::post, "/fhir/r4/Patient/_search", [](request&) { return named("search"); });
  r.add(http::verb::get, "/fhir/r4/Patient/{id}/_history/{vid}", [](request&) { return named("vread"); });
  r.add(http::verb::get, "/fhir/r4/{type}/{id}", [](request&) { return named("generic"); });
  r.add(http::verb::get, "/", [](request&) { return named("root"); });
  return r;
}

std::string run(const router::match_result& m) {
  request req;
  auto res = m.found->handle.sync()(req);
  return res ? res->body : "error";
}

}  // namespace

TEST_CASE("paths match patterns with parameters, literals beating parameters", "[unit]") {
  const auto r = fhir_router();
  struct row {
    http::verb method;
    std::string path;
    std::string handler;  // empty: not found
    params path_params;
  };
  const std::vector<row> rows{
      {http::verb::get, "/fhir/r4/Patient/p1", "read", {{"id", "p1"}}},
      {http::verb::put, "/fhir/r4/Patient/p1", "update", {{"id", "p1"}}},
      {http::verb::post, "/fhir/r4/Patient/_search", "search", {}},
      {http::verb::get, "/fhir/r4/Patient/p1/_history/2", "vread", {{"id", "p1"}, {"vid", "2"}}},
      {http::verb::get, "/fhir/r4/Slot/s9", "generic", {{"type", "Slot"}, {"id", "s9"}}},
      {http::verb::get, "/fhir/r4/Patient/a%2Fb%20c", "read", {{"id", "a/b c"}}},
      {http::verb::get, "/fhir/r4/Patient/%E5%8C%BB", "read", {{"id", "医"}}},
      {http::verb::get, "/", "root", {}},
      // HEAD is served by GET.
      {http::verb::head, "/fhir/r4/Patient/p1", "read", {{"id", "p1"}}},
  };
  for (const auto& row : rows) {
    INFO(row.path);
    const auto m = r.match(row.method, row.path);
    REQUIRE(m.has_value());
    REQUIRE(m->found != nullptr);
    CHECK(run(*m) == row.handler);
    CHECK(m->path_params == row.path_params);
  }
}

TEST_CASE("a literal route does not hide a less specific route that has the method", "[unit]") {
  // GET /fhir/r4/Patient/_search: the literal pattern only has POST, so the
  // parameter pattern's GET answers (reading a patient called "_search").
  const auto r = fhir_router();
  const auto m = r.match(http::verb::get, "/fhir/r4/Patient/_search");
  REQUIRE(m.has_value());
  REQUIRE(m->found != nullptr);
  CHECK(run(*m) == "read");
}

TEST_CASE("unknown paths are 404 and known paths with another method are 405 with Allow", "[unit]") {
  const auto r = fhir_router();
  SECTION("unknown") {
    for (const std::string p : {"/nope", "/fhir/r4", "/fhir/r4/Patient", "/fhir/r4/Patient/p1/", "/FHIR/r4/Patient/p1"}) {
      INFO(p);
      const auto m = r.match(http::verb::get, p);
      REQUIRE(m.has_value());
      CHECK(m->found == nullptr);
      CHECK(m->allowed.empty());
    }
  }
  SECTION("wrong method") {
    const auto m = r.match(http::verb::delete_, "/fhir/r4/Patient/p1");
    REQUIRE(m.has_value());
    CHECK(m->found == nullptr);
    CHECK(allow_header(m->allowed) == "GET, HEAD, PUT");
    const auto s = r.match(http::verb::get, "/fhir/r4/Patient/p1/_history/x");
    REQUIRE(s.has_value());
    CHECK(s->found != nullptr);
  }
}

TEST_CASE("bad percent-escapes in the path are rejected", "[unit]") {
  const auto r = fhir_router();
  for (const std::string p : {"/fhir/r4/Patient/%", "/fhir/r4/Patient/%4", "/fhir/r4/Patient/%zz", "/fhir/r4/Patient/a%00"}) {
    INFO(p);
    const auto m = r.match(http::verb::get, p);
    REQUIRE_FALSE(m.has_value());
    CHECK(m.error().code == errc::invalid_argument);
  }
  CHECK_FALSE(r.match(http::verb::get, "relative").has_value());
}

TEST_CASE("malformed or duplicate patterns are refused at registration", "[unit]") {
  router r;
  const auto h = [](request&) { return response::text("x"); };
  CHECK_THROWS_AS(r.add(http::verb::get, "no-slash", h), std::invalid_argument);
  CHECK_THROWS_AS(r.add(http::verb::get, "/a/{}", h), std::invalid_argument);
  CHECK_THROWS_AS(r.add(http::verb::get, "/a/{x", h), std::invalid_argument);
  CHECK_THROWS_AS(r.add(http::verb::get, "/a/x{y}", h), std::invalid_argument);
  CHECK_THROWS_AS(r.add(http::verb::get, "/a/{x}/{x}", h), std::invalid_argument);
  r.add(http::verb::get, "/a/{x}", h);
  CHECK_THROWS_AS(r.add(http::verb::get, "/a/{x}", h), std::logic_error);
  CHECK_NOTHROW(r.add(http::verb::post, "/a/{x}", h));
}

TEST_CASE("query strings are decoded in order with repeats kept", "[unit]") {
  const auto q = parse_query("a=1&b=x+y%2Bz&&a=2&flag&name=%E5%8C%BB%E8%81%94&empty=");
  REQUIRE(q.has_value());
  CHECK(*q == params{{"a", "1"}, {"b", "x y+z"}, {"a", "2"}, {"flag", ""}, {"name", "医联"}, {"empty", ""}});
  CHECK_FALSE(parse_query("a=%G1").has_value());
  CHECK_FALSE(parse_query("a=%00").has_value());

  request req;
  req.query = *q;
  CHECK(req.query_param("a") == "1");
  CHECK(req.query_params("a") == std::vector<std::string_view>{"1", "2"});
  CHECK_FALSE(req.query_param("missing").has_value());
}

TEST_CASE("handlers come in a synchronous and an awaitable form", "[unit]") {
  const handler sync_plain = [](request&) { return response::text("a"); };
  const handler sync_result = [](request&) -> result<response> { return fail(errc::not_found, "x"); };
  const handler async_plain = [](request&) -> boost::asio::awaitable<response> { co_return response::text("b"); };
  const handler async_result = [](request&) -> boost::asio::awaitable<result<response>> {
    co_return response::text("c");
  };
  CHECK_FALSE(sync_plain.is_async());
  CHECK_FALSE(sync_result.is_async());
  CHECK(async_plain.is_async());
  CHECK(async_result.is_async());
  request req;
  CHECK(sync_result.sync()(req).error().code == errc::not_found);
}
