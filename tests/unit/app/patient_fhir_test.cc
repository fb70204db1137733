// The identity index's FHIR R4 facade (engine/app/patient_fhir.h): Patient
// read and search, and IHE PIXm $ihe-pix (ITI-83), in-process:
// the real HTTP server on 127.0.0.1 port 0, a Beast client, the identity
// service on an embedded log in a temporary directory fed by PatientRegistered
// envelopes published to yilian.patient.v1, the example consortium, and the
// audit log read back from its file.
//
// Principals: zs-tertiary-his (the tertiary hospital's system), dc-chc-user
// (a clinic user of dc-chc), nh-chc-user (a clinic that never saw the
// patient) and operator (consortium-wide). The patients are made up: names
// from common characters, resident IDs with computed check digits.
//
// With YILIAN_FHIR_DUMP_DIR set, the Patient and Parameters resources the
// tests got back are also written there (<name>.json) for HAPI FHIR's
// validator (tests/peers/fhir).
#include <catch2/catch.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <google/protobuf/util/time_util.h>
#include <nlohmann/json.hpp>

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <set>
#include <thread>

#include "engine/api/audit.h"
#include "engine/api/server.h"
#include "engine/app/patient_api.h"
#include "engine/app/patient_fhir.h"
#include "engine/bus/embedded_log.h"
#include "engine/config/config.h"
#include "engine/workflows/identity/service.h"

using namespace yilian;
using namespace std::chrono_literals;
namespace wi = yilian::workflows::identity;
namespace ev = yilian::events::v1;
using json = nlohmann::json;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using steady = std::chrono::steady_clock;

namespace {

const std::string patient_topic = "yilian.patient.v1";
const std::string identity_topic = "yilian.identity.v1";

std::filesystem::path source_dir() {
  if (const char* dir = std::getenv("YILIAN_SOURCE_DIR"); dir != nullptr && *dir != '\0') return dir;
  return YILIAN_SOURCE_DIR;
}

const config::loaded_consortium& consortium() {
  static const config::loaded_consortium loaded = [] {
    auto r = config::load_consortium(source_dir() / "deploy/examples/consortium");
    if (!r) throw std::runtime_error("example consortium does not load: " + r.error().describe());
    return std::move(*r);
  }();
  return loaded;
}

// A resident ID: 17 digits + the GB 11643 (ISO 7064 MOD 11-2) check character.
std::string resident_id(const std::string& first17) {
  static constexpr int weights[] = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
  int sum = 0;
  for (std::size_t i = 0; i < 17; ++i) sum += (first17[i] - '0') * weights[i];
  return first17 + "10X98765432"[sum % 11];
}

class temp_dir {
 public:
  temp_dir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "yilian-patient-fhir-test-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

template <class Pred>
bool eventually(Pred&& p, std::chrono::milliseconds within = 10s) {
  const auto deadline = steady::now() + within;
  while (steady::now() < deadline) {
    if (p()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return p();
}

struct reply {
  unsigned status = 0;
  json body;
  std::string content_type;
};

// One request on a fresh connection, under a 10 s deadline.
reply call(std::uint16_t port, http::verb method, const std::string& target, const std::string& token,
           const std::string& body = {}) {
  asio::io_context ioc;
  http::response<http::string_body> res;
  bool done = false;
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        beast::tcp_stream stream(ioc);
        stream.expires_after(10s);
        co_await stream.async_connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
                                      asio::use_awaitable);
        http::request<http::string_body> req{method, target, 11};
        req.set(http::field::host, "127.0.0.1");
        req.set(http::field::authorization, "Bearer " + token);
        if (!body.empty()) {
          req.set(http::field::content_type, "application/json");
          req.body() = body;
        }
        req.prepare_payload();
        co_await http::async_write(stream, req, asio::use_awaitable);
        beast::flat_buffer buffer;
        co_await http::async_read(stream, buffer, res, asio::use_awaitable);
        done = true;
      },
      [](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);
      });
  ioc.run_for(12s);
  REQUIRE(done);
  reply r{.status = res.result_int()};
  if (!res.body().empty()) r.body = json::parse(res.body(), nullptr, false);
  r.content_type = std::string(res[http::field::content_type]);
  return r;
}

