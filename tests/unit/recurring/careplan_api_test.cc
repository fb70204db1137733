// The care-plan REST endpoints (engine/app/careplan_api.h) in-process: the
// real HTTP server on 127.0.0.1 port 0, a Beast client, the scheduler and the
// booking service on an embedded log in a temporary directory, the example
// consortium, a stepped clock, and the audit log read back from its file.
//
// Principals: dc-chc-user (clinic user of dc-chc), dc-chc-his (its HIS),
// nh-chc-user (another clinic), zs-tertiary-his (the tertiary hospital, which
// performs the exams but owns no plan) and operator (consortium-wide).
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "engine/api/audit.h"
#include "engine/api/server.h"
#include "engine/app/careplan_api.h"
#include "tests/support/api_host.h"
#include "tests/support/audit_file.h"
#include "tests/unit/recurring/careplan_test_support.h"

using namespace yilian;
using namespace yilian::workflows;
using namespace yilian::workflows::recurring::test;
using booking::test::sh;
using json = nlohmann::json;
namespace http = boost::beast::http;

namespace {

using reply = yilian::test::http_reply;

// The engine with the care-plan routes served over HTTP.
struct api_fixture {
  temp_dir dir;
  test_clock clock{sh(2025, 10, 9, 7)};
  std::unique_ptr<engine> e;
  std::unique_ptr<api::audit_log> audit;
  yilian::test::api_host host;

  api_fixture() {
    e = start_engine(dir, clock);
    auto a = api::audit_log::open(dir.file("audit/audit.log"), 5ms);
    if (!a) FAIL(a.error().describe());
    audit = std::move(*a);
    app::add_careplan_routes(host.routes(), *e->plans, *e->bookings, *e->bus, *audit);
    host.start({
        {.id = principal_id("dc-chc-user"), .role = api::role::clinic_user, .hospital = hospital_id("dc-chc")},
        {.id = principal_id("dc-chc-his"), .role = api::role::hospital_system, .hospital = hospital_id("dc-chc")},
        {.id = principal_id("nh-chc-user"), .role = api::role::clinic_user, .hospital = hospital_id("nh-chc")},
        {.id = principal_id("zs-tertiary-his"), .role = api::role::hospital_system, .hospital = hospital_id("zs-tertiary")},
        {.id = principal_id("operator"), .role = api::role::operator_, .hospital = hospital_id("")}});
  }
  ~api_fixture() {
    host.stop();
    e->stop();
  }
  reply get(const std::string& target, const std::string& who) {
    return host.call(http::verb::get, target, who);
  }
  reply post(const std::string& target, const std::string& who, const json& body = nullptr,
             const std::string& key = {}) {
    return host.call(http::verb::post, target, who,
                     {.body = body.is_null() ? std::string() : body.dump(), .idempotency_key = key});
  }
  // Whether the audit log has this principal's action on a care plan.
  bool audited(const std::string& principal, const std::string& action, const std::string& id,
               const std::string& outcome = "ok") {
    return yilian::test::audit_has(yilian::test::audit_records(audit->path()), principal, action, "CarePlan", id, outcome);
  }
};

json a_plan() {
  return json{{"patient", {{"name", {{"hanzi", "王建国"}}}, {"birth_date", "1956-04-12"}, {"sex", "SEX_MALE"}}},
              {"identifiers", {{{"system", "urn:yilian:id:dc-chc:mrn"}, {"value", "DC0042"}}}},
              {"exam_code", "CT-CHEST-PLAIN"},
              {"interval", "monthly"},
              {"starts_at", "2025-10-15"},
              {"until", "2026-03-15"},
              {"lead_days", 7},
              {"preferred_tier", "TERTIARY"},
              {"preferred_hospital", "zs-tertiary"}};
}

}  // namespace

