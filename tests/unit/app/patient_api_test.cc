// The identity index's REST endpoints (engine/app/patient_api.h) in-process:
// the real HTTP server on 127.0.0.1 port 0, a Beast client, the identity
// service on an embedded log in a temporary directory fed by PatientRegistered
// envelopes published to yilian.patient.v1, the example consortium, and the
// audit log read back from its file.
//
// Principals: zs-tertiary-his (the tertiary hospital's system), dc-chc-user
// (a clinic user of dc-chc), nh-chc-user (a clinic that never saw the
// patient) and operator (consortium-wide). The patients are made up: names
// from common characters, resident IDs with computed check digits.
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
    std::string pattern = (std::filesystem::temp_directory_path() / "yilian-patient-api-test-XXXXXX").string();
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

const json* record_of(const json& person, const std::string& hospital) {
  for (const auto& r : person["records"]) {
    if (r.value("hospital", "") == hospital) return &r;
  }
  return nullptr;
}

}  // namespace

TEST_CASE("two hospitals' records of one man linked by his resident ID are one person with both records",
          "[unit][patients]") {
  fixture f;
  const std::string eid = f.two_hospitals();
  CHECK(eid.starts_with("YL"));

  const auto r = f.get("/api/v1/patients?identifier=" + q(mrn("zs-tertiary", "ZS-1001")), "operator");
  INFO(r.body.dump(2));
  REQUIRE(r.status == 200);
  REQUIRE(r.body["patients"].size() == 1);
  const auto& p = r.body["patients"][0];
  CHECK(p["enterprise_id"] == eid);
  REQUIRE(p["records"].size() == 2);
  const auto* zs = record_of(p, "zs-tertiary");
  const auto* dc = record_of(p, "dc-chc");
  REQUIRE(zs != nullptr);
  REQUIRE(dc != nullptr);
  CHECK((*zs)["hospital_name"] == "中山市人民医院");
  CHECK((*zs)["demographics"]["name"]["hanzi"] == "王建国");
  CHECK((*zs)["demographics"]["birth_date"] == "1960-05-01");
  CHECK((*zs)["demographics"]["sex"] == "SEX_MALE");
  CHECK((*dc)["demographics"]["name"]["pinyin"] == "WANG JIANGUO");
  bool typed_mrn = false;
  for (const auto& id : (*zs)["identifiers"]) {
    if (id["value"] == "ZS-1001") typed_mrn = id["type"] == "IDENTIFIER_TYPE_MRN" && id["assigner"] == "zs-tertiary";
  }
  CHECK(typed_mrn);

  // The same person by enterprise id, and by the other hospital's identifier.
  const auto by_id = f.get("/api/v1/patients/" + eid, "operator");
  REQUIRE(by_id.status == 200);
  CHECK(by_id.body["records"].size() == 2);
  const auto by_dc = f.get("/api/v1/patients?identifier=" + q(mrn("dc-chc", "DC-0001")), "operator");
  REQUIRE(by_dc.status == 200);
  CHECK(by_dc.body["patients"][0]["enterprise_id"] == eid);

  // An identifier nobody has: an empty list, not an error.
  const auto none = f.get("/api/v1/patients?identifier=" + q(mrn("zs-tertiary", "ZS-9999")), "operator");
  CHECK(none.status == 200);
  CHECK(none.body["patients"].empty());

  CHECK(f.audited("operator", "search", "Patient", eid));
  CHECK(f.audited("operator", "read", "Patient", eid));
}

