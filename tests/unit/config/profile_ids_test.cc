// Profile facility_ids and resource_ids: defaults, checks within a profile
// and across the consortium.
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "tests/unit/config/test_support.h"

using namespace yilian::config;
using namespace yilian::config::testing;
using Catch::Matchers::Contains;

namespace {

std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// A copy of tests/data/config/base in a fresh directory, with the two
// profiles replaced by the given texts.
std::filesystem::path consortium_with(const std::string& name, const std::string& h_one, const std::string& h_two) {
  const auto dir = std::filesystem::temp_directory_path() / ("yilian-profile-ids-" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir / "profiles");
  const auto base = repo_root() / "tests/data/config/base";
  std::ofstream(dir / "consortium.yaml") << read_text(base / "consortium.yaml");
  std::ofstream(dir / "profiles/h-one.yaml") << h_one;
  std::ofstream(dir / "profiles/h-two.yaml") << h_two;
  return dir;
}

const std::string h_one_base =
    "hospital: h-one\n"
    "identifier_authorities:\n"
    "  - {namespace_id: HONE, type_code: MR, system: \"urn:yilian:id:h-one:mrn\", type: MRN}\n"
    "inbound:\n"
    "  mllp:\n"
    "    port: 12575\n"
    "    expected_sending_facilities: [HONE, HONE-RIS]\n";

const std::string h_two_base =
    "hospital: h-two\n"
    "identifier_authorities:\n"
    "  - {namespace_id: HTWO, type_code: MR, system: \"urn:yilian:id:h-two:mrn\", type: MRN}\n"
    "inbound:\n"
    "  mllp:\n"
    "    port: 12576\n"
    "    expected_sending_facilities: [HTWO]\n";

}  // namespace

TEST_CASE("facility ids default to the expected sending facilities; given ones are kept", "[unit]") {
  const auto dir = consortium_with("defaults", h_one_base,
                                   h_two_base + "facility_ids: [HTWO, 二号卫生院]\nresource_ids: {LOCAL-CT: ct-1}\n");
  const auto v = validate_consortium(dir);
  INFO(v.report.to_string());
  REQUIRE(v.loaded.has_value());
  const auto* one = v.loaded->profile("h-one");
  REQUIRE(one != nullptr);
  CHECK(std::vector<std::string>(one->facility_ids().begin(), one->facility_ids().end()) ==
        std::vector<std::string>{"HONE", "HONE-RIS"});
  const auto* two = v.loaded->profile("h-two");
  REQUIRE(two != nullptr);
  CHECK(std::vector<std::string>(two->facility_ids().begin(), two->facility_ids().end()) ==
        std::vector<std::string>{"HTWO", "二号卫生院"});
  REQUIRE(two->resource_ids().count("LOCAL-CT") == 1);
  CHECK(two->resource_ids().at("LOCAL-CT") == "ct-1");
}

TEST_CASE("the example consortium names every hospital by its facility ids and its machines by local codes", "[unit]") {
  const auto v = validate_from_root("deploy/examples/consortium");
  INFO(v.report.to_string());
  REQUIRE(v.loaded.has_value());
  const auto* qh = v.loaded->profile("qh-county");
  REQUIRE(qh != nullptr);
  CHECK(std::vector<std::string>(qh->facility_ids().begin(), qh->facility_ids().end()) ==
        std::vector<std::string>{"QHXRMYY", "QHXRMYY-RIS"});
  for (const auto& p : v.loaded->profiles) {
    INFO(p.hospital_id);
    CHECK(p.profile.facility_ids_size() > 0);
    for (const auto& [local, target] : p.profile.resource_ids()) CHECK(v.loaded->equipment(target) != nullptr);
  }
}

TEST_CASE("a facility id may name only one hospital", "[unit]") {
  const auto dir = consortium_with("clash", h_one_base, h_two_base + "facility_ids: [HTWO, HONE-RIS]\n");
  const auto v = validate_consortium(dir);
  const auto lines = v.report.lines();
  REQUIRE(lines.size() == 1);
  CHECK_THAT(lines[0], Contains("profiles/h-two.yaml:8:22: facility_ids[1]: facility id \"HONE-RIS\" already names "
                                "hospital \"h-one\" ("));
  CHECK_THAT(lines[0], Contains("profiles/h-one.yaml:7:41)"));
}

TEST_CASE("facility ids within a profile are non-empty and distinct", "[unit]") {
  const auto dir = consortium_with("within", h_one_base + "facility_ids: [HONE, \"\", HONE]\n", h_two_base);
  const auto lines = validate_consortium(dir).report.lines();
  REQUIRE(lines.size() == 2);
  CHECK_THAT(lines[0], Contains("facility_ids[1]: empty facility id"));
  CHECK_THAT(lines[1], Contains("facility_ids[2]: duplicate facility id \"HONE\" (first used by facility_ids at line 8)"));
}

TEST_CASE("resource_ids must point at equipment of the consortium", "[unit]") {
  const auto dir = consortium_with("resources", h_one_base + "resource_ids:\n  CT-A: ct-1\n  CT-B: ct-2\n  CT-C: \"\"\n",
                                   h_two_base);
  const auto lines = validate_consortium(dir).report.lines();
  REQUIRE(lines.size() == 2);
  CHECK_THAT(lines[0], Contains("resource_ids[\"CT-B\"]: unknown equipment \"ct-2\" (did you mean \"ct-1\"?)"));
  CHECK_THAT(lines[1], Contains("resource_ids[\"CT-C\"]: target equipment id is empty"));
}
