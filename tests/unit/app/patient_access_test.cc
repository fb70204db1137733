// Delegated patient access (engine/app/patient_access.h,
// docs/patient-access.md) over the real HTTP server on 127.0.0.1 port 0:
// the identity index, the referral workflow and the report library on an
// embedded log in a temporary directory, the example consortium, the audit
// log read back from its file.
//
// The people are made up (names from common characters, resident IDs with
// computed check digits): 王建国 has records at zs-tertiary (ZS-1001) and
// dc-chc (DC-0001) linked by his resident ID; 李秀英 has one at zs-tertiary
// (ZS-2002). The patient app backend is the principal patient-app (role
// patient_gateway); hospital principals as in the other API tests.
#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>

#include "engine/app/patient_access.h"
#include "engine/app/referral_api.h"
#include "engine/app/report_api.h"
#include "engine/workflows/referral/service.h"
#include "engine/workflows/reports/library.h"
#include "tests/unit/app/patient_test_support.h"

using namespace yilian;
using namespace yilian::app::test;
namespace rf = yilian::workflows::referral;
namespace rp = yilian::workflows::reports;
using sys = std::chrono::system_clock;

namespace {

const std::string referral_topic = "yilian.referral.v1";
const std::string report_topic = "yilian.report.v1";
const std::string token_key = "test-patient-token-key-0123456789abcdef";

const std::string li_id = resident_id("44200019750312002");
const person_in li{.hanzi = "李秀英", .family = "李", .given = "秀英", .pinyin = "", .birth_date = "1975-03-12",
                   .phone = "13900139000", .sex = ev::SEX_FEMALE};

// The API server with static tokens "tok-<id>" and patient tokens under
// token_key, its io_context on a thread of its own.
class patient_host {
 public:
  patient_host() : server_(std::make_unique<api::server>(ioc_, api::server_options{.address = "127.0.0.1", .port = 0}, metrics_)) {}
  ~patient_host() { stop(); }
  patient_host(const patient_host&) = delete;
  patient_host& operator=(const patient_host&) = delete;
  api::router& routes() { return server_->routes(); }
  void start(const std::vector<api::principal>& principals, std::shared_ptr<const api::patient_token_key> key) {
    api::credential_store store;
    for (const auto& p : principals) REQUIRE(store.add(p, api::hash_token("tok-" + p.id.value())));
    if (key) store.accept_patient_tokens(std::move(key));
    server_->set_credentials(std::make_shared<const api::credential_store>(std::move(store)));
    REQUIRE(server_->start());
    thread_ = std::thread([this] { ioc_.run(); });
  }
  void stop() {
    if (thread_.joinable()) {
      server_->stop([] {});
      ioc_.stop();
      thread_.join();
    }
    server_.reset();
  }
  std::uint16_t port() const { return server_->port(); }

 private:
  metrics::registry metrics_;
  boost::asio::io_context ioc_;
  std::unique_ptr<api::server> server_;
  std::thread thread_;
};

struct access_fixture {
  yilian::test::temp_dir dir{"yilian-patient-access-test"};
  std::unique_ptr<bus::bus> log;
  std::unique_ptr<wi::service> identity;
  std::unique_ptr<rf::service> referrals;
  std::unique_ptr<rp::library> reports;
  std::unique_ptr<api::audit_log> audit;
  patient_host host;