ev::Identifier identifier(const std::string& system, const std::string& value, ev::IdentifierType type,
                          const std::string& assigner = {}) {
  ev::Identifier i;
  i.set_system(system);
  i.set_value(value);
  i.set_type(type);
  i.set_assigner(assigner);
  return i;
}
ev::Identifier mrn(const std::string& hospital, const std::string& value) {
  return identifier("urn:yilian:id:" + hospital + ":mrn", value, ev::IDENTIFIER_TYPE_MRN, hospital);
}
ev::Identifier resident(const std::string& value) {
  return identifier("urn:yilian:id:cn:resident", value, ev::IDENTIFIER_TYPE_RESIDENT_ID);
}

struct person_in {
  std::string hanzi, family, given, pinyin, birth_date, phone;
  ev::Sex sex = ev::SEX_MALE;
};

ev::Demographics demographics(const person_in& p) {
  ev::Demographics d;
  d.mutable_name()->set_hanzi(p.hanzi);
  d.mutable_name()->set_family(p.family);
  d.mutable_name()->set_given(p.given);
  d.mutable_name()->set_pinyin(p.pinyin);
  d.set_birth_date(p.birth_date);
  d.set_sex(p.sex);
  if (!p.phone.empty()) {
    auto* t = d.add_telecom();
    t->set_system("phone");
    t->set_value(p.phone);
    t->set_use(ev::CONTACT_USE_MOBILE);
  }
  return d;
}

// The made-up patient of these tests.
const std::string wang_id = resident_id("11010119600501001");
const person_in wang{.hanzi = "王建国", .family = "王", .given = "建国", .pinyin = "", .birth_date = "1960-05-01",
                     .phone = "13800138000", .sex = ev::SEX_MALE};
const person_in wang_pinyin{.hanzi = "", .family = "", .given = "", .pinyin = "WANG JIANGUO",
                            .birth_date = "1960-05-01", .phone = "", .sex = ev::SEX_MALE};

// The consortium's index options; while options_from refuses the example
// consortium's three card systems (zs and qh insurance, the health card), the
// two the tests' patients could carry.
wi::service_options service_options() {
  if (auto o = wi::options_from(consortium())) return std::move(*o);
  WARN("options_from(example consortium) failed; using resident ID + two card systems");
  wi::service_options o;
  o.index.resident_id_systems = {"urn:yilian:id:cn:resident"};
  o.index.card_systems[0] = "urn:yilian:id:zs:insurance";
  o.index.card_systems[1] = "urn:yilian:id:cn:health-card";
  return o;
}

struct fixture {
  temp_dir dir;
  std::unique_ptr<bus::bus> log;
  std::unique_ptr<wi::service> svc;
  std::unique_ptr<api::audit_log> audit;
  metrics::registry reg;
  asio::io_context ioc;
  std::unique_ptr<api::server> srv;
  std::thread thread;
  int published = 0;

  fixture() {
    auto b = bus::open_embedded_log(bus::embedded_log_options{.path = dir.path() / "bus" / "log.db", .default_partitions = 4});
    if (!b) FAIL(b.error().describe());
    log = std::move(*b);
    const std::vector<bus::topic_spec> topics{{.name = patient_topic, .partitions = 4},
                                              {.name = identity_topic, .partitions = 1}};
    if (auto r = log->ensure_topics(topics); !r) FAIL(r.error().describe());
    auto o = service_options();
    o.observed_topics.clear();
    o.instance = "test";
    svc = std::make_unique<wi::service>(*log, std::move(o));
    if (auto r = svc->start(); !r) FAIL(r.error().describe());
    REQUIRE(eventually([&] { return svc->caught_up(); }));
    auto a = api::audit_log::open(dir.path() / "audit" / "audit.log", 5ms);
    if (!a) FAIL(a.error().describe());
    audit = std::move(*a);
    srv = std::make_unique<api::server>(ioc, api::server_options{.address = "127.0.0.1", .port = 0}, reg);
    app::add_patient_routes(srv->routes(), *svc, *audit, consortium(), app::patient_api_options{.decision_timeout = 10s});
    app::add_patient_fhir_routes(srv->routes(), *svc, *audit, consortium());
    api::credential_store store;
    const std::vector<api::principal> principals{
        {.id = principal_id("zs-tertiary-his"), .role = api::role::hospital_system, .hospital = hospital_id("zs-tertiary")},
        {.id = principal_id("dc-chc-user"), .role = api::role::clinic_user, .hospital = hospital_id("dc-chc")},
        {.id = principal_id("nh-chc-user"), .role = api::role::clinic_user, .hospital = hospital_id("nh-chc")},
        {.id = principal_id("operator"), .role = api::role::operator_, .hospital = hospital_id("")}};
    for (const auto& p : principals) REQUIRE(store.add(p, api::hash_token("tok-" + p.id.value())));
    srv->set_credentials(std::make_shared<const api::credential_store>(std::move(store)));
    REQUIRE(srv->start());
    thread = std::thread([this] { ioc.run(); });
  }
  ~fixture() {
    srv->stop([] {});
    ioc.stop();
    thread.join();
    srv.reset();
    svc->stop();
    svc.reset();
    (void)log->flush(5s);
  }
  fixture(const fixture&) = delete;
  fixture& operator=(const fixture&) = delete;

