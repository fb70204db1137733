// Fuzz target: the MLLP framer (adapters/hl7v2/framer.h) over arbitrary bytes
// fed in arbitrary chunks, and what the listener does with what it returns:
// the ACK built from whatever MSH the bytes show (ack.h header_from_raw,
// build_ack) and ACK parsing (parse_ack) of the same untrusted bytes.
//
// Input: byte 0 picks max_frame_bytes (bit 7 set: 1 MiB, else 0..127 so the
// oversized paths are reached), byte 1 seeds the chunk sizes (1..32 bytes),
// the rest is the byte stream a peer sends.
//
// Invariants checked, beyond "does not crash":
//  - the frames returned are exactly those of a simple whole-input reference
//    reader (a payload is what lies between a VT and the next FS with no VT in
//    between, at most max_frame_bytes long), in order, whatever the chunking;
//    feeding everything at once gives the same frames;
//  - frames too large and frames abandoned by a new VT are reported once each,
//    as overloaded (not retriable) and parse_error, as the reference counts them;
//  - after next() returned need_more, buffered() <= max_frame_bytes + 1, and
//    in_frame() says whether the input ends inside a frame;
//  - every error event has a message, a "stream byte N" position, a skipped
//    count > 0 and at most 4 KiB of skipped bytes; nothing returned or skipped
//    adds up to more than the input;
//  - for every payload and every skipped prefix: header_from_raw and
//    parse_ack do not throw; parse_ack errors have a message and a where; the
//    AR built from the header holds no MLLP delimiter (VT, FS), parses back
//    with parse_ack as an AR whose MSA-2 is the header's MSH-10, and carries
//    the error's 0357 code.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "adapters/hl7v2/ack.h"
#include "adapters/hl7v2/framer.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

namespace hl7v2 = yilian::hl7v2;
using yilian::errc;
using yilian::fuzz::printable;
using kind = hl7v2::framer::event_kind;

struct outcome {
  std::vector<std::string> frames;
  std::size_t oversized = 0;
  std::size_t restarts = 0;
  std::size_t garbage_bytes = 0;  // reported as skipped outside frames
  std::size_t accounted = 0;      // frame bytes (VT..FS) + every skipped byte
  bool in_frame = false;
};

outcome reference(std::string_view in, std::size_t max) {
  outcome out;
  std::size_t i = 0;
  for (;;) {
    const auto vt = in.find(hl7v2::mllp_start, i);
    if (vt == std::string_view::npos) return out;
    std::size_t start = vt + 1;
    for (;;) {
      const auto k = in.find_first_of(std::string_view("\x0b\x1c", 2), start);
      if (k == std::string_view::npos) {
        out.in_frame = true;
        return out;
      }
      const auto len = k - start;
      if (in[k] == hl7v2::mllp_start) {
        ++(len > max ? out.oversized : out.restarts);
        start = k + 1;
        continue;
      }
      if (len > max) {
        ++out.oversized;
      } else {
        out.frames.emplace_back(in.substr(start, len));
      }
      i = k + 1;
      break;
    }
  }
}

// What the listener does with the first bytes of an oversized frame, and what
// a client does with a reply: neither may break framing or lose MSA-2.
// At most this many payloads per input go through the ACK path: it costs far
// more than framing, and the first few cover it.
constexpr int ack_checks_per_input = 8;
int ack_checks_left = 0;

void check_ack_path(std::string_view bytes, const yilian::error& why) {
  if (ack_checks_left <= 0) return;
  --ack_checks_left;
  if (auto parsed = hl7v2::parse_ack(bytes); !parsed) {
    FUZZ_CHECK(!parsed.error().message.empty()) << printable(bytes);
    FUZZ_CHECK(!parsed.error().where.empty()) << parsed.error().describe() << printable(bytes);
  }
  const auto h = hl7v2::header_from_raw(bytes);
  const auto err = hl7v2::to_ack_error(why);
  const hl7v2::ack_build_options opts{.control_id = "F1", .timestamp = {}, .utc_offset = {}, .application = "YILIAN",
                                      .facility = "LIAN"};
  const auto ack = hl7v2::build_ack(h, hl7v2::ack_code::AR, std::span<const hl7v2::ack_error>(&err, 1), opts);
  FUZZ_CHECK(ack.find_first_of(std::string_view("\x0b\x1c", 2)) == std::string::npos)
      << "the ACK would break MLLP framing: " << printable(ack) << " from " << printable(bytes);
  const auto back = hl7v2::parse_ack(ack);
  FUZZ_CHECK(back.has_value()) << back.error().describe() << ": " << printable(ack) << " from " << printable(bytes);
  FUZZ_CHECK(back->code == hl7v2::ack_code::AR) << printable(ack);
  const auto& d = h.delims;
  const auto msh10 = std::string_view(h.control_id).substr(0, h.control_id.find(d.repetition));
  FUZZ_CHECK(back->acknowledged_control_id == hl7v2::unescape(msh10, d))
      << printable(back->acknowledged_control_id) << " != MSH-10 " << printable(h.control_id) << " in "
      << printable(ack);
  FUZZ_CHECK(back->error_code == err.code) << printable(ack);
}

