// yilian::hl7v2 charsets — turns the bytes of one unframed message into UTF-8
// before it is split on delimiters (GBK/GB 18030 trail bytes include | ^ ~ \,
// so splitting first would cut characters in half).
//
// Which charset: MSH-18 (HL7 table 0211 names, e.g. "UNICODE UTF-8",
// "GB 18030-2000", "8859/1", "ASCII"; also the common non-table spellings
// "GBK", "GB2312", "UTF-8"), or the profile's default when MSH-18 is empty.
// MSH-18 itself is found by reading the MSH segment in the profile's default
// charset (its fields up to MSH-18 are ASCII in practice; a multi-byte default
// is walked character by character so a trail byte is never taken for a
// delimiter).
//
// Conversion uses ICU converters (one per thread and charset, cached). Bytes
// that are invalid in the declared charset are an error (errc::parse_error,
// where = "MSH-18", with the byte offset), never silently replaced.
#pragma once

#include <string>
#include <string_view>

#include "engine/core/error.h"
#include "yilian/config/v1/profile.pb.h"

namespace yilian::hl7v2 {

using charset = config::v1::Charset;

// MSH-18 value -> charset. Empty -> CHARSET_UNSPECIFIED (use the default).
// Unknown names -> errc::validation_failed, where "MSH-18".
result<charset> charset_from_msh18(std::string_view value);

// The HL7 table 0211 spelling of a charset, for ClaimCheck.charset and for
// rendering MSH-18 ("UNICODE UTF-8", "GB 18030-2000", "8859/1", ...).
std::string_view msh18_name(charset cs);

struct decoded_text {
  std::string utf8;        // the message in UTF-8
  charset source = config::v1::CHARSET_UTF8;  // what it was decoded from
  bool converted = false;  // false when the bytes were already UTF-8/ASCII
};

// Decides the charset (MSH-18, else `fallback`) and converts `bytes` to UTF-8.
// UTF-8 input is validated, not copied through a converter.
result<decoded_text> decode_message(std::string_view bytes, charset fallback);

// Converts UTF-8 text to `target` for outbound messages (errors when a
// character cannot be represented).
result<std::string> encode_text(std::string_view utf8, charset target);

}  // namespace yilian::hl7v2
