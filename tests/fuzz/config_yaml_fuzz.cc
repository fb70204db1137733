// Fuzz target: configuration YAML (untrusted: files an operator edits) through
// yilian::config::parse_yaml into the three schemas it is used with or tested
// against (Consortium, HospitalProfile and, for the numeric and bool scalar
// kinds the config schemas lack, events.v1.Envelope), then the defaults and
// the semantic checks of the loader.
//
// Invariants checked, beyond "does not crash":
//  - nothing throws;
//  - parse_yaml returning false leaves at least one diagnostic;
//  - every diagnostic has a non-empty message and the file name given; one
//    that names a field has line >= 1 and column >= 1; line 0 goes with
//    column 0;
//  - whatever was read is a valid protobuf message: it serializes and parses
//    back to an equal message (so proto3 string fields hold UTF-8);
//  - round trip: whatever was read (even with errors elsewhere in the file) is
//    written back as YAML by reflection and parsed again without a single
//    diagnostic into an equal message — so every value parse_yaml accepts is
//    expressible, and nothing is read differently the second time;
//  - apply_defaults is idempotent, and every diagnostic of the semantic
//    checks is located (line >= 1: the document's own position is recorded).
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/util/message_differencer.h>

#include "engine/config/checks.h"
#include "engine/config/config.h"
#include "engine/config/yaml_proto.h"
#include "tests/fuzz/fuzz_check.h"
#include "yilian/events/v1/envelope.pb.h"

namespace {

namespace pb = google::protobuf;
namespace cfg = yilian::config;
using yilian::fuzz::printable;

constexpr std::string_view file_name = "fuzz.yaml";

// --- YAML writer (flow style, by reflection) --------------------------------

// A double-quoted YAML scalar holding exactly `s`: control bytes as \xHH,
// everything else (including bytes >= 0x80) as it is.
void write_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789ABCDEF";
  out += '"';
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20 || c == 0x7f) {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 0xf];
    } else {
      out += ch;
    }
  }
  out += '"';
}

void write_double(std::string& out, double v) {
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);  // shortest round-trip form
  FUZZ_CHECK(ec == std::errc{});
  out.append(buf, end);
}

void write_message(std::string& out, const pb::Message& msg);

void write_scalar(std::string& out, const pb::Message& msg, const pb::FieldDescriptor& f, int index) {
  const pb::Reflection& r = *msg.GetReflection();
  const bool rep = index >= 0;
  switch (f.cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_STRING: {
      std::string scratch;
      write_string(out, rep ? r.GetRepeatedStringReference(msg, &f, index, &scratch)
                            : r.GetStringReference(msg, &f, &scratch));
      return;
    }
    case pb::FieldDescriptor::CPPTYPE_INT32:
      out += std::to_string(rep ? r.GetRepeatedInt32(msg, &f, index) : r.GetInt32(msg, &f));
      return;
    case pb::FieldDescriptor::CPPTYPE_INT64:
      out += std::to_string(rep ? r.GetRepeatedInt64(msg, &f, index) : r.GetInt64(msg, &f));
      return;
    case pb::FieldDescriptor::CPPTYPE_UINT32:
      out += std::to_string(rep ? r.GetRepeatedUInt32(msg, &f, index) : r.GetUInt32(msg, &f));
      return;
    case pb::FieldDescriptor::CPPTYPE_UINT64:
      out += std::to_string(rep ? r.GetRepeatedUInt64(msg, &f, index) : r.GetUInt64(msg, &f));
      return;
    case pb::FieldDescriptor::CPPTYPE_DOUBLE:
      write_double(out, rep ? r.GetRepeatedDouble(msg, &f, index) : r.GetDouble(msg, &f));
      return;
    case pb::FieldDescriptor::CPPTYPE_FLOAT:
      write_double(out, static_cast<double>(rep ? r.GetRepeatedFloat(msg, &f, index) : r.GetFloat(msg, &f)));
      return;
    case pb::FieldDescriptor::CPPTYPE_BOOL:
      out += (rep ? r.GetRepeatedBool(msg, &f, index) : r.GetBool(msg, &f)) ? "true" : "false";
      return;
    case pb::FieldDescriptor::CPPTYPE_ENUM: {
      const pb::EnumValueDescriptor* v = rep ? r.GetRepeatedEnum(msg, &f, index) : r.GetEnum(msg, &f);
      out += v->name();
      return;
    }
    case pb::FieldDescriptor::CPPTYPE_MESSAGE:
      write_message(out, rep ? r.GetRepeatedMessage(msg, &f, index) : r.GetMessage(msg, &f));
      return;
  }
}

void write_message(std::string& out, const pb::Message& msg) {
  const pb::Reflection& r = *msg.GetReflection();
  std::vector<const pb::FieldDescriptor*> fields;
  r.ListFields(msg, &fields);
  out += '{';
  bool first = true;
  for (const pb::FieldDescriptor* f : fields) {
    if (!first) out += ", ";
    first = false;
    out += f->name();
    out += ": ";
    if (f->is_map()) {
      const pb::FieldDescriptor& key = *f->message_type()->map_key();
      const pb::FieldDescriptor& value = *f->message_type()->map_value();
      out += '{';
      for (int i = 0; i < r.FieldSize(msg, f); ++i) {
        const pb::Message& entry = r.GetRepeatedMessage(msg, f, i);
        if (i > 0) out += ", ";
        write_scalar(out, entry, key, -1);
        out += ": ";
        write_scalar(out, entry, value, -1);
      }
      out += '}';
    } else if (f->is_repeated()) {
      out += '[';
      for (int i = 0; i < r.FieldSize(msg, f); ++i) {
        if (i > 0) out += ", ";
        write_scalar(out, msg, *f, i);
      }
      out += ']';
    } else {
      write_scalar(out, msg, *f, -1);
    }
  }
  out += '}';
}

