#include "engine/app/referral_fhir.h"

#include <algorithm>
#include <charconv>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/use_awaitable.hpp>
#include <google/protobuf/util/message_differencer.h>
#include <nlohmann/json.hpp>

#include "engine/app/fhir_demographics.h"
#include "engine/api/problem.h"
#include "engine/app/booking_support.h"
#include "engine/app/referral_support.h"
#include "engine/app/workflow_submit.h"
#include "engine/core/ids.h"
#include "engine/core/time_zone.h"
#include "engine/workflows/booking/ledger.h"

namespace yilian::app {

namespace {

namespace asio = boost::asio;
namespace rf = workflows::referral;
namespace ev = events::v1;
using api::http::status;
using api::http::verb;
using json = nlohmann::json;

// yilian's code and identifier systems in these resources.
constexpr std::string_view referral_system = "urn:yilian:referral";                  // ServiceRequest/Task.identifier = the referral id
constexpr std::string_view external_system = "urn:yilian:referral-external";         // Task.identifier = the receiver's own id (RF1-11)
constexpr std::string_view direction_system = "urn:yilian:referral-direction";       // ServiceRequest.category UP | DOWN
constexpr std::string_view business_status_system = "urn:yilian:referral-business-status";
constexpr std::string_view output_system = "urn:yilian:referral-output";             // Task.output.type appointment | report
constexpr std::string_view report_system = "urn:yilian:report";                      // DiagnosticReport identifier (ReportIssued.report_id)
constexpr std::string_view identifier_type_system = "urn:yilian:identifier-type";    // Identifier.type beyond v2-0203
constexpr std::string_view v2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203";
constexpr std::string_view task_code_system = "http://hl7.org/fhir/CodeSystem/task-code";
using fhir::name_representation;
constexpr std::string_view patient_cid = "patient";  // the contained Patient's id
constexpr std::size_t all_referrals = 1000000;

using seconds = workflows::seconds;

// ---------------------------------------------------------------- small JSON helpers

std::string base_url(const api::request& req) {
  const auto host = req.header(api::http::field::host);
  return "http://" + std::string(host.empty() ? "localhost" : host) + "/fhir/r4/";
}

result<json> body_json(const api::request& req) {
  auto j = json::parse(req.body(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return fail(errc::parse_error, "the body is not a JSON resource");
  return j;
}

// A member that must be a string when present ("" when absent).
result<std::string> text(const json& obj, std::string_view key, const std::string& where, bool required = false) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    if (required) return fail(errc::invalid_argument, where + " is required", where);
    return std::string();
  }
  if (!it->is_string()) return fail(errc::invalid_argument, where + " must be a string", where);
  return it->get<std::string>();
}

// A member that must be an object / array when present (an empty one when absent).
result<json> object_at(const json& obj, std::string_view key, const std::string& where) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return json::object();
  if (!it->is_object()) return fail(errc::invalid_argument, where + " must be an object", where);
  return *it;
}
result<json> array_at(const json& obj, std::string_view key, const std::string& where) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return json::array();
  if (!it->is_array()) return fail(errc::invalid_argument, where + " must be an array", where);
  for (const auto& item : *it) {
    if (!item.is_object() && !item.is_string()) return fail(errc::invalid_argument, where + "[] must be objects", where);
  }
  return *it;
}

// "Organization/zs-tertiary" (or an absolute URL ending so) -> "zs-tertiary";
// "" when it is no reference to `type`.
std::string ref_id(std::string_view ref, std::string_view type) {
  const std::string prefix = std::string(type) + "/";
  const auto pos = ref.rfind(prefix);
  if (pos == std::string_view::npos || (pos > 0 && ref[pos - 1] != '/')) return {};
  const auto rest = ref.substr(pos + prefix.size());
  if (rest.empty() || rest.find('/') != std::string_view::npos) return {};
  return std::string(rest);
}

// A search value naming a resource: "Organization/x" or just "x".
std::string param_id(std::string_view v, std::string_view type) {
  if (v.find('/') == std::string_view::npos) return std::string(v);
  return ref_id(v, type);
}

json fhir_coding(const ev::Coding& c) {
  json j = json::object();
  if (!c.system().empty()) j["system"] = c.system();
  if (!c.code().empty()) j["code"] = c.code();
  if (!c.display().empty()) j["display"] = c.display();
  return j;
}

bool empty_coding(const ev::Coding& c) { return c.code().empty() && c.display().empty(); }

json concept_json(const ev::Coding& c) {
  json j{{"coding", json::array({fhir_coding(c)})}};
  if (!c.display().empty()) j["text"] = c.display();
  return j;
}

result<ev::Coding> read_coding(const json& j, const std::string& where) {
  if (!j.is_object()) return fail(errc::invalid_argument, where + " must be a Coding", where);
  ev::Coding c;
  for (const auto& [key, setter] : {std::pair{"system", &ev::Coding::set_system<const std::string&>},
                                    std::pair{"code", &ev::Coding::set_code<const std::string&>},
                                    std::pair{"display", &ev::Coding::set_display<const std::string&>}}) {
    auto v = text(j, key, where + "." + key);
    if (!v) return std::unexpected(v.error());
    (c.*setter)(*v);
  }
  return c;
}

// The first coding of a CodeableConcept (its text as display when the coding has none).
result<ev::Coding> read_concept(const json& j, const std::string& where) {
  if (!j.is_object()) return fail(errc::invalid_argument, where + " must be a CodeableConcept", where);
  auto codings = array_at(j, "coding", where + ".coding");
  if (!codings) return std::unexpected(codings.error());
  ev::Coding c;
  if (!codings->empty()) {
    auto first = read_coding((*codings)[0], where + ".coding[0]");
    if (!first) return std::unexpected(first.error());
    c = std::move(*first);
  }
  auto t = text(j, "text", where + ".text");
  if (!t) return std::unexpected(t.error());
  if (c.display().empty()) c.set_display(*t);
  return c;
}

json organization_ref(const config::loaded_consortium& cfg, const std::string& hospital) {
  json j{{"reference", "Organization/" + hospital}};
  if (const auto* h = cfg.hospital(hospital); h != nullptr && !h->name().empty()) j["display"] = h->name();
  return j;
}

std::string local_time(seconds t, const time_zone& zone) { return workflows::booking::format_local(t, zone); }

// ---------------------------------------------------------------- states

// ServiceRequest.status for a referral state: the request as such (draft,
// in force, done, or ended without being carried out). The fine state is the
// Task's.
std::string_view service_request_status(rf::state s) {
  switch (s) {
    case ev::REFERRAL_STATE_DRAFT: return "draft";
    case ev::REFERRAL_STATE_REQUESTED:
    case ev::REFERRAL_STATE_RECEIVED:
    case ev::REFERRAL_STATE_ACCEPTED:
    case ev::REFERRAL_STATE_SCHEDULED:
    case ev::REFERRAL_STATE_ARRIVED: return "active";
    case ev::REFERRAL_STATE_COMPLETED:
    case ev::REFERRAL_STATE_REPORT_RETURNED: return "completed";
    case ev::REFERRAL_STATE_REJECTED:
    case ev::REFERRAL_STATE_CANCELLED:
    case ev::REFERRAL_STATE_EXPIRED:
    case ev::REFERRAL_STATE_NO_SHOW:
    case ev::REFERRAL_STATE_TERMINATED: return "revoked";
    default: return "unknown";
  }
}

std::string_view business_status_display(std::string_view code) {
  if (code == "scheduled") return "Scheduled";
  if (code == "arrived") return "Patient arrived";
  if (code == "completed") return "Visit completed";
  if (code == "report-returned") return "Report returned to the referrer";
  if (code == "expired") return "Expired unanswered";
  if (code == "no-show") return "Patient did not come";
  if (code == "terminated") return "Ended by an operator";
  return "";
}

// ---------------------------------------------------------------- patient

json identifier_json(const ev::Identifier& id) {
  json j{{"system", id.system()}, {"value", id.value()}};
  switch (id.type()) {
    case ev::IDENTIFIER_TYPE_UNSPECIFIED: break;
    case ev::IDENTIFIER_TYPE_MRN:
      j["type"] = {{"coding", json::array({{{"system", v2_0203}, {"code", "MR"}}})}};
      break;
    case ev::IDENTIFIER_TYPE_PASSPORT:
      j["type"] = {{"coding", json::array({{{"system", v2_0203}, {"code", "PPN"}}})}};
      break;
    default: {
      std::string name = ev::IdentifierType_Name(id.type());
      if (name.starts_with("IDENTIFIER_TYPE_")) name.erase(0, 16);
      j["type"] = {{"coding", json::array({{{"system", identifier_type_system}, {"code", name}}})}};
    }
  }
  if (!id.assigner().empty()) j["assigner"] = {{"reference", "Organization/" + id.assigner()}};
  return j;
}

