// yilian::hl7v2::message — an HL7 v2 message parsed in one pass over its bytes.
//
// The message owns one UTF-8 buffer (charset conversion, see charset.h, happens
// before parsing) and an index of segment and field offsets into it; every
// accessor returns views into that buffer, valid while the message lives.
// Nothing is copied or unescaped until asked: `raw()` accessors give the bytes
// as sent (escape sequences included), `text()` accessors decode the escape
// sequences (\F\ \S\ \T\ \R\ \E\ \Xhh\ \.br\ ...) into an owning string.
//
// Delimiters come from MSH-1 and MSH-2 (any characters, not only |^~\&; the
// v2.7+ truncation character is the optional fifth one). Segments end with CR;
// LF and CRLF are tolerated. An HL7 null `""` (delete the value) is told apart
// from an empty field (no change) with `is_null()`.
//
// Positions are 1-based as in the standard: field(3) is PID-3, component(1) is
// the first component. For MSH, field(1) is the field separator itself and
// field(2) the encoding characters, as the standard numbers them.
//
// Thread-safety: a const message may be read from any thread.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/error.h"

namespace yilian::hl7v2 {

namespace detail {

// Position of `c` in [from, s.size()), or npos. The first bytes are looked at
// one by one (fields and components are mostly short, and a call to memchr
// costs more than the loop), the rest with memchr.
inline std::size_t find_char(std::string_view s, char c, std::size_t from = 0) {
  const std::size_t n = s.size();
  if (from >= n) return std::string_view::npos;
  const std::size_t quick = n - from < 16 ? n : from + 16;
  for (std::size_t i = from; i < quick; ++i) {
    if (s[i] == c) return i;
  }
  if (quick >= n) return std::string_view::npos;
  const void* p = __builtin_memchr(s.data() + quick, c, n - quick);
  return p ? static_cast<std::size_t>(static_cast<const char*>(p) - s.data()) : std::string_view::npos;
}

// The n-th (1-based) piece of `s` split on `sep`; empty when absent.
inline std::string_view nth_piece(std::string_view s, char sep, std::size_t n) {
  if (n == 0) return {};
  std::size_t start = 0;
  for (std::size_t i = 1; i < n; ++i) {
    const std::size_t p = find_char(s, sep, start);
    if (p == std::string_view::npos) return {};
    start = p + 1;
  }
  const std::size_t end = find_char(s, sep, start);
  return s.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
}

// The first N pieces of `s` split on `sep` (absent ones empty), in one pass:
// for data types whose components are read together (CX, CWE, XAD, ...).
template <std::size_t N>
std::array<std::string_view, N> split_pieces(std::string_view s, char sep) {
  std::array<std::string_view, N> out{};
  std::size_t start = 0;
  for (std::size_t k = 0; k < N; ++k) {
    const std::size_t p = find_char(s, sep, start);
    if (p == std::string_view::npos) {
      out[k] = s.substr(start);
      break;
    }
    out[k] = s.substr(start, p - start);
    start = p + 1;
  }
  return out;
}

// Position of the first byte in [from, size) that is `field`, CR or LF;
// `size` when none; sixteen bytes at a time where SSE2 is there (every
// x86-64). decode_message() finds the end of MSH-18 with it.
std::size_t next_separator(const char* data, std::size_t from, std::size_t size, char field);

}  // namespace detail

struct delimiters {
  char field = '|';
  char component = '^';
  char repetition = '~';
  char escape = '\\';
  char subcomponent = '&';
  char truncation = '\0';  // v2.7+ MSH-2 fifth character; '\0' when absent
  bool operator==(const delimiters&) const = default;
};

// Decodes HL7 escape sequences in `raw` (a field, component or subcomponent as
// sent). \F\ \S\ \T\ \R\ \E\ (and \P\ for the truncation character) become
// the delimiter, \Xhh..\ the bytes given in hex (NUL bytes dropped, so HAPI's
// \X000d\ for a CR reads as a CR), \.br\ and \.sp\ a line feed; other
// formatting commands (\H\ \N\ \.in\ ...) are dropped; an unterminated or
// unknown sequence is kept as sent.
std::string unescape(std::string_view raw, const delimiters& d);

// The inverse for rendering: escapes delimiters and the escape character, and
// turns line feeds into \.br\ (CR into \X0D\).
std::string escape(std::string_view text, const delimiters& d);

// A position inside a message, for error messages and ERR-2 (ERL data type):
// "PID[1]-3[2].4.1 at byte 217". Zero means "not applicable".
struct location {
  std::string segment;         // "PID"
  std::uint32_t segment_seq = 0;    // 1-based occurrence of this segment id
  std::uint32_t field = 0;
  std::uint32_t repetition = 0;
  std::uint32_t component = 0;
  std::uint32_t subcomponent = 0;
  std::size_t offset = 0;      // byte offset in the (UTF-8) message
  // "PID-3", "PID-3[2].4", "OBR[2]-25" (segment_seq shown when > 1).
  std::string path() const;
  bool operator==(const location&) const = default;
};

// One repetition of a field, split on demand.
class repetition_view {
 public:
  repetition_view() = default;
  repetition_view(std::string_view raw, const delimiters* d) : raw_(raw), d_(d) {}
  std::string_view raw() const { return raw_; }
  bool empty() const { return raw_.empty(); }
  bool is_null() const { return raw_ == "\"\""; }
  // Component `c` (1-based) as sent; empty when absent.
  std::string_view component_raw(std::size_t c) const {
    if (d_ == nullptr) return c == 1 ? raw_ : std::string_view{};
    return detail::nth_piece(raw_, d_->component, c);
  }
  // Subcomponent `s` of component `c` as sent.
  std::string_view subcomponent_raw(std::size_t c, std::size_t s) const {
    const std::string_view comp = component_raw(c);
    if (d_ == nullptr) return s <= 1 ? comp : std::string_view{};
    return detail::nth_piece(comp, d_->subcomponent, s);
  }
  // Decoded text of component c / subcomponent s ("" when absent, and when the
  // value is the HL7 null `""`).
  std::string component(std::size_t c, std::size_t s = 0) const;
  std::size_t component_count() const;
  // Decoded whole repetition (for a field without components).
  std::string text() const;

