// Encapsulated data (HL7 v2 ED, OBX-5 of value type ED; table 0299 encodings
// Base64 and Hex), decoded byte by byte into a sink: the mapping hashes a
// 20 MB PDF without a second copy of it, the reports API hands the bytes to an
// authorized reader.
#pragma once

#include <string_view>

namespace yilian::hl7v2 {

namespace encapsulated_detail {
inline int base64_value(char ch) {
  if (ch >= 'A' && ch <= 'Z') return ch - 'A';
  if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
  if (ch >= '0' && ch <= '9') return ch - '0' + 52;
  if (ch == '+' || ch == '-') return 62;
  if (ch == '/' || ch == '_') return 63;
  return -1;
}
inline bool is_space(char ch) { return ch == ' ' || ch == '\r' || ch == '\n' || ch == '\t'; }
}  // namespace encapsulated_detail

// Base64 (standard or URL alphabet; whitespace skipped; nothing after the
// padding). `put(unsigned char)` receives each byte. False when not Base64.
template <class Put>
bool decode_base64(std::string_view s, Put&& put) {
  std::uint32_t acc = 0;
  int bits = 0;
  bool padding = false;
  for (char ch : s) {
    if (encapsulated_detail::is_space(ch)) continue;
    if (ch == '=') {
      padding = true;
      continue;
    }
    if (padding) return false;  // data after padding
    const int v = encapsulated_detail::base64_value(ch);
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      put(static_cast<unsigned char>((acc >> bits) & 0xff));
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