  void publish(ev::Envelope e) {
    e.set_schema_version(1);
    *e.mutable_recorded_at() = google::protobuf::util::TimeUtil::GetCurrentTime();
    *e.mutable_occurred_at() = e.recorded_at();
    auto done = std::make_shared<std::promise<result<bus::position>>>();
    auto fut = done->get_future();
    const auto& first = e.subject().identifiers().empty() ? ev::Identifier() : e.subject().identifiers(0);
    bus::message msg{.topic = patient_topic, .key = first.system() + "|" + first.value(), .value = e.SerializeAsString()};
    msg.headers.push_back({"event_id", e.event_id()});
    msg.headers.push_back({"type", e.type()});
    log->publish(std::move(msg), [done](result<bus::position> r) { done->set_value(std::move(r)); });
    REQUIRE(fut.wait_for(10s) == std::future_status::ready);
    auto r = fut.get();
    if (!r) FAIL(r.error().describe());
    ++published;
  }

  // A hospital registers a patient (ADT^A04 as the HL7 adapter maps it).
  void registered(const std::string& hospital, std::vector<ev::Identifier> ids, const person_in& p) {
    ev::Envelope e;
    e.set_event_id("reg-" + hospital + "-" + ids.front().value());
    e.set_type("yilian.events.v1.PatientRegistered");
    e.mutable_source()->set_hospital(hospital);
    e.mutable_source()->set_system("HIS");
    e.mutable_source()->set_protocol(ev::PROTOCOL_HL7V2_MLLP);
    for (auto& i : ids) *e.mutable_subject()->add_identifiers() = std::move(i);
    e.mutable_patient_registered()->set_trigger("A04");
    *e.mutable_patient_registered()->mutable_demographics() = demographics(p);
    publish(std::move(e));
  }

  // Waits until the index holds the identifier; its person.
  wi::person_info person_of(const ev::Identifier& id, std::size_t records = 1) {
    std::optional<wi::person_info> out;
    const bool seen = eventually([&] {
      out = svc->read([&](const wi::view& v) { return v.person_of(id.system(), id.value()); });
      return out && out->records.size() >= records;
    });
    REQUIRE(seen);
    return *out;
  }

  reply get(const std::string& target, const std::string& who) {
    return call(srv->port(), http::verb::get, target, "tok-" + who);
  }
  reply post(const std::string& target, const std::string& who, const json& body) {
    return call(srv->port(), http::verb::post, target, "tok-" + who, body.dump());
  }

