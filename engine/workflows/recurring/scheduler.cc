#include "engine/workflows/recurring/scheduler.h"

#include <algorithm>
#include <future>
#include <limits>

#include "engine/core/ids.h"
#include "engine/core/log.h"
#include "engine/core/murmur2.h"
#include "engine/workflows/booking/slot_finder.h"
#include "engine/core/thread.h"

namespace yilian::workflows::recurring {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

const auto lg = log::get("careplan");

google::protobuf::Timestamp timestamp(seconds t) {
  google::protobuf::Timestamp ts;
  ts.set_seconds(t.time_since_epoch().count());
  return ts;
}

}  // namespace

scheduler::scheduler(bus::bus& b, booking::service& bookings, scheduler_options options, metrics::registry* registry)
    : bus_(b), bookings_(bookings), options_(std::move(options)), plans_(options_.zone) {
  if (registry != nullptr) {
    auto& family = registry->add_counter("yilian_careplan_occurrences_total",
                                         "Care-plan periods this instance fired, by outcome (booked, or failed: "
                                         "no slot, missed, refused); the clinic is told of each.",
                                         {"outcome"});
    booked_total_ = &family.with({"booked"});
    failed_total_ = &family.with({"failed"});
  }
}

scheduler::~scheduler() { stop(); }

result<void> scheduler::start() {
  auto parts = bus_.partitions(options_.topic);
  if (!parts) return std::unexpected(parts.error());
  partitions_ = *parts;
  // The view reads everything from the start, as a group of its own.
  auto view = bus_.subscribe(bus::consumer_options{.group = options_.group_prefix + "yilian-careplan-view-" + random_id(),
                                                   .topics = {options_.topic},
                                                   .start = bus::start_from::earliest});
  if (!view) return std::unexpected(view.error());
  view_ = std::move(*view);
  // The writer's group only decides who owns which plans.
  auto writer = bus_.subscribe(bus::consumer_options{.group = options_.group_prefix + "yilian-careplan",
                                                     .topics = {options_.topic},
                                                     .start = bus::start_from::earliest});
  if (!writer) return std::unexpected(writer.error());
  writer_ = std::move(*writer);
  thread_ = std::thread([this] {
    name_this_thread("yl-recurring");
    run();
  });
  lg.info("care-plan scheduler started", {log::field("topic", options_.topic), log::field("partitions", partitions_)});
  return {};
}

void scheduler::stop() {
  stopping_.store(true);
  if (thread_.joinable()) thread_.join();
  if (writer_) writer_->close();
  if (view_) view_->close();
  writer_.reset();
  view_.reset();
}

void scheduler::note(const ev::Envelope& e) {
  std::unique_lock lock(mu_);
  plans_.apply(e);
}

std::uint64_t scheduler::poke() { return passes_requested_.fetch_add(1) + 1; }

void scheduler::run() {
  steady::time_point retry_at{};
  while (!stopping_.load()) {
    pump(10ms);
    const auto now = steady::now();
    const std::uint64_t requested = passes_requested_.load();
    if ((requested <= passes_done_.load() && now < next_pass_) || now < retry_at) continue;
    if (!caught_up_.load() || !bookings_.caught_up()) {
      retry_at = now + 20ms;
      continue;
    }
    if (pass()) {
      if (requested > passes_done_.load()) passes_done_.store(requested);
      next_pass_ = now + options_.tick;
    } else {
      // Something could not be fired (the bus, a decision that did not come,
      // a partition behind its gate): look again soon, not at once.
      retry_at = now + std::min<std::chrono::milliseconds>(options_.tick, 1s);
    }
  }
}

void scheduler::pump(std::chrono::milliseconds view_timeout) {
  poll_view(view_timeout);
  if (steady::now() >= next_assignment_check_) {
    check_assignment();
    next_assignment_check_ = steady::now() + 200ms;
  }
  poll_writer();
}

void scheduler::poll_view(std::chrono::milliseconds timeout) {
  auto batch = view_->poll(timeout, 1024);
  if (!batch) {
    lg.warn("care-plan view cannot read the bus", {log::field("error", batch.error().describe())});
    std::this_thread::sleep_for(200ms);
    return;
  }
  if (!batch->empty()) {
    std::unique_lock lock(mu_);
    ev::Envelope e;
    for (const auto& r : *batch) {
      view_next_[r.partition] = r.offset + 1;
      if (!e.ParseFromString(r.value)) continue;  // not an envelope: not the view's business
      plans_.apply(e);
    }
  }
  if (!caught_up_.load()) note_progress();
}

