#include "engine/core/log.h"

#include <spdlog/details/log_msg.h>
#include <spdlog/logger.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/dist_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <charconv>
#include <cmath>
#include <ctime>
#include <map>
#include <mutex>
#include <vector>

namespace yilian::log {

namespace {

spdlog::level::level_enum to_spdlog(level l) noexcept {
  switch (l) {
    case level::trace: return spdlog::level::trace;
    case level::debug: return spdlog::level::debug;
    case level::info: return spdlog::level::info;
    case level::warn: return spdlog::level::warn;
    case level::error: return spdlog::level::err;
    case level::critical: return spdlog::level::critical;
    case level::off: return spdlog::level::off;
  }
  return spdlog::level::info;
}

// Passes each formatted payload (our JSON line) to a callback.
class capture_sink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit capture_sink(std::function<void(std::string_view)> fn) : fn_(std::move(fn)) {}

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    fn_(std::string_view(msg.payload.data(), msg.payload.size()));
  }
  void flush_() override {}

 private:
  std::function<void(std::string_view)> fn_;
};

void use_raw_lines(const spdlog::sink_ptr& s) {
  // The payload already is the whole JSON line.
  s->set_formatter(std::make_unique<spdlog::pattern_formatter>("%v", spdlog::pattern_time_type::utc, "\n"));
}

struct state {
  std::mutex mutex;
  std::shared_ptr<spdlog::sinks::dist_sink_mt> sinks;
  level default_level = level::info;
  std::map<std::string, std::shared_ptr<spdlog::logger>, std::less<>> loggers;

  state() {
    auto err = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    use_raw_lines(err);
    sinks = std::make_shared<spdlog::sinks::dist_sink_mt>(std::vector<spdlog::sink_ptr>{err});
  }

  std::shared_ptr<spdlog::logger> find_or_create(std::string_view component) {
    if (auto it = loggers.find(component); it != loggers.end()) return it->second;
    auto lg = std::make_shared<spdlog::logger>(std::string(component), sinks);
    lg->set_level(to_spdlog(default_level));
    lg->flush_on(spdlog::level::warn);
    loggers.emplace(std::string(component), lg);
    return lg;
  }
};

state& global() {
  // Leaked on purpose: loggers may be used from static destructors and
  // detached threads during shutdown.
  static state* s = new state();
  return *s;
}

void append_hex4(std::string& out, unsigned v) {
  static constexpr char digits[] = "0123456789abcdef";
  out += "\\u";
  out += digits[(v >> 12) & 0xF];
  out += digits[(v >> 8) & 0xF];
  out += digits[(v >> 4) & 0xF];
  out += digits[v & 0xF];
}

// Length of the valid UTF-8 sequence starting at s[i], or 0 if invalid.
std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  auto cont = [&](std::size_t k) {
    return i + k < s.size() && (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
  };
  if (b0 >= 0xC2 && b0 <= 0xDF) return cont(1) ? 2 : 0;
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    const auto b1 = static_cast<unsigned char>(s[i + 1]);
    if (b0 == 0xE0 && b1 < 0xA0) return 0;   // overlong
    if (b0 == 0xED && b1 >= 0xA0) return 0;  // UTF-16 surrogates
    return 3;
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    const auto b1 = static_cast<unsigned char>(s[i + 1]);
    if (b0 == 0xF0 && b1 < 0x90) return 0;  // overlong
    if (b0 == 0xF4 && b1 >= 0x90) return 0;  // > U+10FFFF
    return 4;
  }
  return 0;
}

void append_double(std::string& out, double v) {
  if (!std::isfinite(v)) {
    out += "null";
    return;
  }
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void append_field(std::string& out, const field& f) {
  out += ',';
  if (f.key == "ts" || f.key == "level" || f.key == "component" || f.key == "msg") {
    std::string k = "_";
    k += f.key;
    append_json_string(out, k);
  } else {
    append_json_string(out, f.key);
  }
  out += ':';
  std::visit(
      [&out](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::nullptr_t>) {
          out += "null";
        } else if constexpr (std::is_same_v<T, bool>) {
          out += v ? "true" : "false";
        } else if constexpr (std::is_same_v<T, std::int64_t> || std::is_same_v<T, std::uint64_t>) {
          char buf[32];
          const auto r = std::to_chars(buf, buf + sizeof buf, v);
          out.append(buf, r.ptr);
        } else if constexpr (std::is_same_v<T, double>) {
          append_double(out, v);
        } else {
          append_json_string(out, v);
        }
      },
      f.value);
}

}  // namespace

std::string_view to_string(level l) noexcept {
  switch (l) {
    case level::trace: return "trace";
    case level::debug: return "debug";
    case level::info: return "info";
    case level::warn: return "warn";
    case level::error: return "error";
    case level::critical: return "critical";
    case level::off: return "off";
  }
  return "info";
}

