// yilian::workflows::booking::service — runs the booking workflow against the
// bus: every instance folds the whole booking topic into its ledger (the
// view), and the instance that owns a partition in the consumer group
// "yilian-booking" decides that partition's commands (the single writer).
//
// A command's life: the API publishes a BookingCommand keyed by the equipment
// id (durable) -> the partition's writer decides it against the ledger, in
// partition order, in batches (each batch sees its own earlier decisions) ->
// publishes the decisions -> every view applies them in log order (a
// decision that no longer holds is void everywhere alike) -> the instance
// that took the request answers its caller from its own view.
//
// The writer decides a command only once its view has read past the command
// (and, after it gains a partition, past the partition's end at that moment),
// so it never decides on a ledger that misses what came before. One batch per
// partition is in flight: the next batch is decided after the view applied
// the previous one.
//
// Held slots are released by the writer's timer (EXPIRE_HOLD decisions).
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
#include <unordered_map>
#include <vector>

#include "engine/bus/bus.h"
#include "engine/core/error.h"
#include "engine/core/metrics.h"
#include "engine/workflows/booking/ledger.h"

namespace yilian::workflows::booking {

// Headers of the records the workflow publishes ("event_id", "type", and
// "origin: engine" for its decisions), so other consumers can skip records
// without decoding them.
std::vector<bus::header> record_headers(const ev::Envelope& e);
bool header_is(const bus::record& r, std::string_view key, std::string_view value);

struct service_options {
  std::string topic = "yilian.booking.v1";
  std::string group_prefix;  // Kafka group prefix ("" on the embedded log)
  std::size_t max_batch = 4096;
  std::chrono::milliseconds hold_sweep{1000};
  ledger_options ledger;
  // Clock for decisions (tests use a fixed or stepping clock).
  std::function<seconds()> now = [] {
    return std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
  };
};

// The answer to a command: the booking as decided, or why not.
struct decision {
  std::string command_id;
  std::optional<booking_view> booking;  // accepted booking decisions
  std::optional<refusal> refused;
};

class service {
 public:
  service(bus::bus& b, std::unique_ptr<ledger> l, service_options options, metrics::registry* registry = nullptr);
  ~service();
  service(const service&) = delete;
  service& operator=(const service&) = delete;

  result<void> start();
  void stop();

  // Publishes a command (envelope with a BookingCommand body; its event_id and
  // command_id set). `done` is called once, from a bus or service thread:
  // with the decision, or with an error when the command could not be made
  // durable. Waiting for the decision is wait()'s job.
  //
  // `direct`: the caller only needs the decision, not a durable command (an
  // API request whose client gets its answer from the durable decision and
  // retries with its idempotency key otherwise). When this instance's writer
  // owns the equipment's partition, the command then goes straight to it
  // without a bus record (`done` at once); should the partition move away
  // before the command is decided, it is published for the new owner.
  // Inputs that were acknowledged to someone (a hospital's feed) must not
  // use it.
  void send(const ev::Envelope& command, std::move_only_function<void(result<void>)> done, bool direct = false);

  // Calls `done` once with the decision for `command_id` (at once when this
  // instance's view already has it). Returns a token for forget().
  std::uint64_t wait(const std::string& command_id, std::move_only_function<void(decision)> done);
  // Drops a waiter (timeout); false when it has already been called or queued.
  bool forget(std::uint64_t token);

  // Read access to the ledger: `f(const ledger&)` under a shared lock.
  template <class F>
  auto read(F&& f) const {
    std::shared_lock lock(mu_);
    return std::forward<F>(f)(static_cast<const ledger&>(*ledger_));
  }

  // Whether the view has read the booking topic up to where it was when the
  // service started (readiness).
  bool caught_up() const { return caught_up_.load(); }
  seconds now() const { return options_.now(); }
  const service_options& options() const { return options_; }

 private:
  struct partition_work;
  struct completion {
    std::int32_t partition = 0;
    result<bus::position> outcome;
  };
  struct waiter {
    std::uint64_t token = 0;
    std::move_only_function<void(decision)> done;
  };

  void run();
  void poll_view(std::chrono::milliseconds timeout, std::vector<std::pair<std::string, decision>>& resolved);
  void poll_writer(std::chrono::milliseconds timeout);
  void check_assignment();
  void note_progress();
  void settle_batches();
  void take_inbox();
  void decide_ready();
  void sweep_holds();
  void resolve(std::vector<std::pair<std::string, decision>>& resolved);
  decision snapshot(const applied& a) const;  // under the lock

  bus::bus& bus_;
  std::unique_ptr<ledger> ledger_;
  service_options options_;
  mutable std::shared_mutex mu_;  // guards ledger_

  std::unique_ptr<bus::consumer> view_;
  std::unique_ptr<bus::consumer> writer_;
  std::int32_t partitions_ = 1;
  // Partitions the writer owns (set by the engine thread, read by send()).
  std::unique_ptr<std::atomic<bool>[]> owned_;
  // Direct commands waiting for the engine thread.
  std::mutex inbox_mu_;
  std::vector<std::pair<std::int32_t, ev::Envelope>> inbox_;
  std::atomic<std::size_t> inbox_size_{0};
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> caught_up_{false};
  std::map<std::int32_t, std::int64_t> start_end_;  // view: partition end at start

  // Engine thread only.
  std::map<std::int32_t, std::int64_t> view_next_;  // next offset the view will apply, per partition
  std::map<std::int32_t, std::unique_ptr<partition_work>> work_;
  std::map<std::int32_t, std::int64_t> gate_;       // writer: decide only once view_next_ >= this
  std::vector<std::pair<std::string, std::int32_t>> assignment_;
  std::chrono::steady_clock::time_point next_sweep_{};
  std::chrono::steady_clock::time_point next_assignment_check_{};

  // Publish handlers may run after stop() (a slow bus): they only touch this
  // box, which they share.
  struct completion_box {
    std::mutex mu;
    std::vector<completion> done;
  };
  std::shared_ptr<completion_box> completions_ = std::make_shared<completion_box>();
  std::atomic<std::size_t> completions_pending_{0};

  std::mutex waiters_mu_;
  std::unordered_map<std::string, std::vector<waiter>> waiters_;
  std::unordered_map<std::uint64_t, std::string> waiter_tokens_;
  std::uint64_t next_token_ = 1;

  metrics::counter* decided_total_ = nullptr;
  metrics::counter* rejected_total_ = nullptr;
  metrics::counter* voided_total_ = nullptr;
};

}  // namespace yilian::workflows::booking