TEST_CASE("a hospital sees the cross-reference of its own patients, the demographics of its own records only, and "
          "nothing of patients it never saw",
          "[unit][patients]") {
  fixture f;
  const std::string eid = f.two_hospitals();

  SECTION("zs-tertiary: both records' identifiers, its own demographics") {
    const auto r = f.get("/api/v1/patients/" + eid, "zs-tertiary-his");
    INFO(r.body.dump(2));
    REQUIRE(r.status == 200);
    const auto* zs = record_of(r.body, "zs-tertiary");
    const auto* dc = record_of(r.body, "dc-chc");
    REQUIRE(zs != nullptr);
    REQUIRE(dc != nullptr);
    CHECK((*zs)["demographics"]["name"]["hanzi"] == "王建国");
    CHECK_FALSE(dc->contains("demographics"));
    CHECK((*dc)["demographics_withheld"] == true);
    bool dc_mrn = false;
    for (const auto& id : (*dc)["identifiers"]) dc_mrn = dc_mrn || id["value"] == "DC-0001";
    CHECK(dc_mrn);
  }
  SECTION("dc-chc: the other way round") {
    const auto r = f.get("/api/v1/patients?identifier=" + q(mrn("zs-tertiary", "ZS-1001")), "dc-chc-user");
    REQUIRE(r.status == 200);
    REQUIRE(r.body["patients"].size() == 1);
    const auto& p = r.body["patients"][0];
    CHECK((*record_of(p, "dc-chc"))["demographics"]["name"]["pinyin"] == "WANG JIANGUO");
    CHECK((*record_of(p, "zs-tertiary"))["demographics_withheld"] == true);
  }
  SECTION("nh-chc never saw him: 404 by id, empty by identifier and by demographics") {
    const auto r = f.get("/api/v1/patients/" + eid, "nh-chc-user");
    CHECK(r.status == 404);
    CHECK(r.content_type == "application/problem+json");
    const auto h = f.get("/api/v1/patients/" + eid + "/history", "nh-chc-user");
    CHECK(h.status == 404);
    const auto s = f.get("/api/v1/patients?identifier=" + q(resident(wang_id)), "nh-chc-user");
    REQUIRE(s.status == 200);
    CHECK(s.body["patients"].empty());
    const auto d = f.get("/api/v1/patients?family=%E7%8E%8B&given=%E5%BB%BA%E5%9B%BD&birth_date=1960-05-01", "nh-chc-user");
    REQUIRE(d.status == 200);
    CHECK(d.body["patients"].empty());
    // A person that does not exist answers the same.
    CHECK(f.get("/api/v1/patients/YL999999999", "nh-chc-user").status == 404);
    CHECK(f.audited("nh-chc-user", "read", "Patient", eid, "not_found"));
  }
  SECTION("the review queue and the commands are the consortium operators'") {
    CHECK(f.get("/api/v1/patient-reviews", "zs-tertiary-his").status == 403);
    CHECK(f.post("/api/v1/patient-reviews/0/accept", "zs-tertiary-his", json::object()).status == 403);
    CHECK(f.post("/api/v1/patients/" + eid + "/split", "dc-chc-user",
                 json{{"identifier", {{"system", "urn:yilian:id:dc-chc:mrn"}, {"value", "DC-0001"}}}})
              .status == 403);
    CHECK(f.audited("zs-tertiary-his", "update", "PatientLink", "", "forbidden"));
  }
  // Audit records and the audit file never carry names, ID numbers or phones.
  REQUIRE(eventually([&] { return f.audit->records() > 0 && !f.audit_text().empty(); }));
  const auto text = f.audit_text();
  CHECK(text.find("王") == std::string::npos);
  CHECK(text.find("WANG") == std::string::npos);
  CHECK(text.find(wang_id) == std::string::npos);
  CHECK(text.find("13800138000") == std::string::npos);
}

TEST_CASE("a demographic search answers persons with the match verdict and score, best first", "[unit][patients]") {
  fixture f;
  const std::string eid = f.two_hospitals();
  const auto r = f.get("/api/v1/patients?family=%E7%8E%8B&given=%E5%BB%BA%E5%9B%BD&birth_date=1960-05-01&sex=male",
                       "zs-tertiary-his");
  INFO(r.body.dump(2));
  REQUIRE(r.status == 200);
  REQUIRE_FALSE(r.body["patients"].empty());
  const auto& hit = r.body["patients"][0];
  CHECK(hit["enterprise_id"] == eid);
  CHECK((hit["match"]["verdict"] == "link" || hit["match"]["verdict"] == "review"));
  CHECK(hit["match"]["score_bits"].get<double>() > 8.0);
  CHECK(f.audited("zs-tertiary-his", "search", "Patient", eid));

  // Bad input is a 400 that says why.
  const auto unknown = f.get("/api/v1/patients?surname=x", "operator");
  CHECK(unknown.status == 400);
  CHECK(unknown.body["where"] == "surname");
  CHECK(f.get("/api/v1/patients", "operator").status == 400);
  CHECK(f.get("/api/v1/patients?identifier=nobar", "operator").status == 400);
  CHECK(f.get("/api/v1/patients?family=x&sex=robot", "operator").status == 400);
}

