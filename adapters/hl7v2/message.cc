#include "adapters/hl7v2/message.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <limits>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "engine/core/hex.h"

namespace yilian::hl7v2 {
namespace {

using detail::find_char;
using detail::nth_piece;

std::size_t count_pieces(std::string_view s, char sep) {
  if (s.empty()) return 0;
  return static_cast<std::size_t>(std::count(s.begin(), s.end(), sep)) + 1;
}

bool is_segment_id_char(char c) { return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

// The field separators and segment ends (CR, LF) of sixteen bytes at a
// time, as bit masks: parse()'s one scan over a message. SSE2 (every x86-64)
// compares a block in a few instructions; elsewhere, and for a text shorter
// than a block, the bytes are looked at one by one.
class block_scanner {
 public:
  block_scanner(const char* data, std::size_t size, char field) : p_(data), n_(size), field_(field) {
#if defined(__SSE2__)
    vf_ = _mm_set1_epi8(field);
    vcr_ = _mm_set1_epi8('\r');
    vlf_ = _mm_set1_epi8('\n');
#endif
  }

  // Bit k set: byte b + k (b + k < size) is a separator, CR or LF;
  // `fields` gets the separators alone.
  unsigned masks(std::size_t b, unsigned& fields) const {
#if defined(__SSE2__)
    if (n_ >= 16) {
      // The last block is read as the sixteen bytes that end the text and
      // shifted down to start at b.
      const std::size_t at = b + 16 <= n_ ? b : n_ - 16;
      const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p_ + at));
      const auto f = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(x, vf_)));
      const auto e =
          static_cast<unsigned>(_mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(x, vcr_), _mm_cmpeq_epi8(x, vlf_))));
      const std::size_t shift = b - at;
      fields = f >> shift;
      return (f | e) >> shift;
    }
#endif
    unsigned all = 0;
    fields = 0;
    const std::size_t end = b + 16 < n_ ? b + 16 : n_;
    for (std::size_t i = b; i < end; ++i) {
      const char c = p_[i];
      const unsigned bit = 1u << (i - b);
      if (c == field_) {
        fields |= bit;
        all |= bit;
      } else if (c == '\r' || c == '\n') {
        all |= bit;
      }
    }
    return all;
  }

 private:
  const char* p_;
  std::size_t n_;
  char field_;
#if defined(__SSE2__)
  __m128i vf_;
  __m128i vcr_;
  __m128i vlf_;
#endif
};

// A segment id of three characters as one number (segment ids are compared
// often: find() on every lookup of the mapping); 0 for any other length.
std::uint32_t segment_key(std::string_view id) {
  if (id.size() != 3) return 0;
  return std::uint32_t{1} << 24 | static_cast<std::uint32_t>(static_cast<unsigned char>(id[0])) |
         static_cast<std::uint32_t>(static_cast<unsigned char>(id[1])) << 8 |
         static_cast<std::uint32_t>(static_cast<unsigned char>(id[2])) << 16;
}

// Occurrence numbers of segment ids (PID 1, OBX 1, OBX 2, ...): a small
// table on the stack, a vector only past 32 distinct ids.
class segment_counter {
 public:
  std::uint32_t next(std::uint32_t key) {
    for (std::size_t i = 0; i < used_; ++i) {
      if (small_[i].key == key) return ++small_[i].count;
    }
    for (auto& e : more_) {
      if (e.key == key) return ++e.count;
    }
    if (used_ < small_.size()) {
      small_[used_++] = entry{key, 1};
    } else {
      more_.push_back(entry{key, 1});
    }
    return 1;
  }

 private:
  struct entry {
    std::uint32_t key = 0;
    std::uint32_t count = 0;
  };
  std::array<entry, 32> small_{};
  std::size_t used_ = 0;
  std::vector<entry> more_;
};

std::string at_byte(std::size_t offset) { return " at byte " + std::to_string(offset); }

}  // namespace

