#include "engine/app/booking_support.h"

#include <google/protobuf/util/time_util.h>

#include "engine/api/problem.h"
#include "engine/app/workflow_submit.h"
#include "engine/core/ids.h"

namespace yilian::app::booking {

namespace ev = events::v1;

// A refusal as an HTTP answer: the errc's status, the refusal's code.
api::response refusal_response(const bk::refusal& r, const api::request& req) {
  const auto m = api::map_error(r.kind);
  return api::problem_response(m.status, r.code, m.fhir_issue_code, r.message, "", req.path, req.request_id,
                               default_retriable(r.kind));
}

bool sees(const api::principal& p, const bk::booking_view& b) {
  if (p.role == api::role::operator_ && p.hospital.value().empty()) return true;
  return p.hospital.value() == b.requesting_hospital || p.hospital.value() == b.owner;
}

// The command envelope every endpoint starts from.
ev::Envelope command_envelope(const api::request& req, ev::BookingAction action, const std::string& booking_id,
                              const std::string& equipment_id, bk::seconds now) {
  ev::Envelope cmd;
  const auto& p = *req.principal;
  const auto key = req.header("Idempotency-Key");
  const std::string command_id =
      key.empty() ? random_id("cmd-") : stable_id("cmd-", p.id.value() + "\n" + std::string(key));
  cmd.set_event_id("booking-command:" + command_id);
  cmd.set_type("yilian.events.v1.BookingCommand");
  cmd.set_schema_version(1);
  *cmd.mutable_occurred_at() = bk::to_timestamp(now);
  *cmd.mutable_recorded_at() = bk::to_timestamp(now);
  auto* src = cmd.mutable_source();
  src->set_hospital(p.hospital.value());
  src->set_system("api");
  src->set_protocol(ev::PROTOCOL_API);
  src->set_principal(p.id.value());
  src->set_control_id(req.request_id);
  auto* c = cmd.mutable_booking_command();
  c->set_command_id(command_id);
  c->set_action(action);
  c->set_booking_id(booking_id);
  c->set_equipment_id(equipment_id);
  c->set_actor(p.id.value());
  c->set_actor_hospital(p.hospital.value());
  c->set_actor_is_operator(p.role == api::role::operator_);
  return cmd;
}


// "zs-ct-1.202611240800.CT-HEAD-PLAIN" -> equipment, local start, exam.
result<std::tuple<std::string, std::string, std::string>> split_slot_id(std::string_view id) {
  const auto a = id.find('.');
  const auto b = a == std::string_view::npos ? a : id.find('.', a + 1);
  if (b == std::string_view::npos || b - a - 1 != 12) {
    return fail(errc::invalid_argument, "slot_id is not <equipment>.<YYYYMMDDHHMM>.<exam code>", "slot_id");
  }
  const auto t = id.substr(a + 1, 12);
  std::string local = std::string(t.substr(0, 4)) + "-" + std::string(t.substr(4, 2)) + "-" +
                      std::string(t.substr(6, 2)) + "T" + std::string(t.substr(8, 2)) + ":" +
                      std::string(t.substr(10, 2));
  return std::make_tuple(std::string(id.substr(0, a)), std::move(local), std::string(id.substr(b + 1)));
}

nlohmann::json demographics_json(const ev::Demographics& d) {
  nlohmann::json j = nlohmann::json::object();
  nlohmann::json name = nlohmann::json::object();
  for (const auto& [key, value] : {std::pair{"hanzi", &d.name().hanzi()}, std::pair{"pinyin", &d.name().pinyin()},
                                   std::pair{"family", &d.name().family()}, std::pair{"given", &d.name().given()}}) {
    if (!value->empty()) name[key] = *value;
  }
  if (!name.empty()) j["name"] = std::move(name);
  if (!d.birth_date().empty()) j["birth_date"] = d.birth_date();
  if (d.sex() != ev::SEX_UNSPECIFIED) j["sex"] = ev::Sex_Name(d.sex());
  if (d.telecom_size() > 0) {
    auto& t = j["telecom"] = nlohmann::json::array();
    for (const auto& c : d.telecom()) {
      nlohmann::json item{{"system", c.system()}, {"value", c.value()}};
      if (c.use() != ev::CONTACT_USE_UNSPECIFIED) item["use"] = ev::ContactUse_Name(c.use());
      t.push_back(std::move(item));
    }
  }
  if (d.addresses_size() > 0) {
    auto& list = j["addresses"] = nlohmann::json::array();
    for (const auto& a : d.addresses()) {
      nlohmann::json item = nlohmann::json::object();
      for (const auto& [key, value] : {std::pair{"text", &a.text()}, std::pair{"province", &a.province()},
                                       std::pair{"city", &a.city()}, std::pair{"district", &a.district()},
                                       std::pair{"line", &a.line()}, std::pair{"postal_code", &a.postal_code()}}) {
        if (!value->empty()) item[key] = *value;
      }
      list.push_back(std::move(item));
    }
  }
  if (d.deceased()) j["deceased"] = true;
  if (d.has_deceased_at()) j["deceased_at"] = google::protobuf::util::TimeUtil::ToString(d.deceased_at());
  if (!d.ethnic_group().code().empty() || !d.ethnic_group().display().empty()) {
    nlohmann::json e = nlohmann::json::object();
    if (!d.ethnic_group().system().empty()) e["system"] = d.ethnic_group().system();
    if (!d.ethnic_group().code().empty()) e["code"] = d.ethnic_group().code();
    if (!d.ethnic_group().display().empty()) e["display"] = d.ethnic_group().display();
    j["ethnic_group"] = std::move(e);
  }
  return j;
}

namespace {

result<std::string> text_of(const nlohmann::json& j, const std::string& where) {
  if (!j.is_string()) return fail(errc::invalid_argument, where + " must be a string", where);
  return j.get<std::string>();
}

}  // namespace

result<void> read_demographics(const nlohmann::json& j, ev::Demographics& out) {
  if (!j.is_object()) return fail(errc::invalid_argument, "patient must be an object", "patient");
  for (const auto& [key, value] : j.items()) {
    const std::string where = "patient." + key;
    if (key == "name") {
      if (!value.is_object()) return fail(errc::invalid_argument, where + " must be an object", where);
      for (const auto& [part, text] : value.items()) {
        auto v = text_of(text, where + "." + part);
        if (!v) return std::unexpected(v.error());
        auto* n = out.mutable_name();
        if (part == "hanzi") n->set_hanzi(*v);
        else if (part == "pinyin") n->set_pinyin(*v);
        else if (part == "family") n->set_family(*v);
        else if (part == "given") n->set_given(*v);
        else return fail(errc::invalid_argument, where + "." + part + " is not a field (hanzi, pinyin, family, given)", where);
      }
    } else if (key == "birth_date" || key == "birthDate") {
      auto v = text_of(value, where);
      if (!v) return std::unexpected(v.error());
      out.set_birth_date(*v);
    } else if (key == "sex") {
      auto v = text_of(value, where);
      if (!v) return std::unexpected(v.error());
      ev::Sex sex{};
      if (!ev::Sex_Parse(*v, &sex)) return fail(errc::invalid_argument, where + " is one of SEX_MALE, SEX_FEMALE, SEX_OTHER, SEX_UNKNOWN", where);
      out.set_sex(sex);
    } else if (key == "telecom") {
      if (!value.is_array()) return fail(errc::invalid_argument, where + " must be an array", where);
      for (const auto& t : value) {
        if (!t.is_object()) return fail(errc::invalid_argument, where + "[] must be objects", where);
        auto* c = out.add_telecom();
        c->set_system(t.value("system", ""));
        c->set_value(t.value("value", ""));
      }
    } else {
      return fail(errc::invalid_argument, where + " is not a field (name, birth_date, sex, telecom)", where);
    }
  }
  return {};
}

nlohmann::json identifiers_json(const ev::Subject& s) {
  auto out = nlohmann::json::array();
  for (const auto& id : s.identifiers()) {
    nlohmann::json j{{"system", id.system()}, {"value", id.value()}};
    if (id.type() != ev::IDENTIFIER_TYPE_UNSPECIFIED) j["type"] = ev::IdentifierType_Name(id.type());
    out.push_back(std::move(j));
  }
  return out;
}

result<void> read_identifiers(const nlohmann::json& j, ev::Subject& out) {
  if (!j.is_array()) return fail(errc::invalid_argument, "identifiers must be an array", "identifiers");
  for (const auto& item : j) {
    if (!item.is_object()) return fail(errc::invalid_argument, "identifiers[] must be objects", "identifiers");
    auto* id = out.add_identifiers();
    for (const auto& [key, value] : item.items()) {
      auto v = text_of(value, "identifiers[]." + key);
      if (!v) return std::unexpected(v.error());
      if (key == "system") id->set_system(*v);
      else if (key == "value") id->set_value(*v);
      else if (key == "type") {
        ev::IdentifierType t{};
        if (!ev::IdentifierType_Parse(*v, &t)) return fail(errc::invalid_argument, "identifiers[].type is not an IdentifierType", "identifiers");
        id->set_type(t);
      } else {
        return fail(errc::invalid_argument, "identifiers[]." + key + " is not a field (system, value, type)", "identifiers");
      }
    }
    if (id->system().empty() || id->value().empty()) {
      return fail(errc::invalid_argument, "identifiers[] need a system and a value", "identifiers");
    }
  }
  return {};
}

std::string new_booking_id(const api::request& req) {
  const auto key = req.header("Idempotency-Key");
  return key.empty() ? random_id("bk-") : stable_id("bk-", req.principal->id.value() + "\n" + std::string(key));
}

boost::asio::awaitable<result<bk::decision>> submit(bk::service& svc, const ev::Envelope& command,
                                             std::chrono::milliseconds timeout) {
  co_return co_await submit_command<bk::service, bk::ledger>(svc, command, command.booking_command().command_id(),
                                                            timeout);
}

}  // namespace yilian::app::booking
