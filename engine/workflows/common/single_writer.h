// yilian::workflows::single_writer — runs a workflow's decisions against the
// bus with one writer per partition (DESIGN.md "Events and topics": whatever
// must be decided by a single writer lands in one partition). The booking and
// referral workflows are both this loop around their own fold.
//
// Every instance folds the whole topic into its state (the view: a consumer
// group of its own, reading from the start); the instance that owns a
// partition in the consumer group "yilian-<name>" decides that partition's
// commands (the single writer).
//
// A command's life: a caller publishes a command keyed by the fold's key
// (durable) -> the partition's writer decides it against the state, in
// partition order, in batches (each batch sees its own earlier decisions,
// applied tentatively) -> publishes the decisions -> every view applies them
// in log order (a decision that no longer holds at its place in the log is
// void everywhere alike) -> the instance that took the request answers its
// caller from its own view. The writer's tentative changes are undone after
// the batch, or, for a fold that keeps them (fold::keeps_changes), stay and
// count as the view's apply once it reads the decisions back in order.
//
// The writer decides a command only once its view has read past it (and,
// after it gains a partition, past the partition's end at that moment), so it
// never decides on a state that misses what came before. One batch per
// partition is in flight: the next batch is decided after the view applied
// the previous one.
//
// Timers (a hold or a referral that lapses) are commands the fold says are
// due; the writer of their partition decides them like any other.
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
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "engine/bus/bus.h"
#include "engine/core/error.h"
#include "engine/core/metrics.h"
#include "engine/workflows/common/timestamps.h"
#include "yilian/events/v1/envelope.pb.h"

