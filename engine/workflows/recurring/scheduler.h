// yilian::workflows::recurring::scheduler — books care plans' periodic exams
// (DESIGN.md "Workflows", recurring exams; the plan math is plan.h).
//
// Every instance folds the whole care-plan topic into its plan_book (the
// view: a consumer group of its own, reading from the start). The instance
// that owns a partition in the consumer group "yilian-careplan" fires that
// partition's plans (the single writer per care plan; the topic is keyed by
// care plan id). Every `tick` (and on poke()), for each active plan it owns
// and each period due at now() and not fired yet, it
//
//   1. looks in the booking ledger for the period's booking (its id derives
//      from plan and period): one made before a crash is the period's booking;
//   2. else books the earliest fitting slot from the period's start (or now)
//      up to the next period's start — the preferred hospital's machines,
//      else those of the preferred tier, else any machine doing the exam —
//      through booking::service::send (durable) and wait, trying the next
//      slot when refused as taken / over the share / blocked
//      (booking::book_earliest); the clinic is the requesting hospital, the
//      plan's patient the booking's, so the booking notifier tells the
//      clinic (and the owner) of BOOKED, NO_SHOW and the rest;
//   3. publishes the period's CarePlanOccurrence (booked, or why not:
//      no_slot, missed, a refusal code) to the outbound topic keyed by the
//      clinic — the clinic is told — and then to the care-plan topic, keyed
//      by the plan: that record is what makes the period fired everywhere.
//
// Exactly once. The occurrence is published only after the booking decision,
// and a writer fires a partition only once its view has read that partition
// to where it ended when the writer gained it (the gate) and the booking
// view has caught up: it sees every occurrence and booking of the previous
// owner. A crash between 2 and 3 refires the period: step 1 finds the
// booking, or — when the command was durable but not yet decided — the
// repeated command ids get the first decision back (the booking writer
// decides an id once). A crash between the outbound record and the
// care-plan record repeats the outbound record with the same event_id, the
// receivers' idempotency key. A writer that lost its partition while firing
// may publish a second occurrence; the view keeps the first.
//
// Threads: one engine thread polls both consumers, fires and blocks while a
// booking decision is awaited (bounded by decision_timeout, and by stop()).
// read() may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/bus/bus.h"
#include "engine/core/error.h"
#include "engine/core/metrics.h"
#include "engine/core/time_zone.h"
#include "engine/workflows/booking/service.h"
#include "engine/workflows/recurring/plans.h"

namespace yilian::workflows::recurring {

struct scheduler_options {
  std::string topic = "yilian.careplan.v1";
  std::string outbound_topic = "yilian.outbound.v1";
  std::string group_prefix;  // Kafka group prefix ("" on the embedded log)
  time_zone zone;            // the consortium's: plan dates are its local dates
  std::chrono::milliseconds tick{std::chrono::seconds(30)};
  std::function<seconds()> now = [] {
    return std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
  };
  std::size_t max_slot_attempts = 8;                      // slots tried per period
  std::chrono::milliseconds decision_timeout{std::chrono::seconds(30)};
  std::string engine_system = "careplan";                 // Source.system of what it publishes
  // Test hook: called once a period's outcome is known, before its
  // occurrence is published; false stops there, as if the engine had crashed
  // (the period stays unfired and is fired again by a later pass).
  std::function<bool(const ev::CarePlanOccurrence&)> before_occurrence;
};

class scheduler {
 public:
  scheduler(bus::bus& b, booking::service& bookings, scheduler_options options,
            metrics::registry* registry = nullptr);
  ~scheduler();
  scheduler(const scheduler&) = delete;
  scheduler& operator=(const scheduler&) = delete;

  result<void> start();
  // Stops firing (a booking decision being awaited is abandoned; its period
  // fires again later) and leaves both consumer groups.
  void stop();

  // `f(const plan_book&)` under a shared lock.
  template <class F>
  auto read(F&& f) const {
    std::shared_lock lock(mu_);
    return std::forward<F>(f)(static_cast<const plan_book&>(plans_));
  }

  // Folds an event this instance has just made durable on the care-plan topic
  // (the REST API's CarePlanChanged), so that reads see it before the view
  // gets there; the view's own apply then changes nothing.
  void note(const ev::Envelope& e);

  // Asks for a pass now (after the clock moved); returns a ticket for
  // pass_done().
  std::uint64_t poke();
  // Whether a pass that began after poke() returned `ticket` has finished
  // with every owned partition open (view caught up, gates passed, booking
  // view caught up).
  bool pass_done(std::uint64_t ticket) const { return passes_done_.load() >= ticket; }

  // The view has read the topic up to where it ended at start (readiness).
  bool caught_up() const { return caught_up_.load(); }
  seconds now() const { return options_.now(); }
  const scheduler_options& options() const { return options_; }
  std::uint64_t fired() const { return fired_.load(); }
  // Partitions of the care-plan topic this instance's writer owns now.
  std::size_t owned_partitions() const { return owned_.load(); }

 private:
  struct due_item {
    std::string plan_id;
    period p;
  };

  void run();
  void pump(std::chrono::milliseconds view_timeout);
  void poll_view(std::chrono::milliseconds timeout);
  void poll_writer();
  void check_assignment();
  void note_progress();
  bool open(std::int32_t partition);  // owned and past its gate
  // Returns false when the pass could not look at every owned partition.
  bool pass();
  // Fires one period: false when it has to be tried again later.
  bool fire(const care_plan& plan, const period& p, seconds now);
  result<booking::decision> decide(const ev::Envelope& command);
  result<void> publish_durably(bus::message m);

  bus::bus& bus_;
  booking::service& bookings_;
  scheduler_options options_;
  mutable std::shared_mutex mu_;  // guards plans_
  plan_book plans_;

  std::unique_ptr<bus::consumer> view_;
  std::unique_ptr<bus::consumer> writer_;
  std::int32_t partitions_ = 1;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> caught_up_{false};
  std::atomic<std::uint64_t> passes_requested_{0};
  std::atomic<std::uint64_t> passes_done_{0};
  std::atomic<std::uint64_t> fired_{0};
  std::atomic<std::size_t> owned_{0};

  // Engine thread only.
  std::map<std::int32_t, std::int64_t> start_end_;  // view: partition ends at start
  std::map<std::int32_t, std::int64_t> view_next_;  // next offset the view reads, per partition
  std::map<std::int32_t, std::int64_t> gate_;       // fire only once view_next_ >= this
  std::vector<std::pair<std::string, std::int32_t>> assignment_;
  std::chrono::steady_clock::time_point next_assignment_check_{};
  std::chrono::steady_clock::time_point next_pass_{};

  metrics::counter* booked_total_ = nullptr;
  metrics::counter* failed_total_ = nullptr;
};

}  // namespace yilian::workflows::recurring
