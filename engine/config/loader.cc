#include <algorithm>
#include <cctype>
#include <cstring>
#include <deque>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <system_error>
#include <utility>

#include "engine/config/checks.h"
#include "engine/config/config.h"
#include "engine/config/yaml_proto.h"
#include "yilian/events/v1/envelope.pb.h"

namespace yilian::config {

namespace fs = std::filesystem;

namespace {

// Reads a whole file; on failure returns why.
result<std::string> read_file(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return fail(errc::not_found, "file not found");
  if (!fs::is_regular_file(path, ec)) return fail(errc::invalid_argument, "not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(errc::io_error, std::string("cannot open: ") + std::strerror(errno));
  std::ostringstream content;
  content << in.rdbuf();
  if (in.bad()) return fail(errc::io_error, "read failed");
  return content.str();
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string position(const detail::document& doc, const std::string& path) {
  const source_location at = doc.locations.find(path);
  return doc.file + ":" + std::to_string(at.line) + ":" + std::to_string(at.column);
}

std::int64_t as_retention(std::uint64_t configured, std::uint64_t bus_default) {
  const std::uint64_t v = configured != 0 ? configured : bus_default;
  if (v == 0) return -1;
  return static_cast<std::int64_t>(std::min<std::uint64_t>(v, std::numeric_limits<std::int64_t>::max()));
}

std::vector<topic_settings> effective_topics(const v1::Consortium& c) {
  std::uint32_t partitions = 1;
  std::uint64_t retention_ms = 0;
  std::uint64_t retention_bytes = 0;
  if (c.bus().has_kafka()) {
    partitions = c.bus().kafka().partitions();
    retention_ms = c.bus().kafka().retention_ms();
  } else {
    partitions = c.bus().embedded().partitions();
    retention_ms = c.bus().embedded().retention_ms();
    retention_bytes = c.bus().embedded().retention_bytes();
  }
  auto settings = [&](const std::string& name, const v1::TopicConfig* configured) {
    topic_settings t{.name = name};
    const std::uint32_t p = configured != nullptr && configured->partitions() != 0 ? configured->partitions() : partitions;
    t.partitions = static_cast<std::int32_t>(std::min<std::uint32_t>(p, 10000));
    t.retention_ms = as_retention(configured != nullptr ? configured->retention_ms() : 0, retention_ms);
    t.retention_bytes = as_retention(configured != nullptr ? configured->retention_bytes() : 0, retention_bytes);
    return t;
  };
  auto find = [&c](std::string_view name) -> const v1::TopicConfig* {
    for (const auto& t : c.topics()) {
      if (t.name() == name) return &t;
    }
    return nullptr;
  };
  std::vector<topic_settings> out;
  for (const auto& s : standard_topics()) {
    topic_settings t = settings(s.name, find(s.name));
    if (s.topic == events::v1::TOPIC_IDENTITY) {
      // The identity log is the index's state: one total order, kept
      // forever unless retention is configured for it explicitly (checks.cc
      // refuses another partition count).
      const v1::TopicConfig* configured = find(s.name);
      t.partitions = 1;
      if (configured == nullptr || configured->retention_ms() == 0) t.retention_ms = -1;
      if (configured == nullptr || configured->retention_bytes() == 0) t.retention_bytes = -1;
    }
    out.push_back(std::move(t));
  }
  for (const auto& t : c.topics()) {
    const bool standard = std::any_of(standard_topics().begin(), standard_topics().end(),
                                      [&t](const standard_topic& s) { return s.name == t.name(); });
    if (!standard) out.push_back(settings(t.name(), &t));
  }
  return out;
}

// File order first (consortium, then profiles as listed), then line order.
void sort_report(config_report& report, const std::vector<std::string>& files) {
  auto rank = [&files](const std::string& f) {
    auto it = std::find(files.begin(), files.end(), f);
    return static_cast<std::size_t>(it - files.begin());
  };
  std::stable_sort(report.diagnostics.begin(), report.diagnostics.end(), [&](const diagnostic& a, const diagnostic& b) {
    const auto ra = rank(a.file);
    const auto rb = rank(b.file);
    if (ra != rb) return ra < rb;
    if (a.line != b.line) return a.line < b.line;
    return a.column < b.column;
  });
}

struct listener {
  std::uint32_t port = 0;
  std::string what;
  const detail::document* doc = nullptr;
  std::string path;
};

}  // namespace

validation_result validate_consortium(const fs::path& dir_or_file, const load_options& options) {
  validation_result out;
  config_report& report = out.report;
  detail::reporter rep(report);

  std::error_code ec;
  fs::path file = fs::is_directory(dir_or_file, ec) ? dir_or_file / "consortium.yaml" : dir_or_file;
  file = file.lexically_normal();
  const fs::path dir = file.parent_path();
  detail::document cdoc{.file = file.string(), .locations = {}};
  std::vector<std::string> files{cdoc.file};

  auto text = read_file(file);
  if (!text) {
    report.diagnostics.push_back(diagnostic{.file = cdoc.file, .message = "cannot read: " + text.error().message});
    return out;
  }
  v1::Consortium c;
  if (!parse_yaml(*text, cdoc.file, c, cdoc.locations, report)) return out;
  detail::apply_defaults(c);
  detail::check_consortium(c, cdoc, dir, rep);

  // Profiles, one per hospital.
  std::deque<detail::document> pdocs;
  std::vector<hospital_profile> profiles;
  std::vector<const detail::document*> profile_docs;  // parallel to profiles
  std::vector<listener> listeners;
  if (c.http().port() != 0 && c.http().port() <= 65535) {
    listeners.push_back({c.http().port(), "the HTTP listener", &cdoc, "http.port"});
  }
  std::map<std::string, std::string> used_files;  // profile file -> hospitals[i]
  for (int i = 0; i < c.hospitals_size(); ++i) {
    const auto& h = c.hospitals(i);
    if (h.id().empty()) continue;  // reported already
    const std::string hp = "hospitals[" + std::to_string(i) + "]";
    const fs::path pfile = (dir / h.profile()).lexically_normal();
    if (auto [it, inserted] = used_files.emplace(pfile.string(), hp); !inserted) {
      rep.error(cdoc, hp + ".profile", "same profile file as " + it->second + "; each hospital needs its own");
      continue;
    }
    auto ptext = read_file(pfile);
    if (!ptext) {
      rep.error(cdoc, hp + ".profile",
                (ptext.error().code == errc::not_found ? "profile file not found: " : "cannot read profile file " +
                                                                                           pfile.string() + ": ") +
                    (ptext.error().code == errc::not_found ? pfile.string() : ptext.error().message));
      continue;
    }
    detail::document& pdoc = pdocs.emplace_back(detail::document{.file = pfile.string(), .locations = {}});
    files.push_back(pdoc.file);
    hospital_profile loaded{.hospital_id = h.id(), .file = fs::absolute(pfile, ec).lexically_normal(), .profile = {}};
    if (!parse_yaml(*ptext, pdoc.file, loaded.profile, pdoc.locations, report)) continue;
    detail::apply_defaults(loaded.profile, c);
    detail::check_profile(loaded.profile, pdoc, dir, rep);
    if (!loaded.profile.hospital().empty() && loaded.profile.hospital() != h.id()) {
      rep.error(pdoc, "hospital",
                "profile is for hospital " + detail::quote(loaded.profile.hospital()) + ", but " + hp + " (" +
                    detail::quote(h.id()) + ") points at it");
    }
    if (loaded.profile.inbound().has_mllp()) {
      const auto port = loaded.profile.inbound().mllp().port();
      if (port != 0 && port <= 65535) {
        listeners.push_back({port, "the MLLP listener of hospital " + detail::quote(h.id()), &pdoc, "inbound.mllp.port"});
      }
    }
    profiles.push_back(std::move(loaded));
    profile_docs.push_back(&pdoc);
  }

  std::vector<detail::profile_ref> refs;
  for (std::size_t i = 0; i < profiles.size(); ++i) {
    refs.push_back({.hospital = profiles[i].hospital_id, .profile = &profiles[i].profile, .doc = profile_docs[i]});
  }
  detail::check_profiles_together(c, refs, rep);

  // Ports are unique across the HTTP listener and every MLLP listener.
  for (std::size_t i = 0; i < listeners.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      if (listeners[i].port == listeners[j].port) {
        rep.error(*listeners[i].doc, listeners[i].path,
                  "port " + std::to_string(listeners[i].port) + " is already used by " + listeners[j].what + " (" +
                      position(*listeners[j].doc, listeners[j].path) + ")");
        break;
      }
    }
  }

  sort_report(report, files);
  if (!report.ok()) return out;

  loaded_consortium l;
  l.file = fs::absolute(file, ec).lexically_normal();
  l.directory = l.file.parent_path();
  l.data_dir = options.data_dir ? fs::absolute(*options.data_dir, ec).lexically_normal()
                                : (l.directory / c.data_dir()).lexically_normal();
  if (c.bus().has_embedded()) l.bus_dir = (l.data_dir / c.bus().embedded().path()).lexically_normal();
  l.topics = effective_topics(c);
  l.consortium = std::move(c);
  l.profiles = std::move(profiles);
  out.loaded = std::move(l);
  return out;
}

result<loaded_consortium> load_consortium(const fs::path& dir_or_file, const load_options& options) {
  auto v = validate_consortium(dir_or_file, options);
  if (v.loaded) return std::move(*v.loaded);
  std::string message = v.report.to_string();
  if (!message.empty() && message.back() == '\n') message.pop_back();
  return fail(errc::config_error, std::move(message), dir_or_file.string());
}

// ---------------------------------------------------------------------------
// loaded_consortium

const v1::Hospital* loaded_consortium::hospital(std::string_view id) const {
  for (const auto& h : consortium.hospitals()) {
    if (h.id() == id) return &h;
  }
  return nullptr;
}

const v1::HospitalProfile* loaded_consortium::profile(std::string_view hospital_id) const {
  for (const auto& p : profiles) {
    if (p.hospital_id == hospital_id) return &p.profile;
  }
  return nullptr;
}

const v1::Equipment* loaded_consortium::equipment(std::string_view id) const {
  for (const auto& e : consortium.equipment()) {
    if (e.id() == id) return &e;
  }
  return nullptr;
}

const v1::Principal* loaded_consortium::principal_by_token_sha256(std::string_view sha256_hex) const {
  const std::string wanted = lower(sha256_hex);
  for (const auto& p : consortium.principals()) {
    if (p.token_sha256() == wanted) return &p;
  }
  return nullptr;
}

fs::path loaded_consortium::resolve(std::string_view path) const {
  return (directory / fs::path(path)).lexically_normal();
}

// ---------------------------------------------------------------------------
// topics and event types, from the schemas

std::span<const standard_topic> standard_topics() {
  static const std::vector<standard_topic> topics = [] {
    std::vector<standard_topic> out;
    const auto* e = events::v1::Topic_descriptor();
    for (int i = 0; i < e->value_count(); ++i) {
      const auto* v = e->value(i);
      if (v->number() == 0) continue;
      out.push_back(standard_topic{.topic = static_cast<events::v1::Topic>(v->number()),
                                   .name = v->options().GetExtension(events::v1::topic_name),
                                   .partition_key = v->options().GetExtension(events::v1::partition_key)});
    }
    return out;
  }();
  return topics;
}

std::string_view topic_name(events::v1::Topic topic) {
  for (const auto& t : standard_topics()) {
    if (t.topic == topic) return t.name;
  }
  return {};
}

std::string modality_code(v1::Modality m) {
  const auto* v = v1::Modality_descriptor()->FindValueByNumber(m);
  if (v == nullptr || m == v1::MODALITY_UNSPECIFIED) return {};
  constexpr std::string_view prefix = "MODALITY_";
  const std::string& name = v->name();
  return name.starts_with(prefix) ? name.substr(prefix.size()) : name;
}

std::vector<std::string> event_type_names() {
  std::vector<std::string> out;
  const auto* body = events::v1::Envelope::descriptor()->FindOneofByName("body");
  for (int i = 0; i < body->field_count(); ++i) out.push_back(body->field(i)->message_type()->name());
  return out;
}

}  // namespace yilian::config