  explicit access_fixture(bool with_key = true) {
    auto b = bus::open_embedded_log(bus::embedded_log_options{.path = dir.file("bus/log.db"), .default_partitions = 4});
    if (!b) FAIL(b.error().describe());
    log = std::move(*b);
    const std::vector<bus::topic_spec> topics{{.name = patient_topic, .partitions = 4},
                                              {.name = identity_topic, .partitions = 1},
                                              {.name = referral_topic, .partitions = 4},
                                              {.name = report_topic, .partitions = 4}};
    if (auto r = log->ensure_topics(topics); !r) FAIL(r.error().describe());
    auto o = service_options();
    o.observed_topics.clear();
    o.instance = "test";
    identity = std::make_unique<wi::service>(*log, std::move(o));
    referrals = std::make_unique<rf::service>(*log, std::make_unique<rf::ledger>(consortium(), rf::options_from(consortium())),
                                              rf::service_options{.topic = referral_topic});
    reports = std::make_unique<rp::library>(*log, rp::library_options{.topic = report_topic,
                                                                       .group_prefix = "",
                                                                       .file = dir.file("reports/reports.db")});
    for (auto started : {identity->start(), referrals->start(), reports->start()}) {
      if (!started) FAIL(started.error().describe());
    }
    REQUIRE(eventually([&] { return identity->caught_up() && referrals->caught_up() && reports->caught_up(); }));
    auto a = api::audit_log::open(dir.file("audit/audit.log"), 5ms);
    if (!a) FAIL(a.error().describe());
    audit = std::move(*a);

    app::patient_tokens tokens;
    if (with_key) {
      auto k = api::patient_token_key::from_secret(token_key);
      REQUIRE(k);
      tokens.key = std::make_shared<const api::patient_token_key>(std::move(*k));
    } else {
      tokens.unavailable = "patient_access.token_key {env: YILIAN_PATIENT_TOKEN_KEY}: environment variable "
                           "YILIAN_PATIENT_TOKEN_KEY is not set";
    }
    auto key = tokens.key;
    app::add_patient_session_routes(
        host.routes(),
        app::patient_session_options{.directory = identity.get(),
                                     .ready = [this] { return identity->caught_up(); },
                                     .tokens = std::move(tokens),
                                     .now = {}},
        *audit);
    app::add_referral_routes(host.routes(), *referrals, *audit,
                             app::referral_api_options{.decision_timeout = 10s, .patients = identity.get()});
    app::add_report_routes(host.routes(),
                           app::report_api_deps{.cfg = consortium(),
                                                .library = *reports,
                                                .bookings = nullptr,
                                                .referrals = referrals.get(),
                                                .raw_store = {},
                                                .patients = identity.get()},
                           *audit);
    // Another API a patient must not reach (routes open to "any principal").
    app::add_patient_routes(host.routes(), *identity, *audit, consortium(), app::patient_api_options{.decision_timeout = 10s});
    host.start({{.id = principal_id("zs-tertiary-his"), .role = api::role::hospital_system, .hospital = hospital_id("zs-tertiary")},
                {.id = principal_id("dc-chc-user"), .role = api::role::clinic_user, .hospital = hospital_id("dc-chc")},
                {.id = principal_id("operator"), .role = api::role::operator_, .hospital = hospital_id("")},
                {.id = principal_id("patient-app"), .role = api::role::patient_gateway, .hospital = hospital_id("")}},
               key);
  }
  ~access_fixture() {
    host.stop();
    reports->stop();
    referrals->stop();
    identity->stop();
    (void)log->flush(5s);
  }
  access_fixture(const access_fixture&) = delete;
  access_fixture& operator=(const access_fixture&) = delete;

  void publish(const std::string& topic, const std::string& key, ev::Envelope e) {
    e.set_schema_version(1);
    *e.mutable_recorded_at() = google::protobuf::util::TimeUtil::GetCurrentTime();
    *e.mutable_occurred_at() = e.recorded_at();
    auto done = std::make_shared<std::promise<result<bus::position>>>();
    auto fut = done->get_future();
    bus::message msg{.topic = topic, .key = key, .value = e.SerializeAsString()};
    msg.headers.push_back({"event_id", e.event_id()});
    msg.headers.push_back({"type", e.type()});
    log->publish(std::move(msg), [done](result<bus::position> r) { done->set_value(std::move(r)); });
    REQUIRE(fut.wait_for(10s) == std::future_status::ready);
    auto r = fut.get();
    if (!r) FAIL(r.error().describe());
  }