result<level> parse_level(std::string_view s) {
  if (s == "trace") return level::trace;
  if (s == "debug") return level::debug;
  if (s == "info") return level::info;
  if (s == "warn" || s == "warning") return level::warn;
  if (s == "error") return level::error;
  if (s == "critical") return level::critical;
  if (s == "off") return level::off;
  return fail(errc::invalid_argument, "unknown log level '" + std::string(s) + "'",
              "expected trace|debug|info|warn|error|critical|off");
}

std::string redact(std::string_view value) {
  if (value.empty()) return {};
  return "[redacted len=" + std::to_string(value.size()) + "]";
}

void append_json_string(std::string& out, std::string_view s) {
  out.reserve(out.size() + s.size() + 2);
  out += '"';
  std::size_t run = 0;  // start of the bytes not yet copied (they need no escaping)
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
      ++i;
      continue;
    }
    if (c >= 0x80) {
      if (const auto n = utf8_sequence_length(s, i); n > 0) {
        i += n;
        continue;
      }
    }
    out.append(s.substr(run, i - run));
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          append_hex4(out, c);
        } else {
          out += "\xEF\xBF\xBD";  // U+FFFD for each byte that is not valid UTF-8
        }
    }
    run = ++i;
  }
  out.append(s.substr(run));
  out += '"';
}

std::string format_timestamp(std::chrono::system_clock::time_point ts) {
  const auto ms = std::chrono::time_point_cast<std::chrono::milliseconds>(ts);
  auto secs = std::chrono::system_clock::to_time_t(std::chrono::time_point_cast<std::chrono::seconds>(ms));
  auto millis = (ms.time_since_epoch() % std::chrono::seconds(1)).count();
  if (millis < 0) {  // before the epoch
    millis += 1000;
    secs -= 1;
  }
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  const auto n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::string out(buf, n);
  char frac[8];
  std::snprintf(frac, sizeof frac, ".%03dZ", static_cast<int>(millis));
  out += frac;
  return out;
}

std::string format_line(std::chrono::system_clock::time_point ts, level l, std::string_view component,
                        std::string_view msg, std::string_view context, std::span<const field> fields) {
  std::string out;
  out.reserve(96 + msg.size() + context.size() + fields.size() * 24);
  out += "{\"ts\":\"";
  out += format_timestamp(ts);
  out += "\",\"level\":\"";
  out += to_string(l);
  out += "\",\"component\":";
  append_json_string(out, component);
  out += ",\"msg\":";
  append_json_string(out, msg);
  out += context;
  for (const auto& f : fields) append_field(out, f);
  out += '}';
  return out;
}

void logger::write(level l, std::string_view msg, std::span<const field> fields) const {
  if (!enabled(l)) return;
  const auto line = format_line(std::chrono::system_clock::now(), l, component_, msg, context_, fields);
  impl_->log(to_spdlog(l), spdlog::string_view_t(line.data(), line.size()));
}

bool logger::enabled(level l) const noexcept {
  return impl_ != nullptr && l != level::off && impl_->should_log(to_spdlog(l));
}

logger logger::with(std::initializer_list<field> context) const {
  logger out = *this;
  for (const auto& f : context) append_field(out.context_, f);
  return out;
}

logger get(std::string_view component) {
  auto& g = global();
  std::lock_guard lock(g.mutex);
  logger out;
  out.impl_ = g.find_or_create(component);
  out.component_ = std::string(component);
  return out;
}

result<void> configure(const options& opts) {
  std::vector<spdlog::sink_ptr> sinks;
  if (opts.to_stderr) sinks.push_back(std::make_shared<spdlog::sinks::stderr_sink_mt>());
  if (!opts.file.empty()) {
    try {
      sinks.push_back(std::make_shared<spdlog::sinks::basic_file_sink_mt>(opts.file, /*truncate=*/false));
    } catch (const std::exception& e) {
      return fail(errc::io_error, std::string("cannot open log file: ") + e.what(), opts.file);
    }
  }
  if (opts.capture) sinks.push_back(std::make_shared<capture_sink>(opts.capture));
  for (const auto& s : sinks) use_raw_lines(s);

  auto& g = global();
  std::lock_guard lock(g.mutex);
  g.sinks->set_sinks(std::move(sinks));
  g.default_level = opts.min_level;
  for (auto& [name, lg] : g.loggers) lg->set_level(to_spdlog(opts.min_level));
  return {};
}

void set_level(level l) {
  auto& g = global();
  std::lock_guard lock(g.mutex);
  g.default_level = l;
  for (auto& [name, lg] : g.loggers) lg->set_level(to_spdlog(l));
}

void set_level(std::string_view component, level l) {
  auto& g = global();
  std::lock_guard lock(g.mutex);
  g.find_or_create(component)->set_level(to_spdlog(l));
}

void flush() {
  auto& g = global();
  std::lock_guard lock(g.mutex);
  g.sinks->flush();
}

}  // namespace yilian::log
