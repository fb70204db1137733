// yilian::workflows::reports — the consortium's sharing rules for reports
// (issue 5 item 3): a report is shared with the hospital that performed it
// and the hospitals that referred the patient for it (the referring doctor's
// hospital), and with the patient on the patient channel. Nobody else.
//
// Who referred is found, in this order, from what the report itself says
// (ReportIssued.referring_hospital, the referral id it carries) and from the
// workflows that led to it: the booking it reports on (by appointment id or
// order number at the performing hospital: its requesting clinic) and the
// referral that booking served or that sent the patient there.
#pragma once

#include <string>
#include <vector>

#include "engine/workflows/booking/service.h"
#include "engine/workflows/referral/service.h"
#include "yilian/events/v1/envelope.pb.h"

namespace yilian::workflows::reports {

// The hospitals (other than the performer) a report goes back to. Either
// service may be null (the workflow is not running).
std::vector<std::string> referrers_of(const events::v1::Envelope& report, const booking::service* bookings,
                                      const referral::service* referrals);

// The performing hospital of a ReportIssued event.
std::string performer_of(const events::v1::Envelope& report);

}  // namespace yilian::workflows::reports
