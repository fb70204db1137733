// yilian::hl7v2::framer — the MLLP framing layer as a pure state machine.
//
// MLLP (HL7 v2 Minimal Lower Layer Protocol, release 2): each message is sent
// as <VT 0x0B> payload <FS 0x1C><CR 0x0D>. The framer is fed whatever bytes the
// socket produced and hands back complete payloads; it does no I/O, so it is
// unit-tested and fuzzed on its own.
//
//   framer f({.max_frame_bytes = 1 << 20});
//   f.feed(bytes);
//   while (true) {
//     auto ev = f.next();
//     if (ev.kind == framer::event_kind::need_more) break;
//     if (ev.kind == framer::event_kind::frame) handle(ev.payload);
//     else report(ev.error);            // garbage skipped / frame too large
//   }
//
// Bytes before a start block are garbage: they are skipped (reported once per
// run as an error event, with the count) and the framer resyncs on the next VT.
// A run is reported when the VT that ends it arrives, or every
// max_frame_bytes bytes while it goes on (so a peer that never sends a VT is
// still seen). A run made only of CR, LF, space and tab is skipped without an
// error: many senders end a frame with FS CR LF.
//
// A frame larger than max_frame_bytes is an error event (errc::overloaded,
// retriable = false: the same bytes will never fit); its bytes are discarded
// up to the next FS (CR), then framing resumes. A VT arriving while discarding
// starts a new frame (the sender gave up on the huge one). The event comes
// when the discarding ends, so replies stay in the order of the frames.
//
// A VT inside a frame restarts the frame (the sender gave up on the previous
// one); the abandoned bytes are an error event (errc::parse_error).
//
// FS not followed by CR is tolerated (some senders omit the CR): FS always
// ends a frame. When FS is the last byte fed so far, the frame is returned at
// once (a sender that omits the CR and waits for the ACK must not hang) and a
// CR arriving next is swallowed; any other byte after FS starts the next
// inter-frame run (a VT or garbage).
//
// Error events carry, in `payload`, the first bytes (at most 4 KiB) of what was
// skipped, so the caller can look for an MSH segment and answer it (see
// ack.h header_from_raw); never log them (they may hold patient data). Their
// `err.where` is the position in the connection's byte stream
// ("stream byte 1234"); their messages hold counts and offsets only.
//
// Cost: every byte is looked at a bounded number of times (memchr for the
// delimiters, searches resume where the last one stopped), and consumed bytes
// are dropped from the buffer once they are at least half of it, so feeding
// byte by byte is linear. After next() returned need_more, buffered() is at
// most max_frame_bytes + 1 (the VT and the frame so far).
//
// Not thread-safe; one per connection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "engine/core/error.h"

namespace yilian::hl7v2 {

inline constexpr char mllp_start = '\x0b';
inline constexpr char mllp_end = '\x1c';
inline constexpr char mllp_cr = '\x0d';

// <VT> payload <FS><CR>
std::string mllp_frame(std::string_view payload);

struct framer_options {
  std::size_t max_frame_bytes = 16u << 20;
};

class framer {
 public:
  enum class event_kind { need_more, frame, error };
  struct event {
    event_kind kind = event_kind::need_more;
    std::string payload;  // frame: the bytes between VT and FS; error: the first bytes skipped (<= 4 KiB)
    error err;            // error: what was skipped and why (errc::parse_error or errc::overloaded for too large)
    std::size_t skipped_bytes = 0;  // error: bytes discarded (a frame counts VT through FS)
  };

  explicit framer(framer_options options = {});
  void feed(std::string_view bytes);
  event next();
  // Bytes received but not yet returned as a frame or skipped.
  std::size_t buffered() const;
  // True while a frame has started (VT seen) but not ended.
  bool in_frame() const;

 private:
  enum class state { idle, in_frame, discarding };

  event garbage_event();
  event oversized_event();
  void note_skipped(const char* data, std::size_t n);
  void compact();

  framer_options options_;
  std::string buffer_;
  std::size_t pos_ = 0;       // consumed prefix of buffer_; in_frame: the index of the frame's VT
  std::size_t scan_ = 0;      // in_frame: bytes before this index hold neither FS nor VT
  std::uint64_t base_ = 0;    // stream offset of buffer_[0]
  state state_ = state::idle;
  bool pending_cr_ = false;   // a frame ended with FS as the last byte; swallow a CR next
  // The run being skipped (garbage between frames, or an oversized frame).
  std::uint64_t run_start_ = 0;   // its stream offset
  std::size_t garbage_ = 0;       // garbage bytes in the run
  bool garbage_significant_ = false;  // not only CR/LF/space/tab
  std::size_t discarded_ = 0;     // bytes of the oversized frame, VT included
  std::string skipped_prefix_;    // its first bytes, for the error event
};

}  // namespace yilian::hl7v2
