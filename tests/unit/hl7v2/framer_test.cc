// The MLLP framer as a pure state machine: whole, split and byte-by-byte
// input, garbage, oversized frames, restarts, senders that omit the CR.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "adapters/hl7v2/framer.h"

using namespace yilian;
using namespace yilian::hl7v2;
using kind = framer::event_kind;

namespace {

std::vector<framer::event> drain(framer& f) {
  std::vector<framer::event> out;
  for (;;) {
    auto ev = f.next();
    if (ev.kind == kind::need_more) return out;
    out.push_back(std::move(ev));
  }
}

std::vector<framer::event> feed_all(framer& f, std::string_view bytes) {
  f.feed(bytes);
  return drain(f);
}

// Feeds `bytes` in chunks of `chunk`, collecting every event.
std::vector<framer::event> feed_chunked(framer& f, std::string_view bytes, std::size_t chunk) {
  std::vector<framer::event> out;
  for (std::size_t i = 0; i < bytes.size(); i += chunk) {
    f.feed(bytes.substr(i, chunk));
    for (auto& ev : drain(f)) out.push_back(std::move(ev));
  }
  return out;
}

std::vector<std::string> payloads(const std::vector<framer::event>& evs) {
  std::vector<std::string> out;
  for (const auto& e : evs) {
    if (e.kind == kind::frame) out.push_back(e.payload);
  }
  return out;
}

std::vector<kind> kinds(const std::vector<framer::event>& evs) {
  std::vector<kind> out;
  for (const auto& e : evs) out.push_back(e.kind);
  return out;
}

const std::string msg1 = "MSH|^~\\&|HIS|ZSRMYY|YILIAN|LIAN|20240501083000||ADT^A04^ADT_A01|MSG0001|P|2.5\rPID|1||123^^^ZS^MR\r";
const std::string msg2 = "MSH|^~\\&|RIS|ZSRMYY|YILIAN|LIAN|20240501083001||ORU^R01^ORU_R01|MSG0002|P|2.5\rOBR|1\r";

}  // namespace

TEST_CASE("a whole frame in one feed comes back as its payload", "[unit]") {
  framer f;
  auto evs = feed_all(f, mllp_frame(msg1));
  REQUIRE(evs.size() == 1);
  CHECK(evs[0].kind == kind::frame);
  CHECK(evs[0].payload == msg1);
  CHECK(f.buffered() == 0);
  CHECK_FALSE(f.in_frame());
}

TEST_CASE("mllp_frame wraps a payload in VT and FS CR", "[unit]") {
  CHECK(mllp_frame("abc") == std::string("\x0b" "abc\x1c\r"));
  CHECK(mllp_frame("") == std::string("\x0b\x1c\r"));
}

TEST_CASE("frames split at every possible point give the same payloads", "[unit]") {
  const std::string stream = mllp_frame(msg1) + mllp_frame(msg2);
  for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
    framer f;
    auto evs = feed_all(f, std::string_view(stream).substr(0, cut));
    for (auto& e : feed_all(f, std::string_view(stream).substr(cut))) evs.push_back(std::move(e));
    INFO("cut at " << cut);
    REQUIRE(kinds(evs) == std::vector<kind>{kind::frame, kind::frame});
    CHECK(payloads(evs) == std::vector<std::string>{msg1, msg2});
    CHECK(f.buffered() == 0);
  }
}

TEST_CASE("byte-by-byte feeding gives the same frames and reports in_frame while one is open", "[unit]") {
  const std::string stream = mllp_frame(msg1) + mllp_frame(msg2);
  framer f;
  std::vector<framer::event> evs;
  bool was_in_frame = false;
  for (const char c : stream) {
    f.feed(std::string_view(&c, 1));
    for (auto& e : drain(f)) evs.push_back(std::move(e));
    was_in_frame = was_in_frame || f.in_frame();
    CHECK(f.buffered() <= msg1.size() + 1);
  }
  CHECK(was_in_frame);
  CHECK_FALSE(f.in_frame());
  CHECK(payloads(evs) == std::vector<std::string>{msg1, msg2});
  CHECK(kinds(evs).size() == 2);
}

TEST_CASE("many frames in one feed come back in order", "[unit]") {
  std::string stream;
  std::vector<std::string> want;
  for (int i = 0; i < 5000; ++i) {
    want.push_back("MSH|^~\\&|A|B|C|D|||ADT^A01|" + std::to_string(i) + "|P|2.5");
    stream += mllp_frame(want.back());
  }
  framer f;
  auto evs = feed_all(f, stream);
  CHECK(payloads(evs) == want);
  CHECK(evs.size() == want.size());
  CHECK(f.buffered() == 0);
}

