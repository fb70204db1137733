#include "adapters/hl7v2/charset.h"

#include <unicode/ucnv.h>
#include <unicode/utypes.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

namespace yilian::hl7v2 {
namespace {

using config::v1::Charset;

std::string upper_trimmed(std::string_view v) {
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
  std::string out(v);
  for (auto& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

// Multi-byte charsets whose trail bytes may collide with HL7 delimiters.
bool is_double_byte(Charset cs) {
  return cs == config::v1::CHARSET_GBK || cs == config::v1::CHARSET_GB18030 || cs == config::v1::CHARSET_BIG5;
}

const char* icu_name(Charset cs) {
  switch (cs) {
    case config::v1::CHARSET_GB18030: return "GB18030";
    case config::v1::CHARSET_GBK: return "GBK";
    case config::v1::CHARSET_BIG5: return "Big5";
    case config::v1::CHARSET_ISO_8859_1: return "ISO-8859-1";
    default: return "UTF-8";
  }
}

struct converter_deleter {
  void operator()(UConverter* c) const { ucnv_close(c); }
};
using converter_ptr = std::unique_ptr<UConverter, converter_deleter>;

// One converter per thread and charset: ucnv_open costs microseconds and a
// converter is not thread-safe.
UConverter* thread_converter(Charset cs, bool& failed) {
  thread_local std::array<converter_ptr, 8> cache;
  const auto i = static_cast<std::size_t>(cs);
  if (i >= cache.size()) {
    failed = true;
    return nullptr;
  }
  if (!cache[i]) {
    UErrorCode status = U_ZERO_ERROR;
    converter_ptr c{ucnv_open(icu_name(cs), &status)};
    if (U_FAILURE(status) || !c) {
      failed = true;
      return nullptr;
    }
    ucnv_setToUCallBack(c.get(), UCNV_TO_U_CALLBACK_STOP, nullptr, nullptr, nullptr, &status);
    ucnv_setFromUCallBack(c.get(), UCNV_FROM_U_CALLBACK_STOP, nullptr, nullptr, nullptr, &status);
    cache[i] = std::move(c);
  }
  ucnv_reset(cache[i].get());
  return cache[i].get();
}

// Length of the run of ASCII bytes at the start of `s`, eight bytes at a time
// (a message is mostly ASCII even when it carries Chinese names).
std::size_t ascii_prefix(std::string_view s) {
  const char* p = s.data();
  const std::size_t n = s.size();
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, p + i, 8);
    if ((w & 0x8080808080808080ULL) != 0) break;
  }
  while (i < n && static_cast<unsigned char>(p[i]) < 0x80) ++i;
  return i;
}

bool all_ascii(std::string_view bytes) { return ascii_prefix(bytes) == bytes.size(); }

// Offset of the first byte that is not valid UTF-8, or npos.
std::size_t invalid_utf8_at(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      i += ascii_prefix(s.substr(i));
      continue;
    }
    std::size_t len = 0;
    std::uint32_t cp = 0;
    if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1Fu;
    else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0Fu;
    else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07u;
    else return i;
    if (i + len > n) return i;
    for (std::size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (p[i + k] & 0x3Fu);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return i;
    }
    i += len;
  }
  return std::string_view::npos;
}