namespace detail {

std::size_t next_separator(const char* p, std::size_t from, std::size_t n, char field) {
#if defined(__SSE2__)
  const __m128i vf = _mm_set1_epi8(field);
  const __m128i vcr = _mm_set1_epi8('\r');
  const __m128i vlf = _mm_set1_epi8('\n');
  while (from + 16 <= n) {
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + from));
    const __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, vf), _mm_cmpeq_epi8(x, vcr)), _mm_cmpeq_epi8(x, vlf));
    const auto mask = static_cast<unsigned>(_mm_movemask_epi8(hit));
    if (mask != 0) return from + static_cast<std::size_t>(__builtin_ctz(mask));
    from += 16;
  }
#endif
  for (; from < n; ++from) {
    const char c = p[from];
    if (c == field || c == '\r' || c == '\n') return from;
  }
  return n;
}

}  // namespace detail

std::string unescape(std::string_view raw, const delimiters& d) {
  if (raw == "\"\"") return {};
  auto esc = find_char(raw, d.escape);
  if (esc == std::string_view::npos) return std::string(raw);
  std::string out;
  out.reserve(raw.size());
  std::size_t pos = 0;
  while (esc != std::string_view::npos) {
    out.append(raw.substr(pos, esc - pos));
    const auto close = find_char(raw, d.escape, esc + 1);
    if (close == std::string_view::npos) {  // unterminated: keep as sent
      pos = esc;
      break;
    }
    const auto body = raw.substr(esc + 1, close - esc - 1);
    bool known = true;
    if (body == "F") out.push_back(d.field);
    else if (body == "S") out.push_back(d.component);
    else if (body == "T") out.push_back(d.subcomponent);
    else if (body == "R") out.push_back(d.repetition);
    else if (body == "E") out.push_back(d.escape);
    else if (body == "P" && d.truncation != '\0') out.push_back(d.truncation);
    else if (body == ".br") out.push_back('\n');
    else if (body.starts_with(".sp")) out.push_back('\n');
    else if (body == "H" || body == "N" || (body.size() >= 2 && body[0] == '.')) {
      // highlighting and formatting commands carry no text
    } else if (body.size() >= 3 && body[0] == 'X' && (body.size() - 1) % 2 == 0) {
      std::string bytes;
      for (std::size_t i = 1; i + 1 < body.size() + 1 && known; i += 2) {
        const int hi = hex_value(body[i]);
        const int lo = hex_value(body[i + 1]);
        if (hi < 0 || lo < 0) known = false;
        // NUL bytes are dropped: HAPI writes a CR as \X000d\ (a 16-bit
        // unit), and a NUL is never meaningful in HL7 text.
        else if (hi * 16 + lo != 0) bytes.push_back(static_cast<char>(hi * 16 + lo));
      }
      if (known) out += bytes;
    } else {
      known = false;
    }
    if (!known) out.append(raw.substr(esc, close - esc + 1));
    pos = close + 1;
    esc = find_char(raw, d.escape, pos);
  }
  out.append(raw.substr(pos));
  return out;
}

std::string escape(std::string_view text, const delimiters& d) {
  std::string out;
  out.reserve(text.size() + 8);
  for (const char c : text) {
    if (c == d.escape) out += std::string{d.escape} + 'E' + d.escape;
    else if (c == d.field) out += std::string{d.escape} + 'F' + d.escape;
    else if (c == d.component) out += std::string{d.escape} + 'S' + d.escape;
    else if (c == d.subcomponent) out += std::string{d.escape} + 'T' + d.escape;
    else if (c == d.repetition) out += std::string{d.escape} + 'R' + d.escape;
    else if (d.truncation != '\0' && c == d.truncation) out += std::string{d.escape} + 'P' + d.escape;
    else if (c == '\n') out += std::string{d.escape} + ".br" + d.escape;
    else if (c == '\r') out += std::string{d.escape} + "X0D" + d.escape;
    else out.push_back(c);
  }
  return out;
}

