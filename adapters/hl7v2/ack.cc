#include "adapters/hl7v2/ack.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdio>
#include <optional>

namespace yilian::hl7v2 {

namespace {

constexpr std::size_t max_raw_value = 256;

bool is_upper_or_digit(char c) { return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alnum(char c) { return is_upper_or_digit(c) || (c >= 'a' && c <= 'z'); }

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  for (;;) {
    const auto at = s.find(sep);
    out.push_back(s.substr(0, at));
    if (at == std::string_view::npos) return out;
    s.remove_prefix(at + 1);
  }
}

std::string_view nth(const std::vector<std::string_view>& v, std::size_t i) {
  return i < v.size() ? v[i] : std::string_view{};
}

// Component c (1-based) of the first repetition of a raw field.
std::string_view component_of(std::string_view field, std::size_t c, const delimiters& d) {
  field = field.substr(0, field.find(d.repetition));
  return nth(split(field, d.component), c - 1);
}

// Delimiters fit for writing: four distinct characters, none of them the field
// separator, a letter or a digit, CR or LF. Anything else: the standard set.
bool usable(const delimiters& d) {
  const std::array<char, 5> cs{d.field, d.component, d.repetition, d.escape, d.subcomponent};
  for (std::size_t i = 0; i < cs.size(); ++i) {
    const char c = cs[i];
    if (c == '\0' || c == '\r' || c == '\n' || is_alnum(c) || static_cast<unsigned char>(c) < 0x20) return false;
    for (std::size_t j = i + 1; j < cs.size(); ++j) {
      if (cs[j] == c) return false;
    }
  }
  if (d.truncation != '\0' && (std::find(cs.begin(), cs.end(), d.truncation) != cs.end() || is_alnum(d.truncation) ||
                               static_cast<unsigned char>(d.truncation) < 0x20)) {
    return false;
  }
  return true;
}

// Reads the delimiters from "MSH|^~\&|..." (s starts at "MSH").
std::optional<delimiters> delimiters_at(std::string_view s) {
  if (s.size() < 4) return std::nullopt;
  delimiters d;
  d.field = s[3];
  const auto rest = s.substr(4);
  const auto end = std::min(rest.find(d.field), rest.find_first_of("\r\n"));
  const auto enc = rest.substr(0, end);
  if (enc.size() < 4 || enc.size() > 5) return std::nullopt;
  d.component = enc[0];
  d.repetition = enc[1];
  d.escape = enc[2];
  d.subcomponent = enc[3];
  d.truncation = enc.size() == 5 ? enc[4] : '\0';
  if (!usable(d)) return std::nullopt;
  return d;
}

std::string clean(std::string_view v) {
  std::string out;
  out.reserve(std::min(v.size(), max_raw_value));
  for (const char c : v) {
    if (out.size() == max_raw_value) break;
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) continue;
    out += c;
  }
  return out;
}

struct version_number {
  int major = 2;
  int minor = 5;
};

// "2.5.1", "2.4^CHN" -> {2, 5}, {2, 4}. Unreadable -> 2.5, what we write by default.
version_number version_of(std::string_view raw, const delimiters& d) {
  const auto v = raw.substr(0, std::min(raw.find(d.component), raw.find(d.repetition)));
  version_number out;
  int major = 0;
  int minor = 0;
  const char* p = v.data();
  const char* end = v.data() + v.size();
  auto r1 = std::from_chars(p, end, major);
  if (r1.ec != std::errc{} || r1.ptr == end || *r1.ptr != '.') return out;
  auto r2 = std::from_chars(r1.ptr + 1, end, minor);
  if (r2.ec != std::errc{}) return out;
  out.major = major;
  out.minor = minor;
  return out;
}

bool older_than(version_number v, int major, int minor) {
  return v.major < major || (v.major == major && v.minor < minor);
}

std::string timestamp_text(std::chrono::system_clock::time_point tp, std::chrono::minutes offset) {
  using namespace std::chrono;
  const auto local = floor<seconds>(tp) + offset;
  const auto day = floor<days>(local);
  const year_month_day ymd{day};
  const hh_mm_ss hms{local - day};
  const auto off = offset.count();
  const auto abs_off = off < 0 ? -off : off;
  std::array<char, 40> buf{};
  std::snprintf(buf.data(), buf.size(), "%04d%02u%02u%02d%02d%02d%c%02d%02d", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                static_cast<int>(hms.hours().count()), static_cast<int>(hms.minutes().count()),
                static_cast<int>(hms.seconds().count()), off < 0 ? '-' : '+', static_cast<int>(abs_off / 60),
                static_cast<int>(abs_off % 60));
  return buf.data();
}

// ERR-2 (ERL): segment^sequence^field^repetition^component^subcomponent, up
// to the last part known; a repetition or component left out before a known
// part is 1.
std::string erl_text(const location& at, const delimiters& d) {
  if (at.segment.empty()) return {};
  std::string out = at.segment;
  out += d.component;
  out += std::to_string(at.segment_seq == 0 ? 1 : at.segment_seq);
  const std::array<std::uint32_t, 4> parts{at.field, at.repetition, at.component, at.subcomponent};
  std::size_t last = parts.size();
  while (last > 0 && parts[last - 1] == 0) --last;
  for (std::size_t i = 0; i < last; ++i) {
    out += d.component;
    out += std::to_string(parts[i] == 0 ? 1 : parts[i]);
  }
  return out;
}

// ERR-1 (ELD, v2.3/2.4): segment^sequence^field^code&description&HL70357.
std::string eld_text(const ack_error& e, const delimiters& d) {
  std::string out;
  if (!e.where.segment.empty()) {
    out += e.where.segment;
    out += d.component;
    out += std::to_string(e.where.segment_seq == 0 ? 1 : e.where.segment_seq);
    out += d.component;
    if (e.where.field != 0) out += std::to_string(e.where.field);
  } else {
    out += d.component;
    out += d.component;
  }
  out += d.component;
  out += escape(e.code, d);
  out += d.subcomponent;
  out += escape(hl7_error_description(e.code), d);
  out += d.subcomponent;
  out += "HL70357";
  return out;
}

// Writes fields joined by the field separator, without trailing empty ones.
void append_segment(std::string& out, std::string_view id, std::vector<std::string> fields, char sep) {
  while (!fields.empty() && fields.back().empty()) fields.pop_back();
  out += id;
  for (const auto& f : fields) {
    out += sep;
    out += f;
  }
  out += '\r';
}

bool starts_with_word(std::string_view text, std::string_view word) {
  if (text.size() < word.size()) return false;
  for (std::size_t i = 0; i < word.size(); ++i) {
    const char a = (text[i] >= 'A' && text[i] <= 'Z') ? static_cast<char>(text[i] - 'A' + 'a') : text[i];
    if (a != word[i]) return false;
  }
  return true;
}

std::string code_0357(const error& e, const location& at) {
  switch (e.code) {
    case errc::parse_error:
      return at.field != 0 ? "102" : "100";
    case errc::validation_failed:
      if (starts_with_word(e.message, "required")) return "101";
      if (starts_with_word(e.message, "unknown code")) return "103";
      return "207";
    case errc::unsupported:
      if (at.segment == "MSH") {
        if (at.field == 9) return at.component == 2 ? "201" : "200";
        if (at.field == 11) return "202";
        if (at.field == 12) return "203";
      }
      return "207";
    case errc::conflict:
    case errc::already_exists:
      return "205";
    case errc::not_found:
      return "204";
    case errc::invalid_argument:
    case errc::unavailable:
    case errc::timeout:
    case errc::overloaded:
    case errc::io_error:
    case errc::corrupt:
    case errc::unauthenticated:
    case errc::permission_denied:
    case errc::config_error:
    case errc::cancelled:
    case errc::internal:
      return "207";
  }
  return "207";
}

bool parse_number(std::string_view s, std::size_t& i, std::uint32_t& out) {
  const std::size_t start = i;
  while (i < s.size() && is_digit(s[i])) ++i;
  if (i == start || i - start > 6) return false;
  std::uint32_t v = 0;
  std::from_chars(s.data() + start, s.data() + i, v);
  out = v;
  return v != 0;
}

bool parse_bracket(std::string_view s, std::size_t& i, std::uint32_t& out) {
  if (i >= s.size() || s[i] != '[') return true;
  ++i;
  if (!parse_number(s, i, out)) return false;
  if (i >= s.size() || s[i] != ']') return false;
  ++i;
  return true;
}

}  // namespace

