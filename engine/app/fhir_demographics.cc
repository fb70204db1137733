#include "engine/app/fhir_demographics.h"

#include <algorithm>
#include <string>

namespace yilian::app::fhir {

namespace ev = events::v1;
using json = nlohmann::json;

std::string_view gender_code(ev::Sex s) {
  switch (s) {
    case ev::SEX_MALE: return "male";
    case ev::SEX_FEMALE: return "female";
    case ev::SEX_OTHER: return "other";
    case ev::SEX_UNKNOWN: return "unknown";
    default: return "";
  }
}

json contact_point(const ev::ContactPoint& t) {
  static constexpr std::string_view systems[] = {"phone", "fax", "email", "pager", "url", "sms", "other"};
  const bool known = std::find(std::begin(systems), std::end(systems), t.system()) != std::end(systems);
  json c{{"system", known ? t.system() : std::string("other")}, {"value", t.value()}};
  if (t.use() == ev::CONTACT_USE_HOME) c["use"] = "home";
  if (t.use() == ev::CONTACT_USE_WORK) c["use"] = "work";
  if (t.use() == ev::CONTACT_USE_MOBILE) c["use"] = "mobile";
  return c;
}

json address(const ev::Address& a) {
  json j = json::object();
  if (!a.text().empty()) j["text"] = a.text();
  if (!a.line().empty()) j["line"] = json::array({a.line()});
  if (!a.city().empty()) j["city"] = a.city();
  if (!a.district().empty()) j["district"] = a.district();
  if (!a.province().empty()) j["state"] = a.province();
  if (!a.postal_code().empty()) j["postalCode"] = a.postal_code();
  return j;
}

}  // namespace yilian::app::fhir
