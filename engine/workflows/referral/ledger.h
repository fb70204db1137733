// yilian::workflows::referral::ledger — every referral's state as a fold of
// the referral topic, plus the decision function the single writer runs.
//
//   decide(command, now) -> decision event     (pure: reads the ledger only)
//   apply(event)         -> step               (the only way state changes)
//
// Decisions are ReferralRequested (CREATE) and ReferralStateChanged events
// with Source.protocol ENGINE and a command id; what hospitals report on the
// topic (REF/RRI through the HL7 adapter, FHIR) is not the ledger's business
// until the referral feed turns it into a command. apply() re-checks each
// decision at its place in the log (next version, same previous state, a
// legal transition) and treats one that no longer holds as void, the same on
// every instance. A command id is decided once.
//
// Not thread-safe; the service's single_writer guards it.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/config/config.h"
#include "engine/workflows/common/single_writer.h"
#include "engine/workflows/common/timestamps.h"
#include "engine/workflows/referral/machine.h"
#include "yilian/events/v1/envelope.pb.h"

namespace yilian::workflows::referral {

namespace ev = events::v1;

struct referral_step {
  std::uint64_t version = 0;
  state from = ev::REFERRAL_STATE_UNSPECIFIED;
  state to = ev::REFERRAL_STATE_UNSPECIFIED;
  action act = ev::REFERRAL_ACTION_UNSPECIFIED;
  seconds at{};
  std::string actor;           // principal id, "hl7:<hospital>" or "engine"
  std::string actor_hospital;  // empty for operators and the engine
  std::string reason;          // reason code / text (reject, cancel, ...)
  std::string detail;          // booking, appointment start, encounter or report id
  std::string event_id;        // the decision event
};

struct referral_view {
  std::string id;
  ev::ReferralDirection direction = ev::REFERRAL_DIRECTION_UNSPECIFIED;
  state st = ev::REFERRAL_STATE_UNSPECIFIED;
  std::uint64_t version = 0;
  std::string from_hospital;
  std::string to_hospital;
  ev::ReferralRequested request;  // as created / last modified (state and ids as decided)
  ev::Subject subject;
  seconds created_at{};
  seconds updated_at{};
  seconds expires_at{};          // REQUESTED/RECEIVED: answer deadline; ACCEPTED: scheduling deadline (0: none)
  std::string external_id;       // the receiver's own id (RF1-11 of its RRI)
  std::string linked_referral_id;  // DOWN: the upward referral it follows
  std::vector<std::string> followed_by;  // referrals linked to this one, by id (whatever order the log had)
  std::string booking_id;
  std::string appointment_id;
  seconds appointment_start{};
  std::string encounter_id;
  std::vector<std::string> report_ids;
  std::vector<referral_step> history;
};

struct ledger_options {
  // Unanswered (REQUESTED/RECEIVED) referrals expire after this.
  std::chrono::seconds answer_within{std::chrono::hours(72)};
  // ACCEPTED referrals never scheduled expire after this (0: never).
  std::chrono::seconds accepted_expire{std::chrono::days(30)};
  std::chrono::seconds idempotency_window{std::chrono::hours(48)};
  std::string engine_system = "referral";
};

// Ledger options from the consortium's `referrals` settings.
ledger_options options_from(const config::loaded_consortium& cfg);

class ledger {
 public:
  ledger(const config::loaded_consortium& cfg, ledger_options options) : cfg_(cfg), options_(std::move(options)) {}

  // The decision for a ReferralCommand envelope, as the event to publish.
  ev::Envelope decide(const ev::Envelope& command, seconds now) const;

  step apply(const ev::Envelope& event);
  step apply_tentatively(const ev::Envelope& event);
  void undo_tentative();
  std::optional<outcome> decided(std::string_view command_id) const;

  const referral_view* find(std::string_view id) const;
  // The referral's current version, which stays as it is (a change stores a
  // new version): for an answer that outlives the reader's lock. Null if absent.
  std::shared_ptr<const referral_view> share(std::string_view id) const;
  // The referral a booking serves.
  const referral_view* find_by_booking(std::string_view booking_id) const;
  // Open referrals to `to_hospital` in one of `states` whose patient shares
  // an identifier (system and value) with `ids`, most recently changed first.
  std::vector<const referral_view*> find_by_patient(std::string_view to_hospital,
                                                    const google::protobuf::RepeatedPtrField<ev::Identifier>& ids,
                                                    std::initializer_list<state> states) const;
  // Referrals `hospital` sent or received, newest change first.
  std::vector<const referral_view*> referrals_of(std::string_view hospital, std::size_t limit) const;
  std::vector<const referral_view*> all(std::size_t limit) const;
  // Referrals whose deadline passed by `now` (the expiry timer).
  std::vector<const referral_view*> overdue(seconds now) const;
  std::size_t size() const { return referrals_.size(); }
  const config::loaded_consortium& config() const { return cfg_; }
  const ledger_options& options() const { return options_; }

 private:
  struct undo_entry {
    std::string referral_id;
    std::shared_ptr<const referral_view> before;  // null: did not exist
    std::string command_id;               // decided entry to forget
  };

  step apply_requested(const ev::Envelope& e);
  step apply_changed(const ev::Envelope& e);
  step apply_rejection(const ev::Envelope& e);
  void put(const referral_view* before, referral_view after);
  void index(const referral_view& r, bool add);
  void remember(const std::string& command_id, outcome o, seconds at);
  parties parties_of(const ev::ReferralCommand& c, std::string_view from, std::string_view to) const;
  seconds deadline_after(state s, seconds at, const referral_view* r) const;

  const config::loaded_consortium& cfg_;
  ledger_options options_;
  // Each version immutable once stored (put() replaces the pointer).
  std::unordered_map<std::string, std::shared_ptr<const referral_view>> referrals_;
  std::unordered_map<std::string, std::vector<std::string>> by_hospital_;
  std::unordered_map<std::string, std::string> by_booking_;
  std::unordered_multimap<std::string, std::string> by_identifier_;  // "system|value" -> referral ids
  // Linked (followed) referral id -> the referrals that follow it, including
  // ones applied before it (partitions are read in no particular order).
  std::unordered_map<std::string, std::set<std::string>> by_linked_;
  std::set<std::pair<seconds, std::string>> deadlines_;
  std::unordered_map<std::string, outcome> decided_;
  std::deque<std::pair<seconds, std::string>> decided_order_;
  bool tentative_ = false;
  std::vector<undo_entry> undo_;
};

}  // namespace yilian::workflows::referral