  void registered(const std::string& hospital, std::vector<ev::Identifier> ids, const person_in& p) {
    ev::Envelope e;
    e.set_event_id("reg-" + hospital + "-" + ids.front().value());
    e.set_type("yilian.events.v1.PatientRegistered");
    e.mutable_source()->set_hospital(hospital);
    e.mutable_source()->set_system("HIS");
    e.mutable_source()->set_protocol(ev::PROTOCOL_HL7V2_MLLP);
    const auto key = ids.front().system() + "|" + ids.front().value();
    for (auto& i : ids) *e.mutable_subject()->add_identifiers() = std::move(i);
    e.mutable_patient_registered()->set_trigger("A04");
    *e.mutable_patient_registered()->mutable_demographics() = demographics(p);
    publish(patient_topic, key, std::move(e));
  }

  // A report of `hospital` about the subject with these identifiers, with one
  // document by reference.
  void report(const std::string& hospital, const std::string& report_id, std::vector<ev::Identifier> ids,
              const std::string& status = "F", const std::string& event_id = {}) {
    ev::Envelope e;
    e.set_event_id(event_id.empty() ? "rpt-" + hospital + "-" + report_id + "-" + status : event_id);
    e.set_type("yilian.events.v1.ReportIssued");
    e.mutable_source()->set_hospital(hospital);
    e.mutable_source()->set_system("RIS");
    e.mutable_source()->set_protocol(ev::PROTOCOL_HL7V2_MLLP);
    for (auto& i : ids) *e.mutable_subject()->add_identifiers() = std::move(i);
    auto* r = e.mutable_report_issued();
    r->set_report_id(report_id);
    r->set_performing_hospital(hospital);
    r->set_status(status == "C" ? ev::REPORT_STATUS_CORRECTED : ev::REPORT_STATUS_FINAL);
    r->set_status_code(status);
    r->mutable_exam()->set_code("CT-HEAD-PLAIN");
    r->set_conclusion("no acute finding");
    auto* d = r->add_documents();
    d->set_uri("https://pacs.example.cn/" + hospital + "/" + report_id + ".pdf");
    d->set_content_type("application/pdf");
    d->set_title("report");
    publish(report_topic, hospital + "|" + report_id, std::move(e));
  }
  std::size_t versions_of(const std::string& hospital, const std::string& report_id) {
    auto e = reports->find(hospital, report_id);
    if (!e) FAIL(e.error().describe());
    return *e ? (*e)->versions.size() : std::size_t{0};
  }

  reply call(http::verb method, const std::string& target, const std::string& token, const json& body = nullptr) {
    yilian::test::http_request o;
    if (!body.is_null()) o.body = body.dump();
    return yilian::test::http_call(host.port(), method, target, token, o);
  }
  reply as(const std::string& principal, http::verb method, const std::string& target, const json& body = nullptr) {
    return call(method, target, "tok-" + principal, body);
  }

  // A patient token for the person holding the identifier, from the gateway.
  reply session(const ev::Identifier& id, const std::string& who = "patient-app") {
    return as(who, http::verb::post, "/api/v1/patient-sessions",
              json{{"identifier", {{"system", id.system()}, {"value", id.value()}}}});
  }
  std::string token_for(const ev::Identifier& id) {
    const auto r = session(id);
    INFO(r.body.dump());
    REQUIRE(r.status == 201);
    return r.body["token"];
  }

  // A referral dc-chc sends up to zs-tertiary for the subject; its id.
  std::string refer(const std::vector<ev::Identifier>& ids) {
    json identifiers = json::array();
    for (const auto& i : ids) identifiers.push_back({{"system", i.system()}, {"value", i.value()}});
    const auto r = as("dc-chc-user", http::verb::post, "/api/v1/referrals",
                      json{{"to_hospital", "zs-tertiary"}, {"identifiers", identifiers}, {"reason_text", "chest pain"}});
    INFO(r.body.dump());
    REQUIRE(r.status == 201);
    return r.body["id"];
  }

