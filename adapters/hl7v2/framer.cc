#include "adapters/hl7v2/framer.h"

#include <algorithm>
#include <cstring>

namespace yilian::hl7v2 {

namespace {

// How much of a skipped run an error event carries: enough for an MSH segment
// (so the sender can be answered), small enough to keep per connection.
constexpr std::size_t prefix_cap = 4096;
// An emptied buffer that grew beyond this gives its memory back: one 20 MB
// message must not pin 20 MB for the life of an idle connection.
constexpr std::size_t keep_capacity = 256u << 10;

std::size_t index_of(const std::string& buf, const void* hit) {
  return static_cast<std::size_t>(static_cast<const char*>(hit) - buf.data());
}

std::string where_at(std::uint64_t offset) { return "stream byte " + std::to_string(offset); }

bool is_blank(char c) { return c == '\r' || c == '\n' || c == ' ' || c == '\t'; }

}  // namespace

std::string mllp_frame(std::string_view payload) {
  std::string out;
  out.reserve(payload.size() + 3);
  out += mllp_start;
  out.append(payload);
  out += mllp_end;
  out += mllp_cr;
  return out;
}

framer::framer(framer_options options) : options_(options) {}

void framer::feed(std::string_view bytes) { buffer_.append(bytes); }

std::size_t framer::buffered() const { return buffer_.size() - pos_; }

bool framer::in_frame() const { return state_ != state::idle; }

void framer::note_skipped(const char* data, std::size_t n) {
  if (skipped_prefix_.size() < prefix_cap) skipped_prefix_.append(data, std::min(n, prefix_cap - skipped_prefix_.size()));
}

void framer::compact() {
  if (pos_ == 0) return;
  const std::size_t rest = buffer_.size() - pos_;
  // Moving the rest is paid for by the consumed bytes only when there are at
  // least as many of them: each byte is moved a bounded number of times.
  if (rest != 0 && pos_ < rest) return;
  buffer_.erase(0, pos_);
  base_ += pos_;
  scan_ = scan_ >= pos_ ? scan_ - pos_ : 0;
  pos_ = 0;
  if (buffer_.empty() && buffer_.capacity() > keep_capacity) std::string().swap(buffer_);
}

framer::event framer::garbage_event() {
  event ev;
  ev.kind = event_kind::error;
  ev.err = error::make(errc::parse_error,
                       "skipped " + std::to_string(garbage_) +
                           " bytes outside any MLLP frame (expected a start block 0x0B)",
                       where_at(run_start_));
  ev.skipped_bytes = garbage_;
  ev.payload = std::move(skipped_prefix_);
  skipped_prefix_.clear();
  garbage_ = 0;
  garbage_significant_ = false;
  return ev;
}

framer::event framer::oversized_event() {
  event ev;
  ev.kind = event_kind::error;
  ev.err = error::make(errc::overloaded,
                       "MLLP frame larger than the maximum of " + std::to_string(options_.max_frame_bytes) +
                           " bytes: discarded " + std::to_string(discarded_) + " bytes",
                       where_at(run_start_));
  // The same frame will never fit: resending it is pointless.
  ev.err.retriable = false;
  ev.skipped_bytes = discarded_;
  ev.payload = std::move(skipped_prefix_);
  skipped_prefix_.clear();
  discarded_ = 0;
  return ev;
}

framer::event framer::next() {
  for (;;) {
    const std::size_t end = buffer_.size();
    switch (state_) {
      case state::idle: {
        if (pending_cr_ && pos_ < end) {
          if (buffer_[pos_] == mllp_cr) ++pos_;
          pending_cr_ = false;
        }
        if (pos_ == end) {
          compact();
          return {};
        }
        const void* hit = std::memchr(buffer_.data() + pos_, mllp_start, end - pos_);
        const std::size_t stop = hit != nullptr ? index_of(buffer_, hit) : end;
        if (stop > pos_) {
          if (garbage_ == 0) run_start_ = base_ + pos_;
          const char* run = buffer_.data() + pos_;
          const std::size_t n = stop - pos_;
          if (!garbage_significant_) garbage_significant_ = !std::all_of(run, run + n, is_blank);
          garbage_ += n;
          note_skipped(run, n);
          pos_ = stop;
        }
        if (hit == nullptr) {
          compact();
          if (garbage_significant_ && garbage_ >= options_.max_frame_bytes) return garbage_event();
          return {};
        }
        state_ = state::in_frame;  // pos_ is the VT
        scan_ = pos_ + 1;
        if (garbage_ > 0) {
          if (garbage_significant_) return garbage_event();
          garbage_ = 0;  // only line ends between frames: not worth an error
          skipped_prefix_.clear();
        }
        continue;
      }

      case state::in_frame: {
        // The next VT first, then an FS only before it: no byte is searched
        // twice for an FS, however many VTs restart the frame.
        const char* b = buffer_.data();
        const void* vt = std::memchr(b + scan_, mllp_start, end - scan_);
        const std::size_t vt_at = vt != nullptr ? index_of(buffer_, vt) : end;
        const void* fs = std::memchr(b + scan_, mllp_end, vt_at - scan_);
        const std::size_t fs_at = fs != nullptr ? index_of(buffer_, fs) : end;
        if (fs == nullptr && vt != nullptr) {
          // The sender started over: drop what it sent of the previous frame.
          if (vt_at - pos_ - 1 > options_.max_frame_bytes) {
            // Too large as well: the same report as if it had been seen
            // growing past the limit, whatever the chunking.
            run_start_ = base_ + pos_;
            discarded_ = vt_at - pos_;
            skipped_prefix_.assign(b + pos_ + 1, std::min(prefix_cap, vt_at - pos_ - 1));
            pos_ = vt_at;
            scan_ = vt_at + 1;
            auto ev = oversized_event();
            compact();
            return ev;
          }
          event ev;
          ev.kind = event_kind::error;
          ev.skipped_bytes = vt_at - pos_;
          ev.err = error::make(errc::parse_error,
                               "MLLP frame abandoned after " + std::to_string(ev.skipped_bytes) +
                                   " bytes: a new start block 0x0B arrived at stream byte " +
                                   std::to_string(base_ + vt_at) + " before the end block 0x1C",
                               where_at(base_ + pos_));
          ev.payload.assign(b + pos_ + 1, std::min(prefix_cap, vt_at - pos_ - 1));
          pos_ = vt_at;
          scan_ = vt_at + 1;
          compact();
          return ev;
        }
        if (fs != nullptr) {
          const std::size_t len = fs_at - pos_ - 1;
          std::size_t after = fs_at + 1;
          if (after < end) {
            if (b[after] == mllp_cr) ++after;
          } else {
            pending_cr_ = true;
          }
          event ev;
          if (len > options_.max_frame_bytes) {
            run_start_ = base_ + pos_;
            discarded_ = fs_at + 1 - pos_;  // VT through FS: a CR may not have arrived yet
            skipped_prefix_.assign(b + pos_ + 1, std::min(prefix_cap, len));
            ev = oversized_event();
          } else {
            ev.kind = event_kind::frame;
            ev.payload.assign(b + pos_ + 1, len);
          }
          pos_ = after;
          state_ = state::idle;
          compact();
          return ev;
        }
        scan_ = end;
        if (end - pos_ - 1 > options_.max_frame_bytes) {
          // Too large already: stop keeping it, discard up to its end.
          run_start_ = base_ + pos_;
          discarded_ = end - pos_;
          skipped_prefix_.assign(b + pos_ + 1, std::min(prefix_cap, end - pos_ - 1));
          pos_ = end;
          state_ = state::discarding;
        }
        compact();
        return {};
      }

      case state::discarding: {
        if (pos_ == end) {
          compact();
          return {};
        }
        const char* b = buffer_.data();
        const void* vt = std::memchr(b + pos_, mllp_start, end - pos_);
        const std::size_t vt_at = vt != nullptr ? index_of(buffer_, vt) : end;
        const void* fs = std::memchr(b + pos_, mllp_end, vt_at - pos_);
        const std::size_t fs_at = fs != nullptr ? index_of(buffer_, fs) : end;
        if (fs == nullptr && vt != nullptr) {
          note_skipped(b + pos_, vt_at - pos_);
          discarded_ += vt_at - pos_;
          pos_ = vt_at;
          scan_ = vt_at + 1;
          state_ = state::in_frame;
          auto ev = oversized_event();
          compact();
          return ev;
        }
        if (fs != nullptr) {
          std::size_t after = fs_at + 1;
          if (after < end) {
            if (b[after] == mllp_cr) ++after;
          } else {
            pending_cr_ = true;
          }
          note_skipped(b + pos_, fs_at - pos_);
          discarded_ += fs_at + 1 - pos_;
          pos_ = after;
          state_ = state::idle;
          auto ev = oversized_event();
          compact();
          return ev;
        }
        note_skipped(b + pos_, end - pos_);
        discarded_ += end - pos_;
        pos_ = end;
        compact();
        return {};
      }
    }
  }
}

}  // namespace yilian::hl7v2
