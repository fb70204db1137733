#include "engine/config/checks.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <map>
#include <optional>
#include <set>
#include <system_error>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/config/config.h"
#include "yilian/events/v1/booking.pb.h"
#include "yilian/events/v1/careplan.pb.h"
#include "yilian/events/v1/common.pb.h"
#include "yilian/events/v1/referral.pb.h"

namespace yilian::config::detail {

namespace fs = std::filesystem;

void reporter::error(const document& doc, const std::string& path, std::string message) {
  // A value that could not be parsed was left unset; do not also report it as
  // missing or wrong.
  for (const auto& d : report_.diagnostics) {
    if (d.file == doc.file && d.field == path) return;
  }
  const source_location at = doc.locations.find(path);
  report_.diagnostics.push_back(diagnostic{
      .file = doc.file, .line = at.line, .column = at.column, .field = path, .message = std::move(message)});
}

std::string quote(std::string_view s) {
  std::string out = "\"";
  out += s;
  out += '"';
  return out;
}

namespace {

// --------------------------------------------------------------------------
// small parsers

bool is_digit(char c) { return c >= '0' && c <= '9'; }

bool valid_id(std::string_view id) {
  if (id.empty() || id.size() > 63 || id.front() == '-' || id.back() == '-') return false;
  return std::all_of(id.begin(), id.end(), [](char c) { return (c >= 'a' && c <= 'z') || is_digit(c) || c == '-'; });
}

std::optional<int> two_digits(std::string_view s) {
  if (s.size() != 2 || !is_digit(s[0]) || !is_digit(s[1])) return std::nullopt;
  return (s[0] - '0') * 10 + (s[1] - '0');
}

// "HH:MM" -> minutes since midnight; "24:00" -> 1440.
std::optional<int> minutes_of_day(std::string_view s) {
  if (s.size() != 5 || s[2] != ':') return std::nullopt;
  auto h = two_digits(s.substr(0, 2));
  auto m = two_digits(s.substr(3, 2));
  if (!h || !m || *m > 59) return std::nullopt;
  if (*h == 24 && *m == 0) return 1440;
  if (*h > 23) return std::nullopt;
  return *h * 60 + *m;
}

// "YYYY-MM-DDTHH:MM"
bool valid_local_datetime(std::string_view s) {
  if (s.size() != 16 || s[4] != '-' || s[7] != '-' || s[10] != 'T') return false;
  for (std::size_t i = 0; i < 4; ++i) {
    if (!is_digit(s[i])) return false;
  }
  const int year = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
  auto month = two_digits(s.substr(5, 2));
  auto day = two_digits(s.substr(8, 2));
  auto minutes = minutes_of_day(s.substr(11, 5));
  if (!month || !day || !minutes || *minutes >= 1440 || *month < 1 || *month > 12 || *day < 1) return false;
  static constexpr std::array<int, 12> days_in_month{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  const int last = days_in_month[static_cast<std::size_t>(*month - 1)] + (*month == 2 && leap ? 1 : 0);
  return *day <= last;
}

bool valid_time_zone(std::string_view tz) {
  if (tz.empty() || tz.front() == '/' || tz.find("..") != std::string_view::npos) return false;
  const bool chars_ok = std::all_of(tz.begin(), tz.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '/' || c == '_' || c == '-' || c == '+';
  });
  if (!chars_ok) return false;
  const fs::path zoneinfo = "/usr/share/zoneinfo";
  std::error_code ec;
  if (!fs::is_directory(zoneinfo, ec)) return true;  // no tz database to check against
  return fs::is_regular_file(zoneinfo / std::string(tz), ec);
}

bool is_sha256_hex(std::string_view s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
         });
}

bool valid_env_name(std::string_view s) {
  if (s.empty() || is_digit(s.front())) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_'; });
}

bool valid_port_text(std::string_view s) {
  unsigned port = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), port);
  return !s.empty() && ec == std::errc{} && end == s.data() + s.size() && port >= 1 && port <= 65535;
}

// "host:port" (host may be a name, IPv4 or [IPv6]).
bool valid_host_port(std::string_view s) {
  const std::size_t colon = s.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  const std::string_view host = s.substr(0, colon);
  if (host.find_first_of(" /") != std::string_view::npos) return false;
  return valid_port_text(s.substr(colon + 1));
}

bool valid_http_url(std::string_view s) {
  std::string_view rest;
  if (s.starts_with("https://")) {
    rest = s.substr(8);
  } else if (s.starts_with("http://")) {
    rest = s.substr(7);
  } else {
    return false;
  }
  const std::string_view host = rest.substr(0, rest.find('/'));
  return !host.empty() && host.find(' ') == std::string_view::npos;
}

