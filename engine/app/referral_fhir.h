// The referral workflow through the FHIR R4 facade under /fhir/r4 (issue 5;
// DESIGN.md "Workflows", referral): the referral is a ServiceRequest, its
// progress a Task.
//
//   POST /fhir/r4/ServiceRequest                 create: intent order, status active (sent at
//        once, the default) | draft; subject = a contained Patient ("#id") or a Patient
//        reference with identifier [+ display]; requester Organization/<the caller's
//        hospital>; performer[0] Organization/<hospital referred to>; category with
//        urn:yilian:referral-direction UP|DOWN (else from the hospitals' tiers) and the
//        referral type; priority; reasonCode[0] (reason + text); reasonReference to
//        contained Conditions (diagnoses); code.coding[] (requested services); note
//        (clinical summary); basedOn ServiceRequest/<up id> (a downward referral follows
//        an upward one); authoredOn; occurrencePeriod.end (answer by). Idempotency-Key as
//        in the REST API.
//   GET  /fhir/r4/ServiceRequest/{id}[/_history/{vid}]
//   GET  /fhir/r4/ServiceRequest?status=&requester=Organization/<h>&performer=Organization/<h>
//        &patient:identifier=<system>|<value> (also subject:identifier, patient=Patient/<id>)
//        &category=UP|DOWN&based-on=ServiceRequest/<id>&_id=&_count=
//   PUT  /fhir/r4/ServiceRequest/{id}             status revoked -> cancel; active on a draft ->
//        submit; new details with the status kept -> modify (the initiator, before the
//        answer); any other status change -> 422 pointing at the Task.
//   GET  /fhir/r4/Task/{id}[/_history/{vid}]      one Task per referral, id = the referral id,
//        focus ServiceRequest/<id>; status = machine.h fhir_task_status(state),
//        businessStatus (urn:yilian:referral-business-status) = fhir_business_status(state)
//   GET  /fhir/r4/Task?owner=&requester=&status=&business-status=&focus=&part-of=
//        &patient:identifier=&_id=&_count=
//   PUT  /fhir/r4/Task/{id}                       the Task with a new status / businessStatus
//        is the action: requested (a draft) -> submit, received -> receive, accepted ->
//        accept (identifier urn:yilian:referral-external = the receiver's own id),
//        rejected -> reject (statusReason required), cancelled -> cancel, in-progress +
//        scheduled -> schedule (output Appointment/<booking id>, executionPeriod.start),
//        in-progress + arrived -> arrive (encounter.identifier), completed -> complete,
//        completed + report-returned -> return-report (output DiagnosticReport identifier),
//        failed + no-show | expired | terminated -> no-show | expire | terminate.
//
// Who may do what is the workflow's transition table (the caller's hospital
// makes it the referrer or the receiver); a refusal is an OperationOutcome
// with the refusal code (409 wrong_transition, 403 not_allowed, 422
// reason_required, ...). PUT honours If-Match (W/"<version>"; 412 when it is
// not the current one — checked on read, and again by the referral writer in
// log order through ReferralCommand.expected_version, so a change that lands
// between the two is never overwritten unseen); answers carry ETag and
// Location .../_history/<version>.
// A referral the caller's hospital takes no part in does not exist for it
// (404, and absent from searches). Every read, search and change is audited
// (resource ServiceRequest or Task, ids only).
#pragma once

#include <chrono>

#include "engine/api/audit.h"
#include "engine/api/router.h"
#include "engine/workflows/referral/service.h"

namespace yilian::app {

void add_referral_fhir_routes(api::router& routes, workflows::referral::service& svc, api::audit_log& audit,
                              std::chrono::milliseconds decision_timeout = std::chrono::seconds(10));

}  // namespace yilian::app
