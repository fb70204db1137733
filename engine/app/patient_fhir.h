// The identity index through the FHIR R4 facade under /fhir/r4 (issue 6;
// docs/patients.md): one Patient per enterprise person, and IHE PIXm.
//
//   GET /fhir/r4/Patient/{id}        id = the enterprise id ("YL000000042"); an id
//        merged away answers the survivor (its own id, Content-Location).
//   GET /fhir/r4/Patient?identifier=<system>|<value> | _id=<enterprise id>
//   GET /fhir/r4/Patient?family=&given=&name=&birthdate=&gender=&phone=&_count=
//        Bundle searchset; a demographic search is a match against the index
//        (persons the index would link or queue for review, best first, with
//        the match-grade extension probable | possible on entry.search), not a
//        string filter.
//   GET /fhir/r4/Patient/$ihe-pix?sourceIdentifier=<system>|<value>[&targetSystem=<uri>]...
//        IHE PIXm ITI-83: Parameters with targetId (Patient/<enterprise id>) and
//        one targetIdentifier per identifier of the person's records (the
//        source identifier itself left out; the enterprise id only when
//        targetSystem asks for urn:yilian:enterprise-patient); restricted to
//        the targetSystems when given (none known there: empty Parameters).
//        Errors as OperationOutcome: sourceIdentifier's domain unknown 400
//        (code-invalid, "sourceIdentifier Assigning Authority not found"), no
//        such patient 404 (not-found, "sourceIdentifier Patient Identifier not
//        found"), a targetSystem unknown 403 (code-invalid, "targetSystem not
//        found").
//
// The Patient: identifier[] (the enterprise id, then every identifier of
// every record, with type — v2-0203 MR / PPN or urn:yilian:identifier-type —
// and assigner Organization/<hospital>), name[] (hanzi as-is with the
// iso21090-EN-representation extension IDE, pinyin ABC), birthDate, gender,
// telecom, address — from the records whose demographics the caller may
// see; when some are withheld meta.security carries REDACTED. Sharing rules
// and audit as in patient_support.h: a person without a record at the
// caller's hospital is 404 and absent from searches and PIX answers.
#pragma once

#include "engine/api/audit.h"
#include "engine/api/router.h"
#include "engine/config/config.h"
#include "engine/workflows/identity/service.h"

namespace yilian::app {

void add_patient_fhir_routes(api::router& routes, workflows::identity::service& svc, api::audit_log& audit,
                             const config::loaded_consortium& cfg);

}  // namespace yilian::app
