#include "engine/workflows/booking/service.h"

namespace yilian::workflows::booking {

// The ledger as the single writer sees it.
class service::ledger_fold final : public fold {
 public:
  ledger_fold(ledger& l, const service_options& o) : l_(l), o_(o) {}

  bool is_command(const ev::Envelope& e) const override { return e.body_case() == ev::Envelope::kBookingCommand; }
  std::string command_id(const ev::Envelope& c) const override { return c.booking_command().command_id(); }
  std::string command_key(const ev::Envelope& c) const override { return c.booking_command().equipment_id(); }
  std::string decision_key(const ev::Envelope& d) const override {
    return d.has_appointment_changed()          ? d.appointment_changed().equipment_id()
           : d.has_slot_availability_changed() ? d.slot_availability_changed().equipment_id()
                                               : d.booking_command_rejected().equipment_id();
  }
  ev::Envelope decide(const ev::Envelope& c, seconds now) const override { return l_.decide(c, now); }
  step apply(const ev::Envelope& e) override { return to_step(l_.apply(e)); }
  // The writer keeps this fold's changes (below), so it does not use these two.
  step apply_tentatively(const ev::Envelope& e) override { return to_step(l_.apply_tentatively(e, batch_)); }
  void undo_tentative() override { l_.undo(batch_); }
  // A decision reads and changes only its machine's bookings and time, and
  // the machine is the partition key (ledger::undo_log).
  bool keeps_changes() const override { return true; }
  std::unique_ptr<kept_change> keep(const ev::Envelope& e, step& s) override {
    auto change = std::make_unique<kept_log>();
    s = to_step(l_.apply_tentatively(e, change->log));
    return change;
  }
  void take_back(std::unique_ptr<kept_change> change) override {
    l_.undo(static_cast<kept_log&>(*change).log);
  }
  std::optional<outcome> decided(std::string_view command_id) const override {
    auto o = l_.decided(command_id);
    if (!o) return std::nullopt;
    return outcome{.command_id = std::string(command_id), .subject_id = o->booking_id, .refused = o->refused};
  }

  // HELD bookings whose hold ran out: EXPIRE_HOLD, one command id per
  // (booking, version), so a repeated sweep is the same command.
  std::vector<ev::Envelope> due_commands(seconds now) const override {
    std::vector<ev::Envelope> out;
    for (const auto* b : l_.lapsed_holds(now)) {
      ev::Envelope cmd;
      const std::string id = "expire:" + b->id + ":" + std::to_string(b->version);
      cmd.set_event_id("booking-command:" + id);
      cmd.set_type("yilian.events.v1.BookingCommand");
      cmd.set_schema_version(1);
      *cmd.mutable_occurred_at() = to_timestamp(now);
      cmd.mutable_source()->set_protocol(ev::PROTOCOL_ENGINE);
      cmd.mutable_source()->set_system(o_.ledger.engine_system);
      auto* c = cmd.mutable_booking_command();
      c->set_command_id(id);
      c->set_action(ev::BOOKING_ACTION_EXPIRE_HOLD);
      c->set_booking_id(b->id);
      c->set_equipment_id(b->equipment_id);
      c->set_actor("engine");
      c->set_engine(true);
      out.push_back(std::move(cmd));
    }
    return out;
  }

 private:
  struct kept_log final : kept_change {
    ledger::undo_log log;
  };

  static step to_step(applied a) {
    return step{.changed = a.changed, .is_decision = a.is_decision, .command_id = std::move(a.command_id),
                .subject_id = std::move(a.booking_id), .refused = std::move(a.refused), .voided = a.voided};
  }

  ledger& l_;
  const service_options& o_;
  ledger::undo_log batch_;  // apply_tentatively / undo_tentative
};

service::service(bus::bus& b, std::unique_ptr<ledger> l, service_options options, metrics::registry* registry)
    : ledger_(std::move(l)), options_(std::move(options)), fold_(std::make_unique<ledger_fold>(*ledger_, options_)) {
  writer_ = std::make_unique<single_writer>(b, *fold_,
                                            single_writer_options{.name = "booking",
                                                                  .topic = options_.topic,
                                                                  .command_type = "yilian.events.v1.BookingCommand",
                                                                  .group_prefix = options_.group_prefix,
                                                                  .max_batch = options_.max_batch,
                                                                  .timer_sweep = options_.hold_sweep,
                                                                  .now = options_.now},
                                            registry);
}

service::~service() { stop(); }

result<void> service::start() { return writer_->start(); }
void service::stop() { writer_->stop(); }

void service::send(const ev::Envelope& command, std::move_only_function<void(result<void>)> done) {
  writer_->send(command, std::move(done));
}

std::uint64_t service::wait(const std::string& command_id, std::move_only_function<void(decision)> done) {
  // The booking as this instance's view has it when the answer comes (a later
  // decision may already be folded in: the caller sees the newer version).
  return writer_->wait(command_id, [this, done = std::move(done)](outcome o) mutable {
    decision d{.command_id = std::move(o.command_id), .refused = std::move(o.refused)};
    if (!d.refused) {
      // Under the writer's shared lock already (single_writer::wait).
      d.booking = ledger_->share(o.subject_id);
    }
    done(std::move(d));
  });
}

bool service::forget(std::uint64_t token) { return writer_->forget(token); }

}  // namespace yilian::workflows::booking
