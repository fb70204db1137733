// yilian::workflows::referral::service — runs the referral workflow against
// the bus: the single-writer loop of engine/workflows/common/single_writer.h
// around the referral ledger (topic yilian.referral.v1, key = referral id,
// writer group "yilian-referral"). Unanswered referrals expire by the
// writer's timer (EXPIRE decisions, engine party).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "engine/bus/bus.h"
#include "engine/core/metrics.h"
#include "engine/workflows/common/single_writer.h"
#include "engine/workflows/referral/ledger.h"

namespace yilian::workflows::referral {

struct service_options {
  std::string topic = "yilian.referral.v1";
  std::string group_prefix;
  std::chrono::milliseconds expiry_sweep{1000};
  std::function<seconds()> now = [] {
    return std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
  };
};

// The answer to a command: the referral as decided, or why not.
struct decision {
  std::string command_id;
  std::shared_ptr<const referral_view> referral;  // the decided version (immutable)
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

  // See single_writer::send / take_direct / wait / forget.
  void send(const ev::Envelope& command, std::move_only_function<void(result<void>)> done);
  bool take_direct(ev::Envelope&& command) { return writer_->take_direct(std::move(command)); }
  std::uint64_t wait(const std::string& command_id, std::move_only_function<void(decision)> done);
  bool forget(std::uint64_t token);

  template <class F>
  auto read(F&& f) const {
    return writer_->read([&] { return std::forward<F>(f)(static_cast<const ledger&>(*ledger_)); });
  }

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

// A ReferralCommand envelope (event id "referral-command:<command id>",
// source = the actor's hospital, protocol ENGINE for the engine's own).
ev::Envelope command_envelope(ev::ReferralCommand c, seconds now, ev::Protocol protocol = ev::PROTOCOL_ENGINE);

}  // namespace yilian::workflows::referral
