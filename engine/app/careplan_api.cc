#include "engine/app/careplan_api.h"

#include <algorithm>
#include <array>
#include <optional>
#include <string_view>
#include <vector>

#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include "engine/app/booking_support.h"
#include "engine/app/request_json.h"
#include "engine/bus/publish.h"
#include "engine/core/ids.h"

namespace yilian::app {

namespace {

namespace asio = boost::asio;
namespace bk = workflows::booking;
namespace rc = workflows::recurring;
namespace ev = events::v1;
using api::http::status;
using api::http::verb;
using json = nlohmann::json;

google::protobuf::Timestamp timestamp(rc::seconds t) {
  google::protobuf::Timestamp ts;
  ts.set_seconds(t.time_since_epoch().count());
  return ts;
}

json time_json(rc::seconds t, const time_zone& zone) {
  if (t == rc::seconds{}) return nullptr;
  return bk::format_local(t, zone);
}

std::string tier_name(config::v1::Tier t) {
  if (t == config::v1::TIER_UNSPECIFIED) return {};
  std::string name = config::v1::Tier_Name(t);
  return name.substr(std::string_view("TIER_").size());
}

// Whether a principal may see a plan: its clinic's, or a consortium operator.
bool sees(const api::principal& p, const rc::care_plan& plan) {
  if (p.role == api::role::operator_ && p.hospital.value().empty()) return true;
  return p.hospital.value() == plan.clinic;
}

// A plan as the endpoints show it; `with_occurrences` adds each fired period
// and the state its booking is in now.
json plan_json(const rc::care_plan& plan, const rc::plan_book& book, const bk::service& bookings, rc::seconds now,
               bool with_occurrences) {
  const auto& zone = book.zone();
  json j{{"id", plan.id},
         {"status", rc::status_name(book.status_at(plan, now))},
         {"clinic_hospital", plan.clinic},
         {"exam_code", plan.exam_code},
         {"interval", rc::interval_name(plan.schedule.interval)},
         {"every", plan.schedule.every},
         {"starts_at", rc::date_text(plan.schedule.first)},
         {"until", plan.until ? json(rc::date_text(rc::local_date(*plan.until, zone))) : json(nullptr)},
         {"lead_days", plan.schedule.lead_days},
         {"preferred_tier", plan.preferred_tier == config::v1::TIER_UNSPECIFIED ? json(nullptr)
                                                                                : json(tier_name(plan.preferred_tier))},
         {"preferred_hospital", plan.preferred_hospital.empty() ? json(nullptr) : json(plan.preferred_hospital)},
         {"created_by", plan.created_by},
         {"created_at", time_json(plan.created_at, zone)},
         {"updated_at", time_json(plan.updated_at, zone)},
         {"patient", app::booking::demographics_json(plan.patient)},
         {"identifiers", app::booking::identifiers_json(plan.subject)}};
  if (plan.status == ev::CARE_PLAN_STATUS_CANCELLED) {
    j["cancelled_by"] = plan.cancelled_by;
    j["cancel_reason"] = plan.cancel_reason;
  }
  const auto count = rc::period_count(plan.schedule, zone);
  j["periods"] = count ? json(*count) : json(nullptr);
  j["fired"] = plan.occurrences.size();
  json next = nullptr;
  if (plan.status == ev::CARE_PLAN_STATUS_ACTIVE) {
    for (std::uint32_t k = plan.fired_prefix; k < rc::max_periods; ++k) {
      if (plan.fired(k)) continue;
      if (const auto p = rc::period_at(plan.schedule, k, zone)) {
        next = json{{"period", p->number}, {"date", rc::date_text(p->date)}, {"due", time_json(p->due, zone)}};
      }
      break;
    }
  }
  j["next_period"] = std::move(next);
  // The bookings' states: no-shows are what the clinic follows up.
  std::size_t booked = 0, failed = 0, no_shows = 0;
  json occurrences = json::array();
  bookings.read([&](const bk::ledger& l) {
    for (const auto& [number, o] : plan.occurrences) {
      const auto* b = o.booking_id.empty() ? nullptr : l.find(o.booking_id);
      if (o.failure.empty()) ++booked;
      else ++failed;
      if (b != nullptr && b->st == ev::BOOKING_STATE_NO_SHOW) ++no_shows;
      if (!with_occurrences) continue;
      occurrences.push_back({{"period", o.period},
                             {"period_start", rc::date_text(rc::local_date(o.period_start, zone))},
                             {"booking_id", o.booking_id.empty() ? json(nullptr) : json(o.booking_id)},
                             {"command_id", o.command_id},
                             {"equipment_id", o.equipment_id.empty() ? json(nullptr) : json(o.equipment_id)},
                             {"start", time_json(o.start, zone)},
                             {"failure", o.failure.empty() ? json(nullptr) : json(o.failure)},
                             {"booking_state", b != nullptr ? json(bk::state_name(b->st)) : json(nullptr)},
                             {"fired_at", time_json(o.recorded_at, zone)}});
    }
    return 0;
  });
  j["booked"] = booked;
  j["failed"] = failed;
  j["no_shows"] = no_shows;
  if (with_occurrences) j["occurrences"] = std::move(occurrences);
  return j;
}

result<std::uint32_t> count_field(const json& j, std::string_view name, std::uint32_t fallback, std::uint32_t least,
                                  std::uint32_t most) {
  const auto it = j.find(std::string(name));
  if (it == j.end() || it->is_null()) return fallback;
  const std::string range = std::to_string(least) + ".." + std::to_string(most);
  if (!it->is_number_integer()) {
    return fail(errc::invalid_argument, std::string(name) + " must be a whole number " + range, std::string(name));
  }
  const auto v = it->get<std::int64_t>();
  if (v < least || v > most) {
    return fail(errc::invalid_argument, std::string(name) + " must be in " + range, std::string(name));
  }
  return static_cast<std::uint32_t>(v);
}

// The plan a create request describes, checked against the consortium.
result<ev::Envelope> plan_from(const api::request& req, const json& body, const config::loaded_consortium& cfg,
                               const time_zone& zone, rc::seconds now, careplan_api_options options) {
  static constexpr std::array<std::string_view, 11> known{
      "patient", "identifiers", "exam_code", "interval", "every", "starts_at",
      "until", "lead_days", "preferred_tier", "preferred_hospital", "clinic_hospital"};
  for (const auto& [key, value] : body.items()) {
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      return fail(errc::invalid_argument, key + " is not a field of a care plan", key);
    }
  }
  const auto& p = *req.principal;
  ev::Envelope e;
  auto* c = e.mutable_care_plan_changed();
  c->set_status(ev::CARE_PLAN_STATUS_ACTIVE);