// "OBR-18", "ZDS-1.1", "PID-3.4.1", "PID-5[2]", "PID-5[2].1"
bool valid_hl7_location(std::string_view s) {
  if (s.size() < 5 || s[3] != '-') return false;
  if (!std::isupper(static_cast<unsigned char>(s[0]))) return false;
  for (std::size_t i = 1; i < 3; ++i) {
    if (!std::isupper(static_cast<unsigned char>(s[i])) && !is_digit(s[i])) return false;
  }
  std::string_view rest = s.substr(4);
  auto number = [&rest]() {
    std::size_t n = 0;
    while (n < rest.size() && is_digit(rest[n])) ++n;
    if (n == 0 || rest[0] == '0') return false;
    rest.remove_prefix(n);
    return true;
  };
  if (!number()) return false;
  if (!rest.empty() && rest.front() == '[') {
    rest.remove_prefix(1);
    if (!number() || rest.empty() || rest.front() != ']') return false;
    rest.remove_prefix(1);
  }
  for (int components = 0; !rest.empty(); ++components) {
    if (components == 2 || rest.front() != '.') return false;
    rest.remove_prefix(1);
    if (!number()) return false;
  }
  return true;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string index_path(const std::string& path, int i) { return path + '[' + std::to_string(i) + ']'; }

std::string suggestion(std::string_view word, const std::vector<std::string>& known) {
  std::string best;
  std::size_t best_distance = 4;
  for (const auto& k : known) {
    const std::size_t d = edit_distance(word, k);
    if (d < best_distance && d <= std::max<std::size_t>(1, word.size() / 3)) {
      best_distance = d;
      best = k;
    }
  }
  return best;
}

std::string unknown_reference(std::string_view what, std::string_view value, const std::vector<std::string>& known) {
  std::string message = "unknown " + std::string(what) + " " + quote(value);
  if (std::string guess = suggestion(value, known); !guess.empty()) {
    message += " (did you mean " + quote(guess) + "?)";
  } else if (!known.empty()) {
    std::string list;
    for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
    message += " (known: " + list + ")";
  }
  return message;
}

std::string enum_choices(const google::protobuf::EnumDescriptor& e) {
  std::string out;
  for (int i = 0; i < e.value_count(); ++i) {
    if (e.value(i)->number() == 0) continue;
    if (!out.empty()) out += ", ";
    out += short_enum_name(*e.value(i));
  }
  return out;
}

// Remembers ids seen so far and reports repeats.
class unique_ids {
 public:
  unique_ids(reporter& out, const document& doc, std::string what) : out_(out), doc_(doc), what_(std::move(what)) {}
  // Returns false (and reports) when `id` was seen before.
  bool add(const std::string& id, const std::string& path) {
    auto [it, inserted] = first_.emplace(id, path);
    if (!inserted) {
      out_.error(doc_, path,
                 "duplicate " + what_ + " " + quote(id) + " (first used by " + parent_of(it->second) + " at line " +
                     std::to_string(out_.where(doc_, it->second).line) + ")");
    }
    return inserted;
  }

 private:
  static std::string parent_of(const std::string& path) { return std::string(parent_path(path)); }
  reporter& out_;
  const document& doc_;
  std::string what_;
  std::unordered_map<std::string, std::string> first_;
};

void check_tls(const v1::TlsConfig& tls, const document& doc, const std::string& path, const fs::path& dir,
               bool server, reporter& out) {
  auto file = [&](const std::string& value, const std::string& field, bool required) {
    const std::string p = path + "." + field;
    if (value.empty()) {
      if (required) out.error(doc, p, "required when tls is given");
      return;
    }
    std::error_code ec;
    const fs::path resolved = (dir / value).lexically_normal();
    if (!fs::is_regular_file(resolved, ec)) out.error(doc, p, "file not found: " + resolved.string());
  };
  file(tls.cert_file(), "cert_file", server);
  file(tls.key_file(), "key_file", server || !tls.cert_file().empty());
  file(tls.ca_file(), "ca_file", server && tls.require_client_cert());
}

void check_secret(const v1::SecretRef& secret, const document& doc, const std::string& path, reporter& out) {
  switch (secret.source_case()) {
    case v1::SecretRef::kEnv:
      // Never echo the value: it may be the secret itself.
      if (!valid_env_name(secret.env())) {
        out.error(doc, path + ".env",
                  "not an environment variable name ([A-Z_][A-Z0-9_]*); give the name of a variable that "
                  "holds the secret, never the secret itself");
      }
      return;
    case v1::SecretRef::kFile:
      if (secret.file().empty()) out.error(doc, path + ".file", "required: path of the file holding the secret");
      return;
    case v1::SecretRef::SOURCE_NOT_SET:
      out.error(doc, path, "give env (a variable name) or file (a path) holding the secret");
      return;
  }
}

// What every outbound endpoint (profile or patient channel) is checked for
// beyond its kind and address: TLS files, credentials, retry policy.
void check_endpoint_settings(const v1::OutboundEndpoint& o, const document& doc, const std::string& op,
                             const fs::path& dir, reporter& out) {
  if (o.has_tls()) {
    check_tls(o.tls(), doc, op + ".tls", dir, /*server=*/false, out);
    if (o.kind() != v1::ENDPOINT_KIND_MLLP && o.address().starts_with("http://")) {
      out.error(doc, op + ".tls", "tls is given but the address is http://; use an https:// address");
    }
  }
  const auto& cred = o.credentials();
  const bool needs_secret = cred.scheme() != v1::AUTH_SCHEME_NONE && cred.scheme() != v1::AUTH_SCHEME_UNSPECIFIED;
  if (needs_secret && !cred.has_secret()) {
    out.error(doc, op + ".credentials.secret", "required for scheme " +
                                                    short_enum_name(*v1::AuthScheme_descriptor()->FindValueByNumber(cred.scheme())));
  }
  if (cred.has_secret()) check_secret(cred.secret(), doc, op + ".credentials.secret", out);
  if (cred.scheme() == v1::AUTH_SCHEME_BASIC && cred.username().empty()) {
    out.error(doc, op + ".credentials.username", "required for scheme BASIC");
  }
  const auto& r = o.retry();
  if (r.initial_backoff_ms() > r.max_backoff_ms()) {
    out.error(doc, op + ".retry.initial_backoff_ms",
              std::to_string(r.initial_backoff_ms()) + " is more than max_backoff_ms " +
                  std::to_string(r.max_backoff_ms()));
  }
}

std::string weekday_name(int day) {
  const auto* v = v1::Weekday_descriptor()->FindValueByNumber(day);
  return v == nullptr ? std::to_string(day) : short_enum_name(*v);
}

void check_schedule(const v1::WeeklySchedule& schedule, const document& doc, const std::string& path,
                    reporter& out) {
  if (!valid_time_zone(schedule.time_zone())) {
    out.error(doc, path + ".time_zone", quote(schedule.time_zone()) + " is not a known time zone");
  }
  if (schedule.days_size() == 0) {
    out.error(doc, path + ".days", "at least one working window required");
    return;
  }
  // weekday -> (start, end, window index) of valid windows, for overlaps
  std::map<int, std::vector<std::tuple<int, int, int>>> by_day;
  for (int i = 0; i < schedule.days_size(); ++i) {
    const auto& w = schedule.days(i);
    const std::string wp = index_path(path + ".days", i);
    if (w.weekdays_size() == 0) out.error(doc, wp + ".weekdays", "at least one weekday required");
    auto bad_time = [&](const std::string& field, const std::string& value) {
      out.error(doc, wp + "." + field,
                value.empty() ? std::string("required (HH:MM)")
                              : quote(value) + " is not a time of day (HH:MM, 00:00 to 24:00)");
    };
    auto start = minutes_of_day(w.start());
    auto end = minutes_of_day(w.end());
    if (!start) bad_time("start", w.start());
    if (!end) bad_time("end", w.end());
    if (!start || !end) continue;
    if (*end <= *start) {
      out.error(doc, wp + ".end", "end " + quote(w.end()) + " is not after start " + quote(w.start()));
      continue;
    }
    std::set<int> days;
    for (int d : w.weekdays()) {
      if (!days.insert(d).second) {
        out.error(doc, wp + ".weekdays", weekday_name(d) + " is listed twice");
        continue;
      }
      for (const auto& [s, e, other] : by_day[d]) {
        if (*start < e && s < *end) {
          out.error(doc, wp,
                    "overlaps days[" + std::to_string(other) + "] on " + weekday_name(d));
        }
      }
      by_day[d].emplace_back(*start, *end, i);
    }
  }
}

// --------------------------------------------------------------------------

void check_hospitals(const v1::Consortium& c, const document& doc, reporter& out) {
  if (c.hospitals_size() == 0) out.error(doc, "hospitals", "at least one hospital required");
  unique_ids ids(out, doc, "hospital id");
  for (int i = 0; i < c.hospitals_size(); ++i) {
    const auto& h = c.hospitals(i);
    const std::string p = index_path("hospitals", i);
    if (h.id().empty()) {
      out.error(doc, p + ".id", "required");
    } else if (!valid_id(h.id())) {
      out.error(doc, p + ".id", quote(h.id()) + " is not a valid id (lower-case letters, digits and '-')");
    } else {
      ids.add(h.id(), p + ".id");
    }
    if (h.name().empty()) out.error(doc, p + ".name", "required");
    if (h.tier() == v1::TIER_UNSPECIFIED) {
      out.error(doc, p + ".tier", "required (one of " + enum_choices(*v1::Tier_descriptor()) + ")");
    }
  }
}

std::vector<std::string> hospital_ids(const v1::Consortium& c) {
  std::vector<std::string> out;
  for (const auto& h : c.hospitals()) {
    if (!h.id().empty()) out.push_back(h.id());
  }
  return out;
}

void check_hospital_ref(const v1::Consortium& c, const std::string& value, const document& doc,
                        const std::string& path, reporter& out) {
  const auto ids = hospital_ids(c);
  if (value.empty()) {
    out.error(doc, path, "required");
  } else if (std::find(ids.begin(), ids.end(), value) == ids.end()) {
    out.error(doc, path, unknown_reference("hospital", value, ids));
  }
}

void check_equipment(const v1::Consortium& c, const document& doc, reporter& out) {
  unique_ids ids(out, doc, "equipment id");
  for (int i = 0; i < c.equipment_size(); ++i) {
    const auto& e = c.equipment(i);
    const std::string p = index_path("equipment", i);
    if (e.id().empty()) {
      out.error(doc, p + ".id", "required");
    } else if (!valid_id(e.id())) {
      out.error(doc, p + ".id", quote(e.id()) + " is not a valid id (lower-case letters, digits and '-')");
    } else {
      ids.add(e.id(), p + ".id");
    }
    check_hospital_ref(c, e.hospital(), doc, p + ".hospital", out);
    if (e.modality() == v1::MODALITY_UNSPECIFIED) {
      out.error(doc, p + ".modality", "required (one of " + enum_choices(*v1::Modality_descriptor()) + ")");
    }
    if (e.exam_types_size() == 0) out.error(doc, p + ".exam_types", "at least one exam type required");
    unique_ids codes(out, doc, "exam code");
    for (int j = 0; j < e.exam_types_size(); ++j) {
      const auto& x = e.exam_types(j);
      const std::string xp = index_path(p + ".exam_types", j);
      if (x.code().empty()) {
        out.error(doc, xp + ".code", "required");
      } else {
        codes.add(x.code(), xp + ".code");
      }
      if (x.duration_minutes() == 0) out.error(doc, xp + ".duration_minutes", "must be greater than 0");
    }
    if (!e.has_schedule()) {
      out.error(doc, p + ".schedule", "required");
    } else {
      check_schedule(e.schedule(), doc, p + ".schedule", out);
    }
    for (int j = 0; j < e.blocked_size(); ++j) {
      const auto& b = e.blocked(j);
      const std::string bp = index_path(p + ".blocked", j);
      bool ok = true;
      for (const auto& [field, value] : {std::pair{"start", &b.start()}, std::pair{"end", &b.end()}}) {
        if (!valid_local_datetime(*value)) {
          ok = false;
          out.error(doc, bp + "." + field,
                    value->empty() ? std::string("required (YYYY-MM-DDTHH:MM)")
                                   : quote(*value) + " is not a local date-time (YYYY-MM-DDTHH:MM)");
        }
      }
      if (ok && b.end() <= b.start()) {
        out.error(doc, bp + ".end", "end " + quote(b.end()) + " is not after start " + quote(b.start()));
      }
    }
    if (e.consortium_share_percent() > 100) {
      out.error(doc, p + ".consortium_share_percent",
                std::to_string(e.consortium_share_percent()) + " is not a percentage (0 to 100)");
    }
  }
}

void check_topics(const v1::Consortium& c, const document& doc, reporter& out) {
  unique_ids names(out, doc, "topic");
  for (int i = 0; i < c.topics_size(); ++i) {
    const auto& t = c.topics(i);
    const std::string p = index_path("topics", i);
    const bool legal = !t.name().empty() && t.name().size() <= 249 &&
                       std::all_of(t.name().begin(), t.name().end(), [](char ch) {
                         return std::isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '_' || ch == '-';
                       });
    if (t.name().empty()) {
      out.error(doc, p + ".name", "required");
    } else if (!legal) {
      out.error(doc, p + ".name", quote(t.name()) + " is not a valid topic name ([A-Za-z0-9._-], at most 249)");
    } else {
      names.add(t.name(), p + ".name");
    }
    if (t.partitions() > 10000) out.error(doc, p + ".partitions", "at most 10000 partitions");
    if (t.name() == topic_name(events::v1::TOPIC_IDENTITY) && t.partitions() > 1) {
      out.error(doc, p + ".partitions", "the identity log has exactly one partition (one total order of identity decisions)");
    }
  }
}

bool looks_like_secret_property(std::string_view name) {
  const std::string n = lower(name);
  return n.find("password") != std::string::npos || n.find("secret") != std::string::npos ||
         n.ends_with(".key") || n.find("sasl.oauthbearer.config") != std::string::npos;
}

void check_bus(const v1::Consortium& c, const document& doc, reporter& out) {
  if (c.bus().has_embedded()) {
    const auto& e = c.bus().embedded();
    if (e.partitions() == 0 || e.partitions() > 10000) {
      out.error(doc, "bus.embedded.partitions", "must be 1 to 10000");
    }
    if (e.max_in_flight() == 0) out.error(doc, "bus.embedded.max_in_flight", "must be greater than 0");
    if (e.publish_timeout_ms() == 0) out.error(doc, "bus.embedded.publish_timeout_ms", "must be greater than 0");
  }
  if (c.bus().has_kafka()) {
    const auto& k = c.bus().kafka();
    if (k.brokers_size() == 0) out.error(doc, "bus.kafka.brokers", "at least one broker (host:port) required");
    for (int i = 0; i < k.brokers_size(); ++i) {
      if (!valid_host_port(k.brokers(i))) {
        out.error(doc, index_path("bus.kafka.brokers", i), quote(k.brokers(i)) + " is not host:port");
      }
    }
    for (const auto& [name, value] : k.properties()) {
      if (looks_like_secret_property(name)) {
        out.error(doc, "bus.kafka.properties[\"" + name + "\"]",
                  "looks like a secret; give it in secret_properties by reference (env or file)");
      }
    }
    for (const auto& [name, ref] : k.secret_properties()) {
      check_secret(ref, doc, "bus.kafka.secret_properties[\"" + name + "\"]", out);
    }
    if (k.partitions() == 0 || k.partitions() > 10000) out.error(doc, "bus.kafka.partitions", "must be 1 to 10000");
  }
}

void check_http(const v1::Consortium& c, const document& doc, const fs::path& dir, reporter& out) {
  const auto& h = c.http();
  if (h.port() > 65535) out.error(doc, "http.port", "port " + std::to_string(h.port()) + " is out of range (0 to 65535)");
  if (h.threads() == 0 || h.threads() > 256) out.error(doc, "http.threads", "must be 1 to 256");
  if (h.body_limit_bytes() == 0) out.error(doc, "http.body_limit_bytes", "must be greater than 0");
  if (h.has_tls()) check_tls(h.tls(), doc, "http.tls", dir, /*server=*/true, out);
}

// The placeholders a notification template may use: the list of
// adapters/webhook/notification.h, which fills them in (config cannot depend
// on the adapter; tests/unit/webhook checks that both agree on the example).
constexpr std::array<std::string_view, 8> kNotificationPlaceholders{
    "hospital", "exam", "report_id", "status", "start", "referral_id", "state", "supersedes"};

// "{name}" with a lower-case name is a placeholder; other text in braces is
// kept as written (the same reading as the renderer's).
std::vector<std::string> template_placeholders(std::string_view text) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < text.size()) {
    const auto open = text.find('{', i);
    if (open == std::string_view::npos) break;
    const auto close = text.find('}', open + 1);
    if (close == std::string_view::npos) break;
    const std::string_view name = text.substr(open + 1, close - open - 1);
    const bool is_name = !name.empty() && std::all_of(name.begin(), name.end(), [](char ch) {
      return (ch >= 'a' && ch <= 'z') || ch == '_';
    });
    if (!is_name) {
      i = open + 1;
      continue;
    }
    out.emplace_back(name);
    i = close + 1;
  }
  return out;
}

