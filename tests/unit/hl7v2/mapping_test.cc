// The mapper beyond the golden fixtures: the generic profile, quirks, the
// conventions errors follow, documents by claim-check, determinism.
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <google/protobuf/util/time_util.h>
#include <openssl/sha.h>

#include "adapters/hl7v2/charset.h"
#include "adapters/hl7v2/encapsulated.h"
#include "adapters/hl7v2/mapping.h"
#include "adapters/hl7v2/message.h"
#include "engine/config/config.h"

using namespace yilian;
using namespace yilian::hl7v2;
namespace ev = yilian::events::v1;
namespace cfg = yilian::config::v1;
using google::protobuf::util::TimeUtil;

namespace {

const auto recorded = std::chrono::sys_days{std::chrono::year{2026} / 1 / 1};

std::string join(std::initializer_list<std::string_view> segments) {
  std::string out;
  for (auto s : segments) {
    out += s;
    out += '\r';
  }
  return out;
}

// A segment from (field number, value) pairs.
std::string seg(std::string_view id, std::initializer_list<std::pair<int, std::string_view>> fields) {
  std::string out(id);
  int at = 0;
  for (const auto& [n, v] : fields) {
    while (at < n) {
      out += '|';
      ++at;
    }
    out += v;
  }
  return out;
}

message parsed(const std::string& text) {
  auto m = message::parse(text);
  INFO((m ? std::string() : m.error().describe()));
  REQUIRE(m.has_value());
  return std::move(*m);
}

ev::ClaimCheck raw_ref(const std::string& uri = "raw://h-test/abc") {
  ev::ClaimCheck c;
  c.set_uri(uri);
  c.set_content_type("application/hl7-v2");
  return c;
}

mapped_batch map_ok(const mapper& m, const std::string& text) {
  auto events = m.map(parsed(text), raw_ref(), recorded);
  INFO((events ? std::string() : events.error().describe()));
  REQUIRE(events.has_value());
  return std::move(*events);
}

error map_error(const mapper& m, const std::string& text) {
  auto events = m.map(parsed(text), raw_ref(), recorded);
  REQUIRE_FALSE(events.has_value());
  return events.error();
}

cfg::HospitalProfile test_profile() {
  cfg::HospitalProfile p;
  p.set_hospital("h-test");
  p.set_time_zone("Asia/Shanghai");
  auto* a = p.add_identifier_authorities();
  a->set_namespace_id("HT");
  a->set_type_code("MR");
  a->set_system("urn:yilian:id:h-test:mrn");
  a->set_type(ev::IDENTIFIER_TYPE_MRN);
  auto* r = p.add_identifier_authorities();
  r->set_namespace_id("CHN");
  r->set_type_code("NNCHN");
  r->set_system("urn:yilian:id:cn:resident");
  r->set_type(ev::IDENTIFIER_TYPE_RESIDENT_ID);
  auto* cm = p.add_code_maps();
  cm->set_source_system("HT-EXAM");
  (*cm->mutable_mappings())["CT1"] = "CT-HEAD-PLAIN";
  (*p.mutable_resource_ids())["ROOM-3"] = "ct-9";
  p.add_facility_ids("HT");
  return p;
}

mapper compile(const cfg::HospitalProfile& p) {
  auto m = mapper::compile(nullptr, &p, p.hospital());
  INFO((m ? std::string() : m.error().describe()));
  REQUIRE(m.has_value());
  return *m;
}

const std::string msh_adt = "MSH|^~\\&|HIS|HT|YL|YL|20250616093000||ADT^A04^ADT_A01|C1|P|2.5";

}  // namespace

