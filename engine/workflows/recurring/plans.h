// yilian::workflows::recurring::plan_book — every care plan and the periods
// already fired, as a fold of the care-plan topic (yilian.careplan.v1, keyed
// by care plan id): CarePlanChanged creates or cancels a plan,
// CarePlanOccurrence marks one period fired.
//
// Every instance folds the whole topic, so every instance knows the same
// plans and fired periods. The first occurrence of a period in the log wins
// (a second one, from a writer that lost its partition meanwhile, changes
// nothing), which is what "fires exactly once" means for the view.
//
// Plans are created once and then only change status: a CarePlanChanged for
// a known id moves ACTIVE -> CANCELLED (or ENDED); its other fields are not
// taken (changing the interval would renumber the periods already fired).
// A cancelled plan stays cancelled.
//
// Not thread-safe; the scheduler guards it with a shared_mutex.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/core/time_zone.h"
#include "engine/workflows/recurring/plan.h"
#include "yilian/config/v1/consortium.pb.h"
#include "yilian/events/v1/envelope.pb.h"

namespace yilian::workflows::recurring {

struct occurrence {
  std::uint32_t period = 0;
  seconds period_start{};
  std::string booking_id;
  std::string command_id;
  std::string equipment_id;
  seconds start{};        // the booked slot's start (zero when not booked)
  std::string failure;    // empty: booked; else no_slot, missed or the booking refusal code
  seconds recorded_at{};  // when the scheduler fired it
  std::string event_id;
  bool operator==(const occurrence&) const = default;
};

struct care_plan {
  std::string id;
  ev::CarePlanStatus status = ev::CARE_PLAN_STATUS_ACTIVE;  // as published (see plan_book::status_at)
  std::string clinic;
  ev::Demographics patient;  // never logged
  ev::Subject subject;       // the patient's identifiers (envelope subject)
  std::string exam_code;
  rule schedule;
  seconds starts_at{};
  std::optional<seconds> until;
  config::v1::Tier preferred_tier = config::v1::TIER_UNSPECIFIED;
  std::string preferred_hospital;
  std::string created_by;  // principal id
  seconds created_at{};
  seconds updated_at{};
  std::string cancelled_by;
  std::string cancel_reason;
  std::map<std::uint32_t, occurrence> occurrences;  // by period number
  // Periods 0 .. fired_prefix-1 have all fired: where the scheduler looks from.
  std::uint32_t fired_prefix = 0;

  bool fired(std::uint32_t period) const { return occurrences.contains(period); }
};

class plan_book {
 public:
  // `zone`: the consortium's time zone, in which plan dates are local dates.
  explicit plan_book(time_zone zone) : zone_(std::move(zone)) {}

  // Folds one event of the care-plan topic; true when the book changed.
  // Events of other kinds, and plans whose rule does not compute (no
  // interval, no start), change nothing.
  bool apply(const ev::Envelope& e);

  const care_plan* find(std::string_view id) const;
  // Plans whose clinic is `clinic` (all plans for an empty clinic), newest first.
  std::vector<const care_plan*> of_clinic(std::string_view clinic) const;
  std::size_t size() const { return plans_.size(); }
  const time_zone& zone() const { return zone_; }

  // The status at `now`: ENDED for an active plan whose every period has
  // fired and whose next period would start after its until date.
  ev::CarePlanStatus status_at(const care_plan& p, seconds now) const;

 private:
  time_zone zone_;
  std::unordered_map<std::string, care_plan> plans_;
  std::vector<std::string> order_;  // creation order
};

// The id of the booking a period books, and of the BOOK commands that try
// it: the booking id is one per (plan, period) — so a refire after a crash
// finds the booking made before it — and the command id of attempt n is
// "careplan:<plan>:<period>" (n = 0) or "careplan:<plan>:<period>:<n>", so a
// refire gets the first decision of each attempt back.
std::string booking_id_for(std::string_view plan_id, std::uint32_t period);
std::string command_id_for(std::string_view plan_id, std::uint32_t period, std::size_t attempt);
// "careplan-occurrence:<plan>:<period>".
std::string occurrence_event_id(std::string_view plan_id, std::uint32_t period);

// "ACTIVE", "ENDED", "CANCELLED".
std::string_view status_name(ev::CarePlanStatus s);

}  // namespace yilian::workflows::recurring
