#include "engine/workflows/booking/feed.h"

#include <future>

#include "engine/core/ids.h"
#include "engine/core/log.h"
#include "engine/workflows/booking/slot_finder.h"
#include "engine/core/thread.h"
#include "engine/workflows/common/envelope_peek.h"

namespace yilian::workflows::booking {

using namespace std::chrono_literals;

namespace {

const auto lg = log::get("booking");

std::string actor_of(const ev::Envelope& e) {
  switch (e.source().protocol()) {
    case ev::PROTOCOL_HL7V2_MLLP: return "hl7:" + e.source().hospital();
    case ev::PROTOCOL_FHIR_R4: return e.source().principal().empty() ? "fhir:" + e.source().hospital() : e.source().principal();
    case ev::PROTOCOL_FILE_DROP: return "file:" + e.source().hospital();
    default: return e.source().principal().empty() ? "api:" + e.source().hospital() : e.source().principal();
  }
}

// A command on behalf of the hospital that sent `event`; its id derives from
// the event's, so a replayed event gives the same command.
ev::Envelope command_from(const ev::Envelope& event, ev::BookingAction action, const std::string& booking_id,
                          const std::string& equipment_id, std::string_view suffix, seconds now) {
  const std::string command_id = "feed:" + event.event_id() + std::string(suffix);
  ev::Envelope cmd;
  cmd.set_event_id("booking-command:" + command_id);
  cmd.set_type("yilian.events.v1.BookingCommand");
  cmd.set_schema_version(1);
  *cmd.mutable_occurred_at() = to_timestamp(now);
  *cmd.mutable_recorded_at() = to_timestamp(now);
  *cmd.mutable_source() = event.source();
  *cmd.mutable_subject() = event.subject();
  *cmd.mutable_trace() = event.trace();
  cmd.set_causation_id(event.event_id());
  auto* c = cmd.mutable_booking_command();
  c->set_command_id(command_id);
  c->set_action(action);
  c->set_booking_id(booking_id);
  c->set_equipment_id(equipment_id);
  c->set_actor(actor_of(event));
  c->set_actor_hospital(event.source().hospital());
  return cmd;
}

ev::Envelope make_command(const ev::Envelope& event, ev::BookingAction action, const booking_view& b,
                          std::string_view suffix, seconds now) {
  return command_from(event, action, b.id, b.equipment_id, suffix, now);
}

// Check-in first when the booking has not been checked in yet.
void arrive_then(std::vector<ev::Envelope>& out, const ev::Envelope& event, const booking_view& b,
                 std::optional<ev::BookingAction> then, seconds now) {
  if (b.st == ev::BOOKING_STATE_BOOKED) out.push_back(make_command(event, ev::BOOKING_ACTION_CHECK_IN, b, "", now));
  if (then && (b.st == ev::BOOKING_STATE_BOOKED || b.st == ev::BOOKING_STATE_CHECKED_IN)) {
    out.push_back(make_command(event, *then, b, ":2", now));
  }
}

}  // namespace

result<void> feed::start() {
  auto c = bus_.subscribe(bus::consumer_options{
      .group = options_.group_prefix + "yilian-booking-feed",
      .topics = {options_.booking_topic, options_.patient_topic, options_.report_topic},
      .start = bus::start_from::earliest});
  if (!c) return std::unexpected(c.error());
  consumer_ = std::move(*c);
  thread_ = std::thread([this] {
    name_this_thread("yl-booking-feed");
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
  const std::string& from = e.source().hospital();
  if (e.source().protocol() == ev::PROTOCOL_ENGINE || from.empty()) return out;
  switch (e.body_case()) {
    case ev::Envelope::kAppointmentChanged: {
      const auto& a = e.appointment_changed();
      const booking_view* b = l.find(!a.appointment_id().empty() ? a.appointment_id() : e.correlation().appointment_id());
      if (b == nullptr) b = l.find(a.filler_appointment_id());
      if (b == nullptr) return out;
      switch (a.state()) {
        case ev::BOOKING_STATE_CHECKED_IN: arrive_then(out, e, *b, std::nullopt, now); break;
        case ev::BOOKING_STATE_PERFORMED: arrive_then(out, e, *b, ev::BOOKING_ACTION_PERFORM, now); break;
        case ev::BOOKING_STATE_CANCELLED:
          if (!is_final(b->st)) out.push_back(make_command(e, ev::BOOKING_ACTION_CANCEL, *b, "", now));
          break;
        case ev::BOOKING_STATE_NO_SHOW:
          if (b->st == ev::BOOKING_STATE_BOOKED) out.push_back(make_command(e, ev::BOOKING_ACTION_NO_SHOW, *b, "", now));
          break;
        case ev::BOOKING_STATE_BOOKED:
          if (b->st == ev::BOOKING_STATE_BOOKED && a.has_start() && to_seconds(a.start()) != b->slot.start) {
            auto cmd = make_command(e, ev::BOOKING_ACTION_RESCHEDULE, *b, "", now);
            *cmd.mutable_booking_command()->mutable_start() = a.start();
            out.push_back(std::move(cmd));
          }
          break;
        default: break;
      }
      break;
    }
    case ev::Envelope::kEncounterEvent: {
      const auto& enc = e.encounter_event();
      if (enc.action() != ev::ENCOUNTER_ACTION_REGISTERED && enc.action() != ev::ENCOUNTER_ACTION_ADMITTED) break;
      const booking_view* b = nullptr;
      if (!enc.appointment_id().empty()) b = l.find(enc.appointment_id());
      if (b == nullptr) {
        // The patient's booked exam at this hospital around now: the nearest one.
        for (const auto* cand : l.find_by_patient(from, e.subject().identifiers(), interval{now - 18h, now + 18h})) {
          if (cand->st != ev::BOOKING_STATE_BOOKED) continue;
          const auto dist = [&](const booking_view* x) { return x->slot.start > now ? x->slot.start - now : now - x->slot.start; };
          if (b == nullptr || dist(cand) < dist(b)) b = cand;
        }
      }
      if (b != nullptr && b->owner == from && b->st == ev::BOOKING_STATE_BOOKED) arrive_then(out, e, *b, std::nullopt, now);
      break;
    }
    case ev::Envelope::kOrderStatusChanged: {
      const auto& s = e.order_status_changed();
      const booking_view* b = l.find_by_order(s.placer_order(), from);
      if (b == nullptr) b = l.find_by_order(s.filler_order(), from);
      if (b == nullptr) b = l.find_by_order(e.correlation().placer_order(), from);
      if (b == nullptr) return out;
      switch (s.status()) {
        case ev::ORDER_STATUS_IN_PROGRESS: arrive_then(out, e, *b, std::nullopt, now); break;
        case ev::ORDER_STATUS_COMPLETED:
        case ev::ORDER_STATUS_SOME_RESULTS: arrive_then(out, e, *b, ev::BOOKING_ACTION_PERFORM, now); break;
        case ev::ORDER_STATUS_CANCELED:
        case ev::ORDER_STATUS_DISCONTINUED:
          if (!is_final(b->st) && b->st != ev::BOOKING_STATE_PERFORMED && b->st != ev::BOOKING_STATE_REPORTED &&
              b->st != ev::BOOKING_STATE_CORRECTED) {
            out.push_back(make_command(e, ev::BOOKING_ACTION_CANCEL, *b, "", now));
          }
          break;
        default: break;
      }
      break;
    }
    case ev::Envelope::kReportIssued: {
      const auto& r = e.report_issued();
      const booking_view* b = l.find_by_order(e.correlation().placer_order(), from);
      if (b == nullptr) b = l.find_by_order(e.correlation().filler_order(), from);
      if (b == nullptr) b = l.find_by_order(e.correlation().appointment_id(), from);
      if (b == nullptr) return out;
      if (r.status() == ev::REPORT_STATUS_FINAL && b->st == ev::BOOKING_STATE_PERFORMED) {
        out.push_back(make_command(e, ev::BOOKING_ACTION_REPORT, *b, "", now));
      } else if (r.status() == ev::REPORT_STATUS_CORRECTED &&
                 (b->st == ev::BOOKING_STATE_REPORTED || b->st == ev::BOOKING_STATE_CORRECTED)) {
        out.push_back(make_command(e, ev::BOOKING_ACTION_CORRECT, *b, "", now));
      }
      break;
    }
    default: break;
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
      // The workflow's own records (commands, decisions) are not hospital reports.
      if (header_is(r, "origin", "engine") || header_is(r, "type", "yilian.events.v1.BookingCommand")) continue;
      if (!acted_on(peek_type(r.value))) continue;
      if (!e.ParseFromString(r.value)) continue;
      if (auto handled = handle(e); !handled) {
        lg.warn("booking feed could not handle an event; it will be seen again",
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

// The bodies handle() acts on (book_order, commands_for). Everything else on
// these topics, registrations and updates above all (most of the traffic), is
// skipped without being decoded.
bool feed::acted_on(std::string_view type) {
  static const std::string* const kActedOn[] = {&type_of<ev::OrderPlaced>(), &type_of<ev::AppointmentChanged>(),
                                                &type_of<ev::EncounterEvent>(), &type_of<ev::OrderStatusChanged>(),
                                                &type_of<ev::ReportIssued>()};
  for (const auto* t : kActedOn) {
    if (*t == type) return true;
  }
  return false;
}

result<void> feed::handle(const ev::Envelope& e) {
  if (e.has_order_placed()) return book_order(e);
  std::vector<ev::Envelope> cmds;
  // The view may not have applied the booking an event names yet (the owner
  // was notified moments ago): give it a moment when the id looks like ours.
  for (int attempt = 0; attempt < 40 && !stopping_.load(); ++attempt) {
    cmds = svc_.read([&](const ledger& l) { return commands_for(e, l); });
    if (!cmds.empty()) break;
    // Only wait for ids that look like ours and that the view does not know yet.
    const std::string& ref = e.has_appointment_changed() ? e.appointment_changed().appointment_id()
                             : e.has_order_status_changed() ? e.order_status_changed().placer_order()
                                                            : e.correlation().placer_order();
    const bool ours = ref.starts_with("bk-");
    const bool known = svc_.read([&](const ledger& l) { return l.find(ref) != nullptr; });
    if (!ours || known) break;
    std::this_thread::sleep_for(50ms);
  }
  for (const auto& cmd : cmds) {
    if (auto sent = send_and_wait(cmd); !sent) return sent;
  }
  return {};
}

result<void> feed::send_and_wait(const ev::Envelope& command) {
  std::promise<result<void>> p;
  auto f = p.get_future();
  svc_.send(command, [&p](result<void> r) { p.set_value(std::move(r)); });
  auto r = f.get();
  if (r) commands_.fetch_add(1);
  return r;
}

result<decision> feed::decide(const ev::Envelope& command) {
  if (auto sent = send_and_wait(command); !sent) return std::unexpected(sent.error());
  auto p = std::make_shared<std::promise<decision>>();
  auto f = p->get_future();
  const auto token = svc_.wait(command.booking_command().command_id(), [p](decision d) { p->set_value(std::move(d)); });
  if (f.wait_for(30s) != std::future_status::ready) {
    if (svc_.forget(token)) return fail(errc::timeout, "no booking decision within 30 s");
  }
  return f.get();
}

result<void> feed::book_order(const ev::Envelope& e) {
  const auto& o = e.order_placed();
  if (o.control() != ev::ORDER_CONTROL_NEW && o.control() != ev::ORDER_CONTROL_UNSPECIFIED) return {};
  const std::string exam = !o.catalogue_code().code().empty() ? o.catalogue_code().code() : o.service().code();
  const std::string& requesting = e.source().hospital();
  if (exam.empty() || requesting.empty() || e.source().protocol() == ev::PROTOCOL_ENGINE) return {};
  const std::string order = !o.placer_order().empty() ? o.placer_order() : e.correlation().placer_order();
  const std::string booking_id = stable_id("bk-", "order\n" + requesting + "\n" + (order.empty() ? e.event_id() : order));
  const seconds now = svc_.now();
  const bool skip = svc_.read([&](const ledger& l) {
    if (l.find(booking_id) != nullptr) return true;  // booked already (a redelivered order)
    // The owner's own orders for its own machine are its RIS's business.
    const auto* cal = l.equipment(o.equipment_id());
    return cal != nullptr && cal->hospital() == requesting;
  });
  if (skip) return {};
  slot_query q{.exam_code = exam, .equipment_id = o.equipment_id(), .requesting_hospital = requesting,
               .from = now, .to = now + options_.search_days, .limit = options_.max_slot_attempts};
  if (o.has_requested_for() && !o.equipment_id().empty()) {
    // The asked-for time first, then the earliest from then on.
    q.from = std::max(now, to_seconds(o.requested_for()));
  }
  std::vector<slot_query> queries{q};
  if (!o.equipment_id().empty()) {
    q.equipment_id.clear();  // the named machine is full: any machine that does the exam
    queries.push_back(q);
  }
  auto tried = book_earliest(
      svc_, queries, now,
      [&](const free_slot& s, std::size_t attempt) {
        auto cmd = command_from(e, ev::BOOKING_ACTION_BOOK, booking_id, s.equipment_id, ":book:" + std::to_string(attempt),
                                now);
        auto* c = cmd.mutable_booking_command();
        *c->mutable_start() = to_timestamp(s.when.start);
        c->set_exam_code(exam);
        c->set_requesting_hospital(requesting);
        c->set_placer_order(order);
        c->set_referral_id(o.referral_id());
        return cmd;
      },
      [this](const ev::Envelope& cmd) { return decide(cmd); });
  if (!tried) return std::unexpected(tried.error());
  if (!tried->found) {
    lg.warn("no free slot for an order", {log::field("event_id", e.event_id()), log::field("exam", exam),
                                          log::field("hospital", requesting)});
    return {};
  }
  if (tried->booked) {
    lg.info("order booked", {log::field("event_id", e.event_id()), log::field("booking_id", booking_id),
                             log::field("equipment_id", tried->slot->equipment_id)});
    return {};
  }
  if (tried->refused && !worth_next_slot(*tried->refused)) {
    lg.warn("order not booked", {log::field("event_id", e.event_id()), log::field("code", tried->refused->code)});
    return {};
  }
  lg.warn("order not booked: every slot tried was taken", {log::field("event_id", e.event_id())});
  return {};
}

}  // namespace yilian::workflows::booking
