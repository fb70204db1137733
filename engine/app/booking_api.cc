#include "engine/app/booking_api.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <map>
#include <memory>

#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include "engine/app/person_filter.h"
#include "engine/app/booking_support.h"
#include "engine/app/request_json.h"
#include "engine/core/ids.h"

namespace yilian::app {

namespace {

namespace asio = boost::asio;
namespace bk = workflows::booking;
namespace ev = events::v1;
using api::http::status;
using api::http::verb;
using json = nlohmann::json;

// A booking as the REST endpoints show it, written straight as text (it is
// the answer to every booking command).
// Reads only the ledger's fixed part (no lock needed).
void write_booking(api::json_out& j, const bk::booking_view& b, const bk::service& svc) {
  const auto* cal = svc.equipment(b.equipment_id);
  const time_zone zone = cal != nullptr ? cal->zone() : time_zone();
  auto time = [&](std::string_view key, bk::seconds t, bool shown = true) {
    j.key(key);
    if (shown && t != bk::seconds{}) {
      j.value(bk::format_local(t, zone));
    } else {
      j.null();
    }
  };
  j.begin_object();
  j.field("id", b.id).field("state", bk::state_name(b.st)).field("fhir_status", bk::fhir_appointment_status(b.st));
  j.field("version", b.version).field("equipment_id", b.equipment_id);
  if (cal != nullptr) j.field("equipment_name", cal->equipment().name()).field("location", cal->equipment().location());
  j.field("owner", b.owner).field("requesting_hospital", b.requesting_hospital).field("exam_code", b.exam_code);
  if (cal != nullptr) {
    if (const auto* e = cal->exam(b.exam_code)) j.field("exam_name", e->name());
  }
  time("start", b.slot.start, b.has_slot());
  time("end", b.slot.end, b.has_slot());
  time("hold_expires_at", b.hold_expires_at, b.st == ev::BOOKING_STATE_HELD);
  time("requested_at", b.requested_at);
  time("updated_at", b.updated_at);
  j.field("placer_order", b.placer_order).field("referral_id", b.referral_id).field("booked_by", b.booked_by);
  j.field("conflict", b.conflict);
  j.key("patient");
  booking::write_demographics(j, b.patient);
  j.key("identifiers");
  booking::write_identifiers(j, b.subject);
  j.key("history").begin_array();
  for (const auto& s : b.history) {
    j.begin_object().field("version", s.version).field("state", bk::state_name(s.to));
    j.field("action", bk::action_name(s.act));
    time("at", s.at);
    j.field("actor", s.actor);
    time("start", s.slot.start, s.slot.end > s.slot.start);
    j.field("reason", s.reason).end_object();
  }
  j.end_array().end_object();
}

std::string booking_text(const bk::booking_view& b, const bk::service& svc) {
  std::string out;
  out.reserve(1024);
  api::json_out j(out);
  write_booking(j, b, svc);
  return out;
}

// Sends the command, waits for its decision and answers with the booking.
asio::awaitable<result<api::response>> run_command(bk::service& svc, api::audit_log& audit, api::request& req,
                                                   ev::Envelope cmd, booking_api_options options,
                                                   status ok_status) {
  const std::vector<std::string> ids{cmd.booking_command().booking_id()};
  const std::string command_id = cmd.booking_command().command_id();
  auto d = co_await booking::submit(svc, std::move(cmd), options.decision_timeout);
  if (!d) co_return std::unexpected(d.error());
  if (d->refused) {
    audit.record(req, "update", "Booking", ids, d->refused->code);
    co_return booking::refusal_response(*d->refused, req);
  }
  audit.record(req, "update", "Booking", ids);
  if (!d->booking) {
    co_return api::response::json(
        json{{"command_id", command_id}, {"id", ids.front()}},
        ok_status);
  }
  auto body = booking_text(*d->booking, svc);  // the decision's version (immutable), rendered without the lock
  auto resp = api::response::json_text(std::move(body), ok_status);
  resp.with_header("Location", "/api/v1/bookings/" + d->booking->id);
  co_return resp;
}

}  // namespace

std::vector<metrics::callback_handle> add_booking_metrics(metrics::registry& registry, bk::service& svc) {
  std::vector<metrics::callback_handle> out;
  auto gauge = [&](std::string_view name, std::string_view help, auto field) {
    out.push_back(registry.add_callback_gauge(name, help, {"equipment"}, [&svc, field] {
      std::vector<metrics::sample> samples;
      const auto now = svc.now();
      svc.read([&](const bk::ledger& l) {
        for (const auto* cal : l.all_equipment()) {
          const auto u = l.use_of(cal->equipment_id(), bk::interval{now, now + std::chrono::days(7)});
          samples.push_back(metrics::sample{.label_values = {cal->equipment_id()},
                                            .value = static_cast<double>(u.*field)});
        }
        return 0;
      });
      return samples;
    }));
  };
  gauge("yilian_equipment_offered_minutes", "Minutes of the next 7 days a machine offers the consortium.",
        &bk::utilization::offered_minutes);
  gauge("yilian_equipment_booked_minutes", "Minutes of the next 7 days booked by other hospitals.",
        &bk::utilization::booked_minutes);
  return out;
}

void add_booking_routes(api::router& routes, bk::service& svc, api::audit_log& audit, booking_api_options options) {
  routes.add(verb::get, "/api/v1/equipment", [&svc](api::request&) -> result<api::response> {
    return svc.read([](const bk::ledger& l) {
      json out = json::array();
      for (const auto& e : l.config().consortium.equipment()) {
        json exams = json::array();
        for (const auto& x : e.exam_types()) {
          exams.push_back({{"code", x.code()}, {"name", x.name()}, {"duration_minutes", x.duration_minutes()}});
        }
        const auto* h = l.config().hospital(e.hospital());
        out.push_back({{"id", e.id()},
                       {"hospital", e.hospital()},
                       {"hospital_name", h != nullptr ? h->name() : std::string()},
                       {"modality", config::modality_code(e.modality())},
                       {"name", e.name()},
                       {"location", e.location()},
                       {"consortium_share_percent", e.consortium_share_percent()},
                       {"exam_types", std::move(exams)}});
      }
      return api::response::json(json{{"equipment", std::move(out)}});
    });
  });

  // Dates without an offset in queries are the consortium's local time.
  const time_zone consortium_zone =
      time_zone::load(svc.config().consortium.time_zone())
          .value_or(time_zone());
  routes.add(verb::get, "/api/v1/slots", [&svc, zone = consortium_zone](api::request& req) -> result<api::response> {
    const auto exam = req.query_param("exam");
    if (!exam || exam->empty()) return fail(errc::invalid_argument, "query parameter exam is required", "exam");
    const auto& p = *req.principal;
    bk::slot_query q;
    q.exam_code = std::string(*exam);
    q.modality = std::string(req.query_param("modality").value_or(""));
    q.hospital = std::string(req.query_param("hospital").value_or(""));
    q.equipment_id = std::string(req.query_param("equipment").value_or(""));
    q.limit = req.count_param("limit", 20, 500);
    q.requesting_hospital = p.hospital.value();
    if (auto f = req.query_param("for"); f && !f->empty()) {
      if (p.role != api::role::operator_ && p.hospital.value() != q.hospital) {
        return fail(errc::permission_denied, "only operators and the machine's owner may search for another hospital",
                    "for");
      }
      q.requesting_hospital = std::string(*f);
    }
    if (auto t = req.query_param("tier"); t && !t->empty()) {
      config::v1::Tier tier{};
      if (!config::v1::Tier_Parse("TIER_" + std::string(*t), &tier)) {
        return fail(errc::invalid_argument, "tier is one of PRIMARY, SECONDARY, TERTIARY", "tier");
      }
      q.tier = tier;
    }
    const auto now = svc.now();
    q.from = now;
    if (auto f = req.query_param("from"); f && !f->empty()) {
      auto t = bk::parse_instant(*f, zone);
      if (!t) return fail(errc::invalid_argument, "from: " + t.error().message, "from");
      q.from = *t;
    }
    q.to = q.from + std::chrono::days(14);
    if (auto f = req.query_param("to"); f && !f->empty()) {
      auto t = bk::parse_instant(*f, zone);
      if (!t) return fail(errc::invalid_argument, "to: " + t.error().message, "to");
      q.to = *t;
    }
    if (q.to - q.from > std::chrono::days(92)) {
      return fail(errc::invalid_argument, "search at most 92 days at once", "to");
    }
    return svc.read([&](const bk::ledger& l) {
      json out = json::array();
      for (const auto& s : l.search(q, now)) {
        const auto* cal = l.equipment(s.equipment_id);
        const auto* eq = l.config().equipment(s.equipment_id);
        const auto* h = l.config().hospital(s.hospital);
        out.push_back({{"slot_id", s.slot_id},
                       {"equipment_id", s.equipment_id},
                       {"equipment_name", eq != nullptr ? eq->name() : std::string()},
                       {"location", eq != nullptr ? eq->location() : std::string()},
                       {"modality", eq != nullptr ? config::modality_code(eq->modality()) : std::string()},
                       {"hospital", s.hospital},
                       {"hospital_name", h != nullptr ? h->name() : std::string()},
                       {"exam_code", s.exam_code},
                       {"start", bk::format_local(s.when.start, cal->zone())},
                       {"end", bk::format_local(s.when.end, cal->zone())}});
      }
      return api::response::json(json{{"slots", std::move(out)}});
    });
  });

  routes.add(
      verb::post, "/api/v1/bookings",
      [&svc, &audit, options](api::request& req) -> asio::awaitable<result<api::response>> {
        auto body = parse_body(req, true);
        if (!body) co_return std::unexpected(body.error());
        for (const auto& [key, value] : body->items()) {
          static constexpr std::array<std::string_view, 10> known{"action",      "slot_id",      "equipment_id",
                                                                  "start",       "exam_code",    "requesting_hospital",
                                                                  "placer_order", "referral_id", "patient",
                                                                  "identifiers"};
          if (std::find(known.begin(), known.end(), key) == known.end()) {
            co_return fail(errc::invalid_argument, key + " is not a field of a booking request", key);
          }
        }
        auto action_text = string_field(*body, "action", false);
        if (!action_text) co_return std::unexpected(action_text.error());
        const auto action = action_text->empty() ? ev::BOOKING_ACTION_BOOK : bk::action_from_name(*action_text);
        if (action != ev::BOOKING_ACTION_BOOK && action != ev::BOOKING_ACTION_HOLD &&
            action != ev::BOOKING_ACTION_REQUEST) {
          co_return fail(errc::invalid_argument, "action is one of book, hold, request", "action");
        }
        std::string equipment, start_text, exam;
        auto slot_id = string_field(*body, "slot_id", false);
        if (!slot_id) co_return std::unexpected(slot_id.error());
        if (!slot_id->empty()) {
          auto parts = booking::split_slot_id(*slot_id);
          if (!parts) co_return std::unexpected(parts.error());
          std::tie(equipment, start_text, exam) = std::move(*parts);
        }
        for (auto [name, target] : {std::pair{"equipment_id", &equipment}, std::pair{"start", &start_text},
                                    std::pair{"exam_code", &exam}}) {
          auto v = string_field(*body, name, false);
          if (!v) co_return std::unexpected(v.error());
          if (!v->empty()) *target = std::move(*v);
        }
        if (equipment.empty()) co_return fail(errc::invalid_argument, "equipment_id (or slot_id) is required", "equipment_id");
        if (exam.empty()) co_return fail(errc::invalid_argument, "exam_code (or slot_id) is required", "exam_code");
        const auto& p = *req.principal;
        auto requesting = string_field(*body, "requesting_hospital", false);
        if (!requesting) co_return std::unexpected(requesting.error());
        if (requesting->empty()) *requesting = p.hospital.value();
        if (requesting->empty()) {
          co_return fail(errc::invalid_argument, "requesting_hospital is required for an operator",
                         "requesting_hospital");
        }
        const auto now = svc.now();
        const std::string booking_id = booking::new_booking_id(req);
        auto cmd = booking::command_envelope(req, action, booking_id, equipment, now);
        auto* c = cmd.mutable_booking_command();
        c->set_exam_code(exam);
        c->set_requesting_hospital(*requesting);
        if (!start_text.empty()) {
          const auto* cal = svc.equipment(equipment);
          if (cal == nullptr) {
            co_return booking::refusal_response(
                bk::refusal{.kind = errc::not_found, .code = "unknown_equipment", .message = "no shared equipment \"" + equipment + "\""},
                req);
          }
          auto start = bk::parse_instant(start_text, cal->zone());
          if (!start) co_return fail(errc::invalid_argument, "start: " + start.error().message, "start");
          *c->mutable_start() = bk::to_timestamp(*start);
        }
        for (auto [name, setter] :
             {std::pair<const char*, void (ev::BookingCommand::*)(const std::string&)>{"placer_order",
                                                                                    &ev::BookingCommand::set_placer_order},
              std::pair<const char*, void (ev::BookingCommand::*)(const std::string&)>{"referral_id",
                                                                                    &ev::BookingCommand::set_referral_id}}) {
          auto v = string_field(*body, name, false);
          if (!v) co_return std::unexpected(v.error());
          (c->*setter)(*v);
        }
        if (const auto it = body->find("patient"); it != body->end() && !it->is_null()) {
          if (auto read = booking::read_demographics(*it, *c->mutable_patient()); !read) co_return std::unexpected(read.error());
        }
        if (const auto it = body->find("identifiers"); it != body->end() && !it->is_null()) {
          if (auto read = booking::read_identifiers(*it, *cmd.mutable_subject()); !read) co_return std::unexpected(read.error());
        }
        co_return co_await run_command(svc, audit, req, std::move(cmd), options, status::created);
      });

  routes.add(verb::get, "/api/v1/equipment/utilization", [&svc, zone = consortium_zone](api::request& req) -> result<api::response> {
    const auto& p = *req.principal;
    const auto now = svc.now();
    bk::interval range{now - std::chrono::days(30), now};
    for (auto [name, target] : {std::pair{"from", &range.start}, std::pair{"to", &range.end}}) {
      if (auto v = req.query_param(name); v && !v->empty()) {
        auto t = bk::parse_instant(*v, zone);
        if (!t) return fail(errc::invalid_argument, std::string(name) + ": " + t.error().message, name);
        *target = *t;
      }
    }
    if (range.end <= range.start || range.end - range.start > std::chrono::days(366)) {
      return fail(errc::invalid_argument, "from must be before to, at most a year apart", "to");
    }
    std::string hospital(req.query_param("hospital").value_or(""));
    if (p.role != api::role::operator_ || !p.hospital.value().empty()) {
      if (!hospital.empty() && hospital != p.hospital.value()) {
        return fail(errc::permission_denied, "a hospital sees its own machines' use only", "hospital");
      }
      hospital = p.hospital.value();
    }
    const std::string modality(req.query_param("modality").value_or(""));
    struct totals {
      std::int64_t working = 0, offered = 0, booked = 0, bookings = 0, used = 0, no_shows = 0, cancelled = 0;
      std::vector<std::int64_t> waits;
    };
    auto row = [](const totals& t) {
      bk::utilization u{.waits_seconds = t.waits};
      return json{{"working_minutes", t.working},
                  {"offered_minutes", t.offered},
                  {"booked_minutes", t.booked},
                  {"utilization", t.offered > 0 ? static_cast<double>(t.booked) / static_cast<double>(t.offered) : 0.0},
                  {"bookings", t.bookings},
                  {"used", t.used},
                  {"no_shows", t.no_shows},
                  {"no_show_rate", t.bookings > 0 ? static_cast<double>(t.no_shows) / static_cast<double>(t.bookings) : 0.0},
                  {"cancelled", t.cancelled},
                  {"median_wait_hours", static_cast<double>(u.median_wait_seconds()) / 3600.0}};
    };
    return svc.read([&](const bk::ledger& l) {
      std::map<std::string, totals> by_hospital, by_modality;
      json machines = json::array();
      for (const auto& e : l.config().consortium.equipment()) {
        if (!hospital.empty() && e.hospital() != hospital) continue;
        const std::string m = config::modality_code(e.modality());
        if (!modality.empty() && m != modality) continue;
        const auto u = l.use_of(e.id(), range);
        totals t{u.working_minutes, u.offered_minutes, u.booked_minutes, u.bookings, u.used, u.no_shows, u.cancelled,
                 u.waits_seconds};
        json r = row(t);
        r["equipment_id"] = e.id();
        r["hospital"] = e.hospital();
        r["modality"] = m;
        machines.push_back(std::move(r));
        for (auto* agg : {&by_hospital[e.hospital()], &by_modality[m]}) {
          agg->working += t.working;
          agg->offered += t.offered;
          agg->booked += t.booked;
          agg->bookings += t.bookings;
          agg->used += t.used;
          agg->no_shows += t.no_shows;
          agg->cancelled += t.cancelled;
          agg->waits.insert(agg->waits.end(), t.waits.begin(), t.waits.end());
        }
      }
      json hospitals = json::array(), modalities = json::array();
      for (const auto& [h, t] : by_hospital) {
        json r = row(t);
        r["hospital"] = h;
        hospitals.push_back(std::move(r));
      }
      for (const auto& [m, t] : by_modality) {
        json r = row(t);
        r["modality"] = m;
        modalities.push_back(std::move(r));
      }
      return api::response::json(json{{"from", bk::format_local(range.start, zone)},
                                      {"to", bk::format_local(range.end, zone)},
                                      {"equipment", std::move(machines)},
                                      {"by_hospital", std::move(hospitals)},
                                      {"by_modality", std::move(modalities)}});
    });
  }, api::route_options{.roles = {api::role::operator_, api::role::hospital_system}});

  routes.add(verb::get, "/api/v1/bookings", [&svc, &audit, options](api::request& req) -> result<api::response> {
    const auto& p = *req.principal;
    auto person = person_filter::from(req, options.patients);
    if (!person) return std::unexpected(person.error());
    std::string hospital = p.hospital.value();
    if (auto h = req.query_param("hospital"); h && !h->empty()) {
      if (p.role != api::role::operator_ && *h != hospital) {
        return fail(errc::permission_denied, "a hospital sees only its own bookings", "hospital");
      }
      hospital = std::string(*h);
    }
    if (hospital.empty()) return fail(errc::invalid_argument, "query parameter hospital is required", "hospital");
    const auto limit = req.count_param("limit", 100, 1000);
    const std::string want_state(req.query_param("state").value_or(""));
    std::vector<std::string> ids;
    std::string out;
    api::json_out j(out);
    j.begin_object().key("bookings").begin_array();
    svc.read([&](const bk::ledger& l) {
      const bool filtered = !want_state.empty() || *person;
      for (const auto* b : l.bookings_of(hospital, filtered ? 100000 : limit)) {
        if (!want_state.empty() && bk::state_name(b->st) != want_state) continue;
        if (*person && !(*person)->matches(b->subject)) continue;
        if (ids.size() >= limit) break;
        ids.push_back(b->id);
        write_booking(j, *b, svc);
      }
      return 0;
    });
    j.end_array().end_object();
    audit.record(req, "search", "Booking", ids);
    return api::response::json_text(std::move(out));
  });

  routes.add(verb::get, "/api/v1/bookings/{id}", [&svc, &audit](api::request& req) -> result<api::response> {
    const std::string id(req.path_param("id"));
    const auto& p = *req.principal;
    auto out = svc.read([&](const bk::ledger& l) -> std::optional<std::string> {
      const auto* b = l.find(id);
      if (b == nullptr || !booking::sees(p, *b)) return std::nullopt;
      return booking_text(*b, svc);
    });
    const std::vector<std::string> ids{id};
    if (!out) {
      audit.record(req, "read", "Booking", ids, "not_found");
      return fail(errc::not_found, "no booking " + id + " of your hospital", "id");
    }
    audit.record(req, "read", "Booking", ids);
    return api::response::json_text(std::move(*out));
  });

  routes.add(
      verb::post, "/api/v1/bookings/{id}/{action}",
      [&svc, &audit, options](api::request& req) -> asio::awaitable<result<api::response>> {
        const std::string id(req.path_param("id"));
        const auto action = bk::action_from_name(req.path_param("action"));
        if (action == ev::BOOKING_ACTION_UNSPECIFIED || action == ev::BOOKING_ACTION_REQUEST ||
            action == ev::BOOKING_ACTION_BLOCK || action == ev::BOOKING_ACTION_OPEN) {
          co_return fail(errc::not_found,
                         "no booking action " + std::string(req.path_param("action")) +
                             " (hold, book, reschedule, cancel, check-in, no-show, perform, report, correct, "
                             "expire-hold)",
                         "action");
        }
        auto body = parse_body(req, false);
        if (!body) co_return std::unexpected(body.error());
        const auto& p = *req.principal;
        std::string equipment;
        time_zone zone;
        const bool visible = svc.read([&](const bk::ledger& l) {
          const auto* b = l.find(id);
          if (b == nullptr || !booking::sees(p, *b)) return false;
          equipment = b->equipment_id;
          if (const auto* cal = l.equipment(equipment)) zone = cal->zone();
          return true;
        });
        if (!visible) {
          const std::vector<std::string> ids{id};
          audit.record(req, "update", "Booking", ids, "not_found");
          co_return fail(errc::not_found, "no booking " + id + " of your hospital", "id");
        }
        auto cmd = booking::command_envelope(req, action, id, equipment, svc.now());
        auto* c = cmd.mutable_booking_command();
        auto start = string_field(*body, "start", false);
        if (!start) co_return std::unexpected(start.error());
        if (!start->empty()) {
          auto t = bk::parse_instant(*start, zone);
          if (!t) co_return fail(errc::invalid_argument, "start: " + t.error().message, "start");
          *c->mutable_start() = bk::to_timestamp(*t);
        }
        auto exam = string_field(*body, "exam_code", false);
        if (!exam) co_return std::unexpected(exam.error());
        c->set_exam_code(*exam);
        auto reason = string_field(*body, "reason", false);
        if (!reason) co_return std::unexpected(reason.error());
        if (!reason->empty()) c->mutable_reason()->set_display(*reason);
        co_return co_await run_command(svc, audit, req, std::move(cmd), options, status::ok);
      });

  for (const auto& [suffix, action] : {std::pair{"block", ev::BOOKING_ACTION_BLOCK}, std::pair{"open", ev::BOOKING_ACTION_OPEN}}) {
    routes.add(
        verb::post, std::string("/api/v1/equipment/{id}/") + suffix,
        [&svc, &audit, options, action](api::request& req) -> asio::awaitable<result<api::response>> {
          const std::string equipment(req.path_param("id"));
          auto body = parse_body(req, true);
          if (!body) co_return std::unexpected(body.error());
          const auto* cal = svc.equipment(equipment);
          if (cal == nullptr) {
            co_return booking::refusal_response(
                bk::refusal{.kind = errc::not_found, .code = "unknown_equipment", .message = "no shared equipment \"" + equipment + "\""},
                req);
          }
          auto block_id = string_field(*body, "id", false);
          if (!block_id) co_return std::unexpected(block_id.error());
          if (block_id->empty()) *block_id = random_id("blk-");
          auto cmd = booking::command_envelope(req, action, *block_id, equipment, svc.now());
          auto* c = cmd.mutable_booking_command();
          for (auto [name, field] : {std::pair{"start", c->mutable_start()}, std::pair{"end", c->mutable_end()}}) {
            auto text = string_field(*body, name, true);
            if (!text) co_return std::unexpected(text.error());
            auto t = bk::parse_instant(*text, cal->zone());
            if (!t) co_return fail(errc::invalid_argument, std::string(name) + ": " + t.error().message, name);
            *field = bk::to_timestamp(*t);
          }
          auto reason = string_field(*body, "reason", false);
          if (!reason) co_return std::unexpected(reason.error());
          c->mutable_reason()->set_display(*reason);
          auto d = co_await booking::submit(svc, cmd, options.decision_timeout);
          if (!d) co_return std::unexpected(d.error());
          if (d->refused) co_return booking::refusal_response(*d->refused, req);
          std::vector<std::string> conflicts;
          svc.read([&](const bk::ledger& l) {
            for (const auto* b : l.bookings_on(equipment, bk::interval{bk::to_seconds(c->start()), bk::to_seconds(c->end())})) {
              if (!b->conflict.empty()) conflicts.push_back(b->id);
            }
            return 0;
          });
          (void)audit;
          co_return api::response::json(json{{"id", *block_id}, {"equipment_id", equipment},
                                             {"conflicting_bookings", conflicts}},
                                        action == ev::BOOKING_ACTION_BLOCK ? status::created : status::ok);
        },
        api::route_options{.roles = {api::role::operator_, api::role::hospital_system, api::role::clinic_user}});
  }
}

}  // namespace yilian::app