TEST_CASE("the event id is the SHA-256 of hospital, protocol, facility, control id and index", "[unit]") {
  const mapper m = compile(test_profile());
  const auto events = map_ok(m, join({msh_adt, "PID|1||42^^^HT^MR||张^三^^^^^L^I||19900101|M",
                                      seg("PV1", {{1, "1"}, {2, "O"}, {19, "V9"}})}));
  REQUIRE(events.size() == 2);
  for (std::uint32_t i = 0; i < 2; ++i) {
    const std::string input = "h-test|hl7v2|HT|C1|" + std::to_string(i);
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(input.data()), input.size(), d);
    std::string hex;
    for (unsigned char b : d) {
      static constexpr char digits[] = "0123456789abcdef";
      hex += digits[b >> 4];
      hex += digits[b & 15];
    }
    CHECK(events[i].envelope->event_id() == hex);
    CHECK(events[i].envelope->event_id() == hl7_event_id("h-test", "HT", "C1", i));
    CHECK(events[i].envelope->source().event_index() == i);
  }
  // Mapping again gives the same events: replays deduplicate.
  const auto again = map_ok(m, join({msh_adt, "PID|1||42^^^HT^MR||张^三^^^^^L^I||19900101|M",
                                     seg("PV1", {{1, "1"}, {2, "O"}, {19, "V9"}})}));
  CHECK(again[0].envelope->SerializeAsString() == events[0].envelope->SerializeAsString());
  CHECK(events[0].envelope->type() == "yilian.events.v1.PatientRegistered");
  CHECK(events[1].envelope->type() == "yilian.events.v1.EncounterEvent");
  CHECK(events[0].envelope->raw_ref().uri() == "raw://h-test/abc");
  CHECK(TimeUtil::ToString(events[0].envelope->recorded_at()) == "2026-01-01T00:00:00Z");
  // No EVN: MSH-7 in the profile's zone.
  CHECK(TimeUtil::ToString(events[0].envelope->occurred_at()) == "2025-06-16T01:30:00Z");
}

TEST_CASE("the generic profile keeps identifiers and resources as sent", "[unit]") {
  auto m = mapper::compile(nullptr, nullptr, "");
  REQUIRE(m.has_value());
  CHECK(m->generic());
  CHECK(m->zone().name() == "UTC");
  const auto events = map_ok(*m, join({msh_adt, "PID|1||42^^^ANY^PI~110^^^CHN^NNCHN~7^^^X^ZZ||张^三||19900101|F"}));
  REQUIRE(events.size() == 1);
  const auto& e = *events[0].envelope;
  CHECK(e.source().hospital() == "HT");  // MSH-4 when no hospital was given
  REQUIRE(e.subject().identifiers_size() == 3);
  CHECK(e.subject().identifiers(0).system() == "urn:yilian:id:source:ANY:PI");
  CHECK(e.subject().identifiers(0).type() == ev::IDENTIFIER_TYPE_MRN);
  CHECK(e.subject().identifiers(0).assigner() == "HT");
  CHECK(e.subject().identifiers(1).type() == ev::IDENTIFIER_TYPE_RESIDENT_ID);
  CHECK(e.subject().identifiers(1).assigner().empty());
  CHECK(e.subject().identifiers(2).type() == ev::IDENTIFIER_TYPE_OTHER);
  CHECK(events[0].key == "urn:yilian:id:source:ANY:PI|42");
  CHECK(TimeUtil::ToString(e.occurred_at()) == "2025-06-16T09:30:00Z");  // UTC without a consortium

  // A SIU whose machine nobody configured still maps, keyed by the resource as sent.
  const auto siu = map_ok(*m, join({"MSH|^~\\&|RIS|HT|||20250616093000||SIU^S12|C2|P|2.5", seg("SCH", {{1, "A1"}, {25, "Booked"}}),
                                    "AIS|1||X^Exam^L|20250620080000|||30", "AIG|1||ROOM 7"}));
  REQUIRE(siu.size() == 1);
  CHECK(siu[0].topic == ev::TOPIC_BOOKING);
  CHECK(siu[0].key == "ROOM 7");
  CHECK(siu[0].envelope->appointment_changed().duration_minutes() == 30);
}