// The identifier type a profile gives the system (MRN, RESIDENT_ID, ...).
ev::IdentifierType type_of_system(const config::loaded_consortium& cfg, std::string_view system) {
  for (const auto& p : cfg.profiles) {
    for (const auto& a : p.profile.identifier_authorities()) {
      if (a.system() == system) return a.type();
    }
  }
  return ev::IDENTIFIER_TYPE_UNSPECIFIED;
}

result<ev::Identifier> read_identifier(const json& j, const config::loaded_consortium& cfg, const std::string& where) {
  if (!j.is_object()) return fail(errc::invalid_argument, where + " must be an Identifier", where);
  ev::Identifier out;
  auto system = text(j, "system", where + ".system", true);
  if (!system) return std::unexpected(system.error());
  auto value = text(j, "value", where + ".value", true);
  if (!value) return std::unexpected(value.error());
  if (system->empty() || value->empty()) {
    return fail(errc::invalid_argument, where + " needs a system and a value", where);
  }
  out.set_system(*system);
  out.set_value(*value);
  auto type = object_at(j, "type", where + ".type");
  if (!type) return std::unexpected(type.error());
  auto codings = array_at(*type, "coding", where + ".type.coding");
  if (!codings) return std::unexpected(codings.error());
  for (const auto& c : *codings) {
    if (!c.is_object()) continue;
    const std::string sys = c.value("system", json()).is_string() ? c["system"].get<std::string>() : "";
    const std::string code = c.value("code", json()).is_string() ? c["code"].get<std::string>() : "";
    if (sys == v2_0203 && code == "MR") out.set_type(ev::IDENTIFIER_TYPE_MRN);
    if (sys == v2_0203 && code == "PPN") out.set_type(ev::IDENTIFIER_TYPE_PASSPORT);
    ev::IdentifierType t{};
    if (sys == identifier_type_system && ev::IdentifierType_Parse("IDENTIFIER_TYPE_" + code, &t)) out.set_type(t);
  }
  if (out.type() == ev::IDENTIFIER_TYPE_UNSPECIFIED) out.set_type(type_of_system(cfg, out.system()));
  auto assigner = object_at(j, "assigner", where + ".assigner");
  if (!assigner) return std::unexpected(assigner.error());
  auto ref = text(*assigner, "reference", where + ".assigner.reference");
  if (!ref) return std::unexpected(ref.error());
  out.set_assigner(ref_id(*ref, "Organization"));
  return out;
}

json name_extension(std::string_view code) {
  return json::array({{{"url", name_representation}, {"valueCode", code}}});
}


// The patient as a contained Patient: every identifier the referral names it
// by and the demographics the receiving hospital needs.
json patient_json(const ev::Subject& s, const ev::Demographics& d) {
  json ids = json::array();
  for (const auto& i : s.identifiers()) ids.push_back(identifier_json(i));
  json p{{"resourceType", "Patient"}, {"id", patient_cid}, {"identifier", std::move(ids)}};
  json names = json::array();
  const auto& n = d.name();
  if (!n.hanzi().empty() || !n.family().empty() || !n.given().empty()) {
    json hn{{"extension", name_extension("IDE")}};
    if (!n.hanzi().empty()) hn["text"] = n.hanzi();
    if (!n.family().empty()) hn["family"] = n.family();
    if (!n.given().empty()) hn["given"] = json::array({n.given()});
    names.push_back(std::move(hn));
  }
  if (!n.pinyin().empty()) names.push_back({{"extension", name_extension("ABC")}, {"text", n.pinyin()}});
  if (!names.empty()) p["name"] = std::move(names);
  if (!d.birth_date().empty()) p["birthDate"] = d.birth_date();
  if (const auto g = fhir::gender_code(d.sex()); !g.empty()) p["gender"] = g;
  if (d.telecom_size() > 0) {
    json tel = json::array();
    for (const auto& t : d.telecom()) {
      json c = fhir::contact_point(t);
      tel.push_back(std::move(c));
    }
    p["telecom"] = std::move(tel);
  }
  if (d.addresses_size() > 0) {
    json addresses = json::array();
    for (const auto& a : d.addresses()) {
      json j = fhir::address(a);
      addresses.push_back(std::move(j));
    }
    p["address"] = std::move(addresses);
  }
  return p;
}

// Demographics from a Patient resource (name, birthDate, gender, telecom, address).
result<void> read_patient(const json& p, const config::loaded_consortium& cfg, const std::string& where,
                          ev::Subject& subject, ev::Demographics& d) {
  auto ids = array_at(p, "identifier", where + ".identifier");
  if (!ids) return std::unexpected(ids.error());
  for (std::size_t i = 0; i < ids->size(); ++i) {
    auto id = read_identifier((*ids)[i], cfg, where + ".identifier[" + std::to_string(i) + "]");
    if (!id) return std::unexpected(id.error());
    *subject.add_identifiers() = std::move(*id);
  }
  auto names = array_at(p, "name", where + ".name");
  if (!names) return std::unexpected(names.error());
  for (std::size_t i = 0; i < names->size(); ++i) {
    const auto& hn = (*names)[i];
    const std::string w = where + ".name[" + std::to_string(i) + "]";
    if (!hn.is_object()) return fail(errc::invalid_argument, w + " must be a HumanName", w);
    const std::string rep = hn.value("extension", json::array()).dump();
    const bool alphabetic = rep.find("\"ABC\"") != std::string::npos || rep.find("\"SYL\"") != std::string::npos;
    auto t = text(hn, "text", w + ".text");
    if (!t) return std::unexpected(t.error());
    auto family = text(hn, "family", w + ".family");
    if (!family) return std::unexpected(family.error());
    std::string given;
    auto givens = array_at(hn, "given", w + ".given");
    if (!givens) return std::unexpected(givens.error());
    for (const auto& g : *givens) {
      if (g.is_string()) given += g.get<std::string>();
    }
    auto* n = d.mutable_name();
    if (alphabetic) {
      if (n->pinyin().empty()) n->set_pinyin(!t->empty() ? *t : *family + (given.empty() ? "" : " " + given));
    } else if (n->hanzi().empty() && n->family().empty()) {
      n->set_hanzi(!t->empty() ? *t : *family + given);
      n->set_family(*family);
      n->set_given(given);
    }
  }
  auto birth = text(p, "birthDate", where + ".birthDate");
  if (!birth) return std::unexpected(birth.error());
  d.set_birth_date(*birth);
  auto gender = text(p, "gender", where + ".gender");
  if (!gender) return std::unexpected(gender.error());
  if (*gender == "male") d.set_sex(ev::SEX_MALE);
  else if (*gender == "female") d.set_sex(ev::SEX_FEMALE);
  else if (*gender == "other") d.set_sex(ev::SEX_OTHER);
  else if (*gender == "unknown") d.set_sex(ev::SEX_UNKNOWN);
  else if (!gender->empty()) return fail(errc::invalid_argument, where + ".gender is male, female, other or unknown", where + ".gender");
  auto telecom = array_at(p, "telecom", where + ".telecom");
  if (!telecom) return std::unexpected(telecom.error());
  for (const auto& t : *telecom) {
    if (!t.is_object()) continue;
    auto* c = d.add_telecom();
    c->set_system(t.value("system", json()).is_string() ? t["system"].get<std::string>() : "");
    c->set_value(t.value("value", json()).is_string() ? t["value"].get<std::string>() : "");
    const json use = t.value("use", json());
    if (use == "home") c->set_use(ev::CONTACT_USE_HOME);
    if (use == "work") c->set_use(ev::CONTACT_USE_WORK);
    if (use == "mobile") c->set_use(ev::CONTACT_USE_MOBILE);
  }
  auto addresses = array_at(p, "address", where + ".address");
  if (!addresses) return std::unexpected(addresses.error());
  for (const auto& a : *addresses) {
    if (!a.is_object()) continue;
    auto str = [&](const char* k) { return a.value(k, json()).is_string() ? a[k].get<std::string>() : std::string(); };
    auto* out = d.add_addresses();
    out->set_text(str("text"));
    out->set_city(str("city"));
    out->set_district(str("district"));
    out->set_province(str("state"));
    out->set_postal_code(str("postalCode"));
    if (const auto lines = a.value("line", json::array()); lines.is_array() && !lines.empty() && lines[0].is_string()) {
      out->set_line(lines[0].get<std::string>());
    }
  }
  return {};
}

