#include "engine/config/yaml_proto.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <system_error>
#include <utility>
#include <vector>

#include <google/protobuf/descriptor.h>
#include <yaml-cpp/yaml.h>

namespace yilian::config {

namespace pb = google::protobuf;

// ---------------------------------------------------------------------------
// source_map

void source_map::add(std::string path, source_location at) {
  locations_.insert_or_assign(std::move(path), at);
}

bool source_map::contains(std::string_view path) const {
  return locations_.contains(std::string(path));
}

source_location source_map::find(std::string_view path) const {
  for (;;) {
    if (auto it = locations_.find(std::string(path)); it != locations_.end()) return it->second;
    if (path.empty()) return {};
    path = parent_path(path);
  }
}

std::string_view parent_path(std::string_view path) {
  if (path.empty()) return path;
  if (path.back() == ']') {
    std::size_t open = path.ends_with("\"]") ? path.rfind("[\"") : path.rfind('[');
    if (open == std::string_view::npos) return {};
    return path.substr(0, open);
  }
  std::size_t dot = path.rfind('.');
  if (dot == std::string_view::npos) return {};
  return path.substr(0, dot);
}

// ---------------------------------------------------------------------------
// helpers

std::size_t edit_distance(std::string_view a, std::string_view b) {
  // Optimal string alignment: insertions, deletions, substitutions and
  // transpositions of neighbours ("nmae" -> "name") each cost 1.
  const std::size_t n = a.size();
  const std::size_t m = b.size();
  std::vector<std::vector<std::size_t>> d(n + 1, std::vector<std::size_t>(m + 1));
  for (std::size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= m; ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= n; ++i) {
    for (std::size_t j = 1; j <= m; ++j) {
      const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[n][m];
}

namespace {

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

// "IdentifierType" -> "IDENTIFIER_TYPE_"
std::string enum_prefix(const pb::EnumDescriptor& e) {
  std::string out;
  for (char c : e.name()) {
    if (std::isupper(static_cast<unsigned char>(c)) && !out.empty()) out += '_';
    out += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  out += '_';
  return out;
}

}  // namespace

std::string short_enum_name(const pb::EnumValueDescriptor& value) {
  const std::string prefix = enum_prefix(*value.type());
  const std::string& name = value.name();
  if (name.starts_with(prefix) && name.size() > prefix.size()) return name.substr(prefix.size());
  return name;
}

namespace {

source_location location_of(const YAML::Mark& mark) {
  if (mark.is_null() || mark.line < 0) return {};
  return {mark.line + 1, mark.column + 1};
}

bool is_quoted(const YAML::Node& node) { return node.IsScalar() && node.Tag() == "!"; }

std::string quote(std::string_view s) {
  std::string out = "\"";
  out += s;
  out += '"';
  return out;
}

// What the user wrote, for "expected X, got Y".
std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null: return "an empty value";
    case YAML::NodeType::Sequence: return "a sequence";
    case YAML::NodeType::Map: return "a mapping";
    case YAML::NodeType::Scalar:
      return is_quoted(node) ? "the string " + quote(node.Scalar()) : quote(node.Scalar());
    case YAML::NodeType::Undefined: break;
  }
  return "nothing";
}

std::string join(const std::vector<std::string>& names, std::string_view separator) {
  std::string out;
  for (const auto& n : names) {
    if (!out.empty()) out += separator;
    out += n;
  }
  return out;
}

// The closest candidate within a small edit distance, or empty.
std::string closest(std::string_view word, const std::vector<std::string>& candidates) {
  std::string best;
  std::size_t best_distance = std::numeric_limits<std::size_t>::max();
  const std::string w = upper(word);
  for (const auto& c : candidates) {
    std::size_t d = edit_distance(w, upper(c));
    if (d < best_distance) {
      best_distance = d;
      best = c;
    }
  }
  const std::size_t limit = std::max<std::size_t>(1, std::min<std::size_t>(3, word.size() / 3));
  return best_distance <= limit ? best : std::string{};
}

std::string join_path(const std::string& path, std::string_view name) {
  if (path.empty()) return std::string(name);
  std::string out = path;
  out += '.';
  out += name;
  return out;
}

std::string index_path(const std::string& path, std::size_t i) {
  return path + '[' + std::to_string(i) + ']';
}

std::string key_path(const std::string& path, std::string_view key) {
  return path + "[\"" + std::string(key) + "\"]";
}

template <class T>
std::string range_text() {
  return std::to_string(std::numeric_limits<T>::min()) + " to " +
         std::to_string(std::numeric_limits<T>::max());
}

// Well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing past
// U+10FFFF), which protobuf requires of proto3 string fields: a message holding
// anything else does not parse back after serialization.
bool is_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t more = 0;  // continuation bytes
    unsigned char lo = 0x80;
    unsigned char hi = 0xBF;  // allowed range of the first continuation byte
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      more = 1;
    } else if (c == 0xE0) {
      more = 2;
      lo = 0xA0;
    } else if (c == 0xED) {
      more = 2;
      hi = 0x9F;
    } else if (c >= 0xE1 && c <= 0xEF) {
      more = 2;
    } else if (c == 0xF0) {
      more = 3;
      lo = 0x90;
    } else if (c == 0xF4) {
      more = 3;
      hi = 0x8F;
    } else if (c >= 0xF1 && c <= 0xF3) {
      more = 3;
    } else {
      return false;
    }
    if (s.size() - i <= more) return false;
    for (std::size_t k = 1; k <= more; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF)) return false;
    }
    i += more + 1;
  }
  return true;
}