TEST_CASE("an identifier no profile knows is kept under an unmapped system of the sender", "[unit]") {
  const mapper m = compile(test_profile());
  const auto events = map_ok(m, join({msh_adt, "PID|1||42^^^HT^MR~A 1^^^Other Org^XX||张^三||19900101|M"}));
  const auto& ids = events[0].envelope->subject().identifiers();
  REQUIRE(ids.size() == 2);
  CHECK(ids[1].system() == "urn:yilian:id:h-test:unmapped:Other%20Org:XX");
  CHECK(ids[1].type() == ev::IDENTIFIER_TYPE_OTHER);
  CHECK(ids[1].assigner() == "h-test");
  CHECK(ids[1].value() == "A 1");
}

TEST_CASE("another hospital's identifiers are recognised through the consortium", "[unit]") {
  const char* root = std::getenv("YILIAN_SOURCE_DIR");
  auto loaded = config::load_consortium(std::filesystem::path(root != nullptr ? root : ".") / "deploy/examples/consortium");
  REQUIRE(loaded.has_value());
  auto m = mapper::compile(&*loaded, loaded->profile("zs-tertiary"), "zs-tertiary");
  REQUIRE(m.has_value());
  const auto events = map_ok(*m, join({"MSH|^~\\&|HIS|ZSRMYY|||20250616093000||ADT^A28|C1|P|2.5",
                                       "PID|1||DC1^^^DCSQ^MR~Q1^^^QHXRMYY^PI||张^三"}));
  const auto& ids = events[0].envelope->subject().identifiers();
  REQUIRE(ids.size() == 2);
  CHECK(ids[0].system() == "urn:yilian:id:dc-chc:mrn");
  CHECK(ids[0].assigner() == "dc-chc");
  CHECK(ids[1].system() == "urn:yilian:id:qh-county:mrn");
  CHECK(ids[1].assigner() == "qh-county");
}

TEST_CASE("PatientUpdated shows deletions where proto3 can: present but empty", "[unit]") {
  const mapper m = compile(test_profile());
  const std::string msh = "MSH|^~\\&|HIS|HT|||20250616093000||ADT^A08|C1|P|2.5";
  SECTION("an empty field is no change and stays unset") {
    const auto e = map_ok(m, join({msh, "PID|1||42^^^HT^MR"}));
    const auto& d = e[0].envelope->patient_updated().demographics();
    CHECK_FALSE(d.has_name());
    CHECK(d.telecom_size() == 0);
    CHECK(d.addresses_size() == 0);
    CHECK_FALSE(d.has_ethnic_group());
  }
  SECTION("the HL7 null deletes") {
    const auto e = map_ok(m, join({msh, seg("PID", {{1, "1"}, {3, "42^^^HT^MR"}, {5, "\"\""}, {11, "\"\""}, {13, "\"\""}, {14, "\"\""}, {22, "\"\""}})}));
    const auto& d = e[0].envelope->patient_updated().demographics();
    CHECK(d.has_name());
    CHECK(d.name().hanzi().empty());
    REQUIRE(d.addresses_size() == 1);
    CHECK(d.addresses(0).text().empty());
    REQUIRE(d.telecom_size() == 2);
    CHECK(d.telecom(0).value().empty());
    CHECK(d.telecom(0).use() == ev::CONTACT_USE_HOME);
    CHECK(d.telecom(1).use() == ev::CONTACT_USE_WORK);
    CHECK(d.has_ethnic_group());
    CHECK(d.ethnic_group().code().empty());
  }
}