  std::string audit_text() {
    std::ifstream in(audit->path());
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  std::vector<json> audit_records() {
    std::vector<json> out;
    std::ifstream in(audit->path());
    std::string line;
    while (std::getline(in, line)) {
      if (!line.empty()) out.push_back(json::parse(line));
    }
    return out;
  }
  bool audited(const std::string& principal, const std::string& action, const std::string& resource,
               const std::string& id, const std::string& outcome = "ok") {
    return eventually([&] {
      for (const auto& r : audit_records()) {
        if (r.value("principal", "") != principal || r.value("action", "") != action ||
            r.value("resource", "") != resource || r.value("outcome", "") != outcome) {
          continue;
        }
        if (id.empty()) return true;
        for (const auto& x : r["ids"]) {
          if (x == id) return true;
        }
      }
      return false;
    });
  }

  // zs-tertiary and dc-chc registered the same man, both with his resident ID.
  std::string two_hospitals() {
    registered("zs-tertiary", {mrn("zs-tertiary", "ZS-1001"), resident(wang_id)}, wang);
    registered("dc-chc", {mrn("dc-chc", "DC-0001"), resident(wang_id)}, wang_pinyin);
    const auto p = person_of(mrn("dc-chc", "DC-0001"), 2);
    return p.enterprise_id;
  }
};

std::string q(const ev::Identifier& id) { return id.system() + "%7C" + id.value(); }

// Writes a resource for the HAPI validator when YILIAN_FHIR_DUMP_DIR is set.
void dump(const std::string& name, const json& resource) {
  const char* dir = std::getenv("YILIAN_FHIR_DUMP_DIR");
  if (dir == nullptr || *dir == '\0') return;
  std::filesystem::create_directories(dir);
  std::ofstream(std::filesystem::path(dir) / (name + ".json")) << resource.dump(2);
}

std::string issue_code(const reply& r) {
  if (r.body.value("resourceType", "") != "OperationOutcome" || r.body["issue"].empty()) return "(no OperationOutcome)";
  return r.body["issue"][0].value("code", "");
}
std::string diagnostics(const reply& r) {
  if (r.body.value("resourceType", "") != "OperationOutcome" || r.body["issue"].empty()) return "";
  return r.body["issue"][0].value("diagnostics", "");
}

// The identifiers of a resource or a PIX answer as "system|value".
std::vector<std::string> identifiers_of(const json& patient) {
  std::vector<std::string> out;
  for (const auto& i : patient.value("identifier", json::array())) out.push_back(i.value("system", "") + "|" + i.value("value", ""));
  return out;
}
std::vector<std::string> pix_identifiers(const json& parameters) {
  std::vector<std::string> out;
  for (const auto& p : parameters.value("parameter", json::array())) {
    if (p.value("name", "") == "targetIdentifier") {
      out.push_back(p["valueIdentifier"].value("system", "") + "|" + p["valueIdentifier"].value("value", ""));
    }
  }
  return out;
}
std::vector<std::string> pix_targets(const json& parameters) {
  std::vector<std::string> out;
  for (const auto& p : parameters.value("parameter", json::array())) {
    if (p.value("name", "") == "targetId") out.push_back(p["valueReference"].value("reference", ""));
  }
  return out;
}
bool has(const std::vector<std::string>& v, const std::string& x) { return std::find(v.begin(), v.end(), x) != v.end(); }
std::string key(const ev::Identifier& id) { return id.system() + "|" + id.value(); }

}  // namespace