std::vector<std::string> enum_suffixes(const google::protobuf::EnumDescriptor& e) {
  std::vector<std::string> out;
  for (int i = 0; i < e.value_count(); ++i) {
    if (e.value(i)->number() != 0) out.push_back(short_enum_name(*e.value(i)));
  }
  return out;
}

// What a template's `when` may say for an event type (the renderer's
// event_status()); empty = the type has no status to narrow by.
std::vector<std::string> notification_statuses(std::string_view event_type) {
  if (event_type == "ReportIssued") {
    // OBR-25 result status, HL7 table 0123.
    return {"O", "I", "S", "A", "P", "C", "R", "F", "X", "Y", "Z"};
  }
  if (event_type == "AppointmentChanged") return enum_suffixes(*events::v1::BookingState_descriptor());
  if (event_type == "ReferralStateChanged" || event_type == "ReferralRequested") {
    return enum_suffixes(*events::v1::ReferralState_descriptor());
  }
  if (event_type == "CarePlanOccurrence") return {"BOOKED", "FAILED"};
  if (event_type == "CarePlanChanged") return enum_suffixes(*events::v1::CarePlanStatus_descriptor());
  return {};
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& ch : out) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return out;
}

void check_patient_notifications(const v1::Consortium& c, const document& doc, const fs::path& dir, reporter& out) {
  if (!c.has_patient_notifications()) return;
  const auto& pn = c.patient_notifications();
  const std::string base = "patient_notifications";
  const auto known_types = event_type_names();
  std::vector<std::string> routed;  // endpoint.event_types that are known
  if (!pn.has_endpoint()) {
    out.error(doc, base + ".endpoint", "required: the gateway patients are notified through (kind WEBHOOK, a URL)");
  } else {
    const auto& o = pn.endpoint();
    const std::string op = base + ".endpoint";
    if (o.id().empty()) {
      out.error(doc, op + ".id", "required (names the consumer group and the metrics, e.g. \"sms-gateway\")");
    } else if (!valid_id(o.id())) {
      out.error(doc, op + ".id", quote(o.id()) + " is not a valid id (lower-case letters, digits and '-')");
    }
    if (o.kind() == v1::ENDPOINT_KIND_UNSPECIFIED) {
      out.error(doc, op + ".kind", "required: WEBHOOK");
    } else if (o.kind() != v1::ENDPOINT_KIND_WEBHOOK) {
      out.error(doc, op + ".kind",
                "must be WEBHOOK (the gateway receives an HTTP POST of JSON), not " +
                    short_enum_name(*v1::EndpointKind_descriptor()->FindValueByNumber(o.kind())));
    }
    if (!valid_http_url(o.address())) {
      out.error(doc, op + ".address",
                o.address().empty() ? std::string("required (http:// or https:// URL)")
                                    : quote(o.address()) + " is not an http:// or https:// URL");
    }
    check_endpoint_settings(o, doc, op, dir, out);
    if (o.event_types_size() == 0) {
      out.error(doc, op + ".event_types", "at least one event type required (the events patients hear about)");
    }
    for (int j = 0; j < o.event_types_size(); ++j) {
      const std::string& t = o.event_types(j);
      const std::string tp = index_path(op + ".event_types", j);
      if (t == "*") {
        out.error(doc, tp, "\"*\" is not allowed here: list the event types patients hear about, each with a template");
      } else if (std::find(known_types.begin(), known_types.end(), t) == known_types.end()) {
        out.error(doc, tp, unknown_reference("event type", t, known_types));
      } else if (t == "DeliveryAcknowledged" || t == "DeadLetter") {
        out.error(doc, tp, t + " is never delivered");
      } else {
        routed.push_back(t);
      }
    }
  }

  std::vector<std::string> known_placeholders;
  for (auto p : kNotificationPlaceholders) known_placeholders.push_back("{" + std::string(p) + "}");
  std::map<std::pair<std::string, std::string>, int> seen;  // (event type, WHEN) -> index
  for (int i = 0; i < pn.templates_size(); ++i) {
    const auto& t = pn.templates(i);
    const std::string tp = index_path(base + ".templates", i);
    bool type_ok = false;
    if (t.event_type().empty()) {
      out.error(doc, tp + ".event_type", "required (an event body type, e.g. \"ReportIssued\")");
    } else if (std::find(known_types.begin(), known_types.end(), t.event_type()) == known_types.end()) {
      out.error(doc, tp + ".event_type", unknown_reference("event type", t.event_type(), known_types));
    } else {
      type_ok = true;
      if (pn.has_endpoint() && std::find(routed.begin(), routed.end(), t.event_type()) == routed.end()) {
        out.error(doc, tp + ".event_type",
                  t.event_type() + " is not in endpoint.event_types: patients never hear about it, so this "
                                   "template is never used");
      }
    }
    const std::string when = upper(t.when());
    if (type_ok && !when.empty()) {
      const auto statuses = notification_statuses(t.event_type());
      if (statuses.empty()) {
        out.error(doc, tp + ".when", t.event_type() + " has no status to narrow by; leave when empty");
      } else if (std::find(statuses.begin(), statuses.end(), when) == statuses.end()) {
        out.error(doc, tp + ".when", unknown_reference("status of " + t.event_type(), t.when(), statuses));
      }
    }
    if (type_ok) {
      if (auto [it, inserted] = seen.emplace(std::pair{t.event_type(), when}, i); !inserted) {
        out.error(doc, tp, "same event_type and when as templates[" + std::to_string(it->second) + "]");
      }
    }
    if (t.text().empty()) {
      out.error(doc, tp + ".text", "required (the zh-CN text the patient receives)");
    }
    // One diagnostic per field: every unknown placeholder in one message.
    std::set<std::string> reported;
    std::string unknown;
    for (const auto& name : template_placeholders(t.text())) {
      const bool known = std::find(kNotificationPlaceholders.begin(), kNotificationPlaceholders.end(), name) !=
                         kNotificationPlaceholders.end();
      if (!known && reported.insert(name).second) {
        if (!unknown.empty()) unknown += "; ";
        unknown += unknown_reference("placeholder", "{" + name + "}", known_placeholders);
      }
    }
    if (!unknown.empty()) out.error(doc, tp + ".text", unknown);
  }
  // Every event patients hear about needs a text when no narrower template fits.
  if (pn.has_endpoint()) {
    for (int j = 0; j < pn.endpoint().event_types_size(); ++j) {
      const std::string& t = pn.endpoint().event_types(j);
      if (std::find(routed.begin(), routed.end(), t) == routed.end()) continue;
      if (!seen.contains(std::pair{t, std::string{}})) {
        out.error(doc, index_path(base + ".endpoint.event_types", j),
                  "no template for " + t + " with an empty when (the text patients get when no narrower "
                  "template fits)");
      }
    }
  }
}