  std::vector<json> audit_lines() { return yilian::test::audit_records(audit->path()); }
  bool audited(const std::string& principal, const std::string& action, const std::string& resource,
               const std::string& id, const std::string& outcome = "ok") {
    return eventually([&] {
      return yilian::test::audit_has(audit_lines(), principal, action, resource, id, outcome);
    });
  }
  std::string audit_text() {
    std::ifstream in(audit->path());
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  // Both people registered, a report and a referral each, plus a report by
  // qh-county made under Wang's dc-chc number. Wang's enterprise id.
  std::string world() {
    registered("zs-tertiary", {mrn("zs-tertiary", "ZS-1001"), resident(wang_id)}, wang);
    registered("dc-chc", {mrn("dc-chc", "DC-0001"), resident(wang_id)}, wang_pinyin);
    registered("zs-tertiary", {mrn("zs-tertiary", "ZS-2002"), resident(li_id)}, li);
    const auto wang_person = person_of(mrn("dc-chc", "DC-0001"), 2);
    (void)person_of(mrn("zs-tertiary", "ZS-2002"));
    report("zs-tertiary", "R-WANG-1", {mrn("zs-tertiary", "ZS-1001")});
    report("qh-county", "R-WANG-2", {mrn("dc-chc", "DC-0001")});
    report("zs-tertiary", "R-LI-1", {mrn("zs-tertiary", "ZS-2002")});
    REQUIRE(eventually([&] {
      return versions_of("zs-tertiary", "R-WANG-1") == 1 && versions_of("qh-county", "R-WANG-2") == 1 &&
             versions_of("zs-tertiary", "R-LI-1") == 1;
    }));
    return wang_person.enterprise_id;
  }

  wi::person_info person_of(const ev::Identifier& id, std::size_t records = 1) {
    std::optional<wi::person_info> out;
    REQUIRE(eventually([&] {
      out = identity->read([&](const wi::view& v) { return v.person_of(id.system(), id.value()); });
      return out && out->records.size() >= records;
    }));
    return *out;
  }
};

std::vector<std::string> report_ids(const json& body) {
  std::vector<std::string> out;
  for (const auto& r : body["reports"]) out.push_back(r["hospital"].get<std::string>() + "/" + r["report_id"].get<std::string>());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> referral_ids(const json& body) {
  std::vector<std::string> out;
  for (const auto& r : body["referrals"]) out.push_back(r["id"]);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE("the patient gateway gets a patient token for a known identifier and a bare 404 for an unknown one",
          "[unit]") {
  access_fixture f;
  const auto wang_yl = f.world();

  const auto ok = f.session(mrn("zs-tertiary", "ZS-1001"));
  INFO(ok.body.dump());
  REQUIRE(ok.status == 201);
  CHECK(ok.body["token_type"] == "Bearer");
  CHECK(ok.body["expires_in"] == 900);
  CHECK(ok.body["enterprise_id"] == wang_yl);
  CHECK(ok.body["token"].get<std::string>().starts_with("ylp1."));
  // Any of the person's record keys names the same person, and so does the enterprise id.
  CHECK(f.session(mrn("dc-chc", "DC-0001")).body["enterprise_id"] == wang_yl);
  CHECK(f.session(identifier("urn:yilian:enterprise-patient", wang_yl, ev::IDENTIFIER_TYPE_UNSPECIFIED))
            .body["enterprise_id"] == wang_yl);
  // The resident ID the patient app verified names the same person: it is a
  // person-level identifier, held by exactly one person here.
  const auto by_rid = f.session(resident(wang_id));
  INFO(by_rid.body.dump());
  CHECK(by_rid.status == 201);
  CHECK(by_rid.body["enterprise_id"] == wang_yl);

  SECTION("unknown value, unknown system: the same 404, which names no value") {
    for (const auto& id : {resident(resident_id("11010119900101123")), mrn("nh-chc", "NH-9"),
                           identifier("urn:yilian:enterprise-patient", "YL999999999", ev::IDENTIFIER_TYPE_UNSPECIFIED),
                           identifier("urn:example:nothing", wang_id, ev::IDENTIFIER_TYPE_UNSPECIFIED)}) {
      const auto r = f.session(id);
      INFO(r.body.dump());
      CHECK(r.status == 404);
      CHECK(r.body.dump().find(id.value()) == std::string::npos);
    }
    CHECK(f.audited("patient-app", "create", "PatientSession", "", "not_found"));
  }
  SECTION("a malformed request is 400") {
    CHECK(f.as("patient-app", http::verb::post, "/api/v1/patient-sessions", json{{"identifier", "x"}}).status == 400);
    CHECK(f.as("patient-app", http::verb::post, "/api/v1/patient-sessions",
               json{{"identifier", {{"system", "urn:yilian:id:cn:resident"}}}})
              .status == 400);
  }
  SECTION("only the gateway may ask") {
    for (const std::string who : {"dc-chc-user", "zs-tertiary-his", "operator"}) {
      INFO(who);
      CHECK(f.session(mrn("zs-tertiary", "ZS-1001"), who).status == 403);
    }
    const auto token = f.token_for(mrn("zs-tertiary", "ZS-1001"));
    CHECK(f.call(http::verb::post, "/api/v1/patient-sessions", token,
                 json{{"identifier", {{"system", "urn:yilian:id:zs-tertiary:mrn"}, {"value", "ZS-2002"}}}})
              .status == 403);
  }
  SECTION("the gateway reads nothing itself") {
    CHECK(f.as("patient-app", http::verb::get, "/api/v1/reports").status == 403);
    CHECK(f.as("patient-app", http::verb::get, "/api/v1/referrals").status == 403);
    CHECK(f.as("patient-app", http::verb::get, "/api/v1/patients/" + wang_yl).status == 403);
  }
  // Issues are audited by enterprise id, never by the identifier value.
  CHECK(f.audited("patient-app", "create", "PatientSession", wang_yl));
  CHECK(f.audit_text().find(wang_id) == std::string::npos);
  CHECK(f.audit_text().find("DC-0001") == std::string::npos);
}

TEST_CASE("a patient reads their own reports across hospitals and nobody else's; every read is audited", "[unit]") {
  access_fixture f;
  const auto wang_yl = f.world();
  const auto token = f.token_for(mrn("zs-tertiary", "ZS-1001"));

  const auto list = f.call(http::verb::get, "/api/v1/reports", token);
  INFO(list.body.dump());
  REQUIRE(list.status == 200);
  // Made under his zs-tertiary MRN and under his dc-chc MRN (at qh-county): both his.
  CHECK(report_ids(list.body) == std::vector<std::string>{"qh-county/R-WANG-2", "zs-tertiary/R-WANG-1"});

  const auto one = f.call(http::verb::get, "/api/v1/reports/zs-tertiary/R-WANG-1", token);
  REQUIRE(one.status == 200);
  CHECK(one.body["versions"].size() == 1);
  const auto doc = f.call(http::verb::get, "/api/v1/reports/zs-tertiary/R-WANG-1/documents/1", token);
  CHECK(doc.status == 200);
  CHECK(doc.location == "https://pacs.example.cn/zs-tertiary/R-WANG-1.pdf");

  // Li's report does not exist for him; nor does a report nobody issued.
  for (const std::string target : {"/api/v1/reports/zs-tertiary/R-LI-1", "/api/v1/reports/zs-tertiary/R-LI-1/documents/1",
                                   "/api/v1/reports/zs-tertiary/R-NONE"}) {
    INFO(target);
    CHECK(f.call(http::verb::get, target, token).status == 404);
  }

  // Li's token sees Li's report only.
  const auto li_token = f.token_for(mrn("zs-tertiary", "ZS-2002"));
  CHECK(report_ids(f.call(http::verb::get, "/api/v1/reports", li_token).body) ==
        std::vector<std::string>{"zs-tertiary/R-LI-1"});
  CHECK(f.call(http::verb::get, "/api/v1/reports/qh-county/R-WANG-2", li_token).status == 404);

  // Audited as the patient (enterprise id), through the gateway.
  CHECK(f.audited(wang_yl, "search", "DiagnosticReport", "zs-tertiary/R-WANG-1"));
  CHECK(f.audited(wang_yl, "read", "DiagnosticReport", "zs-tertiary/R-WANG-1"));
  CHECK(f.audited(wang_yl, "read", "Binary", "zs-tertiary/R-WANG-1"));
  CHECK(f.audited(wang_yl, "read", "DiagnosticReport", "zs-tertiary/R-LI-1", "not_found"));
  bool via = false;
  for (const auto& r : f.audit_lines()) {
    if (r.value("principal", "") == wang_yl) {
      CHECK(r.value("role", "") == "patient");
      CHECK(r.value("via", "") == "patient-app");
      via = true;
    }
  }
  CHECK(via);
  const auto text = f.audit_text();
  for (const auto& secret : std::vector<std::string> {wang_id, li_id, std::string("王建国"), std::string("13800138000"), token}) {
    CHECK(text.find(secret) == std::string::npos);
  }
}

TEST_CASE("a correction that moves a report to another patient takes it from the first", "[unit]") {
  access_fixture f;
  (void)f.world();
  const auto token = f.token_for(mrn("zs-tertiary", "ZS-1001"));
  REQUIRE(f.call(http::verb::get, "/api/v1/reports/zs-tertiary/R-WANG-1", token).status == 200);
  // The hospital corrects the report: it was Li's.
  f.report("zs-tertiary", "R-WANG-1", {mrn("zs-tertiary", "ZS-2002")}, "C");
  REQUIRE(eventually([&] { return f.versions_of("zs-tertiary", "R-WANG-1") == 2; }));
  CHECK(f.call(http::verb::get, "/api/v1/reports/zs-tertiary/R-WANG-1", token).status == 404);
  CHECK(report_ids(f.call(http::verb::get, "/api/v1/reports", token).body) ==
        std::vector<std::string>{"qh-county/R-WANG-2"});
  CHECK(f.call(http::verb::get, "/api/v1/reports/zs-tertiary/R-WANG-1", f.token_for(mrn("zs-tertiary", "ZS-2002"))).status == 200);
}

TEST_CASE("a patient reads their own referrals, gets 404 for others' and 403 for every change and every other API",
          "[unit]") {
  access_fixture f;
  const auto wang_yl = f.world();
  const auto wang_ref = f.refer({mrn("dc-chc", "DC-0001"), resident(wang_id)});
  const auto li_ref = f.refer({resident(li_id)});
  const auto token = f.token_for(mrn("zs-tertiary", "ZS-1001"));

  const auto list = f.call(http::verb::get, "/api/v1/referrals", token);
  INFO(list.body.dump());
  REQUIRE(list.status == 200);
  CHECK(referral_ids(list.body) == std::vector<std::string>{wang_ref});
  CHECK(referral_ids(f.call(http::verb::get, "/api/v1/referrals?patient=" + wang_yl, token).body) ==
        std::vector<std::string>{wang_ref});
  CHECK(f.call(http::verb::get, "/api/v1/referrals/" + wang_ref, token).status == 200);
  CHECK(f.call(http::verb::get, "/api/v1/referrals/" + li_ref, token).status == 404);
  CHECK(f.call(http::verb::get, "/api/v1/referrals/rf-none", token).status == 404);

  SECTION("asking for someone else's list") {
    const auto li_yl = f.person_of(mrn("zs-tertiary", "ZS-2002")).enterprise_id;
    CHECK(f.call(http::verb::get, "/api/v1/referrals?patient=" + li_yl, token).status == 403);
    CHECK(f.call(http::verb::get, "/api/v1/referrals?hospital=dc-chc", token).status == 403);
    CHECK(f.call(http::verb::get, "/api/v1/referrals?role=sent", token).status == 400);
  }
  SECTION("changes and other APIs") {
    CHECK(f.call(http::verb::post, "/api/v1/referrals", token,
                 json{{"to_hospital", "zs-tertiary"}, {"identifiers", {{{"system", "urn:yilian:id:cn:resident"}, {"value", wang_id}}}}})
              .status == 403);
    for (const std::string action : {"cancel", "accept", "reject", "submit", "terminate"}) {
      CHECK(f.call(http::verb::post, "/api/v1/referrals/" + wang_ref + "/" + action, token, json::object()).status == 403);
    }
    CHECK(f.call(http::verb::get, "/api/v1/patients/" + wang_yl, token).status == 403);
    CHECK(f.call(http::verb::get, "/api/v1/patients?identifier=urn:yilian:id:cn:resident%7C" + wang_id, token).status == 403);
    CHECK(f.call(http::verb::get, "/api/v1/patient-reviews", token).status == 403);
  }
  CHECK(f.audited(wang_yl, "search", "Referral", wang_ref));
  CHECK(f.audited(wang_yl, "read", "Referral", wang_ref));
  CHECK(f.audited(wang_yl, "read", "Referral", li_ref, "not_found"));
  // The hospitals' view is unchanged.
  CHECK(referral_ids(f.as("dc-chc-user", http::verb::get, "/api/v1/referrals").body) ==
        [&] { std::vector<std::string> v{wang_ref, li_ref}; std::sort(v.begin(), v.end()); return v; }());
}

TEST_CASE("a patient token is refused once expired, under another key, or when tampered with", "[unit]") {
  access_fixture f;
  const auto wang_yl = f.world();
  auto other = api::patient_token_key::from_secret("another-key-0123456789abcdef-0123456789");
  REQUIRE(other);
  auto same = api::patient_token_key::from_secret(token_key);
  REQUIRE(same);
  const api::patient_claims expired{.enterprise_id = wang_yl, .expires_at = sys::now() - 1s, .gateway = "patient-app", .nonce = {}};
  const api::patient_claims fine{.enterprise_id = wang_yl, .expires_at = sys::now() + 60s, .gateway = "patient-app", .nonce = {}};
  const api::patient_claims stranger{.enterprise_id = wang_yl, .expires_at = sys::now() + 60s, .gateway = "dc-chc-user", .nonce = {}};
  CHECK(f.call(http::verb::get, "/api/v1/reports", same->sign(fine)).status == 200);
  CHECK(f.call(http::verb::get, "/api/v1/reports", same->sign(expired)).status == 401);
  CHECK(f.call(http::verb::get, "/api/v1/reports", other->sign(fine)).status == 401);
  CHECK(f.call(http::verb::get, "/api/v1/reports", same->sign(stranger)).status == 401);
  auto tampered = same->sign(fine);
  tampered[8] = tampered[8] == 'A' ? 'B' : 'A';
  CHECK(f.call(http::verb::get, "/api/v1/reports", tampered).status == 401);
}

TEST_CASE("without the patient-token key patient sessions answer 503 and say why; everything else serves", "[unit]") {
  access_fixture f(false);
  (void)f.world();
  const auto r = f.session(mrn("zs-tertiary", "ZS-1001"));
  INFO(r.body.dump());
  CHECK(r.status == 503);
  CHECK(r.body.dump().find("YILIAN_PATIENT_TOKEN_KEY") != std::string::npos);
  CHECK(f.as("zs-tertiary-his", http::verb::get, "/api/v1/reports").status == 200);
  CHECK(f.audited("patient-app", "create", "PatientSession", "", "unavailable"));
}

TEST_CASE("patient_tokens_from resolves the key by reference and refuses a short one", "[unit]") {
  auto cfg = consortium();
  auto* pa = cfg.consortium.mutable_patient_access();
  pa->mutable_token_key()->set_env("YILIAN_TEST_PATIENT_TOKEN_KEY_XYZ");
  pa->set_token_lifetime_seconds(300);
  ::unsetenv("YILIAN_TEST_PATIENT_TOKEN_KEY_XYZ");
  auto unset = app::patient_tokens_from(cfg);
  CHECK(!unset.key);
  CHECK(unset.unavailable.find("YILIAN_TEST_PATIENT_TOKEN_KEY_XYZ") != std::string::npos);
  ::setenv("YILIAN_TEST_PATIENT_TOKEN_KEY_XYZ", "too-short", 1);
  auto short_key = app::patient_tokens_from(cfg);
  CHECK(!short_key.key);
  CHECK(short_key.unavailable.find("too-short") == std::string::npos);
  ::setenv("YILIAN_TEST_PATIENT_TOKEN_KEY_XYZ", token_key.c_str(), 1);
  auto ok = app::patient_tokens_from(cfg);
  REQUIRE(ok.key);
  CHECK(ok.lifetime == 300s);
  ::unsetenv("YILIAN_TEST_PATIENT_TOKEN_KEY_XYZ");
}

namespace {

// The example consortium copied to a temporary directory with its
// consortium.yaml edited; the lines of its report.
std::vector<std::string> check_edited(const std::function<void(std::string&)>& edit) {
  yilian::test::temp_dir dir("yilian-patient-access-config");
  std::filesystem::copy(source_dir() / "deploy/examples/consortium", dir.path(),
                        std::filesystem::copy_options::recursive);
  const auto file = dir.path() / "consortium.yaml";
  std::string text;
  {
    std::ifstream in(file);
    std::stringstream s;
    s << in.rdbuf();
    text = s.str();
  }
  edit(text);
  {
    std::ofstream out(file, std::ios::trunc);
    out << text;
  }
  auto v = config::validate_consortium(dir.path(), config::load_options{.data_dir = dir.path() / "var"});
  std::vector<std::string> out;
  for (const auto& d : v.report.diagnostics) out.push_back(d.field + ": " + d.message);
  return out;
}

void replace(std::string& text, const std::string& from, const std::string& to) {
  const auto at = text.find(from);
  REQUIRE(at != std::string::npos);
  text.replace(at, from.size(), to);
}

bool has(const std::vector<std::string>& lines, const std::string& part) {
  return std::any_of(lines.begin(), lines.end(), [&](const std::string& l) { return l.find(part) != std::string::npos; });
}

}  // namespace

TEST_CASE("config check: a patient gateway needs the token key, no hospital, and a sane lifetime", "[unit]") {
  SECTION("the example as shipped is fine (the key is a reference; unset is not a config error)") {
    CHECK(check_edited([](std::string&) {}).empty());
  }
  SECTION("no patient_access while a gateway exists") {
    const auto lines = check_edited([](std::string& t) {
      replace(t, "patient_access:\n  token_key: {env: YILIAN_PATIENT_TOKEN_KEY}\n  token_lifetime_seconds: 900\n", "");
    });
    INFO(Catch::Detail::stringify(lines));
    CHECK(has(lines, "principals[9].role: a PATIENT_GATEWAY principal needs patient_access.token_key"));
  }
  SECTION("patient_access without its key") {
    const auto lines = check_edited([](std::string& t) { replace(t, "  token_key: {env: YILIAN_PATIENT_TOKEN_KEY}\n", ""); });
    INFO(Catch::Detail::stringify(lines));
    CHECK(has(lines, "patient_access.token_key: a PATIENT_GATEWAY principal needs patient_access.token_key"));
  }
  SECTION("a key that looks like the secret itself, a lifetime out of bounds, a gateway with a hospital") {
    const auto lines = check_edited([](std::string& t) {
      replace(t, "{env: YILIAN_PATIENT_TOKEN_KEY}", "{env: \"s3cr3t value\"}");
      replace(t, "token_lifetime_seconds: 900", "token_lifetime_seconds: 5");
      replace(t, "    role: PATIENT_GATEWAY\n", "    role: PATIENT_GATEWAY\n    hospital: dc-chc\n");
    });
    INFO(Catch::Detail::stringify(lines));
    CHECK(has(lines, "patient_access.token_key.env: not an environment variable name"));
    CHECK(!has(lines, "s3cr3t"));
    CHECK(has(lines, "patient_access.token_lifetime_seconds: 5 is outside 60 to 86400 seconds"));
    CHECK(has(lines, "principals[9].hospital: a PATIENT_GATEWAY acts for the consortium's patients"));
  }
}
