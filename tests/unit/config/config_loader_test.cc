#include <array>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <openssl/sha.h>

#include "tests/unit/config/test_support.h"

using namespace yilian::config;
using namespace yilian::config::testing;
using Catch::Matchers::Contains;

namespace {

std::string sha256_hex(const std::string& text) {
  std::array<unsigned char, SHA256_DIGEST_LENGTH> digest{};
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest.data());
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : digest) {
    out += hex[b >> 4];
    out += hex[b & 0x0f];
  }
  return out;
}

std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

const std::string data = "tests/data/config/";

}  // namespace

TEST_CASE("the example consortium loads with zero errors", "[unit]") {
  const auto v = validate_from_root("deploy/examples/consortium");
  INFO(v.report.to_string());
  REQUIRE(v.report.ok());
  REQUIRE(v.loaded.has_value());
  const loaded_consortium& c = *v.loaded;

  SECTION("hospitals: one tertiary, one county, three primary clinics, each with its profile") {
    REQUIRE(c.consortium.hospitals_size() == 5);
    CHECK(c.consortium.hospitals(0).id() == "zs-tertiary");
    CHECK(c.consortium.hospitals(0).name() == "中山市人民医院");
    CHECK(c.consortium.hospitals(0).tier() == v1::TIER_TERTIARY);
    CHECK(c.consortium.hospitals(1).tier() == v1::TIER_SECONDARY);
    int primary = 0;
    for (const auto& h : c.consortium.hospitals()) primary += h.tier() == v1::TIER_PRIMARY ? 1 : 0;
    CHECK(primary == 3);
    REQUIRE(c.profiles.size() == 5);
    for (std::size_t i = 0; i < c.profiles.size(); ++i) {
      CHECK(c.profiles[i].hospital_id == c.consortium.hospitals(static_cast<int>(i)).id());
      CHECK(c.profiles[i].profile.hospital() == c.profiles[i].hospital_id);
      CHECK(c.profiles[i].file.is_absolute());
      CHECK(std::filesystem::exists(c.profiles[i].file));
    }
    REQUIRE(c.profile("qh-county") != nullptr);
    CHECK(c.profile("qh-county")->default_charset() == v1::CHARSET_GB18030);
    CHECK(c.profile("nowhere") == nullptr);
  }

  SECTION("shared equipment: at least 2 CT, 1 MR and 2 US across the two larger hospitals") {
    int ct = 0, mr = 0, us = 0;
    for (const auto& e : c.consortium.equipment()) {
      const auto* owner = c.hospital(e.hospital());
      REQUIRE(owner != nullptr);
      CHECK(owner->tier() != v1::TIER_PRIMARY);
      ct += e.modality() == v1::MODALITY_CT ? 1 : 0;
      mr += e.modality() == v1::MODALITY_MR ? 1 : 0;
      us += e.modality() == v1::MODALITY_US ? 1 : 0;
      CHECK(e.exam_types_size() > 0);
      CHECK(e.schedule().days_size() > 0);
      CHECK(e.schedule().time_zone() == "Asia/Shanghai");  // given or defaulted
    }
    CHECK(ct >= 2);
    CHECK(mr >= 1);
    CHECK(us >= 2);
    const auto* ct1 = c.equipment("zs-ct-1");
    REQUIRE(ct1 != nullptr);
    CHECK(ct1->exam_types(0).code() == "CT-HEAD-PLAIN");
    CHECK(ct1->exam_types(0).duration_minutes() == 15);
    CHECK(ct1->schedule().days(1).start() == "14:00");
    CHECK(ct1->schedule().days(1).weekdays(4) == v1::WEEKDAY_FRIDAY);
    CHECK(ct1->consortium_share_percent() == 30);
  }

  SECTION("listeners: HTTP on 127.0.0.1:8080, one MLLP port per hospital from 2575") {
    CHECK(c.consortium.http().address() == "127.0.0.1");
    CHECK(c.consortium.http().port() == 8080);
    std::vector<unsigned> ports;
    for (const auto& p : c.profiles) ports.push_back(p.profile.inbound().mllp().port());
    CHECK(ports == std::vector<unsigned>{2575, 2576, 2577, 2578, 2579});
    // Defaults from consortium.mllp reach every profile.
    CHECK(c.profile("xz-thc")->inbound().mllp().bind_address() == "127.0.0.1");
    CHECK(c.profile("xz-thc")->inbound().mllp().max_frame_bytes() == 4194304);
  }

  SECTION("bus and data dir are resolved to absolute paths under the repository's var/") {
    REQUIRE(c.consortium.bus().has_embedded());
    CHECK_FALSE(c.uses_kafka());
    CHECK(c.consortium.bus().embedded().partitions() == 4);
    CHECK(c.data_dir == (repo_root() / "var").lexically_normal());
    CHECK(c.bus_dir == (repo_root() / "var" / "bus").lexically_normal());
    CHECK(c.file == (repo_root() / "deploy/examples/consortium/consortium.yaml").lexically_normal());
    CHECK(c.resolve("profiles/x.pem") == (repo_root() / "deploy/examples/consortium/profiles/x.pem").lexically_normal());
    CHECK(c.consortium.logging().level() == v1::LOG_LEVEL_INFO);
  }

  SECTION("topics: the eight standard ones with configured overrides") {
    REQUIRE(c.topics.size() == 8);
    CHECK(c.topics[0] == topic_settings{.name = "yilian.patient.v1", .partitions = 4, .retention_ms = -1, .retention_bytes = -1});
    CHECK(c.topics[1] == topic_settings{.name = "yilian.booking.v1", .partitions = 8, .retention_ms = -1, .retention_bytes = -1});
    CHECK(c.topics[5] == topic_settings{.name = "yilian.deadletter.v1", .partitions = 4, .retention_ms = 7776000000, .retention_bytes = -1});
    CHECK(c.topics[6] == topic_settings{.name = "yilian.careplan.v1", .partitions = 4, .retention_ms = -1, .retention_bytes = -1});
    // The identity log: one partition, kept forever, whatever the bus default.
    CHECK(c.topics[7] == topic_settings{.name = "yilian.identity.v1", .partitions = 1, .retention_ms = -1, .retention_bytes = -1});
  }

  SECTION("code maps translate local exam codes to catalogue codes that the equipment offers") {
    const auto* zs = c.profile("zs-tertiary");
    REQUIRE(zs != nullptr);
    REQUIRE(zs->code_maps_size() == 1);
    CHECK(zs->code_maps(0).target_system() == "urn:yilian:catalogue:exam");  // default
    CHECK(zs->code_maps(0).mappings().at("MR0101") == "MR-HEAD-PLAIN");
    std::set<std::string> offered;
    for (const auto& e : c.consortium.equipment())
      for (const auto& x : e.exam_types()) offered.insert(x.code());
    for (const auto& p : c.profiles)
      for (const auto& m : p.profile.code_maps())
        for (const auto& [local, target] : m.mappings()) {
          INFO(p.hospital_id << " " << local);
          CHECK(offered.contains(target));
        }
  }

  SECTION("principals: a system per hospital, a user per clinic, an operator; dev tokens match README") {
    int systems = 0, users = 0, operators = 0;
    for (const auto& p : c.consortium.principals()) {
      systems += p.role() == v1::ROLE_HOSPITAL_SYSTEM ? 1 : 0;
      users += p.role() == v1::ROLE_CLINIC_USER ? 1 : 0;
      operators += p.role() == v1::ROLE_OPERATOR ? 1 : 0;
    }
    CHECK(systems == 5);
    CHECK(users == 3);
    CHECK(operators == 1);
    const std::string readme = read_text(repo_root() / "deploy/examples/consortium/README.md");
    const std::vector<std::pair<std::string, std::string>> tokens{
        {"dev-zs-tertiary-his-token", "zs-tertiary-his"}, {"dev-qh-county-his-token", "qh-county-his"},
        {"dev-dc-chc-his-token", "dc-chc-his"},           {"dev-xz-thc-his-token", "xz-thc-his"},
        {"dev-nh-chc-his-token", "nh-chc-his"},           {"dev-dc-chc-user-token", "dc-chc-user"},
        {"dev-xz-thc-user-token", "xz-thc-user"},         {"dev-nh-chc-user-token", "nh-chc-user"},
        {"dev-operator-token", "operator"}};
    for (const auto& [token, principal] : tokens) {
      INFO(token);
      CHECK_THAT(readme, Contains("`" + token + "`"));
      const auto* p = c.principal_by_token_sha256(sha256_hex(token));
      REQUIRE(p != nullptr);
      CHECK(p->id() == principal);
    }
    CHECK(c.principal_by_token_sha256(sha256_hex("not-a-dev-token")) == nullptr);
  }
}