// ---- headers of received messages -------------------------------------------------

ack_header header_from(const message& msg) {
  const auto msh = msg.msh();
  const auto raw = [&](std::size_t n) { return std::string(msh.field(n).raw()); };
  ack_header h;
  h.delims = msg.delims();
  h.sending_application = raw(3);
  h.sending_facility = raw(4);
  h.receiving_application = raw(5);
  h.receiving_facility = raw(6);
  h.message_code = std::string(msh.field(9).component_raw(1));
  h.trigger = std::string(msh.field(9).component_raw(2));
  h.control_id = raw(10);
  h.processing_id = raw(11);
  h.version = raw(12);
  h.accept_ack_type = raw(15);
  h.application_ack_type = raw(16);
  h.charset = raw(18);
  h.has_msh = true;
  return h;
}

ack_header header_from_raw(std::string_view bytes) {
  ack_header h;
  h.has_msh = false;
  // Moved in rather than assigned from literals: g++ 12 at -O3 reports a
  // bogus -Wrestrict for short literal assignment (GCC bug 105329).
  h.version = std::string("2.5");
  h.processing_id = std::string("P");

  // The MSH: at the start, after a segment terminator, or anywhere at all.
  std::size_t at = std::string_view::npos;
  if (bytes.starts_with("MSH")) {
    at = 0;
  } else {
    for (std::size_t from = 0; (from = bytes.find("MSH", from)) != std::string_view::npos; ++from) {
      if (from > 0 && (bytes[from - 1] == '\r' || bytes[from - 1] == '\n')) {
        at = from;
        break;
      }
    }
    if (at == std::string_view::npos) at = bytes.find("MSH");
  }
  if (at == std::string_view::npos) return h;
  auto seg = bytes.substr(at);
  seg = seg.substr(0, seg.find_first_of("\r\n"));
  const auto d = delimiters_at(seg);
  if (!d) return h;

  const auto fields = split(seg, d->field);  // fields[k] is MSH-(k+1) for k >= 1
  const auto f = [&](std::size_t n) { return clean(nth(fields, n - 1)); };
  h.delims = *d;
  h.has_msh = true;
  h.sending_application = f(3);
  h.sending_facility = f(4);
  h.receiving_application = f(5);
  h.receiving_facility = f(6);
  const auto msh9 = nth(fields, 8);
  h.message_code = clean(component_of(msh9, 1, *d));
  h.trigger = clean(component_of(msh9, 2, *d));
  h.control_id = f(10);
  if (auto p = f(11); !p.empty()) h.processing_id = std::move(p);
  if (auto v = f(12); !v.empty()) h.version = std::move(v);
  h.accept_ack_type = f(15);
  h.application_ack_type = f(16);
  h.charset = f(18);
  return h;
}

