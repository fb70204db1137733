#include "engine/workflows/referral/machine.h"

#include <algorithm>
#include <array>
#include <cctype>

namespace yilian::workflows::referral {

namespace {

namespace ev = events::v1;

constexpr state kNone = ev::REFERRAL_STATE_UNSPECIFIED;
constexpr state kDraft = ev::REFERRAL_STATE_DRAFT;
constexpr state kRequested = ev::REFERRAL_STATE_REQUESTED;
constexpr state kReceived = ev::REFERRAL_STATE_RECEIVED;
constexpr state kAccepted = ev::REFERRAL_STATE_ACCEPTED;
constexpr state kRejected = ev::REFERRAL_STATE_REJECTED;
constexpr state kScheduled = ev::REFERRAL_STATE_SCHEDULED;
constexpr state kArrived = ev::REFERRAL_STATE_ARRIVED;
constexpr state kCompleted = ev::REFERRAL_STATE_COMPLETED;
constexpr state kReturned = ev::REFERRAL_STATE_REPORT_RETURNED;
constexpr state kCancelled = ev::REFERRAL_STATE_CANCELLED;
constexpr state kExpired = ev::REFERRAL_STATE_EXPIRED;
constexpr state kNoShow = ev::REFERRAL_STATE_NO_SHOW;
constexpr state kTerminated = ev::REFERRAL_STATE_TERMINATED;

constexpr parties kReferrer = referrer;
constexpr parties kReceiver = receiver;
constexpr parties kOperator = operator_;
constexpr parties kEngine = engine;

// The receiving side's progress may be reported by the receiving hospital or
// observed by the engine (a booking checked in, an ADT^A04, a report issued).
constexpr parties kProgress = kReceiver | kEngine;

constexpr std::array kTable{
    // Initiator: create (as a draft or sent at once), send a draft, change it.
    transition{kNone, ev::REFERRAL_ACTION_CREATE, kRequested, kReferrer},
    transition{kNone, ev::REFERRAL_ACTION_CREATE, kDraft, kReferrer},
    transition{kDraft, ev::REFERRAL_ACTION_SUBMIT, kRequested, kReferrer},
    transition{kDraft, ev::REFERRAL_ACTION_MODIFY, kDraft, kReferrer},
    transition{kRequested, ev::REFERRAL_ACTION_MODIFY, kRequested, kReferrer},
    transition{kReceived, ev::REFERRAL_ACTION_MODIFY, kReceived, kReferrer},
    // Receiver: acknowledge, then answer.
    transition{kRequested, ev::REFERRAL_ACTION_RECEIVE, kReceived, kReceiver},
    transition{kRequested, ev::REFERRAL_ACTION_ACCEPT, kAccepted, kReceiver},
    transition{kReceived, ev::REFERRAL_ACTION_ACCEPT, kAccepted, kReceiver},
    transition{kRequested, ev::REFERRAL_ACTION_REJECT, kRejected, kReceiver},
    transition{kReceived, ev::REFERRAL_ACTION_REJECT, kRejected, kReceiver},
    // The visit: scheduled (again when rescheduled), arrived, completed, and
    // the report back to the initiator (again when corrected). A report or a
    // discharge may come without the step before it being reported.
    transition{kAccepted, ev::REFERRAL_ACTION_SCHEDULE, kScheduled, kProgress},
    transition{kScheduled, ev::REFERRAL_ACTION_SCHEDULE, kScheduled, kProgress},
    transition{kAccepted, ev::REFERRAL_ACTION_ARRIVE, kArrived, kProgress},
    transition{kScheduled, ev::REFERRAL_ACTION_ARRIVE, kArrived, kProgress},
    transition{kScheduled, ev::REFERRAL_ACTION_COMPLETE, kCompleted, kProgress},
    transition{kArrived, ev::REFERRAL_ACTION_COMPLETE, kCompleted, kProgress},
    transition{kArrived, ev::REFERRAL_ACTION_RETURN_REPORT, kReturned, kProgress},
    transition{kCompleted, ev::REFERRAL_ACTION_RETURN_REPORT, kReturned, kProgress},
    transition{kReturned, ev::REFERRAL_ACTION_RETURN_REPORT, kReturned, kProgress},
    transition{kScheduled, ev::REFERRAL_ACTION_NO_SHOW, kNoShow, kProgress},
    // Ending early. The initiator cancels until the patient arrives; an
    // unanswered (or accepted but never scheduled) referral expires by the
    // engine's timer or the receiver's RF1-1 E; an operator ends anything
    // open (TERMINATE: an operator's end is not the initiator's cancellation).
    transition{kDraft, ev::REFERRAL_ACTION_CANCEL, kCancelled, kReferrer},
    transition{kRequested, ev::REFERRAL_ACTION_CANCEL, kCancelled, kReferrer},
    transition{kReceived, ev::REFERRAL_ACTION_CANCEL, kCancelled, kReferrer},
    transition{kAccepted, ev::REFERRAL_ACTION_CANCEL, kCancelled, kReferrer},
    transition{kScheduled, ev::REFERRAL_ACTION_CANCEL, kCancelled, kReferrer},
    transition{kRequested, ev::REFERRAL_ACTION_EXPIRE, kExpired, kEngine | kReceiver},
    transition{kReceived, ev::REFERRAL_ACTION_EXPIRE, kExpired, kEngine | kReceiver},
    transition{kAccepted, ev::REFERRAL_ACTION_EXPIRE, kExpired, kEngine},
    transition{kDraft, ev::REFERRAL_ACTION_TERMINATE, kTerminated, kOperator},
    transition{kRequested, ev::REFERRAL_ACTION_TERMINATE, kTerminated, kOperator},
    transition{kReceived, ev::REFERRAL_ACTION_TERMINATE, kTerminated, kOperator},
    transition{kAccepted, ev::REFERRAL_ACTION_TERMINATE, kTerminated, kOperator},
    transition{kScheduled, ev::REFERRAL_ACTION_TERMINATE, kTerminated, kOperator},
    transition{kArrived, ev::REFERRAL_ACTION_TERMINATE, kTerminated, kOperator},
    transition{kCompleted, ev::REFERRAL_ACTION_TERMINATE, kTerminated, kOperator},
};

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

}  // namespace

std::span<const transition> transition_table() { return kTable; }

std::expected<state, refusal> next_state(state from, action act, parties who, state wanted) {
  bool row = false;
  for (const auto& t : kTable) {
    if (t.from != from || t.act != act) continue;
    if (wanted != kNone && t.to != wanted) continue;
    row = true;
    if ((t.allowed & who) != 0) return t.to;
  }
  if (!row) {
    return std::unexpected(refusal{.kind = errc::conflict, .code = "wrong_transition",
                                   .message = "a referral that is " + std::string(state_name(from)) + " cannot " +
                                              std::string(action_name(act))});
  }
  std::string allowed;
  for (const auto& t : kTable) {
    if (t.from == from && t.act == act && (wanted == kNone || t.to == wanted)) allowed = parties_text(t.allowed);
  }
  return std::unexpected(refusal{.kind = errc::permission_denied, .code = "not_allowed",
                                 .message = "only the " + allowed + " may " + std::string(action_name(act)) +
                                            " a referral that is " + std::string(state_name(from))});
}

bool is_final(state s) {
  return s == kRejected || s == kCancelled || s == kExpired || s == kNoShow || s == kTerminated;
}

bool awaits_answer(state s) { return s == kRequested || s == kReceived; }

std::string_view state_name(state s) {
  switch (s) {
    case kNone: return "NEW";
    case kDraft: return "DRAFT";
    case kRequested: return "REQUESTED";
    case kReceived: return "RECEIVED";
    case kAccepted: return "ACCEPTED";
    case kRejected: return "REJECTED";
    case kScheduled: return "SCHEDULED";
    case kArrived: return "ARRIVED";
    case kCompleted: return "COMPLETED";
    case kReturned: return "REPORT_RETURNED";
    case kCancelled: return "CANCELLED";
    case kExpired: return "EXPIRED";
    case kNoShow: return "NO_SHOW";
    case kTerminated: return "TERMINATED";
    default: return "UNKNOWN";
  }
}

std::string_view action_name(action a) {
  switch (a) {
    case ev::REFERRAL_ACTION_CREATE: return "create";
    case ev::REFERRAL_ACTION_SUBMIT: return "submit";
    case ev::REFERRAL_ACTION_MODIFY: return "modify";
    case ev::REFERRAL_ACTION_RECEIVE: return "receive";
    case ev::REFERRAL_ACTION_ACCEPT: return "accept";
    case ev::REFERRAL_ACTION_REJECT: return "reject";
    case ev::REFERRAL_ACTION_SCHEDULE: return "schedule";
    case ev::REFERRAL_ACTION_ARRIVE: return "arrive";
    case ev::REFERRAL_ACTION_COMPLETE: return "complete";
    case ev::REFERRAL_ACTION_RETURN_REPORT: return "return-report";
    case ev::REFERRAL_ACTION_CANCEL: return "cancel";
    case ev::REFERRAL_ACTION_EXPIRE: return "expire";
    case ev::REFERRAL_ACTION_NO_SHOW: return "no-show";
    case ev::REFERRAL_ACTION_TERMINATE: return "terminate";
    default: return "unknown";
  }
}

action action_from_name(std::string_view name) {
  const std::string n = lower(name);
  for (int i = ev::ReferralAction_MIN; i <= ev::ReferralAction_MAX; ++i) {
    if (!ev::ReferralAction_IsValid(i)) continue;
    const auto a = static_cast<action>(i);
    if (a != ev::REFERRAL_ACTION_UNSPECIFIED && action_name(a) == n) return a;
  }
  return ev::REFERRAL_ACTION_UNSPECIFIED;
}

state state_from_name(std::string_view name) {
  std::string n(name);
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return static_cast<char>(c == '-' ? '_' : std::toupper(c)); });
  for (int i = ev::ReferralState_MIN; i <= ev::ReferralState_MAX; ++i) {
    if (!ev::ReferralState_IsValid(i)) continue;
    const auto s = static_cast<state>(i);
    if (s != kNone && state_name(s) == n) return s;
  }
  return kNone;
}

