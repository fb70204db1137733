#include "engine/app/patient_fhir.h"

#include <algorithm>
#include <cctype>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/app/fhir_demographics.h"
#include "engine/api/problem.h"
#include "engine/app/patient_support.h"

namespace yilian::app {

namespace {

namespace wi = workflows::identity;
namespace ev = events::v1;
using api::http::status;
using api::http::verb;
using json = nlohmann::json;

constexpr std::string_view identifier_type_system = "urn:yilian:identifier-type";  // as in the referral resources
constexpr std::string_view v2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203";
using fhir::name_representation;
constexpr std::string_view match_grade = "http://hl7.org/fhir/StructureDefinition/match-grade";
constexpr std::string_view v3_observation_value = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";

std::string base_url(const api::request& req) {
  const auto host = req.header(api::http::field::host);
  return "http://" + std::string(host.empty() ? "localhost" : host) + "/fhir/r4/";
}

json organization_ref(const config::loaded_consortium& cfg, const std::string& hospital) {
  json j{{"reference", "Organization/" + hospital}};
  if (const auto* h = cfg.hospital(hospital); h != nullptr && !h->name().empty()) j["display"] = h->name();
  return j;
}

json type_json(ev::IdentifierType t) {
  switch (t) {
    case ev::IDENTIFIER_TYPE_UNSPECIFIED: return nullptr;
    case ev::IDENTIFIER_TYPE_MRN: return {{"coding", json::array({{{"system", v2_0203}, {"code", "MR"}}})}};
    case ev::IDENTIFIER_TYPE_PASSPORT: return {{"coding", json::array({{{"system", v2_0203}, {"code", "PPN"}}})}};
    default:
      return {{"coding", json::array({{{"system", identifier_type_system}, {"code", patients::type_name(t)}}})}};
  }
}

// An Identifier; `hospital` is the record's (the assigner of a hospital's own
// number when the event did not name one).
json identifier_json(const ev::Identifier& id, const std::string& hospital, const config::loaded_consortium& cfg) {
  json j{{"system", id.system()}, {"value", id.value()}};
  const auto type = id.type() != ev::IDENTIFIER_TYPE_UNSPECIFIED ? id.type() : patients::type_of_system(cfg, id.system());
  if (auto t = type_json(type); !t.is_null()) j["type"] = std::move(t);
  std::string assigner = id.assigner();
  if (assigner.empty() && type == ev::IDENTIFIER_TYPE_MRN) assigner = hospital;
  if (!assigner.empty()) j["assigner"] = organization_ref(cfg, assigner);
  return j;
}

json enterprise_identifier(const std::string& id) {
  return json{{"use", "official"},
              {"system", patients::enterprise_system},
              {"value", id},
              {"type", type_json(ev::IDENTIFIER_TYPE_ENTERPRISE)}};
}

// FHIR date: YYYY, YYYY-MM or YYYY-MM-DD.
bool fhir_date(std::string_view d) {
  auto digits = [&](std::size_t from, std::size_t n) {
    return std::all_of(d.begin() + static_cast<std::ptrdiff_t>(from), d.begin() + static_cast<std::ptrdiff_t>(from + n),
                       [](char c) { return c >= '0' && c <= '9'; });
  };
  if (d.size() == 4) return digits(0, 4);
  if (d.size() == 7) return digits(0, 4) && d[4] == '-' && digits(5, 2);
  if (d.size() == 10) return digits(0, 4) && d[4] == '-' && digits(5, 2) && d[7] == '-' && digits(8, 2);
  return false;
}


void push_unique(json& list, json item) {
  if (std::find(list.begin(), list.end(), item) == list.end()) list.push_back(std::move(item));
}

// The person as a Patient: every record's identifiers, the demographics of
// the records the caller may see.
json patient_resource(const wi::person_info& p, const patients::access& who, const config::loaded_consortium& cfg) {
  json ids = json::array({enterprise_identifier(p.enterprise_id)});
  std::set<std::string> seen;
  json names = json::array(), telecom = json::array(), addresses = json::array();
  std::string birth_date, gender;
  bool withheld = false, deceased = false;
  for (const auto& r : p.records) {
    for (const auto& id : r.identifiers) {
      if (!seen.insert(id.system() + "|" + id.value()).second) continue;
      ids.push_back(identifier_json(id, r.hospital, cfg));
    }
    if (!who.sees_demographics(r)) {
      withheld = true;
      continue;
    }
    const auto& d = r.demographics;
    const auto& n = d.name();
    if (!n.hanzi().empty() || !n.family().empty() || !n.given().empty()) {
      json hn{{"extension", json::array({{{"url", name_representation}, {"valueCode", "IDE"}}})}};
      if (!n.hanzi().empty()) hn["text"] = n.hanzi();
      if (!n.family().empty()) hn["family"] = n.family();
      if (!n.given().empty()) hn["given"] = json::array({n.given()});
      push_unique(names, std::move(hn));
    }
    if (!n.pinyin().empty()) {
      push_unique(names, json{{"extension", json::array({{{"url", name_representation}, {"valueCode", "ABC"}}})},
                              {"text", n.pinyin()}});
    }
    if (birth_date.empty() && fhir_date(d.birth_date())) birth_date = d.birth_date();
    if (gender.empty()) gender = fhir::gender_code(d.sex());
    for (const auto& t : d.telecom()) {
      if (t.value().empty()) continue;
      json c = fhir::contact_point(t);
      push_unique(telecom, std::move(c));
    }
    for (const auto& a : d.addresses()) {
      json j = fhir::address(a);
      if (!j.empty()) push_unique(addresses, std::move(j));
    }
    deceased = deceased || d.deceased() || d.has_deceased_at();
  }
  json out{{"resourceType", "Patient"}, {"id", p.enterprise_id}};
  if (withheld) {
    // Some records' demographics are not the caller's to see (sharing rules).
    out["meta"] = {{"security", json::array({{{"system", v3_observation_value},
                                              {"code", "REDACTED"},
                                              {"display", "redacted"}}})}};
  }
  out["identifier"] = std::move(ids);
  out["active"] = true;
  if (!names.empty()) out["name"] = std::move(names);
  if (!telecom.empty()) out["telecom"] = std::move(telecom);
  if (!gender.empty()) out["gender"] = gender;
  if (!birth_date.empty()) out["birthDate"] = birth_date;
  if (deceased) out["deceasedBoolean"] = true;
  if (!addresses.empty()) out["address"] = std::move(addresses);
  return out;
}

json bundle(const api::request& req, const std::vector<json>& entries_in) {
  json entries = json::array();
  const std::string base = base_url(req);
  for (const auto& e : entries_in) {
    json entry{{"fullUrl", base + "Patient/" + e["resource"]["id"].get<std::string>()}, {"resource", e["resource"]}};
    entry["search"] = e.contains("search") ? e["search"] : json{{"mode", "match"}};
    entries.push_back(std::move(entry));
  }
  const auto host = req.header(api::http::field::host);
  const std::string self = "http://" + std::string(host.empty() ? "localhost" : host) + std::string(req.target());
  return json{{"resourceType", "Bundle"},
              {"type", "searchset"},
              {"total", entries.size()},
              {"link", json::array({{{"relation", "self"}, {"url", self}}})},
              {"entry", std::move(entries)}};
}

// An OperationOutcome with the exact issue code and diagnostics PIXm names.
api::response pix_error(const api::request& req, status s, std::string_view code, std::string_view issue,
                        std::string_view diagnostics, std::string_view where) {
  return api::problem_response(s, code, issue, diagnostics, where, req.path, req.request_id);
}

result<api::response> fhir_search(wi::service& svc, api::audit_log& audit, api::request& req,
                                  const config::loaded_consortium& cfg) {
  static constexpr std::string_view known[] = {"identifier", "_id", "family",  "given",   "name",   "birthdate",
                                               "gender",     "phone", "_count", "_format", "_pretty"};
  for (const auto& [name, value] : req.query) {
    if (std::find(std::begin(known), std::end(known), name) != std::end(known)) continue;
    return fail(errc::invalid_argument,
                "unknown search parameter " + name +
                    " for Patient (identifier, _id, family, given, name, birthdate, gender, phone, _count)",
                name);
  }
  if (auto r = patients::ready(svc); !r) return std::unexpected(r.error());
  const patients::access who(*req.principal);
  const std::size_t count = req.count_param("_count", 10, 50);
  std::vector<json> found;
  std::vector<std::string> ids;

  const auto token = req.query_param("identifier");
  const auto by_id = req.query_param("_id");
  if (token || by_id) {
    for (const auto* other : {"family", "given", "name", "birthdate", "gender", "phone"}) {
      if (req.query_param(other)) {
        return fail(errc::invalid_argument, "search by identifier / _id or by demographics, not both", other);
      }
    }
    std::string system(patients::enterprise_system), value(by_id.value_or(""));
    if (token) {
      auto t = patients::parse_token(*token, "identifier");
      if (!t) return std::unexpected(t.error());
      if (by_id) return fail(errc::invalid_argument, "identifier or _id, not both", "_id");
      system = std::move(t->first);
      value = std::move(t->second);
    }
    auto p = svc.read([&](const wi::view& v) { return patients::visible_person_of(v, who, system, value); });
    if (p) {
      ids.push_back(p->enterprise_id);
      found.push_back(json{{"resource", patient_resource(*p, who, cfg)}});
    }
    audit.record(req, "search", "Patient", ids);
    return api::response::fhir(bundle(req, found));
  }

  ev::Demographics q;
  if (auto v = req.query_param("family"); v && !v->empty()) q.mutable_name()->set_family(std::string(*v));
  if (auto v = req.query_param("given"); v && !v->empty()) q.mutable_name()->set_given(std::string(*v));
  if (auto v = req.query_param("name"); v && !v->empty()) {
    const bool hanzi = std::any_of(v->begin(), v->end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
    if (hanzi) q.mutable_name()->set_hanzi(std::string(*v));
    else q.mutable_name()->set_pinyin(std::string(*v));
  }
  if (auto v = req.query_param("birthdate"); v && !v->empty()) {
    std::string_view d = *v;
    if (d.starts_with("eq")) d.remove_prefix(2);
    if (!fhir_date(d)) {
      return fail(errc::invalid_argument, "birthdate is a date (YYYY-MM-DD, optionally eq); ranges are not supported",
                  "birthdate");
    }
    q.set_birth_date(std::string(d));
  }
  if (auto v = req.query_param("gender"); v && !v->empty()) {
    if (*v == "male") q.set_sex(ev::SEX_MALE);
    else if (*v == "female") q.set_sex(ev::SEX_FEMALE);
    else if (*v == "other") q.set_sex(ev::SEX_OTHER);
    else if (*v == "unknown") q.set_sex(ev::SEX_UNKNOWN);
    else return fail(errc::invalid_argument, "gender is male, female, other or unknown", "gender");
  }
  if (auto v = req.query_param("phone"); v && !v->empty()) {
    auto* t = q.add_telecom();
    t->set_system("phone");
    t->set_value(std::string(*v));
  }
  const auto& n = q.name();
  if (n.family().empty() && n.given().empty() && n.hanzi().empty() && n.pinyin().empty() && q.birth_date().empty() &&
      q.telecom_size() == 0) {
    return fail(errc::invalid_argument,
                "search Patient by identifier=<system>|<value>, _id, or demographics (family, given, name, "
                "birthdate, phone; gender narrows)",
                "identifier");
  }
  const std::size_t ask = who.everything() ? count * 2 : std::min<std::size_t>(count * 5, 250);
  svc.read([&](const wi::view& v) {
    for (const auto& hit : v.search(q, {}, ask)) {
      if (found.size() >= count) break;
      // A FHIR search answers matches: what the index would link or queue.
      if (hit.verdict != "link" && hit.verdict != "review") continue;
      if (!who.may_read(hit.person)) continue;
      json search{{"mode", "match"},
                  {"extension", json::array({{{"url", match_grade},
                                              {"valueCode", hit.verdict == "link" ? "probable" : "possible"}}})}};
      ids.push_back(hit.person.enterprise_id);
      found.push_back(json{{"resource", patient_resource(hit.person, who, cfg)}, {"search", std::move(search)}});
    }
  });
  audit.record(req, "search", "Patient", ids);
  return api::response::fhir(bundle(req, found));
}

result<api::response> pix(wi::service& svc, api::audit_log& audit, api::request& req,
                          const config::loaded_consortium& cfg) {
  for (const auto& [name, value] : req.query) {
    if (name == "sourceIdentifier" || name == "targetSystem" || name == "_format" || name == "_pretty") continue;
    return fail(errc::invalid_argument, "unknown parameter " + name + " for $ihe-pix (sourceIdentifier, targetSystem)",
                name);
  }
  const auto sources = req.query_params("sourceIdentifier");
  if (sources.size() != 1) {
    return fail(errc::invalid_argument, "$ihe-pix takes exactly one sourceIdentifier=<system>|<value>",
                "sourceIdentifier");
  }
  auto source = patients::parse_token(sources.front(), "sourceIdentifier");
  if (!source) return std::unexpected(source.error());
  const std::vector<std::string> none;
  if (!patients::known_system(cfg, source->first)) {
    audit.record(req, "pix", "Patient", none, "unknown_domain");
    return pix_error(req, status::bad_request, "unknown_domain", "code-invalid",
                     "sourceIdentifier Assigning Authority not found", "sourceIdentifier");
  }
  std::vector<std::string> targets;
  for (const auto t : req.query_params("targetSystem")) {
    // A repeated parameter or a comma list: either names several domains.
    std::string_view rest = t;
    for (;;) {
      const auto comma = rest.find(',');
      const auto one = rest.substr(0, comma);
      if (!one.empty()) targets.emplace_back(one);
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  for (const auto& t : targets) {
    if (!patients::known_system(cfg, t)) {
      audit.record(req, "pix", "Patient", none, "unknown_target_system");
      return pix_error(req, status::forbidden, "unknown_target_system", "code-invalid", "targetSystem not found",
                       "targetSystem");
    }
  }
  if (auto r = patients::ready(svc); !r) return std::unexpected(r.error());
  const patients::access who(*req.principal);
  // The directory's cross-reference: the same the MLLP PIX query (QBP^Q23) answers.
  auto xref = source->first == patients::enterprise_system ? svc.person(source->second)
                                                           : svc.cross_reference_of(source->first, source->second);
  if (!xref || !who.may_read(*xref)) {
    audit.record(req, "pix", "Patient", none, "not_found");
    return pix_error(req, status::not_found, "not_found", "not-found", "sourceIdentifier Patient Identifier not found",
                     "sourceIdentifier");
  }
  auto wanted = [&](std::string_view system) {
    return targets.empty() || std::find(targets.begin(), targets.end(), system) != targets.end();
  };
  json params = json::array();
  std::set<std::string> seen{source->first + "|" + source->second};
  if (!targets.empty() && wanted(patients::enterprise_system) && source->first != patients::enterprise_system) {
    params.push_back({{"name", "targetIdentifier"}, {"valueIdentifier", {{"system", patients::enterprise_system},
                                                                         {"value", xref->enterprise_id}}}});
  }
  for (const auto& id : xref->identifiers) {
    if (!wanted(id.system) || !seen.insert(id.system + "|" + id.value).second) continue;
    json ident{{"system", id.system}, {"value", id.value}};
    ev::IdentifierType type{};
    if (!id.type.empty() && ev::IdentifierType_Parse("IDENTIFIER_TYPE_" + id.type, &type)) {
      if (auto t = type_json(type); !t.is_null()) ident["type"] = std::move(t);
      if (type == ev::IDENTIFIER_TYPE_MRN && !id.hospital.empty()) ident["assigner"] = organization_ref(cfg, id.hospital);
    }
    params.push_back({{"name", "targetIdentifier"}, {"valueIdentifier", std::move(ident)}});
  }
  if (!params.empty()) {
    params.insert(params.begin(), json{{"name", "targetId"}, {"valueReference", {{"reference", "Patient/" + xref->enterprise_id}}}});
  }
  audit.record(req, "pix", "Patient", std::vector<std::string>{xref->enterprise_id});
  json out{{"resourceType", "Parameters"}};
  if (!params.empty()) out["parameter"] = std::move(params);
  return api::response::fhir(out);
}

}  // namespace

void add_patient_fhir_routes(api::router& routes, wi::service& svc, api::audit_log& audit,
                             const config::loaded_consortium& cfg) {
  const config::loaded_consortium* c = &cfg;  // outlives the routes

  routes.add(verb::get, "/fhir/r4/Patient/{id}", [&svc, &audit, c](api::request& req) -> result<api::response> {
    const std::string id(req.path_param("id"));
    if (auto r = patients::ready(svc); !r) return std::unexpected(r.error());
    const patients::access who(*req.principal);
    auto p = svc.read([&](const wi::view& v) { return patients::visible_person(v, who, id); });
    std::vector<std::string> ids{id};
    if (!p) {
      audit.record(req, "read", "Patient", ids, "not_found");
      return fail(errc::not_found, "no Patient " + id + " with a record of your hospital", "id");
    }
    if (p->enterprise_id != id) ids.push_back(p->enterprise_id);
    audit.record(req, "read", "Patient", ids);
    auto resp = api::response::fhir(patient_resource(*p, who, *c));
    // An id merged away answers the survivor, under its own id.
    if (p->enterprise_id != id) resp.with_header("Content-Location", base_url(req) + "Patient/" + p->enterprise_id);
    return resp;
  });

  routes.add(verb::get, "/fhir/r4/Patient",
             [&svc, &audit, c](api::request& req) -> result<api::response> {
               return fhir_search(svc, audit, req, *c);
             });

  routes.add(verb::get, "/fhir/r4/Patient/$ihe-pix",
             [&svc, &audit, c](api::request& req) -> result<api::response> { return pix(svc, audit, req, *c); });
}

}  // namespace yilian::app