TEST_CASE("the loaded configuration survives protobuf binary and JSON round trips", "[unit]") {
  const auto v = validate_from_root("deploy/examples/consortium");
  REQUIRE(v.loaded.has_value());
  const v1::Consortium& original = v.loaded->consortium;

  v1::Consortium from_binary;
  REQUIRE(from_binary.ParseFromString(original.SerializeAsString()));
  CHECK(google::protobuf::util::MessageDifferencer::Equals(original, from_binary));

  std::string json;
  REQUIRE(google::protobuf::util::MessageToJsonString(original, &json).ok());
  CHECK_THAT(json, Contains("\"tier\":\"TIER_TERTIARY\""));
  CHECK_THAT(json, Contains("\"tokenSha256\":\"277e6a75a6980887d1bc5c738e59a2504e3e2696d8f9fbf675b7fc49dabd2cf8\""));
  v1::Consortium from_json;
  REQUIRE(google::protobuf::util::JsonStringToMessage(json, &from_json).ok());
  CHECK(google::protobuf::util::MessageDifferencer::Equals(original, from_json));
  CHECK(from_json.hospitals(2).name() == "东城街道社区卫生服务中心");
}

TEST_CASE("a minimal consortium gets the documented defaults", "[unit]") {
  const auto v = validate_from_root(data + "base");
  INFO(v.report.to_string());
  REQUIRE(v.loaded.has_value());
  const auto& c = v.loaded->consortium;
  CHECK(c.time_zone() == "Asia/Shanghai");
  CHECK(c.data_dir() == "var");
  CHECK(v.loaded->data_dir == (repo_root() / data / "base/var").lexically_normal());
  REQUIRE(c.bus().has_embedded());
  CHECK(c.bus().embedded().path() == "bus");
  CHECK(c.bus().embedded().partitions() == 4);
  CHECK(c.bus().embedded().max_in_flight() == 10000);
  CHECK(c.bus().embedded().publish_timeout_ms() == 5000);
  CHECK(c.http().address() == "127.0.0.1");
  CHECK(c.http().port() == 18080);
  CHECK(c.http().body_limit_bytes() == 1048576);
  CHECK(c.http().read_timeout_ms() == 30000);
  CHECK(c.http().threads() == 2);
  CHECK(c.mllp().bind_address() == "0.0.0.0");
  CHECK(c.logging().level() == v1::LOG_LEVEL_INFO);
  const auto* p = v.loaded->profile("h-one");
  REQUIRE(p != nullptr);
  CHECK(p->default_charset() == v1::CHARSET_UTF8);
  CHECK(p->ack().mode() == v1::ACK_MODE_ORIGINAL);
  CHECK(p->ack().accept_ack() == v1::ACK_CONDITION_ALWAYS);
  CHECK(p->time_zone() == "Asia/Shanghai");
  CHECK(p->inbound().mllp().read_timeout_ms() == 30000);
  // The same directory with a data dir given by the caller.
  const auto overridden = validate_consortium(data + "base", load_options{.data_dir = "/tmp/yilian-data"});
  REQUIRE(overridden.loaded.has_value());
  CHECK(overridden.loaded->data_dir == std::filesystem::path("/tmp/yilian-data"));
  CHECK(overridden.loaded->bus_dir == std::filesystem::path("/tmp/yilian-data/bus"));
}

