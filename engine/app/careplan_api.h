// The care-plan endpoints under /api/v1 (issue 5 item 4; DESIGN.md
// "Workflows", recurring exams) and the wiring of the recurring-exam
// scheduler:
//
//   POST /api/v1/care-plans                 {"patient":{Demographics JSON},
//        "identifiers":[{system,value[,type]}], "exam_code", "interval":
//        "weekly"|"monthly"|"quarterly"|"yearly", "every", "starts_at":"YYYY-MM-DD",
//        "until":"YYYY-MM-DD", "lead_days", "preferred_tier":"TERTIARY"|...,
//        "preferred_hospital", "clinic_hospital" (operators only)}
//        -> 201 the plan (CarePlanChanged ACTIVE published) | 4xx why
//   GET  /api/v1/care-plans[?status=&clinic=&limit=]   the caller's clinic's plans
//        (operators: all, or one clinic's)
//   GET  /api/v1/care-plans/{id}            one plan with its periods' occurrences
//        and the state of each period's booking (BOOKED, NO_SHOW, ...)
//   POST /api/v1/care-plans/{id}/cancel     {"reason"} -> the plan, CANCELLED
//
// A plan belongs to its clinic: the clinic's users and systems and the
// consortium's operators see and change it; to anyone else it is 404 (its
// existence is not disclosed). Dates are local dates of the consortium's time
// zone. An `Idempotency-Key` header makes a repeated create return the plan
// the first one made. Every read and change is written to the audit log
// (resource "CarePlan", ids only).
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "engine/api/audit.h"
#include "engine/api/router.h"
#include "engine/bus/bus.h"
#include "engine/config/config.h"
#include "engine/core/error.h"
#include "engine/core/metrics.h"
#include "engine/workflows/booking/service.h"
#include "engine/workflows/recurring/scheduler.h"

namespace yilian::app {

// Creates and starts the scheduler for the consortium: topic
// yilian.careplan.v1, outbound yilian.outbound.v1, the consortium's time zone,
// consumer groups "<group_prefix>yilian-careplan[-view-*]". Errors: the zone
// does not load, or the bus refuses the consumers.
result<std::unique_ptr<workflows::recurring::scheduler>> start_careplan_scheduler(
    bus::bus& b, workflows::booking::service& bookings, const config::loaded_consortium& cfg,
    const std::string& group_prefix, metrics::registry* registry);

struct careplan_api_options {
  // Longest plan: until at most this long after starts_at.
  std::chrono::days max_span{std::chrono::days(3660)};
};

// `plans`, `bookings`, `b` and `audit` must outlive the routes.
void add_careplan_routes(api::router& routes, workflows::recurring::scheduler& plans,
                         workflows::booking::service& bookings, bus::bus& b, api::audit_log& audit,
                         careplan_api_options options = {});

}  // namespace yilian::app