  // Whose plan: the caller's hospital; an operator names the clinic.
  auto clinic = string_field(body, "clinic_hospital", false);
  if (!clinic) return std::unexpected(clinic.error());
  const bool consortium_operator = p.role == api::role::operator_ && p.hospital.value().empty();
  if (clinic->empty()) *clinic = p.hospital.value();
  if (clinic->empty()) return fail(errc::invalid_argument, "clinic_hospital is required for an operator", "clinic_hospital");
  if (*clinic != p.hospital.value() && !consortium_operator) {
    return fail(errc::permission_denied, "a hospital makes care plans for its own patients only", "clinic_hospital");
  }
  if (cfg.hospital(*clinic) == nullptr) {
    return fail(errc::validation_failed, "clinic_hospital \"" + *clinic + "\" is not in the consortium", "clinic_hospital");
  }
  c->set_clinic_hospital(*clinic);

  // The exam: a catalogue code some shared machine does.
  auto exam = string_field(body, "exam_code", true);
  if (!exam) return std::unexpected(exam.error());
  auto does = [&](const config::v1::Equipment& eq) {
    return std::any_of(eq.exam_types().begin(), eq.exam_types().end(),
                       [&](const config::v1::ExamType& t) { return t.code() == *exam; });
  };
  if (std::none_of(cfg.consortium.equipment().begin(), cfg.consortium.equipment().end(), does)) {
    return fail(errc::validation_failed, "exam_code \"" + *exam + "\" is not in the consortium's catalogue", "exam_code");
  }
  c->set_exam_code(*exam);

