#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include "engine/core/log.h"

using namespace yilian;
using namespace std::chrono;

namespace {

const auto fixed_ts = sys_days{year{2024} / May / 1} + hours{8} + minutes{30} + seconds{5} + milliseconds{123};

// Captures log lines for the duration of a test, then restores the default.
struct capture {
  std::mutex mutex;
  std::vector<std::string> lines;

  explicit capture(log::level l = log::level::info) {
    REQUIRE(log::configure({.min_level = l,
                            .to_stderr = false,
                            .file = {},
                            .capture = [this](std::string_view line) {
                              std::lock_guard lock(mutex);
                              lines.emplace_back(line);
                            }}));
  }
  ~capture() { (void)log::configure({}); }
  std::vector<std::string> take() {
    std::lock_guard lock(mutex);
    return std::exchange(lines, {});
  }
};

std::string js(std::string_view s) {
  std::string out;
  log::append_json_string(out, s);
  return out;
}

}  // namespace

TEST_CASE("a log line is one JSON object with ts, level, component, msg and typed fields", "[unit]") {
  const std::vector<log::field> fields{
      {"hospital", hospital_id("h-001")},
      {"attempt", 3},
      {"offset", std::uint64_t{18446744073709551615ULL}},
      {"lag", -2L},
      {"ratio", 0.25},
      {"ok", true},
      {"nothing", nullptr},
      {"elapsed", milliseconds(1500)},
      {"msg", "a field may not overwrite msg"},
  };
  const auto line = log::format_line(fixed_ts, log::level::warn, "bus", "ack \"late\"", ",\"ctx\":\"c1\"", fields);
  CHECK(line ==
        "{\"ts\":\"2024-05-01T08:30:05.123Z\",\"level\":\"warn\",\"component\":\"bus\",\"msg\":\"ack \\\"late\\\"\","
        "\"ctx\":\"c1\",\"hospital\":\"h-001\",\"attempt\":3,\"offset\":18446744073709551615,\"lag\":-2,"
        "\"ratio\":0.25,\"ok\":true,\"nothing\":null,\"elapsed\":1500,\"_msg\":\"a field may not overwrite msg\"}");
  const auto parsed = nlohmann::json::parse(line);
  CHECK(parsed["offset"].get<std::uint64_t>() == 18446744073709551615ULL);
  CHECK(parsed["_msg"] == "a field may not overwrite msg");
}

TEST_CASE("JSON string escaping follows RFC 8259 and keeps every line valid UTF-8", "[unit]") {
  struct row {
    std::string in;
    std::string out;
  };
  const std::vector<row> rows{
      {"plain", "\"plain\""},
      {"quote \" backslash \\ slash /", "\"quote \\\" backslash \\\\ slash /\""},
      {"\n\r\t\b\f", "\"\\n\\r\\t\\b\\f\""},
      {std::string("nul\0byte", 8), "\"nul\\u0000byte\""},
      {"\x01\x1f\x7f", "\"\\u0001\\u001f\x7f\""},
      {"医联 Patient", "\"医联 Patient\""},
      {"emoji \xF0\x9F\x98\x80", "\"emoji \xF0\x9F\x98\x80\""},
      {"bad \xFF byte", "\"bad \xEF\xBF\xBD byte\""},
      {"cut \xE5\x8C", "\"cut \xEF\xBF\xBD\xEF\xBF\xBD\""},                                 // truncated 3-byte sequence
      {"overlong \xC0\xAF", "\"overlong \xEF\xBF\xBD\xEF\xBF\xBD\""},                        // '/' encoded in 2 bytes
      {"surrogate \xED\xA0\x80", "\"surrogate \xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\""},      // U+D800
      {"too big \xF4\x90\x80\x80", "\"too big \xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\""},  // > U+10FFFF
      {"GBK \xC1\xAA", "\"GBK \xEF\xBF\xBD\xEF\xBF\xBD\""},  // 联 in GBK: C1 never starts UTF-8
  };
  for (const auto& r : rows) {
    INFO(r.out);
    const auto escaped = js(r.in);
    CHECK(escaped == r.out);
    // Whatever the input, a strict JSON parser accepts the result.
    const auto parsed = nlohmann::json::parse(escaped);
    CHECK(parsed.is_string());
  }
  CHECK(nlohmann::json::parse(js("医联 \"x\"\n\x01")).get<std::string>() == "医联 \"x\"\n\x01");
}

