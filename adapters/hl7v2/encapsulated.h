// Encapsulated data (HL7 v2 ED, OBX-5 of value type ED; table 0299 encodings
// Base64 and Hex), decoded byte by byte into a sink: the mapping hashes a
// 20 MB PDF without a second copy of it, the reports API hands the bytes to an
// authorized reader.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace yilian::hl7v2 {

namespace encapsulated_detail {
// Base64 value of each byte (standard and URL alphabets), or one of the
// markers: a byte table, because an embedded PDF is the longest thing a
// message carries.
inline constexpr signed char base64_invalid = -1;
inline constexpr signed char base64_space = -2;
inline constexpr signed char base64_pad = -3;
inline constexpr std::array<signed char, 256> base64_table = [] {
  std::array<signed char, 256> t{};
  for (auto& v : t) v = base64_invalid;
  for (int i = 0; i < 26; ++i) {
    t[static_cast<std::size_t>('A' + i)] = static_cast<signed char>(i);
    t[static_cast<std::size_t>('a' + i)] = static_cast<signed char>(26 + i);
  }
  for (int i = 0; i < 10; ++i) t[static_cast<std::size_t>('0' + i)] = static_cast<signed char>(52 + i);
  t['+'] = t['-'] = 62;
  t['/'] = t['_'] = 63;
  t[' '] = t['\r'] = t['\n'] = t['\t'] = base64_space;
  t['='] = base64_pad;
  return t;
}();
inline bool is_space(char ch) { return ch == ' ' || ch == '\r' || ch == '\n' || ch == '\t'; }
}  // namespace encapsulated_detail

// Base64 (standard or URL alphabet; whitespace skipped; nothing after the
// padding). `put(unsigned char)` receives each byte. False when not Base64.
template <class Put>
bool decode_base64(std::string_view s, Put&& put) {
  std::uint32_t acc = 0;
  int bits = 0;
  bool padding = false;
  for (const char ch : s) {
    const signed char v = encapsulated_detail::base64_table[static_cast<unsigned char>(ch)];
    if (v >= 0) {
      if (padding) return false;  // data after padding
      acc = (acc << 6) | static_cast<std::uint32_t>(v);
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        put(static_cast<unsigned char>((acc >> bits) & 0xff));
      }
    } else if (v == encapsulated_detail::base64_pad) {
      padding = true;
    } else if (v != encapsulated_detail::base64_space) {
      return false;
    }
  }
  return true;
}

// Hexadecimal pairs (either case; whitespace skipped). False when not hex or odd.
template <class Put>
bool decode_hex(std::string_view s, Put&& put) {
  int high = -1;
  for (char ch : s) {
    if (encapsulated_detail::is_space(ch)) continue;
    int v = -1;
    if (ch >= '0' && ch <= '9') v = ch - '0';
    if (ch >= 'a' && ch <= 'f') v = ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') v = ch - 'A' + 10;
    if (v < 0) return false;
    if (high < 0) {
      high = v;
    } else {
      put(static_cast<unsigned char>(high * 16 + v));
      high = -1;
    }
  }
  return high < 0;
}

}  // namespace yilian::hl7v2