namespace yilian::workflows {

namespace ev = events::v1;

// Why a command cannot be taken. `code` is the workflow's rejection code.
struct refusal {
  errc kind = errc::conflict;  // conflict (409), permission_denied (403), not_found (404), validation_failed (422)
  std::string code;
  std::string message;
};

// What folding one event did.
struct step {
  bool changed = false;      // the state changed
  bool is_decision = false;  // the event answers a command (command_id set)
  std::string command_id;
  std::string subject_id;    // the booking / referral the event is about
  std::optional<refusal> refused;  // a rejection event, or a decision that did not hold (void)
  bool voided = false;             // a decision that did not hold at its place in the log
};

// The answer to a command as the view applied it.
struct outcome {
  std::string command_id;
  std::string subject_id;
  std::optional<refusal> refused;
};

// A tentative change a fold keeps, and how to take it back (fold::keep).
class kept_change {
 public:
  virtual ~kept_change() = default;
};

// A workflow's state and decision function, as the writer sees it. Called
// under the writer's lock: exclusive for fold/undo, shared for the rest.
class fold {
 public:
  virtual ~fold() = default;
  // Whether an envelope is one of the workflow's commands.
  virtual bool is_command(const ev::Envelope& e) const = 0;
  virtual std::string command_id(const ev::Envelope& command) const = 0;
  // Partition key of a command / of a decision (the same for one subject).
  virtual std::string command_key(const ev::Envelope& command) const = 0;
  virtual std::string decision_key(const ev::Envelope& decision) const = 0;
  // The decision event for a command (pure: reads the state only).
  virtual ev::Envelope decide(const ev::Envelope& command, seconds now) const = 0;
  // Folds an event of the topic into the state.
  virtual step apply(const ev::Envelope& e) = 0;
  // As apply, remembering how to take it back (undo_tentative()).
  virtual step apply_tentatively(const ev::Envelope& e) = 0;
  virtual void undo_tentative() = 0;
  // Whether the fold keeps the writer's tentative changes. A fold may when
  // its decisions read and change only the subjects of their own partition
  // (and indexes that hold them by id): then one partition's changes can be
  // taken back while other partitions' stay. The writer applies its
  // decisions once, when it decides them, and the view only confirms them
  // when it reads them back in the order they were decided; any other record
  // of that partition first takes back what is not confirmed yet (see
  // single_writer.cc). Otherwise the writer undoes a batch's tentative
  // changes at once and the view applies the decisions it reads.
  virtual bool keeps_changes() const { return false; }
  // A fold that keeps changes overrides these two. keep() applies like
  // apply_tentatively (`s` is what it did) and returns how to take the change
  // back; take_back() gets a partition's changes newest first. Other folds
  // are never asked.
  virtual std::unique_ptr<kept_change> keep(const ev::Envelope& e, step& s) {
    (void)e;
    s = {};
    return nullptr;
  }
  virtual void take_back(std::unique_ptr<kept_change> change) { (void)change; }
  // The earlier answer to a command id, while it is remembered.
  virtual std::optional<outcome> decided(std::string_view command_id) const = 0;
  // Commands the engine owes at `now` (timers); their ids must be stable
  // until decided, so a repeated sweep does not queue them twice.
  virtual std::vector<ev::Envelope> due_commands(seconds now) const { (void)now; return {}; }
};

// Headers of the records workflows publish ("event_id", "type", and
// "origin: engine" for decisions — engine events whose type is not a
// command), so consumers can skip records without decoding them.
std::vector<bus::header> record_headers(const ev::Envelope& e);
bool header_is(const bus::record& r, std::string_view key, std::string_view value);
std::optional<std::string_view> header_of(const bus::record& r, std::string_view key);

struct single_writer_options {
  std::string name;           // "booking": groups yilian-booking[-view-*], metrics yilian_booking_*
  std::string topic;
  std::string command_type;   // Envelope.type of commands ("yilian.events.v1.BookingCommand")
  std::string group_prefix;   // Kafka group prefix ("" on the embedded log)
  std::size_t max_batch = 4096;
  std::chrono::milliseconds timer_sweep{1000};
  // How often the writer group's offsets are committed. Between commits the
  // writer runs ahead; after a restart or a rebalance the records since the
  // last commit are read again and skipped by command id (decided() or an
  // origin:engine decision), so a longer interval costs only a re-read.
  std::chrono::milliseconds commit_interval{200};
  std::function<seconds()> now = [] {
    return std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
  };
};

class single_writer {
 public:
  single_writer(bus::bus& b, fold& f, single_writer_options options, metrics::registry* registry = nullptr);
  ~single_writer();
  single_writer(const single_writer&) = delete;
  single_writer& operator=(const single_writer&) = delete;

  result<void> start();
  void stop();

  // Publishes a command. `done` is called once, from a bus or writer thread,
  // when the command is durable (or could not be made so).
  void send(const ev::Envelope& command, std::move_only_function<void(result<void>)> done);
  // For a caller that only needs the decision: when this instance owns the
  // command's partition, hands the command straight to the writer without a
  // bus record (it is published for the new owner should the partition move
  // away first) and returns true; false when it does not own it (publish the
  // command with send). Inputs acknowledged to someone (a hospital's feed)
  // must not use it.
  // `command` is moved to the writer only when it returns true (else it is
  // left as it was, for send()).
  bool take_direct(ev::Envelope&& command);

  // Calls `done` once with the outcome for `command_id`: at once when the
  // view already has it, else from the engine thread. It never blocks on the
  // fold's lock: while the writer holds it, the lookup of an earlier decision
  // is left to the engine thread. `done` runs under the fold's shared lock, so
  // it may read the fold directly (one lock for a whole batch of answers) and
  // must not call read(). Returns a token for forget(); 0 when `done` was
  // called before wait() returned.
  std::uint64_t wait(const std::string& command_id, std::move_only_function<void(outcome)> done);
  // Drops a waiter (timeout); false when it has already been called or queued.
  bool forget(std::uint64_t token);

  // `f()` under the shared lock of the fold.
  template <class F>
  auto read(F&& f) const {
    std::shared_lock lock(mu_);
    return std::forward<F>(f)();
  }

