// The referral workflow's FHIR R4 facade (engine/app/referral_fhir.h)
// in-process: the real HTTP server on 127.0.0.1 port 0, a Beast client, the
// referral service on an embedded log in a temporary directory, the example
// consortium (dc-chc and nh-chc are primary clinics, zs-tertiary the tertiary
// hospital), and the audit log read back from its file.
//
// Principals: dc-chc-user (clinic user of dc-chc, the referring clinic),
// zs-tertiary-his (the tertiary hospital's system, the receiver), nh-chc-user
// (a clinic with no part in these referrals) and operator (consortium-wide).
//
// With YILIAN_FHIR_DUMP_DIR set, every resource the tests got back is also
// written there (<name>.json) for the HAPI FHIR validator
// (tests/peers/fhir/validate_referral_resources).
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <fstream>
#include <future>
#include <thread>

#include "engine/api/audit.h"
#include "engine/api/server.h"
#include "engine/app/referral_fhir.h"
#include "engine/bus/embedded_log.h"
#include "tests/support/eventually.h"
#include "tests/support/api_host.h"
#include "tests/support/audit_file.h"
#include "tests/support/fhir_support.h"
#include "tests/support/temp_dir.h"
#include "tests/unit/referral/referral_test_support.h"

using namespace yilian;
using namespace yilian::workflows::referral::test;
namespace rf = yilian::workflows::referral;
using json = nlohmann::json;
namespace http = boost::beast::http;
using yilian::test::diagnostics;
using yilian::test::dump;
using yilian::test::issue_code;
using steady = std::chrono::steady_clock;

namespace {

const std::string referral_topic = "yilian.referral.v1";

using yilian::test::eventually;

using reply = yilian::test::http_reply;

// A FHIR request: the FHIR JSON media type both ways.
yilian::test::http_request fhir(yilian::test::http_request o = {}) {
  o.accept = "application/fhir+json";
  o.content_type = "application/fhir+json";
  return o;
}

// The referral service with the FHIR routes served over HTTP.
struct fhir_fixture {
  yilian::test::temp_dir dir{"yilian-referral-fhir-test"};
  std::unique_ptr<bus::bus> log;
  std::unique_ptr<rf::service> svc;
  std::unique_ptr<api::audit_log> audit;
  yilian::test::api_host host;

  fhir_fixture() {
    auto b = bus::open_embedded_log(bus::embedded_log_options{.path = dir.file("bus/log.db"), .default_partitions = 4});
    if (!b) FAIL(b.error().describe());
    log = std::move(*b);
    const std::vector<bus::topic_spec> topics{{.name = referral_topic, .partitions = 4}};
    if (auto r = log->ensure_topics(topics); !r) FAIL(r.error().describe());
    svc = std::make_unique<rf::service>(*log, std::make_unique<rf::ledger>(consortium(), rf::options_from(consortium())),
                                        rf::service_options{.topic = referral_topic, .now = [] { return test_now; }});
    if (auto r = svc->start(); !r) FAIL(r.error().describe());
    REQUIRE(eventually([&] { return svc->caught_up(); }));
    auto a = api::audit_log::open(dir.file("audit/audit.log"), 5ms);
    if (!a) FAIL(a.error().describe());
    audit = std::move(*a);
    app::add_referral_fhir_routes(host.routes(), *svc, *audit);
    host.start({
        {.id = principal_id("dc-chc-user"), .role = api::role::clinic_user, .hospital = hospital_id("dc-chc")},
        {.id = principal_id("zs-tertiary-his"), .role = api::role::hospital_system, .hospital = hospital_id("zs-tertiary")},
        {.id = principal_id("nh-chc-user"), .role = api::role::clinic_user, .hospital = hospital_id("nh-chc")},
        {.id = principal_id("operator"), .role = api::role::operator_, .hospital = hospital_id("")}});
  }
  ~fhir_fixture() {
    host.stop();
    svc->stop();
    svc.reset();
    (void)log->flush(5s);
  }
  fhir_fixture(const fhir_fixture&) = delete;
  fhir_fixture& operator=(const fhir_fixture&) = delete;

  reply get(const std::string& target, const std::string& who) {
    return host.call(http::verb::get, target, who, fhir());
  }
  reply post(const std::string& target, const std::string& who, const json& body, const std::string& key = {}) {
    return host.call(http::verb::post, target, who, fhir({.body = body.dump(), .idempotency_key = key}));
  }
  reply put(const std::string& target, const std::string& who, const json& body, const std::string& if_match = {}) {
    return host.call(http::verb::put, target, who, fhir({.body = body.dump(), .if_match = if_match}));
  }