TEST_CASE("an unknown field is reported with a suggestion when it is a near miss", "[unit]") {
  CHECK(errors_of(data + "unknown_field") ==
        std::vector<std::string>{
            "tests/data/config/unknown_field/consortium.yaml:4:1: colour: unknown field (expected one of: id, "
            "name, hospitals, equipment, topics, bus, http, mllp, principals, logging, data_dir, time_zone, "
            "referrals, patient_notifications, identity, patient_access)",
            "tests/data/config/unknown_field/consortium.yaml:10:5: hospitals[1].name: required",
            "tests/data/config/unknown_field/consortium.yaml:11:5: hospitals[1].nmae: unknown field (did you mean "
            "\"name\"?)",
        });
}

TEST_CASE("scalars of the wrong type and integers out of range are reported", "[unit]") {
  CHECK(errors_of(data + "wrong_type") ==
        std::vector<std::string>{
            "tests/data/config/wrong_type/consortium.yaml:25:31: equipment[0].consortium_share_percent: expected "
            "an integer, got \"lots\"",
            "tests/data/config/wrong_type/consortium.yaml:28:17: bus.embedded.partitions: -2 is out of range (0 to "
            "4294967295)",
            "tests/data/config/wrong_type/consortium.yaml:29:20: bus.embedded.max_in_flight: 99999999999 is out of "
            "range (0 to 4294967295)",
            "tests/data/config/wrong_type/consortium.yaml:31:9: http.port: expected an integer, got the string "
            "\"18080\"",
            "tests/data/config/wrong_type/consortium.yaml:32:1: principals: expected a sequence, got a mapping",
        });
}

