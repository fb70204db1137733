#include "engine/app/person_filter.h"

namespace yilian::app {

result<std::optional<person_filter>> person_filter::from(const api::request& req, const identity::directory* directory) {
  const auto wanted = req.query_param("patient");
  if (!wanted || wanted->empty()) return std::optional<person_filter>{};
  auto f = of(*wanted, directory);
  if (!f) return std::unexpected(f.error());
  return std::optional<person_filter>(std::move(*f));
}

result<person_filter> person_filter::of(std::string_view enterprise_id, const identity::directory* directory) {
  if (directory == nullptr) return fail(errc::unavailable, "the identity index is not running", "patient");
  person_filter f;
  f.directory_ = directory;
  f.enterprise_id_ = std::string(enterprise_id);
  // An id the index does not know gives an empty list, like a person the
  // caller has nothing about: the answer never tells which.
  auto x = directory->person(enterprise_id);
  if (!x) return f;
  f.enterprise_id_ = x->enterprise_id;
  for (auto& id : x->identifiers) f.identifiers_.emplace(std::move(id.system), std::move(id.value));
  return f;
}

bool person_filter::matches(const events::v1::Subject& s) const {
  for (const auto& id : s.identifiers()) {
    if (identifiers_.contains({id.system(), id.value()})) return true;
  }
  if (s.enterprise_patient_id().empty() || s.enterprise_patient_id() != enterprise_id_) return false;
  for (const auto& id : s.identifiers()) {
    const std::string now = directory_->enterprise_id_of(id.system(), id.value());
    if (!now.empty() && now != enterprise_id_) return false;
  }
  return true;
}

}  // namespace yilian::app