// MSH-18 as sent (first repetition), read from the MSH line without
// splitting a double-byte character of `fallback` on a trail byte.
std::string_view find_msh18(std::string_view bytes, Charset fallback) {
  std::size_t pos = 0;
  while (pos < bytes.size() && (bytes[pos] == '\r' || bytes[pos] == '\n')) ++pos;
  if (bytes.size() - pos < 8 || bytes.substr(pos, 3) != "MSH") return {};
  const char sep = bytes[pos + 3];
  const char rep = bytes[pos + 5];
  const bool dbcs = is_double_byte(fallback);
  // Field number of the text after the i-th separator: after "MSH|" we are in MSH-2.
  std::size_t field = 2;
  std::size_t start = pos + 4;
  std::size_t i = pos + 4;
  while (i < bytes.size()) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    if (c == '\r' || c == '\n') break;
    if (dbcs && c >= 0x81 && c <= 0xFE && i + 1 < bytes.size()) {
      const auto c2 = static_cast<unsigned char>(bytes[i + 1]);
      // GB 18030 four-byte sequences have a digit as second byte.
      i += (fallback == config::v1::CHARSET_GB18030 && c2 >= 0x30 && c2 <= 0x39) ? 4 : 2;
      continue;
    }
    if (bytes[i] == sep) {
      if (field == 18) break;
      ++field;
      start = i + 1;
    }
    ++i;
  }
  if (field != 18) return {};
  auto value = bytes.substr(start, std::min(i, bytes.size()) - start);
  const auto r = value.find(rep);
  return r == std::string_view::npos ? value : value.substr(0, r);
}

std::string latin1_to_utf8(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() + bytes.size() / 4);
  for (const char ch : bytes) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x80) {
      out.push_back(ch);
    } else {
      out.push_back(static_cast<char>(0xC0 | (c >> 6)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    }
  }
  return out;
}

result<std::string> icu_to_utf8(std::string_view bytes, Charset cs) {
  bool failed = false;
  UConverter* conv = thread_converter(cs, failed);
  if (failed) return fail(errc::internal, std::string("no ICU converter for ") + icu_name(cs), "MSH-18");
  bool utf8_failed = false;
  UConverter* utf8 = thread_converter(config::v1::CHARSET_UTF8, utf8_failed);
  if (utf8_failed) return fail(errc::internal, "no ICU UTF-8 converter", "MSH-18");
  // One pass through ICU's pivot (a UTF-16 buffer on the stack), no
  // intermediate string. A byte of these charsets never becomes more than
  // three bytes of UTF-8 (GBK 0x80 is U+20AC).
  std::string out;
  out.resize(bytes.size() * 3 + 16);
  char* target = out.data();
  const char* source = bytes.data();
  std::array<UChar, 1024> pivot;
  UChar* pivot_source = pivot.data();
  UChar* pivot_target = pivot.data();
  UErrorCode status = U_ZERO_ERROR;
  ucnv_convertEx(utf8, conv, &target, out.data() + out.size(), &source, bytes.data() + bytes.size(), pivot.data(),
                 &pivot_source, &pivot_target, pivot.data() + pivot.size(), true, true, &status);
  if (U_FAILURE(status)) {
    char invalid[32];
    std::int8_t invalid_len = sizeof invalid;
    UErrorCode s2 = U_ZERO_ERROR;
    ucnv_getInvalidChars(conv, invalid, &invalid_len, &s2);
    const auto consumed = static_cast<std::size_t>(source - bytes.data());
    const auto offset = consumed >= static_cast<std::size_t>(invalid_len) ? consumed - static_cast<std::size_t>(invalid_len)
                                                                           : consumed;
    return fail(errc::parse_error,
                std::string("bytes that are not valid ") + std::string(msh18_name(cs)) + " at byte " +
                    std::to_string(offset),
                "MSH-18");
  }
  out.resize(static_cast<std::size_t>(target - out.data()));
  return out;
}

}  // namespace

result<charset> charset_from_msh18(std::string_view value) {
  const auto v = upper_trimmed(value);
  if (v.empty()) return config::v1::CHARSET_UNSPECIFIED;
  if (v == "ASCII") return config::v1::CHARSET_ASCII;
  if (v == "UNICODE UTF-8" || v == "UTF-8" || v == "UTF8") return config::v1::CHARSET_UTF8;
  if (v == "GB 18030-2000" || v == "GB18030" || v == "GB 18030" || v == "GB18030-2000" || v == "GB 18030-2005" ||
      v == "GB18030-2005") {
    return config::v1::CHARSET_GB18030;
  }
  if (v == "GBK" || v == "GB2312" || v == "GB 2312" || v == "CP936" || v == "EUC-CN") return config::v1::CHARSET_GBK;
  if (v == "8859/1" || v == "ISO-8859-1" || v == "ISO8859-1" || v == "LATIN1") return config::v1::CHARSET_ISO_8859_1;
  if (v == "BIG-5" || v == "BIG5") return config::v1::CHARSET_BIG5;
  return fail(errc::unsupported, "character set '" + v + "' is not supported", "MSH-18");
}

