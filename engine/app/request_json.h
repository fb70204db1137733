// JSON request bodies of the REST endpoints: parsed once, fields read with an
// error that names the field.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "engine/api/http.h"
#include "engine/core/error.h"

namespace yilian::app {

// The body as a JSON object; an empty body is {} unless `required`.
result<nlohmann::json> parse_body(const api::request& req, bool required);
// A string member ("" when absent and not `required`).
result<std::string> string_field(const nlohmann::json& j, std::string_view name, bool required);

}  // namespace yilian::app