void check_principals(const v1::Consortium& c, const document& doc, reporter& out) {
  unique_ids ids(out, doc, "principal id");
  std::unordered_map<std::string, std::string> tokens;  // lower-case hash -> path
  for (int i = 0; i < c.principals_size(); ++i) {
    const auto& pr = c.principals(i);
    const std::string p = index_path("principals", i);
    if (pr.id().empty()) {
      out.error(doc, p + ".id", "required");
    } else {
      ids.add(pr.id(), p + ".id");
    }
    if (pr.role() == v1::ROLE_UNSPECIFIED) {
      out.error(doc, p + ".role", "required (one of " + enum_choices(*v1::Role_descriptor()) + ")");
    }
    if (pr.role() == v1::ROLE_PATIENT_GATEWAY) {
      if (!pr.hospital().empty()) {
        out.error(doc, p + ".hospital",
                  "a PATIENT_GATEWAY acts for the consortium's patients, not for a hospital; leave hospital empty");
      }
    } else if (!pr.hospital().empty() || pr.role() == v1::ROLE_HOSPITAL_SYSTEM || pr.role() == v1::ROLE_CLINIC_USER) {
      check_hospital_ref(c, pr.hospital(), doc, p + ".hospital", out);
    }
    if (pr.token_sha256().empty()) {
      out.error(doc, p + ".token_sha256", "required (lower-case hex SHA-256 of the token)");
    } else if (!is_sha256_hex(pr.token_sha256())) {
      // Never echo the value: it may be a plain token pasted by mistake.
      out.error(doc, p + ".token_sha256",
                "not a SHA-256 hex digest (64 characters 0-9a-f, got " + std::to_string(pr.token_sha256().size()) +
                    " characters); store sha256(token), never the token");
    } else if (auto [it, inserted] = tokens.emplace(lower(pr.token_sha256()), p); !inserted) {
      out.error(doc, p + ".token_sha256", "same token as " + it->second);
    }
  }
}