// Task.for / a display-only reference to the patient: the first identifier.
json patient_ref(const rf::referral_view& r) {
  json j{{"type", "Patient"}};
  if (r.subject.identifiers_size() > 0) {
    const auto& i = r.subject.identifiers(0);
    j["identifier"] = {{"system", i.system()}, {"value", i.value()}};
  }
  if (!r.request.patient().name().hanzi().empty()) j["display"] = r.request.patient().name().hanzi();
  return j;
}

// ---------------------------------------------------------------- resources

json meta_json(const rf::referral_view& r, const time_zone& zone) {
  return json{{"versionId", std::to_string(r.version)}, {"lastUpdated", local_time(r.updated_at, zone)}};
}

json service_request_json(const rf::referral_view& r, const config::loaded_consortium& cfg, const time_zone& zone) {
  const auto& q = r.request;
  json contained = json::array({patient_json(r.subject, q.patient())});
  json reason_refs = json::array();
  for (int i = 0; i < q.diagnoses_size(); ++i) {
    const std::string cid = "dx-" + std::to_string(i + 1);
    contained.push_back({{"resourceType", "Condition"},
                         {"id", cid},
                         {"code", concept_json(q.diagnoses(i))},
                         {"subject", {{"reference", "#" + std::string(patient_cid)}}}});
    reason_refs.push_back({{"reference", "#" + cid}});
  }
  json sr{{"resourceType", "ServiceRequest"},
          {"id", r.id},
          {"meta", meta_json(r, zone)},
          {"contained", std::move(contained)},
          {"identifier", json::array({{{"system", referral_system}, {"value", r.id}}})},
          {"status", service_request_status(r.st)},
          {"intent", "order"}};
  if (!r.linked_referral_id.empty()) sr["basedOn"] = json::array({{{"reference", "ServiceRequest/" + r.linked_referral_id}}});
  json category = json::array();
  if (const auto d = referral::direction_code(r.direction); !d.empty()) {
    category.push_back({{"coding", json::array({{{"system", direction_system},
                                                 {"code", d},
                                                 {"display", d == "UP" ? "上转 upward referral" : "下转 downward referral"}}})}});
  }
  if (!empty_coding(q.referral_type())) category.push_back(concept_json(q.referral_type()));
  if (!category.empty()) sr["category"] = std::move(category);
  if (const auto p = referral::priority_code(q.priority()); !p.empty()) sr["priority"] = p;
  if (q.requested_services_size() > 0) {
    json codings = json::array();
    std::string names;
    for (const auto& s : q.requested_services()) {
      codings.push_back(fhir_coding(s));
      if (!s.display().empty()) names += (names.empty() ? "" : "; ") + s.display();
    }
    sr["code"] = {{"coding", std::move(codings)}};
    if (!names.empty()) sr["code"]["text"] = names;
  }
  sr["subject"] = {{"reference", "#" + std::string(patient_cid)}};
  sr["authoredOn"] = local_time(q.has_effective_at() ? workflows::to_seconds(q.effective_at()) : r.created_at, zone);
  if (q.has_expires_at()) sr["occurrencePeriod"] = {{"end", local_time(workflows::to_seconds(q.expires_at()), zone)}};
  sr["requester"] = organization_ref(cfg, r.from_hospital);
  sr["performer"] = json::array({organization_ref(cfg, r.to_hospital)});
  if (!empty_coding(q.reason()) || !q.reason_text().empty()) {
    json reason = json::object();
    if (!empty_coding(q.reason())) reason["coding"] = json::array({fhir_coding(q.reason())});
    if (!q.reason_text().empty()) reason["text"] = q.reason_text();
    sr["reasonCode"] = json::array({std::move(reason)});
  }
  if (!reason_refs.empty()) sr["reasonReference"] = std::move(reason_refs);
  if (!q.clinical_summary().empty()) sr["note"] = json::array({{{"text", q.clinical_summary()}}});
  return sr;
}

json output_type(std::string_view code) {
  return json{{"coding", json::array({{{"system", output_system}, {"code", code}}})}, {"text", code}};
}

json task_json(const rf::referral_view& r, const config::loaded_consortium& cfg, const time_zone& zone) {
  json ids = json::array({{{"system", referral_system}, {"value", r.id}}});
  if (!r.external_id.empty()) {
    ids.push_back({{"system", external_system},
                   {"value", r.external_id},
                   {"assigner", {{"reference", "Organization/" + r.to_hospital}}}});
  }
  json t{{"resourceType", "Task"},
         {"id", r.id},
         {"meta", meta_json(r, zone)},
         {"identifier", std::move(ids)},
         {"status", rf::fhir_task_status(r.st)},
         {"intent", "order"},
         {"code", {{"coding", json::array({{{"system", task_code_system},
                                           {"code", "fulfill"},
                                           {"display", "Fulfill the focal request"}}})}}},
         {"focus", {{"reference", "ServiceRequest/" + r.id}}},
         {"for", patient_ref(r)},
         {"authoredOn", local_time(r.created_at, zone)},
         {"lastModified", local_time(r.updated_at, zone)},
         {"requester", organization_ref(cfg, r.from_hospital)},
         {"owner", organization_ref(cfg, r.to_hospital)}};
  if (const auto bs = rf::fhir_business_status(r.st); !bs.empty()) {
    t["businessStatus"] = {{"coding", json::array({{{"system", business_status_system},
                                                    {"code", bs},
                                                    {"display", business_status_display(bs)}}})},
                           {"text", rf::state_name(r.st)}};
  }
  if (rf::is_final(r.st)) {
    // Why it ended: the reason of the step that ended it.
    for (auto it = r.history.rbegin(); it != r.history.rend(); ++it) {
      if (it->to != r.st) continue;
      if (!it->reason.empty()) t["statusReason"] = {{"text", it->reason}};
      break;
    }
  }
  if (const auto p = referral::priority_code(r.request.priority()); !p.empty()) t["priority"] = p;
  if (!r.linked_referral_id.empty()) t["partOf"] = json::array({{{"reference", "Task/" + r.linked_referral_id}}});
  if (r.appointment_start > seconds{}) t["executionPeriod"] = {{"start", local_time(r.appointment_start, zone)}};
  if (!r.encounter_id.empty()) t["encounter"] = {{"identifier", {{"value", r.encounter_id}}}};
  if (r.expires_at > seconds{}) t["restriction"] = {{"period", {{"end", local_time(r.expires_at, zone)}}}};
  json outputs = json::array();
  if (!r.booking_id.empty()) {
    outputs.push_back({{"type", output_type("appointment")}, {"valueReference", {{"reference", "Appointment/" + r.booking_id}}}});
  } else if (!r.appointment_id.empty()) {
    // An appointment the receiving hospital made itself (SIU), not a yilian booking.
    outputs.push_back({{"type", output_type("appointment")},
                       {"valueReference", {{"type", "Appointment"}, {"identifier", {{"value", r.appointment_id}}}}}});
  }
  for (const auto& report : r.report_ids) {
    outputs.push_back({{"type", output_type("report")},
                       {"valueReference", {{"type", "DiagnosticReport"},
                                           {"identifier", {{"system", report_system},
                                                           {"value", report},
                                                           {"assigner", {{"reference", "Organization/" + r.to_hospital}}}}}}}});
  }
  if (!outputs.empty()) t["output"] = std::move(outputs);
  return t;
}

json bundle(const api::request& req, const std::vector<json>& resources, std::size_t total) {
  json entries = json::array();
  const std::string base = base_url(req);
  for (const auto& r : resources) {
    entries.push_back({{"fullUrl", base + r["resourceType"].get<std::string>() + "/" + r["id"].get<std::string>()},
                       {"resource", r},
                       {"search", {{"mode", "match"}}}});
  }
  const auto host = req.header(api::http::field::host);
  const std::string self = "http://" + std::string(host.empty() ? "localhost" : host) + std::string(req.target());
  return json{{"resourceType", "Bundle"},
              {"type", "searchset"},
              {"total", total},
              {"link", json::array({{{"relation", "self"}, {"url", self}}})},
              {"entry", std::move(entries)}};
}

