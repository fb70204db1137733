#include "engine/app/report_api.h"

#include <charconv>

#include <nlohmann/json.hpp>

#include "adapters/hl7v2/document.h"
#include "engine/api/auth.h"
#include "engine/app/patient_access.h"
#include "engine/app/patient_support.h"
#include "engine/core/time_zone.h"
#include "engine/store/ingest_store.h"
#include "engine/workflows/booking/ledger.h"

namespace yilian::app {

namespace {

namespace rp = workflows::reports;
namespace ev = events::v1;
using patients::coding_json;
using api::http::verb;
using json = nlohmann::json;

json claim_json(const ev::ClaimCheck& c, const std::string& url) {
  return json{{"title", c.title()}, {"content_type", c.content_type()}, {"size_bytes", c.size_bytes()},
              {"sha256", c.sha256()}, {"url", url}};
}

// The ED documents of a report version: ReportIssued.documents, else the
// attachments of its observations (the mapping puts them in both places or either).
std::vector<const ev::ClaimCheck*> documents_of(const ev::ReportIssued& r) {
  std::vector<const ev::ClaimCheck*> out;
  for (const auto& d : r.documents()) out.push_back(&d);
  if (out.empty()) {
    for (const auto& o : r.observations()) {
      if (o.has_attachment()) out.push_back(&o.attachment());
    }
  }
  return out;
}

json version_json(const rp::report_entry& entry, std::size_t index, const time_zone& zone) {
  const auto& v = entry.versions[index];
  const auto& r = v.event.report_issued();
  json observations = json::array();
  for (const auto& o : r.observations()) {
    json value = nullptr;
    if (o.has_coded()) value = coding_json(o.coded());
    if (o.value_case() == ev::Observation::kText) value = o.text();
    if (o.value_case() == ev::Observation::kNumber) value = o.number();
    observations.push_back({{"code", coding_json(o.code())},
                            {"value_type", o.value_type()},
                            {"value", value},
                            {"units", o.units()},
                            {"reference_range", o.reference_range()},
                            {"abnormal_flags", std::vector<std::string>(o.abnormal_flags().begin(), o.abnormal_flags().end())},
                            {"status", o.result_status()}});
  }
  json docs = json::array();
  std::size_t n = 0;
  for (const auto* d : documents_of(r)) {
    docs.push_back(claim_json(*d, "/api/v1/reports/" + entry.performing_hospital + "/" + entry.report_id +
                                      "/documents/" + std::to_string(++n) + "?version=" + std::to_string(index + 1)));
  }
  return json{{"version", index + 1},
              {"event_id", v.event_id},
              {"status", ev::ReportStatus_Name(v.status)},
              {"status_code", v.status_code},
              {"supersedes_event_id", v.supersedes},
              {"issued_at", workflows::booking::format_local(v.issued_at, zone)},
              {"exam", coding_json(r.catalogue_code().code().empty() ? r.exam() : r.catalogue_code())},
              {"findings", r.findings()},
              {"conclusion", r.conclusion()},
              {"observations", std::move(observations)},
              {"documents", std::move(docs)}};
}

json summary_json(const rp::report_entry& entry, const std::vector<std::string>& referrers, const time_zone& zone) {
  const auto& v = entry.latest();
  const auto& r = v.event.report_issued();
  return json{{"hospital", entry.performing_hospital},
              {"report_id", entry.report_id},
              {"status", ev::ReportStatus_Name(v.status)},
              {"version", entry.versions.size()},
              {"issued_at", workflows::booking::format_local(v.issued_at, zone)},
              {"exam", coding_json(r.catalogue_code().code().empty() ? r.exam() : r.catalogue_code())},
              {"referral_id", !r.referral_id().empty() ? r.referral_id() : v.event.correlation().referral_id()},
              {"accession", r.accession()},
              {"referring_hospitals", referrers}};
}

// `person`: the patient's person when the caller is a patient (else null).
// A patient's report is one whose latest version is about them: a correction
// that moves a report to another patient takes it away from the first.
bool may_read(const api::principal& p, const rp::report_entry& entry, const std::vector<std::string>& referrers,
              const person_filter* person) {
  if (p.role == api::role::patient) return person != nullptr && person->matches(entry.latest().event.subject());
  if (p.role == api::role::operator_ && p.hospital.value().empty()) return true;
  const std::string& h = p.hospital.value();
  if (h.empty()) return false;
  return h == entry.performing_hospital || std::find(referrers.begin(), referrers.end(), h) != referrers.end();
}

// Everyone who may read reports; a patient only through a patient token.
api::route_options readers() {
  return api::route_options{
      .roles = {api::role::hospital_system, api::role::clinic_user, api::role::operator_, api::role::patient}};
}

// The caller's person when the caller is a patient.
result<std::optional<person_filter>> person_of_caller(const api::principal& p, const identity::directory* patients) {
  if (p.role != api::role::patient) return std::optional<person_filter>{};
  auto f = patient_person(p, patients);
  if (!f) return std::unexpected(f.error());
  return std::optional<person_filter>(std::move(*f));
}

}  // namespace

void add_report_routes(api::router& routes, report_api_deps deps, api::audit_log& audit) {
  const time_zone zone = time_zone::load(deps.cfg.consortium.time_zone()).value_or(time_zone());
  auto shared = std::make_shared<report_api_deps>(std::move(deps));
  // Referrers are decided on the latest version (a correction may name the referral).
  auto referrers = [shared](const rp::report_entry& e) {
    return rp::referrers_of(e.latest().event, shared->bookings, shared->referrals);
  };

  routes.add(verb::get, "/api/v1/reports", [shared, referrers, zone, &audit](api::request& req) -> result<api::response> {
    const auto& p = *req.principal;
    auto person = person_of_caller(p, shared->patients);
    if (!person) return std::unexpected(person.error());
    const auto limit = req.count_param("limit", 100, 1000);
    // Newest first, a page at a time, until `limit` the caller may read: who
    // may read is decided per report (referrers come from the workflows), so
    // it cannot be a WHERE clause. At most kScanned reports are looked at.
    constexpr std::size_t kPage = 200;
    constexpr std::size_t kScanned = 100000;
    json list = json::array();
    std::vector<std::string> ids;
    std::optional<rp::newest_cursor> after;
    for (std::size_t scanned = 0; list.size() < limit && scanned < kScanned;) {
      auto page = shared->library.newest(kPage, after);
      if (!page) {
        audit.record(req, "search", "DiagnosticReport", ids, "error");
        return std::unexpected(page.error());
      }
      for (const auto& e : page->entries) {
        if (list.size() >= limit) break;
        ++scanned;
        const auto refs = referrers(e);
        if (!may_read(p, e, refs, *person ? &**person : nullptr)) continue;
        ids.push_back(e.key());
        list.push_back(summary_json(e, refs, zone));
      }
      if (!page->next) break;
      after = page->next;
    }
    audit.record(req, "search", "DiagnosticReport", ids);
    return api::response::json(json{{"reports", std::move(list)}});
  }, readers());

  // The entry if the caller may read it (audited as `action` either way).
  auto readable = [shared, referrers, &audit](api::request& req, std::string_view action,
                                              std::string_view resource) -> result<rp::report_entry> {
    const std::string hospital(req.path_param("hospital"));
    const std::string report_id(req.path_param("report_id"));
    const std::vector<std::string> ids{hospital + "/" + report_id};
    auto found = shared->library.find(hospital, report_id);
    if (!found) {
      audit.record(req, action, resource, ids, "error");
      return std::unexpected(found.error());
    }
    auto& entry = *found;
    auto person = person_of_caller(*req.principal, shared->patients);
    if (!person) return std::unexpected(person.error());
    if (!entry || !may_read(*req.principal, *entry, referrers(*entry), *person ? &**person : nullptr)) {
      audit.record(req, action, resource, ids, "not_found");
      return fail(errc::not_found, "no report " + report_id + " of " + hospital + " that you may read", "report_id");
    }
    audit.record(req, action, resource, ids);
    return std::move(*entry);
  };

  routes.add(verb::get, "/api/v1/reports/{hospital}/{report_id}",
             [readable, referrers, zone](api::request& req) -> result<api::response> {
               auto entry = readable(req, "read", "DiagnosticReport");
               if (!entry) return std::unexpected(entry.error());
               json versions = json::array();
               for (std::size_t i = 0; i < entry->versions.size(); ++i) versions.push_back(version_json(*entry, i, zone));
               auto body = summary_json(*entry, referrers(*entry), zone);
               body["versions"] = std::move(versions);
               return api::response::json(body);
             },
             readers());

  routes.add(verb::get, "/api/v1/reports/{hospital}/{report_id}/documents/{n}",
             [shared, readable](api::request& req) -> result<api::response> {
               auto entry = readable(req, "read", "Binary");
               if (!entry) return std::unexpected(entry.error());
               std::size_t version = entry->versions.size();
               if (auto v = req.query_param("version"); v && !v->empty()) {
                 std::size_t k = 0;
                 if (auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), k);
                     ec != std::errc() || k == 0 || k > entry->versions.size()) {
                   return fail(errc::invalid_argument, "version is 1 to " + std::to_string(entry->versions.size()), "version");
                 }
                 version = k;
               }
               const auto docs = documents_of(entry->versions[version - 1].event.report_issued());
               std::size_t n = 0;
               const auto text = req.path_param("n");
               if (auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
                   ec != std::errc() || n == 0 || n > docs.size()) {
                 return fail(errc::not_found, "the report has " + std::to_string(docs.size()) + " document(s)", "n");
               }
               const ev::ClaimCheck& claim = *docs[n - 1];
               const auto hash = claim.uri().find('#');
               if (!claim.uri().starts_with("raw://") || hash == std::string::npos) {
                 // A reference (RP): the document lives where the hospital said.
                 return api::response::json(json{{"url", claim.uri()}, {"content_type", claim.content_type()}})
                     .with_header("Location", claim.uri());
               }
               auto* raw = shared->raw_store ? shared->raw_store() : nullptr;
               if (raw == nullptr) return fail(errc::unavailable, "the raw message store is not open yet");
               auto bytes = raw->read_raw(claim.uri());
               if (!bytes) return std::unexpected(bytes.error());
               const auto* profile = shared->cfg.profile(entry->performing_hospital);
               const auto fallback = profile != nullptr ? profile->default_charset() : config::v1::CHARSET_UTF8;
               auto doc = hl7v2::extract_document(*bytes, std::string_view(claim.uri()).substr(hash + 1), fallback);
               if (!doc) return std::unexpected(doc.error());
               if (!claim.sha256().empty() && api::hash_token(*doc) != claim.sha256()) {
                 return fail(errc::corrupt, "the document does not match the SHA-256 its event recorded", "n");
               }
               api::response resp;
               resp.content_type = claim.content_type().empty() ? "application/octet-stream" : claim.content_type();
               resp.body = std::move(*doc);
               resp.with_header("X-Content-SHA256", claim.sha256());
               resp.with_header("Cache-Control", "no-store");
               return resp;
             },
             readers());
}

}  // namespace yilian::app