TEST_CASE("an unknown enum value lists the allowed ones", "[unit]") {
  CHECK(errors_of(data + "unknown_enum") ==
        std::vector<std::string>{
            "tests/data/config/unknown_enum/consortium.yaml:7:11: hospitals[0].tier: \"TERTAIRY\" is not one of "
            "TERTIARY, SECONDARY, PRIMARY (did you mean TERTIARY?)",
            "tests/data/config/unknown_enum/consortium.yaml:14:10: logging.level: \"VERBOSE\" is not one of TRACE, "
            "DEBUG, INFO, WARN, ERROR, CRITICAL, OFF",
        });
}

TEST_CASE("a reference to a hospital that does not exist is reported", "[unit]") {
  CHECK(errors_of(data + "bad_reference") ==
        std::vector<std::string>{
            "tests/data/config/bad_reference/consortium.yaml:15:15: equipment[0].hospital: unknown hospital "
            "\"h-on\" (did you mean \"h-one\"?)",
            "tests/data/config/bad_reference/consortium.yaml:25:15: principals[0].hospital: unknown hospital "
            "\"nowhere\" (known: h-one, h-two)",
        });
}

TEST_CASE("an id used twice is reported at the second use", "[unit]") {
  CHECK(errors_of(data + "duplicate_id") ==
        std::vector<std::string>{
            "tests/data/config/duplicate_id/consortium.yaml:22:9: equipment[1].id: duplicate equipment id \"ct-1\" "
            "(first used by equipment[0] at line 14)",
            "tests/data/config/duplicate_id/consortium.yaml:27:16: equipment[1].exam_types[1].code: duplicate exam "
            "code \"US-ABD\" (first used by equipment[1].exam_types[0] at line 26)",
            "tests/data/config/duplicate_id/consortium.yaml:35:9: principals[1].id: duplicate principal id \"op\" "
            "(first used by principals[0] at line 32)",
        });
}

TEST_CASE("a missing profile file is reported where the hospital names it", "[unit]") {
  CHECK(errors_of(data + "missing_profile") ==
        std::vector<std::string>{
            "tests/data/config/missing_profile/consortium.yaml:13:14: hospitals[1].profile: profile file not found: "
            "tests/data/config/missing_profile/profiles/h-two.yaml",
            "tests/data/config/missing_profile/consortium.yaml:14:5: hospitals[2].profile: profile file not found: "
            "tests/data/config/missing_profile/profiles/h-three/profile.yaml",
        });
}