// ---- codes ---------------------------------------------------------------------------

std::string_view to_string(ack_code code) noexcept {
  switch (code) {
    case ack_code::AA: return "AA";
    case ack_code::AE: return "AE";
    case ack_code::AR: return "AR";
    case ack_code::CA: return "CA";
    case ack_code::CE: return "CE";
    case ack_code::CR: return "CR";
  }
  return "AE";
}

bool is_commit(ack_code code) noexcept { return code == ack_code::CA || code == ack_code::CE || code == ack_code::CR; }

bool is_positive(ack_code code) noexcept { return code == ack_code::AA || code == ack_code::CA; }

std::string_view hl7_error_description(std::string_view code) noexcept {
  static constexpr std::array<std::pair<std::string_view, std::string_view>, 15> table{{
      {"0", "Message accepted"},
      {"100", "Segment sequence error"},
      {"101", "Required field missing"},
      {"102", "Data type error"},
      {"103", "Table value not found"},
      {"104", "Value too long"},
      {"200", "Unsupported message type"},
      {"201", "Unsupported event code"},
      {"202", "Unsupported processing id"},
      {"203", "Unsupported version id"},
      {"204", "Unknown key identifier"},
      {"205", "Duplicate key identifier"},
      {"206", "Application record locked"},
      {"207", "Application internal error"},
      {"199", "Other HL7 error"},
  }};
  for (const auto& [c, text] : table) {
    if (c == code) return text;
  }
  return {};
}