 private:
  std::string_view raw_;
  const delimiters* d_ = nullptr;
};

class field_view {
 public:
  field_view() = default;
  field_view(std::string_view raw, const delimiters* d) : raw_(raw), d_(d) {}
  std::string_view raw() const { return raw_; }
  bool empty() const { return raw_.empty(); }
  bool is_null() const { return raw_ == "\"\""; }
  std::size_t repetition_count() const;   // 0 for an empty field
  // 0-based; empty view when absent.
  repetition_view repetition(std::size_t i) const {
    if (d_ == nullptr) return i == 0 ? repetition_view{raw_, nullptr} : repetition_view{};
    return repetition_view{detail::nth_piece(raw_, d_->repetition, i + 1), d_};
  }
  std::vector<repetition_view> repetitions() const;
  // The first component of the first repetition as sent (what most fields
  // hold): repetition(0).component_raw(1) in one scan.
  std::string_view first_component() const {
    if (d_ == nullptr) return raw_;
    const char rep = d_->repetition;
    const char comp = d_->component;
    for (std::size_t i = 0; i < raw_.size(); ++i) {
      if (raw_[i] == rep || raw_[i] == comp) return raw_.substr(0, i);
    }
    return raw_;
  }
  // Shortcuts on the first repetition.
  std::string_view component_raw(std::size_t c) const { return repetition(0).component_raw(c); }
  std::string component(std::size_t c, std::size_t s = 0) const { return repetition(0).component(c, s); }
  std::string text() const { return repetition(0).text(); }

 private:
  std::string_view raw_;
  const delimiters* d_ = nullptr;
};

class message;

class segment_view {
 public:
  segment_view() = default;
  std::string_view id() const { return raw_.substr(0, raw_.size() < 3 ? raw_.size() : 3); }
  std::string_view raw() const { return raw_; }  // whole segment, without terminator
  inline std::size_t offset() const;             // of the segment in the message
  std::uint32_t seq() const { return seq_; }     // 1-based occurrence of this id
  std::size_t index() const { return index_; }   // 0-based position in the message
  // Highest field number present (PID|a|b -> 2).
  std::size_t field_count() const;
  // Field n (1-based). Empty view when absent.
  inline field_view field(std::size_t n) const;
  // Byte offset in the message of field n's first byte (or of the segment end
  // when the field is absent).
  std::size_t field_offset(std::size_t n) const;
  // Shortcuts: first repetition, decoded.
  std::string text(std::size_t n) const { return field(n).text(); }
  std::string component(std::size_t n, std::size_t c, std::size_t s = 0) const {
    return field(n).component(c, s);
  }
  location at(std::size_t field = 0, std::size_t rep = 0, std::size_t comp = 0) const;