  // Whether the view has read the topic up to where it was at start (readiness).
  bool caught_up() const { return caught_up_.load(); }
  seconds now() const { return options_.now(); }
  const single_writer_options& options() const { return options_; }

 private:
  struct partition_work;
  struct completion {
    std::int32_t partition = 0;
    result<bus::position> outcome;
  };
  struct waiter {
    std::uint64_t token = 0;
    std::move_only_function<void(outcome)> done;
  };

  void run();
  void poll_view(std::chrono::milliseconds timeout, std::vector<outcome>& resolved);
  void poll_writer(std::chrono::milliseconds timeout);
  void check_assignment();
  void note_progress();
  void settle_batches();
  void commit_offsets();
  void take_inbox();
  // Takes back the fold's kept changes of the partition not yet confirmed by
  // the view (newest first); their decisions are applied when read. Under
  // the exclusive lock.
  void take_back_kept(partition_work& w);
  void decide_ready();
  void sweep_timers();
  void resolve(std::vector<outcome>& resolved);
  bool owns(std::int32_t partition) const;
  // This instance's own decision that `r` carries (taken out of its open batch).
  std::optional<ev::Envelope> take_published(const bus::record& r);
  // What the fold did with `r` when `r` is the partition's next kept
  // decision (now durable). Else takes the partition's kept changes back and
  // returns nothing: the view applies `r`. Under the exclusive lock.
  std::optional<step> confirm_kept(const bus::record& r);
  bus::message record_of(const ev::Envelope& command) const;

  bus::bus& bus_;
  fold& fold_;
  single_writer_options options_;
  mutable std::shared_mutex mu_;  // guards fold_

  std::unique_ptr<bus::consumer> view_;
  std::unique_ptr<bus::consumer> writer_;
  std::int32_t partitions_ = 1;
  std::unique_ptr<std::atomic<bool>[]> owned_;  // set by the engine thread, read by send()
  std::mutex inbox_mu_;
  std::vector<std::pair<std::int32_t, ev::Envelope>> inbox_;  // direct commands
  std::atomic<std::size_t> inbox_size_{0};
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> caught_up_{false};
  std::map<std::int32_t, std::int64_t> start_end_;

  // Engine thread only.
  std::map<std::int32_t, std::int64_t> view_next_;
  std::map<std::int32_t, std::unique_ptr<partition_work>> work_;
  std::map<std::int32_t, std::int64_t> gate_;
  std::vector<std::pair<std::string, std::int32_t>> assignment_;
  std::chrono::steady_clock::time_point next_sweep_{};
  std::chrono::steady_clock::time_point next_assignment_check_{};
  std::chrono::steady_clock::time_point next_commit_{};
  // Per partition, the last writer record of a settled batch, not yet committed.
  std::map<std::int32_t, bus::record> to_commit_;

  // Publish handlers may run after stop() (a slow bus): they only touch this box.
  struct completion_box {
    std::mutex mu;
    std::vector<completion> done;
  };
  std::shared_ptr<completion_box> completions_ = std::make_shared<completion_box>();
  std::atomic<std::size_t> completions_pending_{0};

  std::mutex waiters_mu_;
  std::unordered_map<std::string, std::vector<waiter>> waiters_;
  std::unordered_map<std::uint64_t, std::string> waiter_tokens_;
  // Command ids whose waiter was registered without looking at the fold (its
  // lock was busy): the engine thread looks their decision up in resolve().
  std::vector<std::string> unchecked_;
  // Command ids of kept decisions the view has not read back yet: not
  // durable, so not an answer for wait() (guarded by mu_).
  std::unordered_set<std::string> unconfirmed_;
  std::atomic<std::size_t> unchecked_size_{0};
  std::uint64_t next_token_ = 1;

  metrics::counter* decided_total_ = nullptr;
  metrics::counter* rejected_total_ = nullptr;
  metrics::counter* voided_total_ = nullptr;
  metrics::counter* taken_back_total_ = nullptr;
};

}  // namespace yilian::workflows