void scheduler::note_progress() {
  // Caught up once the view has read as far as the topic went when it joined
  // (its group has one member, which gets every partition).
  if (start_end_.empty()) {
    if (static_cast<std::int32_t>(view_->assignment().size()) < partitions_) return;
    auto l = view_->lag();
    if (!l) return;
    for (const auto& p : *l) start_end_[p.partition] = p.end;
  }
  bool done = true;
  for (const auto& [p, end] : start_end_) {
    const auto it = view_next_.find(p);
    done = done && (end == 0 || (it != view_next_.end() && it->second >= end));
  }
  if (done) {
    caught_up_.store(true);
    lg.info("care-plan view caught up", {log::field("plans", read([](const plan_book& b) { return b.size(); }))});
  }
}

void scheduler::poll_writer() {
  auto batch = writer_->poll(0ms, 1024);
  if (!batch) {
    lg.warn("care-plan writer cannot read the bus", {log::field("error", batch.error().describe())});
    return;
  }
  if (batch->empty()) return;
  // Records of a partition gained since the last look: set its gate first.
  if (std::any_of(batch->begin(), batch->end(), [&](const bus::record& r) {
        return std::none_of(assignment_.begin(), assignment_.end(),
                            [&](const auto& tp) { return tp.second == r.partition; });
      })) {
    check_assignment();
  }
  // The writer reads only to hold its partitions; the view does the folding.
  if (auto committed = writer_->commit(*batch); !committed) {
    lg.debug("care-plan writer commit failed", {log::field("error", committed.error().describe())});
  }
}

void scheduler::check_assignment() {
  auto now_assigned = writer_->assignment();
  std::sort(now_assigned.begin(), now_assigned.end());
  if (now_assigned == assignment_) return;
  std::vector<std::int32_t> gained;
  for (const auto& tp : now_assigned) {
    if (!std::binary_search(assignment_.begin(), assignment_.end(), tp)) gained.push_back(tp.second);
  }
  for (const auto& tp : assignment_) {
    if (!std::binary_search(now_assigned.begin(), now_assigned.end(), tp)) gate_.erase(tp.second);
  }
  assignment_ = std::move(now_assigned);
  // Fire nothing on a gained partition before the view has read it to its
  // current end: the previous owner's last occurrences may be there.
  if (!gained.empty()) {
    if (auto l = writer_->lag()) {
      for (const auto& p : *l) {
        if (std::find(gained.begin(), gained.end(), p.partition) != gained.end()) gate_[p.partition] = p.end;
      }
    } else {
      // No ends known: hold the gained partitions until the next look.
      for (const auto p : gained) gate_[p] = std::numeric_limits<std::int64_t>::max();
      assignment_.clear();
    }
  }
  owned_.store(assignment_.size());
  lg.info("care-plan writer assignment", {log::field("partitions", assignment_.size())});
}

bool scheduler::open(std::int32_t partition) {
  if (std::none_of(assignment_.begin(), assignment_.end(), [&](const auto& tp) { return tp.second == partition; })) {
    return false;
  }
  const auto g = gate_.find(partition);
  if (g == gate_.end()) return true;
  const auto it = view_next_.find(partition);
  const std::int64_t next = it == view_next_.end() ? 0 : it->second;
  if (next < g->second) return false;
  gate_.erase(g);
  return true;
}

bool scheduler::pass() {
  bool complete = true;
  for (const auto& tp : assignment_) complete = open(tp.second) && complete;
  const seconds now = options_.now();
  std::vector<due_item> due;
  {
    std::shared_lock lock(mu_);
    for (const auto* plan : plans_.of_clinic("")) {
      if (plan->status != ev::CARE_PLAN_STATUS_ACTIVE) continue;
      if (!open(partition_for_key(plan->id, partitions_))) continue;
      for (const auto& p : due_periods(plan->schedule, now, plans_.zone(), plan->fired_prefix)) {
        if (!plan->fired(p.number)) due.push_back(due_item{plan->id, p});
      }
    }
  }
  // Oldest periods first, whichever plan they belong to.
  std::stable_sort(due.begin(), due.end(), [](const due_item& a, const due_item& b) { return a.p.start < b.p.start; });
  for (const auto& d : due) {
    if (stopping_.load()) return false;
    pump(0ms);
    if (!open(partition_for_key(d.plan_id, partitions_))) {
      complete = false;  // moved away meanwhile: its new owner fires it
      continue;
    }
    auto plan = read([&](const plan_book& b) -> std::optional<care_plan> {
      const auto* p = b.find(d.plan_id);
      if (p == nullptr || p->status != ev::CARE_PLAN_STATUS_ACTIVE || p->fired(d.p.number)) return std::nullopt;
      return *p;
    });
    if (!plan) continue;  // cancelled or fired meanwhile
    if (!fire(*plan, d.p, now)) complete = false;
  }
  return complete;
}