TEST_CASE("an operator accepts a queued record into its candidate, splits it out again, moves it back, and the "
          "history shows every decision",
          "[unit][patients]") {
  fixture f;
  const std::string eid = f.two_hospitals();
  // qh-county registers the same name and birth date with no identifier in
  // common and nothing else to corroborate it: queued for review.
  const auto qh = mrn("qh-county", "QH-77");
  f.registered("qh-county", {qh}, person_in{.hanzi = "王建国", .family = "王", .given = "建国", .pinyin = "",
                                            .birth_date = "1960-05-01", .phone = "", .sex = ev::SEX_MALE});
  const auto queued = f.person_of(qh);
  REQUIRE(queued.enterprise_id != eid);

  json review;
  REQUIRE(eventually([&] {
    const auto r = f.get("/api/v1/patient-reviews", "operator");
    if (r.status != 200) return false;
    for (const auto& item : r.body["reviews"]) {
      if (item["record"]["hospital"] == "qh-county") review = item;
    }
    return !review.is_null();
  }));
  INFO(review.dump(2));
  CHECK(review["state"] == "open");
  CHECK(review["candidate_enterprise_id"] == eid);
  CHECK(review["record_enterprise_id"] == queued.enterprise_id);
  CHECK(review["record"]["demographics"]["name"]["hanzi"] == "王建国");
  CHECK(review["candidate"]["records"].size() == 2);
  const std::string rid = std::to_string(review["id"].get<unsigned>());

  // Accept: the record joins the candidate.
  const auto accepted = f.post("/api/v1/patient-reviews/" + rid + "/accept", "operator",
                               json{{"command_id", "accept-1"}, {"reason", "same man: confirmed at the desk"}});
  INFO(accepted.body.dump(2));
  REQUIRE(accepted.status == 200);
  CHECK(accepted.body["enterprise_id"] == eid);
  CHECK(accepted.body["patient"]["records"].size() == 3);
  const std::string command_id = accepted.body["command_id"];
  // The same command again: the first outcome, not a second decision.
  const auto again = f.post("/api/v1/patient-reviews/" + rid + "/accept", "operator", json{{"command_id", "accept-1"}});
  CHECK(again.status == 200);
  CHECK(again.body["command_id"] == command_id);
  CHECK(again.body["enterprise_id"] == eid);
  // A new command on the decided review is refused.
  const auto late = f.post("/api/v1/patient-reviews/" + rid + "/reject", "operator", json{{"command_id", "reject-late"}});
  CHECK(late.status == 409);
  CHECK(f.post("/api/v1/patient-reviews/4711/accept", "operator", json::object()).status == 404);
  CHECK(f.post("/api/v1/patient-reviews/x/accept", "operator", json::object()).status == 404);
  CHECK(f.post("/api/v1/patient-reviews/" + rid + "/accept", "operator", json{{"comand_id", "typo"}}).status == 400);
  CHECK(f.get("/api/v1/patient-reviews", "operator").body["reviews"].empty());
  const auto all = f.get("/api/v1/patient-reviews?state=all", "operator");
  REQUIRE(all.status == 200);
  REQUIRE_FALSE(all.body["reviews"].empty());
  CHECK(all.body["reviews"][0]["state"] == "accepted");

  // Split: the qh-county record leaves the person.
  const json qh_body{{"identifier", {{"system", qh.system()}, {"value", qh.value()}}}, {"reason", "wrong link"}};
  const auto split = f.post("/api/v1/patients/" + eid + "/split", "operator", qh_body);
  INFO(split.body.dump(2));
  REQUIRE(split.status == 200);
  const std::string alone = split.body["enterprise_id"];
  CHECK(alone != eid);
  CHECK(split.body["patient"]["records"].size() == 1);
  CHECK(f.get("/api/v1/patients/" + eid, "operator").body["records"].size() == 2);
  // zs-tertiary reads the history: the split-off record now belongs to a
  // person it may not see, so that decision's identifiers are withheld.
  const auto zs_history = f.get("/api/v1/patients/" + eid + "/history", "zs-tertiary-his");
  REQUIRE(zs_history.status == 200);
  bool withheld = false;
  for (const auto& c : zs_history.body["history"]) {
    if (c.value("action", "") == "LINK_ACTION_UNLINKED") withheld = c.value("identifiers_withheld", 0) > 0;
  }
  CHECK(withheld);
  CHECK(zs_history.body.dump().find("QH-77") == std::string::npos);
  // Splitting a record the person does not hold: 404.
  CHECK(f.post("/api/v1/patients/" + eid + "/split", "operator", qh_body).status == 404);
  CHECK(f.post("/api/v1/patients/" + eid + "/split", "operator",
               json{{"identifier", {{"system", qh.system()}, {"value", "QH-404"}}}})
            .status == 404);

  // Move: back into the person.
  const auto moved = f.post("/api/v1/patients/" + eid + "/records", "operator", qh_body);
  INFO(moved.body.dump(2));
  REQUIRE(moved.status == 200);
  CHECK(moved.body["enterprise_id"] == eid);
  CHECK(moved.body["patient"]["records"].size() == 3);

  // History: the resident-ID link, the accepted review, the split, the move.
  const auto h = f.get("/api/v1/patients/" + eid + "/history", "operator");
  INFO(h.body.dump(2));
  REQUIRE(h.status == 200);
  std::vector<std::string> actions, bases;
  for (const auto& c : h.body["history"]) {
    actions.push_back(c.value("action", ""));
    bases.push_back(c.value("basis", ""));
  }
  auto has = [](const std::vector<std::string>& v, const std::string& x) {
    return std::find(v.begin(), v.end(), x) != v.end();
  };
  CHECK(has(bases, "LINK_BASIS_RESIDENT_ID"));
  CHECK(has(actions, "LINK_ACTION_UNLINKED"));
  CHECK(has(actions, "LINK_ACTION_LINKED"));
  bool operator_reason = false;
  for (const auto& c : h.body["history"]) operator_reason = operator_reason || c.value("decided_by", "") == "operator";
  CHECK(operator_reason);
  CHECK(f.audited("operator", "update", "PatientLink", eid));
  CHECK(f.audited("operator", "update", "PatientLink", "", "conflict"));
}

