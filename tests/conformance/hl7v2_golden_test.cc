// The golden fixtures of every hospital profile of the example consortium:
// deploy/examples/consortium/profiles/<hospital>/fixtures/NN-<name>.hl7 (the
// bytes as the hospital sends them) with NN-<name>.events.json (the events
// they must map to, protobuf JSON) or NN-<name>.error.json (the error). A
// profile without fixtures fails; so does a fixture without an expectation,
// and so does the set as a whole when a message type of issue 3 item 4 is
// covered by no profile.
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <nlohmann/json.hpp>
#include <openssl/sha.h>

#include "adapters/hl7v2/charset.h"
#include "adapters/hl7v2/mapping.h"
#include "adapters/hl7v2/message.h"
#include "engine/config/config.h"

namespace fs = std::filesystem;
using namespace yilian;
using nlohmann::json;

namespace {

fs::path repo_root() {
  if (const char* dir = std::getenv("YILIAN_SOURCE_DIR"); dir != nullptr && *dir != '\0') return dir;
  return fs::current_path();
}

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string sha256_hex(std::string_view bytes) {
  std::array<unsigned char, SHA256_DIGEST_LENGTH> d{};
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), d.data());
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : d) {
    out += hex[b >> 4];
    out += hex[b & 0x0f];
  }
  return out;
}

// What one fixture produced: events, or the error; plus the message type.
struct outcome {
  result<hl7v2::mapped_batch> events = hl7v2::mapped_batch{};
  std::string message_type;  // "ADT^A04"
};

outcome run(const hl7v2::mapper& m, const config::v1::HospitalProfile& profile, const std::string& hospital,
            const std::string& bytes) {
  outcome out;
  events::v1::ClaimCheck raw_ref;
  raw_ref.set_sha256(sha256_hex(bytes));
  raw_ref.set_uri("raw://" + hospital + "/" + raw_ref.sha256());
  raw_ref.set_size_bytes(bytes.size());
  raw_ref.set_content_type("application/hl7-v2");
  auto decoded = hl7v2::decode_message(bytes, profile.default_charset());
  if (!decoded) {
    out.events = std::unexpected(decoded.error());
    return out;
  }
  raw_ref.set_charset(std::string(hl7v2::msh18_name(decoded->source)));
  auto msg = hl7v2::message::parse(std::move(decoded->utf8));
  if (!msg) {
    out.events = std::unexpected(msg.error());
    return out;
  }
  out.message_type = msg->message_code() + "^" + msg->trigger();
  const auto recorded_at = std::chrono::sys_days{std::chrono::year{2026} / 1 / 1};
  out.events = m.map(*msg, raw_ref, recorded_at);
  return out;
}

std::string diff(const google::protobuf::Message& expected, const google::protobuf::Message& actual) {
  std::string report;
  google::protobuf::util::MessageDifferencer d;
  d.ReportDifferencesToString(&report);
  return d.Compare(expected, actual) ? std::string() : report;
}

// Every message type of issue 3 item 4.
const std::set<std::string> all_types{
    "ADT^A01", "ADT^A04", "ADT^A08", "ADT^A28", "ADT^A31", "ADT^A40", "ORM^O01", "OMG^O19", "OMI^O23",
    "SIU^S12", "SIU^S13", "SIU^S14", "SIU^S15", "SIU^S17", "SIU^S26", "SIU^S23", "SIU^S24", "ORU^R01",
    "REF^I12", "REF^I13", "REF^I14", "RRI^I12", "RRI^I13", "RRI^I14", "RRI^I15"};

}  // namespace

TEST_CASE("every profile's golden fixtures map to exactly the expected events or errors", "[unit]") {
  auto loaded = config::load_consortium(repo_root() / "deploy/examples/consortium");
  REQUIRE(loaded.has_value());
  REQUIRE_FALSE(loaded->profiles.empty());

  std::set<std::string> covered;
  std::size_t fixtures = 0;
  for (const auto& hp : loaded->profiles) {
    const std::string& hospital = hp.hospital_id;
    INFO("hospital " << hospital);
    auto m = hl7v2::mapper::compile(&*loaded, &hp.profile, hospital);
    REQUIRE(m.has_value());
    const fs::path dir = hp.file.parent_path() / "fixtures";
    REQUIRE(fs::is_directory(dir));
    std::vector<fs::path> inputs;
    for (const auto& entry : fs::directory_iterator(dir)) {
      const fs::path p = entry.path();
      const std::string name = p.filename().string();
      if (p.extension() == ".hl7") {
        inputs.push_back(p);
      } else if (name.ends_with(".events.json") || name.ends_with(".error.json")) {
        const std::string stem = name.substr(0, name.find('.'));
        INFO(p.string());
        CHECK(fs::exists(dir / (stem + ".hl7")));  // an expectation without its message
      }
    }
    std::sort(inputs.begin(), inputs.end());
    CHECK_FALSE(inputs.empty());  // every profile ships fixtures

    for (const auto& input : inputs) {
      ++fixtures;
      const std::string stem = input.stem().string();
      INFO("fixture " << input.string());
      const fs::path events_file = dir / (stem + ".events.json");
      const fs::path error_file = dir / (stem + ".error.json");
      const bool expect_events = fs::exists(events_file);
      const bool expect_error = fs::exists(error_file);
      REQUIRE(expect_events != expect_error);  // exactly one expectation

      const outcome got = run(*m, hp.profile, hospital, read_bytes(input));
      if (expect_error) {
        const json want = json::parse(read_bytes(error_file));
        REQUIRE_FALSE(got.events.has_value());
        CHECK(std::string(to_string(got.events.error().code)) == want.at("code").get<std::string>());
        CHECK(got.events.error().where == want.at("where").get<std::string>());
        CHECK_THAT(got.events.error().message, Catch::Contains(want.at("message_contains").get<std::string>()));
        continue;
      }
      if (!got.events) FAIL_CHECK("mapping failed: " << got.events.error().describe());
      if (!got.events) continue;
      covered.insert(got.message_type);
      const json want = json::parse(read_bytes(events_file));
      REQUIRE(want.is_array());
      CHECK(got.events->size() == want.size());
      for (std::size_t i = 0; i < std::min(got.events->size(), want.size()); ++i) {
        INFO("event " << i);
        const auto& actual = (*got.events)[i];
        CHECK(std::string(config::topic_name(actual.topic)) == want[i].at("topic").get<std::string>());
        CHECK(actual.key == want[i].at("key").get<std::string>());
        events::v1::Envelope expected;
        const auto status = google::protobuf::util::JsonStringToMessage(want[i].at("envelope").dump(), &expected);
        INFO(status.ToString());
        REQUIRE(status.ok());
        const std::string d = diff(expected, *actual.envelope);
        INFO("differences (expected -> actual):\n" << d);
        CHECK(d.empty());
      }
    }
  }
  CHECK(fixtures > 0);
  std::vector<std::string> missing;
  std::set_difference(all_types.begin(), all_types.end(), covered.begin(), covered.end(), std::back_inserter(missing));
  INFO("message types no profile's fixtures cover: " << Catch::Detail::stringify(missing));
  CHECK(missing.empty());
}
