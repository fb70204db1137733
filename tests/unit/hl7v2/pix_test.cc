// The PIX query (IHE ITI-9, QBP^Q23 -> RSP^K23) and enterprise ids on inbound
// events: pix.h over the example consortium's real profiles (so authorities
// are the ones hospitals send) with a small in-test identity directory; the
// ingest pipeline on a real embedded log and ingest store; and the whole
// hl7v2::service with its MLLP listener on 127.0.0.1, port 0, answering the
// engine's own mllp_client.
#include <catch2/catch.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "adapters/hl7v2/ack.h"
#include "adapters/hl7v2/charset.h"
#include "adapters/hl7v2/ingest.h"
#include "adapters/hl7v2/message.h"
#include "adapters/hl7v2/mllp_client.h"
#include "adapters/hl7v2/pix.h"
#include "adapters/hl7v2/service.h"
#include "engine/bus/embedded_log.h"
#include "engine/config/config.h"
#include "engine/identity/directory.h"
#include "yilian/events/v1/envelope.pb.h"

using namespace yilian;
using namespace yilian::hl7v2;
namespace fs = std::filesystem;
namespace yb = yilian::bus;
namespace asio = boost::asio;

namespace {

constexpr std::string_view zs_mrn = "urn:yilian:id:zs-tertiary:mrn";
constexpr std::string_view dc_mrn = "urn:yilian:id:dc-chc:mrn";
constexpr std::string_view qh_mrn = "urn:yilian:id:qh-county:mrn";
constexpr std::string_view resident = "urn:yilian:id:cn:resident";
constexpr std::string_view health_card = "urn:yilian:id:cn:health-card";

fs::path temp_dir() {
  std::random_device rd;
  auto p = fs::temp_directory_path() / ("yilian-pix-test-" + std::to_string(rd()));
  fs::create_directories(p);
  return p;
}

// The identity index as the adapter sees it: people with their records'
// identifiers. Counts lookups so tests can tell the adapter asked.
class fake_directory final : public identity::directory {
 public:
  void add(identity::cross_reference person) {
    std::lock_guard lock(mu_);
    people_.push_back(std::move(person));
  }
  std::string enterprise_id_of(std::string_view system, std::string_view value) const override {
    const auto p = find(system, value);
    return p ? p->enterprise_id : std::string{};
  }
  std::optional<identity::cross_reference> cross_reference_of(std::string_view system,
                                                              std::string_view value) const override {
    return find(system, value);
  }
  std::optional<identity::cross_reference> person(std::string_view enterprise_id) const override {
    std::lock_guard lock(mu_);
    for (const auto& p : people_) {
      if (p.enterprise_id == enterprise_id) return p;
    }
    return std::nullopt;
  }