  // A referral's Task with a new status (and businessStatus), as a client
  // would PUT it back after reading it.
  reply move_task(const std::string& id, const std::string& who, const std::string& st, const std::string& business = {},
                  const std::function<void(json&)>& edit = {}) {
    auto t = get("/fhir/r4/Task/" + id, who).body;
    t["status"] = st;
    t.erase("businessStatus");
    if (!business.empty()) {
      t["businessStatus"] = {{"coding", json::array({{{"system", "urn:yilian:referral-business-status"}, {"code", business}}})}};
    }
    if (edit) edit(t);
    return put("/fhir/r4/Task/" + id, who, t);
  }

  // The engine's own command (a booking event turned into a referral action).
  rf::decision engine_command(rf::action act, const std::string& id, const std::function<void(ev::ReferralCommand&)>& edit) {
    ev::ReferralCommand c;
    c.set_command_id(cat("engine-", id, "-", std::to_string(static_cast<int>(act))));
    c.set_action(act);
    c.set_referral_id(id);
    c.set_actor("engine");
    c.set_engine(true);
    edit(c);
    auto cmd = rf::command_envelope(c, test_now);
    auto answer = std::make_shared<std::promise<rf::decision>>();
    auto fut = answer->get_future();
    svc->wait(c.command_id(), [answer](rf::decision d) { answer->set_value(std::move(d)); });
    svc->send(cmd, [](result<void>) {});
    REQUIRE(fut.wait_for(10s) == std::future_status::ready);
    return fut.get();
  }

  bool audited(const std::string& principal, const std::string& action, const std::string& resource,
               const std::string& id, const std::string& outcome = "ok") {
    return eventually(
        [&] { return yilian::test::audit_has(yilian::test::audit_records(audit->path()), principal, action, resource, id, outcome); });
  }
};

// dc-chc refers its patient (resident ID + dc-chc MRN, in a contained
// Patient) up to zs-tertiary for a head CT.
json a_referral(const std::string& to = "zs-tertiary", const std::string& from = "dc-chc") {
  return json{
      {"resourceType", "ServiceRequest"},
      {"contained",
       json::array({{{"resourceType", "Patient"},
                     {"id", "p1"},
                     {"identifier", json::array({{{"system", "urn:yilian:id:cn:resident"}, {"value", "110101196005010011"}},
                                                 {{"system", "urn:yilian:id:dc-chc:mrn"}, {"value", "DC-0001"}}})},
                     {"name", json::array({{{"text", "王建国"}, {"family", "王"}, {"given", json::array({"建国"})}}})},
                     {"gender", "male"},
                     {"birthDate", "1960-05-01"}},
                    {{"resourceType", "Condition"},
                     {"id", "d1"},
                     {"code", {{"coding", json::array({{{"system", "http://hl7.org/fhir/sid/icd-10"},
                                                         {"code", "I20.0"},
                                                         {"display", "Unstable angina"}}})}}},
                     {"subject", {{"reference", "#p1"}}}}})},
      {"status", "active"},
      {"intent", "order"},
      {"priority", "urgent"},
      {"code", {{"coding", json::array({{{"system", "urn:yilian:catalogue:exam"}, {"code", "CT-HEAD-PLAIN"}, {"display", "头颅CT平扫"}}})}}},
      {"subject", {{"reference", "#p1"}}},
      {"requester", {{"reference", "Organization/" + from}}},
      {"performer", json::array({{{"reference", "Organization/" + to}}})},
      {"reasonCode", json::array({{{"coding", json::array({{{"system", "urn:yilian:referral-reason"}, {"code", "DX"}}})},
                                   {"text", "chest pain, suspected ACS"}}})},
      {"reasonReference", json::array({{{"reference", "#d1"}}})},
      {"note", json::array({{{"text", "ECG: ST depression V4-V6"}}})}};
}

// A referral created through FHIR by dc-chc; its id.
std::string create_referral(fhir_fixture& f, const json& sr = a_referral(), const std::string& who = "dc-chc-user") {
  const auto r = f.post("/fhir/r4/ServiceRequest", who, sr);
  INFO(r.body.dump());
  REQUIRE(r.status == 201);
  return r.body["id"];
}

}  // namespace

