#include "engine/workflows/common/single_writer.h"

#include <algorithm>
#include <deque>

#include "engine/core/ids.h"
#include "engine/core/log.h"
#include "engine/core/murmur2.h"
#include "engine/core/thread.h"

namespace yilian::workflows {

using namespace std::chrono_literals;

struct single_writer::partition_work {
  std::deque<bus::record> queued;  // writer records not yet decided, in offset order
  // Commands without a bus record: the engine's own (timers) and direct API
  // commands (`direct` true: published for the new owner if the partition
  // moves away before they are decided).
  struct unrecorded {
    ev::Envelope command;
    bool direct = false;
  };
  std::deque<unrecorded> engine;
  // Direct commands of the batch in flight: decided again if it fails, and
  // published for the new owner if the partition moves away before it settles.
  std::vector<unrecorded> taken;
  bool in_flight = false;
  std::size_t pending = 0;          // decisions of the batch not yet durable
  bool failed = false;
  std::int64_t last_decision = -1;  // highest offset of the batch's decisions
  std::vector<bus::record> batch;   // writer records of the batch (committed when it settles)
  // The batch's decisions by event id: the view applies these when it reads
  // their records instead of parsing the bytes it was just given back.
  std::unordered_map<std::string, ev::Envelope> published;
  // A fold that keeps changes (fold::keeps_changes): the decisions already
  // applied, in the order they were published, until the view reads each
  // back as the partition's next record (it is then durable, and its step is
  // what the view's apply would have done).
  struct kept_decision {
    ev::Envelope decision;
    step s;
    std::unique_ptr<kept_change> change;
  };
  std::deque<kept_decision> kept;
};

namespace {
const auto writer_lg = log::get("workflow");
}

std::vector<bus::header> record_headers(const ev::Envelope& e) {
  std::vector<bus::header> h{{"event_id", e.event_id()}, {"type", e.type()}};
  // Decisions only: a command the engine sends itself (a timer, a feed acting
  // on what it observed) is still a command for the writer.
  if (e.source().protocol() == ev::PROTOCOL_ENGINE && !e.type().ends_with("Command")) h.push_back({"origin", "engine"});
  return h;
}

bool header_is(const bus::record& r, std::string_view key, std::string_view value) {
  return header_of(r, key) == std::optional<std::string_view>(value);
}

std::optional<std::string_view> header_of(const bus::record& r, std::string_view key) {
  for (const auto& h : r.headers) {
    if (h.key == key) return std::string_view(h.value);
  }
  return std::nullopt;
}

single_writer::single_writer(bus::bus& b, fold& f, single_writer_options options, metrics::registry* registry)
    : bus_(b), fold_(f), options_(std::move(options)) {
  if (registry != nullptr) {
    const std::string& n = options_.name;
    decided_total_ = &registry->add_counter("yilian_" + n + "_decisions_total",
                                            "Commands of the " + n + " workflow this instance decided (accepted).")
                          .with({});
    rejected_total_ = &registry->add_counter("yilian_" + n + "_rejections_total",
                                             "Commands of the " + n + " workflow this instance refused (wrong transition, not allowed, taken, ...).")
                           .with({});
    voided_total_ = &registry->add_counter("yilian_" + n + "_void_decisions_total",
                                           "Decisions of the " + n + " workflow found stale when applied in log order (another writer won).")
                         .with({});
    taken_back_total_ = &registry->add_counter(
                             "yilian_" + n + "_taken_back_total",
                             "Decisions of the " + n + " workflow this instance applied when deciding them and took back "
                             "before the log confirmed them (another writer's record first, a failed publish, a lost "
                             "partition); the view then applies what the log holds.")
                             .with({});
  }
}

single_writer::~single_writer() { stop(); }

result<void> single_writer::start() {
  auto parts = bus_.partitions(options_.topic);
  if (!parts) return std::unexpected(parts.error());
  partitions_ = *parts;
  owned_ = std::make_unique<std::atomic<bool>[]>(static_cast<std::size_t>(partitions_));
  auto view = bus_.subscribe(bus::consumer_options{.group = options_.group_prefix + "yilian-" + options_.name + "-view-" + random_id(),
                                                   .topics = {options_.topic},
                                                   .start = bus::start_from::earliest});
  if (!view) return std::unexpected(view.error());
  view_ = std::move(*view);
  auto writer = bus_.subscribe(bus::consumer_options{.group = options_.group_prefix + "yilian-" + options_.name,
                                                     .topics = {options_.topic},
                                                     .start = bus::start_from::earliest});
  if (!writer) return std::unexpected(writer.error());
  writer_ = std::move(*writer);
  thread_ = std::thread([this] {
    name_this_thread(("yl-" + options_.name + "-wr").substr(0, 15).c_str());
    run();
  });
  writer_lg.info("workflow started", {log::field("workflow", options_.name), log::field("topic", options_.topic),
                                      log::field("partitions", partitions_)});
  return {};
}

void single_writer::stop() {
  stopping_.store(true);
  if (thread_.joinable()) thread_.join();
  if (writer_) {
    commit_offsets();
    writer_->close();
  }
  if (view_) view_->close();
  writer_.reset();
  view_.reset();
  // Whoever still waits hears that no answer is coming from this instance.
  std::unordered_map<std::string, std::vector<waiter>> left;
  {
    std::lock_guard lock(waiters_mu_);
    left.swap(waiters_);
    waiter_tokens_.clear();
  }
  std::shared_lock fold_lock(mu_);  // waiters run under it (see wait())
  for (auto& [id, list] : left) {
    for (auto& w : list) {
      w.done(outcome{.command_id = id,
                     .refused = refusal{.kind = errc::cancelled, .code = "shutting_down", .message = "the engine is stopping"}});
    }
  }
}

bus::message single_writer::record_of(const ev::Envelope& command) const {
  return bus::message{.topic = options_.topic, .key = fold_.command_key(command), .value = command.SerializeAsString(),
                      .headers = record_headers(command)};
}

bool single_writer::owns(std::int32_t partition) const {
  return std::any_of(assignment_.begin(), assignment_.end(), [&](const auto& tp) { return tp.second == partition; });
}

void single_writer::send(const ev::Envelope& command, std::move_only_function<void(result<void>)> done) {
  bus_.publish(record_of(command), [done = std::move(done)](result<bus::position> r) mutable {
    if (!r) {
      done(std::unexpected(r.error()));
      return;
    }
    done({});
  });
}

bool single_writer::take_direct(ev::Envelope&& command) {
  if (!owned_) return false;
  const std::int32_t p = partition_for_key(fold_.command_key(command), partitions_);
  if (!owned_[static_cast<std::size_t>(p)].load(std::memory_order_acquire)) return false;
  {
    std::lock_guard lock(inbox_mu_);
    inbox_.emplace_back(p, std::move(command));
  }
  inbox_size_.fetch_add(1);
  return true;
}

std::uint64_t single_writer::wait(const std::string& command_id, std::move_only_function<void(outcome)> done) {
  // Lock order: fold, then waiters (the engine thread resolves in that order).
  std::shared_lock fold_lock(mu_, std::try_to_lock);
  if (fold_lock.owns_lock() && !unconfirmed_.contains(command_id)) {
    if (auto prior = fold_.decided(command_id)) {
      prior->command_id = command_id;
      done(std::move(*prior));
      return 0;
    }
  }
  std::lock_guard lock(waiters_mu_);
  const std::uint64_t token = next_token_++;
  waiters_[command_id].push_back(waiter{token, std::move(done)});
  waiter_tokens_.emplace(token, command_id);
  if (!fold_lock.owns_lock()) {
    unchecked_.push_back(command_id);
    unchecked_size_.fetch_add(1);
  }
  return token;
}

bool single_writer::forget(std::uint64_t token) {
  std::lock_guard lock(waiters_mu_);
  const auto t = waiter_tokens_.find(token);
  if (t == waiter_tokens_.end()) return false;
  auto& list = waiters_[t->second];
  std::erase_if(list, [token](const waiter& w) { return w.token == token; });
  if (list.empty()) waiters_.erase(t->second);
  waiter_tokens_.erase(t);
  return true;
}

void single_writer::resolve(std::vector<outcome>& resolved) {
  if (resolved.empty() && unchecked_size_.load() == 0) return;
  std::shared_lock fold_lock(mu_);  // one lock for the batch's waiters (see wait())
  if (unchecked_size_.load() > 0) {
    // Waiters registered while the fold was busy: answer those whose decision
    // is already folded in (the rest are answered when it is).
    std::vector<std::string> ids;
    {
      std::lock_guard lock(waiters_mu_);
      ids.swap(unchecked_);
      unchecked_size_.store(0);
    }
    for (auto& id : ids) {
      if (unconfirmed_.contains(id)) continue;  // answered when the view reads it back
      if (auto prior = fold_.decided(id)) {
        prior->command_id = std::move(id);
        resolved.push_back(std::move(*prior));
      }
    }
  }
  for (auto& o : resolved) {
    std::vector<waiter> list;
    {
      std::lock_guard lock(waiters_mu_);
      const auto it = waiters_.find(o.command_id);
      if (it == waiters_.end()) continue;
      list = std::move(it->second);
      waiters_.erase(it);
      for (const auto& w : list) waiter_tokens_.erase(w.token);
    }
    for (auto& w : list) w.done(o);
  }
  resolved.clear();
}

void single_writer::run() {
  std::vector<outcome> resolved;
  while (!stopping_.load()) {
    take_inbox();
    bool busy = completions_pending_.load() > 0;
    for (const auto& [p, w] : work_) busy = busy || w->in_flight || !w->queued.empty() || !w->engine.empty();
    poll_view(busy ? 1ms : 2ms, resolved);
    resolve(resolved);
    settle_batches();
    if (std::chrono::steady_clock::now() >= next_assignment_check_) {
      check_assignment();
      next_assignment_check_ = std::chrono::steady_clock::now() + 200ms;
    }
    poll_writer(busy ? 0ms : 1ms);
    if (std::chrono::steady_clock::now() >= next_commit_) commit_offsets();
    if (caught_up_.load() && std::chrono::steady_clock::now() >= next_sweep_) {
      sweep_timers();
      next_sweep_ = std::chrono::steady_clock::now() + options_.timer_sweep;
    }
    decide_ready();
  }
}

void single_writer::poll_view(std::chrono::milliseconds timeout, std::vector<outcome>& resolved) {
  auto batch = view_->poll(timeout, 4096);
  if (!batch) {
    writer_lg.warn("workflow view cannot read the bus",
                   {log::field("workflow", options_.name), log::field("error", batch.error().describe())});
    std::this_thread::sleep_for(200ms);
    return;
  }
  std::size_t voided = 0;
  if (!batch->empty()) {
    std::unique_lock lock(mu_);
    ev::Envelope e;
    for (const auto& r : *batch) {
      view_next_[r.partition] = r.offset + 1;
      if (header_is(r, "type", options_.command_type)) continue;  // the writer's business
      step s;
      if (auto confirmed = confirm_kept(r)) {
        s = std::move(*confirmed);
      } else {
        const auto own = take_published(r);
        // Not an envelope: not the fold's (dead letters are the adapters').
        if (!own && !e.ParseFromString(r.value)) continue;
        s = fold_.apply(own ? *own : e);
      }
      if (s.voided) {
        ++voided;
        writer_lg.warn("workflow decision void at its place in the log",
                       {log::field("workflow", options_.name), log::field("command_id", s.command_id),
                        log::field("subject_id", s.subject_id),
                        log::field("code", s.refused ? s.refused->code : std::string()),
                        log::field("partition", r.partition), log::field("offset", r.offset)});
      }
      if (s.is_decision && !s.command_id.empty() && (s.changed || s.refused)) {
        resolved.push_back(outcome{.command_id = std::move(s.command_id), .subject_id = std::move(s.subject_id),
                                   .refused = std::move(s.refused)});
      }
    }
  }
  if (voided > 0 && voided_total_ != nullptr) voided_total_->inc(static_cast<double>(voided));
  if (!caught_up_.load()) note_progress();
}

void single_writer::note_progress() {
  // Where the topic ended when the view joined: it is caught up once it has
  // read that far (the view is the only member of its group, so it gets all
  // partitions; Kafka assigns them during the first polls).
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
    writer_lg.info("workflow view caught up", {log::field("workflow", options_.name)});
  }
}