  auto interval_text = string_field(body, "interval", true);
  if (!interval_text) return std::unexpected(interval_text.error());
  const auto interval = rc::interval_from_name(*interval_text);
  if (interval == ev::CARE_PLAN_INTERVAL_UNSPECIFIED) {
    return fail(errc::invalid_argument, "interval is one of weekly, monthly, quarterly, yearly", "interval");
  }
  c->set_interval(interval);
  auto every = count_field(body, "every", 1, 1, 52);
  if (!every) return std::unexpected(every.error());
  c->set_every(*every);
  auto lead = count_field(body, "lead_days", rc::default_lead_days, 1, 90);
  if (!lead) return std::unexpected(lead.error());
  c->set_lead_days(*lead);

  // Dates: local dates; the first period not before today, until not before it.
  civil_date dates[2];
  for (int i = 0; i < 2; ++i) {
    const char* name = i == 0 ? "starts_at" : "until";
    auto text = string_field(body, name, true);
    if (!text) return std::unexpected(text.error());
    auto d = rc::parse_date(*text);
    if (!d) return fail(errc::invalid_argument, std::string(name) + ": " + d.error().message, name);
    dates[i] = *d;
  }
  const civil_date today = rc::local_date(now, zone);
  const auto day_number = [](civil_date d) { return days_from_civil(d.year, d.month, d.day); };
  if (day_number(dates[0]) < day_number(today)) {
    return fail(errc::validation_failed, "starts_at is before today (" + rc::date_text(today) + ")", "starts_at");
  }
  if (day_number(dates[1]) < day_number(dates[0])) {
    return fail(errc::validation_failed, "until is before starts_at", "until");
  }
  if (day_number(dates[1]) - day_number(dates[0]) > options.max_span.count()) {
    return fail(errc::validation_failed,
                "a care plan runs at most " + std::to_string(options.max_span.count()) + " days; make a new one after",
                "until");
  }
  *c->mutable_starts_at() = timestamp(rc::local_midnight(dates[0], zone));
  *c->mutable_until() = timestamp(rc::local_midnight(dates[1], zone));

  // Where: a tier and/or a hospital whose machines do the exam.
  auto tier_text = string_field(body, "preferred_tier", false);
  if (!tier_text) return std::unexpected(tier_text.error());
  config::v1::Tier tier = config::v1::TIER_UNSPECIFIED;
  if (!tier_text->empty() &&
      (!config::v1::Tier_Parse("TIER_" + *tier_text, &tier) || tier == config::v1::TIER_UNSPECIFIED)) {
    return fail(errc::invalid_argument, "preferred_tier is one of PRIMARY, SECONDARY, TERTIARY", "preferred_tier");
  }
  auto hospital = string_field(body, "preferred_hospital", false);
  if (!hospital) return std::unexpected(hospital.error());
  auto exam_at = [&](auto&& pick) {
    for (const auto& eq : cfg.consortium.equipment()) {
      const auto* h = cfg.hospital(eq.hospital());
      if (h != nullptr && pick(*h) && does(eq)) return true;
    }
    return false;
  };
  if (!hospital->empty()) {
    const auto* h = cfg.hospital(*hospital);
    if (h == nullptr) {
      return fail(errc::validation_failed, "preferred_hospital \"" + *hospital + "\" is not in the consortium",
                  "preferred_hospital");
    }
    if (tier != config::v1::TIER_UNSPECIFIED && h->tier() != tier) {
      return fail(errc::validation_failed, "preferred_hospital " + *hospital + " is not of preferred_tier " + *tier_text,
                  "preferred_hospital");
    }
    if (!exam_at([&](const config::v1::Hospital& x) { return x.id() == *hospital; })) {
      return fail(errc::validation_failed, "no shared machine of " + *hospital + " does " + *exam, "preferred_hospital");
    }
    c->set_preferred_hospital(*hospital);
  }
  if (tier != config::v1::TIER_UNSPECIFIED) {
    if (!exam_at([&](const config::v1::Hospital& x) { return x.tier() == tier; })) {
      return fail(errc::validation_failed, "no shared machine of a " + *tier_text + " hospital does " + *exam,
                  "preferred_tier");
    }
    c->set_preferred_tier(static_cast<std::uint32_t>(tier));
  }