TEST_CASE("a clinic creates a referral as a ServiceRequest, reads it back as ServiceRequest and Task, and the receiver "
          "accepts it by PUT Task",
          "[unit]") {
  fhir_fixture f;
  const auto created = f.post("/fhir/r4/ServiceRequest", "dc-chc-user", a_referral(), "sr-key-1");
  INFO(created.body.dump(2));
  REQUIRE(created.status == 201);
  const std::string id = created.body["id"];
  CHECK(id.starts_with("ref-"));
  CHECK(created.location == "http://127.0.0.1/fhir/r4/ServiceRequest/" + id + "/_history/1");
  CHECK(created.etag == "W/\"1\"");
  CHECK(created.content_type.starts_with("application/fhir+json"));
  dump("service-request-created", created.body);

  // The same Idempotency-Key gets the same referral, not a second one.
  const auto again = f.post("/fhir/r4/ServiceRequest", "dc-chc-user", a_referral(), "sr-key-1");
  CHECK(again.status == 201);
  CHECK(again.body["id"] == id);

  const auto sr = f.get("/fhir/r4/ServiceRequest/" + id, "dc-chc-user");
  INFO(sr.body.dump(2));
  REQUIRE(sr.status == 200);
  CHECK(sr.etag == "W/\"1\"");
  const auto& s = sr.body;
  CHECK(s["resourceType"] == "ServiceRequest");
  CHECK(s["status"] == "active");
  CHECK(s["intent"] == "order");
  CHECK(s["priority"] == "urgent");
  CHECK(s["meta"]["versionId"] == "1");
  CHECK(s["identifier"][0] == json{{"system", "urn:yilian:referral"}, {"value", id}});
  CHECK(s["requester"]["reference"] == "Organization/dc-chc");
  CHECK(s["performer"][0]["reference"] == "Organization/zs-tertiary");
  CHECK(s["category"][0]["coding"][0]["system"] == "urn:yilian:referral-direction");
  CHECK(s["category"][0]["coding"][0]["code"] == "UP");  // from the hospitals' tiers
  CHECK(s["code"]["coding"][0]["code"] == "CT-HEAD-PLAIN");
  CHECK(s["reasonCode"][0]["text"] == "chest pain, suspected ACS");
  CHECK(s["reasonCode"][0]["coding"][0]["code"] == "DX");
  CHECK(s["note"][0]["text"] == "ECG: ST depression V4-V6");
  CHECK(s["authoredOn"] == "2025-09-29T09:00:00+08:00");
  CHECK(s["occurrencePeriod"]["end"] == "2025-10-02T09:00:00+08:00");  // answer within 72 h
  CHECK(!s.contains("basedOn"));
  REQUIRE(s["subject"]["reference"] == "#patient");
  const auto& patient = s["contained"][0];
  CHECK(patient["resourceType"] == "Patient");
  CHECK(patient["id"] == "patient");
  REQUIRE(patient["identifier"].size() == 2);
  CHECK(patient["identifier"][0]["system"] == "urn:yilian:id:cn:resident");
  CHECK(patient["identifier"][0]["type"]["coding"][0]["code"] == "RESIDENT_ID");  // from the profiles
  CHECK(patient["identifier"][1]["type"]["coding"][0]["code"] == "MR");
  CHECK(patient["name"][0]["text"] == "王建国");
  CHECK(patient["birthDate"] == "1960-05-01");
  CHECK(patient["gender"] == "male");
  const auto& dx = s["contained"][1];
  CHECK(dx["resourceType"] == "Condition");
  CHECK(dx["code"]["coding"][0]["code"] == "I20.0");
  CHECK(s["reasonReference"][0]["reference"] == "#" + dx["id"].get<std::string>());

  const auto task = f.get("/fhir/r4/Task/" + id, "zs-tertiary-his");
  INFO(task.body.dump(2));
  REQUIRE(task.status == 200);
  const auto& t = task.body;
  CHECK(t["resourceType"] == "Task");
  CHECK(t["id"] == id);
  CHECK(t["status"] == "requested");
  CHECK(!t.contains("businessStatus"));
  CHECK(t["intent"] == "order");
  CHECK(t["focus"]["reference"] == "ServiceRequest/" + id);
  CHECK(t["for"]["identifier"]["value"] == "110101196005010011");
  CHECK(t["requester"]["reference"] == "Organization/dc-chc");
  CHECK(t["owner"]["reference"] == "Organization/zs-tertiary");
  CHECK(t["restriction"]["period"]["end"] == "2025-10-02T09:00:00+08:00");
  dump("task-requested", t);

  // The receiver acknowledges, then accepts with its own id; a stale
  // If-Match is refused before anything is sent.
  const auto received = f.move_task(id, "zs-tertiary-his", "received");
  INFO(received.body.dump(2));
  REQUIRE(received.status == 200);
  CHECK(received.body["status"] == "received");
  CHECK(received.etag == "W/\"2\"");
  CHECK(received.location == "http://127.0.0.1/fhir/r4/Task/" + id + "/_history/2");

  auto accept = f.get("/fhir/r4/Task/" + id, "zs-tertiary-his").body;
  accept["status"] = "accepted";
  accept["identifier"].push_back({{"system", "urn:yilian:referral-external"}, {"value", "ZS-R-778"}});
  const auto stale = f.put("/fhir/r4/Task/" + id, "zs-tertiary-his", accept, "W/\"1\"");
  CHECK(stale.status == 412);
  CHECK(issue_code(stale) == "conflict");
  const auto accepted = f.put("/fhir/r4/Task/" + id, "zs-tertiary-his", accept, "W/\"2\"");
  INFO(accepted.body.dump(2));
  REQUIRE(accepted.status == 200);
  CHECK(accepted.body["status"] == "accepted");
  CHECK(accepted.etag == "W/\"3\"");
  CHECK(accepted.body["identifier"][1]["value"] == "ZS-R-778");
  CHECK(accepted.body["restriction"]["period"]["end"] == "2025-10-29T09:00:00+08:00");  // to be scheduled within 30 days
  dump("task-accepted", accepted.body);

  // The clinic sees the same Task; the ServiceRequest is still active.
  CHECK(f.get("/fhir/r4/Task/" + id, "dc-chc-user").body["status"] == "accepted");
  CHECK(f.get("/fhir/r4/ServiceRequest/" + id, "dc-chc-user").body["status"] == "active");
  // vread of the current version; earlier ones are not kept.
  CHECK(f.get("/fhir/r4/Task/" + id + "/_history/3", "dc-chc-user").status == 200);
  CHECK(f.get("/fhir/r4/Task/" + id + "/_history/1", "dc-chc-user").status == 404);
  // PUT of the Task as it is changes nothing.
  const auto same = f.move_task(id, "zs-tertiary-his", "accepted");
  CHECK(same.status == 200);
  CHECK(same.etag == "W/\"3\"");

  CHECK(f.audited("dc-chc-user", "create", "ServiceRequest", id));
  CHECK(f.audited("dc-chc-user", "read", "ServiceRequest", id));
  CHECK(f.audited("zs-tertiary-his", "read", "Task", id));
  CHECK(f.audited("zs-tertiary-his", "update", "Task", id));
  CHECK(f.audited("zs-tertiary-his", "update", "Task", id, "version_mismatch"));
  // Ids only: the patient's name and ID number never reach the audit log.
  const std::string log = [&] {
    std::ifstream in(f.audit->path());
    return std::string(std::istreambuf_iterator<char>(in), {});
  }();
  CHECK(log.find("110101196005010011") == std::string::npos);
  CHECK(log.find("王建国") == std::string::npos);
}

