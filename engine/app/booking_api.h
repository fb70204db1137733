// The booking endpoints under /api/v1 (issue 4; DESIGN.md "Workflows", booking):
//
//   GET  /api/v1/equipment                      shared machines, exam types, share
//   GET  /api/v1/slots?exam=&modality=&from=&to=&hospital=&equipment=&tier=&limit=[&for=]
//        free slots across the consortium, earliest first; a clinic sees what
//        its share allows (operators/owners may say for whom with `for`)
//   POST /api/v1/bookings                       {"action":"book"|"hold"|"request",
//        "equipment_id","start","exam_code" | "slot_id", "patient":{Demographics JSON},
//        "identifiers":[{system,value}], "requesting_hospital" (operators, owners),
//        "placer_order","referral_id"}           -> 201 booking | 4xx why
//   GET  /api/v1/bookings[?limit=&state=&hospital=]   the caller's hospital's bookings (as
//        requester or owner); operators name the hospital
//   GET  /api/v1/bookings/{id}                  one booking with its history
//   POST /api/v1/bookings/{id}/{action}         hold, book, reschedule, cancel, check-in,
//        no-show, perform, report, correct; body {"start","exam_code","reason"}
//   POST /api/v1/equipment/{id}/block | /open   {"start","end","reason","id"} (owner, operator)
//   GET  /api/v1/equipment/utilization?from=&to=[&hospital=&modality=]   per machine, hospital
//        and modality: working, offered (the consortium share) and booked minutes, bookings,
//        exams done, no-shows, cancellations, median wait from request to exam (operators;
//        a hospital sees its own machines)
//
// Every command goes through the bus to the equipment's single writer; the
// answer is the decision as this instance's view applied it. An
// `Idempotency-Key` header makes a retry get the first answer. A booking of
// another hospital is 404 to a clinic (its existence is not disclosed).
// Reads and writes of bookings (patient data) are written to the audit log.
#pragma once

#include <chrono>

#include "engine/api/audit.h"
#include "engine/identity/directory.h"
#include "engine/api/router.h"
#include "engine/core/metrics.h"
#include "engine/workflows/booking/service.h"

namespace yilian::app {

struct booking_api_options {
  std::chrono::milliseconds decision_timeout{std::chrono::seconds(10)};
  // The identity index, for GET /api/v1/bookings?patient=<enterprise id>.
  const identity::directory* patients = nullptr;
};

void add_booking_routes(api::router& routes, workflows::booking::service& svc, api::audit_log& audit,
                        booking_api_options options = {});

// yilian_equipment_offered_minutes / _booked_minutes {equipment}: the next 7
// days, computed when /metrics is scraped.
[[nodiscard]] std::vector<metrics::callback_handle> add_booking_metrics(metrics::registry& registry,
                                                                        workflows::booking::service& svc);

}  // namespace yilian::app