  // Who: identifiers are required (the performing hospital and the identity
  // index match on them); demographics as the booking endpoints take them.
  const auto ids = body.find("identifiers");
  if (ids == body.end() || ids->is_null()) {
    return fail(errc::invalid_argument, "identifiers are required (at least one {system, value})", "identifiers");
  }
  if (auto read = app::booking::read_identifiers(*ids, *e.mutable_subject()); !read) return std::unexpected(read.error());
  if (e.subject().identifiers_size() == 0) {
    return fail(errc::invalid_argument, "identifiers are required (at least one {system, value})", "identifiers");
  }
  if (const auto it = body.find("patient"); it != body.end() && !it->is_null()) {
    if (auto read = app::booking::read_demographics(*it, *c->mutable_patient()); !read) {
      return std::unexpected(read.error());
    }
  }
  c->set_actor(p.id.value());
  return e;
}

// Envelope fields every CarePlanChanged from the API carries.
void stamp(ev::Envelope& e, const api::request& req, std::string event_id, rc::seconds now) {
  const auto& p = *req.principal;
  e.set_event_id(std::move(event_id));
  e.set_type("yilian.events.v1.CarePlanChanged");
  e.set_schema_version(1);
  *e.mutable_occurred_at() = timestamp(now);
  *e.mutable_recorded_at() = timestamp(now);
  auto* src = e.mutable_source();
  src->set_hospital(p.hospital.value());
  src->set_system("api");
  src->set_protocol(ev::PROTOCOL_API);
  src->set_principal(p.id.value());
  src->set_control_id(req.request_id);
}

// Makes the change durable on the care-plan topic, then visible to this
// instance's reads at once.
asio::awaitable<result<void>> publish_change(bus::bus& b, rc::scheduler& plans, const ev::Envelope& e) {
  // A named message, not a temporary in the co_await expression: g++ 12
  // destroys such temporaries twice in coroutine frames.
  bus::message m{.topic = plans.options().topic, .key = e.care_plan_changed().care_plan_id(),
                 .value = e.SerializeAsString(), .headers = bk::record_headers(e)};
  auto published = co_await bus::async_publish(b, std::move(m), asio::use_awaitable);
  if (!published) co_return std::unexpected(published.error());
  plans.note(e);
  co_return result<void>{};
}

}  // namespace

result<std::unique_ptr<rc::scheduler>> start_careplan_scheduler(bus::bus& b, bk::service& bookings,
                                                                const config::loaded_consortium& cfg,
                                                                const std::string& group_prefix,
                                                                metrics::registry* registry) {
  auto zone = time_zone::load(cfg.consortium.time_zone().empty() ? "UTC" : cfg.consortium.time_zone());
  if (!zone) return std::unexpected(zone.error());
  auto s = std::make_unique<rc::scheduler>(
      b, bookings,
      rc::scheduler_options{.topic = std::string(config::topic_name(ev::TOPIC_CAREPLAN)),
                            .outbound_topic = std::string(config::topic_name(ev::TOPIC_OUTBOUND)),
                            .group_prefix = group_prefix,
                            .zone = *zone},
      registry);
  if (auto started = s->start(); !started) return std::unexpected(started.error());
  return s;
}