TEST_CASE("the workflow's refusals come back as OperationOutcomes: a clinic cannot accept, a rejection needs a reason",
          "[unit]") {
  fhir_fixture f;
  const std::string id = create_referral(f);

  // The referring clinic is not the receiver.
  const auto by_clinic = f.move_task(id, "dc-chc-user", "accepted");
  INFO(by_clinic.body.dump(2));
  CHECK(by_clinic.status == 403);
  CHECK(by_clinic.content_type.starts_with("application/fhir+json"));
  CHECK(issue_code(by_clinic) == "forbidden");
  CHECK(diagnostics(by_clinic).find("receiver") != std::string::npos);
  CHECK(f.audited("dc-chc-user", "update", "Task", id, "not_allowed"));
  dump("operation-outcome-not-allowed", by_clinic.body);

  // No statusReason: refused by the workflow (reason_required).
  const auto no_reason = f.move_task(id, "zs-tertiary-his", "rejected");
  INFO(no_reason.body.dump(2));
  CHECK(no_reason.status == 422);
  CHECK(issue_code(no_reason) == "invariant");
  CHECK(diagnostics(no_reason).find("says why") != std::string::npos);
  CHECK(f.get("/fhir/r4/Task/" + id, "zs-tertiary-his").body["status"] == "requested");

  // Task.status values that are no referral action.
  const auto ready = f.move_task(id, "zs-tertiary-his", "ready");
  CHECK(ready.status == 422);
  CHECK(issue_code(ready) == "not-supported");
  const auto vague = f.move_task(id, "zs-tertiary-his", "in-progress");
  CHECK(vague.status == 422);

  const auto rejected = f.move_task(id, "zs-tertiary-his", "rejected", "", [](json& t) {
    t["statusReason"] = {{"coding", json::array({{{"system", "urn:yilian:reject-reason"}, {"code", "NO-CAPACITY"}}})},
                         {"text", "no cardiology beds this week"}};
  });
  INFO(rejected.body.dump(2));
  REQUIRE(rejected.status == 200);
  CHECK(rejected.body["status"] == "rejected");
  CHECK(rejected.body["statusReason"]["text"] == "no cardiology beds this week");
  CHECK(!rejected.body.contains("restriction"));
  dump("task-rejected", rejected.body);
  CHECK(f.get("/fhir/r4/ServiceRequest/" + id, "dc-chc-user").body["status"] == "revoked");

  // A rejected referral cannot be accepted any more: the table has no row.
  const auto late = f.move_task(id, "zs-tertiary-his", "accepted");
  CHECK(late.status == 409);
  CHECK(issue_code(late) == "conflict");
  CHECK(diagnostics(late).find("REJECTED") != std::string::npos);

  // Malformed bodies say where.
  const auto wrong_id = f.put("/fhir/r4/Task/" + id, "zs-tertiary-his", json{{"resourceType", "Task"}, {"id", "other"}, {"status", "accepted"}});
  CHECK(wrong_id.status == 400);
  const auto not_json = f.host.call(http::verb::put, "/fhir/r4/Task/" + id, "zs-tertiary-his", fhir({.body = "{"}));
  CHECK(not_json.status == 400);
  CHECK(issue_code(not_json) == "structure");
}