 private:
  friend class message;
  // Small (views are made and copied for every segment the mapping looks
  // at): the id and the offset are read from raw_.
  const message* msg_ = nullptr;
  std::string_view raw_;
  std::uint32_t seq_ = 0;
  std::uint32_t index_ = 0;
  std::uint32_t first_field_ = 0;  // index into message::field_starts_
  std::uint32_t field_total_ = 0;
  bool header_ = false;  // MSH, BHS, FHS: fields numbered from the separator
};

struct parse_options {
  // Reject messages larger than this (bytes, after charset conversion).
  std::size_t max_bytes = 64u << 20;
  // Reject segment ids that are not three upper-case letters or digits.
  bool strict_segment_ids = true;
};

class message {
 public:
  // Parses `text` (UTF-8, one message without MLLP framing). Errors are
  // errc::parse_error with `where` = location path and the byte offset in the
  // message text.
  static result<message> parse(std::string text, const parse_options& options = {});

  message(message&&) noexcept = default;
  message& operator=(message&&) noexcept = default;
  message(const message&);
  message& operator=(const message&);

  std::string_view text() const { return text_; }
  const delimiters& delims() const { return delims_; }
  std::size_t segment_count() const { return segments_.size(); }
  inline segment_view segment(std::size_t i) const;  // 0-based
  // The nth (0-based) segment with this id.
  std::optional<segment_view> find(std::string_view id, std::size_t nth = 0) const;
  std::vector<segment_view> all(std::string_view id) const;
  segment_view msh() const { return segment(0); }

  // Decoded value at a terser-like path: "PID-3[2].4.1" (repetition 1-based in
  // brackets, components and subcomponents 1-based), "OBR[2]-25" (second OBR).
  // Empty when absent or when the path does not parse.
  std::string get(std::string_view path) const;
  std::string_view get_raw(std::string_view path) const;

  // MSH shortcuts (decoded).
  std::string control_id() const { return msh().text(10); }       // MSH-10
  std::string message_code() const { return msh().component(9, 1); }   // MSH-9.1 "ADT"
  std::string trigger() const { return msh().component(9, 2); }        // MSH-9.2 "A04"
  std::string structure() const { return msh().component(9, 3); }      // MSH-9.3 "ADT_A01"
  std::string version() const { return msh().component(12, 1); }       // MSH-12.1 "2.5"

 private:
  friend class segment_view;
  message() = default;
  struct segment_entry {
    std::uint32_t offset = 0;  // start of segment id
    std::uint32_t length = 0;  // without terminator
    std::uint32_t seq = 0;
    std::uint32_t first_field = 0;
    std::uint32_t field_total = 0;
    std::uint32_t key = 0;  // the three id bytes (segment_key), for find()
    bool header = false;    // MSH, BHS, FHS
  };
  std::string text_;
  delimiters delims_;
  std::vector<segment_entry> segments_;
  // Per segment, field_total + 1 offsets: field i (1-based) spans
  // [field_starts_[first+i-1], field_starts_[first+i] - 1) in text_.
  std::vector<std::uint32_t> field_starts_;
};

// The accessors the mapping calls for every value, inline.

inline field_view segment_view::field(std::size_t n) const {
  if (msg_ == nullptr || n == 0) return {};
  if (header_ && n == 1) return field_view{raw_.substr(3, 1), nullptr};
  const std::size_t k = header_ ? n - 2 : n - 1;  // 0-based stored field
  if (k >= field_total_) return {};
  const std::uint32_t* starts = msg_->field_starts_.data() + first_field_;
  const std::size_t begin = starts[k];
  const std::size_t end = starts[k + 1] - 1;
  const std::string_view raw{msg_->text_.data() + begin, end - begin};
  if (header_ && n == 2) return field_view{raw, nullptr};  // encoding characters are literal
  return field_view{raw, &msg_->delims_};
}

inline std::size_t segment_view::offset() const {
  return msg_ == nullptr ? 0 : static_cast<std::size_t>(raw_.data() - msg_->text_.data());
}

inline segment_view message::segment(std::size_t i) const {
  segment_view v;
  if (i >= segments_.size()) return v;
  const segment_entry& e = segments_[i];
  v.msg_ = this;
  v.raw_ = std::string_view(text_.data() + e.offset, e.length);
  v.seq_ = e.seq;
  v.index_ = static_cast<std::uint32_t>(i);
  v.first_field_ = e.first_field;
  v.field_total_ = e.field_total;
  v.header_ = e.header;
  return v;
}

}  // namespace yilian::hl7v2