std::string location::path() const {
  // Appended piece by piece: g++ 12 at -O3 warns (-Wrestrict) on
  // "literal" + std::to_string(...).
  std::string out = segment;
  if (segment_seq > 1) {
    out += '[';
    out += std::to_string(segment_seq);
    out += ']';
  }
  if (field == 0) return out;
  out += '-';
  out += std::to_string(field);
  if (repetition > 1) {
    out += '[';
    out += std::to_string(repetition);
    out += ']';
  }
  if (component == 0) return out;
  out += '.';
  out += std::to_string(component);
  if (subcomponent != 0) {
    out += '.';
    out += std::to_string(subcomponent);
  }
  return out;
}

// --- repetition_view / field_view -------------------------------------------

std::string repetition_view::component(std::size_t c, std::size_t s) const {
  if (d_ == nullptr) return std::string(s == 0 ? component_raw(c) : subcomponent_raw(c, s));
  return unescape(s == 0 ? component_raw(c) : subcomponent_raw(c, s), *d_);
}

std::size_t repetition_view::component_count() const {
  return d_ == nullptr ? (raw_.empty() ? 0 : 1) : count_pieces(raw_, d_->component);
}

std::string repetition_view::text() const {
  return d_ == nullptr ? std::string(raw_) : unescape(raw_, *d_);
}

std::size_t field_view::repetition_count() const {
  return d_ == nullptr ? (raw_.empty() ? 0 : 1) : count_pieces(raw_, d_->repetition);
}

std::vector<repetition_view> field_view::repetitions() const {
  std::vector<repetition_view> out;
  if (raw_.empty()) return out;
  if (d_ == nullptr) {
    out.emplace_back(raw_, nullptr);
    return out;
  }
  std::size_t start = 0;
  while (true) {
    const auto p = find_char(raw_, d_->repetition, start);
    out.emplace_back(raw_.substr(start, p == std::string_view::npos ? std::string_view::npos : p - start), d_);
    if (p == std::string_view::npos) break;
    start = p + 1;
  }
  return out;
}

// --- segment_view ------------------------------------------------------------

namespace {
bool entry_is_msh(std::string_view id) { return id.size() == 3 && id[0] == 'M' && id[1] == 'S' && id[2] == 'H'; }

// MSH and the batch/file headers number their fields from the separator:
// MSH-1 is the separator itself and MSH-2 the encoding characters.
bool is_header_segment(std::string_view id) {
  if (id.size() != 3) return false;
  const char a = id[0], b = id[1], c = id[2];
  return (a == 'M' && b == 'S' && c == 'H') || ((a == 'B' || a == 'F') && b == 'H' && c == 'S');
}
}  // namespace

std::size_t segment_view::field_count() const { return header_ ? field_total_ + 1 : field_total_; }

std::size_t segment_view::field_offset(std::size_t n) const {
  if (msg_ == nullptr) return 0;
  const bool header = header_;
  const std::size_t at = offset();
  if (n == 0) return at;
  if (header && n == 1) return at + 3;
  const std::size_t k = header ? n - 2 : n - 1;
  if (k >= field_total_) return at + raw_.size();
  return msg_->field_starts_[first_field_ + k];
}

location segment_view::at(std::size_t field_no, std::size_t rep, std::size_t comp) const {
  return location{.segment = std::string(id()),
                  .segment_seq = seq_,
                  .field = static_cast<std::uint32_t>(field_no),
                  .repetition = static_cast<std::uint32_t>(rep),
                  .component = static_cast<std::uint32_t>(comp),
                  .subcomponent = 0,
                  .offset = field_offset(field_no)};
}

// --- message -----------------------------------------------------------------

message::message(const message& other)
    : text_(other.text_), delims_(other.delims_), segments_(other.segments_), field_starts_(other.field_starts_) {}

