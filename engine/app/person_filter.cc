#include "engine/app/person_filter.h"

namespace yilian::app {

result<std::optional<person_filter>> person_filter::from(const api::request& req, const identity::directory* directory) {
  const auto wanted = req.query_param("patient");
  if (!wanted || wanted->empty()) return std::optional<person_filter>{};
  if (directory == nullptr) return fail(errc::unavailable, "the identity index is not running", "patient");
  person_filter f;
  f.enterprise_id_ = std::string(*wanted);
  // An id the index does not know gives an empty list, like a person the
  // caller has nothing about: the answer never tells which.
  auto x = directory->person(*wanted);
  if (!x) return std::optional<person_filter>(std::move(f));
  f.enterprise_id_ = x->enterprise_id;
  for (auto& id : x->identifiers) f.identifiers_.emplace(std::move(id.system), std::move(id.value));
  return std::optional<person_filter>(std::move(f));
}

bool person_filter::matches(const events::v1::Subject& s) const {
  if (!s.enterprise_patient_id().empty() && s.enterprise_patient_id() == enterprise_id_) return true;
  for (const auto& id : s.identifiers()) {
    if (identifiers_.contains({id.system(), id.value()})) return true;
  }
  return false;
}

}  // namespace yilian::app