void single_writer::take_inbox() {
  if (inbox_size_.load() == 0) return;
  std::vector<std::pair<std::int32_t, ev::Envelope>> taken;
  {
    std::lock_guard lock(inbox_mu_);
    taken.swap(inbox_);
    inbox_size_.store(0);
  }
  for (auto& [p, cmd] : taken) {
    auto& w = work_[p];
    if (!w) w = std::make_unique<partition_work>();
    w->engine.push_back(partition_work::unrecorded{std::move(cmd), true});
  }
}

void single_writer::check_assignment() {
  auto now_assigned = writer_->assignment();
  std::sort(now_assigned.begin(), now_assigned.end());
  if (now_assigned == assignment_) return;
  std::vector<std::int32_t> gained;
  for (const auto& tp : now_assigned) {
    if (!std::binary_search(assignment_.begin(), assignment_.end(), tp)) gained.push_back(tp.second);
  }
  for (const auto& tp : assignment_) {
    if (!std::binary_search(now_assigned.begin(), now_assigned.end(), tp)) {
      // Lost: whatever was queued from the bus is the new owner's now (we did
      // not commit it); direct commands are published for it.
      if (auto it = work_.find(tp.second); it != work_.end()) {
        {
          // Its decisions that reach the log are applied when the view reads them.
          std::unique_lock lock(mu_);
          take_back_kept(*it->second);
        }
        auto& lost = *it->second;
        // The batch in flight's too: the new owner skips by id those whose decision reached the log.
        for (auto u = lost.taken.rbegin(); u != lost.taken.rend(); ++u) lost.engine.push_front(std::move(*u));
        for (auto& u : lost.engine) {
          if (!u.direct) continue;
          bus_.publish(record_of(u.command), [](result<bus::position>) {});  // if even this fails, the caller times out and retries
        }
        work_.erase(it);
      }
      gate_.erase(tp.second);
      to_commit_.erase(tp.second);  // the new owner's to commit now
      if (tp.second >= 0 && tp.second < partitions_) owned_[static_cast<std::size_t>(tp.second)].store(false);
    }
  }
  assignment_ = std::move(now_assigned);
  for (const auto& tp : assignment_) {
    if (tp.second >= 0 && tp.second < partitions_) owned_[static_cast<std::size_t>(tp.second)].store(true);
  }
  if (gained.empty()) return;
  // Decide nothing on a gained partition before the view has read it to its
  // current end: the previous owner's last decisions may be there.
  if (auto l = writer_->lag()) {
    for (const auto& p : *l) {
      if (std::find(gained.begin(), gained.end(), p.partition) != gained.end()) gate_[p.partition] = p.end;
    }
  }
  writer_lg.info("workflow writer assignment",
                 {log::field("workflow", options_.name), log::field("partitions", assignment_.size())});
}

