// yilian::log — structured JSON-lines logging, one logger per component, on
// top of spdlog.
//
//   static const auto lg = yilian::log::get("bus");
//   lg.info("published", {{"topic", topic}, {"partition", p}, {"offset", off}});
//   auto ctx = lg.with({{"hospital", hospital}, {"control_id", msh10}});  // bound context
//   ctx.warn("ack timeout", {{"attempt", 3}});
//
// Each call writes one line:
//   {"ts":"2024-05-01T08:30:00.123Z","level":"warn","component":"bus","msg":"ack timeout",
//    "hospital":"h1","control_id":"MSG0001","attempt":3}
// ts is UTC with milliseconds; context fields come before per-call fields; a
// field named ts/level/component/msg is written as "_ts", "_level", ...
// Strings are escaped per RFC 8259; bytes that are not valid UTF-8 become
// U+FFFD so that every line is valid JSON. NaN/Inf doubles are written as null.
//
// PERSONAL DATA: logs carry ids only (hospital id, MRN-free event ids, control
// ids, correlation/request ids, principal ids). Never pass a patient's name,
// resident ID number, insurance or health card number, phone number or address,
// nor message bodies that may contain them. When a value *might* contain
// personal data (an unparsed field, a raw segment), pass redact(value) or use
// log::redacted(key, value) instead.
//
// Thread-safety: every function may be called from any thread. A `logger` is a
// cheap copyable handle; keep one per component (or per session with context)
// rather than calling get() per line. Lines go to stderr by default;
// configure() switches to a file and/or a capture callback (tests) and sets the
// level. Configuration changes apply to loggers that already exist.
#pragma once

#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <variant>

#include "engine/core/error.h"
#include "engine/core/named_type.h"

namespace spdlog {
class logger;
}

namespace yilian::log {

enum class level : int { trace, debug, info, warn, error, critical, off };

std::string_view to_string(level l) noexcept;
// "trace", "debug", "info", "warn"/"warning", "error", "critical", "off".
result<level> parse_level(std::string_view s);

// A typed key/value attached to one line. Lvalue strings and ids are held as
// views, valid for the duration of the logging call (which is all an
// initializer_list of fields needs); temporaries (std::string&&, id&&) are
// owned. Do not keep fields beyond the statement that built them from lvalues
// that may die first.
struct field {
  using value_type = std::variant<std::nullptr_t, bool, std::int64_t, std::uint64_t, double, std::string_view,
                                  std::string>;

  field(std::string_view k, std::nullptr_t) : key(k), value(nullptr) {}
  field(std::string_view k, bool v) : key(k), value(v) {}
  field(std::string_view k, const char* v) : key(k), value(std::string_view(v)) {}
  field(std::string_view k, std::string_view v) : key(k), value(v) {}
  field(std::string_view k, const std::string& v) : key(k), value(std::string_view(v)) {}
  field(std::string_view k, std::string&& v) : key(k), value(std::move(v)) {}
  template <std::signed_integral T>
    requires(!std::same_as<T, bool> && !std::same_as<T, char>)
  field(std::string_view k, T v) : key(k), value(static_cast<std::int64_t>(v)) {}
  template <std::unsigned_integral T>
    requires(!std::same_as<T, bool>)
  field(std::string_view k, T v) : key(k), value(static_cast<std::uint64_t>(v)) {}
  template <std::floating_point T>
  field(std::string_view k, T v) : key(k), value(static_cast<double>(v)) {}
  // Strong ids log their value (a temporary id is copied, a named one viewed).
  template <class Tag>
  field(std::string_view k, const named_type<std::string, Tag>& v) : key(k), value(std::string_view(v.value())) {}
  template <class Tag>
  field(std::string_view k, named_type<std::string, Tag>&& v) : key(k), value(std::string(v.value())) {}
  // Durations log as milliseconds (a double).
  template <class Rep, class Period>
  field(std::string_view k, std::chrono::duration<Rep, Period> d)
      : key(k), value(std::chrono::duration<double, std::milli>(d).count()) {}

  std::string_view key;
  value_type value;
};

// What to write instead of a value that may contain personal data:
// "[redacted len=N]" (N = bytes; the empty string stays empty). No hash: a
// phone number's hash is trivially reversed by enumeration.
std::string redact(std::string_view value);
inline field redacted(std::string_view key, std::string_view value) { return field(key, redact(value)); }

class logger {
 public:
  // A handle that logs nowhere until assigned from get().
  logger() = default;

  void trace(std::string_view msg, std::initializer_list<field> fields = {}) const { write(level::trace, msg, fields); }
  void debug(std::string_view msg, std::initializer_list<field> fields = {}) const { write(level::debug, msg, fields); }
  void info(std::string_view msg, std::initializer_list<field> fields = {}) const { write(level::info, msg, fields); }
  void warn(std::string_view msg, std::initializer_list<field> fields = {}) const { write(level::warn, msg, fields); }
  void error(std::string_view msg, std::initializer_list<field> fields = {}) const { write(level::error, msg, fields); }
  void critical(std::string_view msg, std::initializer_list<field> fields = {}) const {
    write(level::critical, msg, fields);
  }
  void write(level l, std::string_view msg, std::span<const field> fields) const;
  void write(level l, std::string_view msg, std::initializer_list<field> fields) const {
    write(l, msg, std::span<const field>(fields.begin(), fields.size()));
  }

  // Cheap check before building expensive fields.
  bool enabled(level l) const noexcept;

  // A logger for the same component that adds these fields to every line
  // (rendered once, here).
  logger with(std::initializer_list<field> context) const;

  const std::string& component() const noexcept { return component_; }

 private:
  friend logger get(std::string_view component);
  std::shared_ptr<spdlog::logger> impl_;
  std::string component_;
  std::string context_;  // pre-rendered ,"k":v pairs
};

// The logger of a component ("bus", "http", "hl7v2.listener", ...); created on
// first use with the configured level.
logger get(std::string_view component);

struct options {
  level min_level = level::info;
  bool to_stderr = true;
  std::string file;  // append JSON lines here as well when not empty
  // Every line (without the trailing newline) is also passed here; for tests.
  std::function<void(std::string_view line)> capture;
};

// Replaces the sinks and the level of every logger (per-component levels set
// with set_level(component, ...) are reset too). Missing parent directories of
// `file` are created; fails with io_error when the file still cannot be opened
// (the previous configuration stays). A capture callback runs under the sink's
// lock: it must not log.
result<void> configure(const options& opts);
void set_level(level l);                              // every component
void set_level(std::string_view component, level l);  // one component (created if needed)
void flush();

// Pure formatting of one line (no trailing newline); exposed for tests.
std::string format_line(std::chrono::system_clock::time_point ts, level l, std::string_view component,
                        std::string_view msg, std::string_view context, std::span<const field> fields);
// Appends s as a JSON string literal (with quotes).
void append_json_string(std::string& out, std::string_view s);
// "2024-05-01T08:30:00.123Z"
std::string format_timestamp(std::chrono::system_clock::time_point ts);

}  // namespace yilian::log
