#include "engine/workflows/referral/service.h"

namespace yilian::workflows::referral {

ev::Envelope command_envelope(ev::ReferralCommand c, seconds now, ev::Protocol protocol) {
  ev::Envelope e;
  e.set_event_id("referral-command:" + c.command_id());
  e.set_type("yilian.events.v1.ReferralCommand");
  e.set_schema_version(1);
  *e.mutable_occurred_at() = to_timestamp(now);
  *e.mutable_recorded_at() = to_timestamp(now);
  e.mutable_source()->set_hospital(c.actor_hospital());
  e.mutable_source()->set_protocol(protocol);
  e.mutable_source()->set_system("referral");
  e.mutable_source()->set_principal(c.actor());
  e.mutable_correlation()->set_referral_id(c.referral_id());
  *e.mutable_referral_command() = std::move(c);
  return e;
}

class service::ledger_fold final : public fold {
 public:
  explicit ledger_fold(ledger& l) : l_(l) {}

  bool is_command(const ev::Envelope& e) const override { return e.body_case() == ev::Envelope::kReferralCommand; }
  std::string command_id(const ev::Envelope& c) const override { return c.referral_command().command_id(); }
  std::string command_key(const ev::Envelope& c) const override { return c.referral_command().referral_id(); }
  std::string decision_key(const ev::Envelope& d) const override {
    return d.has_referral_requested()       ? d.referral_requested().referral_id()
           : d.has_referral_state_changed() ? d.referral_state_changed().referral_id()
                                            : d.referral_command_rejected().referral_id();
  }
  ev::Envelope decide(const ev::Envelope& c, seconds now) const override { return l_.decide(c, now); }
  step apply(const ev::Envelope& e) override { return l_.apply(e); }
  step apply_tentatively(const ev::Envelope& e) override { return l_.apply_tentatively(e); }
  void undo_tentative() override { l_.undo_tentative(); }
  std::optional<outcome> decided(std::string_view command_id) const override { return l_.decided(command_id); }

  // Deadlines: one EXPIRE per (referral, version), so a repeated sweep is
  // the same command.
  std::vector<ev::Envelope> due_commands(seconds now) const override {
    std::vector<ev::Envelope> out;
    for (const auto* r : l_.overdue(now)) {
      ev::ReferralCommand c;
      c.set_command_id("expire:" + r->id + ":" + std::to_string(r->version));
      c.set_action(ev::REFERRAL_ACTION_EXPIRE);
      c.set_referral_id(r->id);
      c.set_actor("engine");
      c.set_engine(true);
      c.set_reason_text(awaits_answer(r->st) ? "not answered in time" : "accepted but never scheduled");
      out.push_back(command_envelope(std::move(c), now));
    }
    return out;
  }

 private:
  ledger& l_;
};

service::service(bus::bus& b, std::unique_ptr<ledger> l, service_options options, metrics::registry* registry)
    : ledger_(std::move(l)), options_(std::move(options)), fold_(std::make_unique<ledger_fold>(*ledger_)) {
  writer_ = std::make_unique<single_writer>(b, *fold_,
                                            single_writer_options{.name = "referral",
                                                                  .topic = options_.topic,
                                                                  .command_type = "yilian.events.v1.ReferralCommand",
                                                                  .group_prefix = options_.group_prefix,
                                                                  .max_batch = 1024,
                                                                  .timer_sweep = options_.expiry_sweep,
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
  return writer_->wait(command_id, [this, done = std::move(done)](outcome o) mutable {
    decision d{.command_id = std::move(o.command_id), .refused = std::move(o.refused)};
    if (!d.refused) {
      // Under the writer's shared lock already (single_writer::wait).
      d.referral = ledger_->share(o.subject_id);
    }
    done(std::move(d));
  });
}

bool service::forget(std::uint64_t token) { return writer_->forget(token); }

}  // namespace yilian::workflows::referral