TEST_CASE("a hospital that takes no part in a referral gets 404 for it and finds nothing in searches", "[unit]") {
  fhir_fixture f;
  const std::string id = create_referral(f);

  for (const std::string type : {"ServiceRequest", "Task"}) {
    const auto r = f.get("/fhir/r4/" + type + "/" + id, "nh-chc-user");
    CHECK(r.status == 404);
    CHECK(issue_code(r) == "not-found");
    CHECK(f.audited("nh-chc-user", "read", type, id, "not_found"));
    const auto found = f.get("/fhir/r4/" + type + "?patient:identifier=urn:yilian:id:cn:resident%7C110101196005010011", "nh-chc-user");
    REQUIRE(found.status == 200);
    CHECK(found.body["resourceType"] == "Bundle");
    CHECK(found.body["type"] == "searchset");
    CHECK(found.body["total"] == 0);
    CHECK(found.body["entry"].empty());
    CHECK(f.get("/fhir/r4/" + type, "nh-chc-user").body["total"] == 0);
    CHECK(f.audited("nh-chc-user", "search", type, ""));
  }
  const auto put = f.put("/fhir/r4/Task/" + id, "nh-chc-user", json{{"resourceType", "Task"}, {"id", id}, {"status", "accepted"}});
  CHECK(put.status == 404);
  CHECK(f.audited("nh-chc-user", "update", "Task", id, "not_found"));
  auto sr = f.get("/fhir/r4/ServiceRequest/" + id, "dc-chc-user").body;
  sr["status"] = "revoked";
  CHECK(f.put("/fhir/r4/ServiceRequest/" + id, "nh-chc-user", sr).status == 404);

  // The parties and operators find it by patient, side and status.
  for (const std::string who : {"dc-chc-user", "zs-tertiary-his", "operator"}) {
    const auto found = f.get("/fhir/r4/ServiceRequest?patient:identifier=urn:yilian:id:cn:resident%7C110101196005010011&status=active", who);
    INFO(who << " " << found.body.dump(2));
    REQUIRE(found.status == 200);
    CHECK(found.body["total"] == 1);
    REQUIRE(found.body["entry"].size() == 1);
    CHECK(found.body["entry"][0]["fullUrl"] == "http://127.0.0.1/fhir/r4/ServiceRequest/" + id);
    CHECK(found.body["entry"][0]["resource"]["id"] == id);
  }
  const auto bundle = f.get("/fhir/r4/ServiceRequest?requester=Organization/dc-chc&performer=Organization/zs-tertiary", "dc-chc-user");
  CHECK(bundle.body["total"] == 1);
  CHECK(bundle.body["link"][0]["relation"] == "self");
  CHECK(bundle.body["link"][0]["url"] ==
        "http://127.0.0.1/fhir/r4/ServiceRequest?requester=Organization/dc-chc&performer=Organization/zs-tertiary");
  dump("bundle-service-requests", bundle.body);
  CHECK(f.get("/fhir/r4/ServiceRequest?performer=Organization/dc-chc", "dc-chc-user").body["total"] == 0);
  CHECK(f.get("/fhir/r4/ServiceRequest?subject:identifier=DC-0001", "dc-chc-user").body["total"] == 1);
  CHECK(f.get("/fhir/r4/ServiceRequest?status=draft,active", "dc-chc-user").body["total"] == 1);
  CHECK(f.get("/fhir/r4/ServiceRequest?status=revoked", "dc-chc-user").body["total"] == 0);
  CHECK(f.get("/fhir/r4/ServiceRequest?category=UP", "dc-chc-user").body["total"] == 1);
  const auto tasks = f.get("/fhir/r4/Task?owner=Organization/zs-tertiary&status=requested", "zs-tertiary-his");
  CHECK(tasks.body["total"] == 1);
  dump("bundle-tasks", tasks.body);
  CHECK(f.get("/fhir/r4/Task?focus=ServiceRequest/" + id, "dc-chc-user").body["total"] == 1);
  CHECK(f.get("/fhir/r4/Task?requester=Organization/zs-tertiary", "zs-tertiary-his").body["total"] == 0);
  CHECK(f.audited("dc-chc-user", "search", "ServiceRequest", id));
  // An unknown parameter is an error, not a silently wider search.
  const auto unknown = f.get("/fhir/r4/Task?patient.identifier=x", "dc-chc-user");
  CHECK(unknown.status == 400);
  CHECK(diagnostics(unknown).find("patient.identifier") != std::string::npos);
}