 private:
  std::optional<identity::cross_reference> find(std::string_view system, std::string_view value) const {
    std::lock_guard lock(mu_);
    for (const auto& p : people_) {
      for (const auto& id : p.identifiers) {
        if (id.system == system && id.value == value) return p;
      }
    }
    return std::nullopt;
  }
  mutable std::mutex mu_;
  std::vector<identity::cross_reference> people_;
};

identity::xref_identifier xid(std::string_view system, std::string value, std::string type, std::string hospital) {
  return identity::xref_identifier{
      .system = std::string(system), .value = std::move(value), .type = std::move(type), .hospital = std::move(hospital)};
}

// 张三: an MRN at the tertiary hospital and at the community clinic, a
// resident ID and a health card. 李四: known at the county hospital only
// (its MRN and a resident ID).
void add_people(fake_directory& dir) {
  dir.add(identity::cross_reference{
      .enterprise_id = "YL000000042",
      .identifiers = {xid(zs_mrn, "100001", "MRN", "zs-tertiary"), xid(resident, "110101199003070014", "RESIDENT_ID", ""),
                      xid(dc_mrn, "D-7788", "MRN", "dc-chc"), xid(health_card, "JK^42&1", "HEALTH_CARD", ""),
                      xid(zs_mrn, "100001", "MRN", "zs-tertiary")}});
  dir.add(identity::cross_reference{.enterprise_id = "YL000000043",
                                    .identifiers = {xid(qh_mrn, "Q-1", "MRN", "qh-county"),
                                                    xid(resident, "110101198001010018", "RESIDENT_ID", "qh-county")}});
}

const config::loaded_consortium& consortium() {
  static const config::loaded_consortium cfg = [] {
    static const fs::path dir = temp_dir();
    auto loaded = config::load_consortium(fs::path(YILIAN_SOURCE_DIR) / "deploy/examples/consortium",
                                          config::load_options{.data_dir = dir});
    if (!loaded) throw std::runtime_error(loaded.error().describe());
    return std::move(*loaded);
  }();
  return cfg;
}

std::string qbp(const std::string& control_id, const std::string& qpd, const std::string& facility = "ZSRMYY",
                const std::string& trigger = "Q23^QBP_Q21", const std::string& app = "HIS") {
  return "MSH|^~\\&|" + app + "|" + facility + "|YILIAN|ZSYL|20260105093000+0800||QBP^" + trigger + "|" + control_id +
         "|P|2.5\r" + qpd + "\rRCP|I\r";
}

message parsed(std::string text) {
  auto m = message::parse(std::move(text));
  REQUIRE(m);
  return std::move(*m);
}

pix_answer ask(const std::string& hospital, const std::string& text, const identity::directory* dir) {
  const auto& cfg = consortium();
  const auto* profile = cfg.profile(hospital);
  REQUIRE(profile != nullptr);
  const auto msg = parsed(text);
  return answer_query(msg,
                      pix_context{.hospital = hospital, .profile = profile, .consortium = &cfg, .directory = dir},
                      ack_build_options{.control_id = "R1",
                                        .timestamp = std::chrono::system_clock::time_point{},
                                        .utc_offset = std::chrono::minutes(480),
                                        .application = "YILIAN",
                                        .facility = "zs-yilian"});
}

// Segment `id` of an answer, as text ("" when absent).
std::string segment_of(const std::string& text, std::string_view id) {
  const auto m = parsed(text);
  const auto s = m.find(id);
  return s ? std::string(s->raw()) : std::string{};
}

std::vector<std::string> segment_ids(const std::string& text) {
  const auto m = parsed(text);
  std::vector<std::string> out;
  for (std::size_t i = 0; i < m.segment_count(); ++i) out.emplace_back(m.segment(i).id());
  return out;
}

}  // namespace

TEST_CASE("a PIX query's QPD is read: tag, identifier with its domain, the domains asked", "[unit]") {
  const auto m = parsed(qbp("Q1",
                            "QPD|IHE PIX Query|QRY-7|100001^^^ZSRMYY&2.16.156.10011.1.1.4420001&ISO^MR|"
                            "^^^DCSQ~^^^CHN^NNCHN"));
  const auto q = parse_pix_query(m);
  REQUIRE(q);
  CHECK(q->query_tag == "QRY-7");
  CHECK(q->value == "100001");
  CHECK(q->domain == pix_domain{.namespace_id = "ZSRMYY",
                                .universal_id = "2.16.156.10011.1.1.4420001",
                                .universal_id_type = "ISO",
                                .type_code = "MR"});
  REQUIRE(q->what_domains.size() == 2);
  CHECK(q->what_domains[0].namespace_id == "DCSQ");
  CHECK(q->what_domains[1].type_code == "NNCHN");

  SECTION("HL7's own Q23 query name is a PIX query too") {
    CHECK(parse_pix_query(parsed(qbp("Q2", "QPD|Q23^Get Corresponding IDs^HL70471|T|1^^^ZSRMYY"))));
  }
  SECTION("what is missing or not a PIX query is said with its place") {
    auto e = parse_pix_query(parsed(qbp("Q3", "QPD|IHE PIX Query|T|^^^ZSRMYY")));
    REQUIRE_FALSE(e);
    CHECK(e.error().where == "QPD-3[1].1");
    e = parse_pix_query(parsed(qbp("Q4", "QPD|IHE PDQ Query|T|1^^^ZSRMYY")));
    REQUIRE_FALSE(e);
    CHECK(e.error().where == "QPD-1");
    CHECK(e.error().message.starts_with("unknown code"));
    e = parse_pix_query(parsed("MSH|^~\\&|HIS|ZSRMYY|YILIAN|ZSYL|20260105||QBP^Q23^QBP_Q21|Q5|P|2.5\rRCP|I\r"));
    REQUIRE_FALSE(e);
    CHECK(e.error().where == "QPD");
  }
}

