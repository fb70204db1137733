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

namespace {

// What `write` writes, as a nlohmann tree (for answers built as trees).
template <class Message>
nlohmann::json as_tree(void (*write)(api::json_out&, const Message&), const Message& m) {
  std::string text;
  api::json_out j(text);
  write(j, m);
  return nlohmann::json::parse(text);
}

}  // namespace

void write_demographics(api::json_out& j, const ev::Demographics& d) {
  j.begin_object();
  const auto& n = d.name();
  if (!n.hanzi().empty() || !n.pinyin().empty() || !n.family().empty() || !n.given().empty()) {
    j.key("name").begin_object();
    j.field_if("hanzi", n.hanzi()).field_if("pinyin", n.pinyin()).field_if("family", n.family()).field_if("given", n.given());
    j.end_object();
  }
  j.field_if("birth_date", d.birth_date());
  if (d.sex() != ev::SEX_UNSPECIFIED) j.field("sex", ev::Sex_Name(d.sex()));
  if (d.telecom_size() > 0) {
    j.key("telecom").begin_array();
    for (const auto& c : d.telecom()) {
      j.begin_object().field("system", c.system()).field("value", c.value());
      if (c.use() != ev::CONTACT_USE_UNSPECIFIED) j.field("use", ev::ContactUse_Name(c.use()));
      j.end_object();
    }
    j.end_array();
  }
  if (d.addresses_size() > 0) {
    j.key("addresses").begin_array();
    for (const auto& a : d.addresses()) {
      j.begin_object().field_if("text", a.text()).field_if("province", a.province()).field_if("city", a.city());
      j.field_if("district", a.district()).field_if("line", a.line()).field_if("postal_code", a.postal_code());
      j.end_object();
    }
    j.end_array();
  }
  if (d.deceased()) j.field("deceased", true);
  if (d.has_deceased_at()) j.field("deceased_at", google::protobuf::util::TimeUtil::ToString(d.deceased_at()));
  if (const auto& e = d.ethnic_group(); !e.code().empty() || !e.display().empty()) {
    j.key("ethnic_group").begin_object();
    j.field_if("system", e.system()).field_if("code", e.code()).field_if("display", e.display());
    j.end_object();
  }
  j.end_object();
}

nlohmann::json demographics_json(const ev::Demographics& d) { return as_tree(write_demographics, d); }

void write_identifiers(api::json_out& j, const ev::Subject& s) {
  j.begin_array();
  for (const auto& id : s.identifiers()) {
    j.begin_object().field("system", id.system()).field("value", id.value());
    if (id.type() != ev::IDENTIFIER_TYPE_UNSPECIFIED) j.field("type", ev::IdentifierType_Name(id.type()));
    j.end_object();
  }
  j.end_array();
}

nlohmann::json identifiers_json(const ev::Subject& s) { return as_tree(write_identifiers, s); }

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

boost::asio::awaitable<result<bk::decision>> submit(bk::service& svc, ev::Envelope command,
                                             std::chrono::milliseconds timeout) {
  const std::string command_id = command.booking_command().command_id();
  co_return co_await submit_command<bk::service>(svc, std::move(command), command_id, timeout);
}

}  // namespace yilian::app::booking