TEST_CASE("quirks move items to where a hospital puts them", "[unit]") {
  cfg::HospitalProfile p = test_profile();
  auto& q = *p.mutable_quirks()->mutable_field_locations();
  q["resident_id"] = "PID-19";
  q["accession"] = "OBR-20";
  q["study_uid"] = "ZDS-1.1";
  q["name_pinyin"] = "PID-9";
  q["referral_direction"] = "ZRF-1";
  q["report_id"] = "OBR-19";
  p.mutable_quirks()->add_ignored_segments("ZPI");
  const mapper m = compile(p);

  SECTION("a resident ID in PID-19 and pinyin in PID-9") {
    const auto e = map_ok(m, join({msh_adt, seg("PID", {{1, "1"}, {3, "42^^^HT^MR"}, {5, "张^三"}, {7, "19900101"}, {8, "M"}, {9, "ZHANG^SAN"}, {19, "110101199003077777"}})}));
    const auto& ids = e[0].envelope->subject().identifiers();
    REQUIRE(ids.size() == 2);
    CHECK(ids[1].system() == "urn:yilian:id:cn:resident");
    CHECK(ids[1].value() == "110101199003077777");
    CHECK(ids[1].assigner().empty());
    CHECK(e[0].envelope->patient_registered().demographics().name().pinyin() == "ZHANG SAN");
  }
  SECTION("accession, study UID and report id of each OBR group from its own segments") {
    const auto e = map_ok(m, join({"MSH|^~\\&|RIS|HT|||20250616093000||ORU^R01|C1|P|2.5", "PID|1||42^^^HT^MR",
                                   seg("OBR", {{1, "1"}, {2, "P1"}, {3, "F1"}, {4, "CT1^Head^HT-EXAM"}, {19, "R-1"}, {20, "ACC-1"}, {25, "F"}}), "ZDS|1.2.3^PACS",
                                   seg("OBR", {{1, "2"}, {2, "P2"}, {3, "F2"}, {4, "CT1^Head^HT-EXAM"}, {19, "R-2"}, {20, "ACC-2"}, {25, "P"}})}));
    REQUIRE(e.size() == 2);
    CHECK(e[0].key == "ACC-1");
    CHECK(e[0].envelope->report_issued().report_id() == "R-1");
    CHECK(e[0].envelope->report_issued().study_uid() == "1.2.3");
    CHECK(e[1].key == "ACC-2");
    CHECK(e[1].envelope->report_issued().report_id() == "R-2");
    CHECK(e[1].envelope->report_issued().status() == ev::REPORT_STATUS_PRELIMINARY);
    CHECK(e[1].envelope->source().event_index() == 1);
  }
  SECTION("a referral direction field overrides the tiers") {
    const auto e = map_ok(m, join({"MSH|^~\\&|HIS|HT|||20250616093000||REF^I12|C1|P|2.5", "RF1|P|R||||REF-1",
                                   "PID|1||42^^^HT^MR", "ZRF|下转"}));
    CHECK(e[0].envelope->referral_requested().direction() == ev::REFERRAL_DIRECTION_DOWN);
    const auto bad = map_error(m, join({"MSH|^~\\&|HIS|HT|||20250616093000||REF^I12|C1|P|2.5", "RF1|P|R||||REF-1",
                                        "PID|1||42^^^HT^MR", "ZRF|SIDEWAYS"}));
    CHECK(bad.where == "ZRF-1");
    CHECK_THAT(bad.message, Catch::StartsWith("unknown code: "));
  }
}

TEST_CASE("birth dates with a fake time need the quirk to be read leniently", "[unit]") {
  cfg::HospitalProfile p = test_profile();
  const std::string pid = "PID|1||42^^^HT^MR||张^三||19900101996699|M";
  auto strict = compile(p);
  const auto e = map_error(strict, join({msh_adt, pid}));
  CHECK(e.where == "PID-7");
  p.mutable_quirks()->set_birth_date_has_fake_time(true);
  auto lenient = compile(p);
  CHECK(map_ok(lenient, join({msh_adt, pid}))[0].envelope->patient_registered().demographics().birth_date() ==
        "1990-01-01");
}