std::string_view msh18_name(charset cs) {
  switch (cs) {
    case config::v1::CHARSET_ASCII: return "ASCII";
    case config::v1::CHARSET_GB18030: return "GB 18030-2000";
    case config::v1::CHARSET_GBK: return "GBK";
    case config::v1::CHARSET_ISO_8859_1: return "8859/1";
    case config::v1::CHARSET_BIG5: return "BIG-5";
    default: return "UNICODE UTF-8";
  }
}

result<decoded_text> decode_message(std::string_view bytes, charset fallback) {
  if (fallback == config::v1::CHARSET_UNSPECIFIED) fallback = config::v1::CHARSET_UTF8;
  auto declared = charset_from_msh18(find_msh18(bytes, fallback));
  if (!declared) return std::unexpected(declared.error());
  const charset cs = *declared == config::v1::CHARSET_UNSPECIFIED ? fallback : *declared;
  decoded_text out;
  out.source = cs;
  if (all_ascii(bytes)) {
    out.utf8.assign(bytes);
    return out;
  }
  switch (cs) {
    case config::v1::CHARSET_ASCII: {
      const auto at = std::find_if(bytes.begin(), bytes.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
      return fail(errc::parse_error,
                  "a byte above 0x7F in a message declared ASCII at byte " +
                      std::to_string(static_cast<std::size_t>(at - bytes.begin())),
                  "MSH-18");
    }
    case config::v1::CHARSET_UTF8: {
      const auto at = invalid_utf8_at(bytes);
      if (at != std::string_view::npos) {
        return fail(errc::parse_error, "bytes that are not valid UTF-8 at byte " + std::to_string(at), "MSH-18");
      }
      out.utf8.assign(bytes);
      return out;
    }
    case config::v1::CHARSET_ISO_8859_1:
      out.utf8 = latin1_to_utf8(bytes);
      out.converted = true;
      return out;
    default: {
      auto utf8 = icu_to_utf8(bytes, cs);
      if (!utf8) return std::unexpected(utf8.error());
      out.utf8 = std::move(*utf8);
      out.converted = true;
      return out;
    }
  }
}

result<std::string> encode_text(std::string_view utf8, charset target) {
  if (target == config::v1::CHARSET_UNSPECIFIED || target == config::v1::CHARSET_UTF8 || all_ascii(utf8)) {
    return std::string(utf8);
  }
  if (target == config::v1::CHARSET_ASCII) {
    return fail(errc::validation_failed, "text contains characters that ASCII cannot represent", "MSH-18");
  }
  bool failed = false;
  UConverter* from = thread_converter(config::v1::CHARSET_UTF8, failed);
  UConverter* to = failed ? nullptr : thread_converter(target, failed);
  if (failed) return fail(errc::internal, std::string("no ICU converter for ") + icu_name(target), "MSH-18");
  std::string out;
  out.resize(utf8.size() * 2 + 16);
  char* t = out.data();
  const char* s = utf8.data();
  UErrorCode status = U_ZERO_ERROR;
  ucnv_convertEx(to, from, &t, out.data() + out.size(), &s, utf8.data() + utf8.size(), nullptr, nullptr, nullptr,
                 nullptr, true, true, &status);
  if (U_FAILURE(status)) {
    return fail(errc::validation_failed,
                std::string("text cannot be represented in ") + std::string(msh18_name(target)) + " near byte " +
                    std::to_string(static_cast<std::size_t>(s - utf8.data())),
                "MSH-18");
  }
  out.resize(static_cast<std::size_t>(t - out.data()));
  return out;
}

}  // namespace yilian::hl7v2