TEST_CASE("a Patient is the enterprise person: every record's identifiers, typed and assigned, and the hanzi name as "
          "sent",
          "[unit][patients][fhir]") {
  fixture f;
  const std::string eid = f.two_hospitals();
  const auto r = f.get("/fhir/r4/Patient/" + eid, "operator");
  INFO(r.body.dump(2));
  REQUIRE(r.status == 200);
  CHECK(r.content_type.starts_with("application/fhir+json"));
  const auto& p = r.body;
  CHECK(p["resourceType"] == "Patient");
  CHECK(p["id"] == eid);
  CHECK_FALSE(p.contains("meta"));  // nothing withheld from an operator
  const auto ids = identifiers_of(p);
  CHECK(has(ids, "urn:yilian:enterprise-patient|" + eid));
  CHECK(has(ids, key(mrn("zs-tertiary", "ZS-1001"))));
  CHECK(has(ids, key(mrn("dc-chc", "DC-0001"))));
  CHECK(has(ids, key(resident(wang_id))));
  CHECK(std::count(ids.begin(), ids.end(), key(resident(wang_id))) == 1);  // both records carry it; listed once
  for (const auto& i : p["identifier"]) {
    if (i["value"] == "ZS-1001") {
      CHECK(i["type"]["coding"][0]["system"] == "http://terminology.hl7.org/CodeSystem/v2-0203");
      CHECK(i["type"]["coding"][0]["code"] == "MR");
      CHECK(i["assigner"]["reference"] == "Organization/zs-tertiary");
      CHECK(i["assigner"]["display"] == "中山市人民医院");
    }
    if (i["value"] == wang_id) {
      CHECK(i["type"]["coding"][0]["code"] == "RESIDENT_ID");
      CHECK_FALSE(i.contains("assigner"));
    }
  }
  bool hanzi = false, pinyin = false;
  for (const auto& n : p["name"]) {
    const std::string rep = n["extension"][0]["valueCode"];
    if (rep == "IDE" && n["text"] == "王建国" && n["family"] == "王" && n["given"][0] == "建国") hanzi = true;
    if (rep == "ABC" && n["text"] == "WANG JIANGUO") pinyin = true;
  }
  CHECK(hanzi);
  CHECK(pinyin);
  CHECK(p["birthDate"] == "1960-05-01");
  CHECK(p["gender"] == "male");
  CHECK(p["telecom"][0]["value"] == "13800138000");
  CHECK(p["telecom"][0]["use"] == "mobile");
  dump("patient-operator", p);
  CHECK(f.audited("operator", "read", "Patient", eid));

  // Unknown id: an OperationOutcome.
  const auto missing = f.get("/fhir/r4/Patient/YL000009999", "operator");
  CHECK(missing.status == 404);
  CHECK(issue_code(missing) == "not-found");
}

TEST_CASE("a hospital's Patient shows its own record's demographics, marks the rest redacted, and a clinic that never "
          "saw the patient gets 404",
          "[unit][patients][fhir]") {
  fixture f;
  const std::string eid = f.two_hospitals();
  const auto dc = f.get("/fhir/r4/Patient/" + eid, "dc-chc-user");
  INFO(dc.body.dump(2));
  REQUIRE(dc.status == 200);
  CHECK(dc.body["meta"]["security"][0]["code"] == "REDACTED");
  CHECK(has(identifiers_of(dc.body), key(mrn("zs-tertiary", "ZS-1001"))));  // the cross-reference is the point
  REQUIRE(dc.body["name"].size() == 1);
  CHECK(dc.body["name"][0]["text"] == "WANG JIANGUO");  // dc-chc's own record
  CHECK_FALSE(dc.body.contains("telecom"));             // zs-tertiary's phone is not dc-chc's to see
  dump("patient-redacted", dc.body);

  const auto nh = f.get("/fhir/r4/Patient/" + eid, "nh-chc-user");
  CHECK(nh.status == 404);
  CHECK(issue_code(nh) == "not-found");
  const auto search = f.get("/fhir/r4/Patient?identifier=" + q(mrn("zs-tertiary", "ZS-1001")), "nh-chc-user");
  REQUIRE(search.status == 200);
  CHECK(search.body["total"] == 0);
  CHECK(f.audited("nh-chc-user", "read", "Patient", eid, "not_found"));
}

TEST_CASE("Patient search by identifier and by demographics answers a searchset Bundle", "[unit][patients][fhir]") {
  fixture f;
  const std::string eid = f.two_hospitals();

  const auto by_id = f.get("/fhir/r4/Patient?identifier=" + q(mrn("dc-chc", "DC-0001")), "zs-tertiary-his");
  INFO(by_id.body.dump(2));
  REQUIRE(by_id.status == 200);
  CHECK(by_id.body["resourceType"] == "Bundle");
  CHECK(by_id.body["type"] == "searchset");
  CHECK(by_id.body["total"] == 1);
  CHECK(by_id.body["entry"][0]["fullUrl"] == "http://127.0.0.1/fhir/r4/Patient/" + eid);
  CHECK(by_id.body["entry"][0]["resource"]["id"] == eid);
  CHECK(by_id.body["entry"][0]["search"]["mode"] == "match");

  const auto by_eid = f.get("/fhir/r4/Patient?_id=" + eid, "zs-tertiary-his");
  CHECK(by_eid.body["total"] == 1);

  const auto demo =
      f.get("/fhir/r4/Patient?family=%E7%8E%8B&given=%E5%BB%BA%E5%9B%BD&birthdate=1960-05-01&gender=male", "operator");
  INFO(demo.body.dump(2));
  REQUIRE(demo.status == 200);
  REQUIRE(demo.body["total"].get<int>() >= 1);
  CHECK(demo.body["entry"][0]["resource"]["id"] == eid);
  const std::string grade = demo.body["entry"][0]["search"]["extension"][0]["valueCode"];
  CHECK((grade == "probable" || grade == "possible"));
  dump("bundle-search", demo.body);
  CHECK(f.audited("operator", "search", "Patient", eid));

  const auto unknown = f.get("/fhir/r4/Patient?nickname=x", "operator");
  CHECK(unknown.status == 400);
  CHECK(unknown.body["resourceType"] == "OperationOutcome");
  CHECK(f.get("/fhir/r4/Patient?birthdate=ge1960-01-01", "operator").status == 400);
  CHECK(f.get("/fhir/r4/Patient?gender=robot&family=x", "operator").status == 400);
}