TEST_CASE("errors name the place and follow the prefixes the ACK mapping reads", "[unit]") {
  const mapper m = compile(test_profile());
  struct bad_case {
    std::string text;
    errc code;
    std::string where;
    std::string starts;
  };
  const std::vector<bad_case> cases{
      {join({"MSH|^~\\&|HIS|HT|||20250616093000||ADT^A04|C1|P|2.9", "PID|1||42^^^HT^MR||张^三"}), errc::unsupported, "MSH-12",
       "unsupported HL7 version"},
      {join({"MSH|^~\\&|HIS|HT|||20250616093000||ADT^A02|C1|P|2.5", "PID|1||42^^^HT^MR"}), errc::unsupported, "MSH-9.2",
       "unsupported trigger"},
      {join({"MSH|^~\\&|HIS|HT|||20250616093000||DFT^P03|C1|P|2.5"}), errc::unsupported, "MSH-9.1",
       "unsupported message type"},
      {join({"MSH|^~\\&|HIS|HT|||20250616093000||ADT^A04||P|2.5", "PID|1||42^^^HT^MR||张^三"}), errc::validation_failed,
       "MSH-10", "required field missing: MSH-10"},
      {join({"MSH|^~\\&|HIS|HT|||||ADT^A04|C1|P|2.5", "PID|1||42^^^HT^MR||张^三"}), errc::validation_failed, "MSH-7",
       "required field missing: MSH-7"},
      {join({msh_adt, "PID|1||42^^^HT^MR"}), errc::validation_failed, "PID-5", "required field missing: PID-5"},
      {join({msh_adt}), errc::validation_failed, "PID", "required field missing: PID"},
      {join({msh_adt, "PID|1||42^^^HT^MR||张^三||19901301"}), errc::validation_failed, "PID-7", "invalid value"},
      {join({"MSH|^~\\&|HIS|HT|||20250616093000||ADT^A40|C1|P|2.5", "PID|1||42^^^HT^MR"}), errc::validation_failed, "MRG",
       "required field missing: MRG"},
      {join({"MSH|^~\\&|HIS|HT|||20250616093000||ORM^O01|C1|P|2.5", "ORC|ZZ|P1"}), errc::validation_failed, "ORC-1",
       "unknown code: ORC-1"},
      {join({"MSH|^~\\&|HIS|HT|||20250616093000||ORM^O01|C1|P|2.5", "ORC|SC|P1|||QQ"}), errc::validation_failed, "ORC-5",
       "unknown code: ORC-5"},
      {join({"MSH|^~\\&|HIS|HT|||20250616093000||ORM^O01|C1|P|2.5", "ORC|NW|P1"}), errc::validation_failed, "OBR",
       "required field missing: OBR"},
      {join({"MSH|^~\\&|HIS|HT|||20250616093000||ORM^O01|C1|P|2.5", "ORC|NW|P1", "OBR|1|P1||CT2^X^HT-EXAM"}),
       errc::validation_failed, "OBR-4", "unknown code: OBR-4"},
      {join({"MSH|^~\\&|HIS|HT|||20250616093000||ORM^O01|C1|P|2.5", "ORC|NW"}), errc::validation_failed, "ORC-2",
       "required field missing: ORC-2"},
      {join({"MSH|^~\\&|RIS|HT|||20250616093000||ORU^R01|C1|P|2.5", seg("OBR", {{1, "1"}, {2, "P1"}, {3, "F1"}, {4, "X"}, {25, "I"}})}),
       errc::validation_failed, "OBR-25", "unknown code: OBR-25"},
      {join({"MSH|^~\\&|RIS|HT|||20250616093000||ORU^R01|C1|P|2.5", seg("OBR", {{1, "1"}, {2, "P1"}, {3, "F1"}, {4, "X"}, {25, "F"}}),
             "OBX|1|ED|PDF^Report||^AP^PDF^Base64^bm90*YmFzZTY0"}),
       errc::validation_failed, "OBX-5.5", "invalid value"},
      {join({"MSH|^~\\&|RIS|HT|||20250616093000||SIU^S12|C1|P|2.5", "SCH|A1"}), errc::validation_failed, "AIG-3",
       "required field missing: AIG-3"},
      {join({"MSH|^~\\&|RIS|HT|||20250616093000||SIU^S12|C1|P|2.5", seg("SCH", {{1, "A1"}, {25, "Later"}}), "AIG|1||ROOM-3"}),
       errc::validation_failed, "SCH-25", "unknown code: SCH-25"},
      {join({"MSH|^~\\&|RIS|HT|||20250616093000||SIU^S23|C1|P|2.5", "SCH||B1", "AIG|1||ROOM-3"}), errc::validation_failed,
       "AIG-8", "required field missing: AIG-8"},
      {join({"MSH|^~\\&|RIS|HT|||20250616093000||SIU^S12|C1|P|2.5", "SCH|A1", "AIS|1||CT1^H^HT-EXAM|20250620|||15|fortnights",
             "AIG|1||ROOM-3"}),
       errc::validation_failed, "AIS-8", "unknown code: AIS-8"},
      {join({"MSH|^~\\&|HIS|HT|||20250616093000||RRI^I15|C1|P|2.5", "RF1||||||R1"}), errc::validation_failed, "RF1-1",
       "required field missing: RF1-1"},
      {join({"MSH|^~\\&|HIS|HT|||20250616093000||REF^I12|C1|P|2.5", "RF1|Z|||||R1", "PID|1||42^^^HT^MR"}),
       errc::validation_failed, "RF1-1", "unknown code: RF1-1"},
  };
  for (const auto& c : cases) {
    INFO(c.text);
    const error e = map_error(m, c.text);
    CHECK(e.code == c.code);
    CHECK(e.where == c.where);
    CHECK_THAT(e.message, Catch::StartsWith(c.starts));
    CHECK(e.message.find("张") == std::string::npos);  // never patient data
  }
}

