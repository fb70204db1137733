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

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/error.h"

namespace yilian::hl7v2 {

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
  std::string_view component_raw(std::size_t c) const;
  // Subcomponent `s` of component `c` as sent.
  std::string_view subcomponent_raw(std::size_t c, std::size_t s) const;
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
  repetition_view repetition(std::size_t i) const;  // 0-based; empty view when absent
  std::vector<repetition_view> repetitions() const;
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
  std::string_view id() const { return id_; }
  std::string_view raw() const { return raw_; }   // whole segment, without terminator
  std::size_t offset() const { return offset_; }  // of the segment in the message
  std::uint32_t seq() const { return seq_; }      // 1-based occurrence of this id
  std::size_t index() const { return index_; }    // 0-based position in the message
  // Highest field number present (PID|a|b -> 2).
  std::size_t field_count() const;
  // Field n (1-based). Empty view when absent.
  field_view field(std::size_t n) const;
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
  const message* msg_ = nullptr;
  std::string_view id_;
  std::string_view raw_;
  std::size_t offset_ = 0;
  std::uint32_t seq_ = 0;
  std::size_t index_ = 0;
  std::uint32_t first_field_ = 0;  // index into message::field_starts_
  std::uint32_t field_total_ = 0;
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
  segment_view segment(std::size_t i) const;  // 0-based
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
  };
  std::string text_;
  delimiters delims_;
  std::vector<segment_entry> segments_;
  // Per segment, field_total + 1 offsets: field i (1-based) spans
  // [field_starts_[first+i-1], field_starts_[first+i] - 1) in text_.
  std::vector<std::uint32_t> field_starts_;
};

}  // namespace yilian::hl7v2