TEST_CASE("a clinic creates a care plan, its first exam is booked at once, and it reads the plan back", "[unit]") {
  api_fixture f;
  const auto created = f.post("/api/v1/care-plans", "dc-chc-user", a_plan());
  INFO(created.body.dump());
  REQUIRE(created.status == 201);
  const std::string id = created.body["id"];
  CHECK(id.starts_with("cp-"));
  CHECK(created.location == "/api/v1/care-plans/" + id);
  CHECK(created.body["status"] == "ACTIVE");
  CHECK(created.body["clinic_hospital"] == "dc-chc");
  CHECK(created.body["interval"] == "monthly");
  CHECK(created.body["starts_at"] == "2025-10-15");
  CHECK(created.body["until"] == "2026-03-15");
  CHECK(created.body["periods"] == 6);
  CHECK(created.body["preferred_tier"] == "TERTIARY");
  CHECK(created.body["patient"]["name"]["hanzi"] == "王建国");
  CHECK(created.body["identifiers"][0]["value"] == "DC0042");
  CHECK(created.body["created_by"] == "dc-chc-user");

  // Period 0 was due on 8 October: the create pokes the scheduler.
  json plan;
  REQUIRE(eventually([&] {
    plan = f.get("/api/v1/care-plans/" + id, "dc-chc-user").body;
    return plan["occurrences"].size() == 1;
  }));
  const auto& o = plan["occurrences"][0];
  CHECK(o["period"] == 0);
  CHECK(o["period_start"] == "2025-10-15");
  CHECK(o["equipment_id"] == "zs-ct-1");
  CHECK(o["start"] == "2025-10-15T08:00:00+08:00");
  CHECK(o["booking_state"] == "BOOKED");
  CHECK(o["failure"].is_null());
  CHECK(plan["booked"] == 1);
  CHECK(plan["next_period"]["period"] == 1);
  CHECK(plan["next_period"]["date"] == "2025-11-15");

  // The clinic's HIS sees it too, and so do operators.
  CHECK(f.get("/api/v1/care-plans/" + id, "dc-chc-his").status == 200);
  CHECK(f.get("/api/v1/care-plans/" + id, "operator").status == 200);
  const auto listed = f.get("/api/v1/care-plans", "dc-chc-user");
  REQUIRE(listed.status == 200);
  REQUIRE(listed.body["care_plans"].size() == 1);
  CHECK(listed.body["care_plans"][0]["id"] == id);
  CHECK_FALSE(listed.body["care_plans"][0].contains("occurrences"));
  CHECK(f.get("/api/v1/care-plans?status=CANCELLED", "dc-chc-user").body["care_plans"].empty());

  REQUIRE(eventually([&] {
    return f.audited("dc-chc-user", "create", id) && f.audited("dc-chc-user", "read", id) &&
           f.audited("dc-chc-user", "search", id) && f.audited("operator", "read", id);
  }));
}

TEST_CASE("a repeated create with the same Idempotency-Key returns the first plan", "[unit]") {
  api_fixture f;
  const auto first = f.post("/api/v1/care-plans", "dc-chc-user", a_plan(), "plan-key-1");
  REQUIRE(first.status == 201);
  const auto again = f.post("/api/v1/care-plans", "dc-chc-user", a_plan(), "plan-key-1");
  CHECK(again.status == 200);
  CHECK(again.body["id"] == first.body["id"]);
  CHECK(f.get("/api/v1/care-plans", "dc-chc-user").body["care_plans"].size() == 1);
  // Another principal's key is another plan.
  const auto other = f.post("/api/v1/care-plans", "dc-chc-his", a_plan(), "plan-key-1");
  CHECK(other.status == 201);
  CHECK(other.body["id"] != first.body["id"]);
}

TEST_CASE("a care plan that cannot work is refused with what is wrong", "[unit]") {
  api_fixture f;
  struct bad_case {
    const char* what;
    std::function<void(json&)> change;
    unsigned status;
    const char* where;
  };
  const std::vector<bad_case> cases{
      {"an exam not in the catalogue", [](json& j) { j["exam_code"] = "XR-CHEST"; }, 422, "exam_code"},
      {"a daily interval", [](json& j) { j["interval"] = "daily"; }, 400, "interval"},
      {"every 0", [](json& j) { j["every"] = 0; }, 400, "every"},
      {"every as text", [](json& j) { j["every"] = "2"; }, 400, "every"},
      {"lead_days 0", [](json& j) { j["lead_days"] = 0; }, 400, "lead_days"},
      {"a date that does not exist", [](json& j) { j["starts_at"] = "2026-02-30"; }, 400, "starts_at"},
      {"a start before today", [](json& j) { j["starts_at"] = "2025-10-08"; }, 422, "starts_at"},
      {"until before the start", [](json& j) { j["until"] = "2025-10-14"; }, 422, "until"},
      {"until more than ten years on", [](json& j) { j["until"] = "2036-01-01"; }, 422, "until"},
      {"no until", [](json& j) { j.erase("until"); }, 400, "until"},
      {"no identifiers", [](json& j) { j.erase("identifiers"); }, 400, "identifiers"},
      {"empty identifiers", [](json& j) { j["identifiers"] = json::array(); }, 400, "identifiers"},
      {"an identifier without a system", [](json& j) { j["identifiers"] = {{{"value", "X"}}}; }, 400, "identifiers"},
      {"a bad patient field", [](json& j) { j["patient"]["phone"] = "138"; }, 400, "patient.phone"},
      {"an unknown field", [](json& j) { j["frequency"] = "monthly"; }, 400, "frequency"},
      {"an unknown tier", [](json& j) { j["preferred_tier"] = "QUATERNARY"; }, 400, "preferred_tier"},
      {"a hospital of another tier", [](json& j) { j["preferred_hospital"] = "qh-county"; }, 422, "preferred_hospital"},
      {"a hospital without the exam",
       [](json& j) {
         j.erase("preferred_tier");
         j["preferred_hospital"] = "qh-county";
         j["exam_code"] = "MR-HEAD-PLAIN";
       },
       422, "preferred_hospital"},
      {"a tier without the exam",
       [](json& j) {
         j.erase("preferred_hospital");
         j["preferred_tier"] = "SECONDARY";
         j["exam_code"] = "MR-HEAD-PLAIN";
       },
       422, "preferred_tier"},
      {"an unknown hospital", [](json& j) { j["preferred_hospital"] = "xx-none"; }, 422, "preferred_hospital"},
      {"another clinic's patient", [](json& j) { j["clinic_hospital"] = "nh-chc"; }, 403, "clinic_hospital"},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    auto body = a_plan();
    c.change(body);
    const auto r = f.post("/api/v1/care-plans", "dc-chc-user", body);
    INFO(r.body.dump());
    CHECK(r.status == c.status);
    CHECK(r.body.value("where", "") == c.where);
  }
  CHECK(f.post("/api/v1/care-plans", "dc-chc-user").status == 400);  // no body
  CHECK(f.post("/api/v1/care-plans", "operator", a_plan()).status == 400);  // whose plan?
  CHECK(f.get("/api/v1/care-plans", "operator").body["care_plans"].empty());
  REQUIRE(eventually([&] { return f.audited("dc-chc-user", "create", "", "validation_failed"); }));
}