void single_writer::poll_writer(std::chrono::milliseconds timeout) {
  auto batch = writer_->poll(timeout, 4096);
  if (!batch) {
    writer_lg.warn("workflow writer cannot read the bus",
                   {log::field("workflow", options_.name), log::field("error", batch.error().describe())});
    return;
  }
  // Records of a partition gained since the last look: set its gate first.
  if (std::any_of(batch->begin(), batch->end(), [&](const bus::record& r) { return !owns(r.partition); })) {
    check_assignment();
  }
  for (auto& r : *batch) {
    auto& w = work_[r.partition];
    if (!w) w = std::make_unique<partition_work>();
    w->queued.push_back(std::move(r));
  }
}

void single_writer::commit_offsets() {
  next_commit_ = std::chrono::steady_clock::now() + options_.commit_interval;
  if (to_commit_.empty()) return;
  std::vector<bus::record> last;
  last.reserve(to_commit_.size());
  for (auto& [p, r] : to_commit_) last.push_back(std::move(r));
  to_commit_.clear();
  if (auto committed = writer_->commit(last); !committed) {
    writer_lg.warn("workflow writer commit failed (its records will be seen again and skipped by id)",
                   {log::field("workflow", options_.name), log::field("error", committed.error().describe())});
  }
}

void single_writer::settle_batches() {
  std::vector<completion> done;
  {
    std::lock_guard lock(completions_->mu);
    done.swap(completions_->done);
  }
  for (auto& c : done) {
    completions_pending_.fetch_sub(1);
    auto it = work_.find(c.partition);
    if (it == work_.end()) continue;
    auto& w = *it->second;
    if (w.pending > 0) --w.pending;
    if (!c.outcome) {
      w.failed = true;
      writer_lg.error("workflow decision not published",
                      {log::field("workflow", options_.name), log::field("error", c.outcome.error().describe())});
    } else {
      w.last_decision = std::max(w.last_decision, c.outcome->offset);
    }
  }
  for (auto& [p, wp] : work_) {
    auto& w = *wp;
    if (!w.in_flight || w.pending > 0) continue;
    if (w.failed) {
      // Decide the batch again (commands already decided are skipped by id).
      {
        std::unique_lock lock(mu_);
        take_back_kept(w);
      }
      for (auto r = w.batch.rbegin(); r != w.batch.rend(); ++r) w.queued.push_front(std::move(*r));
      for (auto u = w.taken.rbegin(); u != w.taken.rend(); ++u) w.engine.push_front(std::move(*u));
      w.batch.clear();
      w.taken.clear();
      w.published.clear();
      w.failed = false;
      w.in_flight = false;
      w.last_decision = -1;
      continue;
    }
    const auto next = view_next_.find(p);
    if (w.last_decision >= 0 && (next == view_next_.end() || next->second <= w.last_decision)) continue;
    if (!w.batch.empty()) to_commit_[p] = std::move(w.batch.back());  // committed by commit_offsets()
    w.batch.clear();
    w.taken.clear();
    w.published.clear();
    w.in_flight = false;
    w.last_decision = -1;
  }
}