// ---------------------------------------------------------------- ServiceRequest in

// What a ServiceRequest resource asks for. `details` holds only what the
// resource carries (see overlay()).
struct service_request_in {
  std::string status;
  std::string requester;  // hospital ids; "" when absent
  std::string performer;
  std::string based_on;   // the referral this one follows
  ev::ReferralDirection direction = ev::REFERRAL_DIRECTION_UNSPECIFIED;
  ev::Subject subject;
  ev::ReferralRequested details;
  bool has_authored_on = false;
  bool has_occurrence_end = false;
};

result<service_request_in> read_service_request(const json& sr, const config::loaded_consortium& cfg,
                                                const time_zone& zone) {
  if (sr.value("resourceType", json()) != "ServiceRequest") {
    return fail(errc::invalid_argument, "expected a ServiceRequest resource", "resourceType");
  }
  service_request_in in;
  auto& q = in.details;
  auto st = text(sr, "status", "ServiceRequest.status");
  if (!st) return std::unexpected(st.error());
  in.status = st->empty() ? "active" : *st;
  auto intent = text(sr, "intent", "ServiceRequest.intent");
  if (!intent) return std::unexpected(intent.error());
  if (!intent->empty() && *intent != "order") {
    return fail(errc::invalid_argument, "a referral is a ServiceRequest with intent order", "ServiceRequest.intent");
  }

  // The patient: a contained Patient, or a reference carrying an identifier.
  auto subject = object_at(sr, "subject", "ServiceRequest.subject");
  if (!subject) return std::unexpected(subject.error());
  auto sref = text(*subject, "reference", "ServiceRequest.subject.reference");
  if (!sref) return std::unexpected(sref.error());
  if (sref->starts_with("#")) {
    const std::string cid = sref->substr(1);
    auto contained = array_at(sr, "contained", "ServiceRequest.contained");
    if (!contained) return std::unexpected(contained.error());
    bool found = false;
    for (std::size_t i = 0; i < contained->size(); ++i) {
      const auto& c = (*contained)[i];
      if (!c.is_object() || c.value("id", json()) != cid) continue;
      if (c.value("resourceType", json()) != "Patient") {
        return fail(errc::invalid_argument, "ServiceRequest.subject " + *sref + " is not a contained Patient",
                    "ServiceRequest.subject");
      }
      if (auto r = read_patient(c, cfg, "ServiceRequest.contained[" + std::to_string(i) + "]", in.subject,
                                *q.mutable_patient());
          !r) {
        return std::unexpected(r.error());
      }
      found = true;
    }
    if (!found) {
      return fail(errc::invalid_argument, "ServiceRequest.subject " + *sref + " names no contained resource",
                  "ServiceRequest.subject");
    }
  } else if (subject->contains("identifier")) {
    auto id = read_identifier((*subject)["identifier"], cfg, "ServiceRequest.subject.identifier");
    if (!id) return std::unexpected(id.error());
    *in.subject.add_identifiers() = std::move(*id);
    auto display = text(*subject, "display", "ServiceRequest.subject.display");
    if (!display) return std::unexpected(display.error());
    q.mutable_patient()->mutable_name()->set_hanzi(*display);
  }
  if (in.subject.identifiers().empty()) {
    return fail(errc::invalid_argument,
                "ServiceRequest.subject: yilian names the patient by identifiers (a contained Patient with "
                "identifier[], or subject.identifier with system and value)",
                "ServiceRequest.subject");
  }

  auto requester = object_at(sr, "requester", "ServiceRequest.requester");
  if (!requester) return std::unexpected(requester.error());
  auto rref = text(*requester, "reference", "ServiceRequest.requester.reference");
  if (!rref) return std::unexpected(rref.error());
  if (!rref->empty()) {
    in.requester = ref_id(*rref, "Organization");
    if (in.requester.empty()) {
      return fail(errc::invalid_argument, "ServiceRequest.requester is the referring hospital, Organization/<id>",
                  "ServiceRequest.requester");
    }
  }
  auto performers = array_at(sr, "performer", "ServiceRequest.performer");
  if (!performers) return std::unexpected(performers.error());
  for (const auto& p : *performers) {
    if (!p.is_object() || !p.value("reference", json()).is_string()) continue;
    const std::string h = ref_id(p["reference"].get<std::string>(), "Organization");
    if (h.empty()) continue;
    if (!in.performer.empty() && in.performer != h) {
      return fail(errc::invalid_argument, "a referral goes to one hospital: one Organization in ServiceRequest.performer",
                  "ServiceRequest.performer");
    }
    in.performer = h;
  }

  auto based_on = array_at(sr, "basedOn", "ServiceRequest.basedOn");
  if (!based_on) return std::unexpected(based_on.error());
  for (const auto& b : *based_on) {
    const std::string ref = b.is_object() && b.value("reference", json()).is_string() ? b["reference"].get<std::string>() : "";
    const std::string up = ref_id(ref, "ServiceRequest");
    if (up.empty()) {
      return fail(errc::invalid_argument, "ServiceRequest.basedOn names the referral this one follows: ServiceRequest/<id>",
                  "ServiceRequest.basedOn");
    }
    in.based_on = up;
  }

  auto categories = array_at(sr, "category", "ServiceRequest.category");
  if (!categories) return std::unexpected(categories.error());
  for (std::size_t i = 0; i < categories->size(); ++i) {
    const std::string w = "ServiceRequest.category[" + std::to_string(i) + "]";
    const auto& cc = (*categories)[i];
    if (!cc.is_object()) return fail(errc::invalid_argument, w + " must be a CodeableConcept", w);
    bool direction = false;
    for (const auto& c : cc.value("coding", json::array())) {
      if (!c.is_object() || c.value("system", json()) != direction_system) continue;
      const json code = c.value("code", json());
      if (code == "UP") in.direction = ev::REFERRAL_DIRECTION_UP;
      else if (code == "DOWN") in.direction = ev::REFERRAL_DIRECTION_DOWN;
      else return fail(errc::invalid_argument, w + ": the referral direction is UP or DOWN", w);
      direction = true;
    }
    if (direction) continue;
    auto c = read_concept(cc, w);
    if (!c) return std::unexpected(c.error());
    *q.mutable_referral_type() = std::move(*c);
  }

  auto priority = text(sr, "priority", "ServiceRequest.priority");
  if (!priority) return std::unexpected(priority.error());
  if (!priority->empty()) {
    bool known = false;
    for (auto p : {ev::PRIORITY_ROUTINE, ev::PRIORITY_URGENT, ev::PRIORITY_ASAP, ev::PRIORITY_STAT}) {
      if (referral::priority_code(p) == *priority) {
        q.set_priority(p);
        known = true;
      }
    }
    if (!known) return fail(errc::invalid_argument, "ServiceRequest.priority is routine, urgent, asap or stat", "ServiceRequest.priority");
  }

  auto code = object_at(sr, "code", "ServiceRequest.code");
  if (!code) return std::unexpected(code.error());
  auto services = array_at(*code, "coding", "ServiceRequest.code.coding");
  if (!services) return std::unexpected(services.error());
  for (std::size_t i = 0; i < services->size(); ++i) {
    auto c = read_coding((*services)[i], "ServiceRequest.code.coding[" + std::to_string(i) + "]");
    if (!c) return std::unexpected(c.error());
    *q.add_requested_services() = std::move(*c);
  }

  auto reasons = array_at(sr, "reasonCode", "ServiceRequest.reasonCode");
  if (!reasons) return std::unexpected(reasons.error());
  if (reasons->size() > 1) {
    return fail(errc::invalid_argument, "one reasonCode (the referral reason); diagnoses go in reasonReference",
                "ServiceRequest.reasonCode");
  }
  if (!reasons->empty()) {
    const auto& rc = (*reasons)[0];
    if (!rc.is_object()) return fail(errc::invalid_argument, "ServiceRequest.reasonCode[0] must be a CodeableConcept", "ServiceRequest.reasonCode");
    const auto codings = rc.value("coding", json::array());
    if (codings.is_array() && !codings.empty()) {
      auto c = read_coding(codings[0], "ServiceRequest.reasonCode[0].coding[0]");
      if (!c) return std::unexpected(c.error());
      *q.mutable_reason() = std::move(*c);
    }
    auto t = text(rc, "text", "ServiceRequest.reasonCode[0].text");
    if (!t) return std::unexpected(t.error());
    q.set_reason_text(*t);
  }
  auto reason_refs = array_at(sr, "reasonReference", "ServiceRequest.reasonReference");
  if (!reason_refs) return std::unexpected(reason_refs.error());
  for (std::size_t i = 0; i < reason_refs->size(); ++i) {
    const std::string w = "ServiceRequest.reasonReference[" + std::to_string(i) + "]";
    const auto& rr = (*reason_refs)[i];
    const std::string ref = rr.is_object() && rr.value("reference", json()).is_string() ? rr["reference"].get<std::string>() : "";
    const json* condition = nullptr;
    if (const auto contained = sr.find("contained"); ref.starts_with("#") && contained != sr.end() && contained->is_array()) {
      for (const auto& c : *contained) {
        if (c.is_object() && c.value("id", json()) == ref.substr(1) && c.value("resourceType", json()) == "Condition") condition = &c;
      }
    }
    if (condition == nullptr) {
      return fail(errc::invalid_argument, w + ": diagnoses are contained Conditions (\"#<id>\") with a code", w);
    }
    auto c = read_concept(condition->value("code", json::object()), w + " Condition.code");
    if (!c) return std::unexpected(c.error());
    *q.add_diagnoses() = std::move(*c);
  }

  auto notes = array_at(sr, "note", "ServiceRequest.note");
  if (!notes) return std::unexpected(notes.error());
  std::string summary;
  for (const auto& n : *notes) {
    if (!n.is_object() || !n.value("text", json()).is_string()) continue;
    if (!summary.empty()) summary += "\n";
    summary += n["text"].get<std::string>();
  }
  q.set_clinical_summary(summary);

  auto authored = text(sr, "authoredOn", "ServiceRequest.authoredOn");
  if (!authored) return std::unexpected(authored.error());
  if (!authored->empty()) {
    auto t = workflows::booking::parse_instant(*authored, zone);
    if (!t) return fail(errc::invalid_argument, "ServiceRequest.authoredOn: " + t.error().message, "ServiceRequest.authoredOn");
    *q.mutable_effective_at() = workflows::to_timestamp(*t);
    in.has_authored_on = true;
  }
  auto occurrence = object_at(sr, "occurrencePeriod", "ServiceRequest.occurrencePeriod");
  if (!occurrence) return std::unexpected(occurrence.error());
  auto end = text(*occurrence, "end", "ServiceRequest.occurrencePeriod.end");
  if (!end) return std::unexpected(end.error());
  if (!end->empty()) {
    auto t = workflows::booking::parse_instant(*end, zone);
    if (!t) return fail(errc::invalid_argument, "ServiceRequest.occurrencePeriod.end: " + t.error().message, "ServiceRequest.occurrencePeriod.end");
    *q.mutable_expires_at() = workflows::to_timestamp(*t);
    in.has_occurrence_end = true;
  }
  return in;
}

