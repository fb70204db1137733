#include "engine/api/json_out.h"

#include <charconv>

namespace yilian::api {

namespace {

// Length of the well-formed UTF-8 sequence at `p` (Unicode 15, table 3-7), 0 if none.
std::size_t utf8_sequence(const unsigned char* p, std::size_t left) {
  const unsigned char b = p[0];
  auto cont = [&](std::size_t i, unsigned char lo = 0x80, unsigned char hi = 0xBF) {
    return i < left && p[i] >= lo && p[i] <= hi;
  };
  if (b >= 0xC2 && b <= 0xDF) return cont(1) ? 2 : 0;
  if (b == 0xE0) return cont(1, 0xA0) && cont(2) ? 3 : 0;
  if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) return cont(1) && cont(2) ? 3 : 0;
  if (b == 0xED) return cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0;  // no surrogates
  if (b == 0xF0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (b >= 0xF1 && b <= 0xF3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (b == 0xF4) return cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

}  // namespace

void append_json_string(std::string& out, std::string_view v) {
  static constexpr char hex[] = "0123456789abcdef";
  out.reserve(out.size() + v.size() + 2);
  out += '"';
  const auto* p = reinterpret_cast<const unsigned char*>(v.data());
  const std::size_t n = v.size();
  std::size_t run = 0;  // start of the bytes copied as they are
  std::size_t i = 0;
  auto flush = [&] { out.append(v.data() + run, i - run); };
  while (i < n) {
    const unsigned char c = p[i];
    if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
      ++i;
      continue;
    }
    if (c >= 0x80) {
      if (const std::size_t len = utf8_sequence(p + i, n - i); len > 0) {
        i += len;
        continue;
      }
      flush();
      out += "\xEF\xBF\xBD";  // U+FFFD
      run = ++i;
      continue;
    }
    flush();
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        out += "\\u00";
        out += hex[c >> 4];
        out += hex[c & 0xF];
    }
    run = ++i;
  }
  flush();
  out += '"';
}

json_out& json_out::value(std::int64_t n) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, n);
  return raw(std::string_view(buf, static_cast<std::size_t>(r.ptr - buf)));
}

json_out& json_out::value(std::uint64_t n) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, n);
  return raw(std::string_view(buf, static_cast<std::size_t>(r.ptr - buf)));
}

}  // namespace yilian::api
