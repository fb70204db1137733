// The booking workflow through the FHIR R4 facade under /fhir/r4 (issue 4;
// DESIGN.md "Serving and scale"), in the spirit of the IHE ITI Scheduling
// profile:
//
//   GET  /fhir/r4/Device/{id}, /fhir/r4/Schedule[/{id}]   shared machines and their schedules
//        Schedule?actor=Device/{id} | service-type=<code>
//   GET  /fhir/r4/Slot?schedule.actor=Device/{id}&status=free|busy&start=ge<date>&start=lt<date>
//        &service-type=[<system>|]<code>&_count=N            (service-type required for free slots)
//   POST /fhir/r4/Appointment                               create: status booked (default) |
//        pending (a hold) | proposed (a request); the slot as slot[0].reference "Slot/<id>", or
//        a Device participant + start + serviceType
//   GET  /fhir/r4/Appointment/{id}, Appointment?actor=&status=&date=ge..&date=lt..&_count=
//   PUT  /fhir/r4/Appointment/{id}                          status cancelled | noshow |
//        checked-in / arrived | fulfilled | booked (books a hold; a new start reschedules)
//   POST /fhir/r4/Appointment/$find  (or GET)                Parameters start, end,
//        service-type, actor -> Bundle of proposed Appointments (free slots)
//   POST /fhir/r4/Appointment/$hold, $book                   Parameters appointment -> pending / booked
//
// Statuses map as in DESIGN.md (workflows/booking/machine.h fhir_appointment_status).
// Errors are OperationOutcomes; who may see and change what is the REST API's rule.
#pragma once

#include <chrono>

#include "engine/api/audit.h"
#include "engine/api/router.h"
#include "engine/workflows/booking/service.h"

namespace yilian::app {

void add_booking_fhir_routes(api::router& routes, workflows::booking::service& svc, api::audit_log& audit,
                             std::chrono::milliseconds decision_timeout = std::chrono::seconds(10));

}  // namespace yilian::app