// The details of `current` with what the resource carries put over them
// (what it does not carry — providers, attachments, the receiver's id — stays).
ev::ReferralRequested overlay(const ev::ReferralRequested& current, const service_request_in& in) {
  ev::ReferralRequested q = current;
  const auto& d = in.details;
  q.set_priority(d.priority());
  // Sub-messages are set only when given (an empty one is not "absent").
  if (d.has_referral_type()) *q.mutable_referral_type() = d.referral_type();
  else q.clear_referral_type();
  if (d.has_reason()) *q.mutable_reason() = d.reason();
  else q.clear_reason();
  q.set_reason_text(d.reason_text());
  *q.mutable_diagnoses() = d.diagnoses();
  *q.mutable_requested_services() = d.requested_services();
  q.set_clinical_summary(d.clinical_summary());
  if (in.has_authored_on) *q.mutable_effective_at() = d.effective_at();
  if (in.has_occurrence_end) *q.mutable_expires_at() = d.expires_at();
  if (!q.has_patient() && d.patient().ByteSizeLong() == 0) return q;
  auto* p = q.mutable_patient();
  if (d.patient().has_name()) *p->mutable_name() = d.patient().name();
  else p->clear_name();
  p->set_birth_date(d.patient().birth_date());
  p->set_sex(d.patient().sex());
  *p->mutable_telecom() = d.patient().telecom();
  *p->mutable_addresses() = d.patient().addresses();
  return q;
}

// ---------------------------------------------------------------- Task in

// What a PUT Task asks for: an action and the fields it carries, or nothing
// (the Task as it is).
struct task_change {
  ev::ReferralCommand fields;  // action, reason, booking, appointment start, encounter, report, external id
};