location parse_location(std::string_view where) {
  location loc;
  const std::string_view s = where;
  std::size_t i = 0;
  if (s.size() < 3 || !(s[0] >= 'A' && s[0] <= 'Z') || !is_upper_or_digit(s[1]) || !is_upper_or_digit(s[2])) {
    return {};
  }
  loc.segment = std::string(s.substr(0, 3));
  loc.segment_seq = 1;
  i = 3;
  if (!parse_bracket(s, i, loc.segment_seq)) return {};
  if (i < s.size() && s[i] == '-') {
    ++i;
    if (!parse_number(s, i, loc.field)) return {};
    if (!parse_bracket(s, i, loc.repetition)) return {};
    if (i < s.size() && s[i] == '.') {
      ++i;
      if (!parse_number(s, i, loc.component)) return {};
      if (i < s.size() && s[i] == '.') {
        ++i;
        if (!parse_number(s, i, loc.subcomponent)) return {};
      }
    }
  }
  // Whatever follows must not continue a path ("PIDX", "PID-3x").
  if (i < s.size() && (is_alnum(s[i]) || s[i] == '-' || s[i] == '.' || s[i] == '[' || s[i] == ']')) return {};
  return loc;
}

ack_error to_ack_error(const error& e) {
  ack_error out;
  out.where = parse_location(e.where);
  out.code = code_0357(e, out.where);
  out.text = e.message;
  out.severity = 'E';
  return out;
}

ack_code ack_code_for(const error& e, bool enhanced_commit) {
  bool reject = e.retriable;
  switch (e.code) {
    case errc::unavailable:
    case errc::timeout:
    case errc::overloaded:
    case errc::io_error:
    case errc::cancelled:
    case errc::unsupported:
    case errc::permission_denied:
    case errc::unauthenticated:
      reject = true;
      break;
    case errc::invalid_argument:
    case errc::parse_error:
    case errc::validation_failed:
    case errc::not_found:
    case errc::already_exists:
    case errc::conflict:
    case errc::corrupt:
    case errc::config_error:
    case errc::internal:
      break;
  }
  if (enhanced_commit) return reject ? ack_code::CR : ack_code::CE;
  return reject ? ack_code::AR : ack_code::AE;
}

// ---- building ----------------------------------------------------------------------------

namespace {

// MSA and ERR as every answer writes them; `acknowledged` is already escaped
// (build_response copies the received MSH-10 as sent).
void append_msa_and_err(std::string& out, ack_code code, std::string acknowledged, std::span<const ack_error> errors,
                        version_number version, const delimiters& d) {
  const char fs = d.field;
  std::vector<std::string> msa{std::string(to_string(code)), std::move(acknowledged)};
  if (older_than(version, 2, 7) && !errors.empty() && !errors.front().text.empty()) {
    msa.push_back(escape(errors.front().text, d));
  }
  append_segment(out, "MSA", std::move(msa), fs);

  if (errors.empty()) return;
  if (older_than(version, 2, 5)) {
    std::string eld;
    for (const auto& e : errors) {
      if (!eld.empty()) eld += d.repetition;
      eld += eld_text(e, d);
    }
    append_segment(out, "ERR", {std::move(eld)}, fs);
    return;
  }
  for (const auto& e : errors) {
    std::string err3 = escape(e.code, d);
    err3 += d.component;
    err3 += escape(hl7_error_description(e.code), d);
    err3 += d.component;
    err3 += "HL70357";
    const char sev = (e.severity == 'W' || e.severity == 'I' || e.severity == 'F') ? e.severity : 'E';
    std::string err5;
    if (!e.application_code.empty()) {
      err5 = escape(e.application_code, d);
      err5 += d.component;
      err5 += d.component;
      err5 += "99YLN";
    }
    append_segment(out, "ERR",
                   {{}, erl_text(e.where, d), std::move(err3), std::string(1, sev), std::move(err5), {}, {},
                    escape(e.text, d)},
                   fs);
  }
}

}  // namespace