std::optional<step> single_writer::confirm_kept(const bus::record& r) {
  const auto it = work_.find(r.partition);
  if (it == work_.end() || it->second->kept.empty()) return std::nullopt;
  auto& w = *it->second;
  if (header_of(r, "event_id") != std::optional<std::string_view>(w.kept.front().decision.event_id())) {
    // Not the decision this writer published next here (another writer's,
    // or its own were lost or reordered): the fold must see the log as it is.
    take_back_kept(w);
    return std::nullopt;
  }
  auto k = std::move(w.kept.front());
  w.kept.pop_front();
  unconfirmed_.erase(k.s.command_id);
  return std::move(k.s);
}

void single_writer::take_back_kept(partition_work& w) {
  if (taken_back_total_ != nullptr && !w.kept.empty()) taken_back_total_->inc(static_cast<double>(w.kept.size()));
  while (!w.kept.empty()) {
    auto k = std::move(w.kept.back());
    w.kept.pop_back();
    fold_.take_back(std::move(k.change));
    unconfirmed_.erase(k.s.command_id);
    std::string id = k.decision.event_id();
    w.published.emplace(std::move(id), std::move(k.decision));
  }
}

std::optional<ev::Envelope> single_writer::take_published(const bus::record& r) {
  const auto w = work_.find(r.partition);
  if (w == work_.end() || w->second->published.empty()) return std::nullopt;
  const auto id = header_of(r, "event_id");
  if (!id) return std::nullopt;
  auto& published = w->second->published;
  const auto it = published.find(std::string(*id));
  if (it == published.end()) return std::nullopt;
  return std::move(published.extract(it).mapped());
}