result<booking::decision> scheduler::decide(const ev::Envelope& command) {
  const std::string& id = command.booking_command().command_id();
  // Decided in an earlier run: its answer, without a second command record.
  const bool known = bookings_.read([&](const booking::ledger& l) { return l.decided(id).has_value(); });
  if (!known) {
    auto sent = std::make_shared<std::promise<result<void>>>();
    auto durable = sent->get_future();
    bookings_.send(command, [sent](result<void> r) { sent->set_value(std::move(r)); });
    // The bus answers within its publish timeout.
    if (auto r = durable.get(); !r) return std::unexpected(r.error());
  }
  auto answer = std::make_shared<std::promise<booking::decision>>();
  auto f = answer->get_future();
  const auto token = bookings_.wait(id, [answer](booking::decision d) { answer->set_value(std::move(d)); });
  const auto deadline = steady::now() + options_.decision_timeout;
  while (f.wait_for(50ms) != std::future_status::ready) {
    if (!stopping_.load() && steady::now() < deadline) continue;
    if (bookings_.forget(token)) {
      if (stopping_.load()) return fail(errc::cancelled, "the scheduler is stopping", id);
      return fail(errc::timeout, "no booking decision within the decision timeout", id);
    }
    f.wait();  // forget() found it answered: the answer is on its way
    break;
  }
  auto d = f.get();
  // The booking service stopping is no answer about the slot.
  if (d.refused && d.refused->kind == errc::cancelled) return fail(errc::cancelled, d.refused->message, id);
  return d;
}

result<void> scheduler::publish_durably(bus::message m) {
  auto p = std::make_shared<std::promise<result<bus::position>>>();
  auto f = p->get_future();
  bus_.publish(std::move(m), [p](result<bus::position> r) { p->set_value(std::move(r)); });
  auto r = f.get();  // the bus answers within its publish timeout
  if (!r) return std::unexpected(r.error());
  return {};
}

