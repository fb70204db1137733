// yilian::workflows::booking::ledger — the state of every booking and every
// shared machine's time, as a fold of the booking topic, plus the decision
// function the single writer runs.
//
//   decide(command, now) -> decision event      (pure: reads the ledger only)
//   apply(event)         -> applied | void      (the only way state changes)
//
// Every instance applies the whole booking topic in partition order, so every
// instance holds the same ledger. apply() re-checks a decision against the
// state at its place in the log (slot still free, version still next) and
// treats a decision that no longer holds as void — the same way on every
// instance, because the log order is the same. That is what makes a stale
// writer after a rebalance harmless: the first decision in the log wins.
// A command id is decided once: a second decision for it is ignored.
//
// Not thread-safe; the booking service guards it with a shared_mutex.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/config/config.h"
#include "engine/core/error.h"
#include "engine/workflows/booking/calendar.h"
#include "engine/workflows/booking/machine.h"
#include "engine/workflows/common/timestamps.h"
#include "yilian/events/v1/envelope.pb.h"

namespace yilian::workflows::booking {

namespace ev = events::v1;

struct booking_step {
  std::uint64_t version = 0;
  state to = ev::BOOKING_STATE_UNSPECIFIED;
  action act = ev::BOOKING_ACTION_UNSPECIFIED;
  seconds at{};
  std::string actor;   // principal id, "hl7:<hospital>" or "engine"
  interval slot{};     // the slot after this step (empty when none)
  std::string reason;  // cancel/no-show reason code or text
};

struct booking_view {
  std::string id;
  std::string equipment_id;
  std::string owner;                // owning hospital
  std::string requesting_hospital;  // the clinic the patient is booked for
  state st = ev::BOOKING_STATE_UNSPECIFIED;
  std::string exam_code;
  interval slot{};                  // start == end: no slot (REQUESTED)
  seconds hold_expires_at{};        // HELD only
  bool lapsed = false;              // HELD whose hold ran out and whose slot someone else took
  std::uint64_t version = 0;
  seconds requested_at{};
  seconds updated_at{};
  ev::Demographics patient;
  ev::Subject subject;
  std::string placer_order;
  std::string referral_id;
  std::string booked_by;
  std::string conflict;             // owner blocked time over this booking
  std::vector<booking_step> history;

  bool has_slot() const { return slot.end > slot.start; }
  bool takes_time() const { return occupies_time(st) && has_slot() && !lapsed; }
};

struct owner_block {
  std::string id;
  interval when;
  std::string reason;
};

// A free slot from search().
struct free_slot {
  std::string equipment_id;
  std::string hospital;
  std::string exam_code;
  interval when;
  std::string slot_id;  // "<equipment>.<YYYYMMDDHHMM local>.<exam code>"
};

struct slot_query {
  std::string modality;          // "CT"; empty = any
  std::string exam_code;         // required
  std::string hospital;          // owner; empty = any
  std::string equipment_id;      // empty = any
  config::v1::Tier tier = config::v1::TIER_UNSPECIFIED;  // only owners of this tier
  std::string requesting_hospital;  // whose share counts (empty: the owner's own view)
  seconds from{};
  seconds to{};
  std::size_t limit = 20;
};

// What apply() did with an event.
struct applied {
  bool changed = false;        // the ledger changed
  bool is_decision = false;    // the event answers a command (command_id set)
  std::string command_id;
  std::string booking_id;
  std::optional<refusal> refused;  // a rejection event, or a decision that did not hold (void)
  bool voided = false;             // a decision that did not hold at its place in the log
};

// One machine's use over a time range (GET /api/v1/equipment/utilization).
struct utilization {
  std::string equipment_id;
  std::int64_t working_minutes = 0;   // the weekly schedule's hours in the range
  std::int64_t offered_minutes = 0;   // the consortium's share of them, less blocked time
  std::int64_t booked_minutes = 0;    // consortium bookings (HELD excluded) taking time in the range
  std::int64_t bookings = 0;          // bookings with a slot in the range, whatever became of them
  std::int64_t used = 0;              // PERFORMED, REPORTED, CORRECTED
  std::int64_t no_shows = 0;
  std::int64_t cancelled = 0;         // cancelled after being booked
  std::vector<std::int64_t> waits_seconds;  // request -> exam start, of used bookings
  // Median of waits_seconds (0 when none).
  std::int64_t median_wait_seconds() const;
};

struct ledger_options {
  std::chrono::seconds hold_ttl{std::chrono::minutes(10)};
  // How long a decided command id is remembered (resends within it get the
  // first answer; later resends are decided anew).
  std::chrono::seconds idempotency_window{std::chrono::hours(48)};
  std::string engine_system = "booking";  // Source.system of decisions
};

class ledger {
 public:
  // `cfg` must outlive the ledger (calendars point into its equipment).
  static result<std::unique_ptr<ledger>> create(const config::loaded_consortium& cfg, ledger_options options = {});

  // The decision for a BookingCommand envelope, as the event to publish:
  // AppointmentChanged / SlotAvailabilityChanged on success, else
  // BookingCommandRejected. `now` is the decision time (occurred_at).
  ev::Envelope decide(const ev::Envelope& command, seconds now) const;

  // Folds one event of the booking topic into the ledger. Events that are
  // not the ledger's business (commands, unknown equipment) change nothing.
  applied apply(const ev::Envelope& event);

  // For the writer: applies a decision, remembering in `log` how to take it
  // back (the writer decides a batch against its own earlier decisions, and
  // takes them back if the log turns out different). A decision changes only
  // its machine's bookings and time (the fold is partition-local,
  // single_writer.h): one machine's logs can be undone while another
  // machine's changes stay, each log's newest entry first.
  struct undo_entry {
    std::string booking_id;
    std::shared_ptr<const booking_view> before;  // null: did not exist
    std::string equipment_id;            // for block changes
    std::optional<std::vector<owner_block>> blocks_before;
    std::string command_id;              // decided entry to forget
  };
  struct undo_log {
    std::vector<undo_entry> entries;
  };
  applied apply_tentatively(const ev::Envelope& event, undo_log& log);
  void undo(undo_log& log);

