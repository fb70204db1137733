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

#include <nlohmann/json.hpp>

#include <string>

#include "tests/unit/app/patient_test_support.h"

using namespace yilian;
using namespace yilian::app::test;

namespace {

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
