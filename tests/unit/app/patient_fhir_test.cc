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

#include <nlohmann/json.hpp>

#include <set>
#include <string>
#include <vector>

#include "tests/support/fhir_support.h"
#include "tests/unit/app/patient_test_support.h"

using namespace yilian;
using namespace yilian::app::test;
using yilian::test::diagnostics;
using yilian::test::dump;
using yilian::test::issue_code;

namespace {

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