TEST_CASE("a large embedded document becomes a claim-check and the event stays small", "[unit]") {
  const mapper m = compile(test_profile());
  std::string pdf(20u << 20, '\0');
  for (std::size_t i = 0; i < pdf.size(); ++i) pdf[i] = static_cast<char>((i * 131) & 0xff);
  static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string b64;
  b64.reserve(pdf.size() / 3 * 4 + 4);
  for (std::size_t i = 0; i + 2 < pdf.size(); i += 3) {
    const auto n = (static_cast<unsigned>(static_cast<unsigned char>(pdf[i])) << 16) |
                   (static_cast<unsigned>(static_cast<unsigned char>(pdf[i + 1])) << 8) |
                   static_cast<unsigned>(static_cast<unsigned char>(pdf[i + 2]));
    b64 += alphabet[(n >> 18) & 63];
    b64 += alphabet[(n >> 12) & 63];
    b64 += alphabet[(n >> 6) & 63];
    b64 += alphabet[n & 63];
  }
  const std::size_t whole = pdf.size() / 3 * 3;
  pdf.resize(whole);  // what was encoded
  const std::string text = join({"MSH|^~\\&|RIS|HT|||20250616093000||ORU^R01|C1|P|2.5", "PID|1||42^^^HT^MR",
                                 seg("OBR", {{1, "1"}, {2, "P1"}, {3, "F1"}, {4, "CT1^Head^HT-EXAM"}, {18, "ACC-9"}, {25, "F"}}),
                                 "OBX|1|TX|&IMP^Impression^IHE||正常", "OBX|2|ED|PDF^报告^L||^AP^PDF^Base64^" + b64});
  const auto events = m.map(parsed(text), raw_ref("raw://h-test/big"), recorded);
  REQUIRE(events.has_value());
  const auto& r = (*events)[0].envelope->report_issued();
  REQUIRE(r.documents_size() == 1);
  const auto& doc = r.documents(0);
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(pdf.data()), pdf.size(), d);
  std::string hex;
  for (unsigned char b : d) {
    static constexpr char digits[] = "0123456789abcdef";
    hex += digits[b >> 4];
    hex += digits[b & 15];
  }
  CHECK(doc.sha256() == hex);
  CHECK(doc.size_bytes() == pdf.size());
  CHECK(doc.uri() == "raw://h-test/big#OBX[2]-5");
  CHECK(doc.content_type() == "application/pdf");
  CHECK(doc.title() == "报告");
  CHECK(r.conclusion() == "正常");
  CHECK((*events)[0].envelope->ByteSizeLong() < 4096);
}

