#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <limits>
#include <string>

#include "engine/api/json_out.h"

using namespace yilian::api;

namespace {

std::string as_json(std::string_view v) {
  std::string out;
  append_json_string(out, v);
  return out;
}

// What nlohmann writes for the same string (the rest of the API's answers).
std::string nlohmann_dump(std::string_view v) {
  return nlohmann::json(std::string(v)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

TEST_CASE("json_out strings are written as nlohmann writes them", "[unit]") {
  const std::string control = std::string("a\0b", 3) + "\x01\x1f";
  for (const std::string& v : {std::string(), std::string("plain"), std::string("quote \" and \\ backslash"),
                              std::string("\b\f\n\r\t"), control, std::string("\x7f del"),
                              std::string("张三 Zhāng 𠀋 (4 bytes)"), std::string("/ not escaped")}) {
    CAPTURE(v);
    CHECK(as_json(v) == nlohmann_dump(v));
    CHECK(nlohmann::json::parse(as_json(v)).get<std::string>() == v);
  }
}

TEST_CASE("json_out replaces invalid UTF-8 with U+FFFD and stays valid JSON", "[unit]") {
  struct row {
    std::string in;
    std::string out;
  };
  const std::string r = "\xEF\xBF\xBD";
  for (const auto& [in, out] : {row{"a\xFF" "b", "a" + r + "b"},           // never valid
                                row{"\xC0\x80", r + r},                    // overlong NUL
                                row{"x\xE4\xB8", "x" + r + r},             // cut short
                                row{"\xED\xA0\x80", r + r + r},            // a surrogate
                                row{"\xF4\x90\x80\x80", r + r + r + r},    // past U+10FFFF
                                row{"\x80 lone", r + " lone"},             // a continuation byte alone
                                row{"ok \xE4\xB8\xAD", "ok \xE4\xB8\xAD"}}) {
    CAPTURE(in);
    CHECK(as_json(in) == "\"" + out + "\"");
    CHECK(nlohmann::json::parse(as_json(in)).get<std::string>() == out);
  }
}

TEST_CASE("json_out puts commas between members and elements at every depth", "[unit]") {
  std::string text;
  json_out j(text);
  j.begin_object();
  j.field("id", "b1").field("version", std::uint64_t{3}).field("ok", true).key("none").null();
  j.field_if("empty", "").field_if("set", "x");
  j.key("list").begin_array();
  j.begin_object().field("n", std::int64_t{1}).end_object();
  j.begin_object().end_object();
  j.begin_array().end_array();
  j.value("s").value(std::int32_t{-2});
  j.end_array();
  j.key("nested").begin_object().key("deeper").begin_object().field("k", "v").end_object().end_object();
  j.end_object();
  CHECK(text ==
        R"({"id":"b1","version":3,"ok":true,"none":null,"set":"x","list":[{"n":1},{},[],"s",-2],)"
        R"("nested":{"deeper":{"k":"v"}}})");
  const auto parsed = nlohmann::json::parse(text);
  CHECK(parsed["list"].size() == 5);
  CHECK_FALSE(parsed.contains("empty"));
}

TEST_CASE("json_out writes the whole range of integers", "[unit]") {
  std::string text;
  json_out j(text);
  j.begin_array()
      .value(std::numeric_limits<std::int64_t>::min())
      .value(std::numeric_limits<std::int64_t>::max())
      .value(std::numeric_limits<std::uint64_t>::max())
      .value(std::uint32_t{0})
      .end_array();
  CHECK(text == "[-9223372036854775808,9223372036854775807,18446744073709551615,0]");
  const auto parsed = nlohmann::json::parse(text);
  CHECK(parsed[2].get<std::uint64_t>() == std::numeric_limits<std::uint64_t>::max());
}