TEST_CASE("schedule times must be times of day, ordered and not overlapping", "[unit]") {
  CHECK(errors_of(data + "bad_time") ==
        std::vector<std::string>{
            "tests/data/config/bad_time/consortium.yaml:19:49: equipment[0].exam_types[0].duration_minutes: must be "
            "greater than 0",
            "tests/data/config/bad_time/consortium.yaml:21:18: equipment[0].schedule.time_zone: \"Asia/Shanghia\" "
            "is not a known time zone",
            "tests/data/config/bad_time/consortium.yaml:27:18: equipment[0].schedule.days[1].start: \"25:00\" is "
            "not a time of day (HH:MM, 00:00 to 24:00)",
            "tests/data/config/bad_time/consortium.yaml:28:16: equipment[0].schedule.days[1].end: \"26:00\" is not "
            "a time of day (HH:MM, 00:00 to 24:00)",
            "tests/data/config/bad_time/consortium.yaml:31:16: equipment[0].schedule.days[2].end: end \"13:30\" is "
            "not after start \"14:00\"",
            "tests/data/config/bad_time/consortium.yaml:32:11: equipment[0].schedule.days[3]: overlaps days[0] on "
            "TUESDAY",
            "tests/data/config/bad_time/consortium.yaml:36:17: equipment[0].blocked[0].start: \"2025-02-30T08:00\" "
            "is not a local date-time (YYYY-MM-DDTHH:MM)",
            "tests/data/config/bad_time/consortium.yaml:37:31: equipment[0].consortium_share_percent: 120 is not a "
            "percentage (0 to 100)",
        });
}

TEST_CASE("token hashes must be SHA-256 hex and distinct; the value is never echoed", "[unit]") {
  const auto lines = errors_of(data + "bad_token");
  CHECK(lines ==
        std::vector<std::string>{
            "tests/data/config/bad_token/consortium.yaml:17:19: principals[0].token_sha256: not a SHA-256 hex digest "
            "(64 characters 0-9a-f, got 18 characters); store sha256(token), never the token",
            "tests/data/config/bad_token/consortium.yaml:21:19: principals[1].token_sha256: not a SHA-256 hex digest "
            "(64 characters 0-9a-f, got 63 characters); store sha256(token), never the token",
            "tests/data/config/bad_token/consortium.yaml:29:19: principals[3].token_sha256: same token as "
            "principals[2]",
            "tests/data/config/bad_token/consortium.yaml:30:5: principals[4].role: required (one of "
            "HOSPITAL_SYSTEM, CLINIC_USER, OPERATOR, PATIENT_GATEWAY)",
        });
  for (const auto& l : lines) CHECK_THAT(l, !Contains("dev-operator-token"));
}

TEST_CASE("listener ports clash across the HTTP listener and every MLLP listener", "[unit]") {
  CHECK(errors_of(data + "port_clash") ==
        std::vector<std::string>{
            "tests/data/config/port_clash/profiles/h-one.yaml:6:11: inbound.mllp.port: port 2601 is already used by "
            "the HTTP listener (tests/data/config/port_clash/consortium.yaml:19:9)",
            "tests/data/config/port_clash/profiles/h-three.yaml:6:11: inbound.mllp.port: port 2602 is already used "
            "by the MLLP listener of hospital \"h-two\" (tests/data/config/port_clash/profiles/h-two.yaml:6:11)",
        });
}

