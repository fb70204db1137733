#include "adapters/hl7v2/document.h"

#include <charconv>

#include "adapters/hl7v2/encapsulated.h"
#include "adapters/hl7v2/message.h"

namespace yilian::hl7v2 {

result<std::string> extract_document(std::string_view raw_message, std::string_view fragment, charset fallback) {
  // "OBX[n]-5"
  std::size_t n = 0;
  if (!fragment.starts_with("OBX[") || !fragment.ends_with("]-5")) {
    return fail(errc::invalid_argument, "not a document location (expected OBX[n]-5)", std::string(fragment));
  }
  const auto digits = fragment.substr(4, fragment.size() - 7);
  if (auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
      ec != std::errc() || p != digits.data() + digits.size() || n == 0) {
    return fail(errc::invalid_argument, "not a document location (expected OBX[n]-5)", std::string(fragment));
  }
  auto text = decode_message(raw_message, fallback);
  if (!text) return std::unexpected(text.error());
  auto msg = message::parse(std::move(text->utf8));
  if (!msg) return std::unexpected(msg.error());
  const auto obx = msg->find("OBX", n - 1);
  if (!obx) return fail(errc::not_found, "the message has no OBX number " + std::to_string(n), std::string(fragment));
  const std::string_view encoding = obx->field(5).repetition(0).component_raw(4);
  const std::string data = obx->field(5).repetition(0).component(5);  // escapes decoded
  std::string out;
  out.reserve(data.size() * 3 / 4);
  auto put = [&out](unsigned char b) { out.push_back(static_cast<char>(b)); };
  const std::string where = std::string(fragment) + ".5";
  if (encoding == "Base64") {
    if (!decode_base64(data, put)) return fail(errc::validation_failed, "encapsulated data is not valid Base64", where);
  } else if (encoding == "Hex") {
    if (!decode_hex(data, put)) return fail(errc::validation_failed, "encapsulated data is not valid hexadecimal", where);
  } else if (encoding.empty() || encoding == "A") {
    out = data;
  } else {
    return fail(errc::validation_failed, "unknown encoding " + std::string(encoding) + " (table 0299: A, Hex, Base64)",
                std::string(fragment) + ".4");
  }
  return out;
}

}  // namespace yilian::hl7v2