bool is_integer_text(std::string_view s) {
  if (!s.empty() && (s.front() == '-' || s.front() == '+')) s.remove_prefix(1);
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

class walker {
 public:
  walker(const std::string& file, source_map& locations, config_report& report)
      : file_(file), locations_(locations), report_(report) {}

  void message(const YAML::Node& node, pb::Message& msg, const std::string& path, source_location at) {
    locations_.add(path, at);
    if (node.IsNull()) return;  // "bus:" with nothing under it = an empty message
    if (!node.IsMap()) {
      error(at, path, "expected a mapping, got " + describe(node));
      return;
    }
    const pb::Descriptor& desc = *msg.GetDescriptor();
    std::unordered_map<std::string, int> seen;  // key -> line
    std::unordered_map<const pb::OneofDescriptor*, const pb::FieldDescriptor*> oneofs;
    for (const auto& entry : node) {
      const YAML::Node key = entry.first;
      const YAML::Node value = entry.second;
      const source_location key_at = location_of(key.Mark());
      if (!key.IsScalar()) {
        error(key_at, path, "expected a field name, got " + describe(key));
        continue;
      }
      const std::string name = key.Scalar();
      const std::string field_path = join_path(path, name);
      if (auto [first, inserted] = seen.emplace(name, key_at.line); !inserted) {
        error(key_at, field_path, "duplicate key (first given at line " + std::to_string(first->second) + ")");
        continue;
      }
      const pb::FieldDescriptor* field = desc.FindFieldByName(name);
      if (field == nullptr) {
        unknown_field(desc, name, key_at, field_path);
        continue;
      }
      if (const pb::OneofDescriptor* oneof = field->real_containing_oneof()) {
        if (auto [other, inserted] = oneofs.emplace(oneof, field); !inserted) {
          std::vector<std::string> members;
          for (int i = 0; i < oneof->field_count(); ++i) members.push_back(oneof->field(i)->name());
          error(key_at, field_path,
                "only one of " + join(members, ", ") + " may be given (" + other->second->name() +
                    " is already given)");
          continue;
        }
      }
      // Scalars are located at the value, mappings and sequences at their key.
      read_field(value, msg, *field, field_path, value.IsScalar() ? value_location(value, key_at) : key_at);
    }
  }

  void error(source_location at, const std::string& path, std::string message) {
    report_.diagnostics.push_back(diagnostic{.file = file_,
                                             .line = at.line,
                                             .column = at.column,
                                             .field = path,
                                             .message = std::move(message)});
  }

 private:
  // An empty value ("key:" then a new line) has its mark on the next line;
  // point at the key instead.
  static source_location value_location(const YAML::Node& value, source_location key_at) {
    source_location at = location_of(value.Mark());
    if (at.line == 0 || (value.IsNull() && at.line != key_at.line)) return key_at;
    return at;
  }

  void unknown_field(const pb::Descriptor& desc, const std::string& name, source_location at,
                     const std::string& path) {
    std::vector<std::string> names;
    for (int i = 0; i < desc.field_count(); ++i) names.push_back(desc.field(i)->name());
    std::string suggestion = closest(name, names);
    if (!suggestion.empty()) {
      error(at, path, "unknown field (did you mean " + quote(suggestion) + "?)");
    } else {
      error(at, path, "unknown field (expected one of: " + join(names, ", ") + ")");
    }
  }

  void read_field(const YAML::Node& value, pb::Message& msg, const pb::FieldDescriptor& field,
                  const std::string& path, source_location at) {
    if (field.is_map()) {
      read_map(value, msg, field, path, at);
    } else if (field.is_repeated()) {
      locations_.add(path, at);
      if (value.IsNull()) return;
      if (!value.IsSequence()) {
        error(at, path, "expected a sequence, got " + describe(value));
        return;
      }
      for (std::size_t i = 0; i < value.size(); ++i) {
        const YAML::Node element = value[i];
        const std::string element_path = index_path(path, i);
        const source_location element_at = value_location(element, at);
        if (field.cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
          message(element, *msg.GetReflection()->AddMessage(&msg, &field), element_path, element_at);
        } else {
          locations_.add(element_path, element_at);
          scalar(element, msg, field, element_path, element_at, /*repeated=*/true);
        }
      }
    } else if (field.cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      message(value, *msg.GetReflection()->MutableMessage(&msg, &field), path, at);
    } else {
      locations_.add(path, at);
      scalar(value, msg, field, path, at, /*repeated=*/false);
    }
  }

  void read_map(const YAML::Node& value, pb::Message& msg, const pb::FieldDescriptor& field,
                const std::string& path, source_location at) {
    locations_.add(path, at);
    if (value.IsNull()) return;
    if (!value.IsMap()) {
      error(at, path, "expected a mapping, got " + describe(value));
      return;
    }
    const pb::Descriptor& entry_desc = *field.message_type();
    const pb::FieldDescriptor& key_field = *entry_desc.map_key();
    const pb::FieldDescriptor& value_field = *entry_desc.map_value();
    std::unordered_map<std::string, int> seen;
    for (const auto& kv : value) {
      const YAML::Node key = kv.first;
      const YAML::Node item = kv.second;
      const source_location key_at = location_of(key.Mark());
      if (!key.IsScalar()) {
        error(key_at, path, "expected a key, got " + describe(key));
        continue;
      }
      const std::string entry_path = key_path(path, key.Scalar());
      if (auto [first, inserted] = seen.emplace(key.Scalar(), key_at.line); !inserted) {
        error(key_at, entry_path, "duplicate key (first given at line " + std::to_string(first->second) + ")");
        continue;
      }
      // Build the entry aside and add it only when both halves parsed.
      std::unique_ptr<pb::Message> entry(msg.GetReflection()
                                             ->GetMessageFactory()
                                             ->GetPrototype(&entry_desc)
                                             ->New());
      const std::size_t errors_before = report_.diagnostics.size();
      scalar(key, *entry, key_field, entry_path, key_at, /*repeated=*/false);
      const source_location entry_at = item.IsScalar() ? value_location(item, key_at) : key_at;
      if (value_field.cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
        message(item, *entry->GetReflection()->MutableMessage(entry.get(), &value_field), entry_path, entry_at);
      } else {
        locations_.add(entry_path, entry_at);
        scalar(item, *entry, value_field, entry_path, entry_at, /*repeated=*/false);
      }
      if (report_.diagnostics.size() == errors_before) {
        msg.GetReflection()->AddMessage(&msg, &field)->CopyFrom(*entry);
      }
    }
  }

  template <class T>
  std::optional<T> integer(const YAML::Node& node, const std::string& path, source_location at) {
    const std::string& text = node.Scalar();
    if (is_quoted(node) || !is_integer_text(text)) {
      error(at, path, "expected an integer, got " + describe(node));
      return std::nullopt;
    }
    std::string_view digits = text;
    if (digits.front() == '+') digits.remove_prefix(1);
    T v{};
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
    if (ec != std::errc{} || end != digits.data() + digits.size()) {
      error(at, path, text + " is out of range (" + range_text<T>() + ")");
      return std::nullopt;
    }
    return v;
  }

  void scalar(const YAML::Node& node, pb::Message& msg, const pb::FieldDescriptor& field,
              const std::string& path, source_location at, bool repeated) {
    const pb::Reflection& r = *msg.GetReflection();
    const std::string expected = expected_text(field);
    if (!node.IsScalar()) {
      error(at, path, "expected " + expected + ", got " + describe(node));
      return;
    }
    const std::string& text = node.Scalar();
    switch (field.cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_STRING:
        if (field.type() == pb::FieldDescriptor::TYPE_STRING && !is_utf8(text)) {
          error(at, path, "not valid UTF-8 text (configuration files are UTF-8)");
          return;
        }
        repeated ? r.AddString(&msg, &field, text) : r.SetString(&msg, &field, text);
        return;
      case pb::FieldDescriptor::CPPTYPE_INT32:
        if (auto v = integer<std::int32_t>(node, path, at)) repeated ? r.AddInt32(&msg, &field, *v) : r.SetInt32(&msg, &field, *v);
        return;
      case pb::FieldDescriptor::CPPTYPE_INT64:
        if (auto v = integer<std::int64_t>(node, path, at)) repeated ? r.AddInt64(&msg, &field, *v) : r.SetInt64(&msg, &field, *v);
        return;
      case pb::FieldDescriptor::CPPTYPE_UINT32:
        if (auto v = integer<std::uint32_t>(node, path, at)) repeated ? r.AddUInt32(&msg, &field, *v) : r.SetUInt32(&msg, &field, *v);
        return;
      case pb::FieldDescriptor::CPPTYPE_UINT64:
        if (auto v = integer<std::uint64_t>(node, path, at)) repeated ? r.AddUInt64(&msg, &field, *v) : r.SetUInt64(&msg, &field, *v);
        return;
      case pb::FieldDescriptor::CPPTYPE_DOUBLE:
      case pb::FieldDescriptor::CPPTYPE_FLOAT: {
        double v = 0;
        auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
        if (is_quoted(node) || text.empty() || ec != std::errc{} || end != text.data() + text.size() ||
            v != v || v == std::numeric_limits<double>::infinity() || v == -std::numeric_limits<double>::infinity()) {
          error(at, path, "expected a number, got " + describe(node));
          return;
        }
        if (field.cpp_type() == pb::FieldDescriptor::CPPTYPE_FLOAT) {
          if (v > static_cast<double>(std::numeric_limits<float>::max()) ||
              v < static_cast<double>(std::numeric_limits<float>::lowest())) {
            error(at, path, text + " is out of range for a float");
            return;
          }
          const auto f = static_cast<float>(v);
          repeated ? r.AddFloat(&msg, &field, f) : r.SetFloat(&msg, &field, f);
        } else {
          repeated ? r.AddDouble(&msg, &field, v) : r.SetDouble(&msg, &field, v);
        }
        return;
      }
      case pb::FieldDescriptor::CPPTYPE_BOOL: {
        const std::string u = upper(text);
        if (is_quoted(node) || (u != "TRUE" && u != "FALSE")) {
          error(at, path, "expected true or false, got " + describe(node));
          return;
        }
        repeated ? r.AddBool(&msg, &field, u == "TRUE") : r.SetBool(&msg, &field, u == "TRUE");
        return;
      }
      case pb::FieldDescriptor::CPPTYPE_ENUM: {
        const pb::EnumValueDescriptor* v = enum_value(*field.enum_type(), text);
        if (v == nullptr) {
          std::vector<std::string> allowed = allowed_enum_names(*field.enum_type());
          std::string message = quote(text) + " is not one of " + join(allowed, ", ");
          if (std::string guess = closest(text, allowed); !guess.empty()) message += " (did you mean " + guess + "?)";
          error(at, path, std::move(message));
          return;
        }
        repeated ? r.AddEnum(&msg, &field, v) : r.SetEnum(&msg, &field, v);
        return;
      }
      case pb::FieldDescriptor::CPPTYPE_MESSAGE:
        break;  // handled by the callers
    }
  }

  static std::vector<std::string> allowed_enum_names(const pb::EnumDescriptor& e) {
    std::vector<std::string> out;
    for (int i = 0; i < e.value_count(); ++i) {
      if (e.value(i)->number() != 0) out.push_back(short_enum_name(*e.value(i)));
    }
    return out;
  }

  // Full or short name, any case; never the *_UNSPECIFIED zero value.
  static const pb::EnumValueDescriptor* enum_value(const pb::EnumDescriptor& e, std::string_view text) {
    const std::string u = upper(text);
    for (int i = 0; i < e.value_count(); ++i) {
      const pb::EnumValueDescriptor* v = e.value(i);
      if (v->number() == 0) continue;
      if (v->name() == u || short_enum_name(*v) == u) return v;
    }
    return nullptr;
  }

  static std::string expected_text(const pb::FieldDescriptor& field) {
    switch (field.cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_STRING: return "a string";
      case pb::FieldDescriptor::CPPTYPE_INT32:
      case pb::FieldDescriptor::CPPTYPE_INT64:
      case pb::FieldDescriptor::CPPTYPE_UINT32:
      case pb::FieldDescriptor::CPPTYPE_UINT64: return "an integer";
      case pb::FieldDescriptor::CPPTYPE_DOUBLE:
      case pb::FieldDescriptor::CPPTYPE_FLOAT: return "a number";
      case pb::FieldDescriptor::CPPTYPE_BOOL: return "true or false";
      case pb::FieldDescriptor::CPPTYPE_ENUM: return "one of " + join(allowed_enum_names(*field.enum_type()), ", ");
      case pb::FieldDescriptor::CPPTYPE_MESSAGE: return "a mapping";
    }
    return "a value";
  }

  const std::string& file_;
  source_map& locations_;
  config_report& report_;
};

}  // namespace

bool parse_yaml(std::string_view yaml, const std::string& file, pb::Message& out, source_map& locations,
                config_report& report) {
  walker w(file, locations, report);
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    w.error(location_of(e.mark), {}, "invalid YAML: " + e.msg);
    return false;
  }
  source_location root_at = location_of(root.Mark());
  if (root_at.line == 0) root_at = {1, 1};
  if (!root.IsNull() && !root.IsMap()) {
    w.error(root_at, {}, "expected a mapping of fields at the top of the file, got " + describe(root));
    return false;
  }
  w.message(root, out, {}, root_at);
  return true;
}

}  // namespace yilian::config
