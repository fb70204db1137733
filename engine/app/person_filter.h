// The `patient=<enterprise id>` filter of the workflow lists (referrals,
// bookings): everything about one person across hospitals, as the identity
// index links them now. Resolved at query time, so the lists follow links,
// splits and A40 merges the moment the index applies them; visibility is
// left to each list (a hospital still sees only its own referrals and
// bookings, now narrowed to the person).
#pragma once

#include <optional>
#include <set>
#include <string>
#include <utility>

#include "engine/api/http.h"
#include "engine/core/error.h"
#include "engine/identity/directory.h"
#include "yilian/events/v1/envelope.pb.h"

namespace yilian::app {

class person_filter {
 public:
  // nullopt without a `patient` parameter; an error when there is no index.
  // An id the index does not know filters everything out.
  static result<std::optional<person_filter>> from(const api::request& req, const identity::directory* directory);
  // The filter of one enterprise id (a patient principal names themself).
  static result<person_filter> of(std::string_view enterprise_id, const identity::directory* directory);

  // A subject about the person: one of its identifiers is one of the
  // person's now; or it was stamped with the person's enterprise id and none
  // of its identifiers belongs to someone else now (a record split away
  // since then took its events with it).
  bool matches(const events::v1::Subject& s) const;
  const std::string& enterprise_id() const { return enterprise_id_; }

 private:
  std::string enterprise_id_;
  std::set<std::pair<std::string, std::string>> identifiers_;
  const identity::directory* directory_ = nullptr;
};

}  // namespace yilian::app