bool scheduler::fire(const care_plan& plan, const period& p, seconds now) {
  const std::string booking_id = booking_id_for(plan.id, p.number);
  ev::CarePlanOccurrence occ;
  occ.set_care_plan_id(plan.id);
  occ.set_period(p.number);
  *occ.mutable_period_start() = timestamp(p.start);
  occ.set_booking_id(booking_id);
  occ.set_command_id(command_id_for(plan.id, p.number, 0));
  occ.set_clinic_hospital(plan.clinic);

  // 1. Booked before a crash: that booking is the period's.
  struct earlier {
    std::string equipment_id;
    seconds start{};
    std::string command_id;
  };
  const auto made = bookings_.read([&](const booking::ledger& l) -> std::optional<earlier> {
    const auto* b = l.find(booking_id);
    if (b == nullptr) return std::nullopt;
    earlier out{.equipment_id = b->equipment_id, .start = b->has_slot() ? b->slot.start : seconds{}};
    for (std::size_t n = 0; n <= options_.max_slot_attempts; ++n) {
      const auto id = command_id_for(plan.id, p.number, n);
      if (const auto o = l.decided(id); o && !o->refused && o->booking_id == booking_id) {
        out.command_id = id;
        break;
      }
    }
    return out;
  });
  if (made) {
    occ.set_equipment_id(made->equipment_id);
    if (made->start != seconds{}) *occ.mutable_start() = timestamp(made->start);
    if (!made->command_id.empty()) occ.set_command_id(made->command_id);
  } else if (p.end <= now) {
    // The whole period passed before anyone could fire it (the engine was down).
    occ.set_failure("missed");
  } else {
    // 2. The earliest fitting slot: the preferred hospital, else the tier, else anywhere.
    const booking::slot_query any{.exam_code = plan.exam_code,
                                  .requesting_hospital = plan.clinic,
                                  .from = std::max(p.start, now),
                                  .to = p.end,
                                  .limit = options_.max_slot_attempts};
    std::vector<booking::slot_query> queries;
    if (!plan.preferred_hospital.empty()) {
      auto q = any;
      q.hospital = plan.preferred_hospital;
      queries.push_back(q);
    }
    if (plan.preferred_tier != config::v1::TIER_UNSPECIFIED) {
      auto q = any;
      q.tier = plan.preferred_tier;
      queries.push_back(q);
    }
    queries.push_back(any);
    auto tried = booking::book_earliest(
        bookings_, queries, now,
        [&](const booking::free_slot& s, std::size_t attempt) {
          const std::string command_id = command_id_for(plan.id, p.number, attempt);
          ev::Envelope cmd;
          cmd.set_event_id("booking-command:" + command_id);
          cmd.set_type("yilian.events.v1.BookingCommand");
          cmd.set_schema_version(1);
          *cmd.mutable_occurred_at() = timestamp(now);
          *cmd.mutable_recorded_at() = timestamp(now);
          // On behalf of the clinic, as the principal who made the plan: not
          // PROTOCOL_ENGINE, whose records the booking writer reads as
          // decisions (origin: engine) and never decides.
          auto* src = cmd.mutable_source();
          src->set_hospital(plan.clinic);
          src->set_system(options_.engine_system);
          src->set_protocol(ev::PROTOCOL_API);
          src->set_principal(plan.created_by);
          src->set_control_id(command_id);
          *cmd.mutable_subject() = plan.subject;
          auto* c = cmd.mutable_booking_command();
          c->set_command_id(command_id);
          c->set_action(ev::BOOKING_ACTION_BOOK);
          c->set_booking_id(booking_id);
          c->set_equipment_id(s.equipment_id);
          *c->mutable_start() = timestamp(s.when.start);
          c->set_exam_code(plan.exam_code);
          c->set_requesting_hospital(plan.clinic);
          c->set_actor("careplan:" + plan.id);
          c->set_actor_hospital(plan.clinic);
          *c->mutable_patient() = plan.patient;
          return cmd;
        },
        [this](const ev::Envelope& cmd) { return decide(cmd); });
    if (!tried) {
      lg.warn("care-plan period not booked now; it is tried again",
              {log::field("care_plan_id", plan.id), log::field("period", p.number),
               log::field("error", tried.error().describe())});
      return false;
    }
    if (tried->booked) {
      occ.set_command_id(tried->booked->command_id);
      occ.set_equipment_id(tried->slot->equipment_id);
      *occ.mutable_start() = timestamp(tried->slot->when.start);
    } else {
      occ.set_failure(!tried->found || !tried->refused ? "no_slot" : tried->refused->code);
    }
  }
  if (!occ.failure().empty()) occ.clear_booking_id();  // nothing was booked

  // 3. Tell the clinic, then mark the period fired.
  if (options_.before_occurrence && !options_.before_occurrence(occ)) return false;
  ev::Envelope e;
  e.set_event_id(occurrence_event_id(plan.id, p.number));
  e.set_type("yilian.events.v1.CarePlanOccurrence");
  e.set_schema_version(1);
  *e.mutable_occurred_at() = timestamp(now);
  *e.mutable_recorded_at() = timestamp(now);
  auto* src = e.mutable_source();
  src->set_hospital(plan.clinic);
  src->set_system(options_.engine_system);
  src->set_protocol(ev::PROTOCOL_ENGINE);
  *e.mutable_subject() = plan.subject;
  if (occ.failure().empty()) {
    e.mutable_correlation()->set_appointment_id(booking_id);
    e.set_causation_id("booking-decision:" + occ.command_id());
  }
  *e.mutable_care_plan_occurrence() = occ;
  const std::string value = e.SerializeAsString();
  for (const auto& [topic, key] : {std::pair{options_.outbound_topic, plan.clinic}, std::pair{options_.topic, plan.id}}) {
    auto published = publish_durably(bus::message{.topic = topic, .key = key, .value = value,
                                                  .headers = booking::record_headers(e)});
    if (!published) {
      lg.warn("care-plan occurrence not published; the period is fired again",
              {log::field("care_plan_id", plan.id), log::field("period", p.number), log::field("topic", topic),
               log::field("error", published.error().describe())});
      return false;
    }
  }
  note(e);
  fired_.fetch_add(1);
  if (auto* c = occ.failure().empty() ? booked_total_ : failed_total_; c != nullptr) c->inc();
  lg.info("care-plan period fired", {log::field("care_plan_id", plan.id), log::field("period", p.number),
                                     log::field("booking_id", occ.booking_id()),
                                     log::field("equipment_id", occ.equipment_id()),
                                     log::field("failure", occ.failure())});
  return true;
}

}  // namespace yilian::workflows::recurring
