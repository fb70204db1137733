#include "engine/api/router.h"

#include <algorithm>
#include <stdexcept>

#include "engine/core/hex.h"

namespace yilian::api {

namespace {

bool is_param(std::string_view seg) { return seg.size() >= 2 && seg.front() == '{' && seg.back() == '}'; }

std::vector<std::string_view> split_path(std::string_view p) {
  // p starts with '/'; "/" -> {""}; "/a/b" -> {"a","b"}; "/a/" -> {"a",""}.
  std::vector<std::string_view> out;
  p.remove_prefix(1);
  for (;;) {
    const auto slash = p.find('/');
    out.push_back(p.substr(0, slash));
    if (slash == std::string_view::npos) break;
    p.remove_prefix(slash + 1);
  }
  return out;
}

}  // namespace

bool route::allows(role r) const {
  return options.roles.empty() || std::find(options.roles.begin(), options.roles.end(), r) != options.roles.end();
}

void router::add(http::verb method, std::string_view pattern, api::handler h, route_options opts) {
  if (pattern.empty() || pattern.front() != '/') {
    throw std::invalid_argument("route pattern must start with '/': " + std::string(pattern));
  }
  std::vector<std::string> segments;
  std::vector<std::string_view> names;
  for (const auto seg : split_path(pattern)) {
    const bool has_brace = seg.find('{') != std::string_view::npos || seg.find('}') != std::string_view::npos;
    if (has_brace) {
      if (!is_param(seg) || seg.size() == 2 || seg.substr(1, seg.size() - 2).find_first_of("{}") != std::string_view::npos) {
        throw std::invalid_argument("malformed parameter '" + std::string(seg) + "' in " + std::string(pattern));
      }
      const auto name = seg.substr(1, seg.size() - 2);
      if (std::find(names.begin(), names.end(), name) != names.end()) {
        throw std::invalid_argument("parameter '" + std::string(name) + "' repeated in " + std::string(pattern));
      }
      names.push_back(name);
    }
    segments.emplace_back(seg);
  }
  for (const auto& r : routes_) {
    if (r.method == method && r.segments == segments) {
      throw std::logic_error("route registered twice: " + std::string(http::to_string(method)) + " " +
                             std::string(pattern));
    }
  }
  routes_.push_back(route{.method = method,
                          .pattern = std::string(pattern),
                          .handle = std::move(h),
                          .options = std::move(opts),
                          .segments = std::move(segments)});
}

result<router::match_result> router::match(http::verb method, std::string_view raw_path) const {
  match_result out;
  if (raw_path.empty() || raw_path.front() != '/') {
    return fail(errc::invalid_argument, "request target must be an absolute path");
  }
  std::vector<std::string> decoded;
  for (const auto seg : split_path(raw_path)) {
    auto d = percent_decode(seg);
    if (!d) return std::unexpected(d.error());
    out.path += '/';
    out.path += *d;
    decoded.push_back(std::move(*d));
  }

  // Specificity: for each segment, literal (1) beats parameter (0); compared
  // left to right, so the first differing segment decides.
  auto specificity = [](const route& r) {
    std::vector<int> s;
    s.reserve(r.segments.size());
    for (const auto& seg : r.segments) s.push_back(is_param(seg) ? 0 : 1);
    return s;
  };
  auto matches = [&decoded](const route& r) {
    if (r.segments.size() != decoded.size()) return false;
    for (std::size_t i = 0; i < decoded.size(); ++i) {
      if (!is_param(r.segments[i]) && r.segments[i] != decoded[i]) return false;
    }
    return true;
  };

  const route* best = nullptr;
  const route* best_get = nullptr;  // for HEAD without a HEAD route
  std::vector<int> best_spec;
  std::vector<int> best_get_spec;
  for (const auto& r : routes_) {
    if (!matches(r)) continue;
    if (std::find(out.allowed.begin(), out.allowed.end(), r.method) == out.allowed.end()) out.allowed.push_back(r.method);
    if (r.method == method) {
      auto s = specificity(r);
      if (best == nullptr || s > best_spec) {
        best = &r;
        best_spec = std::move(s);
      }
    } else if (method == http::verb::head && r.method == http::verb::get) {
      auto s = specificity(r);
      if (best_get == nullptr || s > best_get_spec) {
        best_get = &r;
        best_get_spec = std::move(s);
      }
    }
  }
  if (best == nullptr) best = best_get;
  if (best == nullptr) return out;

  out.found = best;
  out.allowed.clear();
  for (std::size_t i = 0; i < decoded.size(); ++i) {
    const auto& seg = best->segments[i];
    if (is_param(seg)) out.path_params.emplace_back(seg.substr(1, seg.size() - 2), std::move(decoded[i]));
  }
  return out;
}

result<std::string> percent_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '%') {
      if (i + 2 >= s.size()) {
        return fail(errc::invalid_argument, "truncated percent-escape");
      }
      const int hi = hex_value(s[i + 1]);
      const int lo = hex_value(s[i + 2]);
      if (hi < 0 || lo < 0) return fail(errc::invalid_argument, "bad percent-escape");
      const auto v = static_cast<char>((hi << 4) | lo);
      if (v == '\0') return fail(errc::invalid_argument, "encoded NUL byte");
      out += v;
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out += ' ';
    } else if (c == '\0') {
      // Raw or encoded, a NUL never reaches a decoded value.
      return fail(errc::invalid_argument, "NUL byte");
    } else {
      out += c;
    }
  }
  return out;
}

result<params> parse_query(std::string_view query) {
  params out;
  while (!query.empty()) {
    const auto amp = query.find('&');
    const auto pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (pair.empty()) continue;
    const auto eq = pair.find('=');
    auto k = percent_decode(pair.substr(0, eq), true);
    if (!k) return std::unexpected(k.error());
    auto v = percent_decode(eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1), true);
    if (!v) return std::unexpected(v.error());
    out.emplace_back(std::move(*k), std::move(*v));
  }
  return out;
}

std::string allow_header(const std::vector<http::verb>& methods) {
  std::vector<std::string_view> names;
  for (const auto m : methods) {
    const auto sv = http::to_string(m);
    names.emplace_back(sv.data(), sv.size());
  }
  if (std::find(methods.begin(), methods.end(), http::verb::get) != methods.end() &&
      std::find(methods.begin(), methods.end(), http::verb::head) == methods.end()) {
    names.emplace_back("HEAD");
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  std::string out;
  for (const auto n : names) {
    if (!out.empty()) out += ", ";
    out += n;
  }
  return out;
}

}  // namespace yilian::api
