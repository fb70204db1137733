#include "engine/workflows/reports/router.h"

#include "engine/core/log.h"

namespace yilian::workflows::reports {

using namespace std::chrono_literals;

namespace {
const auto router_lg = log::get("reports");
}

router::router(bus::bus& b, const library& lib, const booking::service* bookings, const referral::service* referrals,
               const config::loaded_consortium& cfg, router_options options)
    : lib_(lib),
      bookings_(bookings),
      referrals_(referrals),
      listeners_(listeners_of(cfg, "ReportIssued")),
      patients_(patients_hear(cfg, "ReportIssued")),
      options_(std::move(options)),
      relay_(b,
             relay_options{.name = "report-share",
                           .group = options_.group_prefix + "yilian-report-share",
                           .topics = {options_.report_topic},
                           .outbound_topic = options_.outbound_topic},
             [this](const bus::record& r, std::vector<bus::message>& out) { route(r, out); }) {}

void router::route(const bus::record& r, std::vector<bus::message>& out) const {
  if (header_is(r, "origin", "engine")) return;
  ev::Envelope e;
  if (!e.ParseFromString(r.value) || !e.has_report_issued()) return;
  if (e.source().protocol() == ev::PROTOCOL_ENGINE) return;
  const auto& rep = e.report_issued();
  const std::string performer = performer_of(e);
  // The library must have this version (and all before it) to say what it supersedes.
  if (!lib_.wait_past(r.partition, r.offset, 10s)) {
    router_lg.warn("report library behind the router; routing without version history",
                   {log::field("event_id", e.event_id()), log::field("report_id", rep.report_id())});
  }
  ev::Envelope shared = e;
  auto* body = shared.mutable_report_issued();
  if (auto placed = lib_.place(performer, rep.report_id(), e.event_id()); !placed) {
    router_lg.warn("report library unreadable; routing without version history",
                   {log::field("event_id", e.event_id()), log::field("error", placed.error().describe())});
  } else if (*placed) {
    body->set_version((*placed)->number);
    if (body->supersedes_event_id().empty()) body->set_supersedes_event_id((*placed)->supersedes);
  }
  if (body->performing_hospital().empty()) body->set_performing_hospital(performer);
  const auto referrers = referrers_of(e, bookings_, referrals_);
  const std::vector<bus::header> headers{{"event_id", e.event_id()}, {"type", e.type()}};
  for (const auto& h : referrers) {
    if (!listeners_.contains(h)) continue;
    body->set_referring_hospital(h);
    out.push_back(bus::message{.key = h, .value = shared.SerializeAsString(), .headers = headers});
  }
  if (patients_) {
    body->set_referring_hospital(referrers.empty() ? std::string() : referrers.front());
    out.push_back(bus::message{.key = std::string(patient_channel), .value = shared.SerializeAsString(), .headers = headers});
  }
  router_lg.info("report shared", {log::field("event_id", e.event_id()), log::field("report_id", rep.report_id()),
                                   log::field("performer", performer), log::field("referrers", referrers.size()),
                                   log::field("patient_channel", patients_)});
}

}  // namespace yilian::workflows::reports