TEST_CASE("every error in the consortium and its profiles is reported together, in file and line order", "[unit]") {
  const std::vector<std::string> expected{
      "tests/data/config/multiple_errors/consortium.yaml:3:5: id: \"Test Consortium\" is not a valid id (lower-case "
      "letters, digits and '-')",
      "tests/data/config/multiple_errors/consortium.yaml:10:5: hospitals[1].tier: required (one of TERTIARY, "
      "SECONDARY, PRIMARY)",
      "tests/data/config/multiple_errors/consortium.yaml:15:3: bus.kafka: only one of embedded, kafka may be given "
      "(embedded is already given)",
      "tests/data/config/multiple_errors/consortium.yaml:18:9: http.port: port 70000 is out of range (0 to 65535)",
      "tests/data/config/multiple_errors/consortium.yaml:23:5: principals[0].token_sha256: duplicate key (first "
      "given at line 22)",
      "tests/data/config/multiple_errors/profiles/h-one.yaml:3:82: identifier_authorities[0].type: \"MRN_NUMBER\" "
      "is not one of MRN, RESIDENT_ID, INSURANCE_CARD, HEALTH_CARD, PASSPORT, VISIT, ENTERPRISE, OTHER",
      "tests/data/config/multiple_errors/profiles/h-one.yaml:8:13: code_maps[0].mappings[\"CT02\"]: target code is "
      "empty",
      "tests/data/config/multiple_errors/profiles/h-one.yaml:10:3: inbound.mllp.port: required",
      "tests/data/config/multiple_errors/profiles/h-one.yaml:12:32: inbound.mllp.check_sending_application: "
      "expected true or false, got \"yes\"",
      "tests/data/config/multiple_errors/profiles/h-one.yaml:16:14: outbound[0].address: \"ftp://his.example.cn/in\" "
      "is not an http:// or https:// URL",
      "tests/data/config/multiple_errors/profiles/h-one.yaml:19:21: outbound[0].credentials.secret.env: not an "
      "environment variable name ([A-Z_][A-Z0-9_]*); give the name of a variable that holds the secret, never the "
      "secret itself",
      "tests/data/config/multiple_errors/profiles/h-one.yaml:20:19: outbound[0].event_types[0]: unknown event type "
      "\"ReportIsued\" (did you mean \"ReportIssued\"?)",
      "tests/data/config/multiple_errors/profiles/h-one.yaml:23:15: quirks.field_locations[\"acession\"]: unknown "
      "item \"acession\" (did you mean \"accession\"?)",
      "tests/data/config/multiple_errors/profiles/h-one.yaml:24:16: quirks.field_locations[\"study_uid\"]: \"ZDS1\" "
      "is not an HL7 v2 location (SEG-n[.c[.s]], e.g. \"OBR-18\", \"ZDS-1.1\")",
      "tests/data/config/multiple_errors/profiles/h-two.yaml:1:1: identifier_authorities: at least one identifier "
      "authority required",
      "tests/data/config/multiple_errors/profiles/h-two.yaml:1:11: hospital: profile is for hospital \"h-three\", "
      "but hospitals[1] (\"h-two\") points at it",
      "tests/data/config/multiple_errors/profiles/h-two.yaml:5:5: inbound.mllp.expected_sending_facilities: at "
      "least one MSH-4 value required",
  };
  const auto v = validate_from_root(data + "multiple_errors");
  CHECK(v.report.lines() == expected);
  CHECK_FALSE(v.loaded.has_value());
  // The secret-looking value is never repeated back.
  for (const auto& l : v.report.lines()) CHECK_THAT(l, !Contains("s3cr3t"));

  SECTION("load_consortium fails with all of them in one config_error") {
    auto r = load_consortium(data + "multiple_errors");
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == yilian::errc::config_error);
    CHECK_FALSE(r.error().retriable);
    std::string joined;
    for (const auto& l : expected) joined += (joined.empty() ? "" : "\n") + l;
    CHECK(r.error().message == joined);
    CHECK(r.error().where == "tests/data/config/multiple_errors");
  }

  SECTION("as yilian::error values, each names file:line:column and field") {
    const auto errors = v.report.errors();
    REQUIRE(errors.size() == expected.size());
    CHECK(errors[0].code == yilian::errc::config_error);
    CHECK(errors[0].where == "tests/data/config/multiple_errors/consortium.yaml:3:5 id");
    CHECK(errors[0].message == "\"Test Consortium\" is not a valid id (lower-case letters, digits and '-')");
  }
}

TEST_CASE("YAML that does not parse is reported once, at the place the parser stopped", "[unit]") {
  CHECK(errors_of(data + "invalid_yaml") ==
        std::vector<std::string>{
            "tests/data/config/invalid_yaml/consortium.yaml:6:1: invalid YAML: end of map flow not found",
        });
}

