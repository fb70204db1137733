// parse_yaml on its own: YAML text -> protobuf message by reflection, with
// every problem located. Uses the config messages as the schema.
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "engine/config/config.h"
#include "engine/config/yaml_proto.h"
#include "yilian/events/v1/report.pb.h"

using namespace yilian::config;

namespace Catch {
template <>
struct StringMaker<source_location> {
  static std::string convert(const source_location& at) {
    return std::to_string(at.line) + ":" + std::to_string(at.column);
  }
};
}  // namespace Catch

namespace {

struct parsed {
  v1::Consortium consortium;
  source_map locations;
  config_report report;
  bool readable = false;
};

parsed parse(const std::string& yaml) {
  parsed p;
  p.readable = parse_yaml(yaml, "c.yaml", p.consortium, p.locations, p.report);
  return p;
}

parsed parse_profile(const std::string& yaml, v1::HospitalProfile& out) {
  parsed p;
  p.readable = parse_yaml(yaml, "p.yaml", out, p.locations, p.report);
  return p;
}

}  // namespace

TEST_CASE("enum values are accepted with or without their prefix and in any case", "[unit]") {
  auto p = parse(
      "hospitals:\n"
      "  - {id: a, tier: tertiary}\n"
      "  - {id: b, tier: TIER_SECONDARY}\n"
      "  - {id: c, tier: Primary}\n");
  INFO(p.report.to_string());
  REQUIRE(p.report.ok());
  CHECK(p.consortium.hospitals(0).tier() == v1::TIER_TERTIARY);
  CHECK(p.consortium.hospitals(1).tier() == v1::TIER_SECONDARY);
  CHECK(p.consortium.hospitals(2).tier() == v1::TIER_PRIMARY);
}

TEST_CASE("the zero value of an enum cannot be written", "[unit]") {
  auto p = parse("hospitals:\n  - {id: a, tier: UNSPECIFIED}\n");
  CHECK(p.report.lines() == std::vector<std::string>{
                                "c.yaml:2:19: hospitals[0].tier: \"UNSPECIFIED\" is not one of TERTIARY, SECONDARY, PRIMARY"});
}

TEST_CASE("maps, nested oneofs, optional scalars and booleans are read", "[unit]") {
  auto p = parse(
      "bus:\n"
      "  kafka:\n"
      "    brokers: [k1:9092, k2:9092]\n"
      "    properties: {security.protocol: SSL, acks: all}\n"
      "    secret_properties:\n"
      "      sasl.password: {env: KAFKA_PASSWORD}\n"
      "http:\n"
      "  port: 0\n"
      "  tls: {cert_file: c.pem, key_file: k.pem, require_client_cert: TRUE}\n");
  INFO(p.report.to_string());
  REQUIRE(p.report.ok());
  const auto& k = p.consortium.bus().kafka();
  CHECK(p.consortium.bus().has_kafka());
  CHECK(k.brokers_size() == 2);
  CHECK(k.properties().at("security.protocol") == "SSL");
  CHECK(k.properties().at("acks") == "all");
  CHECK(k.secret_properties().at("sasl.password").env() == "KAFKA_PASSWORD");
  CHECK(p.consortium.http().has_port());  // written as 0, so present
  CHECK(p.consortium.http().port() == 0);
  CHECK(p.consortium.http().tls().require_client_cert());
  CHECK(p.locations.find("bus.kafka.properties[\"acks\"]") == source_location{4, 48});
  CHECK(p.locations.find("bus.kafka.secret_properties[\"sasl.password\"].env") == source_location{6, 28});
}

TEST_CASE("an empty value for a message means an empty message; for a scalar it is an error", "[unit]") {
  auto p = parse("bus:\n  embedded:\nname:\n");
  CHECK(p.consortium.bus().has_embedded());
  CHECK(p.report.lines() == std::vector<std::string>{"c.yaml:3:1: name: expected a string, got an empty value"});
}

// Scalars are located at the value; mappings and sequences at their key.
TEST_CASE("sequences and mappings in the wrong place are reported", "[unit]") {
  auto p = parse(
      "name: [a, b]\n"
      "hospitals:\n"
      "  - just-a-string\n"
      "bus: embedded\n"
      "equipment:\n"
      "  - exam_types:\n"
      "      code: X\n");
  CHECK(p.report.lines() == std::vector<std::string>{
                                "c.yaml:1:1: name: expected a string, got a sequence",
                                "c.yaml:3:5: hospitals[0]: expected a mapping, got \"just-a-string\"",
                                "c.yaml:4:6: bus: expected a mapping, got \"embedded\"",
                                "c.yaml:6:5: equipment[0].exam_types: expected a sequence, got a mapping",
                            });
}

