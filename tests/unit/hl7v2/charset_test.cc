#include <catch2/catch.hpp>

#include <string>

#include "adapters/hl7v2/charset.h"
#include "adapters/hl7v2/message.h"

using namespace yilian;
using namespace yilian::hl7v2;
namespace cfg = yilian::config::v1;

namespace {
// "亅" (U+4E85) is 0x81 0x7C in GBK: its trail byte is the field separator.
// "乗" (U+4E57) is 0x81 0x5C: its trail byte is the escape character.
const std::string gbk_pipe_char = "\x81\x7c";
const std::string utf8_pipe_char = "\xe4\xba\x85";
const std::string gbk_backslash_char = "\x81\x5c";
const std::string utf8_backslash_char = "\xe4\xb9\x97";
}  // namespace

TEST_CASE("MSH-18 names map to charsets, unknown ones are unsupported", "[unit]") {
  CHECK(*charset_from_msh18("") == cfg::CHARSET_UNSPECIFIED);
  CHECK(*charset_from_msh18("UNICODE UTF-8") == cfg::CHARSET_UTF8);
  CHECK(*charset_from_msh18("gb 18030-2000") == cfg::CHARSET_GB18030);
  CHECK(*charset_from_msh18("GBK") == cfg::CHARSET_GBK);
  CHECK(*charset_from_msh18("8859/1") == cfg::CHARSET_ISO_8859_1);
  CHECK(*charset_from_msh18("ASCII") == cfg::CHARSET_ASCII);
  auto bad = charset_from_msh18("ISO IR87");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == errc::unsupported);
  CHECK(bad.error().where == "MSH-18");
}

TEST_CASE("GBK bytes whose trail byte is a delimiter are converted before splitting", "[unit]") {
  const std::string bytes = "MSH|^~\\&|HIS|DCSQ|YL|ZSYL|20260101||ADT^A04|9|P|2.5\rPID|1||7^^^DCSQ^MR||" +
                            gbk_pipe_char + "^" + gbk_backslash_char + "x\r";
  SECTION("from the profile default when MSH-18 is empty") {
    auto d = decode_message(bytes, cfg::CHARSET_GBK);
    REQUIRE(d.has_value());
    CHECK(d->converted);
    CHECK(d->source == cfg::CHARSET_GBK);
    auto m = message::parse(d->utf8);
    REQUIRE(m.has_value());
    CHECK(m->get("PID-5.1") == utf8_pipe_char);
    CHECK(m->get("PID-5.2") == utf8_backslash_char + "x");
  }
  SECTION("splitting first would have cut the character") {
    auto m = message::parse(bytes);
    REQUIRE(m.has_value());
    CHECK(m->get("PID-5.1") != utf8_pipe_char);
  }
}

TEST_CASE("MSH-18 overrides the profile default", "[unit]") {
  const std::string bytes = "MSH|^~\\&|HIS|DCSQ|YL|ZSYL|20260101||ADT^A04|9|P|2.5||||||GB 18030-2000\rPID|1||7||" +
                            gbk_pipe_char + "\r";
  auto d = decode_message(bytes, cfg::CHARSET_UTF8);
  REQUIRE(d.has_value());
  CHECK(d->source == cfg::CHARSET_GB18030);
  auto m = message::parse(d->utf8);
  REQUIRE(m.has_value());
  CHECK(m->get("PID-5") == utf8_pipe_char);
  CHECK(m->get("MSH-18") == "GB 18030-2000");
}

TEST_CASE("bytes invalid in the declared charset are an error with the offset", "[unit]") {
  SECTION("UTF-8") {
    const std::string bytes = "MSH|^~\\&|A|B|C|D|1||ADT^A04|9|P|2.5\rPID|1||\xff\r";
    auto d = decode_message(bytes, cfg::CHARSET_UTF8);
    REQUIRE_FALSE(d);
    CHECK(d.error().code == errc::parse_error);
    CHECK(d.error().message.find("at byte 43") != std::string::npos);
  }
  SECTION("GBK") {
    const std::string bytes = "MSH|^~\\&|A|B|C|D|1||ADT^A04|9|P|2.5\rPID|1||\x81\r";
    auto d = decode_message(bytes, cfg::CHARSET_GBK);
    REQUIRE_FALSE(d);
    CHECK(d.error().where == "MSH-18");
    CHECK(d.error().message.find("not valid GBK at byte 43") != std::string::npos);
  }
  SECTION("GBK, past the first 1,024 characters (ICU converts through a pivot of that size)") {
    std::string bytes = "MSH|^~\\&|A|B|C|D|1||ADT^A04|9|P|2.5\rPID|1||";
    for (int i = 0; i < 3000; ++i) bytes += "\xd6\xd0";  // "中"
    const std::size_t bad = bytes.size();
    bytes += "\x81\r";
    auto d = decode_message(bytes, cfg::CHARSET_GBK);
    REQUIRE_FALSE(d);
    CHECK(d.error().message.find("at byte " + std::to_string(bad)) != std::string::npos);
  }
  SECTION("ASCII") {
    const std::string bytes = "MSH|^~\\&|A|B|C|D|1||ADT^A04|9|P|2.5||||||ASCII\rPID|1||\xc3\xa9\r";
    auto d = decode_message(bytes, cfg::CHARSET_UTF8);
    REQUIRE_FALSE(d);
  }
}

TEST_CASE("Latin-1 and UTF-8 input decode; ASCII is passed through", "[unit]") {
  auto latin = decode_message("MSH|^~\\&|A|B|C|D|1||ADT^A04|9|P|2.5||||||8859/1\rPID|1||Jos\xe9\r", cfg::CHARSET_UTF8);
  REQUIRE(latin.has_value());
  CHECK(latin->utf8.find("Jos\xc3\xa9") != std::string::npos);
  auto ascii = decode_message("MSH|^~\\&|A|B|C|D|1||ADT^A04|9|P|2.5\r", cfg::CHARSET_GBK);
  REQUIRE(ascii.has_value());
  CHECK_FALSE(ascii->converted);
}

TEST_CASE("outbound text is encoded into the destination's charset", "[unit]") {
  auto gbk = encode_text("PID|" + utf8_pipe_char, cfg::CHARSET_GBK);
  REQUIRE(gbk.has_value());
  CHECK(*gbk == "PID|" + gbk_pipe_char);
  CHECK(*encode_text("abc", cfg::CHARSET_ASCII) == "abc");
  CHECK_FALSE(encode_text(utf8_pipe_char, cfg::CHARSET_ASCII));
  CHECK_FALSE(encode_text("\xf0\x9f\x98\x80", cfg::CHARSET_GBK));  // emoji: not in GBK
}