  // The earlier answer to a command id, if it is still remembered.
  struct outcome {
    std::string booking_id;
    std::optional<refusal> refused;
  };
  std::optional<outcome> decided(std::string_view command_id) const;

  const booking_view* find(std::string_view booking_id) const;
  // The booking as it is now, shared: a later change makes a new version and
  // leaves this one as it was (a decision's answer holds it without a copy).
  std::shared_ptr<const booking_view> share(std::string_view booking_id) const;
  // The booking an order number names at `owner`'s machines (the booking id
  // itself, or its placer order); the most recently changed when several.
  const booking_view* find_by_order(std::string_view order, std::string_view owner) const;
  // `owner`'s bookings with a slot overlapping `around` whose patient shares an
  // identifier (system and value) with `ids`.
  std::vector<const booking_view*> find_by_patient(std::string_view owner,
                                                   const google::protobuf::RepeatedPtrField<ev::Identifier>& ids,
                                                   interval around) const;
  // The machines and their calendars (and config() below) are fixed when the
  // ledger is created: these three may be read without the writer's lock.
  const calendar* equipment(std::string_view equipment_id) const;
  std::vector<const calendar*> all_equipment() const;
  const std::vector<owner_block>* blocks(std::string_view equipment_id) const;
  // Bookings where `hospital` is the requester or the owner, newest first.
  std::vector<const booking_view*> bookings_of(std::string_view hospital, std::size_t limit) const;
  std::vector<const booking_view*> bookings_on(std::string_view equipment_id, interval when) const;
  std::vector<free_slot> search(const slot_query& q, seconds now) const;
  utilization use_of(std::string_view equipment_id, interval range) const;
  // HELD bookings on these equipment ids whose hold ran out by `now`.
  std::vector<const booking_view*> lapsed_holds(seconds now) const;
  std::size_t size() const { return bookings_.size(); }
  const config::loaded_consortium& config() const { return cfg_; }

 private:
  struct equipment_state {
    calendar cal;
    config::v1::Modality modality = config::v1::MODALITY_UNSPECIFIED;
    config::v1::Tier owner_tier = config::v1::TIER_UNSPECIFIED;
    // Bookings taking time on the machine: start -> (end, booking id). Never
    // overlapping (apply guarantees it).
    std::map<seconds, std::pair<seconds, std::string>> occupied;
    std::vector<owner_block> blocks;
    // Local day -> minutes booked by other hospitals (the consortium share).
    std::unordered_map<std::int64_t, std::int64_t> share_used;
    // Every booking that was ever BOOKED here, by the slot it had last
    // (start, booking id) -> end: what use_of() counts, found by range
    // instead of by a scan of all the owner's bookings.
    std::map<std::pair<seconds, std::string>, seconds> booked;
    seconds::duration longest_booked{0};  // longest slot ever put in `booked`
  };
  explicit ledger(const config::loaded_consortium& cfg, ledger_options options) : cfg_(cfg), options_(options) {}

  equipment_state* state_of(std::string_view equipment_id);
  const equipment_state* state_of(std::string_view equipment_id) const;
  // Why [slot] cannot be taken by `booking_id` at time `at` (nullopt: it can).
  std::optional<refusal> check_slot(const equipment_state& eq, std::string_view booking_id,
                                    std::string_view requesting_hospital, const interval& slot, seconds at) const;
  // `before` is the booking's current entry (null: new).
  void put_booking(equipment_state& eq, const booking_view* before, booking_view after);
  void put_booking(equipment_state& eq, const booking_view* before, std::shared_ptr<const booking_view> after);
  void put_blocks(equipment_state& eq, std::vector<owner_block> blocks);
  void remember(const std::string& command_id, outcome o, seconds at);
  applied apply_appointment(const ev::Envelope& e);
  applied apply_availability(const ev::Envelope& e);
  applied apply_rejection(const ev::Envelope& e);
  void refresh_conflicts(equipment_state& eq, const interval& range);
  std::string conflict_text(const equipment_state& eq, const interval& slot) const;
  ev::Envelope decide_availability(const ev::Envelope& command, const ev::BookingCommand& c, parties who,
                                   seconds now) const;

  const config::loaded_consortium& cfg_;
  ledger_options options_;
  std::unordered_map<std::string, equipment_state> equipment_;
  // Each version immutable once stored (put_booking replaces the pointer).
  std::unordered_map<std::string, std::shared_ptr<const booking_view>> bookings_;
  std::unordered_map<std::string, std::vector<std::string>> by_hospital_;
  std::unordered_multimap<std::string, std::string> by_order_;  // placer order -> booking ids
  std::unordered_map<std::string, outcome> decided_;
  std::deque<std::pair<seconds, std::string>> decided_order_;
  std::set<std::pair<seconds, std::string>> holds_;  // HELD bookings by hold expiry
  undo_log* undo_ = nullptr;  // while applying tentatively: where the undo goes
};

using workflows::to_seconds;
using workflows::to_timestamp;
// "2026-11-24T08:00:00+08:00" in the zone.
std::string format_local(seconds t, const time_zone& zone);
// RFC 3339 / ISO 8601 with an offset or Z ("2026-11-24T08:00:00+08:00",
// "2026-11-24T00:00Z"); a date alone is that day's midnight in `zone`.
result<seconds> parse_instant(std::string_view text, const time_zone& zone);

}  // namespace yilian::workflows::booking