TEST_CASE("duplicate keys are reported in messages and in maps", "[unit]") {
  v1::HospitalProfile profile;
  auto p = parse_profile(
      "hospital: a\n"
      "code_maps:\n"
      "  - source_system: S\n"
      "    mappings:\n"
      "      X1: CT-A\n"
      "      X1: CT-B\n"
      "hospital: b\n",
      profile);
  CHECK(p.report.lines() == std::vector<std::string>{
                                "p.yaml:6:7: code_maps[0].mappings[\"X1\"]: duplicate key (first given at line 5)",
                                "p.yaml:7:1: hospital: duplicate key (first given at line 1)",
                            });
  CHECK(profile.hospital() == "a");
  CHECK(profile.code_maps(0).mappings().at("X1") == "CT-A");
}

TEST_CASE("the top of a document must be a mapping", "[unit]") {
  auto p = parse("- a\n- b\n");
  CHECK_FALSE(p.readable);
  CHECK(p.report.lines() ==
        std::vector<std::string>{"c.yaml:1:1: expected a mapping of fields at the top of the file, got a sequence"});
  auto empty = parse("");
  CHECK(empty.readable);
  CHECK(empty.report.ok());
}

TEST_CASE("integers are decimal, unquoted and within the field's range", "[unit]") {
  auto p = parse(
      "equipment:\n"
      "  - consortium_share_percent: 1.5\n"
      "  - consortium_share_percent: 0x10\n"
      "  - consortium_share_percent: +40\n"
      "  - consortium_share_percent: 4294967296\n");
  CHECK(p.report.lines() == std::vector<std::string>{
                                "c.yaml:2:31: equipment[0].consortium_share_percent: expected an integer, got \"1.5\"",
                                "c.yaml:3:31: equipment[1].consortium_share_percent: expected an integer, got \"0x10\"",
                                "c.yaml:5:31: equipment[3].consortium_share_percent: 4294967296 is out of range (0 to "
                                "4294967295)",
                            });
  CHECK(p.consortium.equipment(2).consortium_share_percent() == 40);
}

TEST_CASE("the source map finds the nearest written value for a path that was not written", "[unit]") {
  auto p = parse("hospitals:\n  - id: a\n    name: A\n");
  CHECK(p.locations.find("hospitals[0].name") == source_location{3, 11});
  CHECK(p.locations.find("hospitals[0].tier") == source_location{2, 5});
  CHECK(p.locations.find("hospitals") == source_location{1, 1});
  CHECK(p.locations.find("http.port") == source_location{1, 1});
  CHECK(parent_path("a.b[2].c") == "a.b[2]");
  CHECK(parent_path("a.b[2]") == "a.b");
  CHECK(parent_path("m[\"x.y\"]") == "m");
  CHECK(parent_path("a") == "");
}

TEST_CASE("near misses are measured with transpositions counting once", "[unit]") {
  CHECK(edit_distance("nmae", "name") == 1);
  CHECK(edit_distance("tier", "tire") == 1);
  CHECK(edit_distance("hospital", "hospitals") == 1);
  CHECK(edit_distance("abc", "xyz") == 3);
}

TEST_CASE("a diagnostic prints as file:line:column: field: message and converts to a config error", "[unit]") {
  const diagnostic d{.file = "c.yaml", .line = 4, .column = 7, .field = "http.port", .message = "bad"};
  CHECK(d.to_string() == "c.yaml:4:7: http.port: bad");
  const auto e = d.to_error();
  CHECK(e.code == yilian::errc::config_error);
  CHECK(e.where == "c.yaml:4:7 http.port");
  CHECK(e.describe() == "config_error: bad (at c.yaml:4:7 http.port)");
  CHECK(diagnostic{.file = "c.yaml", .message = "cannot read"}.to_string() == "c.yaml: cannot read");
}

TEST_CASE("any message can be read: numbers, nested oneofs and repeated strings of an event body", "[unit]") {
  yilian::events::v1::Observation o;
  source_map locations;
  config_report report;
  REQUIRE(parse_yaml("number: 42.5\nunits: mGy\nabnormal_flags: [H, A]\n", "o.yaml", o, locations, report));
  INFO(report.to_string());
  CHECK(report.ok());
  CHECK(o.number() == 42.5);
  CHECK(o.abnormal_flags_size() == 2);

  yilian::events::v1::Observation bad;
  config_report bad_report;
  parse_yaml("number: lots\ntext: x\ncoded: {code: y}\n", "o.yaml", bad, locations, bad_report);
  // A member written with a bad value still takes the oneof: the file names two.
  CHECK(bad_report.lines() == std::vector<std::string>{
                                  "o.yaml:1:9: number: expected a number, got \"lots\"",
                                  "o.yaml:2:1: text: only one of text, number, coded, attachment may be given (number "
                                  "is already given)",
                                  "o.yaml:3:1: coded: only one of text, number, coded, attachment may be given "
                                  "(number is already given)",
                              });
  CHECK(bad.value_case() == yilian::events::v1::Observation::VALUE_NOT_SET);
}