TEST_CASE("domains resolve through the requester's profile first, then the consortium", "[unit]") {
  const auto& cfg = consortium();
  const auto& zs = *cfg.profile("zs-tertiary");
  const auto& dc = *cfg.profile("dc-chc");
  const auto& qh = *cfg.profile("qh-county");
  using v = std::vector<std::string>;
  CHECK(resolve_domain({.namespace_id = "ZSRMYY"}, zs, &cfg) == v{std::string(zs_mrn)});
  CHECK(resolve_domain({.universal_id = "2.16.156.10011.1.1.4420001", .universal_id_type = "ISO"}, zs, &cfg) ==
        v{std::string(zs_mrn)});
  CHECK(resolve_domain({.namespace_id = "ZSRMYY", .type_code = "PI"}, zs, &cfg).empty());
  // A clinic asks with the tertiary hospital's authority.
  CHECK(resolve_domain({.namespace_id = "ZSRMYY", .type_code = "MR"}, dc, &cfg) == v{std::string(zs_mrn)});
  // qh-county sends resident IDs without an authority, type code SFZ.
  CHECK(resolve_domain({.type_code = "SFZ"}, qh, &cfg) == v{std::string(resident)});
  CHECK(resolve_domain({.namespace_id = "NOWHERE"}, zs, &cfg).empty());
  CHECK(resolve_domain({}, zs, &cfg).empty());
}