TEST_CASE("a compiled profile refuses settings it cannot use", "[unit]") {
  cfg::HospitalProfile p = test_profile();
  p.set_time_zone("Nowhere/Atlantis");
  CHECK(mapper::compile(nullptr, &p, "h-test").error().code == errc::config_error);
  p = test_profile();
  (*p.mutable_quirks()->mutable_field_locations())["accession"] = "OBR20";
  CHECK(mapper::compile(nullptr, &p, "h-test").error().code == errc::config_error);
  p = test_profile();
  (*p.mutable_quirks()->mutable_field_locations())["insurance_card"] = "PID-19";
  CHECK(mapper::compile(nullptr, &p, "h-test").error().code == errc::config_error);
  p = test_profile();
  CHECK(mapper::compile(nullptr, &p, "another-hospital").error().code == errc::config_error);
}

TEST_CASE("parse and map cost per message (informative)", "[.][bench]") {
  const mapper m = compile(test_profile());
  const std::string text = join({msh_adt, "EVN|A04|20250616092900",
                                 seg("PID", {{1, "1"}, {3, "42^^^HT^MR~110101199003077777^^^CHN^NNCHN"}, {5, "张^三^^^^^L^I~ZHANG^SAN^^^^^L^A"}, {7, "19900307"}, {8, "M"}, {11, "孙文中路1号^^中山市^广东省^528400"}, {13, "^PRN^CP^^^^^^^^^13800138000"}}),
                                 seg("PV1", {{1, "1"}, {2, "O"}, {3, "内科"}, {7, "D01^李^医生"}, {10, "MED"}, {19, "V001"}, {44, "20250616092900"}})});
  const ev::ClaimCheck ref = raw_ref();
  constexpr int n = 20000;
  std::size_t events = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) {
    auto msg = message::parse(text);
    auto mapped = m.map(*msg, ref, recorded);
    events += mapped->size();
  }
  const auto us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
  WARN("parse+map ADT^A04 (2 events): " << us / n << " us per message");
  CHECK(events == 2 * n);
  const auto msg = message::parse(text);
  const auto start_map = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) events += m.map(*msg, ref, recorded)->size();
  const auto map_us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start_map).count();
  WARN("map only: " << map_us / n << " us per message");
}

TEST_CASE("parse and map cost per message over the golden fixtures (informative)", "[.][bench]") {
  const char* root = std::getenv("YILIAN_SOURCE_DIR");
  auto loaded = config::load_consortium(std::filesystem::path(root != nullptr ? root : ".") / "deploy/examples/consortium");
  REQUIRE(loaded.has_value());
  struct item {
    const mapper* m;
    std::string utf8;
  };
  std::vector<mapper> mappers;
  mappers.reserve(loaded->profiles.size());
  std::vector<item> corpus;
  for (const auto& hp : loaded->profiles) {
    mappers.push_back(*mapper::compile(&*loaded, &hp.profile, hp.hospital_id));
    for (const auto& entry : std::filesystem::directory_iterator(hp.file.parent_path() / "fixtures")) {
      if (entry.path().extension() != ".hl7") continue;
      auto error_file = entry.path();
      error_file.replace_extension(".error.json");
      if (std::filesystem::exists(error_file)) continue;
      std::ifstream in(entry.path(), std::ios::binary);
      std::ostringstream bytes;
      bytes << in.rdbuf();
      auto decoded = decode_message(bytes.str(), hp.profile.default_charset());
      REQUIRE(decoded.has_value());
      corpus.push_back({&mappers.back(), decoded->utf8});
    }
  }
  const ev::ClaimCheck ref = raw_ref();
  constexpr int rounds = 500;
  std::size_t events = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int r = 0; r < rounds; ++r) {
    for (const auto& it : corpus) {
      auto msg = message::parse(it.utf8);
      events += it.m->map(*msg, ref, recorded)->size();
    }
  }
  const auto us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
  const auto n = static_cast<double>(rounds) * static_cast<double>(corpus.size());
  WARN("parse+map over " << corpus.size() << " fixtures: " << us / n << " us per message, "
                         << static_cast<double>(events) / n << " events per message");
}