TEST_CASE("an operator rejects a queued record: it stays a person of its own and is not proposed again",
          "[unit][patients]") {
  fixture f;
  const std::string eid = f.two_hospitals();
  const auto qh = mrn("qh-county", "QH-78");
  f.registered("qh-county", {qh}, person_in{.hanzi = "王建国", .family = "王", .given = "建国", .pinyin = "",
                                            .birth_date = "1960-05-01", .phone = "", .sex = ev::SEX_MALE});
  const auto queued = f.person_of(qh);
  std::string rid;
  json reviews;
  const bool queued_for_review = eventually([&] {
    reviews = f.get("/api/v1/patient-reviews", "operator").body;
    for (const auto& item : reviews["reviews"]) {
      if (item["record"]["hospital"] == "qh-county") rid = std::to_string(item["id"].get<unsigned>());
    }
    return !rid.empty();
  });
  INFO(reviews.dump(2));
  REQUIRE(queued_for_review);
  const auto rejected = f.post("/api/v1/patient-reviews/" + rid + "/reject", "operator", json{{"reason", "other man"}});
  INFO(rejected.body.dump(2));
  REQUIRE(rejected.status == 200);
  CHECK(rejected.body["enterprise_id"] == queued.enterprise_id);
  CHECK(rejected.body["enterprise_id"] != eid);
  CHECK(f.get("/api/v1/patients/" + eid, "operator").body["records"].size() == 2);
  const auto all = f.get("/api/v1/patient-reviews?state=all", "operator");
  bool seen = false;
  for (const auto& item : all.body["reviews"]) seen = seen || (std::to_string(item["id"].get<unsigned>()) == rid && item["state"] == "rejected");
  CHECK(seen);
  CHECK(f.get("/api/v1/patient-reviews?state=closed", "operator").status == 400);
}