TEST_CASE("a PIX query is answered with the identifiers of the asked domains (ITI-9)", "[unit]") {
  fake_directory dir;
  add_people(dir);

  SECTION("found: AA, QAK OK, PID-3 in the requester's own notation, without the queried identifier") {
    const auto a = ask("zs-tertiary",
                       qbp("Q10", "QPD|IHE PIX Query|QRY-10|100001^^^ZSRMYY&2.16.156.10011.1.1.4420001&ISO^MR"),
                       &dir);
    CHECK(a.code == ack_code::AA);
    CHECK(a.outcome == "ok");
    CHECK(a.identifiers_returned == 3);
    CHECK(segment_ids(a.text) == std::vector<std::string>{"MSH", "MSA", "QAK", "QPD", "PID"});
    const auto m = parsed(a.text);
    CHECK(m.get("MSH-9.1") == "RSP");
    CHECK(std::string(m.msh().field(9).raw()) == "RSP^K23^RSP_K23");
    CHECK(m.get("MSH-3") == "YILIAN");
    CHECK(m.get("MSH-5") == "HIS");
    CHECK(m.get("MSH-6") == "ZSRMYY");
    CHECK(m.get("MSH-10") == "R1");
    CHECK(m.get("MSH-12") == "2.5");
    CHECK(segment_of(a.text, "MSA") == "MSA|AA|Q10");
    CHECK(segment_of(a.text, "QAK") == "QAK|QRY-10|OK");
    CHECK(segment_of(a.text, "QPD") ==
          "QPD|IHE PIX Query|QRY-10|100001^^^ZSRMYY&2.16.156.10011.1.1.4420001&ISO^MR");
    // Resident ID and health card through zs-tertiary's own authorities, the
    // clinic's MRN as the clinic writes it; values escaped.
    CHECK(segment_of(a.text, "PID") ==
          "PID|||110101199003070014^^^CHN^NNCHN~D-7788^^^DCSQ^MR~JK\\S\\42\\T\\1^^^JKK^HC||~^^^^^^S");
  }
  SECTION("QPD-4 keeps only the asked domains; a clinic gets the tertiary MRN as the tertiary writes it") {
    const auto a = ask("dc-chc", qbp("Q11", "QPD|IHE PIX Query|QRY-11|D-7788^^^DCSQ^MR|^^^ZSRMYY", "DCSQ"), &dir);
    CHECK(a.code == ack_code::AA);
    CHECK(a.identifiers_returned == 1);
    CHECK(segment_of(a.text, "PID") == "PID|||100001^^^ZSRMYY&2.16.156.10011.1.1.4420001&ISO^MR||~^^^^^^S");
  }
  SECTION("the exchange docs/hl7v2.md shows") {
    const auto a = ask("dc-chc",
                       qbp("DCQ0001", "QPD|IHE PIX Query|QRY-DC-0001|D-7788^^^DCSQ^MR|^^^ZSRMYY~^^^CHN^NNCHN", "DCSQ"),
                       &dir);
    CHECK(segment_of(a.text, "PID") ==
          "PID|||100001^^^ZSRMYY&2.16.156.10011.1.1.4420001&ISO^MR~110101199003070014^^^CHN^NNCHN||~^^^^^^S");
    const auto e = ask("dc-chc", qbp("DCQ0002", "QPD|IHE PIX Query|QRY-DC-0002|D-0000^^^DCSQ^MR", "DCSQ"), &dir);
    CHECK(segment_of(e.text, "MSA") ==
          "MSA|AE|DCQ0002|QPD-3.1: no person in the identity index holds this identifier");
    CHECK(segment_of(e.text, "ERR") ==
          "ERR||QPD^1^3^1^1|204^Unknown key identifier^HL70357|E||||QPD-3.1: no person in the identity index holds "
          "this identifier");
  }
  SECTION("an authority naming several kinds of identifier needs QPD-3.5; QPD-4 takes them all") {
    auto profile = *consortium().profile("zs-tertiary");
    auto* visit = profile.add_identifier_authorities();
    visit->set_namespace_id("ZSRMYY");
    visit->set_type_code("VN");
    visit->set_system("urn:yilian:id:zs-tertiary:visit");
    visit->set_type(events::v1::IDENTIFIER_TYPE_VISIT);
    CHECK(resolve_domain({.namespace_id = "ZSRMYY"}, profile, &consortium()).size() == 2);
    const auto msg = parsed(qbp("Q21", "QPD|IHE PIX Query|QRY-21|100001^^^ZSRMYY"));
    const ack_build_options build{.control_id = "R2"};
    auto a = answer_query(msg, pix_context{.hospital = "zs-tertiary", .profile = &profile, .consortium = &consortium(), .directory = &dir}, build);
    CHECK(a.outcome == "unknown_domain");
    CHECK(parsed(a.text).get("ERR-8").find("QPD-3.5") != std::string::npos);
    a = answer_query(parsed(qbp("Q22", "QPD|IHE PIX Query|QRY-22|100001^^^ZSRMYY^MR|^^^ZSRMYY")),
                     pix_context{.hospital = "zs-tertiary", .profile = &profile, .consortium = &consortium(), .directory = &dir},
                     build);
    CHECK(a.outcome == "no_data");  // both ZSRMYY domains asked; the only ZSRMYY identifier is the queried one
  }
  SECTION("asking by resident ID in the county's notation") {
    const auto a = ask("qh-county", qbp("Q12", "QPD|IHE PIX Query|QRY-12|110101198001010018^^^^SFZ|^^^QHXRMYY~^^^ZSRMYY", "QHXRMYY"), &dir);
    CHECK(a.code == ack_code::AA);
    CHECK(segment_of(a.text, "PID") == "PID|||Q-1^^^QHXRMYY^PI||~^^^^^^S");
  }
  SECTION("found but nothing in the asked domains: AA, QAK NF, no PID") {
    const auto a = ask("qh-county", qbp("Q13", "QPD|IHE PIX Query|QRY-13|Q-1^^^QHXRMYY^PI|^^^ZSRMYY", "QHXRMYY"), &dir);
    CHECK(a.code == ack_code::AA);
    CHECK(a.outcome == "no_data");
    CHECK(a.identifiers_returned == 0);
    CHECK(segment_ids(a.text) == std::vector<std::string>{"MSH", "MSA", "QAK", "QPD"});
    CHECK(segment_of(a.text, "QAK") == "QAK|QRY-13|NF");
  }
  SECTION("a person with no record at the asking hospital is answered as unknown (sharing rule)") {
    // 张三 is known at the tertiary hospital and 东城, not at the county hospital.
    const auto a = ask("qh-county", qbp("Q15", "QPD|IHE PIX Query|QRY-15|110101199003070014^^^^SFZ", "QHXRMYY"), &dir);
    CHECK(a.code == ack_code::AE);
    CHECK(a.outcome == "unknown_identifier");
    CHECK(a.identifiers_returned == 0);
    CHECK(a.text.find("100001") == std::string::npos);
  }
  SECTION("an identifier the index does not know: AE, ERR QPD^1^3^1^1 204") {
    const auto a = ask("zs-tertiary", qbp("Q14", "QPD|IHE PIX Query|QRY-14|999999^^^ZSRMYY^MR"), &dir);
    CHECK(a.code == ack_code::AE);
    CHECK(a.outcome == "unknown_identifier");
    CHECK(segment_ids(a.text) == std::vector<std::string>{"MSH", "MSA", "ERR", "QAK", "QPD"});
    CHECK(segment_of(a.text, "QAK") == "QAK|QRY-14|AE");
    const auto err = parsed(a.text);
    CHECK(err.get("ERR-2.1") == "QPD");
    CHECK(std::string(err.find("ERR")->field(2).raw()) == "QPD^1^3^1^1");
    CHECK(std::string(err.find("ERR")->field(3).raw()) == "204^Unknown key identifier^HL70357");
    CHECK(err.get("ERR-4") == "E");
    // The identifier value is echoed in QPD only, never in an error text.
    CHECK(segment_of(a.text, "ERR").find("999999") == std::string::npos);
    CHECK(segment_of(a.text, "MSA").find("999999") == std::string::npos);
  }
  SECTION("an assigning authority no profile declares: AE, ERR QPD^1^3^1^4 204") {
    const auto a = ask("zs-tertiary", qbp("Q15", "QPD|IHE PIX Query|QRY-15|100001^^^ELSEWHERE&1.2.3&ISO"), &dir);
    CHECK(a.code == ack_code::AE);
    CHECK(a.outcome == "unknown_domain");
    const auto m = parsed(a.text);
    CHECK(std::string(m.find("ERR")->field(2).raw()) == "QPD^1^3^1^4");
    CHECK(m.find("ERR")->component(3, 1) == "204");
  }
  SECTION("a requested domain not recognised: AE, one ERR QPD^1^4^<repetition> 204 each") {
    const auto a = ask("zs-tertiary",
                       qbp("Q16", "QPD|IHE PIX Query|QRY-16|100001^^^ZSRMYY^MR|^^^DCSQ~^^^UNKNOWN~^^^ALSO&9.9&ISO"),
                       &dir);
    CHECK(a.code == ack_code::AE);
    CHECK(a.outcome == "unknown_target_domain");
    const auto m = parsed(a.text);
    const auto errs = m.all("ERR");
    REQUIRE(errs.size() == 2);
    CHECK(std::string(errs[0].field(2).raw()) == "QPD^1^4^2");
    CHECK(std::string(errs[1].field(2).raw()) == "QPD^1^4^3");
    CHECK(errs[1].component(3, 1) == "204");
    CHECK(segment_of(a.text, "QAK") == "QAK|QRY-16|AE");
    CHECK(m.find("PID") == std::nullopt);
  }
  SECTION("no identity index: AR so the sender asks again later") {
    const auto a = ask("zs-tertiary", qbp("Q17", "QPD|IHE PIX Query|QRY-17|100001^^^ZSRMYY^MR"), nullptr);
    CHECK(a.code == ack_code::AR);
    CHECK(a.outcome == "index_unavailable");
    CHECK(segment_of(a.text, "QAK") == "QAK|QRY-17|AR");
    const auto m = parsed(a.text);
    CHECK(m.find("ERR")->component(3, 1) == "207");
    CHECK(m.get("ERR-8").find("identity index not available") != std::string::npos);
  }
  SECTION("a query name that is not PIX: AE 103 at QPD-1") {
    const auto a = ask("zs-tertiary", qbp("Q18", "QPD|IHE PDQ Query|QRY-18|100001^^^ZSRMYY^MR"), &dir);
    CHECK(a.code == ack_code::AE);
    CHECK(a.outcome == "invalid_query");
    const auto m = parsed(a.text);
    CHECK(std::string(m.find("ERR")->field(2).raw()) == "QPD^1^1");
    CHECK(m.find("ERR")->component(3, 1) == "103");
  }
  SECTION("another QBP trigger: ACK AR 201 at MSH-9.2") {
    const auto a = ask("zs-tertiary", qbp("Q19", "QPD|IHE PDQ Query|QRY-19|@PID.5.1^WANG", "ZSRMYY", "Q22^QBP_Q21"),
                       &dir);
    CHECK(a.code == ack_code::AR);
    CHECK(a.outcome == "unsupported_query");
    auto ack = parse_ack(a.text);
    REQUIRE(ack);
    CHECK(ack->error_code == "201");
    CHECK(ack->acknowledged_control_id == "Q19");
    const auto m = parsed(a.text);
    CHECK(std::string(m.msh().field(9).raw()) == "ACK^Q22^ACK");
    CHECK(std::string(m.find("ERR")->field(2).raw()) == "MSH^1^9^1^2");
  }
  SECTION("the answer is written in the query's own delimiters") {
    const std::string q =
        "MSH#@*$%#HIS#ZSRMYY#YILIAN#ZSYL#20260105##QBP@Q23@QBP_Q21#Q20#P#2.5\r"
        "QPD#IHE PIX Query#QRY-20#100001@@@ZSRMYY@MR#@@@JKK\rRCP#I\r";
    const auto a = ask("zs-tertiary", q, &dir);
    CHECK(a.code == ack_code::AA);
    CHECK(segment_of(a.text, "QAK") == "QAK#QRY-20#OK");
    // '^' and '&' are plain characters here; the answer's own delimiters are escaped.
    CHECK(segment_of(a.text, "PID") == "PID###JK^42&1@@@JKK@HC##*@@@@@@S");
    CHECK(std::string(parsed(a.text).msh().field(9).raw()) == "RSP@K23@RSP_K23");
    const auto m = parsed(a.text);
    CHECK(m.get("PID-3.1") == "JK^42&1");
  }
}

