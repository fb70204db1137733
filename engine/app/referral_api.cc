#include "engine/app/referral_api.h"

#include <nlohmann/json.hpp>

#include "engine/app/patient_access.h"
#include "engine/app/patient_support.h"
#include "engine/app/person_filter.h"
#include "engine/app/booking_support.h"
#include "engine/app/referral_support.h"
#include "engine/app/request_json.h"
#include "engine/app/workflow_submit.h"
#include "engine/core/ids.h"
#include "engine/core/time_zone.h"
#include "engine/workflows/booking/ledger.h"

namespace yilian::app {

namespace {

namespace asio = boost::asio;
namespace rf = workflows::referral;
namespace ev = events::v1;
using patients::coding_json;
using api::http::status;
using api::http::verb;
using json = nlohmann::json;

json time_json(workflows::seconds t, const time_zone& zone) {
  if (t == workflows::seconds{}) return nullptr;
  return workflows::booking::format_local(t, zone);
}

json referral_json(const rf::referral_view& r, const rf::ledger& l, const time_zone& zone, bool with_timeline) {
  const auto& cfg = l.config();
  auto hospital_name = [&](const std::string& id) {
    const auto* h = cfg.hospital(id);
    return h != nullptr ? h->name() : std::string();
  };
  const auto& q = r.request;
  json services = json::array();
  for (const auto& s : q.requested_services()) services.push_back(coding_json(s));
  json diagnoses = json::array();
  for (const auto& d : q.diagnoses()) diagnoses.push_back(coding_json(d));
  json j{{"id", r.id},
         {"direction", referral::direction_code(r.direction)},
         {"state", rf::state_name(r.st)},
         {"task_status", rf::fhir_task_status(r.st)},
         {"business_status", rf::fhir_business_status(r.st)},
         {"version", r.version},
         {"from_hospital", r.from_hospital},
         {"from_hospital_name", hospital_name(r.from_hospital)},
         {"to_hospital", r.to_hospital},
         {"to_hospital_name", hospital_name(r.to_hospital)},
         {"created_at", time_json(r.created_at, zone)},
         {"updated_at", time_json(r.updated_at, zone)},
         {"expires_at", time_json(r.expires_at, zone)},
         {"priority", referral::priority_code(q.priority())},
         {"reason", coding_json(q.reason())},
         {"reason_text", q.reason_text()},
         {"services", std::move(services)},
         {"diagnoses", std::move(diagnoses)},
         {"clinical_summary", q.clinical_summary()},
         {"linked_referral_id", r.linked_referral_id},
         {"followed_by", r.followed_by},
         {"booking_id", r.booking_id},
         {"appointment_start", time_json(r.appointment_start, zone)},
         {"encounter_id", r.encounter_id},
         {"report_ids", r.report_ids},
         {"patient", booking::demographics_json(q.patient())},
         {"identifiers", booking::identifiers_json(r.subject)}};
  if (with_timeline) {
    json timeline = json::array();
    for (const auto& s : r.history) {
      timeline.push_back({{"version", s.version},
                          {"from", rf::state_name(s.from)},
                          {"to", rf::state_name(s.to)},
                          {"action", rf::action_name(s.act)},
                          {"at", time_json(s.at, zone)},
                          {"actor", s.actor},
                          {"actor_hospital", s.actor_hospital},
                          {"reason", s.reason},
                          {"detail", s.detail}});
    }
    j["timeline"] = std::move(timeline);
  }
  return j;
}

result<ev::Coding> coding_from(const json& j, std::string_view where) {
  ev::Coding c;
  if (j.is_string()) {
    c.set_code(j.get<std::string>());
    return c;
  }
  if (!j.is_object()) return fail(errc::invalid_argument, std::string(where) + " must be a code or {code, display}", std::string(where));
  for (const auto& [k, setter] : {std::pair{"system", &ev::Coding::set_system<const std::string&>},
                                  std::pair{"code", &ev::Coding::set_code<const std::string&>},
                                  std::pair{"display", &ev::Coding::set_display<const std::string&>}}) {
    if (auto it = j.find(k); it != j.end() && it->is_string()) (c.*setter)(it->get<std::string>());
  }
  if (c.code().empty() && c.display().empty()) {
    return fail(errc::invalid_argument, std::string(where) + " needs a code or a display", std::string(where));
  }
  return c;
}

// The request part of a CREATE from the body.
result<void> read_request(const json& body, const api::principal& p, const time_zone& zone, ev::ReferralRequested& q,
                          ev::Subject& subject) {
  auto to = string_field(body, "to_hospital", true);
  if (!to) return std::unexpected(to.error());
  q.set_to_hospital(*to);
  q.set_from_hospital(p.hospital.value());
  if (p.role == api::role::operator_) {
    auto from = string_field(body, "from_hospital", p.hospital.value().empty());
    if (!from) return std::unexpected(from.error());
    if (!from->empty()) q.set_from_hospital(*from);
  }
  if (auto it = body.find("identifiers"); it != body.end()) {
    if (auto r = booking::read_identifiers(*it, subject); !r) return r;
  }
  if (subject.identifiers().empty()) {
    return fail(errc::invalid_argument, "identifiers: the patient needs at least one identifier", "identifiers");
  }
  if (auto it = body.find("patient"); it != body.end()) {
    if (auto r = booking::read_demographics(*it, *q.mutable_patient()); !r) return r;
  }
  for (const auto& [name, setter] :
       {std::pair{"reason_text", &ev::ReferralRequested::set_reason_text<const std::string&>},
        std::pair{"clinical_summary", &ev::ReferralRequested::set_clinical_summary<const std::string&>},
        std::pair{"linked_referral_id", &ev::ReferralRequested::set_linked_referral_id<const std::string&>}}) {
    auto v = string_field(body, name, false);
    if (!v) return std::unexpected(v.error());
    (q.*setter)(*v);
  }
  if (auto it = body.find("reason"); it != body.end() && !it->is_null()) {
    auto c = coding_from(*it, "reason");
    if (!c) return std::unexpected(c.error());
    *q.mutable_reason() = std::move(*c);
  }
  for (const auto& [name, list] : {std::pair{"services", q.mutable_requested_services()},
                                   std::pair{"diagnoses", q.mutable_diagnoses()}}) {
    const auto it = body.find(name);
    if (it == body.end() || it->is_null()) continue;
    if (!it->is_array()) return fail(errc::invalid_argument, std::string(name) + " must be an array", name);
    for (const auto& item : *it) {
      auto c = coding_from(item, name);
      if (!c) return std::unexpected(c.error());
      *list->Add() = std::move(*c);
    }
  }
  auto priority = string_field(body, "priority", false);
  if (!priority) return std::unexpected(priority.error());
  if (!priority->empty()) {
    bool known = false;
    for (auto pr : {ev::PRIORITY_ROUTINE, ev::PRIORITY_URGENT, ev::PRIORITY_ASAP, ev::PRIORITY_STAT}) {
      if (referral::priority_code(pr) == *priority) {
        q.set_priority(pr);
        known = true;
      }
    }
    if (!known) return fail(errc::invalid_argument, "priority is one of routine, urgent, asap, stat", "priority");
  }
  auto expires = string_field(body, "expires_at", false);
  if (!expires) return std::unexpected(expires.error());
  if (!expires->empty()) {
    auto t = workflows::booking::parse_instant(*expires, zone);
    if (!t) return fail(errc::invalid_argument, "expires_at: " + t.error().message, "expires_at");
    *q.mutable_expires_at() = workflows::to_timestamp(*t);
  }
  if (auto it = body.find("draft"); it != body.end() && it->is_boolean() && it->get<bool>()) {
    q.set_state(ev::REFERRAL_STATE_DRAFT);
  }
  return {};
}

asio::awaitable<result<api::response>> run_command(rf::service& svc, api::audit_log& audit, api::request& req,
                                                   const ev::Envelope& cmd, const time_zone& zone,
                                                   referral_api_options options, status ok_status) {
  const auto& c = cmd.referral_command();
  auto d = co_await submit_command<rf::service>(svc, cmd, c.command_id(), options.decision_timeout);
  if (!d) co_return std::unexpected(d.error());
  const std::vector<std::string> ids{c.referral_id()};
  if (d->refused) {
    audit.record(req, c.action() == ev::REFERRAL_ACTION_CREATE ? "create" : "update", "Referral", ids, d->refused->code);
    co_return booking::refusal_response(*d->refused, req);
  }
  audit.record(req, c.action() == ev::REFERRAL_ACTION_CREATE ? "create" : "update", "Referral", ids);
  if (!d->referral) co_return api::response::json(json{{"command_id", c.command_id()}, {"id", c.referral_id()}}, ok_status);
  auto body = svc.read([&](const rf::ledger& l) { return referral_json(*d->referral, l, zone, true); });
  auto resp = api::response::json(body, ok_status);
  resp.with_header("Location", "/api/v1/referrals/" + d->referral->id);
  co_return resp;
}

}  // namespace

void add_referral_routes(api::router& routes, rf::service& svc, api::audit_log& audit, referral_api_options options) {
  const time_zone zone =
      time_zone::load(svc.read([](const rf::ledger& l) { return l.config().consortium.time_zone(); })).value_or(time_zone());

  routes.add(verb::post, "/api/v1/referrals",
             [&svc, &audit, options, zone](api::request& req) -> asio::awaitable<result<api::response>> {
               auto body = parse_body(req, true);
               if (!body) co_return std::unexpected(body.error());
               const auto& p = *req.principal;
               const auto key = req.header("Idempotency-Key");
               const std::string id =
                   key.empty() ? random_id("ref-") : stable_id("ref-", p.id.value() + "\n" + std::string(key));
               auto cmd = referral::command_for(req, ev::REFERRAL_ACTION_CREATE, id, svc.now(), "api");
               auto* q = cmd.mutable_referral_command()->mutable_request();
               if (auto r = read_request(*body, p, zone, *q, *cmd.mutable_subject()); !r) co_return std::unexpected(r.error());
               q->set_referral_id(id);
               co_return co_await run_command(svc, audit, req, cmd, zone, options, status::created);
             });

  // Reads are open to a patient too (their own referrals, by a patient token);
  // every change is not.
  const api::route_options readers{
      .roles = {api::role::hospital_system, api::role::clinic_user, api::role::operator_, api::role::patient}};

  routes.add(verb::get, "/api/v1/referrals", [&svc, &audit, zone, options](api::request& req) -> result<api::response> {
    const auto& p = *req.principal;
    auto person = person_filter::from(req, options.patients);
    if (!person) return std::unexpected(person.error());
    if (p.role == api::role::patient) {
      // A patient's list is always their own person's, whatever they ask for.
      if (*person && (*person)->enterprise_id() != p.id.value() && req.query_param("patient") != p.id.value()) {
        return fail(errc::permission_denied, "a patient sees only their own referrals", "patient");
      }
      if (req.query_param("role")) return fail(errc::invalid_argument, "role is for hospitals", "role");
      auto own = patient_person(p, options.patients);
      if (!own) return std::unexpected(own.error());
      *person = std::move(*own);
    }
    std::string hospital = p.hospital.value();
    if (auto h = req.query_param("hospital"); h && !h->empty()) {
      if (p.role != api::role::operator_ && *h != hospital) {
        return fail(errc::permission_denied, "a hospital sees only its own referrals", "hospital");
      }
      hospital = std::string(*h);
    }
    const std::string role(req.query_param("role").value_or(""));
    if (!role.empty() && role != "sent" && role != "received") {
      return fail(errc::invalid_argument, "role is sent or received", "role");
    }
    const std::string want_state(req.query_param("state").value_or(""));
    const std::string want_direction(req.query_param("direction").value_or(""));
    const auto limit = req.count_param("limit", 100, 1000);
    std::vector<std::string> ids;
    auto out = svc.read([&](const rf::ledger& l) {
      json list = json::array();
      const auto candidates = hospital.empty() ? l.all(100000) : l.referrals_of(hospital, 100000);
      for (const auto* r : candidates) {
        if (role == "sent" && r->from_hospital != hospital) continue;
        if (role == "received" && r->to_hospital != hospital) continue;
        if (!want_state.empty() && rf::state_name(r->st) != want_state) continue;
        if (!want_direction.empty() && referral::direction_code(r->direction) != want_direction) continue;
        if (*person && !(*person)->matches(r->subject)) continue;
        if (list.size() >= limit) break;
        ids.push_back(r->id);
        list.push_back(referral_json(*r, l, zone, false));
      }
      return list;
    });
    audit.record(req, "search", "Referral", ids);
    return api::response::json(json{{"referrals", std::move(out)}});
  }, readers);

  routes.add(verb::get, "/api/v1/referrals/{id}", [&svc, &audit, zone, options](api::request& req) -> result<api::response> {
    const std::string id(req.path_param("id"));
    const auto& p = *req.principal;
    std::optional<person_filter> person;
    if (p.role == api::role::patient) {
      auto own = patient_person(p, options.patients);
      if (!own) return std::unexpected(own.error());
      person = std::move(*own);
    }
    const person_filter* who = person ? &*person : nullptr;
    auto out = svc.read([&](const rf::ledger& l) -> std::optional<json> {
      const auto* r = l.find(id);
      if (r == nullptr || !referral::sees(p, *r, who)) return std::nullopt;
      auto j = referral_json(*r, l, zone, true);
      // The referral it follows and those following it, as far as the caller may see them.
      json linked = json::array();
      std::vector<std::string> others = r->followed_by;
      if (!r->linked_referral_id.empty()) others.insert(others.begin(), r->linked_referral_id);
      for (const auto& other : others) {
        if (const auto* o = l.find(other); o != nullptr && referral::sees(p, *o, who)) {
          linked.push_back(referral_json(*o, l, zone, false));
        }
      }
      j["linked"] = std::move(linked);
      return j;
    });
    const std::vector<std::string> ids{id};
    if (!out) {
      audit.record(req, "read", "Referral", ids, "not_found");
      return fail(errc::not_found, "no referral " + id + " of your hospital", "id");
    }
    audit.record(req, "read", "Referral", ids);
    return api::response::json(*out);
  }, readers);

  routes.add(
      verb::post, "/api/v1/referrals/{id}/{action}",
      [&svc, &audit, options, zone](api::request& req) -> asio::awaitable<result<api::response>> {
        const std::string id(req.path_param("id"));
        const auto act = rf::action_from_name(req.path_param("action"));
        if (act == ev::REFERRAL_ACTION_UNSPECIFIED || act == ev::REFERRAL_ACTION_CREATE ||
            act == ev::REFERRAL_ACTION_EXPIRE || act == ev::REFERRAL_ACTION_MODIFY) {
          co_return fail(errc::not_found,
                         "no referral action " + std::string(req.path_param("action")) +
                             " (submit, receive, accept, reject, cancel, schedule, arrive, complete, return-report, "
                             "no-show, terminate)",
                         "action");
        }
        auto body = parse_body(req, false);
        if (!body) co_return std::unexpected(body.error());
        const auto& p = *req.principal;
        const bool visible = svc.read([&](const rf::ledger& l) {
          const auto* r = l.find(id);
          return r != nullptr && referral::sees(p, *r);
        });
        if (!visible) {
          const std::vector<std::string> ids{id};
          audit.record(req, "update", "Referral", ids, "not_found");
          co_return fail(errc::not_found, "no referral " + id + " of your hospital", "id");
        }
        auto cmd = referral::command_for(req, act, id, svc.now(), "api");
        auto* c = cmd.mutable_referral_command();
        for (const auto& [name, setter] :
             {std::pair{"reason_text", &ev::ReferralCommand::set_reason_text<const std::string&>},
              std::pair{"external_id", &ev::ReferralCommand::set_external_referral_id<const std::string&>},
              std::pair{"booking_id", &ev::ReferralCommand::set_booking_id<const std::string&>},
              std::pair{"encounter_id", &ev::ReferralCommand::set_encounter_id<const std::string&>},
              std::pair{"report_id", &ev::ReferralCommand::set_report_id<const std::string&>}}) {
          auto v = string_field(*body, name, false);
          if (!v) co_return std::unexpected(v.error());
          (c->*setter)(*v);
        }
        if (auto it = body->find("reason"); it != body->end() && !it->is_null()) {
          auto code = coding_from(*it, "reason");
          if (!code) co_return std::unexpected(code.error());
          *c->mutable_reason() = std::move(*code);
        }
        auto start = string_field(*body, "appointment_start", false);
        if (!start) co_return std::unexpected(start.error());
        if (!start->empty()) {
          auto t = workflows::booking::parse_instant(*start, zone);
          if (!t) co_return fail(errc::invalid_argument, "appointment_start: " + t.error().message, "appointment_start");
          *c->mutable_appointment_start() = workflows::to_timestamp(*t);
        }
        if (!c->booking_id().empty()) c->set_appointment_id(c->booking_id());
        co_return co_await run_command(svc, audit, req, cmd, zone, options, status::ok);
      });
}

}  // namespace yilian::app
