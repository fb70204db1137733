#include "engine/workflows/reports/sharing.h"

#include <algorithm>

namespace yilian::workflows::reports {

namespace ev = events::v1;

std::string performer_of(const ev::Envelope& e) {
  const auto& r = e.report_issued();
  return !r.performing_hospital().empty() ? r.performing_hospital() : e.source().hospital();
}

std::vector<std::string> referrers_of(const ev::Envelope& e, const booking::service* bookings,
                                      const referral::service* referrals) {
  std::vector<std::string> out;
  const auto& r = e.report_issued();
  const std::string performer = performer_of(e);
  auto add = [&](const std::string& h) {
    if (!h.empty() && h != performer && std::find(out.begin(), out.end(), h) == out.end()) out.push_back(h);
  };
  add(r.referring_hospital());
  std::string booking_id = r.appointment_id();
  if (bookings != nullptr) {
    bookings->read([&](const booking::ledger& l) {
      const booking::booking_view* b = booking_id.empty() ? nullptr : l.find(booking_id);
      for (const std::string* order : {&r.placer_order(), &r.filler_order(), &e.correlation().placer_order(),
                                       &e.correlation().filler_order(), &e.correlation().appointment_id()}) {
        if (b != nullptr) break;
        if (!order->empty()) b = l.find_by_order(*order, performer);
      }
      if (b != nullptr && b->owner == performer) {
        add(b->requesting_hospital);
        booking_id = b->id;
      }
    });
  }
  if (referrals != nullptr) {
    referrals->read([&](const referral::ledger& l) {
      const std::string& named = !r.referral_id().empty() ? r.referral_id() : e.correlation().referral_id();
      const referral::referral_view* ref = named.empty() ? nullptr : l.find(named);
      if (ref == nullptr && !booking_id.empty()) ref = l.find_by_booking(booking_id);
      if (ref == nullptr) {
        auto open = l.find_by_patient(performer, e.subject().identifiers(),
                                      {ev::REFERRAL_STATE_SCHEDULED, ev::REFERRAL_STATE_ARRIVED,
                                       ev::REFERRAL_STATE_COMPLETED, ev::REFERRAL_STATE_REPORT_RETURNED});
        if (!open.empty()) ref = open.front();
      }
      if (ref != nullptr && ref->to_hospital == performer) add(ref->from_hospital);
    });
  }
  return out;
}

}  // namespace yilian::workflows::reports