// ---- through the ingest pipeline and the MLLP listener -------------------------------

namespace {

struct engine_fixture {
  fs::path dir = temp_dir();
  config::loaded_consortium cfg;
  std::unique_ptr<yb::bus> log;
  fake_directory directory;
  int group = 0;

  engine_fixture() {
    auto loaded = config::load_consortium(fs::path(YILIAN_SOURCE_DIR) / "deploy/examples/consortium",
                                          config::load_options{.data_dir = dir});
    REQUIRE(loaded);
    cfg = std::move(*loaded);
    auto opened = yb::open_embedded_log(yb::embedded_log_options{.path = dir / "bus" / "events.db"});
    REQUIRE(opened);
    log = std::move(*opened);
    std::vector<yb::topic_spec> topics;
    for (const auto& t : cfg.topics) topics.push_back(yb::topic_spec{.name = t.name, .partitions = 2});
    REQUIRE(log->ensure_topics(topics));
    add_people(directory);
  }
  ~engine_fixture() {
    log.reset();
    fs::remove_all(dir);
  }

  std::vector<yb::record> read(const std::string& topic) {
    auto c = log->subscribe(yb::consumer_options{.group = "reader-" + std::to_string(++group), .topics = {topic}});
    REQUIRE(c);
    std::vector<yb::record> out;
    while (true) {
      auto recs = (*c)->poll(std::chrono::milliseconds(300), 1000);
      REQUIRE(recs);
      if (recs->empty()) break;
      out.insert(out.end(), recs->begin(), recs->end());
    }
    return out;
  }
};

std::string adt(const std::string& control_id, const std::string& pid3) {
  return "MSH|^~\\&|HIS|ZSRMYY|YILIAN|ZSYL|20260105093000+0800||ADT^A04^ADT_A01|" + control_id +
         "|P|2.5\rEVN|A04|20260105093000+0800\rPID|1||" + pid3 +
         "||测试^患者^^^^^L^I||19900307|F\rPV1|1|O|RAD^^^ZSRMYY||||||||||||||||V" + control_id + "\r";
}

std::vector<events::v1::Envelope> envelopes(const std::vector<yb::record>& recs) {
  std::vector<events::v1::Envelope> out;
  for (const auto& r : recs) {
    events::v1::Envelope e;
    REQUIRE(e.ParseFromString(r.value));
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace

TEST_CASE("the ingest pipeline answers a PIX query and keeps nothing of it", "[unit]") {
  engine_fixture f;
  auto opened = store::ingest_store::open(store::ingest_store_options{.file = f.dir / "ingest" / "ingest.db"});
  REQUIRE(opened);
  auto store = std::move(*opened);
  metrics::registry registry;
  auto metrics = std::make_shared<ingest_metrics>(registry);
  std::vector<std::string> audit;
  const auto* profile = f.cfg.profile("dc-chc");  // GBK by default, enhanced-mode ACKs
  REQUIRE(profile != nullptr);
  auto m = mapper::compile(&f.cfg, profile, "dc-chc");
  REQUIRE(m);
  ingest_pipeline pipeline(
      ingest_options{.hospital = "dc-chc",
                     .consortium = &f.cfg,
                     .profile = profile,
                     .directory = &f.directory,
                     .on_pix_query =
                         [&](std::string_view h, std::string_view c, std::string_view o, std::size_t n) {
                           audit.push_back(std::string(h) + "|" + std::string(c) + "|" + std::string(o) + "|" +
                                           std::to_string(n));
                         }},
      std::move(*m), *f.log, *store, metrics);
  const auto send = [&](std::string payload) {
    asio::io_context ioc;
    auto fut = asio::co_spawn(ioc, pipeline.handle(std::move(payload)), asio::use_future);
    ioc.run();
    return fut.get();
  };

  const auto query = qbp("P1", "QPD|IHE PIX Query|QRY-P1|D-7788^^^DCSQ^MR|^^^ZSRMYY", "DCSQ");
  for (int round = 0; round < 2; ++round) {  // the same query twice: the same answer, nothing kept either time
    const auto replies = send(query);
    REQUIRE(replies.size() == 1);  // the RSP alone, though the profile asks for enhanced-mode ACKs
    auto utf8 = decode_message(replies[0], config::v1::CHARSET_GBK);
    REQUIRE(utf8);
    CHECK(segment_of(utf8->utf8, "MSA") == "MSA|AA|P1");
    CHECK(segment_of(utf8->utf8, "PID") == "PID|||100001^^^ZSRMYY&2.16.156.10011.1.1.4420001&ISO^MR||~^^^^^^S");
  }
  CHECK(audit == std::vector<std::string>{"dc-chc|P1|ok|1", "dc-chc|P1|ok|1"});
  CHECK(store->stats().reserves == 0);
  CHECK(store->stats().raw_bytes_written == 0);
  CHECK(f.read("yilian.deadletter.v1").empty());
  CHECK(f.read("yilian.patient.v1").empty());
  CHECK(registry.render().find("yilian_hl7v2_messages_total{hospital=\"dc-chc\",type=\"QBP\",ack=\"AA\"} 2") !=
        std::string::npos);

  SECTION("a query from a facility not allowed on the channel is refused like any message") {
    const auto replies = send(qbp("P2", "QPD|IHE PIX Query|QRY-P2|D-7788^^^DCSQ^MR", "ZSRMYY"));
    REQUIRE_FALSE(replies.empty());
    auto utf8 = decode_message(replies.back(), config::v1::CHARSET_GBK);
    REQUIRE(utf8);
    CHECK(segment_of(utf8->utf8, "MSA").starts_with("MSA|AR|P2"));
    CHECK(audit.size() == 2);
  }
}

TEST_CASE("inbound events carry the enterprise id the index knows and patient events are keyed by it", "[unit]") {
  engine_fixture f;
  auto opened = store::ingest_store::open(store::ingest_store_options{.file = f.dir / "ingest" / "ingest.db"});
  REQUIRE(opened);
  auto store = std::move(*opened);
  metrics::registry registry;
  auto metrics = std::make_shared<ingest_metrics>(registry);
  const auto* profile = f.cfg.profile("zs-tertiary");
  auto m = mapper::compile(&f.cfg, profile, "zs-tertiary");
  REQUIRE(m);
  ingest_pipeline pipeline(ingest_options{.hospital = "zs-tertiary",
                                          .consortium = &f.cfg,
                                          .profile = profile,
                                          .directory = &f.directory},
                           std::move(*m), *f.log, *store, metrics);
  const auto send = [&](std::string payload) {
    asio::io_context ioc;
    auto fut = asio::co_spawn(ioc, pipeline.handle(std::move(payload)), asio::use_future);
    ioc.run();
    auto replies = fut.get();
    REQUIRE(replies.size() == 1);
    auto a = parse_ack(replies[0]);
    REQUIRE(a);
    return a->code;
  };
  const auto of_control = [&](const std::string& control_id) {
    std::vector<std::pair<std::string, events::v1::Envelope>> out;
    for (const auto& r : f.read("yilian.patient.v1")) {
      events::v1::Envelope e;
      REQUIRE(e.ParseFromString(r.value));
      if (e.source().control_id() == control_id) out.emplace_back(r.key, std::move(e));
    }
    return out;
  };

  SECTION("a known MRN") {
    CHECK(send(adt("E1", "100001^^^ZSRMYY^MR")) == ack_code::AA);
    const auto evs = of_control("E1");
    REQUIRE_FALSE(evs.empty());
    for (const auto& [key, e] : evs) {
      CHECK(e.subject().enterprise_patient_id() == "YL000000042");
      CHECK(key == "YL000000042");
    }
    SECTION("and its resend publishes nothing new") {
      CHECK(send(adt("E1", "100001^^^ZSRMYY^MR")) == ack_code::AA);
      CHECK(of_control("E1").size() == evs.size());
    }
  }
  SECTION("the MRN decides before a resident ID listed first") {
    CHECK(send(adt("E2", "110101199003070014^^^CHN^NNCHN~Q-1^^^QHXRMYY^PI")) == ack_code::AA);
    const auto evs = of_control("E2");
    REQUIRE_FALSE(evs.empty());
    CHECK(evs.front().second.subject().enterprise_patient_id() == "YL000000043");
    CHECK(evs.front().first == "YL000000043");
  }
  SECTION("an identifier the index does not know yet: keyed as before, no enterprise id") {
    CHECK(send(adt("E3", "555^^^ZSRMYY^MR")) == ack_code::AA);
    const auto evs = of_control("E3");
    REQUIRE_FALSE(evs.empty());
    CHECK(evs.front().second.subject().enterprise_patient_id().empty());
    CHECK(evs.front().first == std::string(zs_mrn) + "|555");
  }
}

TEST_CASE("a PIX query over MLLP gets its RSP^K23 from the service's listener", "[unit]") {
  engine_fixture f;
  asio::io_context ioc;
  metrics::registry registry;
  std::mutex mu;
  std::vector<std::string> audit;
  hl7v2::service svc(ioc.get_executor(), f.cfg, *f.log, registry,
                     service_options{.ingest_file = f.dir / "ingest" / "service.db",
                                     .bind_override = "127.0.0.1",
                                     .any_port = true,
                                     .group_prefix = "pix-test",
                                     .start_sender = false,
                                     .directory = &f.directory,
                                     .on_pix_query = [&](std::string_view h, std::string_view c, std::string_view o,
                                                         std::size_t n) {
                                       std::lock_guard lock(mu);
                                       audit.push_back(std::string(h) + "|" + std::string(c) + "|" + std::string(o) +
                                                       "|" + std::to_string(n));
                                     }});
  REQUIRE(svc.start());
  std::uint16_t port = 0;
  for (const auto& e : svc.endpoints()) {
    if (e.hospital == "zs-tertiary") port = e.port;
  }
  REQUIRE(port != 0);

  result<std::string> rsp = fail(errc::internal, "not sent");
  result<std::string> ack = fail(errc::internal, "not sent");
  std::exception_ptr failure;
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        mllp_client client(ioc.get_executor(), client_options{.host = "127.0.0.1", .port = port});
        if (auto c = co_await client.connect(); c) {
          rsp = co_await client.exchange(
              qbp("M1", "QPD|IHE PIX Query|QRY-M1|100001^^^ZSRMYY&2.16.156.10011.1.1.4420001&ISO^MR"));
          ack = co_await client.exchange(adt("M2", "100001^^^ZSRMYY^MR"));
        } else {
          rsp = std::unexpected(c.error());
        }
        client.close();
        svc.stop([] {});
      },
      [&](std::exception_ptr e) { failure = e; });
  ioc.run();
  REQUIRE_FALSE(failure);
  REQUIRE(rsp);
  CHECK(segment_of(*rsp, "MSA") == "MSA|AA|M1");
  CHECK(segment_of(*rsp, "QAK") == "QAK|QRY-M1|OK");
  CHECK(segment_of(*rsp, "PID") ==
        "PID|||110101199003070014^^^CHN^NNCHN~D-7788^^^DCSQ^MR~JK\\S\\42\\T\\1^^^JKK^HC||~^^^^^^S");
  REQUIRE(ack);
  CHECK(parse_ack(*ack)->code == ack_code::AA);
  CHECK(audit == std::vector<std::string>{"zs-tertiary|M1|ok|3"});
  // The query left nothing on the bus; the ADT is there with its enterprise id.
  CHECK(f.read("yilian.deadletter.v1").empty());
  const auto patient = f.read("yilian.patient.v1");
  REQUIRE_FALSE(patient.empty());
  for (const auto& e : envelopes(patient)) {
    CHECK(e.source().control_id() == "M2");
    CHECK(e.subject().enterprise_patient_id() == "YL000000042");
  }
}