TEST_CASE("the initiator sends a draft, changes it and cancels it through the ServiceRequest", "[unit]") {
  fhir_fixture f;
  auto draft = a_referral();
  draft["status"] = "draft";
  const std::string id = create_referral(f, draft);
  CHECK(f.get("/fhir/r4/Task/" + id, "dc-chc-user").body["status"] == "draft");

  auto sr = f.get("/fhir/r4/ServiceRequest/" + id, "dc-chc-user").body;
  CHECK(sr["status"] == "draft");
  // Reading it back and PUTting it unchanged is no change.
  const auto same = f.put("/fhir/r4/ServiceRequest/" + id, "dc-chc-user", sr, "W/\"1\"");
  CHECK(same.status == 200);
  CHECK(same.etag == "W/\"1\"");

  sr["status"] = "active";
  const auto sent = f.put("/fhir/r4/ServiceRequest/" + id, "dc-chc-user", sr, "W/\"1\"");
  INFO(sent.body.dump(2));
  REQUIRE(sent.status == 200);
  CHECK(sent.body["status"] == "active");
  CHECK(f.get("/fhir/r4/Task/" + id, "dc-chc-user").body["status"] == "requested");

  // New details with the status kept: a modification (the receiver sees them).
  sr = sent.body;
  sr["note"] = json::array({{{"text", "ECG: ST depression V4-V6; troponin rising"}}});
  sr["priority"] = "asap";
  const auto modified = f.put("/fhir/r4/ServiceRequest/" + id, "dc-chc-user", sr);
  INFO(modified.body.dump(2));
  REQUIRE(modified.status == 200);
  CHECK(modified.etag == "W/\"3\"");
  const auto seen = f.get("/fhir/r4/ServiceRequest/" + id, "zs-tertiary-his").body;
  CHECK(seen["note"][0]["text"] == "ECG: ST depression V4-V6; troponin rising");
  CHECK(seen["priority"] == "asap");
  CHECK(seen["contained"][0]["identifier"].size() == 2);

  // Progress is the Task's, and who it goes to does not change.
  sr = modified.body;
  sr["status"] = "completed";
  const auto completed = f.put("/fhir/r4/ServiceRequest/" + id, "dc-chc-user", sr);
  CHECK(completed.status == 422);
  CHECK(diagnostics(completed).find("PUT /fhir/r4/Task/" + id) != std::string::npos);
  sr = modified.body;
  sr["performer"][0]["reference"] = "Organization/qh-county";
  CHECK(f.put("/fhir/r4/ServiceRequest/" + id, "dc-chc-user", sr).status == 422);

  // Only the initiator cancels.
  sr = modified.body;
  sr["status"] = "revoked";
  const auto by_receiver = f.put("/fhir/r4/ServiceRequest/" + id, "zs-tertiary-his", sr);
  CHECK(by_receiver.status == 403);
  CHECK(issue_code(by_receiver) == "forbidden");
  const auto revoked = f.put("/fhir/r4/ServiceRequest/" + id, "dc-chc-user", sr);
  INFO(revoked.body.dump(2));
  REQUIRE(revoked.status == 200);
  CHECK(revoked.body["status"] == "revoked");
  const auto task = f.get("/fhir/r4/Task/" + id, "zs-tertiary-his").body;
  CHECK(task["status"] == "cancelled");
  dump("task-cancelled", task);
  dump("service-request-revoked", revoked.body);
  // Revoking it again changes nothing.
  CHECK(f.put("/fhir/r4/ServiceRequest/" + id, "dc-chc-user", sr).status == 200);
  CHECK(f.audited("dc-chc-user", "update", "ServiceRequest", id));
  CHECK(f.audited("zs-tertiary-his", "update", "ServiceRequest", id, "not_allowed"));
}

TEST_CASE("a clinic cannot send a referral as another hospital, and a referral names its patient by identifiers", "[unit]") {
  fhir_fixture f;
  const auto as_other = f.post("/fhir/r4/ServiceRequest", "nh-chc-user", a_referral());
  CHECK(as_other.status == 403);
  CHECK(issue_code(as_other) == "forbidden");

  auto anonymous = a_referral();
  anonymous["subject"] = {{"reference", "Patient/123"}};
  const auto no_id = f.post("/fhir/r4/ServiceRequest", "dc-chc-user", anonymous);
  CHECK(no_id.status == 400);
  CHECK(no_id.body["issue"][0]["expression"][0] == "ServiceRequest.subject");

  // A Patient reference with an identifier and a display is enough.
  auto by_reference = a_referral();
  by_reference.erase("contained");
  by_reference.erase("reasonReference");
  by_reference["subject"] = {{"reference", "Patient/123"},
                             {"identifier", {{"system", "urn:yilian:id:dc-chc:mrn"}, {"value", "DC-0002"}}},
                             {"display", "李梅"}};
  const std::string id = create_referral(f, by_reference);
  const auto sr = f.get("/fhir/r4/ServiceRequest/" + id, "zs-tertiary-his").body;
  CHECK(sr["contained"][0]["identifier"][0]["value"] == "DC-0002");
  CHECK(sr["contained"][0]["name"][0]["text"] == "李梅");

  auto to_self = a_referral("dc-chc");
  const auto self = f.post("/fhir/r4/ServiceRequest", "dc-chc-user", to_self);
  CHECK(self.status == 422);
  auto plan = a_referral();
  plan["intent"] = "plan";
  CHECK(f.post("/fhir/r4/ServiceRequest", "dc-chc-user", plan).status == 400);
}