result<std::optional<task_change>> read_task_change(const json& t, const rf::referral_view& cur, const time_zone& zone) {
  auto st = text(t, "status", "Task.status", true);
  if (!st) return std::unexpected(st.error());
  auto business = object_at(t, "businessStatus", "Task.businessStatus");
  if (!business) return std::unexpected(business.error());
  std::string bs;
  for (const auto& c : business->value("coding", json::array())) {
    if (!c.is_object() || !c.value("code", json()).is_string()) continue;
    if (bs.empty() || c.value("system", json()) == business_status_system) bs = c["code"].get<std::string>();
  }
  task_change out;
  auto& f = out.fields;
  auto reason = object_at(t, "statusReason", "Task.statusReason");
  if (!reason) return std::unexpected(reason.error());
  if (!reason->empty()) {
    const auto codings = reason->value("coding", json::array());
    if (codings.is_array() && !codings.empty()) {
      auto c = read_coding(codings[0], "Task.statusReason.coding[0]");
      if (!c) return std::unexpected(c.error());
      *f.mutable_reason() = std::move(*c);
    }
    auto why = text(*reason, "text", "Task.statusReason.text");
    if (!why) return std::unexpected(why.error());
    f.set_reason_text(*why);
  }
  std::vector<std::string> reports;
  auto outputs = array_at(t, "output", "Task.output");
  if (!outputs) return std::unexpected(outputs.error());
  for (const auto& o : *outputs) {
    if (!o.is_object() || !o.contains("valueReference") || !o["valueReference"].is_object()) continue;
    const auto& v = o["valueReference"];
    const std::string ref = v.value("reference", json()).is_string() ? v["reference"].get<std::string>() : "";
    const std::string type = v.value("type", json()).is_string() ? v["type"].get<std::string>() : "";
    const json ident = v.value("identifier", json::object());
    const std::string value = ident.is_object() && ident.value("value", json()).is_string() ? ident["value"].get<std::string>() : "";
    if (const auto booking = ref_id(ref, "Appointment"); !booking.empty()) {
      f.set_booking_id(booking);
      f.set_appointment_id(booking);
    } else if (type == "Appointment" && !value.empty()) {
      f.set_appointment_id(value);
    }
    if (const auto report = ref_id(ref, "DiagnosticReport"); !report.empty()) reports.push_back(report);
    else if (type == "DiagnosticReport" && !value.empty()) reports.push_back(value);
  }
  auto period = object_at(t, "executionPeriod", "Task.executionPeriod");
  if (!period) return std::unexpected(period.error());
  auto start = text(*period, "start", "Task.executionPeriod.start");
  if (!start) return std::unexpected(start.error());
  if (!start->empty()) {
    auto at = workflows::booking::parse_instant(*start, zone);
    if (!at) return fail(errc::invalid_argument, "Task.executionPeriod.start: " + at.error().message, "Task.executionPeriod.start");
    *f.mutable_appointment_start() = workflows::to_timestamp(*at);
  }
  auto encounter = object_at(t, "encounter", "Task.encounter");
  if (!encounter) return std::unexpected(encounter.error());
  if (const auto e = encounter->value("identifier", json::object()); e.is_object() && e.value("value", json()).is_string()) {
    f.set_encounter_id(e["value"].get<std::string>());
  } else if (encounter->value("reference", json()).is_string()) {
    f.set_encounter_id(ref_id((*encounter)["reference"].get<std::string>(), "Encounter"));
  }
  for (const auto& i : t.value("identifier", json::array())) {
    if (i.is_object() && i.value("system", json()) == external_system && i.value("value", json()).is_string()) {
      f.set_external_referral_id(i["value"].get<std::string>());
    }
  }

  const std::string_view cur_status = rf::fhir_task_status(cur.st);
  const std::string_view cur_bs = rf::fhir_business_status(cur.st);
  ev::ReferralAction act = ev::REFERRAL_ACTION_UNSPECIFIED;
  if (bs == "report-returned") {
    if (*st != "completed") {
      return fail(errc::invalid_argument, "businessStatus report-returned goes with Task.status completed", "Task.status");
    }
    // A report not returned before (a corrected report is returned again).
    std::string fresh;
    for (const auto& r : reports) {
      if (std::find(cur.report_ids.begin(), cur.report_ids.end(), r) == cur.report_ids.end()) fresh = r;
    }
    if (cur.st == ev::REFERRAL_STATE_REPORT_RETURNED && fresh.empty()) return std::nullopt;
    if (fresh.empty() && !reports.empty()) fresh = reports.back();
    act = ev::REFERRAL_ACTION_RETURN_REPORT;
    f.set_report_id(fresh);
  } else if (*st == cur_status && (bs.empty() || bs == cur_bs)) {
    // The same state; for a scheduled referral a new appointment reschedules.
    const bool moved = (!f.booking_id().empty() && f.booking_id() != cur.booking_id) ||
                       (f.has_appointment_start() && workflows::to_seconds(f.appointment_start()) != cur.appointment_start);
    if (cur.st != ev::REFERRAL_STATE_SCHEDULED || !moved) return std::nullopt;
    act = ev::REFERRAL_ACTION_SCHEDULE;
  } else if (*st == "requested") {
    act = ev::REFERRAL_ACTION_SUBMIT;
  } else if (*st == "received") {
    act = ev::REFERRAL_ACTION_RECEIVE;
  } else if (*st == "accepted") {
    act = ev::REFERRAL_ACTION_ACCEPT;
  } else if (*st == "rejected") {
    act = ev::REFERRAL_ACTION_REJECT;
  } else if (*st == "cancelled") {
    act = ev::REFERRAL_ACTION_CANCEL;
  } else if (*st == "in-progress") {
    if (bs == "scheduled") act = ev::REFERRAL_ACTION_SCHEDULE;
    else if (bs == "arrived") act = ev::REFERRAL_ACTION_ARRIVE;
    else return fail(errc::unsupported, "Task.status in-progress needs businessStatus scheduled or arrived", "Task.businessStatus");
  } else if (*st == "completed") {
    if (!bs.empty() && bs != "completed") {
      return fail(errc::unsupported, "Task.status completed takes businessStatus completed or report-returned", "Task.businessStatus");
    }
    act = ev::REFERRAL_ACTION_COMPLETE;
  } else if (*st == "failed") {
    if (bs == "no-show") act = ev::REFERRAL_ACTION_NO_SHOW;
    else if (bs == "expired") act = ev::REFERRAL_ACTION_EXPIRE;
    else if (bs == "terminated") act = ev::REFERRAL_ACTION_TERMINATE;
    else return fail(errc::unsupported, "Task.status failed needs businessStatus no-show, expired or terminated", "Task.businessStatus");
  } else {
    return fail(errc::unsupported,
                "a referral's Task moves to requested (a draft sent), received, accepted, rejected, cancelled, "
                "in-progress (businessStatus scheduled or arrived), completed (businessStatus completed or "
                "report-returned) or failed (no-show, expired, terminated); not from " +
                    std::string(cur_status) + " to " + *st,
                "Task.status");
  }
  f.set_action(act);
  f.set_source_status(*st + (bs.empty() ? "" : "/" + bs));
  // Only what the action uses travels.
  if (act != ev::REFERRAL_ACTION_SCHEDULE) {
    f.clear_booking_id();
    f.clear_appointment_id();
    f.clear_appointment_start();
  }
  if (act != ev::REFERRAL_ACTION_ARRIVE && act != ev::REFERRAL_ACTION_COMPLETE) f.clear_encounter_id();
  if (act != ev::REFERRAL_ACTION_ACCEPT) f.clear_external_referral_id();
  if (act != ev::REFERRAL_ACTION_REJECT && act != ev::REFERRAL_ACTION_CANCEL && act != ev::REFERRAL_ACTION_NO_SHOW &&
      act != ev::REFERRAL_ACTION_TERMINATE && act != ev::REFERRAL_ACTION_EXPIRE) {
    f.clear_reason();
    f.clear_reason_text();
  }
  return out;
}

// ---------------------------------------------------------------- commands

ev::Envelope command_for(const api::request& req, ev::ReferralAction act, const std::string& referral_id,
                         seconds now, int n = 0) {
  return referral::command_for(req, act, referral_id, now, "fhir", n);
}

enum class resource_kind { service_request, task };

std::string_view kind_name(resource_kind k) { return k == resource_kind::task ? "Task" : "ServiceRequest"; }

json render(resource_kind k, const rf::referral_view& r, const config::loaded_consortium& cfg, const time_zone& zone) {
  return k == resource_kind::task ? task_json(r, cfg, zone) : service_request_json(r, cfg, zone);
}

api::response resource_response(const api::request& req, resource_kind k, const rf::referral_view& r,
                                const config::loaded_consortium& cfg, const time_zone& zone, status s) {
  auto resp = api::response::fhir(render(k, r, cfg, zone), s);
  resp.with_header("Location", base_url(req) + std::string(kind_name(k)) + "/" + r.id + "/_history/" + std::to_string(r.version));
  resp.with_header("ETag", "W/\"" + std::to_string(r.version) + "\"");
  return resp;
}

// Sends the commands in order (stopping at the first refusal) and answers
// with the resource as the last decision left it.
asio::awaitable<result<api::response>> run_commands(rf::service& svc, api::audit_log& audit, api::request& req,
                                                    std::vector<ev::Envelope> cmds, resource_kind k,
                                                    std::string audit_action, status ok,
                                                    std::chrono::milliseconds timeout,
                                                    const config::loaded_consortium& cfg, const time_zone& zone) {
  const std::vector<std::string> ids{cmds.front().referral_command().referral_id()};
  std::shared_ptr<const rf::referral_view> last;
  for (const auto& cmd : cmds) {
    const auto& c = cmd.referral_command();
    auto d = co_await submit_command<rf::service>(svc, cmd, c.command_id(), timeout);
    if (!d) co_return std::unexpected(d.error());
    if (d->refused) {
      audit.record(req, audit_action, kind_name(k), ids, d->refused->code);
      if (d->refused->code == "version_mismatch") {
        co_return api::problem_response(status::precondition_failed, "version_mismatch", "conflict", d->refused->message,
                                        "If-Match", req.path, req.request_id);
      }
      co_return booking::refusal_response(*d->refused, req);
    }
    if (d->referral) last = std::move(d->referral);
  }
  audit.record(req, audit_action, kind_name(k), ids);
  if (!last) {
    last = svc.read([&](const rf::ledger& l) { return l.share(ids.front()); });
  }
  if (!last) co_return fail(errc::internal, "decision without a referral", ids.front());
  co_return resource_response(req, k, *last, cfg, zone, ok);
}

// If-Match: W/"<version>" (or "<version>"). nullopt: no header.
result<std::optional<std::uint64_t>> if_match(const api::request& req) {
  std::string_view v = req.header(api::http::field::if_match);
  if (v.empty()) return std::optional<std::uint64_t>();
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
  if (v.starts_with("W/")) v.remove_prefix(2);
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  std::uint64_t n = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || end != v.data() + v.size()) {
    return fail(errc::invalid_argument, "If-Match is W/\"<version>\" (the ETag of the resource read)", "If-Match");
  }
  return std::optional<std::uint64_t>(n);
}

// The referral for a read or change by the caller, or nullopt (unknown or
// none of its business: the same 404).
std::optional<rf::referral_view> visible_referral(const rf::service& svc, const api::principal& p, const std::string& id) {
  return svc.read([&](const rf::ledger& l) -> std::optional<rf::referral_view> {
    const auto* r = l.find(id);
    if (r == nullptr || !referral::sees(p, *r)) return std::nullopt;
    return *r;
  });
}

// ---------------------------------------------------------------- search

// "system|value", "|value" (no system), "value" (any system), "system|" (any value).
bool token_matches(std::string_view token, std::string_view system, std::string_view value) {
  const auto bar = token.find('|');
  if (bar == std::string_view::npos) return token == value;
  const auto sys = token.substr(0, bar);
  const auto val = token.substr(bar + 1);
  return sys == system && (val.empty() || val == value);
}

