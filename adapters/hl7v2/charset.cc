#include "adapters/hl7v2/charset.h"

#include "adapters/hl7v2/message.h"

#include <unicode/ucnv.h>
#include <unicode/utypes.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace yilian::hl7v2 {
namespace {

using config::v1::Charset;

std::string upper_trimmed(std::string_view v) {
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
  std::string out(v);
  for (auto& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
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
#if defined(__SSE2__)
  for (; i + 16 <= n; i += 16) {
    const auto high = static_cast<unsigned>(_mm_movemask_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i))));
    if (high != 0) return i + static_cast<std::size_t>(__builtin_ctz(high));
  }
#endif
  for (; i + 8 <= n; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, p + i, 8);
    if ((w & 0x8080808080808080ULL) != 0) break;
  }
  while (i < n && static_cast<unsigned char>(p[i]) < 0x80) ++i;
  return i;
}

bool all_ascii(std::string_view bytes) { return ascii_prefix(bytes) == bytes.size(); }

// Offset of the first byte that is not valid UTF-8, or npos; the first
// `from` bytes are known to be ASCII.
std::size_t invalid_utf8_at(std::string_view s, std::size_t from) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = from;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      i += ascii_prefix(s.substr(i));
      continue;
    }
    // Three-byte characters (CJK) first: most of what is not ASCII here.
    if ((c & 0xF0) == 0xE0 && i + 3 <= n) {
      const unsigned c1 = p[i + 1];
      const unsigned c2 = p[i + 2];
      if ((c1 & 0xC0) != 0x80 || (c2 & 0xC0) != 0x80) return i;
      const std::uint32_t cp3 = (c & 0x0Fu) << 12 | (c1 & 0x3Fu) << 6 | (c2 & 0x3Fu);
      if (cp3 < 0x800 || (cp3 >= 0xD800 && cp3 <= 0xDFFF)) return i;
      i += 3;
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

// Bytes of a GBK / GB 18030 character whose lead byte (0x81-0xFE) is
// followed by `second`: GB 18030 four-byte sequences have a digit there.
std::size_t multibyte_length(unsigned char second, bool gb18030) {
  return gb18030 && second >= 0x30 && second <= 0x39 ? 4 : 2;
}

// MSH-18 as sent (first repetition), read from the MSH line without
// splitting a double-byte character of `fallback` on a trail byte. The first
// `ascii` bytes are ASCII.
std::string_view find_msh18(std::string_view bytes, Charset fallback, std::size_t ascii) {
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
  // Separator to separator while no trail byte can be taken for one: in
  // ASCII text, or in any text of a charset whose multi-byte characters are
  // all bytes above 0x7F.
  const std::size_t quick = dbcs ? std::min(ascii, bytes.size()) : bytes.size();
  while (i < quick) {
    i = detail::next_separator(bytes.data(), i, quick, sep);
    if (i == quick) break;
    if (bytes[i] != sep) break;  // CR or LF: the end of MSH
    if (field == 18) break;
    ++field;
    start = ++i;
  }
  while (i < bytes.size()) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    if (c == '\r' || c == '\n') break;
    if (dbcs && c >= 0x81 && c <= 0xFE && i + 1 < bytes.size()) {
      i += multibyte_length(static_cast<unsigned char>(bytes[i + 1]), fallback == config::v1::CHARSET_GB18030);
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

// UTF-16 code units (valid, as ICU produces them) to UTF-8 at `out`; returns
// the end of what was written (at most three bytes per unit).
char* utf16_to_utf8(const UChar* u, std::size_t n, char* out) {
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t cp = u[i];
    if (cp >= 0xD800 && cp <= 0xDBFF && i + 1 < n && u[i + 1] >= 0xDC00 && u[i + 1] <= 0xDFFF) {
      cp = 0x10000 + ((cp - 0xD800) << 10) + (static_cast<std::uint32_t>(u[i + 1]) - 0xDC00);
      ++i;
    }
    if (cp < 0x80) {
      *out++ = static_cast<char>(cp);
    } else if (cp < 0x800) {
      *out++ = static_cast<char>(0xC0 | (cp >> 6));
      *out++ = static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      *out++ = static_cast<char>(0xE0 | (cp >> 12));
      *out++ = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      *out++ = static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      *out++ = static_cast<char>(0xF0 | (cp >> 18));
      *out++ = static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      *out++ = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      *out++ = static_cast<char>(0x80 | (cp & 0x3F));
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
  // Written straight into the string (not zeroed first). A byte of these
  // charsets never becomes more than three bytes of UTF-8 (GBK 0x80 is
  // U+20AC).
  std::string out;
  const bool dbcs = is_double_byte(cs);
  const bool four_byte = cs == config::v1::CHARSET_GB18030;
  UErrorCode status = U_ZERO_ERROR;
  const char* source = bytes.data();
  out.resize_and_overwrite(bytes.size() * 3 + 16, [&](char* const buffer, const std::size_t capacity) {
    char* target = buffer;
    char* const target_end = buffer + capacity;
    const char* const end = bytes.data() + bytes.size();
    std::array<UChar, 1024> pivot;
    std::array<UChar, 1024> units;
    // A byte below 0x80 that starts a character is that ASCII character in
    // each of these charsets: ASCII runs are copied, and only the runs of
    // multi-byte characters between them go through ICU (a message is mostly
    // ASCII; ICU costs tens of instructions per byte).
    while (source < end) {
      const std::size_t run = ascii_prefix(std::string_view(source, static_cast<std::size_t>(end - source)));
      std::memcpy(target, source, run);
      target += run;
      source += run;
      if (source == end) break;
      // The characters up to the next ASCII byte that starts one (a trail
      // byte of a double-byte character may be ASCII).
      // Runs a few ASCII bytes apart go to ICU together (each call costs
      // about what fifty bytes do).
      const char* stop = source;
      while (true) {
        while (stop < end && static_cast<unsigned char>(*stop) >= 0x80) {
          const auto lead = static_cast<unsigned char>(*stop);
          if (dbcs && lead >= 0x81 && lead <= 0xFE && end - stop >= 2) {
            const auto len = static_cast<std::ptrdiff_t>(multibyte_length(static_cast<unsigned char>(stop[1]), four_byte));
            stop += std::min(len, end - stop);
          } else {
            ++stop;
          }
        }
        const std::size_t gap = ascii_prefix(std::string_view(stop, static_cast<std::size_t>(end - stop)));
        if (stop + gap == end || gap > 48) break;
        stop += gap;
      }
      // To UTF-16 with ICU, then to UTF-8 here: one ICU conversion instead of
      // two through a pivot. A run ICU refuses (or one too long for the
      // buffer) goes through ucnv_convertEx, which says where it went wrong.
      const auto run_bytes = static_cast<std::int32_t>(stop - source);
      if (run_bytes <= static_cast<std::int32_t>(units.size())) {
        UErrorCode run_status = U_ZERO_ERROR;
        const std::int32_t n = ucnv_toUChars(conv, units.data(), static_cast<std::int32_t>(units.size()), source,
                                             run_bytes, &run_status);
        if (U_SUCCESS(run_status) && run_status != U_STRING_NOT_TERMINATED_WARNING) {
          target = utf16_to_utf8(units.data(), static_cast<std::size_t>(n), target);
          source = stop;
          continue;
        }
      }
      ucnv_reset(conv);
      ucnv_reset(utf8);
      UChar* pivot_source = pivot.data();
      UChar* pivot_target = pivot.data();
      ucnv_convertEx(utf8, conv, &target, target_end, &source, stop, pivot.data(), &pivot_source, &pivot_target,
                     pivot.data() + pivot.size(), true, true, &status);
      if (U_FAILURE(status)) break;
    }
    return static_cast<std::size_t>(target - buffer);
  });
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
  // How far the bytes are ASCII: all of them for most messages, and MSH-18
  // is found by a quick scan within that part.
  const std::size_t ascii = ascii_prefix(bytes);
  const std::string_view msh18 = find_msh18(bytes, fallback, ascii);
  auto declared = msh18.empty() ? result<charset>(config::v1::CHARSET_UNSPECIFIED) : charset_from_msh18(msh18);
  if (!declared) return std::unexpected(declared.error());
  const charset cs = *declared == config::v1::CHARSET_UNSPECIFIED ? fallback : *declared;
  decoded_text out;
  out.source = cs;
  if (ascii == bytes.size()) {
    out.utf8.assign(bytes);
    return out;
  }
  switch (cs) {
    case config::v1::CHARSET_ASCII:
      return fail(errc::parse_error, "a byte above 0x7F in a message declared ASCII at byte " + std::to_string(ascii),
                  "MSH-18");
    case config::v1::CHARSET_UTF8: {
      const auto at = invalid_utf8_at(bytes, ascii);
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