TEST_CASE("$ihe-pix answers the cross-reference of a source identifier, restricted to target systems, with PIXm's "
          "errors",
          "[unit][patients][fhir]") {
  fixture f;
  const std::string eid = f.two_hospitals();
  const auto zs = mrn("zs-tertiary", "ZS-1001");
  const auto dc = mrn("dc-chc", "DC-0001");

  SECTION("found: targetId and every other identifier, not the source itself") {
    const auto r = f.get("/fhir/r4/Patient/$ihe-pix?sourceIdentifier=" + q(zs), "zs-tertiary-his");
    INFO(r.body.dump(2));
    REQUIRE(r.status == 200);
    CHECK(r.body["resourceType"] == "Parameters");
    CHECK(pix_targets(r.body) == std::vector<std::string>{"Patient/" + eid});
    const auto ids = pix_identifiers(r.body);
    CHECK(has(ids, key(dc)));
    CHECK(has(ids, key(resident(wang_id))));
    CHECK_FALSE(has(ids, key(zs)));
    dump("pix-parameters", r.body);
    // The same cross-reference the directory (and so the MLLP PIX query) gives.
    const auto x = f.svc->cross_reference_of(zs.system(), zs.value());
    REQUIRE(x);
    CHECK(x->enterprise_id == eid);
    // (The directory lists an identifier once per record carrying it; PIX once.)
    std::set<std::string> others;
    for (const auto& i : x->identifiers) {
      if (i.system + "|" + i.value != key(zs)) others.insert(i.system + "|" + i.value);
    }
    CHECK(ids.size() == others.size());
    for (const auto& o : others) CHECK(has(ids, o));
    CHECK(f.audited("zs-tertiary-his", "pix", "Patient", eid));
  }
  SECTION("targetSystem: only identifiers in those domains") {
    const auto r = f.get("/fhir/r4/Patient/$ihe-pix?sourceIdentifier=" + q(zs) + "&targetSystem=urn:yilian:id:dc-chc:mrn",
                         "operator");
    REQUIRE(r.status == 200);
    CHECK(pix_identifiers(r.body) == std::vector<std::string>{key(dc)});
    // The enterprise id, when asked for.
    const auto e = f.get("/fhir/r4/Patient/$ihe-pix?sourceIdentifier=" + q(zs) +
                             "&targetSystem=urn:yilian:enterprise-patient",
                         "operator");
    REQUIRE(e.status == 200);
    CHECK(pix_identifiers(e.body) == std::vector<std::string>{"urn:yilian:enterprise-patient|" + eid});
    // A known domain the patient has no identifier in: an empty answer.
    const auto none = f.get("/fhir/r4/Patient/$ihe-pix?sourceIdentifier=" + q(zs) +
                                "&targetSystem=urn:yilian:id:qh-county:mrn",
                            "operator");
    REQUIRE(none.status == 200);
    CHECK(none.body["resourceType"] == "Parameters");
    CHECK_FALSE(none.body.contains("parameter"));
  }
  SECTION("by enterprise id as the source") {
    const auto r = f.get("/fhir/r4/Patient/$ihe-pix?sourceIdentifier=urn:yilian:enterprise-patient%7C" + eid, "operator");
    REQUIRE(r.status == 200);
    CHECK(has(pix_identifiers(r.body), key(zs)));
  }
  SECTION("a clinic asks with another hospital's identifier of its own patient") {
    const auto r = f.get("/fhir/r4/Patient/$ihe-pix?sourceIdentifier=" + q(zs), "dc-chc-user");
    REQUIRE(r.status == 200);
    CHECK(has(pix_identifiers(r.body), key(dc)));
  }
  SECTION("errors: unknown source domain 400, unknown patient 404, unknown target domain 403") {
    const auto domain = f.get("/fhir/r4/Patient/$ihe-pix?sourceIdentifier=urn:oid:1.2.3%7CX1", "operator");
    CHECK(domain.status == 400);
    CHECK(issue_code(domain) == "code-invalid");
    CHECK(diagnostics(domain) == "sourceIdentifier Assigning Authority not found");
    const auto missing = f.get("/fhir/r4/Patient/$ihe-pix?sourceIdentifier=" + q(mrn("zs-tertiary", "ZS-404")), "operator");
    CHECK(missing.status == 404);
    CHECK(issue_code(missing) == "not-found");
    CHECK(diagnostics(missing) == "sourceIdentifier Patient Identifier not found");
    const auto target = f.get("/fhir/r4/Patient/$ihe-pix?sourceIdentifier=" + q(zs) + "&targetSystem=urn:oid:9.9.9",
                              "operator");
    CHECK(target.status == 403);
    CHECK(issue_code(target) == "code-invalid");
    CHECK(diagnostics(target) == "targetSystem not found");
    CHECK(f.get("/fhir/r4/Patient/$ihe-pix", "operator").status == 400);
    CHECK(f.get("/fhir/r4/Patient/$ihe-pix?sourceIdentifier=" + q(zs) + "&sourceIdentifier=" + q(dc), "operator").status == 400);
    // A clinic that never saw the patient: as if there were none.
    const auto outsider = f.get("/fhir/r4/Patient/$ihe-pix?sourceIdentifier=" + q(zs), "nh-chc-user");
    CHECK(outsider.status == 404);
    CHECK(diagnostics(outsider) == "sourceIdentifier Patient Identifier not found");
    CHECK(f.audited("nh-chc-user", "pix", "Patient", "", "not_found"));
  }
}