// Patient tokens: the key is required as soon as a gateway may ask for them.
// Whether the reference resolves is not checked here (the engine starts
// without it and answers patient sessions 503): only its form.
void check_patient_access(const v1::Consortium& c, const document& doc, reporter& out) {
  std::string gateway;  // path of the first PATIENT_GATEWAY principal
  for (int i = 0; i < c.principals_size() && gateway.empty(); ++i) {
    if (c.principals(i).role() == v1::ROLE_PATIENT_GATEWAY) gateway = index_path("principals", i);
  }
  const auto& pa = c.patient_access();
  if (!c.has_patient_access() || !pa.has_token_key()) {
    if (!gateway.empty()) {
      out.error(doc, c.has_patient_access() ? "patient_access.token_key" : gateway + ".role",
                "a PATIENT_GATEWAY principal needs patient_access.token_key (the key patient tokens are signed "
                "with, e.g. {env: YILIAN_PATIENT_TOKEN_KEY})");
    }
  } else {
    check_secret(pa.token_key(), doc, "patient_access.token_key", out);
  }
  if (c.has_patient_access() && (pa.token_lifetime_seconds() < 60 || pa.token_lifetime_seconds() > 86400)) {
    out.error(doc, "patient_access.token_lifetime_seconds",
              std::to_string(pa.token_lifetime_seconds()) + " is outside 60 to 86400 seconds");
  }
}

