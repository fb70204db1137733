#include "engine/workflows/referral/feed.h"

#include <future>

#include "engine/core/log.h"
#include "engine/workflows/common/actor.h"
#include "engine/core/thread.h"
#include "engine/workflows/common/envelope_peek.h"

namespace yilian::workflows::referral {

using namespace std::chrono_literals;

namespace {

const auto lg = log::get("referral");

// Where a hospital's HL7 v2 message came from, as the answer to it needs it.
ev::ReferralCommandOrigin origin_of(const ev::Envelope& event) {
  ev::ReferralCommandOrigin o;
  const auto& src = event.source();
  o.set_hospital(src.hospital());
  o.set_protocol(src.protocol());
  o.set_application(src.system());
  o.set_facility(src.facility());
  o.set_control_id(src.control_id());
  o.set_message_type(src.message_type());
  o.set_event_id(event.event_id());
  return o;
}

// The status as the source said it for a new referral: "I12" for REF^I12,
// "ORC-1 NW" for an order that is a referral (OMG^O19, ORM^O01).
std::string request_status(const ev::Envelope& e) {
  const std::string& type = e.source().message_type();
  if (type.starts_with("OMG") || type.starts_with("ORM") || type.starts_with("OMI")) return "ORC-1 NW";
  return "I12";
}

// A command on behalf of the hospital that sent `event` (or of the engine,
// for what it observed); its id derives from the event's, so a replayed
// event gives the same command.
ev::Envelope command_from(const ev::Envelope& event, action act, const std::string& referral_id, bool observed,
                          seconds now) {
  ev::ReferralCommand c;
  c.set_command_id("feed:" + event.event_id() + ":" + referral_id);
  c.set_action(act);
  c.set_referral_id(referral_id);
  if (observed) {
    c.set_actor("engine");
    c.set_engine(true);
  } else {
    c.set_actor(actor_of(event));
    c.set_actor_hospital(event.source().hospital());
    // A hospital's own HL7 message: whom the notifier answers if the writer
    // refuses it. Never for what the engine observed (a booking, an
    // encounter, a report): nobody asked, so nobody is answered.
    if (event.source().protocol() == ev::PROTOCOL_HL7V2_MLLP) *c.mutable_origin() = origin_of(event);
  }
  auto cmd = command_envelope(std::move(c), now, event.source().protocol());
  *cmd.mutable_subject() = event.subject();
  *cmd.mutable_trace() = event.trace();
  cmd.set_causation_id(event.event_id());
  if (!observed) cmd.mutable_source()->set_hospital(event.source().hospital());
  return cmd;
}

// The action a hospital's reported referral state asks for.
action action_for(state reported, bool from_receiver_side) {
  switch (reported) {
    case ev::REFERRAL_STATE_REQUESTED: return ev::REFERRAL_ACTION_MODIFY;
    case ev::REFERRAL_STATE_RECEIVED: return ev::REFERRAL_ACTION_RECEIVE;
    case ev::REFERRAL_STATE_ACCEPTED: return ev::REFERRAL_ACTION_ACCEPT;
    case ev::REFERRAL_STATE_REJECTED: return ev::REFERRAL_ACTION_REJECT;
    case ev::REFERRAL_STATE_SCHEDULED: return ev::REFERRAL_ACTION_SCHEDULE;
    case ev::REFERRAL_STATE_ARRIVED: return ev::REFERRAL_ACTION_ARRIVE;
    case ev::REFERRAL_STATE_COMPLETED: return ev::REFERRAL_ACTION_COMPLETE;
    case ev::REFERRAL_STATE_REPORT_RETURNED: return ev::REFERRAL_ACTION_RETURN_REPORT;
    case ev::REFERRAL_STATE_CANCELLED: return ev::REFERRAL_ACTION_CANCEL;
    case ev::REFERRAL_STATE_EXPIRED: return ev::REFERRAL_ACTION_EXPIRE;
    case ev::REFERRAL_STATE_NO_SHOW: return ev::REFERRAL_ACTION_NO_SHOW;
    case ev::REFERRAL_STATE_TERMINATED: return ev::REFERRAL_ACTION_TERMINATE;
    default: return from_receiver_side ? ev::REFERRAL_ACTION_RECEIVE : ev::REFERRAL_ACTION_UNSPECIFIED;
  }
}

// Whether the engine may take `act` on `r` now (what it observes is not a
// request: when the referral is not at that point, nothing is asked).
bool engine_may(const referral_view& r, action act) {
  return next_state(r.st, act, engine).has_value();
}

}  // namespace

result<void> feed::start() {
  auto c = bus_.subscribe(bus::consumer_options{
      .group = options_.group_prefix + "yilian-referral-feed",
      .topics = {options_.referral_topic, options_.booking_topic, options_.patient_topic, options_.report_topic},
      .start = bus::start_from::earliest});
  if (!c) return std::unexpected(c.error());
  consumer_ = std::move(*c);
  thread_ = std::thread([this] {
    name_this_thread("yl-referral-fd");
    run();
  });
  return {};
}

void feed::stop() {
  stopping_.store(true);
  if (thread_.joinable()) thread_.join();
  if (consumer_) consumer_->close();
  consumer_.reset();
}

std::vector<ev::Envelope> feed::commands_for(const ev::Envelope& e, const ledger& l) const {
  std::vector<ev::Envelope> out;
  const seconds now = svc_.now();
  const bool engine_event = e.source().protocol() == ev::PROTOCOL_ENGINE;
  switch (e.body_case()) {
    case ev::Envelope::kReferralRequested: {
      if (engine_event) break;  // the workflow's own decisions
      const auto& q = e.referral_requested();
      auto cmd = command_from(e, ev::REFERRAL_ACTION_CREATE, q.referral_id(), false, now);
      auto* c = cmd.mutable_referral_command();
      *c->mutable_request() = q;
      c->set_source_status(q.state() == ev::REFERRAL_STATE_DRAFT ? "draft" : request_status(e));
      if (l.find(q.referral_id()) != nullptr) {
        // A REF^I12 for a referral that exists: the sender resent or changed it.
        c->set_action(ev::REFERRAL_ACTION_MODIFY);
      }
      out.push_back(std::move(cmd));
      break;
    }
    case ev::Envelope::kReferralStateChanged: {
      if (engine_event) break;
      const auto& s = e.referral_state_changed();
      // A referral this view does not know yet still gets its command: the
      // hospital's earlier REF^I12 is on the same partition and its CREATE was
      // published before this event was read, so the writer decides them in
      // that order (an unknown referral is refused not_found, on the bus).
      const auto* r = l.find(s.referral_id());
      const bool receiver_side = r != nullptr && e.source().hospital() == r->to_hospital;
      const action act = action_for(s.state(), receiver_side);
      if (act == ev::REFERRAL_ACTION_UNSPECIFIED) break;
      // An RRI^I12 with MSA AA says RECEIVED; once accepted already, it is old news.
      if (act == ev::REFERRAL_ACTION_RECEIVE && r != nullptr && r->st != ev::REFERRAL_STATE_REQUESTED) break;
      auto cmd = command_from(e, act, s.referral_id(), false, now);
      auto* c = cmd.mutable_referral_command();
      *c->mutable_reason() = s.reason();
      c->set_reason_text(s.reason_text());
      c->set_source_status(s.source_status());
      *c->mutable_actor_provider() = s.actor();
      c->set_appointment_id(s.appointment_id());
      if (s.has_appointment_start()) *c->mutable_appointment_start() = s.appointment_start();
      c->set_encounter_id(s.encounter_id());
      c->set_report_id(s.report_id());
      out.push_back(std::move(cmd));
      break;
    }
    case ev::Envelope::kAppointmentChanged: {
      const auto& a = e.appointment_changed();
      if (!engine_event) {
        // The receiving hospital's own scheduling for the referral (SIU^S12/S13
        // with the referral id, SIU^S26): the receiver acting, by its system.
        const std::string& named = !a.referral_id().empty() ? a.referral_id() : e.correlation().referral_id();
        const auto* r = named.empty() ? nullptr : l.find(named);
        if (r == nullptr || e.source().hospital() != r->to_hospital) break;
        action act = ev::REFERRAL_ACTION_UNSPECIFIED;
        if (a.trigger() == "S12" || a.trigger() == "S13") act = ev::REFERRAL_ACTION_SCHEDULE;
        if (a.trigger() == "S26" || a.state() == ev::BOOKING_STATE_NO_SHOW) act = ev::REFERRAL_ACTION_NO_SHOW;
        if (act == ev::REFERRAL_ACTION_UNSPECIFIED || !next_state(r->st, act, receiver).has_value()) break;
        auto cmd = command_from(e, act, r->id, false, now);
        auto* c = cmd.mutable_referral_command();
        c->set_appointment_id(a.appointment_id());
        if (a.has_start()) *c->mutable_appointment_start() = a.start();
        c->set_source_status("SIU^" + a.trigger());
        out.push_back(std::move(cmd));
        break;
      }
      // Booking decisions (engine) for a booking that serves a referral.
      const referral_view* r = !a.referral_id().empty() ? l.find(a.referral_id()) : nullptr;
      if (r == nullptr) r = l.find_by_booking(a.appointment_id());
      if (r == nullptr) break;
      action act = ev::REFERRAL_ACTION_UNSPECIFIED;
      switch (a.action()) {
        case ev::BOOKING_ACTION_BOOK:
        case ev::BOOKING_ACTION_RESCHEDULE: act = ev::REFERRAL_ACTION_SCHEDULE; break;
        case ev::BOOKING_ACTION_CHECK_IN: act = ev::REFERRAL_ACTION_ARRIVE; break;
        case ev::BOOKING_ACTION_PERFORM: act = ev::REFERRAL_ACTION_COMPLETE; break;
        case ev::BOOKING_ACTION_NO_SHOW: act = ev::REFERRAL_ACTION_NO_SHOW; break;
        default: break;
      }
      if (act == ev::REFERRAL_ACTION_UNSPECIFIED || !engine_may(*r, act)) break;
      auto cmd = command_from(e, act, r->id, true, now);
      auto* c = cmd.mutable_referral_command();
      c->set_booking_id(a.appointment_id());
      c->set_appointment_id(a.appointment_id());
      if (a.has_start()) *c->mutable_appointment_start() = a.start();
      c->set_source_status(std::string("booking ") + ev::BookingAction_Name(a.action()));
      *cmd.mutable_subject() = r->subject;
      out.push_back(std::move(cmd));
      break;
    }
    case ev::Envelope::kEncounterEvent: {
      if (engine_event) break;
      const auto& enc = e.encounter_event();
      action act = ev::REFERRAL_ACTION_UNSPECIFIED;
      std::initializer_list<state> from{};
      static constexpr std::initializer_list<state> arrive_from{ev::REFERRAL_STATE_ACCEPTED, ev::REFERRAL_STATE_SCHEDULED};
      static constexpr std::initializer_list<state> complete_from{ev::REFERRAL_STATE_SCHEDULED, ev::REFERRAL_STATE_ARRIVED};
      if (enc.action() == ev::ENCOUNTER_ACTION_ADMITTED || enc.action() == ev::ENCOUNTER_ACTION_REGISTERED) {
        act = ev::REFERRAL_ACTION_ARRIVE;
        from = arrive_from;
      } else if (enc.action() == ev::ENCOUNTER_ACTION_DISCHARGED) {
        act = ev::REFERRAL_ACTION_COMPLETE;
        from = complete_from;
      } else {
        break;
      }
      const std::string& named = !enc.referral_id().empty() ? enc.referral_id() : e.correlation().referral_id();
      std::vector<const referral_view*> rs;
      if (!named.empty()) {
        if (const auto* r = l.find(named); r != nullptr && r->to_hospital == e.source().hospital()) rs.push_back(r);
      } else {
        rs = l.find_by_patient(e.source().hospital(), e.subject().identifiers(), from);
        if (rs.size() > 1) rs.resize(1);  // the most recent: one visit fulfils one referral
      }
      for (const auto* r : rs) {
        if (!engine_may(*r, act)) continue;
        auto cmd = command_from(e, act, r->id, true, now);
        cmd.mutable_referral_command()->set_encounter_id(enc.encounter_id());
        cmd.mutable_referral_command()->set_source_status(enc.trigger());
        out.push_back(std::move(cmd));
      }
      break;
    }
    case ev::Envelope::kReportIssued: {
      if (engine_event) break;
      const auto& rep = e.report_issued();
      if (rep.status() != ev::REPORT_STATUS_FINAL && rep.status() != ev::REPORT_STATUS_CORRECTED) break;
      const std::string& performer = e.source().hospital();
      const std::string& named = !rep.referral_id().empty() ? rep.referral_id() : e.correlation().referral_id();
      const referral_view* r = nullptr;
      if (!named.empty()) r = l.find(named);
      // The booking it reports on: by id, or by the order number yilian gave
      // the booking (its id, when the clinic had no placer number).
      for (const std::string* id : {&rep.appointment_id(), &e.correlation().appointment_id(), &rep.placer_order(),
                                    &e.correlation().placer_order()}) {
        if (r == nullptr && !id->empty()) r = l.find_by_booking(*id);
      }
      if (r == nullptr) {
        auto rs = l.find_by_patient(performer, e.subject().identifiers(),
                                    {ev::REFERRAL_STATE_SCHEDULED, ev::REFERRAL_STATE_ARRIVED,
                                     ev::REFERRAL_STATE_COMPLETED, ev::REFERRAL_STATE_REPORT_RETURNED});
        if (!rs.empty()) r = rs.front();
      }
      if (r == nullptr || r->to_hospital != performer) break;
      // A report implies the visit: complete first when the referral is not there yet.
      if (r->st == ev::REFERRAL_STATE_SCHEDULED) {
        auto done = command_from(e, ev::REFERRAL_ACTION_COMPLETE, r->id, true, now);
        done.mutable_referral_command()->set_command_id(done.referral_command().command_id() + ":complete");
        done.set_event_id("referral-command:" + done.referral_command().command_id());
        done.mutable_referral_command()->set_source_status("ORU");
        out.push_back(std::move(done));
      } else if (!engine_may(*r, ev::REFERRAL_ACTION_RETURN_REPORT)) {
        break;
      }
      auto cmd = command_from(e, ev::REFERRAL_ACTION_RETURN_REPORT, r->id, true, now);
      cmd.mutable_referral_command()->set_report_id(rep.report_id());
      cmd.mutable_referral_command()->set_source_status("OBR-25 " + rep.status_code());
      out.push_back(std::move(cmd));
      break;
    }
    default:
      break;
  }
  return out;
}

void feed::run() {
  while (!stopping_.load()) {
    auto batch = consumer_->poll(100ms, 256);
    if (!batch) {
      std::this_thread::sleep_for(200ms);
      continue;
    }
    if (batch->empty()) continue;
    bool ok = true;
    ev::Envelope e;
    for (const auto& r : *batch) {
      if (stopping_.load()) return;
      if (header_is(r, "type", "yilian.events.v1.ReferralCommand") ||
          header_is(r, "type", "yilian.events.v1.BookingCommand")) {
        continue;
      }
      // Of the workflows' own records only the booking decisions matter here.
      if (r.topic != options_.booking_topic && header_is(r, "origin", "engine")) continue;
      if (r.topic == options_.booking_topic && header_is(r, "origin", "engine")) {
        if (!header_is(r, "type", "yilian.events.v1.AppointmentChanged") || !serves_referral(r.value)) continue;
      }
      if (!acted_on(peek_type(r.value))) continue;
      if (!e.ParseFromString(r.value)) continue;
      if (auto handled = handle(e); !handled) {
        lg.warn("referral feed could not handle an event; it will be seen again",
                {log::field("event_id", e.event_id()), log::field("error", handled.error().describe())});
        ok = false;
        break;
      }
    }
    if (!ok) {
      std::this_thread::sleep_for(1s);
      continue;  // uncommitted: redelivered after a restart; commands are idempotent by id
    }
    (void)consumer_->commit(*batch);
  }
}

bool feed::serves_referral(std::string_view decision) const {
  const auto body = peek_body(decision, ev::Envelope::kAppointmentChangedFieldNumber);
  if (!body) return true;  // not what the header said: parsed, and commands_for() decides
  static constexpr std::uint32_t kFields[] = {ev::AppointmentChanged::kReferralIdFieldNumber,
                                              ev::AppointmentChanged::kAppointmentIdFieldNumber};
  peeked_field f[2];
  if (!peek_fields(*body, kFields, f)) return true;
  return svc_.read([&](const ledger& l) {
    return (!f[0].bytes.empty() && l.find(f[0].bytes) != nullptr) || l.find_by_booking(f[1].bytes) != nullptr;
  });
}

// The bodies commands_for() acts on. Everything else on these topics,
// registrations and updates above all (most of the traffic), is skipped
// without being decoded.
bool feed::acted_on(std::string_view type) {
  static const std::string* const kActedOn[] = {
      &type_of<ev::ReferralRequested>(), &type_of<ev::ReferralStateChanged>(), &type_of<ev::AppointmentChanged>(),
      &type_of<ev::EncounterEvent>(), &type_of<ev::ReportIssued>()};
  for (const auto* t : kActedOn) {
    if (*t == type) return true;
  }
  return false;
}

result<void> feed::handle(const ev::Envelope& e) {
  // A hospital's answer may come moments after the request it answers, before
  // this instance's view has the referral: give the view a moment, so the
  // command is built knowing the referral (see commands_for for why it is
  // sent even when the view never catches up).
  const std::string& named = e.has_referral_state_changed() ? e.referral_state_changed().referral_id() : std::string();
  for (int attempt = 0; attempt < 40 && !named.empty() && !stopping_.load(); ++attempt) {
    if (svc_.read([&](const ledger& l) { return l.find(named) != nullptr; })) break;
    std::this_thread::sleep_for(50ms);
  }
  const auto cmds = svc_.read([&](const ledger& l) { return commands_for(e, l); });
  for (const auto& cmd : cmds) {
    std::promise<result<void>> p;
    auto f = p.get_future();
    svc_.send(cmd, [&p](result<void> r) { p.set_value(std::move(r)); });
    if (auto r = f.get(); !r) return r;
    commands_.fetch_add(1);
  }
  return {};
}

}  // namespace yilian::workflows::referral