bool patient_matches(const rf::referral_view& r, std::string_view token) {
  return std::any_of(r.subject.identifiers().begin(), r.subject.identifiers().end(),
                     [&](const ev::Identifier& i) { return token_matches(token, i.system(), i.value()); });
}

// patient / subject: Patient/<enterprise id>, or (leniently) an identifier token.
bool patient_ref_matches(const rf::referral_view& r, std::string_view v) {
  if (v.find('|') != std::string_view::npos) return patient_matches(r, v);
  const std::string id = param_id(v, "Patient");
  return !id.empty() && id == r.subject.enterprise_patient_id();
}

bool identifier_matches(const rf::referral_view& r, std::string_view token) {
  return token_matches(token, referral_system, r.id) ||
         (!r.external_id.empty() && token_matches(token, external_system, r.external_id));
}

using matcher = std::function<bool(const rf::referral_view&, std::string_view)>;

const std::map<std::string, matcher, std::less<>>& common_params() {
  static const std::map<std::string, matcher, std::less<>> m{
      {"_id", [](const rf::referral_view& r, std::string_view v) { return r.id == v; }},
      {"identifier", identifier_matches},
      {"requester", [](const rf::referral_view& r, std::string_view v) { return param_id(v, "Organization") == r.from_hospital; }},
      {"patient", patient_ref_matches},
      {"subject", patient_ref_matches},
      {"patient:identifier", patient_matches},
      {"subject:identifier", patient_matches},
  };
  return m;
}

const std::map<std::string, matcher, std::less<>>& service_request_params() {
  static const std::map<std::string, matcher, std::less<>> m = [] {
    auto out = common_params();
    out.emplace("status", [](const rf::referral_view& r, std::string_view v) { return service_request_status(r.st) == v; });
    out.emplace("performer", [](const rf::referral_view& r, std::string_view v) { return param_id(v, "Organization") == r.to_hospital; });
    out.emplace("based-on", [](const rf::referral_view& r, std::string_view v) {
      return !r.linked_referral_id.empty() && param_id(v, "ServiceRequest") == r.linked_referral_id;
    });
    out.emplace("category", [](const rf::referral_view& r, std::string_view v) {
      return token_matches(v, direction_system, referral::direction_code(r.direction)) ||
             token_matches(v, r.request.referral_type().system(), r.request.referral_type().code());
    });
    out.emplace("intent", [](const rf::referral_view&, std::string_view v) { return v == "order"; });
    return out;
  }();
  return m;
}

const std::map<std::string, matcher, std::less<>>& task_params() {
  static const std::map<std::string, matcher, std::less<>> m = [] {
    auto out = common_params();
    out.emplace("status", [](const rf::referral_view& r, std::string_view v) { return rf::fhir_task_status(r.st) == v; });
    out.emplace("business-status", [](const rf::referral_view& r, std::string_view v) {
      const auto bs = rf::fhir_business_status(r.st);
      return !bs.empty() && token_matches(v, business_status_system, bs);
    });
    out.emplace("owner", [](const rf::referral_view& r, std::string_view v) { return param_id(v, "Organization") == r.to_hospital; });
    out.emplace("focus", [](const rf::referral_view& r, std::string_view v) { return param_id(v, "ServiceRequest") == r.id; });
    out.emplace("part-of", [](const rf::referral_view& r, std::string_view v) {
      return !r.linked_referral_id.empty() && param_id(v, "Task") == r.linked_referral_id;
    });
    out.emplace("intent", [](const rf::referral_view&, std::string_view v) { return v == "order"; });
    return out;
  }();
  return m;
}

// Values split on ',' (any of them); repeated parameters all hold.
std::vector<std::string_view> alternatives(std::string_view v) {
  std::vector<std::string_view> out;
  for (;;) {
    const auto comma = v.find(',');
    out.push_back(v.substr(0, comma));
    if (comma == std::string_view::npos) break;
    v.remove_prefix(comma + 1);
  }
  return out;
}

result<api::response> search(const rf::service& svc, api::audit_log& audit, api::request& req, resource_kind k,
                             const std::map<std::string, matcher, std::less<>>& params,
                             const config::loaded_consortium& cfg, const time_zone& zone) {
  struct filter {
    const matcher* match;
    std::vector<std::string_view> any_of;
  };
  std::vector<filter> filters;
  for (const auto& [name, value] : req.query) {
    if (name == "_count" || name == "_format" || name == "_pretty") continue;
    const auto it = params.find(name);
    if (it == params.end()) {
      std::string known;
      for (const auto& [n, m] : params) known += (known.empty() ? "" : ", ") + n;
      return fail(errc::invalid_argument,
                  "unknown search parameter " + name + " for " + std::string(kind_name(k)) + " (" + known + ", _count)",
                  name);
    }
    filters.push_back(filter{.match = &it->second, .any_of = alternatives(value)});
  }
  const std::size_t count = req.count_param("_count", 100, 500);
  const auto& p = *req.principal;
  std::vector<std::string> ids;
  std::size_t total = 0;
  auto found = svc.read([&](const rf::ledger& l) {
    std::vector<json> out;
    const bool everyone = p.role == api::role::operator_ && p.hospital.value().empty();
    for (const auto* r : everyone ? l.all(all_referrals) : l.referrals_of(p.hospital.value(), all_referrals)) {
      if (!referral::sees(p, *r)) continue;
      const bool match = std::all_of(filters.begin(), filters.end(), [&](const filter& f) {
        return std::any_of(f.any_of.begin(), f.any_of.end(), [&](std::string_view v) { return (*f.match)(*r, v); });
      });
      if (!match) continue;
      ++total;
      if (out.size() >= count) continue;
      ids.push_back(r->id);
      out.push_back(render(k, *r, cfg, zone));
    }
    return out;
  });
  audit.record(req, "search", kind_name(k), ids);
  return api::response::fhir(bundle(req, found, total));
}

}  // namespace

