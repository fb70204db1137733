#include "engine/app/console_routes.h"

#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/api/console/assets.h"

namespace yilian::app {

namespace {

using api::http::status;
using api::http::verb;

// RFC 9110 13.1.2: If-None-Match uses the weak comparison, so "W/" is ignored;
// "*" matches any current representation.
bool none_match_hits(std::string_view header, std::string_view etag) {
  while (!header.empty()) {
    const auto comma = header.find(',');
    auto tag = header.substr(0, comma);
    header = comma == std::string_view::npos ? std::string_view{} : header.substr(comma + 1);
    while (!tag.empty() && (tag.front() == ' ' || tag.front() == '\t')) tag.remove_prefix(1);
    while (!tag.empty() && (tag.back() == ' ' || tag.back() == '\t')) tag.remove_suffix(1);
    if (tag == "*") return true;
    if (tag.starts_with("W/")) tag.remove_prefix(2);
    if (tag == etag) return true;
  }
  return false;
}

api::response asset_response(const console::asset& a, const api::request& req) {
  api::response r;
  if (none_match_hits(req.header(api::http::field::if_none_match), a.etag)) {
    r = api::response::empty(status::not_modified);
  } else {
    r.status = status::ok;
    r.content_type = std::string(a.content_type);
    r.body = std::string(a.bytes);
  }
  // no-cache: the browser revalidates every load (a 304 costs nothing), so a
  // clinic PC never runs a page older than the engine it talks to.
  r.with_header("Cache-Control", "no-cache");
  r.with_header("ETag", std::string(a.etag));
  r.with_header("X-Content-Type-Options", "nosniff");
  r.with_header("Referrer-Policy", "no-referrer");
  if (a.content_type.starts_with("text/html")) {
    // The page holds a bearer token: no inline or foreign script, no framing.
    r.with_header("Content-Security-Policy",
                  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                  "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'");
    r.with_header("X-Frame-Options", "DENY");
  }
  return r;
}

}  // namespace

void add_console_routes(api::router& routes, const config::loaded_consortium& cfg) {
  const api::route_options public_route{.auth = api::auth_mode::none, .roles = {}};

  routes.add(
      verb::get, "/console",
      [](api::request&) -> result<api::response> {
        auto r = api::response::text("see /console/\n", status::moved_permanently);
        r.with_header("Location", "/console/");
        return r;
      },
      public_route);

  routes.add(
      verb::get, "/console/",
      [](api::request& req) -> result<api::response> {
        const auto* a = console::find_asset("index.html");
        if (a == nullptr) return fail(errc::internal, "index.html is not embedded in this build", "/console/");
        return asset_response(*a, req);
      },
      public_route);

  routes.add(
      verb::get, "/console/{file}",
      [](api::request& req) -> result<api::response> {
        const auto name = req.path_param("file");
        const auto* a = console::find_asset(name);
        if (a == nullptr) return fail(errc::not_found, "no console file " + std::string(name), "file");
        return asset_response(*a, req);
      },
      public_route);

  std::map<std::string, std::string, std::less<>> hospital_names;
  for (const auto& h : cfg.consortium.hospitals()) hospital_names.emplace(h.id(), h.name());
  routes.add(verb::get, "/api/v1/whoami",
             [names = std::move(hospital_names)](api::request& req) -> result<api::response> {
               const auto& p = *req.principal;
               const auto it = names.find(p.hospital.value());
               return api::response::json(nlohmann::json{
                   {"id", p.id.value()},
                   {"role", std::string(api::to_string(p.role))},
                   {"hospital", p.hospital.value()},
                   {"hospital_name", it != names.end() ? it->second : std::string()},
                   {"display_name", p.display_name}});
             });
}

}  // namespace yilian::app
