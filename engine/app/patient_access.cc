#include "engine/app/patient_access.h"

#include <ctime>

#include <nlohmann/json.hpp>

#include "adapters/webhook/signing.h"
#include "engine/api/problem.h"
#include "engine/app/request_json.h"

namespace yilian::app {

namespace {

using api::http::verb;
using json = nlohmann::json;

constexpr std::string_view enterprise_system = "urn:yilian:enterprise-patient";

std::string utc_text(std::chrono::system_clock::time_point t) {
  const auto secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// The reference as the operator wrote it (a variable name or a path; never the value).
std::string reference_text(const config::v1::SecretRef& ref) {
  if (ref.has_env()) return "{env: " + ref.env() + "}";
  if (ref.has_file()) return "{file: " + ref.file() + "}";
  return "(none)";
}

}  // namespace

patient_tokens patient_tokens_from(const config::loaded_consortium& cfg) {
  patient_tokens out;
  const auto& c = cfg.consortium;
  if (!c.has_patient_access() || !c.patient_access().has_token_key()) {
    out.unavailable = "patient access is not configured (patient_access.token_key in consortium.yaml)";
    return out;
  }
  const auto& pa = c.patient_access();
  if (pa.token_lifetime_seconds() > 0) out.lifetime = std::chrono::seconds(pa.token_lifetime_seconds());
  // The same resolution as the webhooks' signing secrets.
  auto secret = webhook::resolve_secret(pa.token_key(), cfg);
  if (!secret) {
    out.unavailable = "patient_access.token_key " + reference_text(pa.token_key()) + ": " + secret.error().message;
    return out;
  }
  auto key = api::patient_token_key::from_secret(*secret);
  if (!key) {
    out.unavailable = "patient_access.token_key " + reference_text(pa.token_key()) + ": " + key.error().message;
    return out;
  }
  out.key = std::make_shared<const api::patient_token_key>(std::move(*key));
  return out;
}

result<person_filter> patient_person(const api::principal& p, const identity::directory* directory) {
  if (p.role != api::role::patient) {
    return fail(errc::invalid_argument, "not a patient principal", "principal");
  }
  // A patient names themself through their token.
  return person_filter::of(p.id.value(), directory);
}

void add_patient_session_routes(api::router& routes, patient_session_options options, api::audit_log& audit) {
  auto o = std::make_shared<const patient_session_options>(std::move(options));
  routes.add(
      verb::post, "/api/v1/patient-sessions",
      [o, &audit](api::request& req) -> result<api::response> {
        if (!o->tokens.key) {
          audit.record(req, "create", "PatientSession", {}, "unavailable");
          // Answered, not failed: the engine said why once at startup, and an
          // error line per request would repeat it for every try.
          return api::error_response(error::make(errc::unavailable,
                                                 "patient sessions are not available: " + o->tokens.unavailable,
                                                 "patient_access.token_key"),
                                     req.path, req.request_id);
        }
        if (o->directory == nullptr || (o->ready && !o->ready())) {
          audit.record(req, "create", "PatientSession", {}, "unavailable");
          return fail(errc::unavailable, "the identity index is still reading its log; retry shortly", "identifier");
        }
        auto body = parse_body(req, true);
        if (!body) return std::unexpected(body.error());
        const auto it = body->find("identifier");
        if (it == body->end() || !it->is_object()) {
          return fail(errc::invalid_argument, "identifier: required, {\"system\": ..., \"value\": ...}", "identifier");
        }
        auto system = string_field(*it, "system", true);
        if (!system) return fail(errc::invalid_argument, "identifier.system: required (a string)", "identifier.system");
        auto value = string_field(*it, "value", true);
        // Errors never repeat the value: it is often an ID number.
        if (!value || value->empty()) {
          return fail(errc::invalid_argument, "identifier.value: required (a string)", "identifier.value");
        }
        // A record key (a hospital's MRN, ...) names one person; a resident
        // ID or card is a person-level identifier that several persons may
        // hold until a review settles it: only a single holder gets a token.
        std::string enterprise_id;
        if (*system == enterprise_system) {
          if (auto x = o->directory->person(*value)) enterprise_id = x->enterprise_id;
        } else {
          enterprise_id = o->directory->enterprise_id_of(*system, *value);
          if (enterprise_id.empty()) {
            const auto holders = o->directory->persons_holding(*system, *value);
            if (holders.size() == 1) enterprise_id = holders.front();
          }
        }
        if (enterprise_id.empty()) {
          // Unknown system, unknown value, or a record not linked yet: one answer.
          audit.record(req, "create", "PatientSession", {}, "not_found");
          return fail(errc::not_found, "no patient holds this identifier", "identifier");
        }
        const auto now = o->now ? o->now() : std::chrono::system_clock::now();
        const auto expires =
            std::chrono::time_point_cast<std::chrono::seconds>(now) + o->tokens.lifetime;
        const auto token = o->tokens.key->sign(api::patient_claims{
            .enterprise_id = enterprise_id, .expires_at = expires, .gateway = req.principal->id.value(), .nonce = {}});
        const std::vector<std::string> ids{enterprise_id};
        audit.record(req, "create", "PatientSession", ids);
        auto resp = api::response::json(json{{"token", token},
                                             {"token_type", "Bearer"},
                                             {"expires_in", o->tokens.lifetime.count()},
                                             {"expires_at", utc_text(expires)},
                                             {"enterprise_id", enterprise_id}},
                                        api::http::status::created);
        resp.with_header("Cache-Control", "no-store");
        return resp;
      },
      api::route_options{.roles = {api::role::patient_gateway}});
}

}  // namespace yilian::app