void add_careplan_routes(api::router& routes, rc::scheduler& plans, bk::service& bookings, bus::bus& b,
                         api::audit_log& audit, careplan_api_options options) {
  const auto* cfg = bookings.read([](const bk::ledger& l) { return &l.config(); });

  routes.add(verb::post, "/api/v1/care-plans",
             [&plans, &bookings, &b, &audit, cfg, options](api::request& req) -> asio::awaitable<result<api::response>> {
               auto body = parse_body(req, true);
               if (!body) co_return std::unexpected(body.error());
               const auto now = plans.now();
               auto e = plan_from(req, *body, *cfg, plans.options().zone, now, options);
               if (!e) {
                 audit.record(req, "create", "CarePlan", {}, to_string(e.error().code));
                 co_return std::unexpected(e.error());
               }
               const auto& p = *req.principal;
               const auto key = req.header("Idempotency-Key");
               const std::string id =
                   key.empty() ? random_id("cp-") : stable_id("cp-", p.id.value() + "\n" + std::string(key));
               const std::vector<std::string> ids{id};
               // A repeated request (same Idempotency-Key): the plan the first one made.
               auto repeat = plans.read([&](const rc::plan_book& book) -> std::optional<json> {
                 const auto* plan = book.find(id);
                 if (plan == nullptr) return std::nullopt;
                 if (!sees(p, *plan)) return json(nullptr);
                 return plan_json(*plan, book, bookings, now, true);
               });
               if (repeat) {
                 if (repeat->is_null()) co_return fail(errc::conflict, "the Idempotency-Key was used for another plan");
                 audit.record(req, "create", "CarePlan", ids, "repeat");
                 co_return api::response::json(*repeat, status::ok).with_header("Location", "/api/v1/care-plans/" + id);
               }
               e->mutable_care_plan_changed()->set_care_plan_id(id);
               stamp(*e, req, "careplan-changed:" + id + ":created", now);
               if (auto published = co_await publish_change(b, plans, *e); !published) {
                 audit.record(req, "create", "CarePlan", ids, to_string(published.error().code));
                 co_return std::unexpected(published.error());
               }
               plans.poke();  // a first period due at once is booked now, not at the next tick
               audit.record(req, "create", "CarePlan", ids);
               auto out = plans.read([&](const rc::plan_book& book) -> std::optional<json> {
                 const auto* plan = book.find(id);
                 if (plan == nullptr) return std::nullopt;
                 return plan_json(*plan, book, bookings, now, true);
               });
               if (!out) co_return fail(errc::internal, "the new care plan is not in the view", id);
               co_return api::response::json(*out, status::created).with_header("Location", "/api/v1/care-plans/" + id);
             });

  routes.add(verb::get, "/api/v1/care-plans", [&plans, &bookings, &audit](api::request& req) -> result<api::response> {
    const auto& p = *req.principal;
    const bool consortium_operator = p.role == api::role::operator_ && p.hospital.value().empty();
    std::string clinic = p.hospital.value();
    if (auto c = req.query_param("clinic"); c && !c->empty()) {
      if (!consortium_operator && *c != clinic) {
        return fail(errc::permission_denied, "a hospital sees only its own care plans", "clinic");
      }
      clinic = std::string(*c);
    }
    const std::string want(req.query_param("status").value_or(""));
    if (!want.empty() && want != "ACTIVE" && want != "ENDED" && want != "CANCELLED") {
      return fail(errc::invalid_argument, "status is one of ACTIVE, ENDED, CANCELLED", "status");
    }
    const auto limit = req.count_param("limit", 100, 1000);
    const auto now = plans.now();
    std::vector<std::string> ids;
    auto list = plans.read([&](const rc::plan_book& book) {
      json out = json::array();
      for (const auto* plan : book.of_clinic(clinic)) {
        if (out.size() >= limit) break;
        if (!want.empty() && rc::status_name(book.status_at(*plan, now)) != want) continue;
        ids.push_back(plan->id);
        out.push_back(plan_json(*plan, book, bookings, now, false));
      }
      return out;
    });
    audit.record(req, "search", "CarePlan", ids);
    return api::response::json(json{{"care_plans", std::move(list)}});
  });

  routes.add(verb::get, "/api/v1/care-plans/{id}", [&plans, &bookings, &audit](api::request& req) -> result<api::response> {
    const std::string id(req.path_param("id"));
    const auto& p = *req.principal;
    const auto now = plans.now();
    auto out = plans.read([&](const rc::plan_book& book) -> std::optional<json> {
      const auto* plan = book.find(id);
      if (plan == nullptr || !sees(p, *plan)) return std::nullopt;
      return plan_json(*plan, book, bookings, now, true);
    });
    const std::vector<std::string> ids{id};
    if (!out) {
      audit.record(req, "read", "CarePlan", ids, "not_found");
      return fail(errc::not_found, "no care plan " + id + " of your hospital", "id");
    }
    audit.record(req, "read", "CarePlan", ids);
    return api::response::json(*out);
  });

  routes.add(verb::post, "/api/v1/care-plans/{id}/cancel",
             [&plans, &bookings, &b, &audit](api::request& req) -> asio::awaitable<result<api::response>> {
               const std::string id(req.path_param("id"));
               const std::vector<std::string> ids{id};
               auto body = parse_body(req, false);
               if (!body) co_return std::unexpected(body.error());
               auto reason = string_field(*body, "reason", false);
               if (!reason) co_return std::unexpected(reason.error());
               const auto& p = *req.principal;
               const auto now = plans.now();
               struct found {
                 ev::CarePlanStatus st = ev::CARE_PLAN_STATUS_UNSPECIFIED;
                 ev::Envelope change;
               };
               auto plan = plans.read([&](const rc::plan_book& book) -> std::optional<found> {
                 const auto* x = book.find(id);
                 if (x == nullptr || !sees(p, *x)) return std::nullopt;
                 found f{.st = book.status_at(*x, now)};
                 // The cancellation repeats what the plan is, so it reads on its own.
                 auto* c = f.change.mutable_care_plan_changed();
                 c->set_care_plan_id(x->id);
                 c->set_status(ev::CARE_PLAN_STATUS_CANCELLED);
                 c->set_clinic_hospital(x->clinic);
                 c->set_exam_code(x->exam_code);
                 c->set_interval(x->schedule.interval);
                 c->set_every(x->schedule.every);
                 *c->mutable_starts_at() = timestamp(x->starts_at);
                 if (x->until) *c->mutable_until() = timestamp(*x->until);
                 c->set_preferred_tier(static_cast<std::uint32_t>(x->preferred_tier));
                 c->set_preferred_hospital(x->preferred_hospital);
                 c->set_lead_days(x->schedule.lead_days);
                 *f.change.mutable_subject() = x->subject;
                 return f;
               });
               if (!plan) {
                 audit.record(req, "update", "CarePlan", ids, "not_found");
                 co_return fail(errc::not_found, "no care plan " + id + " of your hospital", "id");
               }
               if (plan->st == ev::CARE_PLAN_STATUS_ENDED) {
                 audit.record(req, "update", "CarePlan", ids, "ended");
                 co_return fail(errc::conflict, "care plan " + id + " has ended", "id");
               }
               if (plan->st == ev::CARE_PLAN_STATUS_ACTIVE) {
                 auto& e = plan->change;
                 e.mutable_care_plan_changed()->set_actor(p.id.value());
                 e.mutable_care_plan_changed()->set_reason_text(*reason);
                 stamp(e, req, "careplan-changed:" + id + ":cancelled", now);
                 if (auto published = co_await publish_change(b, plans, e); !published) {
                   audit.record(req, "update", "CarePlan", ids, to_string(published.error().code));
                   co_return std::unexpected(published.error());
                 }
               }
               // Cancelled already: the same answer again.
               audit.record(req, "update", "CarePlan", ids);
               auto out = plans.read([&](const rc::plan_book& book) -> std::optional<json> {
                 const auto* x = book.find(id);
                 if (x == nullptr) return std::nullopt;
                 return plan_json(*x, book, bookings, now, true);
               });
               if (!out) co_return fail(errc::internal, "the care plan is not in the view", id);
               co_return api::response::json(*out);
             });
}

}  // namespace yilian::app
