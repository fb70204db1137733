#include "engine/app/booking_fhir.h"

#include <charconv>

#include <boost/asio/use_awaitable.hpp>
#include <google/protobuf/util/json_util.h>
#include <nlohmann/json.hpp>

#include "engine/app/booking_support.h"

namespace yilian::app {

namespace {

namespace asio = boost::asio;
namespace bk = workflows::booking;
namespace ev = events::v1;
using api::http::status;
using api::http::verb;
using json = nlohmann::json;

constexpr std::string_view exam_system = "urn:yilian:exam";
constexpr std::string_view dicom_system = "http://dicom.nema.org/resources/ontology/DCM";

std::string base_url(const api::request& req) {
  const auto host = req.header(api::http::field::host);
  return "http://" + std::string(host.empty() ? "localhost" : host) + "/fhir/r4/";
}

json bundle(const api::request& req, std::string_view type, const std::vector<json>& resources) {
  json entries = json::array();
  const std::string base = base_url(req);
  for (const auto& r : resources) {
    json entry{{"resource", r}, {"search", {{"mode", "match"}}}};
    if (r.contains("id")) entry["fullUrl"] = base + r["resourceType"].get<std::string>() + "/" + r["id"].get<std::string>();
    entries.push_back(std::move(entry));
  }
  return json{{"resourceType", "Bundle"}, {"type", type}, {"total", resources.size()}, {"entry", std::move(entries)}};
}

json exam_concept(const bk::calendar* cal, const std::string& code) {
  json coding{{"system", exam_system}, {"code", code}};
  if (cal != nullptr) {
    if (const auto* e = cal->exam(code)) coding["display"] = e->name();
  }
  return json{{"coding", json::array({coding})}};
}

json device_json(const config::v1::Equipment& e) {
  return json{{"resourceType", "Device"},
              {"id", e.id()},
              {"status", "active"},
              {"deviceName", json::array({{{"name", e.name()}, {"type", "user-friendly-name"}}})},
              {"type", {{"coding", json::array({{{"system", dicom_system}, {"code", config::modality_code(e.modality())}}})}}},
              {"owner", {{"reference", "Organization/" + e.hospital()}}},
              {"location", {{"display", e.location()}}}};
}

json schedule_json(const config::v1::Equipment& e, const bk::calendar* cal) {
  json types = json::array();
  for (const auto& x : e.exam_types()) types.push_back(exam_concept(cal, x.code()));
  return json{{"resourceType", "Schedule"},
              {"id", e.id()},
              {"active", e.consortium_share_percent() > 0},
              {"serviceType", std::move(types)},
              {"actor", json::array({{{"reference", "Device/" + e.id()}, {"display", e.name()}},
                                     {{"reference", "Organization/" + e.hospital()}}})},
              {"comment", e.location()}};
}

json slot_json(const std::string& id, const std::string& equipment, const std::string& exam, bk::interval when,
               std::string_view slot_status, const bk::calendar* cal) {
  const time_zone zone = cal != nullptr ? cal->zone() : time_zone();
  return json{{"resourceType", "Slot"},
              {"id", id},
              {"schedule", {{"reference", "Schedule/" + equipment}}},
              {"status", slot_status},
              {"serviceType", json::array({exam_concept(cal, exam)})},
              {"start", bk::format_local(when.start, zone)},
              {"end", bk::format_local(when.end, zone)}};
}

std::string slot_id_of(const bk::booking_view& b, const bk::calendar* cal) {
  if (cal == nullptr || !b.has_slot()) return {};
  const std::string local = bk::format_local(b.slot.start, cal->zone());  // 2026-11-24T08:30:00+08:00
  return b.equipment_id + "." + local.substr(0, 4) + local.substr(5, 2) + local.substr(8, 2) + local.substr(11, 2) +
         local.substr(14, 2) + "." + b.exam_code;
}

// Reads only the ledger's fixed part (no lock needed).
json appointment_json(const bk::booking_view& b, const bk::service& svc) {
  const auto* cal = svc.equipment(b.equipment_id);
  const time_zone zone = cal != nullptr ? cal->zone() : time_zone();
  json patient{{"status", "accepted"}};
  json actor = json::object();
  if (b.subject.identifiers_size() > 0) {
    const auto& id = b.subject.identifiers(0);
    actor["identifier"] = {{"system", id.system()}, {"value", id.value()}};
  }
  if (!b.subject.enterprise_patient_id().empty()) actor["reference"] = "Patient/" + b.subject.enterprise_patient_id();
  if (!b.patient.name().hanzi().empty()) actor["display"] = b.patient.name().hanzi();
  actor["type"] = "Patient";
  patient["actor"] = std::move(actor);
  json participants = json::array({std::move(patient)});
  const auto* eq = svc.config().equipment(b.equipment_id);
  participants.push_back({{"actor", {{"reference", "Device/" + b.equipment_id},
                                     {"display", eq != nullptr ? eq->name() : std::string()}}},
                          {"status", "accepted"}});
  participants.push_back({{"actor", {{"reference", "Organization/" + b.owner}}},
                          {"type", json::array({{{"text", "performer"}}})},
                          {"status", "accepted"}});
  participants.push_back({{"actor", {{"reference", "Organization/" + b.requesting_hospital}}},
                          {"type", json::array({{{"text", "requester"}}})},
                          {"status", "accepted"}});
  json a{{"resourceType", "Appointment"},
         {"id", b.id},
         {"meta", {{"versionId", std::to_string(b.version)}, {"lastUpdated", bk::format_local(b.updated_at, zone)}}},
         {"identifier", json::array({{{"system", "urn:yilian:booking"}, {"value", b.id}}})},
         {"status", bk::fhir_appointment_status(b.st)},
         {"serviceType", json::array({exam_concept(cal, b.exam_code)})},
         {"created", bk::format_local(b.requested_at, zone)},
         {"participant", std::move(participants)}};
  if (b.has_slot()) {
    a["start"] = bk::format_local(b.slot.start, zone);
    a["end"] = bk::format_local(b.slot.end, zone);
    a["minutesDuration"] = b.slot.length().count();
    a["slot"] = json::array({{{"reference", "Slot/" + slot_id_of(b, cal)}}});
  }
  if (!b.placer_order.empty()) {
    a["basedOn"] = json::array({{{"identifier", {{"system", "urn:yilian:placer-order"}, {"value", b.placer_order}}}}});
  }
  if (b.st == ev::BOOKING_STATE_CANCELLED && !b.history.empty() && !b.history.back().reason.empty()) {
    a["cancelationReason"] = {{"text", b.history.back().reason}};
  }
  if (!b.conflict.empty()) a["comment"] = b.conflict;
  return a;
}

// "ge2026-11-24" -> (">=", time); plain dates mean "eq" (that day).
struct date_param {
  std::string prefix;
  bk::seconds at;
};

result<date_param> parse_date_param(std::string_view text, const time_zone& zone, std::string_view name) {
  date_param d{.prefix = "eq"};
  for (std::string_view p : {"ge", "gt", "le", "lt", "eq"}) {
    if (text.starts_with(p)) {
      d.prefix = std::string(p);
      text.remove_prefix(2);
      break;
    }
  }
  auto t = bk::parse_instant(text, zone);
  if (!t) return fail(errc::invalid_argument, std::string(name) + ": " + t.error().message, std::string(name));
  d.at = *t;
  return d;
}

result<bk::interval> date_range(const api::request& req, std::string_view name, const time_zone& zone,
                                bk::interval fallback) {
  bk::interval out = fallback;
  for (const auto v : req.query_params(name)) {
    auto d = parse_date_param(v, zone, name);
    if (!d) return std::unexpected(d.error());
    if (d->prefix == "ge" || d->prefix == "gt") out.start = d->at;
    if (d->prefix == "le" || d->prefix == "lt") out.end = d->at;
    if (d->prefix == "eq") {
      out.start = d->at;
      out.end = d->at + std::chrono::days(1);
    }
  }
  if (out.end <= out.start) return fail(errc::invalid_argument, std::string(name) + ": empty range", std::string(name));
  return out;
}

std::string strip_system(std::string_view token) {
  const auto bar = token.find('|');
  return std::string(bar == std::string_view::npos ? token : token.substr(bar + 1));
}

std::string strip_type(std::string_view ref, std::string_view type) {
  if (ref.starts_with(type) && ref.size() > type.size() && ref[type.size()] == '/') ref.remove_prefix(type.size() + 1);
  return std::string(ref);
}

// What an Appointment resource asks for: the slot, exam, patient.
struct appointment_request {
  ev::BookingAction action = ev::BOOKING_ACTION_BOOK;
  std::string equipment;
  std::string start_text;
  std::string exam;
  std::string id;  // an existing booking ($book of a hold)
};

result<appointment_request> read_appointment(const json& a, ev::Envelope& cmd) {
  if (!a.is_object() || a.value("resourceType", "") != "Appointment") {
    return fail(errc::invalid_argument, "expected an Appointment resource", "resourceType");
  }
  appointment_request r;
  const std::string st = a.value("status", "booked");
  if (st == "booked") r.action = ev::BOOKING_ACTION_BOOK;
  else if (st == "pending") r.action = ev::BOOKING_ACTION_HOLD;
  else if (st == "proposed") r.action = ev::BOOKING_ACTION_REQUEST;
  else return fail(errc::invalid_argument, "a new Appointment is booked, pending or proposed", "Appointment.status");
  if (a.contains("id") && a["id"].is_string()) r.id = a["id"].get<std::string>();
  if (const auto it = a.find("slot"); it != a.end() && it->is_array() && !it->empty()) {
    const std::string ref = strip_type((*it)[0].value("reference", ""), "Slot");
    auto parts = booking::split_slot_id(ref);
    if (!parts) return fail(errc::invalid_argument, parts.error().message, "Appointment.slot[0].reference");
    std::tie(r.equipment, r.start_text, r.exam) = std::move(*parts);
  }
  if (a.contains("start") && a["start"].is_string()) r.start_text = a["start"].get<std::string>();
  if (const auto it = a.find("serviceType"); it != a.end() && it->is_array() && !it->empty()) {
    const auto& codings = (*it)[0].value("coding", json::array());
    if (!codings.empty() && codings[0].contains("code")) r.exam = codings[0]["code"].get<std::string>();
  }
  auto* c = cmd.mutable_booking_command();
  for (const auto& p : a.value("participant", json::array())) {
    const auto& actor = p.value("actor", json::object());
    const std::string ref = actor.value("reference", "");
    if (ref.starts_with("Device/")) r.equipment = strip_type(ref, "Device");
    if (ref.starts_with("Organization/") && p.value("type", json::array()).dump().find("requester") != std::string::npos) {
      c->set_requesting_hospital(strip_type(ref, "Organization"));
    }
    if (actor.value("type", "") == "Patient" || ref.starts_with("Patient/")) {
      if (actor.contains("identifier")) {
        auto* id = cmd.mutable_subject()->add_identifiers();
        id->set_system(actor["identifier"].value("system", ""));
        id->set_value(actor["identifier"].value("value", ""));
      }
      if (actor.contains("display")) c->mutable_patient()->mutable_name()->set_hanzi(actor["display"].get<std::string>());
    }
  }
  for (const auto& b : a.value("basedOn", json::array())) {
    if (b.contains("identifier")) c->set_placer_order(b["identifier"].value("value", ""));
  }
  return r;
}

// Sends one command and answers with the Appointment (or the refusal).
asio::awaitable<result<api::response>> decide_appointment(bk::service& svc, api::audit_log& audit, api::request& req,
                                                          const ev::Envelope& cmd, std::chrono::milliseconds timeout,
                                                          status ok) {
  auto d = co_await booking::submit(svc, cmd, timeout);
  if (!d) co_return std::unexpected(d.error());
  const std::vector<std::string> ids{cmd.booking_command().booking_id()};
  if (d->refused) {
    audit.record(req, "update", "Appointment", ids, d->refused->code);
    co_return booking::refusal_response(*d->refused, req);
  }
  audit.record(req, "update", "Appointment", ids);
  if (!d->booking) co_return fail(errc::internal, "decision without a booking");
  auto body = appointment_json(*d->booking, svc);  // the decision's version (immutable), rendered without the lock
  auto resp = api::response::fhir(body, ok);
  resp.with_header("Location", base_url(req) + "Appointment/" + d->booking->id + "/_history/" +
                                   std::to_string(d->booking->version));
  resp.with_header("ETag", "W/\"" + std::to_string(d->booking->version) + "\"");
  co_return resp;
}

// A new booking from an Appointment resource (create, $hold, $book).
asio::awaitable<result<api::response>> create_appointment(bk::service& svc, api::audit_log& audit, api::request& req,
                                                          const json& resource, std::optional<ev::BookingAction> force,
                                                          std::chrono::milliseconds timeout) {
  ev::Envelope cmd;
  auto r = read_appointment(resource, cmd);
  if (!r) co_return std::unexpected(r.error());
  if (force) r->action = *force;
  const auto& p = *req.principal;
  // $book of a held appointment books that hold.
  if (!r->id.empty() && r->action == ev::BOOKING_ACTION_BOOK) {
    std::string equipment;
    const bool held = svc.read([&](const bk::ledger& l) {
      const auto* b = l.find(r->id);
      if (b == nullptr || !booking::sees(p, *b)) return false;
      equipment = b->equipment_id;
      return true;
    });
    if (held) {
      auto book = booking::command_envelope(req, ev::BOOKING_ACTION_BOOK, r->id, equipment, svc.now());
      co_return co_await decide_appointment(svc, audit, req, book, timeout, status::ok);
    }
  }
  if (r->equipment.empty()) {
    co_return fail(errc::invalid_argument, "the Appointment names no slot (slot[0]) and no Device participant",
                   "Appointment.slot");
  }
  if (r->exam.empty()) co_return fail(errc::invalid_argument, "serviceType (the exam code) is required", "Appointment.serviceType");
  auto full = booking::command_envelope(req, r->action, booking::new_booking_id(req), r->equipment, svc.now());
  *full.mutable_subject() = cmd.subject();
  auto* c = full.mutable_booking_command();
  c->set_exam_code(r->exam);
  c->set_requesting_hospital(cmd.booking_command().requesting_hospital().empty() ? p.hospital.value()
                                                                                  : cmd.booking_command().requesting_hospital());
  if (c->requesting_hospital().empty()) {
    co_return fail(errc::invalid_argument, "an operator names the requesting Organization participant",
                   "Appointment.participant");
  }
  *c->mutable_patient() = cmd.booking_command().patient();
  c->set_placer_order(cmd.booking_command().placer_order());
  if (!r->start_text.empty()) {
    const auto* cal = svc.equipment(r->equipment);
    if (cal == nullptr) {
      co_return booking::refusal_response(
          bk::refusal{.kind = errc::not_found, .code = "unknown_equipment", .message = "no shared equipment \"" + r->equipment + "\""},
          req);
    }
    auto t = bk::parse_instant(r->start_text, cal->zone());
    if (!t) co_return fail(errc::invalid_argument, "start: " + t.error().message, "Appointment.start");
    *c->mutable_start() = bk::to_timestamp(*t);
  }
  co_return co_await decide_appointment(svc, audit, req, full, timeout, status::created);
}

result<json> body_json(const api::request& req) {
  auto j = json::parse(req.body(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return fail(errc::parse_error, "the body is not a JSON resource");
  return j;
}

// The `appointment` resource of a Parameters body ($hold, $book).
result<json> parameter_appointment(const json& body) {
  if (body.value("resourceType", "") == "Appointment") return body;
  if (body.value("resourceType", "") != "Parameters") return fail(errc::invalid_argument, "expected Parameters", "resourceType");
  for (const auto& p : body.value("parameter", json::array())) {
    if (p.value("name", "") == "appointment" && p.contains("resource")) return p["resource"];
  }
  return fail(errc::invalid_argument, "Parameters has no appointment", "Parameters.parameter");
}

}  // namespace

void add_booking_fhir_routes(api::router& routes, bk::service& svc, api::audit_log& audit,
                             std::chrono::milliseconds timeout) {
  const time_zone zone =
      time_zone::load(svc.config().consortium.time_zone()).value_or(time_zone());

  routes.add(verb::get, "/fhir/r4/Device/{id}", [&svc](api::request& req) -> result<api::response> {
    const auto* e = svc.config().equipment(req.path_param("id"));
    if (e == nullptr) return fail(errc::not_found, "no Device " + std::string(req.path_param("id")), "id");
    return api::response::fhir(device_json(*e));
  });
  routes.add(verb::get, "/fhir/r4/Schedule/{id}", [&svc](api::request& req) -> result<api::response> {
    return svc.read([&](const bk::ledger& l) -> result<api::response> {
      const auto* e = l.config().equipment(req.path_param("id"));
      if (e == nullptr) return fail(errc::not_found, "no Schedule " + std::string(req.path_param("id")), "id");
      return api::response::fhir(schedule_json(*e, l.equipment(e->id())));
    });
  });
  routes.add(verb::get, "/fhir/r4/Schedule", [&svc](api::request& req) -> result<api::response> {
    const std::string actor = strip_type(req.query_param("actor").value_or(""), "Device");
    const std::string type = strip_system(req.query_param("service-type").value_or(""));
    return svc.read([&](const bk::ledger& l) {
      std::vector<json> out;
      for (const auto& e : l.config().consortium.equipment()) {
        if (!actor.empty() && e.id() != actor) continue;
        if (!type.empty() && l.equipment(e.id())->exam(type) == nullptr) continue;
        out.push_back(schedule_json(e, l.equipment(e.id())));
      }
      return api::response::fhir(bundle(req, "searchset", out));
    });
  });

  routes.add(verb::get, "/fhir/r4/Slot", [&svc, zone](api::request& req) -> result<api::response> {
    const auto& p = *req.principal;
    std::string actor(req.query_param("schedule.actor").value_or(""));
    if (actor.empty()) actor = strip_type(req.query_param("schedule").value_or(""), "Schedule");
    actor = strip_type(actor, "Device");
    const std::string slot_status(req.query_param("status").value_or("free"));
    const std::string type = strip_system(req.query_param("service-type").value_or(""));
    const auto now = svc.now();
    auto range = date_range(req, "start", zone, bk::interval{now, now + std::chrono::days(14)});
    if (!range) return std::unexpected(range.error());
    if (range->end - range->start > std::chrono::days(92)) {
      return fail(errc::invalid_argument, "search at most 92 days at once", "start");
    }
    const std::size_t count = req.count_param("_count", 50, 500);
    return svc.read([&](const bk::ledger& l) -> result<api::response> {
      std::vector<json> out;
      if (slot_status == "free") {
        if (type.empty()) return fail(errc::invalid_argument, "service-type (the exam code) is required for free slots", "service-type");
        bk::slot_query q{.exam_code = type, .equipment_id = actor, .requesting_hospital = p.hospital.value(),
                         .from = range->start, .to = range->end, .limit = count};
        for (const auto& s : l.search(q, now)) {
          out.push_back(slot_json(s.slot_id, s.equipment_id, s.exam_code, s.when, "free", l.equipment(s.equipment_id)));
        }
      } else if (slot_status == "busy") {
        // Taken time, without saying by whom.
        for (const auto* cal : l.all_equipment()) {
          if (!actor.empty() && cal->equipment_id() != actor) continue;
          for (const auto* b : l.bookings_on(cal->equipment_id(), *range)) {
            if (out.size() >= count) break;
            if (!type.empty() && b->exam_code != type) continue;
            out.push_back(slot_json(slot_id_of(*b, cal), b->equipment_id, b->exam_code, b->slot, "busy", cal));
          }
        }
      } else {
        return fail(errc::invalid_argument, "status is free or busy", "status");
      }
      return api::response::fhir(bundle(req, "searchset", out));
    });
  });

  // The owner closes (status busy-unavailable) or reopens (free) a range of
  // its machine's time: the same BLOCK/OPEN commands as the REST API.
  routes.add(verb::post, "/fhir/r4/Slot",
             [&svc, timeout](api::request& req) -> asio::awaitable<result<api::response>> {
               auto body = body_json(req);
               if (!body) co_return std::unexpected(body.error());
               if (body->value("resourceType", "") != "Slot") {
                 co_return fail(errc::invalid_argument, "expected a Slot resource", "resourceType");
               }
               const std::string st = body->value("status", "");
               if (st != "busy-unavailable" && st != "free") {
                 co_return fail(errc::invalid_argument, "a Slot sent to yilian is busy-unavailable (close) or free (reopen)",
                                "Slot.status");
               }
               const std::string equipment =
                   strip_type(body->value("schedule", json::object()).value("reference", ""), "Schedule");
               const auto* cal = svc.equipment(equipment);
               if (cal == nullptr) {
                 co_return booking::refusal_response(
                     bk::refusal{.kind = errc::not_found, .code = "unknown_equipment",
                                 .message = "no Schedule \"" + equipment + "\""},
                     req);
               }
               const auto action = st == "free" ? ev::BOOKING_ACTION_OPEN : ev::BOOKING_ACTION_BLOCK;
               std::string id = body->value("id", "");
               if (id.empty()) id = booking::new_booking_id(req);
               auto cmd = booking::command_envelope(req, action, id, equipment, svc.now());
               auto* c = cmd.mutable_booking_command();
               for (auto [name, field] : {std::pair{"start", c->mutable_start()}, std::pair{"end", c->mutable_end()}}) {
                 auto t = bk::parse_instant(body->value(name, ""), cal->zone());
                 if (!t) co_return fail(errc::invalid_argument, std::string(name) + ": " + t.error().message,
                                        std::string("Slot.") + name);
                 *field = bk::to_timestamp(*t);
               }
               c->mutable_reason()->set_display(body->value("comment", ""));
               auto d = co_await booking::submit(svc, cmd, timeout);
               if (!d) co_return std::unexpected(d.error());
               if (d->refused) co_return booking::refusal_response(*d->refused, req);
               json out = *body;
               out["id"] = id;
               co_return api::response::fhir(out, action == ev::BOOKING_ACTION_BLOCK ? status::created : status::ok);
             });

  routes.add(verb::get, "/fhir/r4/Appointment/{id}", [&svc, &audit](api::request& req) -> result<api::response> {
    const std::string id(req.path_param("id"));
    auto out = svc.read([&](const bk::ledger& l) -> std::optional<json> {
      const auto* b = l.find(id);
      if (b == nullptr || !booking::sees(*req.principal, *b)) return std::nullopt;
      return appointment_json(*b, svc);
    });
    const std::vector<std::string> ids{id};
    audit.record(req, "read", "Appointment", ids, out ? "ok" : "not_found");
    if (!out) return fail(errc::not_found, "no Appointment " + id + " of your hospital", "id");
    return api::response::fhir(*out);
  });

  routes.add(verb::get, "/fhir/r4/Appointment", [&svc, &audit, zone](api::request& req) -> result<api::response> {
    const auto& p = *req.principal;
    std::string hospital = p.hospital.value();
    std::string device;
    if (auto a = req.query_param("actor")) {
      if (a->starts_with("Organization/")) hospital = strip_type(*a, "Organization");
      if (a->starts_with("Device/")) device = strip_type(*a, "Device");
    }
    if (hospital != p.hospital.value() && p.role != api::role::operator_) {
      return fail(errc::permission_denied, "a hospital sees only its own appointments", "actor");
    }
    if (hospital.empty()) return fail(errc::invalid_argument, "actor=Organization/<hospital> is required", "actor");
    const std::string want(req.query_param("status").value_or(""));
    auto range = date_range(req, "date", zone, bk::interval{bk::seconds{}, bk::seconds{std::chrono::years(400)}});
    if (!range) return std::unexpected(range.error());
    const std::size_t count = req.count_param("_count", 100, 500);
    std::vector<std::string> ids;
    auto out = svc.read([&](const bk::ledger& l) {
      std::vector<json> list;
      for (const auto* b : l.bookings_of(hospital, 100000)) {
        if (list.size() >= count) break;
        if (!device.empty() && b->equipment_id != device) continue;
        if (!want.empty() && bk::fhir_appointment_status(b->st) != want) continue;
        if (b->has_slot() && !b->slot.overlaps(*range)) continue;
        ids.push_back(b->id);
        list.push_back(appointment_json(*b, svc));
      }
      return list;
    });
    audit.record(req, "search", "Appointment", ids);
    return api::response::fhir(bundle(req, "searchset", out));
  });

  routes.add(verb::post, "/fhir/r4/Appointment",
             [&svc, &audit, timeout](api::request& req) -> asio::awaitable<result<api::response>> {
               auto body = body_json(req);
               if (!body) co_return std::unexpected(body.error());
               co_return co_await create_appointment(svc, audit, req, *body, std::nullopt, timeout);
             });
  for (const auto& [op, action] : {std::pair{"$hold", ev::BOOKING_ACTION_HOLD}, std::pair{"$book", ev::BOOKING_ACTION_BOOK}}) {
    routes.add(verb::post, std::string("/fhir/r4/Appointment/") + op,
               [&svc, &audit, timeout, action](api::request& req) -> asio::awaitable<result<api::response>> {
                 auto body = body_json(req);
                 if (!body) co_return std::unexpected(body.error());
                 auto a = parameter_appointment(*body);
                 if (!a) co_return std::unexpected(a.error());
                 co_return co_await create_appointment(svc, audit, req, *a, action, timeout);
               });
  }

  auto find = [&svc, zone](api::request& req) -> result<api::response> {
    // Parameters from the query, or from a Parameters body (POST).
    std::map<std::string, std::string> params;
    for (const auto& [k, v] : req.query) params.emplace(k, v);
    if (req.method() == verb::post && !req.body().empty()) {
      auto body = body_json(req);
      if (!body) return std::unexpected(body.error());
      for (const auto& p : body->value("parameter", json::array())) {
        for (const auto& key : {"valueDateTime", "valueDate", "valueString", "valueCode", "valueUri"}) {
          if (p.contains(key)) params[p.value("name", "")] = p[key].get<std::string>();
        }
        if (p.contains("valueCoding")) params[p.value("name", "")] = p["valueCoding"].value("code", "");
      }
    }
    const auto& p = *req.principal;
    const std::string type = strip_system(params["service-type"]);
    if (type.empty()) return fail(errc::invalid_argument, "service-type (the exam code) is required", "service-type");
    const auto now = svc.now();
    bk::slot_query q{.exam_code = type, .requesting_hospital = p.hospital.value(), .from = now,
                     .to = now + std::chrono::days(14), .limit = req.count_param("_count", 10, 500)};
    if (!params["start"].empty()) {
      auto t = bk::parse_instant(params["start"], zone);
      if (!t) return fail(errc::invalid_argument, "start: " + t.error().message, "start");
      q.from = *t;
      q.to = *t + std::chrono::days(14);
    }
    if (!params["end"].empty()) {
      auto t = bk::parse_instant(params["end"], zone);
      if (!t) return fail(errc::invalid_argument, "end: " + t.error().message, "end");
      q.to = *t;
    }
    const std::string actor = params["actor"].empty() ? params["location"] : params["actor"];
    if (actor.starts_with("Device/")) q.equipment_id = strip_type(actor, "Device");
    if (actor.starts_with("Organization/")) q.hospital = strip_type(actor, "Organization");
    return svc.read([&](const bk::ledger& l) {
      std::vector<json> out;
      for (const auto& s : l.search(q, now)) {
        const auto* cal = l.equipment(s.equipment_id);
        const auto* eq = l.config().equipment(s.equipment_id);
        out.push_back(json{{"resourceType", "Appointment"},
                           {"status", "proposed"},
                           {"serviceType", json::array({exam_concept(cal, s.exam_code)})},
                           {"start", bk::format_local(s.when.start, cal->zone())},
                           {"end", bk::format_local(s.when.end, cal->zone())},
                           {"minutesDuration", s.when.length().count()},
                           {"slot", json::array({{{"reference", "Slot/" + s.slot_id}}})},
                           {"participant", json::array({{{"actor", {{"reference", "Device/" + s.equipment_id},
                                                                    {"display", eq != nullptr ? eq->name() : ""}}},
                                                         {"status", "needs-action"}},
                                                        {{"actor", {{"reference", "Organization/" + s.hospital}}},
                                                         {"status", "needs-action"}}})}});
      }
      return api::response::fhir(bundle(req, "searchset", out));
    });
  };
  routes.add(verb::get, "/fhir/r4/Appointment/$find", find);
  routes.add(verb::post, "/fhir/r4/Appointment/$find", find);

  routes.add(
      verb::put, "/fhir/r4/Appointment/{id}",
      [&svc, &audit, timeout](api::request& req) -> asio::awaitable<result<api::response>> {
        const std::string id(req.path_param("id"));
        auto body = body_json(req);
        if (!body) co_return std::unexpected(body.error());
        if (body->value("resourceType", "") != "Appointment" || body->value("id", "") != id) {
          co_return fail(errc::invalid_argument, "the body must be Appointment " + id, "Appointment.id");
        }
        std::optional<bk::booking_view> current;
        time_zone bzone;
        svc.read([&](const bk::ledger& l) {
          const auto* b = l.find(id);
          if (b != nullptr && booking::sees(*req.principal, *b)) {
            current = *b;
            if (const auto* cal = l.equipment(b->equipment_id)) bzone = cal->zone();
          }
          return 0;
        });
        if (!current) co_return fail(errc::not_found, "no Appointment " + id + " of your hospital", "id");
        const std::string want = body->value("status", "");
        std::vector<ev::BookingAction> actions;
        std::optional<bk::seconds> start;
        if (body->contains("start") && (*body)["start"].is_string()) {
          auto t = bk::parse_instant((*body)["start"].get<std::string>(), bzone);
          if (!t) co_return fail(errc::invalid_argument, "start: " + t.error().message, "Appointment.start");
          start = *t;
        }
        const auto st = current->st;
        if (want == "cancelled") actions = {ev::BOOKING_ACTION_CANCEL};
        else if (want == "noshow") actions = {ev::BOOKING_ACTION_NO_SHOW};
        else if (want == "checked-in" || want == "arrived") actions = {ev::BOOKING_ACTION_CHECK_IN};
        else if (want == "fulfilled") {
          if (st == ev::BOOKING_STATE_BOOKED) actions = {ev::BOOKING_ACTION_CHECK_IN, ev::BOOKING_ACTION_PERFORM};
          else actions = {ev::BOOKING_ACTION_PERFORM};
        } else if (want == "booked") {
          if (st == ev::BOOKING_STATE_BOOKED) {
            if (start && *start != current->slot.start) actions = {ev::BOOKING_ACTION_RESCHEDULE};
          } else {
            actions = {ev::BOOKING_ACTION_BOOK};
          }
        } else if (want == "pending" && st == ev::BOOKING_STATE_REQUESTED) {
          actions = {ev::BOOKING_ACTION_HOLD};
        } else if (want != std::string(bk::fhir_appointment_status(st))) {
          co_return fail(errc::unsupported, "cannot change an Appointment from " +
                                                std::string(bk::fhir_appointment_status(st)) + " to " + want,
                         "Appointment.status");
        }
        if (actions.empty()) {
          auto same = svc.read([&](const bk::ledger& l) { return appointment_json(*l.find(id), svc); });
          co_return api::response::fhir(same);
        }
        std::optional<api::response> last;
        for (std::size_t i = 0; i < actions.size(); ++i) {
          auto cmd = booking::command_envelope(req, actions[i], id, current->equipment_id, svc.now());
          if (i > 0) {
            auto* c = cmd.mutable_booking_command();
            c->set_command_id(c->command_id() + ":" + std::to_string(i));
            cmd.set_event_id("booking-command:" + c->command_id());
          }
          auto* c = cmd.mutable_booking_command();
          if (start && (actions[i] == ev::BOOKING_ACTION_RESCHEDULE || actions[i] == ev::BOOKING_ACTION_BOOK ||
                        actions[i] == ev::BOOKING_ACTION_HOLD)) {
            *c->mutable_start() = bk::to_timestamp(*start);
          }
          if (const auto it = body->find("cancelationReason"); it != body->end() && it->is_object()) {
            c->mutable_reason()->set_display(it->value("text", ""));
          }
          auto r = co_await decide_appointment(svc, audit, req, cmd, timeout, status::ok);
          if (!r) co_return std::unexpected(r.error());
          if (r->status != status::ok) co_return std::move(*r);
          last = std::move(*r);
        }
        co_return std::move(*last);
      });
}

}  // namespace yilian::app
