#include "engine/app/patient_support.h"

#include <memory>

#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <google/protobuf/util/time_util.h>

#include "engine/app/booking_support.h"
#include "engine/core/ids.h"

namespace yilian::app::patients {

namespace ev = events::v1;
using json = nlohmann::json;

access::access(const api::principal& p)
    : everything_(p.role == api::role::operator_ && p.hospital.value().empty()), hospital_(p.hospital.value()) {}

bool access::may_read(const wi::person_info& p) const {
  if (everything_) return true;
  if (hospital_.empty()) return false;
  for (const auto& r : p.records) {
    if (r.hospital == hospital_) return true;
  }
  return false;
}

bool access::may_read(const identity::cross_reference& x) const {
  if (everything_) return true;
  if (hospital_.empty()) return false;
  for (const auto& id : x.identifiers) {
    if (id.hospital == hospital_) return true;
  }
  return false;
}

bool access::sees_demographics(const wi::record_info& r) const {
  return everything_ || (!hospital_.empty() && r.hospital == hospital_);
}

std::string type_name(ev::IdentifierType t) {
  if (t == ev::IDENTIFIER_TYPE_UNSPECIFIED) return {};
  std::string name = ev::IdentifierType_Name(t);
  if (name.starts_with("IDENTIFIER_TYPE_")) name.erase(0, 16);
  return name;
}

ev::IdentifierType type_of_system(const config::loaded_consortium& cfg, std::string_view system) {
  if (system == enterprise_system) return ev::IDENTIFIER_TYPE_ENTERPRISE;
  for (const auto& p : cfg.profiles) {
    for (const auto& a : p.profile.identifier_authorities()) {
      if (a.system() == system) return a.type();
    }
  }
  return ev::IDENTIFIER_TYPE_UNSPECIFIED;
}

bool known_system(const config::loaded_consortium& cfg, std::string_view system) {
  if (system.empty()) return false;
  if (system == enterprise_system) return true;
  for (const auto& p : cfg.profiles) {
    for (const auto& a : p.profile.identifier_authorities()) {
      if (a.system() == system) return true;
    }
  }
  return false;
}

result<std::pair<std::string, std::string>> parse_token(std::string_view token, std::string_view where) {
  const auto bar = token.find('|');
  if (bar == std::string_view::npos || bar == 0 || bar + 1 == token.size()) {
    return fail(errc::invalid_argument, std::string(where) + " is <system>|<value>, both present", std::string(where));
  }
  return std::make_pair(std::string(token.substr(0, bar)), std::string(token.substr(bar + 1)));
}

json coding_json(const ev::Coding& c) {
  if (c.code().empty() && c.display().empty()) return nullptr;
  return json{{"system", c.system()}, {"code", c.code()}, {"display", c.display()}};
}

json identifier_json(const ev::Identifier& id) {
  json j{{"system", id.system()}, {"value", id.value()}};
  if (id.type() != ev::IDENTIFIER_TYPE_UNSPECIFIED) j["type"] = ev::IdentifierType_Name(id.type());
  if (!id.assigner().empty()) j["assigner"] = id.assigner();
  return j;
}

json person_json(const wi::person_info& p, const access& who, const config::loaded_consortium& cfg) {
  json records = json::array();
  for (const auto& r : p.records) {
    json ids = json::array();
    for (const auto& id : r.identifiers) ids.push_back(identifier_json(id));
    json rec{{"hospital", r.hospital}, {"identifiers", std::move(ids)}, {"observed_only", r.observed_only}};
    if (const auto* h = cfg.hospital(r.hospital); h != nullptr && !h->name().empty()) rec["hospital_name"] = h->name();
    if (who.sees_demographics(r)) {
      rec["demographics"] = booking::demographics_json(r.demographics);
      if (who.everything() && !r.last_event_id.empty()) rec["last_event_id"] = r.last_event_id;
    } else {
      rec["demographics_withheld"] = true;
    }
    records.push_back(std::move(rec));
  }
  return json{{"enterprise_id", p.enterprise_id}, {"records", std::move(records)}};
}

std::optional<wi::person_info> visible_person(const wi::view& v, const access& who, std::string_view enterprise_id) {
  auto p = v.person(enterprise_id);
  if (!p || !who.may_read(*p)) return std::nullopt;
  return p;
}

std::optional<wi::person_info> visible_person_of(const wi::view& v, const access& who, std::string_view system,
                                                 std::string_view value) {
  if (system == enterprise_system) return visible_person(v, who, value);
  auto p = v.person_of(system, value);
  if (!p || !who.may_read(*p)) return std::nullopt;
  return p;
}

result<void> ready(const wi::service& svc) {
  if (!svc.caught_up()) {
    return fail(errc::unavailable, "the identity index is still reading its log; try again in a moment");
  }
  return {};
}

boost::asio::awaitable<result<wi::command_outcome>> submit(wi::service& svc, ev::PatientLinkCommand command,
                                                           std::string actor_hospital,
                                                           std::chrono::milliseconds timeout) {
  namespace asio = boost::asio;
  // Shared with the service's callback, which may come after the timeout
  // (the outcome is then only dropped; a resend gets it).
  struct slot {
    explicit slot(asio::any_io_executor ex) : timer(std::move(ex)) {}
    asio::steady_timer timer;
    std::optional<result<wi::command_outcome>> outcome;
  };
  auto st = std::make_shared<slot>(co_await asio::this_coro::executor);
  st->timer.expires_after(timeout);
  const std::string command_id = command.command_id();
  svc.submit(std::move(command), std::move(actor_hospital), [st](result<wi::command_outcome> r) {
    asio::post(st->timer.get_executor(), [st, r = std::move(r)]() mutable {
      st->outcome = std::move(r);
      st->timer.cancel();
    });
  });
  boost::system::error_code ec;
  co_await st->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  if (!st->outcome) {
    co_return fail(errc::timeout, "the identity index has not applied command " + command_id +
                                      " yet; send it again with the same command_id to get its outcome");
  }
  co_return std::move(*st->outcome);
}

std::string command_id_for(const api::request& req, std::string_view given) {
  const std::string_view key = given.empty() ? req.header("Idempotency-Key") : given;
  if (key.empty()) return random_id("plc-");
  return stable_id("plc-", req.principal->id.value() + "\n" + std::string(key));
}

}  // namespace yilian::app::patients
