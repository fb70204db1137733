// hl7_fields — yilian's reading of a fixed list of HL7 v2 fields, printed in
// the same JSON schema as the HAPI peer's `fields` command
// (tests/peers/hapi/src/main/java/org/yilian/peers/FieldsCommand.java, where
// the schema is documented), so tests/e2e/hl7v2_oracle_test.py can compare the
// two parsers file by file and field by field.
//
//   hl7_fields [--default-charset NAME] FILE... [--default-charset NAME FILE...]
//
// Each file is read whole, decoded with hl7v2::decode_message (MSH-18, else
// the --default-charset given last before the file: any name
// charset_from_msh18 accepts, e.g. UTF-8, GBK, GB18030; default UTF-8), parsed with hl7v2::message::parse, and every value
// is read through message::get with a full path ("PID[1]-3[2].4.1"). The HL7
// null is reported as the two characters "" (as HAPI reports it), using
// get_raw to tell it from an empty value. One JSON line per file on stdout;
// exit 1 when any file could not be read, decoded or parsed.
//
// A test tool, not part of the engine: it prints patient data from test files.
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "adapters/hl7v2/charset.h"
#include "adapters/hl7v2/message.h"

namespace {

using json = nlohmann::ordered_json;
namespace hl7 = yilian::hl7v2;

struct component_ref {
  int component;
  int subcomponent;
};

struct field_spec {
  std::string_view segment;
  int field;
  bool all_repetitions;
  std::vector<component_ref> components;
};

// Keep in sync with FieldsCommand.SPEC_TEXT (the oracle test fails on any key
// present on one side only).
const std::vector<field_spec>& spec() {
  static const std::vector<field_spec> s = {
      {"MSH", 3, false, {{1, 1}}},
      {"MSH", 4, false, {{1, 1}}},
      {"MSH", 9, false, {{1, 1}, {2, 1}, {3, 1}}},
      {"MSH", 10, false, {{1, 1}}},
      {"MSH", 12, false, {{1, 1}, {2, 1}}},
      {"MSH", 18, false, {{1, 1}}},
      {"PID", 3, true, {{1, 1}, {4, 1}, {4, 2}, {5, 1}}},
      {"PID", 5, true, {{1, 1}, {2, 1}, {7, 1}, {8, 1}}},
      {"PID", 7, false, {{1, 1}}},
      {"PID", 8, false, {{1, 1}}},
      {"PID", 11, false, {{1, 1}, {3, 1}}},
      {"PID", 13, false, {{1, 1}}},
      {"PV1", 2, false, {{1, 1}}},
      {"PV1", 3, false, {{1, 1}, {4, 1}}},
      {"PV1", 19, false, {{1, 1}}},
      {"MRG", 1, true, {{1, 1}, {4, 1}}},
      {"ORC", 1, false, {{1, 1}}},
      {"ORC", 2, false, {{1, 1}}},
      {"ORC", 3, false, {{1, 1}}},
      {"ORC", 5, false, {{1, 1}}},
      {"OBR", 2, false, {{1, 1}}},
      {"OBR", 3, false, {{1, 1}}},
      {"OBR", 4, false, {{1, 1}, {2, 1}, {3, 1}}},
      {"OBR", 18, false, {{1, 1}}},
      {"OBR", 20, false, {{1, 1}}},
      {"OBR", 24, false, {{1, 1}}},
      {"OBR", 25, false, {{1, 1}}},
      {"IPC", 1, false, {{1, 1}}},
      {"IPC", 3, false, {{1, 1}}},
      {"IPC", 5, false, {{1, 1}}},
      {"IPC", 9, false, {{1, 1}}},
      {"SCH", 1, false, {{1, 1}}},
      {"SCH", 2, false, {{1, 1}}},
      {"SCH", 25, false, {{1, 1}}},
      {"TQ1", 7, false, {{1, 1}}},
      {"AIS", 3, false, {{1, 1}, {2, 1}, {3, 1}}},
      {"AIG", 3, false, {{1, 1}, {2, 1}}},
      {"AIG", 4, false, {{1, 1}}},
      {"AIL", 3, false, {{1, 1}, {4, 1}}},
      {"AIP", 3, false, {{1, 1}, {2, 1}}},
      {"AIP", 4, false, {{1, 1}}},
      {"RF1", 1, false, {{1, 1}, {2, 1}}},
      {"RF1", 3, false, {{1, 1}}},
      {"RF1", 6, false, {{1, 1}, {2, 1}}},
      {"RF1", 10, false, {{1, 1}}},
      {"PRD", 1, false, {{1, 1}}},
      {"PRD", 2, false, {{1, 1}, {2, 1}}},
      {"PRD", 7, false, {{1, 1}}},
      {"DG1", 3, false, {{1, 1}, {2, 1}, {3, 1}}},
      {"OBX", 2, false, {{1, 1}}},
      {"OBX", 3, false, {{1, 1}, {2, 1}}},
      {"OBX", 5, false, {{1, 1}, {2, 1}, {5, 1}}},
      {"OBX", 6, false, {{1, 1}}},
      {"OBX", 8, false, {{1, 1}}},
      {"OBX", 11, false, {{1, 1}}},
      {"NTE", 3, false, {{1, 1}}},
      {"MSA", 1, false, {{1, 1}}},
      {"MSA", 2, false, {{1, 1}}},
      {"ZPI", 1, false, {{1, 1}}},
      {"ZPI", 2, false, {{1, 1}}},
      {"ZDS", 1, false, {{1, 1}}},
  };
  return s;
}

// The Java charset names the HAPI peer prints.
std::string java_charset_name(hl7::charset cs) {
  switch (cs) {
    case yilian::config::v1::CHARSET_ASCII: return "US-ASCII";
    case yilian::config::v1::CHARSET_GB18030: return "GB18030";
    case yilian::config::v1::CHARSET_GBK: return "GBK";
    case yilian::config::v1::CHARSET_ISO_8859_1: return "ISO-8859-1";
    case yilian::config::v1::CHARSET_BIG5: return "Big5";
    default: return "UTF-8";
  }
}

std::string describe(const yilian::error& e) {
  return e.where.empty() ? e.message : e.where + ": " + e.message;
}

// get(path), except that the HL7 null comes out as the two characters "".
std::string value_at(const hl7::message& m, const std::string& path) {
  if (m.get_raw(path) == "\"\"") return "\"\"";
  return m.get(path);
}

json dump(const std::string& file, hl7::charset fallback) {
  json line = json::object();
  line["file"] = file;
  line["charset"] = nullptr;
  line["error"] = nullptr;
  line["segments"] = json::object();
  line["reps"] = json::object();
  line["values"] = json::object();

  std::ifstream in(file, std::ios::binary);
  if (!in) {
    line["error"] = "cannot open " + file;
    return line;
  }
  const std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  auto decoded = hl7::decode_message(bytes, fallback);
  if (!decoded) {
    line["error"] = describe(decoded.error());
    return line;
  }
  line["charset"] = java_charset_name(decoded->source);
  auto parsed = hl7::message::parse(std::move(decoded->utf8));
  if (!parsed) {
    line["error"] = describe(parsed.error());
    return line;
  }
  const hl7::message& m = *parsed;

  std::map<std::string, int, std::less<>> seen;
  auto& segments = line["segments"];
  auto& reps = line["reps"];
  auto& values = line["values"];
  for (std::size_t i = 0; i < m.segment_count(); ++i) {
    const auto seg = m.segment(i);
    const std::string id(seg.id());
    const int k = ++seen[id];
    segments[id] = k;
    std::string occurrence = id;
    occurrence += '[';
    occurrence += std::to_string(k);
    occurrence += ']';
    if (id == "MSH" && k == 1) {
      values["MSH[1]-1"] = m.get("MSH-1");
      values["MSH[1]-2"] = m.get("MSH-2");
    }
    for (const auto& f : spec()) {
      if (f.segment != id) continue;
      const auto count = seg.field(static_cast<std::size_t>(f.field)).repetition_count();
      std::string base = occurrence;
      base += '-';
      base += std::to_string(f.field);
      if (f.all_repetitions) reps[base] = count;
      const std::size_t n = f.all_repetitions ? count : 1;
      for (std::size_t r = 1; r <= n; ++r) {
        for (const auto& c : f.components) {
          // Appended piecewise: g++ 12 -O3 warns (-Wrestrict, a false positive)
          // on "literal" + std::string&& chains.
          std::string path = base;
          path += '[';
          path += std::to_string(r);
          path += "].";
          path += std::to_string(c.component);
          path += '.';
          path += std::to_string(c.subcomponent);
          values[path] = value_at(m, path);
        }
      }
    }
  }
  return line;
}

int usage() {
  std::cerr << "usage: hl7_fields [--default-charset NAME] FILE... (the charset applies to the FILEs after it)\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  hl7::charset fallback = yilian::config::v1::CHARSET_UTF8;
  std::vector<std::pair<std::string, hl7::charset>> files;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--default-charset" || a.starts_with("--default-charset=")) {
      std::string name;
      if (a == "--default-charset") {
        if (i + 1 >= argc) return usage();
        name = argv[++i];
      } else {
        name = std::string(a.substr(std::string_view("--default-charset=").size()));
      }
      auto cs = hl7::charset_from_msh18(name);
      if (!cs || *cs == yilian::config::v1::CHARSET_UNSPECIFIED) {
        std::cerr << "hl7_fields: unknown charset '" << name << "'\n";
        return 2;
      }
      fallback = *cs;
    } else if (a == "-h" || a == "--help") {
      usage();
      return 0;
    } else if (a.starts_with("--")) {
      return usage();
    } else {
      files.emplace_back(std::string(a), fallback);
    }
  }
  if (files.empty()) return usage();

  int failures = 0;
  for (const auto& [file, cs] : files) {
    const json line = dump(file, cs);
    if (!line["error"].is_null()) ++failures;
    // Replacement characters rather than an exception if a decoded value is
    // not valid UTF-8: the comparison with HAPI then shows where.
    std::cout << line.dump(-1, ' ', false, json::error_handler_t::replace) << '\n';
  }
  std::cout.flush();
  return failures == 0 ? 0 : 1;
}