// RetryPolicy and OutboundEndpoint defaults (profile.proto).
void apply_endpoint_defaults(v1::OutboundEndpoint& o) {
  auto& r = *o.mutable_retry();
  if (r.initial_backoff_ms() == 0) r.set_initial_backoff_ms(1000);
  if (r.max_backoff_ms() == 0) r.set_max_backoff_ms(300000);
  if (r.max_attempts() == 0) r.set_max_attempts(20);
  if (o.timeout_ms() == 0) o.set_timeout_ms(10000);
  if (o.credentials().scheme() == v1::AUTH_SCHEME_UNSPECIFIED) o.mutable_credentials()->set_scheme(v1::AUTH_SCHEME_NONE);
}

}  // namespace

// ---------------------------------------------------------------------------

void apply_defaults(v1::Consortium& c) {
  if (c.data_dir().empty()) c.set_data_dir("var");
  if (c.time_zone().empty()) c.set_time_zone(std::string(default_time_zone));
  for (auto& h : *c.mutable_hospitals()) {
    if (h.profile().empty() && !h.id().empty()) h.set_profile("profiles/" + h.id() + "/profile.yaml");
  }
  for (auto& e : *c.mutable_equipment()) {
    if (e.has_schedule() && e.schedule().time_zone().empty()) e.mutable_schedule()->set_time_zone(c.time_zone());
  }
  auto& bus = *c.mutable_bus();
  if (bus.kind_case() == v1::BusConfig::KIND_NOT_SET) bus.mutable_embedded();
  if (bus.has_embedded()) {
    auto& e = *bus.mutable_embedded();
    if (e.path().empty()) e.set_path("bus");
    if (e.partitions() == 0) e.set_partitions(4);
    if (e.max_in_flight() == 0) e.set_max_in_flight(10000);
    if (e.publish_timeout_ms() == 0) e.set_publish_timeout_ms(5000);
  } else {
    auto& k = *bus.mutable_kafka();
    if (k.publish_timeout_ms() == 0) k.set_publish_timeout_ms(10000);
    if (k.max_in_flight() == 0) k.set_max_in_flight(10000);
    if (k.replication_factor() == 0) k.set_replication_factor(3);
    if (k.partitions() == 0) k.set_partitions(6);
    if (k.client_id().empty()) k.set_client_id("yilian-" + c.id());
    if (k.group_prefix().empty()) k.set_group_prefix(c.id());
  }
  auto& http = *c.mutable_http();
  if (http.address().empty()) http.set_address("127.0.0.1");
  if (!http.has_port()) http.set_port(8080);
  if (http.body_limit_bytes() == 0) http.set_body_limit_bytes(1024 * 1024);
  if (http.read_timeout_ms() == 0) http.set_read_timeout_ms(30000);
  if (http.threads() == 0) http.set_threads(2);
  auto& mllp = *c.mutable_mllp();
  if (mllp.bind_address().empty()) mllp.set_bind_address("0.0.0.0");
  if (mllp.max_frame_bytes() == 0) mllp.set_max_frame_bytes(4 * 1024 * 1024);
  if (mllp.read_timeout_ms() == 0) mllp.set_read_timeout_ms(30000);
  if (mllp.idle_timeout_ms() == 0) mllp.set_idle_timeout_ms(600000);
  if (mllp.max_connections() == 0) mllp.set_max_connections(16);
  auto& logging = *c.mutable_logging();
  if (logging.level() == v1::LOG_LEVEL_UNSPECIFIED) logging.set_level(v1::LOG_LEVEL_INFO);
  for (auto& p : *c.mutable_principals()) p.set_token_sha256(lower(p.token_sha256()));
  if (c.has_patient_notifications() && c.patient_notifications().has_endpoint()) {
    apply_endpoint_defaults(*c.mutable_patient_notifications()->mutable_endpoint());
  }
  if (c.has_patient_access() && c.patient_access().token_lifetime_seconds() == 0) {
    c.mutable_patient_access()->set_token_lifetime_seconds(900);
  }
}

