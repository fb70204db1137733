// Fuzz target: one unframed HL7 v2 message through what the ingest pipeline
// does before anything is stored: charset decoding (adapters/hl7v2/charset.h),
// parsing (message.h) and mapping to events with the generic profile
// (mapping.h).
//
// Input: byte 0 picks the fallback charset (the profile default used when
// MSH-18 is empty); the rest is the message bytes.
//
// Invariants checked, beyond "does not crash":
//  - every error (decode, parse, map) has a message and a `where`;
//  - decoded text is valid to parse again: parsing the same UTF-8 twice gives
//    the same segment count and control id (the parser is deterministic);
//  - a parsed message's MSH-10 via get() equals control_id(), and every
//    segment id is three characters;
//  - mapped events have a 64-hex event_id, a type under yilian.events.v1,
//    source.control_id = MSH-10 and event_index = their position.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <chrono>
#include <cstdlib>
#include <iterator>

#include "adapters/hl7v2/charset.h"
#include "adapters/hl7v2/mapping.h"
#include "adapters/hl7v2/message.h"
#include "tests/fuzz/fuzz_check.h"

namespace {
namespace hl7v2 = yilian::hl7v2;
namespace cfg = yilian::config::v1;

bool hex64(const std::string& s) {
  if (s.size() != 64) return false;
  for (const char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

const hl7v2::mapper& generic() {
  static const auto m = [] {
    auto compiled = hl7v2::mapper::compile(nullptr, nullptr, "");
    if (!compiled) std::abort();
    return std::move(*compiled);
  }();
  return m;
}
}  // namespace

namespace {
void run(std::string_view input) {
  if (input.empty()) return;
  static constexpr cfg::Charset fallbacks[] = {cfg::CHARSET_UTF8, cfg::CHARSET_GBK, cfg::CHARSET_GB18030,
                                                cfg::CHARSET_ISO_8859_1, cfg::CHARSET_ASCII, cfg::CHARSET_BIG5};
  const auto fallback = fallbacks[static_cast<unsigned char>(input[0]) % std::size(fallbacks)];
  const std::string_view bytes = input.substr(1);

  auto decoded = hl7v2::decode_message(bytes, fallback);
  if (!decoded) {
    FUZZ_CHECK(!decoded.error().message.empty());
    FUZZ_CHECK(!decoded.error().where.empty());
    return;
  }
  auto parsed = hl7v2::message::parse(decoded->utf8);
  if (!parsed) {
    FUZZ_CHECK(!parsed.error().message.empty());
    FUZZ_CHECK(!parsed.error().where.empty());
    return;
  }
  auto again = hl7v2::message::parse(decoded->utf8);
  FUZZ_CHECK(again.has_value());
  FUZZ_CHECK(again->segment_count() == parsed->segment_count());
  FUZZ_CHECK(parsed->get("MSH-10") == parsed->control_id());
  for (std::size_t i = 0; i < parsed->segment_count(); ++i) {
    const auto seg = parsed->segment(i);
    FUZZ_CHECK(seg.id().size() == 3);
    for (std::size_t f = 1; f <= seg.field_count() && f < 40; ++f) (void)seg.text(f);
  }
  yilian::events::v1::ClaimCheck raw;
  raw.set_uri("raw://fuzz/1/0");
  auto mapped = generic().map(*parsed, raw, std::chrono::system_clock::time_point{});
  if (!mapped) {
    FUZZ_CHECK(!mapped.error().message.empty());
    FUZZ_CHECK(!mapped.error().where.empty()) << mapped.error().describe();
    return;
  }
  for (std::size_t i = 0; i < mapped->size(); ++i) {
    const auto& env = *(*mapped)[i].envelope;
    FUZZ_CHECK(hex64(env.event_id()));
    FUZZ_CHECK(env.type().starts_with("yilian.events.v1."));
    FUZZ_CHECK(env.source().control_id() == parsed->control_id());
    FUZZ_CHECK(env.source().event_index() == i);
  }
}
}  // namespace

YILIAN_FUZZ_ENTRY(run)