TEST_CASE("a directory without consortium.yaml, or a file that is not there, cannot be read", "[unit]") {
  CHECK(errors_of(data + "port_clash/profiles") ==
        std::vector<std::string>{
            "tests/data/config/port_clash/profiles/consortium.yaml: cannot read: file not found",
        });
  CHECK(errors_of(data + "nothing_here.yaml") ==
        std::vector<std::string>{"tests/data/config/nothing_here.yaml: cannot read: file not found"});
  // A file name works as well as its directory.
  CHECK(validate_from_root(data + "base/consortium.yaml").report.ok());
}

TEST_CASE("a Kafka bus gets its defaults and the topics take the Kafka partition count", "[unit]") {
  const auto v = validate_from_root(data + "kafka");
  INFO(v.report.to_string());
  REQUIRE(v.loaded.has_value());
  const auto& l = *v.loaded;
  CHECK(l.uses_kafka());
  CHECK(l.bus_dir.empty());
  const auto& k = l.consortium.bus().kafka();
  CHECK(k.brokers(1) == "kafka-2.internal:9093");
  CHECK(k.properties().at("sasl.mechanisms") == "SCRAM-SHA-512");
  CHECK(k.secret_properties().at("sasl.password").env() == "YILIAN_KAFKA_PASSWORD");
  CHECK(k.partitions() == 6);
  CHECK(k.replication_factor() == 3);
  CHECK(k.publish_timeout_ms() == 10000);
  CHECK(k.max_in_flight() == 10000);
  CHECK(k.client_id() == "yilian-test-kafka");
  CHECK(k.group_prefix() == "test-kafka");
  REQUIRE(l.topics.size() == 9);
  CHECK(l.topics[0] == topic_settings{.name = "yilian.patient.v1", .partitions = 6, .retention_ms = 604800000, .retention_bytes = -1});
  CHECK(l.topics[3] == topic_settings{.name = "yilian.report.v1", .partitions = 12, .retention_ms = 2592000000, .retention_bytes = -1});
  // The identity log ignores the Kafka default partitions and retention.
  CHECK(l.topics[7] == topic_settings{.name = "yilian.identity.v1", .partitions = 1, .retention_ms = -1, .retention_bytes = -1});
  CHECK(l.topics[8] == topic_settings{.name = "yilian.audit.v1", .partitions = 1, .retention_ms = 604800000, .retention_bytes = -1});
}

TEST_CASE("secrets in Kafka properties and TLS files that do not exist are refused", "[unit]") {
  const auto lines = errors_of(data + "kafka_broken");
  CHECK(lines ==
        std::vector<std::string>{
            "tests/data/config/kafka_broken/consortium.yaml:11:15: bus.kafka.brokers[0]: \"kafka-1.internal\" is not "
            "host:port",
            "tests/data/config/kafka_broken/consortium.yaml:13:22: bus.kafka.properties[\"sasl.password\"]: looks "
            "like a secret; give it in secret_properties by reference (env or file)",
            "tests/data/config/kafka_broken/consortium.yaml:15:7: bus.kafka.secret_properties[\"ssl.key.password\"]: "
            "give env (a variable name) or file (a path) holding the secret",
            "tests/data/config/kafka_broken/consortium.yaml:17:3: http.tls.key_file: required when tls is given",
            "tests/data/config/kafka_broken/consortium.yaml:18:16: http.tls.cert_file: file not found: "
            "tests/data/config/kafka_broken/certs/missing.pem",
        });
  for (const auto& l : lines) CHECK_THAT(l, !Contains("hunter2"));
}

TEST_CASE("the standard topics come from the schema's topic table", "[unit]") {
  const auto topics = standard_topics();
  REQUIRE(topics.size() == 8);
  std::vector<std::string> names;
  for (const auto& t : topics) names.push_back(t.name);
  CHECK(names == std::vector<std::string>{"yilian.patient.v1", "yilian.booking.v1", "yilian.referral.v1",
                                          "yilian.report.v1", "yilian.outbound.v1", "yilian.deadletter.v1",
                                          "yilian.careplan.v1", "yilian.identity.v1"});
  CHECK(topic_name(yilian::events::v1::TOPIC_BOOKING) == "yilian.booking.v1");
  CHECK(topics[1].partition_key == "equipment (resource) id");
  CHECK(topic_name(yilian::events::v1::TOPIC_UNSPECIFIED).empty());
}