void add_referral_fhir_routes(api::router& routes, rf::service& svc, api::audit_log& audit,
                              std::chrono::milliseconds timeout) {
  // The ledger keeps a reference to the consortium, which outlives the routes.
  const config::loaded_consortium* cfg = svc.read([](const rf::ledger& l) { return &l.config(); });
  const time_zone zone = time_zone::load(cfg->consortium.time_zone()).value_or(time_zone());

  for (const auto k : {resource_kind::service_request, resource_kind::task}) {
    const std::string base = "/fhir/r4/" + std::string(kind_name(k));
    auto read = [&svc, &audit, cfg, zone, k](api::request& req) -> result<api::response> {
      const std::string id(req.path_param("id"));
      auto r = visible_referral(svc, *req.principal, id);
      const std::vector<std::string> ids{id};
      if (!r) {
        audit.record(req, "read", kind_name(k), ids, "not_found");
        return fail(errc::not_found, "no " + std::string(kind_name(k)) + " " + id + " of your hospital", "id");
      }
      // vread: only the current version is kept (the Task's history is the referral's timeline).
      if (const auto vid = req.path_param("vid"); !vid.empty() && vid != std::to_string(r->version)) {
        audit.record(req, "read", kind_name(k), ids, "not_found");
        return fail(errc::not_found,
                    std::string(kind_name(k)) + " " + id + " is at version " + std::to_string(r->version) +
                        "; earlier versions are not kept",
                    "vid");
      }
      audit.record(req, "read", kind_name(k), ids);
      auto resp = api::response::fhir(render(k, *r, *cfg, zone));
      resp.with_header("ETag", "W/\"" + std::to_string(r->version) + "\"");
      return resp;
    };
    routes.add(verb::get, base + "/{id}", read);
    routes.add(verb::get, base + "/{id}/_history/{vid}", read);
    routes.add(verb::get, base, [&svc, &audit, cfg, zone, k](api::request& req) -> result<api::response> {
      return search(svc, audit, req, k, k == resource_kind::task ? task_params() : service_request_params(), *cfg, zone);
    });
  }

  routes.add(verb::post, "/fhir/r4/ServiceRequest",
             [&svc, &audit, timeout, cfg, zone](api::request& req) -> asio::awaitable<result<api::response>> {
               auto body = body_json(req);
               if (!body) co_return std::unexpected(body.error());
               auto in = read_service_request(*body, *cfg, zone);
               if (!in) co_return std::unexpected(in.error());
               const auto& p = *req.principal;
               if (in->status != "active" && in->status != "draft") {
                 co_return fail(errc::invalid_argument, "a new referral is active (sent at once) or draft",
                                "ServiceRequest.status");
               }
               std::string from = in->requester.empty() ? p.hospital.value() : in->requester;
               if (p.role != api::role::operator_ && from != p.hospital.value()) {
                 co_return fail(errc::permission_denied,
                                "ServiceRequest.requester is your own hospital, Organization/" + p.hospital.value(),
                                "ServiceRequest.requester");
               }
               if (from.empty()) {
                 co_return fail(errc::invalid_argument, "ServiceRequest.requester (the referring hospital) is required",
                                "ServiceRequest.requester");
               }
               if (in->performer.empty()) {
                 co_return fail(errc::invalid_argument,
                                "ServiceRequest.performer names the hospital referred to, Organization/<id>",
                                "ServiceRequest.performer");
               }
               const auto key = req.header("Idempotency-Key");
               const std::string id =
                   key.empty() ? random_id("ref-") : stable_id("ref-", p.id.value() + "\n" + std::string(key));
               auto cmd = command_for(req, ev::REFERRAL_ACTION_CREATE, id, svc.now());
               auto* q = cmd.mutable_referral_command()->mutable_request();
               *q = in->details;
               q->set_referral_id(id);
               q->set_from_hospital(from);
               q->set_to_hospital(in->performer);
               q->set_linked_referral_id(in->based_on);
               q->set_direction(in->direction);
               q->set_state(in->status == "draft" ? ev::REFERRAL_STATE_DRAFT : ev::REFERRAL_STATE_REQUESTED);
               *cmd.mutable_subject() = in->subject;
               // (g++ 12 cannot brace-initialize a vector inside a co_await.)
               std::vector<ev::Envelope> cmds;
               cmds.push_back(std::move(cmd));
               co_return co_await run_commands(svc, audit, req, std::move(cmds), resource_kind::service_request, "create",
                                               status::created, timeout, *cfg, zone);
             });

  routes.add(
      verb::put, "/fhir/r4/ServiceRequest/{id}",
      [&svc, &audit, timeout, cfg, zone](api::request& req) -> asio::awaitable<result<api::response>> {
        const std::string id(req.path_param("id"));
        auto body = body_json(req);
        if (!body) co_return std::unexpected(body.error());
        if (body->value("id", json()) != id) {
          co_return fail(errc::invalid_argument, "the body must be ServiceRequest " + id, "ServiceRequest.id");
        }
        auto in = read_service_request(*body, *cfg, zone);
        if (!in) co_return std::unexpected(in.error());
        const std::vector<std::string> ids{id};
        auto cur = visible_referral(svc, *req.principal, id);
        if (!cur) {
          audit.record(req, "update", "ServiceRequest", ids, "not_found");
          co_return fail(errc::not_found, "no ServiceRequest " + id + " of your hospital", "id");
        }
        auto version = if_match(req);
        if (!version) co_return std::unexpected(version.error());
        if (*version && **version != cur->version) {
          audit.record(req, "update", "ServiceRequest", ids, "version_mismatch");
          co_return api::problem_response(status::precondition_failed, "version_mismatch", "conflict",
                                          "ServiceRequest " + id + " is at version " + std::to_string(cur->version) +
                                              ", not " + std::to_string(**version) + "; read it again",
                                          "If-Match", req.path, req.request_id);
        }
        // Who and whom a referral is between, and what it follows, do not change.
        for (const auto& [given, kept, where] :
             {std::tuple{&in->requester, &cur->from_hospital, "ServiceRequest.requester"},
              std::tuple{&in->performer, &cur->to_hospital, "ServiceRequest.performer"},
              std::tuple{&in->based_on, &cur->linked_referral_id, "ServiceRequest.basedOn"}}) {
          if (!given->empty() && *given != *kept) {
            co_return fail(errc::unsupported,
                           std::string(where) + " of a referral does not change; send a new ServiceRequest instead",
                           where);
          }
        }
        const std::string_view now_status = service_request_status(cur->st);
        const auto details = overlay(cur->request, *in);
        // The enterprise id is the identity index's, not the resource's.
        ev::Subject subject = in->subject;
        subject.set_enterprise_patient_id(cur->subject.enterprise_patient_id());
        std::vector<ev::ReferralAction> actions;
        const bool changed = !google::protobuf::util::MessageDifferencer::Equals(details, cur->request) ||
                             !google::protobuf::util::MessageDifferencer::Equals(subject, cur->subject);
        if (in->status == "revoked") {
          if (now_status != "revoked") actions.push_back(ev::REFERRAL_ACTION_CANCEL);
        } else if (in->status == "active" && cur->st == ev::REFERRAL_STATE_DRAFT) {
          if (changed) actions.push_back(ev::REFERRAL_ACTION_MODIFY);
          actions.push_back(ev::REFERRAL_ACTION_SUBMIT);
        } else if (in->status == now_status) {
          if (changed) actions.push_back(ev::REFERRAL_ACTION_MODIFY);
        } else {
          co_return fail(errc::unsupported,
                         "a ServiceRequest is revoked (cancel) or made active (send a draft) here; the referral's "
                         "progress (" +
                             std::string(now_status) + " -> " + in->status + ") is its Task: PUT /fhir/r4/Task/" + id +
                             " with the new status and businessStatus",
                         "ServiceRequest.status");
        }
        if (actions.empty()) {
          audit.record(req, "update", "ServiceRequest", ids, "unchanged");
          co_return resource_response(req, resource_kind::service_request, *cur, *cfg, zone, status::ok);
        }
        std::vector<ev::Envelope> cmds;
        for (std::size_t i = 0; i < actions.size(); ++i) {
          auto cmd = command_for(req, actions[i], id, svc.now(), static_cast<int>(i));
          auto* c = cmd.mutable_referral_command();
          c->set_source_status("ServiceRequest.status/" + in->status);
          // Each decision moves the version on by one: command i expects the If-Match version + i.
          if (*version) c->set_expected_version(**version + i);
          if (actions[i] == ev::REFERRAL_ACTION_MODIFY) {
            *c->mutable_request() = details;
            *cmd.mutable_subject() = subject;
          }
          cmds.push_back(std::move(cmd));
        }
        co_return co_await run_commands(svc, audit, req, std::move(cmds), resource_kind::service_request, "update", status::ok,
                                        timeout, *cfg, zone);
      });

  routes.add(verb::put, "/fhir/r4/Task/{id}",
             [&svc, &audit, timeout, cfg, zone](api::request& req) -> asio::awaitable<result<api::response>> {
               const std::string id(req.path_param("id"));
               auto body = body_json(req);
               if (!body) co_return std::unexpected(body.error());
               if (body->value("resourceType", json()) != "Task" || body->value("id", json()) != id) {
                 co_return fail(errc::invalid_argument, "the body must be Task " + id, "Task.id");
               }
               const std::vector<std::string> ids{id};
               auto cur = visible_referral(svc, *req.principal, id);
               if (!cur) {
                 audit.record(req, "update", "Task", ids, "not_found");
                 co_return fail(errc::not_found, "no Task " + id + " of your hospital", "id");
               }
               auto version = if_match(req);
               if (!version) co_return std::unexpected(version.error());
               if (*version && **version != cur->version) {
                 audit.record(req, "update", "Task", ids, "version_mismatch");
                 co_return api::problem_response(status::precondition_failed, "version_mismatch", "conflict",
                                                 "Task " + id + " is at version " + std::to_string(cur->version) +
                                                     ", not " + std::to_string(**version) + "; read it again",
                                                 "If-Match", req.path, req.request_id);
               }
               auto change = read_task_change(*body, *cur, zone);
               if (!change) co_return std::unexpected(change.error());
               if (!*change) {
                 audit.record(req, "update", "Task", ids, "unchanged");
                 co_return resource_response(req, resource_kind::task, *cur, *cfg, zone, status::ok);
               }
               const auto& f = (*change)->fields;
               auto cmd = command_for(req, f.action(), id, svc.now());
               auto* c = cmd.mutable_referral_command();
               const std::string command_id = c->command_id();
               c->MergeFrom(f);
               c->set_command_id(command_id);
               if (*version) c->set_expected_version(**version);
               std::vector<ev::Envelope> cmds;
               cmds.push_back(std::move(cmd));
               co_return co_await run_commands(svc, audit, req, std::move(cmds), resource_kind::task, "update", status::ok,
                                               timeout, *cfg, zone);
             });
}

}  // namespace yilian::app