void apply_defaults(v1::HospitalProfile& p, const v1::Consortium& c) {
  if (p.time_zone().empty()) p.set_time_zone(c.time_zone());
  if (p.default_charset() == v1::CHARSET_UNSPECIFIED) p.set_default_charset(v1::CHARSET_UTF8);
  auto& ack = *p.mutable_ack();
  if (ack.mode() == v1::ACK_MODE_UNSPECIFIED) ack.set_mode(v1::ACK_MODE_ORIGINAL);
  if (ack.accept_ack() == v1::ACK_CONDITION_UNSPECIFIED) ack.set_accept_ack(v1::ACK_CONDITION_ALWAYS);
  if (ack.application_ack() == v1::ACK_CONDITION_UNSPECIFIED) ack.set_application_ack(v1::ACK_CONDITION_NEVER);
  for (auto& m : *p.mutable_code_maps()) {
    if (m.target_system().empty()) m.set_target_system(std::string(default_exam_catalogue));
  }
  if (p.has_inbound() && p.inbound().has_mllp()) {
    auto& m = *p.mutable_inbound()->mutable_mllp();
    // The facilities a hospital sends as are the ones it is named by.
    if (p.facility_ids_size() == 0) *p.mutable_facility_ids() = m.expected_sending_facilities();
    if (m.bind_address().empty()) m.set_bind_address(c.mllp().bind_address());
    if (m.max_frame_bytes() == 0) m.set_max_frame_bytes(c.mllp().max_frame_bytes());
    if (m.read_timeout_ms() == 0) m.set_read_timeout_ms(c.mllp().read_timeout_ms());
  }
  for (auto& o : *p.mutable_outbound()) apply_endpoint_defaults(o);
}

void check_consortium(const v1::Consortium& c, const document& doc, const fs::path& dir, reporter& out) {
  if (c.id().empty()) {
    out.error(doc, "id", "required");
  } else if (!valid_id(c.id())) {
    out.error(doc, "id", quote(c.id()) + " is not a valid id (lower-case letters, digits and '-')");
  }
  if (c.name().empty()) out.error(doc, "name", "required");
  if (!valid_time_zone(c.time_zone())) out.error(doc, "time_zone", quote(c.time_zone()) + " is not a known time zone");
  check_hospitals(c, doc, out);
  check_equipment(c, doc, out);
  check_topics(c, doc, out);
  check_bus(c, doc, out);
  check_http(c, doc, dir, out);
  check_principals(c, doc, out);
  check_patient_access(c, doc, out);
  check_patient_notifications(c, doc, dir, out);
}

void check_profile(const v1::HospitalProfile& p, const document& doc, const fs::path& dir, reporter& out) {
  if (p.hospital().empty()) out.error(doc, "hospital", "required");
  if (!valid_time_zone(p.time_zone())) out.error(doc, "time_zone", quote(p.time_zone()) + " is not a known time zone");

  if (p.identifier_authorities_size() == 0) {
    out.error(doc, "identifier_authorities", "at least one identifier authority required");
  }
  unique_ids authorities(out, doc, "identifier authority");
  for (int i = 0; i < p.identifier_authorities_size(); ++i) {
    const auto& a = p.identifier_authorities(i);
    const std::string ap = index_path("identifier_authorities", i);
    if (a.namespace_id().empty() && a.type_code().empty()) {
      out.error(doc, ap, "give namespace_id (PID-3.4) or type_code (PID-3.5), or both");
    } else {
      authorities.add(a.namespace_id() + "^" + a.type_code(), ap);
    }
    if (a.system().empty()) out.error(doc, ap + ".system", "required (consortium identifier system URI)");
    if (a.type() == events::v1::IDENTIFIER_TYPE_UNSPECIFIED) {
      out.error(doc, ap + ".type", "required (one of " + enum_choices(*events::v1::IdentifierType_descriptor()) + ")");
    }
  }

  unique_ids systems(out, doc, "code system");
  for (int i = 0; i < p.code_maps_size(); ++i) {
    const auto& m = p.code_maps(i);
    const std::string mp = index_path("code_maps", i);
    if (m.source_system().empty()) {
      out.error(doc, mp + ".source_system", "required");
    } else {
      systems.add(m.source_system(), mp + ".source_system");
    }
    if (m.mappings().empty()) out.error(doc, mp + ".mappings", "at least one mapping required");
    // Map iteration order is unspecified; report in key order.
    std::map<std::string, std::string> sorted(m.mappings().begin(), m.mappings().end());
    for (const auto& [local, target] : sorted) {
      const std::string kp = mp + ".mappings[\"" + local + "\"]";
      if (local.empty()) out.error(doc, kp, "local code is empty");
      if (target.empty()) out.error(doc, kp, "target code is empty");
    }
  }

  if (p.has_inbound() && p.inbound().has_mllp()) {
    const auto& m = p.inbound().mllp();
    if (!m.has_port()) {
      out.error(doc, "inbound.mllp.port", "required");
    } else if (m.port() > 65535) {
      out.error(doc, "inbound.mllp.port", "port " + std::to_string(m.port()) + " is out of range (0 to 65535)");
    }
    if (m.has_tls()) check_tls(m.tls(), doc, "inbound.mllp.tls", dir, /*server=*/true, out);
    if (m.expected_sending_facilities_size() == 0) {
      out.error(doc, "inbound.mllp.expected_sending_facilities", "at least one MSH-4 value required");
    }
    if (m.check_sending_application() && m.expected_sending_applications_size() == 0) {
      out.error(doc, "inbound.mllp.expected_sending_applications",
                "at least one MSH-3 value required when check_sending_application is true");
    }
  }

  const auto known_types = event_type_names();
  unique_ids endpoints(out, doc, "endpoint id");
  for (int i = 0; i < p.outbound_size(); ++i) {
    const auto& o = p.outbound(i);
    const std::string op = index_path("outbound", i);
    if (o.id().empty()) {
      out.error(doc, op + ".id", "required");
    } else {
      endpoints.add(o.id(), op + ".id");
    }
    switch (o.kind()) {
      case v1::ENDPOINT_KIND_UNSPECIFIED:
        out.error(doc, op + ".kind", "required (one of " + enum_choices(*v1::EndpointKind_descriptor()) + ")");
        break;
      case v1::ENDPOINT_KIND_MLLP:
        if (!valid_host_port(o.address())) {
          out.error(doc, op + ".address",
                    o.address().empty() ? std::string("required (host:port)") : quote(o.address()) + " is not host:port");
        }
        break;
      default:
        if (!valid_http_url(o.address())) {
          out.error(doc, op + ".address",
                    o.address().empty() ? std::string("required (http:// or https:// URL)")
                                        : quote(o.address()) + " is not an http:// or https:// URL");
        }
        break;
    }
    check_endpoint_settings(o, doc, op, dir, out);
    if (o.event_types_size() == 0) out.error(doc, op + ".event_types", "at least one event type (or \"*\") required");
    for (int j = 0; j < o.event_types_size(); ++j) {
      const std::string& t = o.event_types(j);
      if (t != "*" && std::find(known_types.begin(), known_types.end(), t) == known_types.end()) {
        out.error(doc, index_path(op + ".event_types", j), unknown_reference("event type", t, known_types));
      }
    }
  }

  unique_ids facilities(out, doc, "facility id");
  for (int i = 0; i < p.facility_ids_size(); ++i) {
    const std::string fp = index_path("facility_ids", i);
    if (p.facility_ids(i).empty()) {
      out.error(doc, fp, "empty facility id (an HD-1 namespace id such as \"ZSRMYY\")");
    } else {
      facilities.add(p.facility_ids(i), fp);
    }
  }
  std::map<std::string, std::string> resources(p.resource_ids().begin(), p.resource_ids().end());
  for (const auto& [local, target] : resources) {
    const std::string rp = "resource_ids[\"" + local + "\"]";
    if (local.empty()) out.error(doc, rp, "local resource code is empty");
    if (target.empty()) out.error(doc, rp, "target equipment id is empty");
  }

  std::vector<std::string> items;
  for (int i = 0; i < v1::LocatedItem_descriptor()->value_count(); ++i) {
    const auto* v = v1::LocatedItem_descriptor()->value(i);
    if (v->number() != 0) items.push_back(lower(short_enum_name(*v)));
  }
  std::map<std::string, std::string> locations(p.quirks().field_locations().begin(),
                                                p.quirks().field_locations().end());
  for (const auto& [item, where] : locations) {
    const std::string qp = "quirks.field_locations[\"" + item + "\"]";
    if (std::find(items.begin(), items.end(), item) == items.end()) {
      out.error(doc, qp, unknown_reference("item", item, items));
    }
    if (!valid_hl7_location(where)) {
      out.error(doc, qp, quote(where) + " is not an HL7 v2 location (SEG-n[.c[.s]], e.g. \"OBR-18\", \"ZDS-1.1\")");
    }
  }
  for (int i = 0; i < p.quirks().ignored_segments_size(); ++i) {
    const std::string& s = p.quirks().ignored_segments(i);
    const bool z = s.size() == 3 && s[0] == 'Z' &&
                   std::all_of(s.begin() + 1, s.end(), [](char ch) { return std::isupper(static_cast<unsigned char>(ch)) || is_digit(ch); });
    if (!z) out.error(doc, index_path("quirks.ignored_segments", i), quote(s) + " is not a Z-segment name (e.g. \"ZPI\")");
  }
}