message& message::operator=(const message& other) {
  if (this != &other) {
    text_ = other.text_;
    delims_ = other.delims_;
    segments_ = other.segments_;
    field_starts_ = other.field_starts_;
  }
  return *this;
}

result<message> message::parse(std::string text, const parse_options& options) {
  if (text.size() > options.max_bytes) {
    return fail(errc::parse_error,
                "message is " + std::to_string(text.size()) + " bytes, more than the limit of " +
                    std::to_string(options.max_bytes),
                "MSH");
  }
  if (text.size() >= std::numeric_limits<std::uint32_t>::max()) {
    return fail(errc::parse_error, "message too large", "MSH");
  }
  message m;
  m.text_ = std::move(text);
  const std::string_view s = m.text_;

  // Leading blank lines are tolerated (some senders start with LF).
  std::size_t pos = 0;
  while (pos < s.size() && (s[pos] == '\r' || s[pos] == '\n')) ++pos;
  if (s.size() - pos < 8 || s.substr(pos, 3) != "MSH") {
    return fail(errc::parse_error, "message does not start with an MSH segment" + at_byte(pos), "MSH");
  }
  // Delimiters: MSH-1 and MSH-2.
  delimiters d;
  d.field = s[pos + 3];
  std::size_t enc_end = pos + 4;
  while (enc_end < s.size() && s[enc_end] != d.field && s[enc_end] != '\r' && s[enc_end] != '\n') ++enc_end;
  const auto enc = s.substr(pos + 4, enc_end - pos - 4);
  if (enc.size() < 4 || enc.size() > 5) {
    return fail(errc::parse_error,
                "MSH-2 encoding characters must be 4 (or 5 with the truncation character), found " +
                    std::to_string(enc.size()) + at_byte(pos + 4),
                "MSH-2");
  }
  d.component = enc[0];
  d.repetition = enc[1];
  d.escape = enc[2];
  d.subcomponent = enc[3];
  if (enc.size() == 5) d.truncation = enc[4];
  {
    const char all[] = {d.field, d.component, d.repetition, d.escape, d.subcomponent, d.truncation};
    const std::size_t n = enc.size() == 5 ? 6 : 5;
    for (std::size_t i = 0; i < n; ++i) {
      const char c = all[i];
      if (c == '\r' || c == '\n' || is_segment_id_char(c) || (c >= 'a' && c <= 'z') || c == ' ') {
        return fail(errc::parse_error, "delimiter character is not allowed" + at_byte(pos + 3 + i),
                    i == 0 ? "MSH-1" : "MSH-2");
      }
      for (std::size_t j = 0; j < i; ++j) {
        if (all[j] == c) {
          return fail(errc::parse_error, "delimiter characters must be distinct" + at_byte(pos + 3 + i),
                      i == 0 ? "MSH-1" : "MSH-2");
        }
      }
    }
  }
  m.delims_ = d;

  m.segments_.reserve(16);
  // Field starts are written through an index into a buffer sized for a
  // typical message (a field per three or four bytes: runs of empty fields
  // are common) and grown when needed; a big message (an embedded document)
  // has long fields and starts smaller.
  std::vector<std::uint32_t>& starts = m.field_starts_;
  starts.resize(s.size() < 65536 ? s.size() / 3 + 32 : s.size() / 16);
  std::size_t n_starts = 0;
  const auto push_start = [&starts, &n_starts](std::size_t at) {
    if (n_starts == starts.size()) starts.resize(starts.size() * 2);
    starts[n_starts++] = static_cast<std::uint32_t>(at);
  };
  segment_counter seen;
  // One pass over the text, sixteen bytes at a time: a block gives the
  // positions of its field separators and segment ends (CR, or LF: LF and
  // CRLF are tolerated, the LF after a CR reading as a blank line) as bits,
  // and each bit is a field start or a segment end.
  const std::size_t size = s.size();
  std::size_t seg_start = pos;  // the current segment (or blank line)
  bool in_fields = false;       // its id has been read
  segment_entry entry;
  // The id of the segment at seg_start, ending at `id_end`.
  const auto begin_segment = [&](std::size_t id_end) -> result<void> {
    const auto id = s.substr(seg_start, id_end - seg_start);
    bool id_ok = id.size() == 3;
    if (options.strict_segment_ids) {
      for (const char c : id) id_ok = id_ok && is_segment_id_char(c);
    }
    if (!id_ok) {
      return fail(errc::parse_error,
                  "segment " + std::to_string(m.segments_.size() + 1) +
                      " does not start with a three-character segment id" + at_byte(seg_start),
                  std::string(id.substr(0, std::min<std::size_t>(id.size(), 3))));
    }
    if (!m.segments_.empty() && entry_is_msh(id)) {
      return fail(errc::parse_error, "a second MSH segment: one message per frame" + at_byte(seg_start), "MSH");
    }
    entry = segment_entry{};
    entry.offset = static_cast<std::uint32_t>(seg_start);
    entry.key = segment_key(id);
    entry.header = is_header_segment(id);
    entry.seq = seen.next(entry.key);
    entry.first_field = static_cast<std::uint32_t>(n_starts);
    return {};
  };
  // The segment ends at `end` (its CR or LF, or the end of the text).
  const auto end_segment = [&](std::size_t end) {
    entry.length = static_cast<std::uint32_t>(end - seg_start);
    push_start(end + 1);
    entry.field_total = in_fields ? static_cast<std::uint32_t>(n_starts - entry.first_field - 1) : 0;
    m.segments_.push_back(entry);
    seg_start = end + 1;
    in_fields = false;
  };
  const block_scanner scan(s.data(), size, d.field);
  for (std::size_t b = pos; b < size; b += 16) {
    unsigned fields = 0;
    unsigned hits = scan.masks(b, fields);
    // A block adds at most sixteen starts: room for them once, here.
    if (n_starts + 16 >= starts.size()) starts.resize(starts.size() * 2 + 32);
    while (hits != 0) {
      if (in_fields) {
        // The separators before the segment's end (or the block's) are
        // field starts, one after the other.
        const unsigned ends = hits & ~fields;
        const unsigned before = ends != 0 ? (ends & (0u - ends)) - 1 : ~0u;
        unsigned run = hits & before;
        hits &= ~before;
        while (run != 0) {
          starts[n_starts++] = static_cast<std::uint32_t>(b + static_cast<std::size_t>(__builtin_ctz(run)) + 1);
          run &= run - 1;
        }
        if (hits == 0) break;
        const std::size_t end = b + static_cast<std::size_t>(__builtin_ctz(hits));
        hits &= hits - 1;
        end_segment(end);
        continue;
      }
      const std::size_t i = b + static_cast<std::size_t>(__builtin_ctz(hits));
      const unsigned bit = hits & (0u - hits);
      hits ^= bit;
      if ((fields & bit) != 0) {
        // MSH fields start after "MSH|" (MSH-2 first); others after "SEG|".
        if (!in_fields) {
          if (auto ok = begin_segment(i); !ok) return std::unexpected(std::move(ok.error()));
          in_fields = true;
        }
        push_start(i + 1);
      } else if (in_fields) {
        end_segment(i);
      } else if (i == seg_start) {  // blank line
        ++seg_start;
      } else {  // a segment without fields
        if (auto ok = begin_segment(i); !ok) return std::unexpected(std::move(ok.error()));
        end_segment(i);
      }
    }
  }
  if (in_fields) {
    end_segment(size);
  } else if (seg_start < size) {
    if (auto ok = begin_segment(size); !ok) return std::unexpected(std::move(ok.error()));
    end_segment(size);
  }
  starts.resize(n_starts);
  if (m.msh().field(9).empty()) {
    return fail(errc::parse_error, "required field missing: MSH-9 message type" + at_byte(m.msh().field_offset(9)),
                "MSH-9");
  }
  return m;
}