std::string build_ack(const ack_header& received, ack_code code, std::span<const ack_error> errors,
                      const ack_build_options& opts) {
  return build_response(received, "ACK", received.trigger, "ACK", code, errors, opts);
}

delimiters reply_delimiters(const ack_header& received) {
  return usable(received.delims) ? received.delims : delimiters{};
}

std::string build_response(const ack_header& received, std::string_view message_code, std::string_view trigger,
                           std::string_view structure, ack_code code, std::span<const ack_error> errors,
                           const ack_build_options& opts) {
  const delimiters d = reply_delimiters(received);
  const char fs = d.field;
  const auto version = version_of(received.version, d);

  std::string encoding;
  encoding += d.component;
  encoding += d.repetition;
  encoding += d.escape;
  encoding += d.subcomponent;
  if (d.truncation != '\0') encoding += d.truncation;

  std::string msh9(message_code);
  msh9 += d.component;
  msh9 += trigger;
  msh9 += d.component;
  msh9 += structure;

  // MSH-1 is the separator itself: the fields below start at MSH-2.
  std::vector<std::string> msh{
      encoding,
      received.receiving_application.empty() ? escape(opts.application, d) : received.receiving_application,
      received.receiving_facility.empty() ? escape(opts.facility, d) : received.receiving_facility,
      received.sending_application,
      received.sending_facility,
      timestamp_text(opts.timestamp, opts.utc_offset),
      {},  // MSH-8 security
      std::move(msh9),
      escape(opts.control_id, d),
      received.processing_id.empty() ? std::string("P") : received.processing_id,
      received.version.empty() ? std::string("2.5") : received.version,
      {}, {}, {}, {}, {},  // MSH-13..17
      received.charset,
  };
  std::string out;
  out.reserve(256 + errors.size() * 96);
  // "MSH" + separator + MSH-2 ...: the separator is MSH-1, so writing the
  // fields from MSH-2 on after the id gives exactly the standard layout.
  append_segment(out, "MSH", std::move(msh), fs);
  append_msa_and_err(out, code, received.control_id, errors, version, d);
  return out;
}

std::string msa_and_err_segments(ack_code code, std::string_view acknowledged_control_id,
                                 std::span<const ack_error> errors, std::string_view version, const delimiters& d) {
  std::string out;
  append_msa_and_err(out, code, escape(acknowledged_control_id, d), errors, version_of(version, d), d);
  return out;
}

ack_error refusal_error(std::string_view refusal_code, std::string_view text, std::string_view message_code) {
  const bool referral_message = message_code == "REF" || message_code == "RRI";
  const bool order_message = message_code == "OMG" || message_code == "ORM" || message_code == "OMI";
  auto at = [](std::string_view seg, std::uint32_t number) {
    return location{.segment = std::string(seg), .segment_seq = 1, .field = number};
  };
  // Member by member: see pix.cc (g++ 12 -Wmaybe-uninitialized at -O3).
  ack_error e;
  e.code = "207";
  e.text = std::string(text);
  e.severity = 'E';
  e.application_code = std::string(refusal_code);
  if (refusal_code == "not_found" || refusal_code == "duplicate_referral_id") {
    e.code = refusal_code == "not_found" ? "204" : "205";
    if (referral_message) e.where = at("RF1", 6);
    if (order_message) e.where = at("ORC", 2);
  } else if (refusal_code == "unknown_linked_referral") {
    e.code = "204";
    if (referral_message) e.where = at("RF1", 11);
  } else if (refusal_code == "unknown_hospital") {
    e.code = "204";
  } else if (refusal_code == "reason_required") {
    e.code = "101";
    if (referral_message) e.where = at("RF1", 10);
  }
  return e;
}

// ---- reading ACKs --------------------------------------------------------------------------