TEST_CASE("garbage before a frame is skipped, reported once with its count and offset, then framing resyncs",
          "[unit]") {
  framer f;
  const std::string garbage = "GET / HTTP/1.1\r\n\r\n";
  auto evs = feed_all(f, garbage + mllp_frame(msg1));
  REQUIRE(kinds(evs) == std::vector<kind>{kind::error, kind::frame});
  CHECK(evs[0].err.code == errc::parse_error);
  CHECK(evs[0].skipped_bytes == garbage.size());
  CHECK(evs[0].err.where == "stream byte 0");
  CHECK(evs[0].payload == garbage);
  CHECK(evs[0].err.message.find(std::to_string(garbage.size())) != std::string::npos);
  CHECK(evs[1].payload == msg1);

  SECTION("garbage between frames says where it began") {
    const auto offset = f.buffered();
    CHECK(offset == 0);
    const std::string first = mllp_frame(msg1);
    framer g;
    auto more = feed_all(g, first + "xx" + mllp_frame(msg2));
    REQUIRE(kinds(more) == std::vector<kind>{kind::frame, kind::error, kind::frame});
    CHECK(more[1].skipped_bytes == 2);
    CHECK(more[1].err.where == "stream byte " + std::to_string(first.size()));
  }
}

TEST_CASE("a garbage run fed byte by byte is reported once, when the start block arrives", "[unit]") {
  framer f;
  const std::string garbage = "hello there";
  auto evs = feed_chunked(f, garbage + mllp_frame(msg1), 1);
  REQUIRE(kinds(evs) == std::vector<kind>{kind::error, kind::frame});
  CHECK(evs[0].skipped_bytes == garbage.size());
  CHECK(evs[0].payload == garbage);
  CHECK(evs[1].payload == msg1);
}

TEST_CASE("line ends between frames are skipped silently", "[unit]") {
  framer f;
  auto evs = feed_all(f, mllp_frame(msg1) + "\n\r\n " + mllp_frame(msg2) + "\n");
  CHECK(kinds(evs) == std::vector<kind>{kind::frame, kind::frame});
  CHECK(payloads(evs) == std::vector<std::string>{msg1, msg2});
  CHECK(f.buffered() == 0);
}

TEST_CASE("endless garbage is reported every max_frame_bytes bytes and never buffered", "[unit]") {
  framer f({.max_frame_bytes = 100});
  const std::string junk(1000, 'x');
  auto evs = feed_chunked(f, junk, 7);
  CHECK(f.buffered() == 0);
  REQUIRE(evs.size() >= 9);
  std::size_t total = 0;
  for (const auto& e : evs) {
    CHECK(e.kind == kind::error);
    CHECK(e.payload.size() <= 4096);
    total += e.skipped_bytes;
  }
  CHECK(total <= junk.size());
  CHECK(total + 100 >= junk.size());
}

TEST_CASE("an oversized frame is an error, is discarded up to its end, and framing resumes", "[unit]") {
  const std::size_t max = 64;
  const std::string big = "MSH|^~\\&|HIS|ZSRMYY|YILIAN|LIAN|20240501||ORU^R01|BIG1|P|2.5\r" + std::string(500, 'A');
  const std::string stream = mllp_frame(big) + mllp_frame("MSH|small");
  for (const std::size_t chunk : {stream.size(), std::size_t{1}, std::size_t{7}, std::size_t{100}}) {
    INFO("chunk " << chunk);
    framer f({.max_frame_bytes = max});
    std::vector<framer::event> evs;
    for (std::size_t i = 0; i < stream.size(); i += chunk) {
      f.feed(std::string_view(stream).substr(i, chunk));
      for (auto& e : drain(f)) evs.push_back(std::move(e));
      CHECK(f.buffered() <= max + 1);
    }
    REQUIRE(kinds(evs) == std::vector<kind>{kind::error, kind::frame});
    CHECK(evs[0].err.code == errc::overloaded);
    CHECK_FALSE(evs[0].err.retriable);
    CHECK(evs[0].err.where == "stream byte 0");
    CHECK(evs[0].skipped_bytes == big.size() + 2);  // VT through FS
    // The first bytes are kept so that the sender can be answered.
    CHECK(evs[0].payload.substr(0, 8) == "MSH|^~\\&");
    CHECK(evs[1].payload == "MSH|small");
    CHECK_FALSE(f.in_frame());
  }
}