TEST_CASE("a downward referral follows the upward one through basedOn, and its Task is partOf the first", "[unit]") {
  fhir_fixture f;
  const std::string up = create_referral(f);
  REQUIRE(f.move_task(up, "zs-tertiary-his", "accepted").status == 200);

  auto down = a_referral("dc-chc", "zs-tertiary");
  down["basedOn"] = json::array({{{"reference", "ServiceRequest/" + up}}});
  down["code"] = {{"coding", json::array({{{"system", "urn:yilian:referral-service"}, {"code", "FOLLOW-UP"}, {"display", "社区随访"}}})}};
  down["note"] = json::array({{{"text", "PCI done; statins, follow-up in 4 weeks"}}});
  down["priority"] = "routine";
  const std::string id = create_referral(f, down, "zs-tertiary-his");
  CHECK(id != up);

  const auto sr = f.get("/fhir/r4/ServiceRequest/" + id, "dc-chc-user");
  INFO(sr.body.dump(2));
  REQUIRE(sr.status == 200);
  CHECK(sr.body["basedOn"][0]["reference"] == "ServiceRequest/" + up);
  CHECK(sr.body["category"][0]["coding"][0]["code"] == "DOWN");
  CHECK(sr.body["requester"]["reference"] == "Organization/zs-tertiary");
  CHECK(sr.body["performer"][0]["reference"] == "Organization/dc-chc");
  dump("service-request-downward", sr.body);
  const auto task = f.get("/fhir/r4/Task/" + id, "dc-chc-user");
  CHECK(task.body["partOf"][0]["reference"] == "Task/" + up);
  CHECK(task.body["owner"]["reference"] == "Organization/dc-chc");
  dump("task-downward", task.body);

  const auto following = f.get("/fhir/r4/ServiceRequest?based-on=ServiceRequest/" + up, "dc-chc-user");
  REQUIRE(following.body["total"] == 1);
  CHECK(following.body["entry"][0]["resource"]["id"] == id);
  CHECK(f.get("/fhir/r4/Task?part-of=Task/" + up, "zs-tertiary-his").body["total"] == 1);
  // Now the clinic is the receiver of the downward one.
  CHECK(f.move_task(id, "dc-chc-user", "accepted").status == 200);

  // basedOn a referral that does not exist, or one the sender took no part in.
  auto unknown = down;
  unknown["basedOn"][0]["reference"] = "ServiceRequest/ref-none";
  const auto none = f.post("/fhir/r4/ServiceRequest", "zs-tertiary-his", unknown);
  CHECK(none.status == 422);
  CHECK(diagnostics(none).find("ref-none") != std::string::npos);
  auto foreign = a_referral("zs-tertiary", "nh-chc");
  foreign["basedOn"] = json::array({{{"reference", "ServiceRequest/" + up}}});
  CHECK(f.post("/fhir/r4/ServiceRequest", "nh-chc-user", foreign).status == 403);
}