result<parsed_ack> parse_ack(std::string_view payload) {
  std::size_t start = 0;
  while (start < payload.size() && (payload[start] == '\r' || payload[start] == '\n' || payload[start] == ' ')) {
    ++start;
  }
  const auto text = payload.substr(start);
  if (!text.starts_with("MSH")) {
    return fail(errc::parse_error, "not an HL7 v2 message: it does not start with MSH",
                "byte " + std::to_string(start));
  }
  const auto d = delimiters_at(text);
  if (!d) return fail(errc::parse_error, "MSH-1/MSH-2 do not declare usable delimiters", "MSH-2");

  std::vector<std::string_view> segments;
  for (auto seg : split(text, '\r')) {
    for (auto part : split(seg, '\n')) {
      if (!part.empty()) segments.push_back(part);
    }
  }
  const auto seg_fields = [&](std::string_view seg) { return split(seg, d->field); };
  const auto value = [&](std::string_view raw) { return unescape(raw.substr(0, raw.find(d->repetition)), *d); };

  parsed_ack out;
  const auto msh = seg_fields(segments.front());
  out.control_id = value(nth(msh, 9));

  std::optional<std::vector<std::string_view>> msa;
  std::vector<std::string> texts;
  std::vector<std::string> descriptions;
  for (const auto seg : segments) {
    if (seg.size() < 3) continue;
    const auto id = seg.substr(0, 3);
    if (seg.size() > 3 && seg[3] != d->field) continue;
    if (id == "MSA" && !msa) {
      msa = seg_fields(seg);
    } else if (id == "ERR") {
      const auto f = seg_fields(seg);
      if (auto t = value(nth(f, 8)); !t.empty()) texts.push_back(std::move(t));
      const auto err3 = nth(f, 3);
      if (auto c = unescape(component_of(err3, 1, *d), *d); !c.empty()) {
        if (out.error_code.empty()) out.error_code = c;
        if (auto t = unescape(component_of(err3, 2, *d), *d); !t.empty()) descriptions.push_back(std::move(t));
      }
      // ERR-1 (ELD) as v2.3/2.4 write it, every repetition.
      for (const auto rep : split(nth(f, 1), d->repetition)) {
        const auto ce = nth(split(rep, d->component), 3);
        const auto parts = split(ce, d->subcomponent);
        if (auto c = unescape(nth(parts, 0), *d); !c.empty()) {
          if (out.error_code.empty()) out.error_code = c;
          if (auto t = unescape(nth(parts, 1), *d); !t.empty()) descriptions.push_back(std::move(t));
        }
      }
    }
  }
  if (!msa) return fail(errc::validation_failed, "the reply has no MSA segment: not an acknowledgment", "MSA");

  std::string_view code = nth(*msa, 1);
  code = code.substr(0, code.find(d->component));
  while (!code.empty() && code.back() == ' ') code.remove_suffix(1);
  static constexpr std::array<std::pair<std::string_view, ack_code>, 6> codes{{
      {"AA", ack_code::AA}, {"AE", ack_code::AE}, {"AR", ack_code::AR},
      {"CA", ack_code::CA}, {"CE", ack_code::CE}, {"CR", ack_code::CR},
  }};
  const auto found = std::find_if(codes.begin(), codes.end(), [&](const auto& p) { return p.first == code; });
  if (found == codes.end()) {
    return fail(errc::validation_failed,
                "MSA-1 \"" + clean(code.substr(0, 8)) + "\" is not an acknowledgment code (HL7 table 0008)", "MSA-1");
  }
  out.code = found->second;
  out.acknowledged_control_id = value(nth(*msa, 2));
  if (out.error_code.empty()) out.error_code = unescape(component_of(nth(*msa, 6), 1, *d), *d);

  const auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& t : v) {
      if (!s.empty()) s += "; ";
      s += t;
    }
    return s;
  };
  if (!texts.empty()) {
    out.text = join(texts);
  } else if (auto t = value(nth(*msa, 3)); !t.empty()) {
    out.text = std::move(t);
  } else {
    out.text = join(descriptions);
  }
  return out;
}

}  // namespace yilian::hl7v2
