#include "engine/app/patient_api.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <initializer_list>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <google/protobuf/util/json_util.h>
#include <nlohmann/json.hpp>

#include "engine/app/booking_support.h"
#include "engine/app/patient_support.h"
#include "engine/app/request_json.h"

namespace yilian::app {

namespace {

namespace asio = boost::asio;
namespace wi = workflows::identity;
namespace ev = events::v1;
using api::http::verb;
using json = nlohmann::json;

constexpr std::size_t max_reason = 500;

// ---------------------------------------------------------------- input

// Fails on a member the endpoint does not know (a typo must not pass as "not given").
result<void> only_fields(const json& body, std::initializer_list<std::string_view> known, std::string_view where = {}) {
  for (const auto& [key, value] : body.items()) {
    if (std::find(known.begin(), known.end(), key) != known.end()) continue;
    std::string list;
    for (const auto k : known) list += (list.empty() ? "" : ", ") + std::string(k);
    const std::string path = where.empty() ? key : std::string(where) + "." + key;
    return fail(errc::invalid_argument, path + " is not a field (" + list + ")", path);
  }
  return {};
}

result<ev::Identifier> read_identifier(const json& body) {
  const auto it = body.find("identifier");
  if (it == body.end() || !it->is_object()) {
    return fail(errc::invalid_argument, "identifier {\"system\",\"value\"} names the record", "identifier");
  }
  if (auto r = only_fields(*it, {"system", "value", "type", "assigner"}, "identifier"); !r) return std::unexpected(r.error());
  ev::Identifier id;
  for (const auto& [name, setter] : {std::pair{"system", &ev::Identifier::set_system<const std::string&>},
                                     std::pair{"value", &ev::Identifier::set_value<const std::string&>}}) {
    auto v = string_field(*it, name, true);
    if (!v) return fail(errc::invalid_argument, "identifier." + v.error().message, "identifier." + std::string(name));
    if (v->empty()) return fail(errc::invalid_argument, "identifier." + std::string(name) + " is empty", "identifier");
    (id.*setter)(*v);
  }
  return id;
}

result<std::string> read_reason(const json& body) {
  auto reason = string_field(body, "reason", false);
  if (!reason) return reason;
  if (reason->size() > max_reason) {
    return fail(errc::invalid_argument, "reason is at most " + std::to_string(max_reason) + " bytes", "reason");
  }
  return reason;
}

result<ev::Sex> parse_sex(std::string_view v) {
  std::string s(v);
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (s == "male" || s == "m" || s == "sex_male") return ev::SEX_MALE;
  if (s == "female" || s == "f" || s == "sex_female") return ev::SEX_FEMALE;
  if (s == "other" || s == "o" || s == "sex_other") return ev::SEX_OTHER;
  if (s == "unknown" || s == "u" || s == "sex_unknown") return ev::SEX_UNKNOWN;
  return fail(errc::invalid_argument, "sex is male, female, other or unknown", "sex");
}

bool has_non_ascii(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
}

// ---------------------------------------------------------------- output

json review_json(const wi::review_info& r, const wi::view& v, const patients::access& who,
                 const config::loaded_consortium& cfg) {
  json ids = json::array();
  for (const auto& id : r.record.identifiers) ids.push_back(patients::identifier_json(id));
  json record{{"hospital", r.record.hospital},
              {"identifiers", std::move(ids)},
              {"observed_only", r.record.observed_only},
              {"demographics", booking::demographics_json(r.record.demographics)}};
  if (const auto* h = cfg.hospital(r.record.hospital); h != nullptr && !h->name().empty()) record["hospital_name"] = h->name();
  json j{{"id", r.id},
         {"state", r.state},
         {"score_bits", r.score_bits},
         {"hold", r.hold},
         {"record", std::move(record)},
         {"record_enterprise_id", r.record_enterprise_id},
         {"candidate_enterprise_id", r.candidate_enterprise_id}};
  // The candidate side by side, for the operator's comparison.
  if (auto c = v.person(r.candidate_enterprise_id)) j["candidate"] = patients::person_json(*c, who, cfg);
  return j;
}

// A link decision as JSON (proto field names). A caller bound to a hospital
// sees the identifiers of records that are still this person's; records
// the decision moved elsewhere (a split) belong to a person it may not see.
json history_json(const ev::PatientLinkChanged& c, const std::set<std::string>& own, bool everything) {
  ev::PatientLinkChanged copy = c;
  std::size_t withheld = 0;
  if (!everything) {
    copy.clear_identifiers();
    for (const auto& id : c.identifiers()) {
      if (own.contains(id.system() + "|" + id.value())) *copy.add_identifiers() = id;
      else ++withheld;
    }
  }
  std::string text;
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(copy, &text, o);
  auto j = json::parse(text, nullptr, false);
  if (j.is_discarded()) j = json::object();
  if (withheld > 0) j["identifiers_withheld"] = withheld;
  return j;
}

std::vector<std::string> one(std::string id) {
  std::vector<std::string> ids;
  if (!id.empty()) ids.push_back(std::move(id));
  return ids;
}

// ---------------------------------------------------------------- handlers

result<api::response> rest_search(wi::service& svc, api::audit_log& audit, api::request& req,
                                  const config::loaded_consortium& cfg) {
  static constexpr std::string_view known[] = {"identifier", "family", "given", "name",
                                               "birth_date", "sex",    "phone", "limit"};
  for (const auto& [name, value] : req.query) {
    if (std::find(std::begin(known), std::end(known), name) != std::end(known)) continue;
    return fail(errc::invalid_argument,
                "unknown parameter " + name + " (identifier, family, given, name, birth_date, sex, phone, limit)", name);
  }
  if (auto r = patients::ready(svc); !r) return std::unexpected(r.error());
  const patients::access who(*req.principal);

  if (const auto token = req.query_param("identifier")) {
    if (req.query.size() > 1 + (req.query_param("limit") ? 1U : 0U)) {
      return fail(errc::invalid_argument, "search by identifier or by demographics, not both", "identifier");
    }
    auto id = patients::parse_token(*token, "identifier");
    if (!id) return std::unexpected(id.error());
    auto p = svc.read([&](const wi::view& v) { return patients::visible_person_of(v, who, id->first, id->second); });
    json list = json::array();
    std::vector<std::string> ids;
    if (p) {
      ids.push_back(p->enterprise_id);
      list.push_back(patients::person_json(*p, who, cfg));
    }
    audit.record(req, "search", "Patient", ids);
    return api::response::json(json{{"patients", std::move(list)}});
  }

  ev::Demographics q;
  for (const auto& [param, setter] : {std::pair{"family", &ev::PersonName::set_family<const std::string&>},
                                      std::pair{"given", &ev::PersonName::set_given<const std::string&>}}) {
    if (auto v = req.query_param(param); v && !v->empty()) (q.mutable_name()->*setter)(std::string(*v));
  }
  if (auto v = req.query_param("name"); v && !v->empty()) {
    // A whole name in one field: hanzi or romanised; the index splits it.
    if (has_non_ascii(*v)) q.mutable_name()->set_hanzi(std::string(*v));
    else q.mutable_name()->set_pinyin(std::string(*v));
  }
  if (auto v = req.query_param("birth_date"); v && !v->empty()) q.set_birth_date(std::string(*v));
  if (auto v = req.query_param("sex"); v && !v->empty()) {
    auto s = parse_sex(*v);
    if (!s) return std::unexpected(s.error());
    q.set_sex(*s);
  }
  if (auto v = req.query_param("phone"); v && !v->empty()) {
    auto* t = q.add_telecom();
    t->set_system("phone");
    t->set_value(std::string(*v));
  }
  const bool named = !q.name().family().empty() || !q.name().given().empty() || !q.name().hanzi().empty() ||
                     !q.name().pinyin().empty();
  if (!named && q.birth_date().empty() && q.telecom_size() == 0) {
    return fail(errc::invalid_argument,
                "search by identifier=<system>|<value>, or by demographics: a name (family, given or name), "
                "birth_date or phone, with sex to narrow it",
                "identifier");
  }
  const std::size_t limit = req.count_param("limit", 10, 50);
  // A hospital sees only persons with a record of its own: ask for more and
  // keep the visible ones.
  const std::size_t ask = who.everything() ? limit : std::min<std::size_t>(limit * 5, 250);
  std::vector<std::string> ids;
  auto list = svc.read([&](const wi::view& v) {
    json out = json::array();
    for (const auto& hit : v.search(q, {}, ask)) {
      if (out.size() >= limit) break;
      if (!who.may_read(hit.person)) continue;
      auto j = patients::person_json(hit.person, who, cfg);
      j["match"] = {{"verdict", hit.verdict}, {"score_bits", hit.score_bits}};
      ids.push_back(hit.person.enterprise_id);
      out.push_back(std::move(j));
    }
    return out;
  });
  audit.record(req, "search", "Patient", ids);
  return api::response::json(json{{"patients", std::move(list)}});
}

// Runs an operator's command and answers the person the record belongs to afterwards.
asio::awaitable<result<api::response>> run_command(wi::service& svc, api::audit_log& audit, api::request& req,
                                                   ev::PatientLinkCommand cmd, std::vector<std::string> ids,
                                                   const config::loaded_consortium& cfg,
                                                   std::chrono::milliseconds timeout) {
  const std::string command_id = cmd.command_id();
  auto outcome = co_await patients::submit(svc, std::move(cmd), req.principal->hospital.value(), timeout);
  if (!outcome) {
    audit.record(req, "update", "PatientLink", ids, to_string(outcome.error().code));
    co_return std::unexpected(outcome.error());
  }
  if (outcome->refused) {
    audit.record(req, "update", "PatientLink", ids, to_string(outcome->refused->code));
    co_return std::unexpected(*outcome->refused);
  }
  if (!outcome->enterprise_id.empty() &&
      std::find(ids.begin(), ids.end(), outcome->enterprise_id) == ids.end()) {
    ids.push_back(outcome->enterprise_id);
  }
  audit.record(req, "update", "PatientLink", ids);
  const patients::access who(*req.principal);
  auto person = svc.read([&](const wi::view& v) { return v.person(outcome->enterprise_id); });
  json body{{"command_id", outcome->command_id.empty() ? command_id : outcome->command_id},
            {"enterprise_id", outcome->enterprise_id}};
  body["patient"] = person ? patients::person_json(*person, who, cfg) : json(nullptr);
  co_return api::response::json(body);
}

// The command every endpoint starts from.
ev::PatientLinkCommand command_for(const api::request& req, ev::PatientLinkCommand::Action action,
                                   const std::string& given_id, std::string reason) {
  ev::PatientLinkCommand c;
  c.set_command_id(patients::command_id_for(req, given_id));
  c.set_action(action);
  c.set_decided_by(req.principal->id.value());
  c.set_reason(std::move(reason));
  return c;
}

}  // namespace

void add_patient_routes(api::router& routes, wi::service& svc, api::audit_log& audit,
                        const config::loaded_consortium& cfg, patient_api_options options) {
  const config::loaded_consortium* c = &cfg;  // outlives the routes

  routes.add(verb::get, "/api/v1/patients",
             [&svc, &audit, c](api::request& req) -> result<api::response> {
               return rest_search(svc, audit, req, *c);
             });

  routes.add(verb::get, "/api/v1/patients/{enterprise_id}", [&svc, &audit, c](api::request& req) -> result<api::response> {
    const std::string id(req.path_param("enterprise_id"));
    if (auto r = patients::ready(svc); !r) return std::unexpected(r.error());
    const patients::access who(*req.principal);
    auto p = svc.read([&](const wi::view& v) { return patients::visible_person(v, who, id); });
    if (!p) {
      audit.record(req, "read", "Patient", one(id), "not_found");
      return fail(errc::not_found, "no patient " + id + " with a record of your hospital", "enterprise_id");
    }
    std::vector<std::string> ids = one(id);
    if (p->enterprise_id != id) ids.push_back(p->enterprise_id);  // merged away: the survivor answers
    audit.record(req, "read", "Patient", ids);
    return api::response::json(patients::person_json(*p, who, *c));
  });

  routes.add(verb::get, "/api/v1/patients/{enterprise_id}/history", [&svc, &audit](api::request& req) -> result<api::response> {
    const std::string id(req.path_param("enterprise_id"));
    if (auto r = patients::ready(svc); !r) return std::unexpected(r.error());
    const patients::access who(*req.principal);
    auto out = svc.read([&](const wi::view& v) -> std::optional<json> {
      auto p = patients::visible_person(v, who, id);
      if (!p) return std::nullopt;
      std::set<std::string> own;
      for (const auto& r : p->records) {
        for (const auto& i : r.identifiers) own.insert(i.system() + "|" + i.value());
      }
      json list = json::array();
      for (const auto& change : v.history(p->enterprise_id)) list.push_back(history_json(change, own, who.everything()));
      return json{{"enterprise_id", p->enterprise_id}, {"history", std::move(list)}};
    });
    if (!out) {
      audit.record(req, "read", "PatientHistory", one(id), "not_found");
      return fail(errc::not_found, "no patient " + id + " with a record of your hospital", "enterprise_id");
    }
    audit.record(req, "read", "PatientHistory", one((*out)["enterprise_id"].get<std::string>()));
    return api::response::json(*out);
  });

  routes.add(verb::get, "/api/v1/patient-reviews", [&svc, &audit, c](api::request& req) -> result<api::response> {
    const patients::access who(*req.principal);
    if (!who.may_decide()) {
      audit.record(req, "search", "PatientReview", {}, "forbidden");
      return fail(errc::permission_denied, "the review queue is for consortium operators");
    }
    const std::string state(req.query_param("state").value_or("open"));
    if (state != "open" && state != "all") return fail(errc::invalid_argument, "state is open or all", "state");
    if (auto r = patients::ready(svc); !r) return std::unexpected(r.error());
    const auto limit = req.count_param("limit", 100, 1000);
    std::vector<std::string> ids;
    auto list = svc.read([&](const wi::view& v) {
      json out = json::array();
      for (const auto& r : v.reviews(state == "open")) {
        if (out.size() >= limit) break;
        ids.push_back(r.record_enterprise_id);
        if (!r.candidate_enterprise_id.empty()) ids.push_back(r.candidate_enterprise_id);
        out.push_back(review_json(r, v, who, *c));
      }
      return out;
    });
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    audit.record(req, "search", "PatientReview", ids);
    return api::response::json(json{{"reviews", std::move(list)}});
  });

  for (const auto& [suffix, action] : {std::pair{"accept", ev::PatientLinkCommand::ACTION_ACCEPT_REVIEW},
                                       std::pair{"reject", ev::PatientLinkCommand::ACTION_REJECT_REVIEW}}) {
    routes.add(verb::post, "/api/v1/patient-reviews/{id}/" + std::string(suffix),
               [&svc, &audit, c, options, act = action](api::request& req) -> asio::awaitable<result<api::response>> {
                 const patients::access who(*req.principal);
                 const std::string text(req.path_param("id"));
                 if (!who.may_decide()) {
                   audit.record(req, "update", "PatientLink", {}, "forbidden");
                   co_return fail(errc::permission_denied, "reviews are decided by consortium operators");
                 }
                 std::uint32_t review = 0;
                 const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), review);
                 if (ec != std::errc() || end != text.data() + text.size()) {
                   co_return fail(errc::not_found, "no review " + text, "id");
                 }
                 auto body = parse_body(req, false);
                 if (!body) co_return std::unexpected(body.error());
                 if (auto r = only_fields(*body, {"command_id", "reason"}); !r) co_return std::unexpected(r.error());
                 auto given = string_field(*body, "command_id", false);
                 if (!given) co_return std::unexpected(given.error());
                 auto reason = read_reason(*body);
                 if (!reason) co_return std::unexpected(reason.error());
                 // The persons the review is about, for the audit record.
                 std::vector<std::string> ids = svc.read([&](const wi::view& v) {
                   std::vector<std::string> out;
                   for (const auto& r : v.reviews(false)) {
                     if (r.id != review) continue;
                     out.push_back(r.record_enterprise_id);
                     if (!r.candidate_enterprise_id.empty()) out.push_back(r.candidate_enterprise_id);
                   }
                   return out;
                 });
                 auto cmd = command_for(req, act, *given, std::move(*reason));
                 cmd.set_review_id(review);
                 co_return co_await run_command(svc, audit, req, std::move(cmd), std::move(ids), *c,
                                                options.decision_timeout);
               });
  }

  for (const auto& [suffix, action] : {std::pair{"split", ev::PatientLinkCommand::ACTION_SPLIT},
                                       std::pair{"records", ev::PatientLinkCommand::ACTION_MOVE}}) {
    routes.add(
        verb::post, "/api/v1/patients/{enterprise_id}/" + std::string(suffix),
        [&svc, &audit, c, options, act = action](api::request& req) -> asio::awaitable<result<api::response>> {
          const patients::access who(*req.principal);
          const std::string id(req.path_param("enterprise_id"));
          if (!who.may_decide()) {
            audit.record(req, "update", "PatientLink", one(id), "forbidden");
            co_return fail(errc::permission_denied, "links are changed by consortium operators");
          }
          auto body = parse_body(req, true);
          if (!body) co_return std::unexpected(body.error());
          if (auto r = only_fields(*body, {"identifier", "reason", "command_id"}); !r) co_return std::unexpected(r.error());
          auto record = read_identifier(*body);
          if (!record) co_return std::unexpected(record.error());
          auto given = string_field(*body, "command_id", false);
          if (!given) co_return std::unexpected(given.error());
          auto reason = read_reason(*body);
          if (!reason) co_return std::unexpected(reason.error());
          if (auto r = patients::ready(svc); !r) co_return std::unexpected(r.error());
          // Check what the path and the body name before asking the index
          // (the values themselves are not repeated: they may be ID numbers).
          struct found {
            std::string person;  // the path's person (the survivor if merged away)
            std::string holder;  // the person holding the record; "" = unknown identifier
          };
          const auto f = svc.read([&](const wi::view& v) {
            found out;
            if (auto p = v.person(id)) out.person = p->enterprise_id;
            if (auto h = v.person_of(record->system(), record->value())) out.holder = h->enterprise_id;
            return out;
          });
          std::vector<std::string> ids = one(f.person.empty() ? id : f.person);
          if (!f.holder.empty() && f.holder != ids.front()) ids.push_back(f.holder);
          if (f.person.empty()) {
            audit.record(req, "update", "PatientLink", ids, "not_found");
            co_return fail(errc::not_found, "no patient " + id, "enterprise_id");
          }
          if (f.holder.empty()) {
            audit.record(req, "update", "PatientLink", ids, "not_found");
            co_return fail(errc::not_found, "no record has that " + record->system() + " identifier", "identifier");
          }
          if (act == ev::PatientLinkCommand::ACTION_SPLIT && f.holder != f.person) {
            audit.record(req, "update", "PatientLink", ids, "not_found");
            co_return fail(errc::not_found, "that identifier is not a record of patient " + f.person, "identifier");
          }
          auto cmd = command_for(req, act, *given, std::move(*reason));
          *cmd.mutable_record() = std::move(*record);
          if (act == ev::PatientLinkCommand::ACTION_MOVE) cmd.set_to_enterprise_patient_id(f.person);
          co_return co_await run_command(svc, audit, req, std::move(cmd), std::move(ids), *c, options.decision_timeout);
        });
  }
}

}  // namespace yilian::app
