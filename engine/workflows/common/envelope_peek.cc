#include "engine/workflows/common/envelope_peek.h"

#include <algorithm>
#include <cstdint>

namespace yilian::workflows {
namespace {

constexpr std::uint32_t kEventId = 1;
constexpr std::uint32_t kType = 2;
constexpr std::uint32_t kSource = 6;
constexpr std::uint32_t kSourceHospital = 1;

// A cursor over protobuf wire format.
struct wire {
  std::string_view in;
  std::size_t at = 0;

  bool done() const { return at >= in.size(); }

  std::optional<std::uint64_t> varint() {
    std::uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
      if (at >= in.size()) return std::nullopt;
      const auto byte = static_cast<std::uint8_t>(in[at++]);
      v |= static_cast<std::uint64_t>(byte & 0x7fU) << shift;
      if ((byte & 0x80U) == 0) return v;
    }
    return std::nullopt;
  }

  // The next field: its number and, for length-delimited fields, its bytes,
  // for varints, their value (fixed-width fields are skipped). nullopt on
  // malformed input.
  struct field {
    std::uint32_t number = 0;
    std::uint32_t wire_type = 0;
    std::string_view bytes;
    std::uint64_t value = 0;  // varints (wire type 0)
  };
  std::optional<field> next() {
    const auto tag = varint();
    if (!tag || *tag > 0xffffffffULL) return std::nullopt;
    field f{.number = static_cast<std::uint32_t>(*tag >> 3U), .wire_type = static_cast<std::uint32_t>(*tag & 7U)};
    if (f.number == 0) return std::nullopt;
    switch (f.wire_type) {
      case 0: {
        const auto v = varint();
        if (!v) return std::nullopt;
        f.value = *v;
        return f;
      }
      case 1:
        if (in.size() - at < 8) return std::nullopt;
        at += 8;
        return f;
      case 5:
        if (in.size() - at < 4) return std::nullopt;
        at += 4;
        return f;
      case 2: {
        const auto n = varint();
        if (!n || *n > in.size() - at) return std::nullopt;
        f.bytes = in.substr(at, static_cast<std::size_t>(*n));
        at += static_cast<std::size_t>(*n);
        return f;
      }
      default:  // groups (3, 4) are not in our schemas; 6 and 7 do not exist
        return std::nullopt;
    }
  }
};

std::optional<std::string_view> hospital_of(std::string_view source) {
  wire w{source};
  std::string_view hospital;
  while (!w.done()) {
    const auto f = w.next();
    if (!f) return std::nullopt;
    if (f->number == kSourceHospital && f->wire_type == 2) hospital = f->bytes;  // last one wins, as protobuf's
  }
  return hospital;
}

}  // namespace

std::optional<envelope_head> peek_envelope(std::string_view bytes, bool with_source_hospital) {
  wire w{bytes};
  envelope_head head;
  bool have_id = false, have_type = false, have_source = !with_source_hospital;
  while (!w.done() && !(have_id && have_type && have_source)) {
    const auto f = w.next();
    if (!f) return std::nullopt;
    if (f->wire_type != 2) continue;
    // The first occurrence, as the header says (and as peek_type reads the type).
    if (f->number == kEventId && !have_id) {
      head.event_id = f->bytes;
      have_id = true;
    } else if (f->number == kType && !have_type) {
      head.type = f->bytes;
      have_type = true;
    } else if (f->number == kSource && with_source_hospital && !have_source) {
      const auto h = hospital_of(f->bytes);
      if (!h) return std::nullopt;
      head.source_hospital = *h;
      have_source = true;
    }
  }
  return head;
}

std::string_view peek_type(std::string_view bytes) {
  wire w{bytes};
  while (!w.done()) {
    const auto f = w.next();
    if (!f) return {};
    if (f->number == kType && f->wire_type == 2) return f->bytes;
  }
  return {};
}

bool peek_fields(std::string_view message, std::span<const std::uint32_t> numbers, std::span<peeked_field> out) {
  std::fill(out.begin(), out.end(), peeked_field{});
  std::size_t missing = std::min(numbers.size(), out.size());
  wire w{message};
  while (missing > 0 && !w.done()) {
    const auto f = w.next();
    if (!f) return false;
    for (std::size_t i = 0; i < numbers.size() && i < out.size(); ++i) {
      if (numbers[i] != f->number || out[i].present) continue;
      out[i].present = true;
      --missing;
      out[i].bytes = f->bytes;
      out[i].value = f->value;
    }
  }
  return true;
}

std::optional<std::string_view> peek_body(std::string_view envelope, std::uint32_t body_field) {
  const std::uint32_t number[] = {body_field};
  peeked_field body[1];
  if (!peek_fields(envelope, number, body) || !body[0].present) return std::nullopt;
  return body[0].bytes;
}

}  // namespace yilian::workflows