TEST_CASE("non-finite doubles are written as null", "[unit]") {
  const std::vector<log::field> fields{{"x", std::nan("")}, {"y", 1e300 * 1e300}};
  const auto line = log::format_line(fixed_ts, log::level::info, "c", "m", {}, fields);
  const auto parsed = nlohmann::json::parse(line);
  CHECK(parsed["x"].is_null());
  CHECK(parsed["y"].is_null());
}

TEST_CASE("timestamps are UTC with milliseconds", "[unit]") {
  CHECK(log::format_timestamp(sys_days{year{1970} / January / 1}) == "1970-01-01T00:00:00.000Z");
  CHECK(log::format_timestamp(fixed_ts + microseconds(999)) == "2024-05-01T08:30:05.123Z");
  CHECK(log::format_timestamp(sys_days{year{1969} / December / 31} + hours{23} + minutes{59} + seconds{59} +
                              milliseconds{500}) == "1969-12-31T23:59:59.500Z");
}

TEST_CASE("loggers write through spdlog with their component, level and bound context", "[unit]") {
  capture cap;
  const auto lg = log::get("bus");
  lg.info("published", {{"topic", "yilian.patient.v1"}, {"partition", 3}});
  lg.debug("suppressed at info");
  const auto ctx = lg.with({{"hospital", "h-001"}, {"control_id", "MSG0001"}});
  ctx.error("ack timeout", {{"attempt", 2}});

  const auto lines = cap.take();
  REQUIRE(lines.size() == 2);
  const auto first = nlohmann::json::parse(lines[0]);
  CHECK(first["level"] == "info");
  CHECK(first["component"] == "bus");
  CHECK(first["msg"] == "published");
  CHECK(first["topic"] == "yilian.patient.v1");
  CHECK(first["partition"] == 3);
  CHECK(first["ts"].get<std::string>().size() == 24);
  const auto second = nlohmann::json::parse(lines[1]);
  CHECK(second["level"] == "error");
  CHECK(second["hospital"] == "h-001");
  CHECK(second["control_id"] == "MSG0001");
  CHECK(second["attempt"] == 2);
  // Context fields come before per-call fields.
  CHECK(lines[1].find("\"control_id\"") < lines[1].find("\"attempt\""));
}

TEST_CASE("levels can be changed globally and per component", "[unit]") {
  capture cap(log::level::warn);
  const auto a = log::get("level.a");
  const auto b = log::get("level.b");
  CHECK_FALSE(a.enabled(log::level::info));
  a.info("dropped");
  log::set_level("level.b", log::level::debug);
  CHECK(b.enabled(log::level::debug));
  b.debug("kept");
  CHECK_FALSE(a.enabled(log::level::debug));
  log::set_level(log::level::off);
  a.critical("dropped too");
  const auto lines = cap.take();
  REQUIRE(lines.size() == 1);
  CHECK(nlohmann::json::parse(lines[0])["msg"] == "kept");
}

TEST_CASE("log levels parse from configuration strings", "[unit]") {
  CHECK(log::parse_level("debug").value() == log::level::debug);
  CHECK(log::parse_level("warning").value() == log::level::warn);
  CHECK(log::parse_level("off").value() == log::level::off);
  const auto bad = log::parse_level("verbose");
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().code == errc::invalid_argument);
}

TEST_CASE("redact() hides values that may carry personal data", "[unit]") {
  CHECK(log::redact("13800138000") == "[redacted len=11]");
  CHECK(log::redact("") == "");
  capture cap;
  log::get("adapter").warn("unparseable PID-5", {log::redacted("value", "张三^李"), {"control_id", "M1"}});
  const auto lines = cap.take();
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].find("张三") == std::string::npos);
  CHECK(nlohmann::json::parse(lines[0])["value"] == "[redacted len=10]");
}

TEST_CASE("lines can also go to a file", "[unit]") {
  const auto path = std::filesystem::temp_directory_path() /
                    ("yilian_log_test_" + std::to_string(::getpid()) + ".jsonl");
  std::filesystem::remove(path);
  REQUIRE(log::configure({.min_level = log::level::info, .to_stderr = false, .file = path.string(), .capture = {}}));
  log::get("file").info("to file", {{"n", 1}});
  log::flush();
  (void)log::configure({});
  std::ifstream in(path);
  std::string line;
  REQUIRE(std::getline(in, line));
  CHECK(nlohmann::json::parse(line)["msg"] == "to file");
  std::filesystem::remove(path);

  // A regular file where a directory should be: spdlog cannot create the log
  // file below it (it would create missing directories).
  std::ofstream(path) << "not a directory";
  const auto bad = log::configure(
      {.min_level = log::level::info, .to_stderr = false, .file = (path / "y.log").string(), .capture = {}});
  std::filesystem::remove(path);
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().code == errc::io_error);
}