void single_writer::decide_ready() {
  const seconds now = options_.now();
  for (auto& [p, wp] : work_) {
    auto& w = *wp;
    if (w.in_flight || (w.queued.empty() && w.engine.empty())) continue;
    const auto next_it = view_next_.find(p);
    const std::int64_t view_next = next_it == view_next_.end() ? 0 : next_it->second;
    if (const auto g = gate_.find(p); g != gate_.end()) {
      if (view_next < g->second) continue;
      gate_.erase(g);
    }
    const bool keeping = fold_.keeps_changes();
    std::vector<ev::Envelope> decisions;
    std::vector<std::pair<step, std::unique_ptr<kept_change>>> changes;  // keeping: one per decision
    std::vector<bus::record> batch;
    std::size_t accepted = 0, refused = 0;
    {
      std::unique_lock lock(mu_);
      ev::Envelope e;
      auto take = [&](const ev::Envelope& cmd) {
        if (!fold_.is_command(cmd)) return;
        if (fold_.decided(fold_.command_id(cmd))) return;  // a resend: the first answer stands
        auto d = fold_.decide(cmd, now);
        step s;
        if (keeping) {
          auto change = fold_.keep(d, s);
          if (!s.command_id.empty()) unconfirmed_.insert(s.command_id);
          changes.emplace_back(s, std::move(change));
        } else {
          s = fold_.apply_tentatively(d);
        }
        if (s.refused || s.voided) {
          ++refused;
        } else {
          ++accepted;
        }
        decisions.push_back(std::move(d));
      };
      // Only records the view has already read past: the fold has all before them.
      while (!w.queued.empty() && w.queued.front().offset < view_next && batch.size() < options_.max_batch) {
        batch.push_back(std::move(w.queued.front()));
        w.queued.pop_front();
        if (header_is(batch.back(), "origin", "engine")) continue;  // a decision: nothing to decide
        if (e.ParseFromString(batch.back().value)) take(e);
      }
      while (!w.engine.empty() && decisions.size() < options_.max_batch) {
        take(w.engine.front().command);
        if (w.engine.front().direct) w.taken.push_back(std::move(w.engine.front()));
        w.engine.pop_front();
      }
      if (!keeping) fold_.undo_tentative();
    }
    if (batch.empty() && decisions.empty()) continue;
    if (decided_total_ != nullptr && accepted > 0) decided_total_->inc(static_cast<double>(accepted));
    if (rejected_total_ != nullptr && refused > 0) rejected_total_->inc(static_cast<double>(refused));
    w.batch = std::move(batch);
    w.in_flight = true;
    w.pending = decisions.size();
    w.last_decision = -1;
    completions_pending_.fetch_add(decisions.size());
    const std::int32_t partition = p;
    for (std::size_t i = 0; i < decisions.size(); ++i) {
      auto& d = decisions[i];
      bus_.publish(bus::message{.topic = options_.topic, .key = fold_.decision_key(d), .value = d.SerializeAsString(),
                                .headers = record_headers(d)},
                   [box = completions_, partition](result<bus::position> r) {
                     std::lock_guard lock(box->mu);
                     box->done.push_back(completion{partition, std::move(r)});
                   });
      if (keeping) {
        w.kept.push_back(partition_work::kept_decision{.decision = std::move(d), .s = std::move(changes[i].first),
                                                       .change = std::move(changes[i].second)});
      } else {
        std::string id = d.event_id();
        w.published.emplace(std::move(id), std::move(d));
      }
    }
  }
}

void single_writer::sweep_timers() {
  std::vector<ev::Envelope> commands;
  {
    std::shared_lock lock(mu_);
    commands = fold_.due_commands(options_.now());
  }
  for (auto& cmd : commands) {
    const std::int32_t p = partition_for_key(fold_.command_key(cmd), partitions_);
    if (!owns(p)) continue;
    auto& w = work_[p];
    if (!w) w = std::make_unique<partition_work>();
    // Already queued from the last sweep and not yet applied: leave it.
    const std::string id = fold_.command_id(cmd);
    const bool queued = std::any_of(w->engine.begin(), w->engine.end(), [&](const partition_work::unrecorded& u) {
      return fold_.command_id(u.command) == id;
    });
    if (!queued) w->engine.push_back(partition_work::unrecorded{std::move(cmd), false});
  }
}

}  // namespace yilian::workflows