std::optional<segment_view> message::find(std::string_view id, std::size_t nth) const {
  const std::uint32_t key = segment_key(id);
  if (key == 0) return std::nullopt;  // every segment id has three characters
  for (std::size_t i = 0; i < segments_.size(); ++i) {
    if (segments_[i].key == key) {
      if (nth == 0) return segment(i);
      --nth;
    }
  }
  return std::nullopt;
}

std::vector<segment_view> message::all(std::string_view id) const {
  std::vector<segment_view> out;
  const std::uint32_t key = segment_key(id);
  if (key == 0) return out;
  for (std::size_t i = 0; i < segments_.size(); ++i) {
    if (segments_[i].key == key) out.push_back(segment(i));
  }
  return out;
}

namespace {

struct parsed_path {
  std::string_view segment;
  std::size_t seq = 1;
  std::size_t field = 0;
  std::size_t repetition = 1;
  std::size_t component = 0;
  std::size_t subcomponent = 0;
};

bool read_number(std::string_view& s, std::size_t& out) {
  const auto* b = s.data();
  const auto* e = s.data() + s.size();
  const auto r = std::from_chars(b, e, out);
  if (r.ec != std::errc{} || r.ptr == b) return false;
  s.remove_prefix(static_cast<std::size_t>(r.ptr - b));
  return true;
}

bool read_bracket(std::string_view& s, std::size_t& out) {
  if (s.empty() || s[0] != '[') return true;
  s.remove_prefix(1);
  if (!read_number(s, out) || s.empty() || s[0] != ']' || out == 0) return false;
  s.remove_prefix(1);
  return true;
}

std::optional<parsed_path> parse_path(std::string_view s) {
  parsed_path p;
  if (s.size() < 3) return std::nullopt;
  p.segment = s.substr(0, 3);
  s.remove_prefix(3);
  if (!read_bracket(s, p.seq)) return std::nullopt;
  if (s.empty()) return p;
  if (s[0] != '-') return std::nullopt;
  s.remove_prefix(1);
  if (!read_number(s, p.field) || p.field == 0) return std::nullopt;
  if (!read_bracket(s, p.repetition)) return std::nullopt;
  if (s.empty()) return p;
  if (s[0] != '.') return std::nullopt;
  s.remove_prefix(1);
  if (!read_number(s, p.component) || p.component == 0) return std::nullopt;
  if (s.empty()) return p;
  if (s[0] != '.') return std::nullopt;
  s.remove_prefix(1);
  if (!read_number(s, p.subcomponent) || p.subcomponent == 0 || !s.empty()) return std::nullopt;
  return p;
}

}  // namespace

std::string_view message::get_raw(std::string_view path) const {
  const auto p = parse_path(path);
  if (!p || p->field == 0) return {};
  const auto seg = find(p->segment, p->seq - 1);
  if (!seg) return {};
  const auto f = seg->field(p->field);
  if (p->component == 0 && p->repetition == 1 && path.find('[') == std::string_view::npos) return f.raw();
  const auto r = f.repetition(p->repetition - 1);
  if (p->component == 0) return r.raw();
  if (p->subcomponent == 0) return r.component_raw(p->component);
  return r.subcomponent_raw(p->component, p->subcomponent);
}

std::string message::get(std::string_view path) const {
  const auto p = parse_path(path);
  if (!p || p->field == 0) return {};
  const auto seg = find(p->segment, p->seq - 1);
  if (!seg) return {};
  const auto f = seg->field(p->field);
  const auto r = f.repetition(p->repetition - 1);
  if (p->component == 0) return r.text();
  return r.component(p->component, p->subcomponent);
}

}  // namespace yilian::hl7v2