// --- invariants -------------------------------------------------------------

void check_diagnostics(const cfg::config_report& report, std::string_view input, std::string_view stage) {
  for (const auto& d : report.diagnostics) {
    FUZZ_CHECK(!d.message.empty()) << stage << d.to_string() << printable(input);
    FUZZ_CHECK(d.file == file_name) << stage << d.to_string();
    FUZZ_CHECK(d.line >= 0 && d.column >= 0) << stage << d.to_string() << printable(input);
    FUZZ_CHECK((d.line == 0) == (d.column == 0)) << stage << d.to_string() << printable(input);
    if (!d.field.empty()) {
      FUZZ_CHECK(d.line >= 1) << stage << "a diagnostic naming a field has no line: " << d.to_string()
                              << printable(input);
    }
  }
}

bool equal(const pb::Message& a, const pb::Message& b) {
  return pb::util::MessageDifferencer::Equals(a, b);
}

// Parses `input` into a fresh `Msg`, checks the diagnostics and the round trip,
// and returns whether the document was readable.
template <class Msg>
bool parse_and_round_trip(std::string_view input, Msg& out, cfg::source_map& locations,
                          cfg::config_report& report, std::string_view what) {
  const bool readable = cfg::parse_yaml(input, std::string(file_name), out, locations, report);
  if (!readable) {
    FUZZ_CHECK(!report.diagnostics.empty()) << what << "unreadable without a diagnostic" << printable(input);
  }
  check_diagnostics(report, input, what);
  if (!readable) return false;

  // What was read is a valid protobuf message: it serializes and parses back
  // equal (proto3 string fields must hold UTF-8, or parsing fails).
  std::string bytes;
  FUZZ_CHECK(out.SerializeToString(&bytes)) << what << printable(input);
  Msg from_bytes;
  FUZZ_CHECK(from_bytes.ParseFromString(bytes) && equal(out, from_bytes))
      << what << "the message read does not survive protobuf serialization: " << out.ShortDebugString()
      << " input: " << printable(input);

  std::string again;
  write_message(again, out);
  Msg reparsed;
  cfg::source_map reparsed_locations;
  cfg::config_report reparsed_report;
  const bool ok = cfg::parse_yaml(again, std::string(file_name), reparsed, reparsed_locations, reparsed_report);
  FUZZ_CHECK(ok && reparsed_report.ok()) << what << "written back, the message does not read again: "
                                         << reparsed_report.to_string() << "written: " << printable(again, 2000)
                                         << "input: " << printable(input);
  FUZZ_CHECK(equal(out, reparsed)) << what << "round trip differs: " << out.ShortDebugString() << " vs "
                                   << reparsed.ShortDebugString() << "input: " << printable(input);
  return true;
}

void run(std::string_view input) {
  // The loader's own order: consortium, its defaults and checks, then a
  // profile (defaults from that consortium) and its checks.
  cfg::detail::document cdoc{.file = std::string(file_name), .locations = {}};
  cfg::config_report report;
  yilian::config::v1::Consortium consortium;
  const bool consortium_ok = parse_and_round_trip(input, consortium, cdoc.locations, report, "Consortium: ");

  // A directory that does not exist: TLS and secret file checks then depend
  // on the input only, never on this machine's files.
  const std::filesystem::path dir = "/nonexistent/yilian-fuzz";
  if (consortium_ok) {
    cfg::detail::apply_defaults(consortium);
    auto twice = consortium;
    cfg::detail::apply_defaults(twice);
    FUZZ_CHECK(equal(consortium, twice)) << "apply_defaults(Consortium) is not idempotent" << printable(input);
    cfg::detail::reporter rep(report);
    cfg::detail::check_consortium(consortium, cdoc, dir, rep);
    check_diagnostics(report, input, "check_consortium: ");
    for (const auto& d : report.diagnostics) {
      FUZZ_CHECK(d.line >= 1) << "check_consortium: unlocated diagnostic " << d.to_string() << printable(input);
    }
  }

  cfg::detail::document pdoc{.file = std::string(file_name), .locations = {}};
  cfg::config_report preport;
  yilian::config::v1::HospitalProfile profile;
  if (parse_and_round_trip(input, profile, pdoc.locations, preport, "HospitalProfile: ")) {
    cfg::detail::apply_defaults(profile, consortium);
    auto twice = profile;
    cfg::detail::apply_defaults(twice, consortium);
    FUZZ_CHECK(equal(profile, twice)) << "apply_defaults(HospitalProfile) is not idempotent" << printable(input);
    cfg::detail::reporter rep(preport);
    cfg::detail::check_profile(profile, pdoc, dir, rep);
    check_diagnostics(preport, input, "check_profile: ");
    for (const auto& d : preport.diagnostics) {
      FUZZ_CHECK(d.line >= 1) << "check_profile: unlocated diagnostic " << d.to_string() << printable(input);
    }
  }

  cfg::source_map elocations;
  cfg::config_report ereport;
  yilian::events::v1::Envelope envelope;
  parse_and_round_trip(input, envelope, elocations, ereport, "Envelope: ");
}

}  // namespace

YILIAN_FUZZ_ENTRY(run)
