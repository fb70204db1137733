#include "engine/api/http.h"

#include <algorithm>
#include <charconv>

#include <nlohmann/json.hpp>

namespace yilian::api {

std::string_view request::target() const { return std_view(message.target()); }

std::string_view request::header(http::field f) const {
  const auto it = message.find(f);
  return it == message.end() ? std::string_view{} : std_view(it->value());
}

std::string_view request::header(std::string_view name) const {
  const auto it = message.find(boost::beast::string_view(name.data(), name.size()));
  return it == message.end() ? std::string_view{} : std_view(it->value());
}

std::string_view request::path_param(std::string_view name) const {
  for (const auto& [k, v] : path_params) {
    if (k == name) return v;
  }
  return {};
}

std::optional<std::string_view> request::query_param(std::string_view name) const {
  for (const auto& [k, v] : query) {
    if (k == name) return std::string_view(v);
  }
  return std::nullopt;
}

std::size_t request::count_param(std::string_view name, std::size_t fallback, std::size_t most) const {
  const auto text = query_param(name);
  if (!text) return fallback;
  std::size_t v = 0;
  const auto [ptr, ec] = std::from_chars(text->data(), text->data() + text->size(), v);
  if (ec != std::errc{} || ptr != text->data() + text->size() || v == 0) return fallback;
  return std::min(v, most);
}

std::vector<std::string_view> request::query_params(std::string_view name) const {
  std::vector<std::string_view> out;
  for (const auto& [k, v] : query) {
    if (k == name) out.emplace_back(v);
  }
  return out;
}

response response::text(std::string body, http::status s) {
  return response{.status = s, .content_type = "text/plain; charset=utf-8", .body = std::move(body), .headers = {}};
}

response response::json(const nlohmann::json& j, http::status s) {
  return response{.status = s,
                  .content_type = std::string(json_content_type),
                  .body = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                  .headers = {}};
}

response response::json_text(std::string body, http::status s) {
  return response{.status = s, .content_type = std::string(json_content_type), .body = std::move(body), .headers = {}};
}

response response::fhir(const nlohmann::json& j, http::status s) {
  return response{.status = s,
                  .content_type = std::string(fhir_content_type),
                  .body = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                  .headers = {}};
}

response response::empty(http::status s) {
  return response{.status = s, .content_type = {}, .body = {}, .headers = {}};
}

}  // namespace yilian::api
