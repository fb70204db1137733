#include "adapters/hl7v2/message.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <limits>

namespace yilian::hl7v2 {
namespace {

// Position of `c` in [from, s.size()), or npos.
std::size_t find_char(std::string_view s, char c, std::size_t from = 0) {
  if (from >= s.size()) return std::string_view::npos;
  const void* p = std::memchr(s.data() + from, c, s.size() - from);
  return p ? static_cast<std::size_t>(static_cast<const char*>(p) - s.data()) : std::string_view::npos;
}

// The n-th (1-based) piece of `s` split on `sep`; empty when absent.
std::string_view nth_piece(std::string_view s, char sep, std::size_t n) {
  if (n == 0) return {};
  std::size_t start = 0;
  for (std::size_t i = 1; i < n; ++i) {
    const auto p = find_char(s, sep, start);
    if (p == std::string_view::npos) return {};
    start = p + 1;
  }
  const auto end = find_char(s, sep, start);
  return s.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
}

std::size_t count_pieces(std::string_view s, char sep) {
  if (s.empty()) return 0;
  return static_cast<std::size_t>(std::count(s.begin(), s.end(), sep)) + 1;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

bool is_segment_id_char(char c) { return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

std::string at_byte(std::size_t offset) { return " at byte " + std::to_string(offset); }

}  // namespace

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

std::string_view repetition_view::component_raw(std::size_t c) const {
  if (d_ == nullptr) return c == 1 ? raw_ : std::string_view{};
  return nth_piece(raw_, d_->component, c);
}

std::string_view repetition_view::subcomponent_raw(std::size_t c, std::size_t s) const {
  const auto comp = component_raw(c);
  if (d_ == nullptr) return s <= 1 ? comp : std::string_view{};
  return nth_piece(comp, d_->subcomponent, s);
}

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

repetition_view field_view::repetition(std::size_t i) const {
  if (d_ == nullptr) return i == 0 ? repetition_view{raw_, nullptr} : repetition_view{};
  return repetition_view{nth_piece(raw_, d_->repetition, i + 1), d_};
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
// MSH and the batch/file headers number their fields from the separator:
// MSH-1 is the separator itself and MSH-2 the encoding characters.
bool is_header_segment(std::string_view id) { return id == "MSH" || id == "BHS" || id == "FHS"; }
}  // namespace

std::size_t segment_view::field_count() const {
  return is_header_segment(id_) ? field_total_ + 1 : field_total_;
}

field_view segment_view::field(std::size_t n) const {
  if (msg_ == nullptr || n == 0) return {};
  const bool header = is_header_segment(id_);
  if (header && n == 1) return field_view{raw_.substr(3, 1), nullptr};
  const std::size_t k = header ? n - 2 : n - 1;  // 0-based stored field
  if (k >= field_total_) return {};
  const auto& starts = msg_->field_starts_;
  const std::size_t begin = starts[first_field_ + k];
  const std::size_t end = starts[first_field_ + k + 1] - 1;
  const std::string_view raw{msg_->text_.data() + begin, end - begin};
  if (header && n == 2) return field_view{raw, nullptr};  // encoding characters are literal
  return field_view{raw, &msg_->delims_};
}

std::size_t segment_view::field_offset(std::size_t n) const {
  if (msg_ == nullptr) return 0;
  const bool header = is_header_segment(id_);
  if (n == 0) return offset_;
  if (header && n == 1) return offset_ + 3;
  const std::size_t k = header ? n - 2 : n - 1;
  if (k >= field_total_) return offset_ + raw_.size();
  return msg_->field_starts_[first_field_ + k];
}

location segment_view::at(std::size_t field_no, std::size_t rep, std::size_t comp) const {
  return location{.segment = std::string(id_),
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
  m.field_starts_.reserve(s.size() / 6 + 16);
  // Occurrence counters for segment ids seen so far (small linear table).
  std::vector<std::pair<std::string_view, std::uint32_t>> seen;
  // Segment terminator: CR, tolerating LF and CRLF. The next CR and the next
  // LF are each found with memchr and remembered until passed, so a message
  // that uses only one of them is still scanned once, not once per segment.
  const char* const base = s.data();
  const char* const stop = base + s.size();
  const char* next_cr = nullptr;  // nullptr: not looked for yet; stop: none left
  const char* next_lf = nullptr;
  const auto next_of = [stop](char c, const char*& cached, const char* from) {
    if (cached == nullptr || cached < from) {
      const void* hit = std::memchr(from, c, static_cast<std::size_t>(stop - from));
      cached = hit == nullptr ? stop : static_cast<const char*>(hit);
    }
    return cached;
  };
  while (pos < s.size()) {
    const std::size_t end =
        static_cast<std::size_t>(std::min(next_of('\r', next_cr, base + pos), next_of('\n', next_lf, base + pos)) - base);
    if (end == pos) {  // blank line
      ++pos;
      continue;
    }
    const auto line = s.substr(pos, end - pos);
    const auto sep = find_char(line, d.field);
    const auto id = line.substr(0, sep == std::string_view::npos ? line.size() : sep);
    bool id_ok = id.size() == 3;
    if (options.strict_segment_ids) {
      for (const char c : id) id_ok = id_ok && is_segment_id_char(c);
    }
    if (!id_ok) {
      return fail(errc::parse_error,
                  "segment " + std::to_string(m.segments_.size() + 1) +
                      " does not start with a three-character segment id" + at_byte(pos),
                  std::string(id.substr(0, std::min<std::size_t>(id.size(), 3))));
    }
    if (!m.segments_.empty() && is_header_segment(id) && id == "MSH") {
      return fail(errc::parse_error, "a second MSH segment: one message per frame" + at_byte(pos), "MSH");
    }
    std::uint32_t seq = 1;
    {
      auto it = std::find_if(seen.begin(), seen.end(), [&](const auto& e) { return e.first == id; });
      if (it == seen.end()) seen.emplace_back(id, 1);
      else seq = ++it->second;
    }
    segment_entry entry;
    entry.offset = static_cast<std::uint32_t>(pos);
    entry.length = static_cast<std::uint32_t>(line.size());
    entry.seq = seq;
    entry.first_field = static_cast<std::uint32_t>(m.field_starts_.size());
    if (sep != std::string_view::npos) {
      // MSH fields start after "MSH|" (MSH-2 first); others after "SEG|".
      std::size_t f = sep + 1;
      m.field_starts_.push_back(static_cast<std::uint32_t>(pos + f));
      while (true) {
        const auto p = find_char(line, d.field, f);
        if (p == std::string_view::npos) break;
        m.field_starts_.push_back(static_cast<std::uint32_t>(pos + p + 1));
        f = p + 1;
      }
      m.field_starts_.push_back(static_cast<std::uint32_t>(pos + line.size() + 1));
      entry.field_total = static_cast<std::uint32_t>(m.field_starts_.size() - entry.first_field - 1);
    } else {
      m.field_starts_.push_back(static_cast<std::uint32_t>(pos + line.size() + 1));
      entry.field_total = 0;
    }
    m.segments_.push_back(entry);
    pos = end + 1;
  }
  if (m.msh().field(9).empty()) {
    return fail(errc::parse_error, "required field missing: MSH-9 message type" + at_byte(m.msh().field_offset(9)),
                "MSH-9");
  }
  return m;
}

segment_view message::segment(std::size_t i) const {
  segment_view v;
  if (i >= segments_.size()) return v;
  const auto& e = segments_[i];
  v.msg_ = this;
  v.raw_ = std::string_view(text_).substr(e.offset, e.length);
  v.id_ = v.raw_.substr(0, 3);
  v.offset_ = e.offset;
  v.seq_ = e.seq;
  v.index_ = i;
  v.first_field_ = e.first_field;
  v.field_total_ = e.field_total;
  return v;
}

std::optional<segment_view> message::find(std::string_view id, std::size_t nth) const {
  for (std::size_t i = 0; i < segments_.size(); ++i) {
    if (std::string_view(text_).substr(segments_[i].offset, 3) == id && segments_[i].length >= 3) {
      if (nth == 0) return segment(i);
      --nth;
    }
  }
  return std::nullopt;
}

std::vector<segment_view> message::all(std::string_view id) const {
  std::vector<segment_view> out;
  for (std::size_t i = 0; i < segments_.size(); ++i) {
    if (std::string_view(text_).substr(segments_[i].offset, 3) == id) out.push_back(segment(i));
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