void check_profiles_together(const v1::Consortium& c, const std::vector<profile_ref>& profiles, reporter& out) {
  // A facility id names one hospital: messages from any hospital that
  // mention it are resolved to that one.
  struct first_use {
    std::string hospital;
    const document* doc = nullptr;
    std::string path;
  };
  std::unordered_map<std::string, first_use> facilities;
  std::vector<std::string> equipment_ids;
  std::vector<std::string> card_systems;
  constexpr std::size_t max_card_systems = 4;
  for (const auto& e : c.equipment()) {
    if (!e.id().empty()) equipment_ids.push_back(e.id());
  }
  for (const auto& ref : profiles) {
    const v1::HospitalProfile& p = *ref.profile;
    for (int i = 0; i < p.facility_ids_size(); ++i) {
      const std::string& f = p.facility_ids(i);
      if (f.empty()) continue;
      // Defaulted ids are reported where they were written.
      const std::string path = ref.doc->locations.contains("facility_ids")
                                   ? index_path("facility_ids", i)
                                   : index_path("inbound.mllp.expected_sending_facilities", i);
      auto [it, inserted] = facilities.emplace(f, first_use{ref.hospital, ref.doc, path});
      if (!inserted && it->second.hospital != ref.hospital) {
        const source_location at = out.where(*it->second.doc, it->second.path);
        out.error(*ref.doc, path,
                  "facility id " + quote(f) + " already names hospital " + quote(it->second.hospital) + " (" +
                      it->second.doc->file + ":" + std::to_string(at.line) + ":" + std::to_string(at.column) +
                      "); each facility id names one hospital");
      }
    }
    // The identity index compares at most four person-level card systems
    // (engine/identity/matcher.h max_card_systems).
    for (int i = 0; i < p.identifier_authorities_size(); ++i) {
      const auto& a = p.identifier_authorities(i);
      if (a.type() != events::v1::IDENTIFIER_TYPE_INSURANCE_CARD && a.type() != events::v1::IDENTIFIER_TYPE_HEALTH_CARD) continue;
      if (std::find(card_systems.begin(), card_systems.end(), a.system()) != card_systems.end()) continue;
      card_systems.push_back(a.system());
      if (card_systems.size() == max_card_systems + 1) {
        out.error(*ref.doc, index_path("identifier_authorities", i) + ".system",
                  "a fifth insurance / health card system " + quote(a.system()) +
                      ": the identity index compares at most four across the consortium");
      }
    }
    std::map<std::string, std::string> resources(p.resource_ids().begin(), p.resource_ids().end());
    for (const auto& [local, target] : resources) {
      if (target.empty()) continue;
      if (std::find(equipment_ids.begin(), equipment_ids.end(), target) == equipment_ids.end()) {
        out.error(*ref.doc, "resource_ids[\"" + local + "\"]", unknown_reference("equipment", target, equipment_ids));
      }
    }
  }
}

}  // namespace yilian::config::detail