TEST_CASE("another hospital's care plan does not exist for it; operators make and see every clinic's", "[unit]") {
  api_fixture f;
  const auto created = f.post("/api/v1/care-plans", "dc-chc-user", a_plan());
  REQUIRE(created.status == 201);
  const std::string id = created.body["id"];
  for (const auto* who : {"nh-chc-user", "zs-tertiary-his"}) {
    INFO(who);
    CHECK(f.get("/api/v1/care-plans/" + id, who).status == 404);
    CHECK(f.post("/api/v1/care-plans/" + id + "/cancel", who, json{{"reason", "not mine"}}).status == 404);
    CHECK(f.get("/api/v1/care-plans", who).body["care_plans"].empty());
  }
  CHECK(f.get("/api/v1/care-plans?clinic=dc-chc", "nh-chc-user").status == 403);
  CHECK(f.get("/api/v1/care-plans/cp-none", "dc-chc-user").status == 404);

  auto for_nh = a_plan();
  for_nh["clinic_hospital"] = "nh-chc";
  const auto by_operator = f.post("/api/v1/care-plans", "operator", for_nh);
  REQUIRE(by_operator.status == 201);
  CHECK(by_operator.body["clinic_hospital"] == "nh-chc");
  CHECK(f.get("/api/v1/care-plans", "operator").body["care_plans"].size() == 2);
  CHECK(f.get("/api/v1/care-plans?clinic=nh-chc", "operator").body["care_plans"].size() == 1);
  CHECK(f.get("/api/v1/care-plans", "nh-chc-user").body["care_plans"].size() == 1);
  CHECK(f.get("/api/v1/care-plans/" + id, "dc-chc-user").body["status"] == "ACTIVE");  // untouched

  REQUIRE(eventually([&] {
    return f.audited("nh-chc-user", "read", id, "not_found") && f.audited("nh-chc-user", "update", id, "not_found") &&
           f.audited("zs-tertiary-his", "read", id, "not_found");
  }));
}

TEST_CASE("a cancelled care plan books no further period", "[unit]") {
  api_fixture f;
  const auto created = f.post("/api/v1/care-plans", "dc-chc-user", a_plan());
  REQUIRE(created.status == 201);
  const std::string id = created.body["id"];
  REQUIRE(eventually([&] { return f.get("/api/v1/care-plans/" + id, "dc-chc-user").body["fired"] == 1; }));

  const auto cancelled = f.post("/api/v1/care-plans/" + id + "/cancel", "dc-chc-his", json{{"reason", "moved away"}});
  REQUIRE(cancelled.status == 200);
  CHECK(cancelled.body["status"] == "CANCELLED");
  CHECK(cancelled.body["cancel_reason"] == "moved away");
  CHECK(cancelled.body["cancelled_by"] == "dc-chc-his");
  CHECK(cancelled.body["next_period"].is_null());
  // Again: the same answer.
  CHECK(f.post("/api/v1/care-plans/" + id + "/cancel", "dc-chc-user").body["status"] == "CANCELLED");
  CHECK(f.get("/api/v1/care-plans?status=CANCELLED", "dc-chc-user").body["care_plans"].size() == 1);

  // November's period comes due: nothing is booked for it.
  f.clock.set(sh(2025, 11, 10, 7));
  pass(*f.e->plans);
  const auto plan = f.get("/api/v1/care-plans/" + id, "dc-chc-user").body;
  CHECK(plan["fired"] == 1);
  CHECK(plan["occurrences"].size() == 1);
  // The cancellation is on the care-plan topic for every instance.
  bool on_topic = false;
  for (const auto& l : read_topic(*f.e->bus, careplan_topic)) {
    on_topic = on_topic || (l.e.has_care_plan_changed() && l.e.care_plan_changed().care_plan_id() == id &&
                            l.e.care_plan_changed().status() == ev::CARE_PLAN_STATUS_CANCELLED &&
                            l.e.care_plan_changed().reason_text() == "moved away");
  }
  CHECK(on_topic);
  REQUIRE(eventually([&] { return f.audited("dc-chc-his", "update", id); }));
}