TEST_CASE("a Patient merged away by an A40 answers as the survivor", "[unit][patients][fhir]") {
  fixture f;
  const std::string eid = f.two_hospitals();
  // zs-tertiary registered the man a second time (no resident ID), then merged the duplicate.
  const auto dup = mrn("zs-tertiary", "ZS-1002");
  f.registered("zs-tertiary", {dup}, person_in{.hanzi = "王建国", .family = "王", .given = "建国", .pinyin = "",
                                               .birth_date = "1960-05-01", .phone = "", .sex = ev::SEX_MALE});
  const auto before = f.person_of(dup);
  REQUIRE(before.enterprise_id != eid);
  ev::Envelope e;
  e.set_event_id("a40-zs-1002");
  e.set_type("yilian.events.v1.PatientIdentifiersMerged");
  e.mutable_source()->set_hospital("zs-tertiary");
  e.mutable_source()->set_protocol(ev::PROTOCOL_HL7V2_MLLP);
  *e.mutable_subject()->add_identifiers() = mrn("zs-tertiary", "ZS-1001");
  auto* m = e.mutable_patient_identifiers_merged();
  m->set_hospital("zs-tertiary");
  *m->add_surviving() = mrn("zs-tertiary", "ZS-1001");
  *m->add_retired() = dup;
  f.publish(std::move(e));
  REQUIRE(eventually([&] {
    auto p = f.svc->read([&](const wi::view& v) { return v.person_of(dup.system(), dup.value()); });
    return p && p->enterprise_id == eid;
  }));
  const auto r = f.get("/fhir/r4/Patient/" + before.enterprise_id, "operator");
  INFO(r.body.dump(2));
  REQUIRE(r.status == 200);
  CHECK(r.body["id"] == eid);
  CHECK(has(identifiers_of(r.body), key(dup)));  // the retired MRN now names the survivor's record
  // The REST face answers the same.
  CHECK(f.get("/api/v1/patients/" + before.enterprise_id, "operator").body["enterprise_id"] == eid);
}
