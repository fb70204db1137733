// The report endpoints under /api/v1 (issue 5 item 3, report sharing):
//
//   GET /api/v1/reports[?limit=]                          reports the caller may read,
//       newest first (its hospital performed them or referred the patient for them)
//   GET /api/v1/reports/{hospital}/{report_id}            every version (P, F, C) with
//       findings, conclusion, observations and the documents' descriptions
//   GET /api/v1/reports/{hospital}/{report_id}/documents/{n}[?version=]
//       the n-th document (1-based) of the latest (or given) version: the bytes, by
//       claim-check from the raw store, checked against the event's SHA-256
//
// Who may read is the consortium's sharing rules (workflows/reports/
// sharing.h): the performing hospital, the hospitals that referred the
// patient for it, consortium operators, and the patient (a patient token,
// patient_access.h: the reports whose subject is the person as the identity
// index links them at the time of the read); to anyone else a report does
// not exist (404). Every read, allowed or not, is audited.
#pragma once

#include <functional>

#include "engine/api/audit.h"
#include "engine/api/router.h"
#include "engine/config/config.h"
#include "engine/identity/directory.h"
#include "engine/workflows/reports/library.h"
#include "engine/workflows/reports/sharing.h"

namespace yilian::store {
class ingest_store;
}

namespace yilian::app {

struct report_api_deps {
  const config::loaded_consortium& cfg;
  const workflows::reports::library& library;
  const workflows::booking::service* bookings = nullptr;
  const workflows::referral::service* referrals = nullptr;
  // The raw store (null while the HL7 adapter is not running: documents are 503).
  std::function<store::ingest_store*()> raw_store;
  // The identity index, to find a patient's reports (null: patients get 503).
  const identity::directory* patients = nullptr;
};

void add_report_routes(api::router& routes, report_api_deps deps, api::audit_log& audit);

}  // namespace yilian::app