TEST_CASE("a frame of exactly max_frame_bytes is accepted, one more byte is not", "[unit]") {
  framer f({.max_frame_bytes = 10});
  auto evs = feed_all(f, mllp_frame(std::string(10, 'a')) + mllp_frame(std::string(11, 'b')));
  REQUIRE(kinds(evs) == std::vector<kind>{kind::frame, kind::error});
  CHECK(evs[0].payload == std::string(10, 'a'));
  CHECK(evs[1].skipped_bytes == 13);
}

TEST_CASE("a start block while discarding an oversized frame starts the next frame", "[unit]") {
  framer f({.max_frame_bytes = 16});
  const std::string stream = std::string(1, mllp_start) + std::string(40, 'z') + mllp_frame("next");
  auto evs = feed_chunked(f, stream, 5);
  REQUIRE(kinds(evs) == std::vector<kind>{kind::error, kind::frame});
  CHECK(evs[0].err.code == errc::overloaded);
  CHECK(evs[0].skipped_bytes == 41);
  CHECK(evs[1].payload == "next");
}

TEST_CASE("a start block inside a frame restarts the frame", "[unit]") {
  framer f;
  auto evs = feed_all(f, "\x0bMSH|half a message" + mllp_frame(msg1));
  REQUIRE(kinds(evs) == std::vector<kind>{kind::error, kind::frame});
  CHECK(evs[0].err.code == errc::parse_error);
  CHECK(evs[0].skipped_bytes == 19);
  CHECK(evs[0].payload == "MSH|half a message");
  CHECK(evs[0].err.where == "stream byte 0");
  CHECK(evs[1].payload == msg1);
}

TEST_CASE("senders that omit the CR after FS are understood", "[unit]") {
  SECTION("FS followed by the next start block") {
    framer f;
    auto evs = feed_all(f, "\x0b" + msg1 + "\x1c" + "\x0b" + msg2 + "\x1c");
    CHECK(kinds(evs) == std::vector<kind>{kind::frame, kind::frame});
    CHECK(payloads(evs) == std::vector<std::string>{msg1, msg2});
  }
  SECTION("FS as the last byte returns the frame at once; a late CR is swallowed") {
    framer f;
    auto evs = feed_all(f, "\x0b" + msg1 + "\x1c");
    REQUIRE(payloads(evs) == std::vector<std::string>{msg1});
    CHECK(feed_all(f, "\r").empty());
    CHECK(payloads(feed_all(f, mllp_frame(msg2))) == std::vector<std::string>{msg2});
  }
  SECTION("FS followed by other bytes ends the frame; the bytes are garbage") {
    framer f;
    auto evs = feed_all(f, "\x0b" + msg1 + "\x1cZZ" + mllp_frame(msg2));
    REQUIRE(kinds(evs) == std::vector<kind>{kind::frame, kind::error, kind::frame});
    CHECK(evs[1].skipped_bytes == 2);
  }
}

TEST_CASE("an empty frame is returned as an empty payload", "[unit]") {
  framer f;
  auto evs = feed_all(f, std::string("\x0b\x1c\r"));
  REQUIRE(kinds(evs) == std::vector<kind>{kind::frame});
  CHECK(evs[0].payload.empty());
}

TEST_CASE("a large frame fed byte by byte costs linear time and memory", "[unit]") {
  const std::string big(2u << 20, 'q');
  const std::string stream = mllp_frame(big);
  framer f({.max_frame_bytes = 4u << 20});
  std::size_t frames = 0;
  for (const char c : stream) {
    f.feed(std::string_view(&c, 1));
    for (;;) {
      auto ev = f.next();
      if (ev.kind == kind::need_more) break;
      REQUIRE(ev.kind == kind::frame);
      CHECK(ev.payload.size() == big.size());
      ++frames;
    }
  }
  CHECK(frames == 1);
  CHECK(f.buffered() == 0);
}

TEST_CASE("many start blocks before one end block cost linear time", "[unit]") {
  // Each VT restarts the frame; searching again for the far FS after every
  // restart would be quadratic (minutes here), so this test also guards that.
  const std::size_t n = 200000;
  std::string stream(n, mllp_start);
  stream += "MSH|last";
  stream += mllp_end;
  stream += mllp_cr;
  framer f;
  f.feed(stream);
  std::size_t restarts = 0;
  std::vector<std::string> frames;
  for (;;) {
    auto ev = f.next();
    if (ev.kind == kind::need_more) break;
    if (ev.kind == kind::frame) frames.push_back(std::move(ev.payload));
    if (ev.kind == kind::error) ++restarts;
  }
  CHECK(restarts == n - 1);
  CHECK(frames == std::vector<std::string>{"MSH|last"});
}
