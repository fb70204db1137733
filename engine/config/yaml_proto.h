// YAML -> protobuf, by walking the YAML node tree alongside the message's
// descriptors (reflection). The protobuf messages of schemas/yilian/config/v1
// are the schema of the YAML files: keys are proto field names (snake_case),
// enum values are written with or without their type prefix (TERTIARY or
// TIER_TERTIARY, any case).
//
// Every problem becomes a diagnostic naming file:line:column and the field
// path: unknown fields (with "did you mean"), wrong scalar types, integers out
// of range, unknown enum values (with the allowed ones), sequences where a
// mapping belongs and the reverse, duplicate keys, two members of one oneof.
// Parsing carries on after an error so that all of them are reported.
//
// Not thread-safe objects; pure functions of their input.
#pragma once

#include <string>
#include <string_view>
#include <unordered_map>

#include <google/protobuf/message.h>

#include "engine/config/diagnostics.h"

namespace yilian::config {

struct source_location {
  int line = 0;    // 1-based
  int column = 0;  // 1-based
  bool operator==(const source_location&) const = default;
};

// Where each field path of one parsed YAML document came from: the value's
// position for fields, elements and map entries; "" is the document itself.
class source_map {
 public:
  void add(std::string path, source_location at);
  // The position of the value at `path`, or, when that was not written in the
  // file (a missing required field, a default), of the nearest enclosing value
  // that was.
  source_location find(std::string_view path) const;
  bool contains(std::string_view path) const;

 private:
  std::unordered_map<std::string, source_location> locations_;
};

// "a.b[2].c" -> "a.b[2]" -> "a.b" -> "a" -> "".
std::string_view parent_path(std::string_view path);

// Parses `yaml` (the content of `file`, which is only used in diagnostics)
// into `out`, which should be empty. Appends one diagnostic per problem to
// `report` and records the position of every value in `locations`. Fields
// with problems are left unset; the rest of the document is still read.
// Returns false when the document as a whole could not be read (YAML syntax
// error, not a mapping at the top): nothing in `out` is meaningful then.
bool parse_yaml(std::string_view yaml, const std::string& file, google::protobuf::Message& out,
                source_map& locations, config_report& report);

// The names an enum value may be written as in YAML: its name without the
// enum's prefix ("TERTIARY" for TIER_TERTIARY).
std::string short_enum_name(const google::protobuf::EnumValueDescriptor& value);

// Levenshtein distance, for "did you mean".
std::size_t edit_distance(std::string_view a, std::string_view b);

}  // namespace yilian::config
