// Fuzz target: request targets (untrusted) through what the server does with
// them — yilian::api::router::match on the path, parse_query on the query —
// and percent_decode on its own in both modes.
//
// Input: the first byte picks the method, the rest is the request target
// ("/fhir/r4/Patient/a%2Fb?x=1&y"), split at the first '?' as server.cc does.
//
// Invariants checked, beyond "does not crash":
//  - nothing throws; every error has a non-empty message;
//  - percent_decode agrees with a reference decoder (same success, same
//    bytes); its output never contains a NUL; encoding the output again and
//    decoding gives it back;
//  - parse_query agrees with splitting at '&' / first '=' and decoding each
//    half; re-encoding the pairs and parsing again gives the same pairs;
//  - router::match: fails exactly when a segment does not decode (or the path
//    is not absolute); the decoded path is the decoded segments joined; a
//    found route really matches, has the method (or GET for HEAD when there is
//    no HEAD route), is the most specific such route, and its parameters are
//    the decoded segments in its parameter positions; when nothing is found,
//    `allowed` is exactly the methods of the routes whose pattern matches.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/api/router.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

namespace api = yilian::api;
using api::http::verb;
using yilian::fuzz::printable;

constexpr verb methods[] = {verb::get, verb::head, verb::post, verb::put, verb::delete_, verb::patch, verb::options};

// Routes shaped like the server's and the FHIR API's: literals, parameters,
// a literal beating a parameter in the same position, HEAD served by GET, the
// root, a trailing slash.
const api::router& routes() {
  static const api::router r = [] {
    api::router out;
    auto h = [](api::request&) { return api::response::text("ok"); };
    const api::route_options open{.auth = api::auth_mode::none, .roles = {}};
    out.add(verb::get, "/", h, open);
    out.add(verb::get, "/healthz", h, open);
    out.add(verb::get, "/readyz", h, open);
    out.add(verb::get, "/metrics", h, open);
    out.add(verb::post, "/api/v1/events", h);
    out.add(verb::get, "/api/v1/events", h);
    out.add(verb::get, "/api/v1/events/", h);
    out.add(verb::delete_, "/api/v1/hospitals/{hospital}/equipment/{equipment}", h);
    out.add(verb::get, "/fhir/r4/metadata", h, open);
    out.add(verb::head, "/fhir/r4/{type}", h);
    out.add(verb::get, "/fhir/r4/{type}", h);
    out.add(verb::get, "/fhir/r4/Patient/{id}", h);
    out.add(verb::put, "/fhir/r4/Patient/{id}", h);
    out.add(verb::get, "/fhir/r4/Patient/_search", h);
    out.add(verb::post, "/fhir/r4/Patient/_search", h);
    out.add(verb::get, "/fhir/r4/Patient/{id}/_history/{vid}", h);
    out.add(verb::get, "/fhir/r4/{type}/{id}", h);
    out.add(verb::get, "/fhir/r4/{type}/{id}/_history/{vid}", h);
    return out;
  }();
  return r;
}

// --- reference model ----------------------------------------------------------

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// What the header promises: %XX escapes decoded, '+' a space in query mode;
// a truncated or non-hex escape fails, and so does any NUL in the output.
std::optional<std::string> reference_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%') {
      if (s.size() - i < 3 || hex(s[i + 1]) < 0 || hex(s[i + 2]) < 0) return std::nullopt;
      out += static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2]));
      i += 2;
    } else if (s[i] == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += s[i];
    }
  }
  if (out.find('\0') != std::string::npos) return std::nullopt;
  return out;
}

std::string encode(std::string_view s) {
  static constexpr char digits[] = "0123456789ABCDEF";
  std::string out;
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
        c == '_' || c == '~') {
      out += ch;
    } else {
      out += '%';
      out += digits[c >> 4];
      out += digits[c & 0xf];
    }
  }
  return out;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  for (;;) {
    const auto at = s.find(sep);
    out.push_back(s.substr(0, at));
    if (at == std::string_view::npos) return out;
    s.remove_prefix(at + 1);
  }
}

bool is_param(const std::string& seg) { return seg.size() >= 2 && seg.front() == '{' && seg.back() == '}'; }

bool pattern_matches(const api::route& r, const std::vector<std::string>& decoded) {
  if (r.segments.size() != decoded.size()) return false;
  for (std::size_t i = 0; i < decoded.size(); ++i) {
    if (!is_param(r.segments[i]) && r.segments[i] != decoded[i]) return false;
  }
  return true;
}

std::vector<int> specificity(const api::route& r) {
  std::vector<int> s;
  for (const auto& seg : r.segments) s.push_back(is_param(seg) ? 0 : 1);
  return s;
}

// --- checks -------------------------------------------------------------------

void check_decode(std::string_view s, bool plus_is_space) {
  const auto got = api::percent_decode(s, plus_is_space);
  const auto want = reference_decode(s, plus_is_space);
  FUZZ_CHECK(got.has_value() == want.has_value())
      << "percent_decode(" << printable(s) << ", " << plus_is_space << ") "
      << (got ? "accepted: " + printable(*got) : "rejected: " + got.error().message);
  if (!got) {
    FUZZ_CHECK(!got.error().message.empty()) << printable(s);
    FUZZ_CHECK(got.error().code == yilian::errc::invalid_argument) << got.error().describe();
    return;
  }
  FUZZ_CHECK(*got == *want) << printable(s) << " -> " << printable(*got) << " expected " << printable(*want);
  FUZZ_CHECK(got->find('\0') == std::string::npos) << "decoded output holds a NUL: " << printable(s);
  FUZZ_CHECK(got->size() <= s.size()) << printable(s);
  const auto again = api::percent_decode(encode(*got), plus_is_space);
  FUZZ_CHECK(again && *again == *got) << "encode/decode round trip: " << printable(*got);
}