void check_event(const hl7v2::framer::event& ev, std::string_view input, bool acks) {
  FUZZ_CHECK(ev.kind == kind::error) << printable(input);
  FUZZ_CHECK(!ev.err.message.empty()) << printable(input);
  FUZZ_CHECK(ev.err.where.starts_with("stream byte ")) << ev.err.where << printable(input);
  FUZZ_CHECK(ev.skipped_bytes > 0) << ev.err.describe() << printable(input);
  FUZZ_CHECK(ev.payload.size() <= 4096) << ev.payload.size();
  FUZZ_CHECK(ev.payload.size() <= ev.skipped_bytes) << ev.err.describe() << printable(input);
  FUZZ_CHECK(ev.err.code == errc::parse_error || ev.err.code == errc::overloaded) << ev.err.describe();
  if (ev.err.code == errc::overloaded) FUZZ_CHECK(!ev.err.retriable) << ev.err.describe();
  if (acks) check_ack_path(ev.payload, ev.err);
}

// `acks`: also check the ACK path on what comes out (once per input is enough:
// the whole-input pass, where events are fewest).
outcome drain(hl7v2::framer& f, outcome& out, std::size_t max, std::string_view input, bool acks) {
  for (;;) {
    auto ev = f.next();
    if (ev.kind == kind::need_more) break;
    if (ev.kind == kind::frame) {
      FUZZ_CHECK(ev.payload.size() <= max) << ev.payload.size() << " > " << max << printable(input);
      out.accounted += ev.payload.size() + 2;
      if (acks) {
        check_ack_path(ev.payload, yilian::error::make(errc::validation_failed, "required field missing", "PID-3[2].4"));
      }
      out.frames.push_back(std::move(ev.payload));
      continue;
    }
    check_event(ev, input, acks);
    out.accounted += ev.skipped_bytes;
    if (ev.err.code == errc::overloaded) {
      ++out.oversized;
    } else if (ev.err.message.starts_with("MLLP frame abandoned")) {
      ++out.restarts;
    } else {
      out.garbage_bytes += ev.skipped_bytes;
    }
  }
  FUZZ_CHECK(f.buffered() <= max + 1) << f.buffered() << " buffered, max " << max << printable(input);
  return out;
}

void compare(const outcome& got, const outcome& want, std::string_view what, std::string_view input) {
  FUZZ_CHECK(got.frames == want.frames) << what << ": frames differ from the reference; got " << got.frames.size()
                                        << " want " << want.frames.size() << printable(input);
  FUZZ_CHECK(got.oversized == want.oversized) << what << ": oversized " << got.oversized << " want " << want.oversized
                                              << printable(input);
  FUZZ_CHECK(got.restarts == want.restarts) << what << ": restarts " << got.restarts << " want " << want.restarts
                                            << printable(input);
  FUZZ_CHECK(got.in_frame == want.in_frame) << what << printable(input);
  FUZZ_CHECK(got.accounted <= input.size()) << what << ": " << got.accounted << " bytes accounted for, input "
                                            << input.size() << printable(input);
}

void run(std::string_view input) {
  if (input.size() < 2) return;
  const auto b0 = static_cast<unsigned char>(input[0]);
  const std::size_t max = (b0 & 0x80) != 0 ? std::size_t{1} << 20 : std::size_t{b0 & 0x7fu};
  std::uint32_t seed = static_cast<unsigned char>(input[1]) * 2654435761u + 1;
  const std::string_view stream = input.substr(2);
  const outcome want = reference(stream, max);

  hl7v2::framer chunked({.max_frame_bytes = max});
  outcome got;
  for (std::size_t i = 0; i < stream.size();) {
    seed = seed * 1103515245u + 12345u;
    const std::size_t n = std::min<std::size_t>(1 + (seed >> 16) % 32, stream.size() - i);
    chunked.feed(stream.substr(i, n));
    i += n;
    drain(chunked, got, max, input, false);
  }
  got.in_frame = chunked.in_frame();
  compare(got, want, "chunked", input);

  ack_checks_left = ack_checks_per_input;
  hl7v2::framer whole({.max_frame_bytes = max});
  outcome all;
  whole.feed(stream);
  drain(whole, all, max, input, true);
  all.in_frame = whole.in_frame();
  compare(all, want, "whole", input);
}

}  // namespace

YILIAN_FUZZ_ENTRY(run)