std::string_view fhir_task_status(state s) {
  switch (s) {
    case kDraft: return "draft";
    case kRequested: return "requested";
    case kReceived: return "received";
    case kAccepted: return "accepted";
    case kRejected: return "rejected";
    case kScheduled:
    case kArrived: return "in-progress";
    case kCompleted:
    case kReturned: return "completed";
    case kCancelled: return "cancelled";
    case kExpired:
    case kNoShow:
    case kTerminated: return "failed";
    default: return "draft";
  }
}

std::string_view fhir_business_status(state s) {
  switch (s) {
    case kScheduled: return "scheduled";
    case kArrived: return "arrived";
    case kCompleted: return "completed";
    case kReturned: return "report-returned";
    case kExpired: return "expired";
    case kNoShow: return "no-show";
    case kTerminated: return "terminated";
    default: return "";
  }
}

std::string_view hl7_referral_status(state s) {
  switch (s) {
    case kDraft:
    case kRequested:
    case kReceived: return "P";
    case kAccepted:
    case kScheduled:
    case kArrived:
    case kCompleted:
    case kReturned: return "A";
    case kRejected: return "R";
    case kExpired: return "E";
    default: return "";
  }
}

std::string parties_text(parties p) {
  std::string out;
  auto add = [&](parties bit, std::string_view name) {
    if ((p & bit) == 0) return;
    if (!out.empty()) out += ',';
    out += name;
  };
  add(referrer, "referrer");
  add(receiver, "receiver");
  add(operator_, "operator");
  add(engine, "engine");
  return out;
}

}  // namespace yilian::workflows::referral