void check_query(std::string_view query) {
  const auto got = api::parse_query(query);
  // Reference: split at '&', skip empty pairs, split each at its first '='.
  std::optional<api::params> want = api::params{};
  for (const auto pair : split(query, '&')) {
    if (pair.empty()) continue;
    const auto eq = pair.find('=');
    auto k = reference_decode(pair.substr(0, eq), true);
    auto v = reference_decode(eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1), true);
    if (!k || !v) {
      want.reset();
      break;
    }
    want->emplace_back(std::move(*k), std::move(*v));
  }
  FUZZ_CHECK(got.has_value() == want.has_value())
      << "parse_query(" << printable(query) << ") " << (got ? "accepted" : "rejected: " + got.error().message);
  if (!got) {
    FUZZ_CHECK(!got.error().message.empty()) << printable(query);
    return;
  }
  FUZZ_CHECK(*got == *want) << "parse_query(" << printable(query) << ") differs from the reference";
  std::string encoded;
  for (const auto& [k, v] : *got) {
    if (!encoded.empty()) encoded += '&';
    encoded += encode(k) + '=' + encode(v);
  }
  const auto again = api::parse_query(encoded);
  FUZZ_CHECK(again && *again == *got) << "query round trip: " << printable(encoded);
}

void check_match(verb method, std::string_view raw_path) {
  const auto& r = routes();
  const auto got = r.match(method, raw_path);

  // Reference decoding of the path, segment by segment.
  std::optional<std::vector<std::string>> decoded;
  if (!raw_path.empty() && raw_path.front() == '/') {
    decoded.emplace();
    for (const auto seg : split(raw_path.substr(1), '/')) {
      auto d = reference_decode(seg, false);
      if (!d) {
        decoded.reset();
        break;
      }
      decoded->push_back(std::move(*d));
    }
  }
  FUZZ_CHECK(got.has_value() == decoded.has_value())
      << "match(" << printable(raw_path) << ") " << (got ? "accepted" : "rejected: " + got.error().message);
  if (!got) {
    FUZZ_CHECK(!got.error().message.empty()) << printable(raw_path);
    FUZZ_CHECK(got.error().code == yilian::errc::invalid_argument) << got.error().describe();
    return;
  }
  std::string path;
  for (const auto& d : *decoded) path += '/' + d;
  FUZZ_CHECK(got->path == path) << printable(raw_path) << " decoded to " << printable(got->path);

  std::vector<verb> matching_methods;
  bool has_method = false;
  for (const auto& rt : r.routes()) {
    if (!pattern_matches(rt, *decoded)) continue;
    if (std::find(matching_methods.begin(), matching_methods.end(), rt.method) == matching_methods.end()) {
      matching_methods.push_back(rt.method);
    }
    has_method = has_method || rt.method == method;
  }
  const bool head_via_get =
      method == verb::head && !has_method &&
      std::find(matching_methods.begin(), matching_methods.end(), verb::get) != matching_methods.end();

  if (got->found == nullptr) {
    FUZZ_CHECK(!has_method && !head_via_get) << "a matching route was not found for " << printable(raw_path);
    FUZZ_CHECK(got->path_params.empty()) << printable(raw_path);
    auto allowed = got->allowed;
    auto expected = matching_methods;
    std::sort(allowed.begin(), allowed.end());
    std::sort(expected.begin(), expected.end());
    FUZZ_CHECK(allowed == expected) << "allowed methods differ for " << printable(raw_path);
    if (!allowed.empty()) FUZZ_CHECK(!api::allow_header(allowed).empty()) << printable(raw_path);
    return;
  }
  const api::route& found = *got->found;
  FUZZ_CHECK(pattern_matches(found, *decoded)) << found.pattern << " does not match " << printable(raw_path);
  FUZZ_CHECK(found.method == method || (head_via_get && found.method == verb::get))
      << found.pattern << " has the wrong method for " << printable(raw_path);
  FUZZ_CHECK(got->allowed.empty()) << printable(raw_path);
  for (const auto& rt : r.routes()) {
    if (rt.method == found.method && pattern_matches(rt, *decoded)) {
      FUZZ_CHECK(specificity(rt) <= specificity(found))
          << rt.pattern << " is more specific than " << found.pattern << " for " << printable(raw_path);
    }
  }
  std::size_t p = 0;
  for (std::size_t i = 0; i < found.segments.size(); ++i) {
    const auto& seg = found.segments[i];
    if (!is_param(seg)) continue;
    FUZZ_CHECK(p < got->path_params.size()) << found.pattern << printable(raw_path);
    FUZZ_CHECK(got->path_params[p].first == seg.substr(1, seg.size() - 2)) << found.pattern;
    FUZZ_CHECK(got->path_params[p].second == (*decoded)[i]) << found.pattern << printable(raw_path);
    ++p;
  }
  FUZZ_CHECK(p == got->path_params.size()) << found.pattern << printable(raw_path);
}

void run(std::string_view input) {
  if (input.empty()) return;
  const verb method = methods[static_cast<unsigned char>(input.front()) % std::size(methods)];
  const std::string_view target = input.substr(1);
  const auto qpos = target.find('?');
  const auto raw_path = target.substr(0, qpos);
  check_match(method, raw_path);
  if (qpos != std::string_view::npos) check_query(target.substr(qpos + 1));
  check_decode(target, false);
  check_decode(target, true);
}

}  // namespace

YILIAN_FUZZ_ENTRY(run)