TEST_CASE("a booking-driven schedule shows as Task businessStatus, and the receiver reports the visit and the report "
          "back",
          "[unit]") {
  fhir_fixture f;
  const std::string id = create_referral(f);
  REQUIRE(f.move_task(id, "zs-tertiary-his", "accepted").status == 200);

  // The booking workflow's event, as the referral feed sends it: the engine schedules.
  const auto start = sh(2025, 10, 1, 8, 30);
  const auto d = f.engine_command(ev::REFERRAL_ACTION_SCHEDULE, id, [&](ev::ReferralCommand& c) {
    c.set_booking_id("bk-0001");
    c.set_appointment_id("bk-0001");
    *c.mutable_appointment_start() = workflows::to_timestamp(start);
  });
  REQUIRE(!d.refused);
  const auto scheduled = f.get("/fhir/r4/Task/" + id, "dc-chc-user");
  INFO(scheduled.body.dump(2));
  REQUIRE(scheduled.status == 200);
  const auto& t = scheduled.body;
  CHECK(t["status"] == "in-progress");
  CHECK(t["businessStatus"]["coding"][0]["system"] == "urn:yilian:referral-business-status");
  CHECK(t["businessStatus"]["coding"][0]["code"] == "scheduled");
  CHECK(t["executionPeriod"]["start"] == "2025-10-01T08:30:00+08:00");
  REQUIRE(t["output"].size() == 1);
  CHECK(t["output"][0]["valueReference"]["reference"] == "Appointment/bk-0001");
  CHECK(!t.contains("restriction"));
  dump("task-scheduled", t);
  CHECK(f.get("/fhir/r4/Task?business-status=scheduled", "dc-chc-user").body["total"] == 1);
  CHECK(f.get("/fhir/r4/Task?business-status=urn:yilian:referral-business-status%7Carrived", "dc-chc-user").body["total"] == 0);

  // The referring clinic cannot report the patient's arrival; the receiver can.
  CHECK(f.move_task(id, "dc-chc-user", "in-progress", "arrived").status == 403);
  const auto arrived = f.move_task(id, "zs-tertiary-his", "in-progress", "arrived",
                                   [](json& task) { task["encounter"] = {{"identifier", {{"value", "V-20251001-17"}}}}; });
  INFO(arrived.body.dump(2));
  REQUIRE(arrived.status == 200);
  CHECK(arrived.body["businessStatus"]["coding"][0]["code"] == "arrived");
  CHECK(arrived.body["encounter"]["identifier"]["value"] == "V-20251001-17");
  const auto completed = f.move_task(id, "zs-tertiary-his", "completed");
  REQUIRE(completed.status == 200);
  CHECK(completed.body["businessStatus"]["coding"][0]["code"] == "completed");
  CHECK(f.get("/fhir/r4/ServiceRequest/" + id, "dc-chc-user").body["status"] == "completed");

  const auto returned = f.move_task(id, "zs-tertiary-his", "completed", "report-returned", [](json& task) {
    task["output"].push_back({{"type", {{"text", "report"}}},
                              {"valueReference", {{"type", "DiagnosticReport"}, {"identifier", {{"value", "RPT-9001"}}}}}});
  });
  INFO(returned.body.dump(2));
  REQUIRE(returned.status == 200);
  CHECK(returned.body["status"] == "completed");
  CHECK(returned.body["businessStatus"]["coding"][0]["code"] == "report-returned");
  REQUIRE(returned.body["output"].size() == 2);
  CHECK(returned.body["output"][1]["valueReference"]["type"] == "DiagnosticReport");
  CHECK(returned.body["output"][1]["valueReference"]["identifier"]["value"] == "RPT-9001");
  dump("task-report-returned", returned.body);
  dump("service-request-completed", f.get("/fhir/r4/ServiceRequest/" + id, "dc-chc-user").body);
  // The same again is no change; a corrected report is returned again.
  CHECK(f.move_task(id, "zs-tertiary-his", "completed", "report-returned").etag == returned.etag);
  const auto corrected = f.move_task(id, "zs-tertiary-his", "completed", "report-returned", [](json& task) {
    task["output"].push_back({{"type", {{"text", "report"}}}, {"valueReference", {{"reference", "DiagnosticReport/RPT-9002"}}}});
  });
  REQUIRE(corrected.status == 200);
  CHECK(corrected.body["output"].size() == 3);
  CHECK(f.get("/fhir/r4/Task?business-status=report-returned&owner=zs-tertiary", "dc-chc-user").body["total"] == 1);
}

TEST_CASE("a scheduled patient who does not come fails the Task with businessStatus no-show", "[unit]") {
  fhir_fixture f;
  const std::string id = create_referral(f);
  REQUIRE(f.move_task(id, "zs-tertiary-his", "accepted").status == 200);
  const auto scheduled = f.move_task(id, "zs-tertiary-his", "in-progress", "scheduled", [](json& task) {
    task["output"] = json::array({{{"type", {{"text", "appointment"}}}, {"valueReference", {{"reference", "Appointment/bk-0002"}}}}});
    task["executionPeriod"] = {{"start", "2025-10-02T09:00:00+08:00"}};
  });
  INFO(scheduled.body.dump(2));
  REQUIRE(scheduled.status == 200);
  CHECK(scheduled.body["output"][0]["valueReference"]["reference"] == "Appointment/bk-0002");
  // A new start reschedules (SCHEDULED -> SCHEDULED).
  const auto moved = f.move_task(id, "zs-tertiary-his", "in-progress", "scheduled",
                                 [](json& task) { task["executionPeriod"]["start"] = "2025-10-03T09:00:00+08:00"; });
  REQUIRE(moved.status == 200);
  CHECK(moved.etag == "W/\"4\"");
  CHECK(moved.body["executionPeriod"]["start"] == "2025-10-03T09:00:00+08:00");
  CHECK(f.move_task(id, "zs-tertiary-his", "failed").status == 422);
  const auto no_show = f.move_task(id, "zs-tertiary-his", "failed", "no-show");
  INFO(no_show.body.dump(2));
  REQUIRE(no_show.status == 200);
  CHECK(no_show.body["status"] == "failed");
  CHECK(no_show.body["businessStatus"]["coding"][0]["code"] == "no-show");
  dump("task-no-show", no_show.body);
  CHECK(f.get("/fhir/r4/ServiceRequest/" + id, "dc-chc-user").body["status"] == "revoked");
}
