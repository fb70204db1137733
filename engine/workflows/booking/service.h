// yilian::workflows::booking::service — runs the booking workflow against the
// bus: the single-writer loop of engine/workflows/common/single_writer.h
// around the booking ledger (topic yilian.booking.v1, key = equipment id,
// writer group "yilian-booking"). Every instance folds the whole booking
// topic into its ledger; the owner of a partition decides its commands, so
// concurrent requests for one slot give exactly one booking.
//
// Held slots are released by the writer's timer (EXPIRE_HOLD decisions).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "engine/bus/bus.h"
#include "engine/core/error.h"
#include "engine/core/metrics.h"
#include "engine/workflows/booking/ledger.h"
#include "engine/workflows/common/single_writer.h"

namespace yilian::workflows::booking {

using workflows::header_is;
using workflows::record_headers;

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
  // Accepted booking decisions: the version the view had when it answered
  // (shared with the ledger; immutable).
  std::shared_ptr<const booking_view> booking;
  std::optional<refusal> refused;
};

class service {
 public:
  using decision_type = decision;

  service(bus::bus& b, std::unique_ptr<ledger> l, service_options options, metrics::registry* registry = nullptr);
  ~service();
  service(const service&) = delete;
  service& operator=(const service&) = delete;

  result<void> start();
  void stop();

  // Publishes a command (envelope with a BookingCommand body; its event_id and
  // command_id set); see single_writer::send and take_direct.
  void send(const ev::Envelope& command, std::move_only_function<void(result<void>)> done);
  bool take_direct(ev::Envelope&& command) { return writer_->take_direct(std::move(command)); }

  // Calls `done` once with the decision for `command_id` (at once when this
  // instance's view already has it). Returns a token for forget().
  std::uint64_t wait(const std::string& command_id, std::move_only_function<void(decision)> done);
  // Drops a waiter (timeout); false when it has already been called or queued.
  bool forget(std::uint64_t token);

  // The ledger's fixed part (machines, calendars, config), without the lock.
  const calendar* equipment(std::string_view equipment_id) const { return ledger_->equipment(equipment_id); }
  const config::loaded_consortium& config() const { return ledger_->config(); }

  // Read access to the ledger: `f(const ledger&)` under a shared lock.
  template <class F>
  auto read(F&& f) const {
    return writer_->read([&] { return std::forward<F>(f)(static_cast<const ledger&>(*ledger_)); });
  }

  // Whether the view has read the booking topic up to where it was when the
  // service started (readiness).
  bool caught_up() const { return writer_->caught_up(); }
  seconds now() const { return options_.now(); }
  const service_options& options() const { return options_; }

 private:
  class ledger_fold;

  std::unique_ptr<ledger> ledger_;
  service_options options_;
  std::unique_ptr<ledger_fold> fold_;
  std::unique_ptr<single_writer> writer_;
};

}  // namespace yilian::workflows::booking