TEST_CASE("map_into reuses one batch: the same events as map(), and none after an error", "[unit]") {
  const mapper m = compile(test_profile());
  const std::string adt = join({msh_adt, "PID|1||42^^^HT^MR||张^三^^^^^L^I||19900101|M",
                                seg("PV1", {{1, "1"}, {2, "O"}, {19, "V9"}})});
  const std::string report = join({"MSH|^~\\&|RIS|HT|||20250616093000||ORU^R01|C2|P|2.5", "PID|1||42^^^HT^MR",
                                   seg("OBR", {{1, "1"}, {2, "P1"}, {3, "F1"}, {4, "CT1^Head^HT-EXAM"}, {25, "F"}}),
                                   "OBX|1|TX|&IMP^Impression^IHE||正常"});
  const std::string bad = join({msh_adt});  // no PID
  const auto fresh_adt = map_ok(m, adt);
  const auto fresh_report = map_ok(m, report);

  // A small first block, so that the batch also grows past it and is reset.
  mapped_batch batch(256);
  const message adt_msg = parsed(adt);
  const message report_msg = parsed(report);
  const message bad_msg = parsed(bad);
  for (int round = 0; round < 3; ++round) {
    REQUIRE(m.map_into(adt_msg, raw_ref(), recorded, batch).has_value());
    REQUIRE(batch.size() == fresh_adt.size());
    for (std::size_t i = 0; i < batch.size(); ++i) {
      CHECK(batch[i].topic == fresh_adt[i].topic);
      CHECK(batch[i].key == fresh_adt[i].key);
      CHECK(batch[i].envelope->SerializeAsString() == fresh_adt[i].envelope->SerializeAsString());
    }
    const auto failed = m.map_into(bad_msg, raw_ref(), recorded, batch);
    REQUIRE_FALSE(failed.has_value());
    CHECK(failed.error().describe().find("PID") != std::string::npos);
    CHECK(batch.empty());
    REQUIRE(m.map_into(report_msg, raw_ref(), recorded, batch).has_value());
    REQUIRE(batch.size() == 1);
    CHECK(batch[0].envelope->SerializeAsString() == fresh_report[0].envelope->SerializeAsString());
  }
  // Moving the batch keeps its envelopes where they are.
  const ev::Envelope* before = batch[0].envelope;
  mapped_batch moved = std::move(batch);
  CHECK(moved[0].envelope == before);
  CHECK(moved[0].envelope->report_issued().exam().code() == "CT1");
}

TEST_CASE("Base64 of encapsulated data: both alphabets, whitespace, padding last", "[unit]") {
  const auto decode = [](std::string_view s) -> std::optional<std::string> {
    std::string out;
    if (!decode_base64(s, [&out](unsigned char b) { out += static_cast<char>(b); })) return std::nullopt;
    return out;
  };
  CHECK(decode("aGVsbG8=") == std::optional<std::string>("hello"));
  CHECK(decode("aGVs\r\nbG8 =\n") == std::optional<std::string>("hello"));
  CHECK(decode("+/8=") == decode("-_8="));
  CHECK(decode("+/8=") == std::optional<std::string>("\xfb\xff"));
  CHECK(decode("") == std::optional<std::string>(""));
  CHECK(decode("aGVsbG8==") == std::optional<std::string>("hello"));
  CHECK_FALSE(decode("aGVs=bG8").has_value());  // data after the padding
  CHECK_FALSE(decode("aGVs*bG8").has_value());
  CHECK_FALSE(decode("aGVs\x80" "bG8").has_value());
}
