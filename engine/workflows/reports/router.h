// yilian::workflows::reports::router — report sharing (issue 5 item 3): a
// report the performing hospital issues (ORU^R01, FHIR DiagnosticReport; P, F
// or C) goes, in one step, to the referring doctor's hospital and to the
// patient's notification channel.
//
// Reads the report topic as the consumer group "yilian-report-share". For
// each hospital ReportIssued it finds the referrers (sharing.h) and puts the
// report on the outbound topic keyed by each of them that has a channel for
// ReportIssued, and keyed workflows::patient_channel when the patient channel
// takes ReportIssued — all records of a report are published together and
// the offset committed only when all are durable (workflows::relay), so no
// recipient hears it without the other, and none misses it after a crash.
//
// What goes out is the hospital's event with referring_hospital set to the
// recipient, version = its place among the report's versions, and
// supersedes_event_id = the version it replaces (a correction "says so"
// everywhere: ORU OBR-25 C, the patient template's {supersedes}). Documents
// stay claim-checks; recipients fetch them through the reports API.
#pragma once

#include <set>
#include <string>

#include "engine/config/config.h"
#include "engine/workflows/common/relay.h"
#include "engine/workflows/reports/library.h"
#include "engine/workflows/reports/sharing.h"

namespace yilian::workflows::reports {

struct router_options {
  std::string report_topic = "yilian.report.v1";
  std::string outbound_topic = "yilian.outbound.v1";
  std::string group_prefix;
};

class router {
 public:
  router(bus::bus& b, const library& lib, const booking::service* bookings, const referral::service* referrals,
         const config::loaded_consortium& cfg, router_options options);
  result<void> start() { return relay_.start(); }
  void stop() { relay_.stop(); }
  std::uint64_t sent() const { return relay_.sent(); }

 private:
  void route(const bus::record& r, std::vector<bus::message>& out) const;

  const library& lib_;
  const booking::service* bookings_;
  const referral::service* referrals_;
  std::set<std::string> listeners_;
  bool patients_ = false;
  router_options options_;
  relay relay_;
};

}  // namespace yilian::workflows::reports
