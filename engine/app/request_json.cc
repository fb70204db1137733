#include "engine/app/request_json.h"

namespace yilian::app {

using json = nlohmann::json;

result<json> parse_body(const api::request& req, bool required) {
  if (req.body().empty()) {
    if (required) return fail(errc::invalid_argument, "a JSON body is required");
    return json::object();
  }
  auto j = json::parse(req.body(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return fail(errc::parse_error, "the body is not a JSON object");
  return j;
}

result<std::string> string_field(const json& j, std::string_view name, bool required) {
  const auto it = j.find(std::string(name));
  if (it == j.end() || it->is_null()) {
    if (required) return fail(errc::invalid_argument, std::string(name) + " is required", std::string(name));
    return std::string();
  }
  if (!it->is_string()) return fail(errc::invalid_argument, std::string(name) + " must be a string", std::string(name));
  return it->get<std::string>();
}

}  // namespace yilian::app
