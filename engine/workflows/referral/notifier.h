// yilian::workflows::referral::notifier — both sides of a referral hear
// about it (DESIGN.md "Workflows": one closed loop both sides can see).
//
// Reads the referral topic as the consumer group "yilian-referral-notify"
// and puts each accepted decision on the outbound topic for whoever must
// hear it, where each hospital's channels pick it up by event type (HL7 v2:
// REF^I12/I13/I14 to the receiver, RRI^I12-I14 to the initiator):
//
//   created as REQUESTED, submitted, modified -> the receiver (the request
//                                                itself: ReferralRequested)
//   received, accepted, rejected, scheduled,  -> the initiator
//   arrived, completed, report returned, no-show
//   cancelled (by the initiator)              -> the receiver
//   expired, terminated                       -> both
//
//   refused (ReferralCommandRejected) when   -> the hospital that sent it, as an
//   a hospital's HL7 v2 message asked           HL7 application error (below)
//
// The hospital whose own system made the change is not told back. Patients
// hear about accepted, rejected, expired and scheduled referrals on the
// consortium's patient channel when it takes ReferralStateChanged. A draft
// goes nowhere.
//
// A refused command that a hospital's HL7 v2 message asked for (REF/RRI,
// SIU, ADT, OMG through the referral feed: ReferralCommandRejected.origin
// set) goes back to that hospital, to its MLLP endpoints that take
// "ReferralCommandRejected" (or "*"), where the sender renders it as the
// application acknowledgment of the original message: RRI^<trigger> with
// MSA-1 AE for a REF^I12-I15, ACK^<trigger> with MSA-1 AE for anything else,
// MSA-2 = the original MSH-10, ERR with the refusal (adapters/hl7v2/render.h).
// Refusals of REST, FHIR and engine commands (timers, bookings, encounters,
// reports) have no origin and go nowhere: their callers had their answer, or
// nobody asked.
#pragma once

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "engine/config/config.h"
#include "engine/workflows/common/relay.h"
#include "engine/workflows/referral/service.h"

namespace yilian::workflows::referral {

struct notifier_options {
  std::string referral_topic = "yilian.referral.v1";
  std::string outbound_topic = "yilian.outbound.v1";
  std::string group_prefix;
};

struct notice {
  std::string destination;  // hospital id or workflows::patient_channel
  ev::Envelope event;       // what it hears (the decision, or the request it now has to act on)
};

// Who hears about a decision, and what. `l` supplies the request of a
// submitted draft (the receiver gets the whole referral then).
std::vector<notice> notices_for(const ev::Envelope& decision, const ledger& l);

class notifier {
 public:
  // `cfg` decides who has a channel for which event type (nobody else gets an
  // outbound record: nothing would ever deliver it).
  notifier(bus::bus& b, const service& svc, const config::loaded_consortium& cfg, notifier_options options);
  result<void> start() { return relay_.start(); }
  void stop() { relay_.stop(); }
  std::uint64_t sent() const { return relay_.sent(); }

 private:
  const service& svc_;
  std::set<std::string> hear_requests_;
  std::set<std::string> hear_changes_;
  std::set<std::string> hear_refusals_;
  bool patients_ = false;
  notifier_options options_;
  relay relay_;
};

}  // namespace yilian::workflows::referral
