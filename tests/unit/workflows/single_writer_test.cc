// The single writer (engine/workflows/common/single_writer.h) with a minimal
// fold of its own, on a real embedded log in a temporary directory: what the
// booking and referral services rely on but cannot show by themselves —
// that a waiter never blocks on the fold's lock (the lookup of an earlier
// decision is left to the engine thread while the writer holds the lock), and
// that the writer group's offsets are committed although it commits them only
// now and then.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "engine/bus/embedded_log.h"
#include "engine/core/metrics.h"
#include "engine/workflows/common/single_writer.h"
#include "tests/support/eventually.h"
#include "tests/support/embedded_bus.h"
#include "tests/support/temp_dir.h"

using namespace yilian;
using namespace yilian::workflows;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;
using yilian::test::temp_dir;

namespace {

const std::string topic = "test.writer.v1";
const std::string command_type = "test.Command";

// Commands "cmd:<id>" are decided as "dec:<id>"; every decision is accepted.
// apply() of a decision can be held inside (the writer then holds the fold's
// lock exclusively) until the test lets it go.
class gate_fold final : public fold {
 public:
  bool is_command(const ev::Envelope& e) const override { return e.type() == command_type; }
  std::string command_id(const ev::Envelope& c) const override { return c.event_id().substr(4); }
  std::string command_key(const ev::Envelope& c) const override { return command_id(c); }
  std::string decision_key(const ev::Envelope& d) const override { return d.event_id().substr(4); }
  ev::Envelope decide(const ev::Envelope& c, seconds) const override {
    ev::Envelope d;
    d.set_event_id("dec:" + command_id(c));
    d.set_type("test.Decision");
    d.mutable_source()->set_protocol(ev::PROTOCOL_ENGINE);
    return d;
  }
  step apply(const ev::Envelope& e) override {
    if (e.type() != "test.Decision") return {};
    {
      std::unique_lock lock(mu_);
      if (hold_ == e.event_id().substr(4)) {
        held_ = true;
        cv_.notify_all();
        cv_.wait(lock, [&] { return hold_.empty(); });
      }
    }
    const std::string id = e.event_id().substr(4);
    decided_[id] = outcome{.command_id = id, .subject_id = "subject-" + id};
    return step{.changed = true, .is_decision = true, .command_id = id, .subject_id = "subject-" + id};
  }
  step apply_tentatively(const ev::Envelope&) override { return {}; }
  void undo_tentative() override {}
  std::optional<outcome> decided(std::string_view id) const override {
    const auto it = decided_.find(std::string(id));
    if (it == decided_.end()) return std::nullopt;
    return it->second;
  }

  // The next apply() of `id`'s decision waits inside until release().
  void hold(const std::string& id) {
    std::lock_guard lock(mu_);
    hold_ = id;
    held_ = false;
  }
  bool wait_held(std::chrono::milliseconds within) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, within, [&] { return held_; });
  }
  void release() {
    std::lock_guard lock(mu_);
    hold_.clear();
    cv_.notify_all();
  }

 private:
  std::map<std::string, outcome> decided_;  // under the writer's lock
  std::mutex mu_;
  std::condition_variable cv_;
  std::string hold_;
  bool held_ = false;
};

ev::Envelope command(const std::string& id) {
  ev::Envelope c;
  c.set_event_id("cmd:" + id);
  c.set_type(command_type);
  c.mutable_source()->set_protocol(ev::PROTOCOL_API);
  return c;
}

std::unique_ptr<bus::bus> open_log(const temp_dir& dir) { return yilian::test::open_log_with_topic(dir, topic, 2); }

// An answer a waiter gets, from whichever thread.
struct answer {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<outcome> got;
  std::move_only_function<void(outcome)> callback() {
    return [this](outcome o) {
      std::lock_guard lock(mu);
      got = std::move(o);
      cv.notify_all();
    };
  }
  bool arrived(std::chrono::milliseconds within) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, within, [&] { return got.has_value(); });
  }
};

using yilian::test::eventually;

// A fold that keeps the writer's changes (fold::keeps_changes). Command
// "cmd:<key>/<n>" claims <key>; the first claim of a key is accepted, later
// ones are refused. It counts how often the writer applies (apply: the
// view), keeps and takes back, and can publish another writer's claim of a
// key at the moment it keeps one (so that it lands in the log first).
class claim_fold final : public fold {
 public:
  bool is_command(const ev::Envelope& e) const override { return e.type() == command_type; }
  std::string command_id(const ev::Envelope& c) const override { return c.event_id().substr(4); }
  std::string command_key(const ev::Envelope& c) const override { return key_of(command_id(c)); }
  std::string decision_key(const ev::Envelope& d) const override { return key_of(d.event_id().substr(4)); }
  ev::Envelope decide(const ev::Envelope& c, seconds) const override {
    const std::string id = command_id(c);
    ev::Envelope d;
    d.set_event_id("dec:" + id);
    d.set_type(holders_.contains(key_of(id)) ? "test.Refused" : "test.Decision");
    d.mutable_source()->set_protocol(ev::PROTOCOL_ENGINE);
    return d;
  }
  step apply(const ev::Envelope& e) override {
    ++applies;
    return fold_in(e, nullptr);
  }
  step apply_tentatively(const ev::Envelope&) override { return {}; }
  void undo_tentative() override {}
  bool keeps_changes() const override { return true; }
  std::unique_ptr<kept_change> keep(const ev::Envelope& e, step& s) override {
    ++keeps;
    auto c = std::make_unique<claim_change>();
    s = fold_in(e, c.get());
    const std::string key = key_of(e.event_id().substr(4));
    if (key == foreign_key && bus_ != nullptr) {
      foreign_key.clear();
      ev::Envelope other;
      other.set_event_id("dec:" + key + "/other-writer");
      other.set_type("test.Decision");
      other.mutable_source()->set_protocol(ev::PROTOCOL_ENGINE);
      bus_->publish(bus::message{.topic = topic, .key = key, .value = other.SerializeAsString(),
                                 .headers = record_headers(other)},
                    [](result<bus::position>) {});
    }
    return c;
  }
  void take_back(std::unique_ptr<kept_change> change) override {
    ++taken_back;
    const auto& c = static_cast<const claim_change&>(*change);
    if (!c.command_id.empty()) decided_.erase(c.command_id);
    if (!c.claimed.empty()) holders_.erase(c.claimed);
  }
  std::optional<outcome> decided(std::string_view id) const override {
    const auto it = decided_.find(std::string(id));
    if (it == decided_.end()) return std::nullopt;
    return it->second;
  }

  std::string holder(const std::string& key) const {
    const auto it = holders_.find(key);
    return it == holders_.end() ? std::string() : it->second;
  }

  // Written by the writer thread, read by the test once the answers are in.
  std::atomic<int> applies{0}, keeps{0}, taken_back{0};
  std::string foreign_key;  // set before the commands are sent
  bus::bus* bus_ = nullptr;

 private:
  struct claim_change final : kept_change {
    std::string command_id;  // decided entry to forget
    std::string claimed;     // key to release
  };
  static std::string key_of(const std::string& id) { return id.substr(0, id.find('/')); }

  step fold_in(const ev::Envelope& e, claim_change* undo) {
    const std::string id = e.event_id().substr(4);
    step s{.is_decision = true, .command_id = id, .subject_id = key_of(id)};
    if (decided_.contains(id)) return s;
    if (e.type() == "test.Refused" ||
        (e.type() == "test.Decision" && holders_.contains(key_of(id)))) {
      s.refused = refusal{.code = "taken", .message = key_of(id) + " is claimed"};
      s.voided = e.type() == "test.Decision";
      if (!s.voided) decided_[id] = outcome{.command_id = id, .subject_id = s.subject_id, .refused = s.refused};
      if (undo != nullptr && !s.voided) undo->command_id = id;
      return s;
    }
    if (e.type() != "test.Decision") return {};
    holders_[key_of(id)] = id;
    decided_[id] = outcome{.command_id = id, .subject_id = s.subject_id};
    if (undo != nullptr) {
      undo->command_id = id;
      undo->claimed = key_of(id);
    }
    s.changed = true;
    return s;
  }

  std::map<std::string, outcome> decided_;      // under the writer's lock
  std::map<std::string, std::string> holders_;  // key -> command id
};

// Forwards to a bus, failing the next `fail_decisions` publishes of decisions.
namespace yb = yilian::bus;

class failing_bus final : public yb::bus {
 public:
  explicit failing_bus(yb::bus& inner) : inner_(inner) {}
  std::string_view kind() const noexcept override { return inner_.kind(); }
  result<void> ensure_topics(std::span<const yb::topic_spec> t) override { return inner_.ensure_topics(t); }
  result<std::int32_t> partitions(std::string_view t) override { return inner_.partitions(t); }
  void publish(yb::message msg, yb::publish_handler done) override {
    const bool decision = std::any_of(msg.headers.begin(), msg.headers.end(), [](const yb::header& h) {
      return h.key == "type" && h.value == "test.Decision";
    });
    if (decision && fail_decisions.load() > 0) {
      fail_decisions.fetch_sub(1);
      done(std::unexpected(error{errc::unavailable, "test: the bus lost this publish"}));
      return;
    }
    inner_.publish(std::move(msg), std::move(done));
  }
  result<std::unique_ptr<yb::consumer>> subscribe(yb::consumer_options o) override {
    return inner_.subscribe(std::move(o));
  }
  result<void> flush(std::chrono::milliseconds t) override { return inner_.flush(t); }
  result<void> check_ready(std::chrono::milliseconds t) override { return inner_.check_ready(t); }

  std::atomic<int> fail_decisions{0};

 private:
  yb::bus& inner_;
};

}  // namespace

TEST_CASE("a waiter never blocks on the fold: while the writer holds it, the engine thread answers", "[unit][workflow]") {
  temp_dir dir{"yilian-writer-test"};
  auto log = open_log(dir);
  gate_fold f;
  // Declared before the writer: a waiter it still holds when a check fails
  // must not outlive its answer.
  answer first, again, a_again, b_answer;
  single_writer w(*log, f, single_writer_options{.name = "test", .topic = topic, .command_type = command_type});
  REQUIRE(w.start());
  REQUIRE(eventually([&] { return w.caught_up(); }));

  // Decided before: answered at once when the fold is free. The engine
  // thread may hold the fold just then (its view or timers); the waiter is
  // then answered as soon as that thread looks, which the second half covers.
  {
    w.wait("a", first.callback());
    std::atomic<bool> sent{false};
    w.send(command("a"), [&](result<void> r) { sent = r.has_value(); });
    REQUIRE(first.arrived(15s));
    CHECK(first.got->subject_id == "subject-a");
    const auto token = w.wait("a", again.callback());
    REQUIRE(again.arrived(token == 0 ? 0ms : 15s));
    CHECK(again.got->command_id == "a");
    CHECK(sent);
  }

  // Now the writer holds the fold while applying b's decision.
  f.hold("b");
  w.send(command("b"), [](result<void>) {});
  REQUIRE(f.wait_held(15s));

  const auto started = steady::now();
  const auto token = w.wait("a", a_again.callback());  // "a" is decided, but the fold is busy
  const auto b_token = w.wait("b", b_answer.callback());
  CHECK(steady::now() - started < 1s);  // neither wait blocked on the held fold
  CHECK(token != 0);
  CHECK(b_token != 0);
  CHECK_FALSE(a_again.arrived(50ms));

  f.release();
  REQUIRE(a_again.arrived(15s));
  CHECK(a_again.got->command_id == "a");
  CHECK(a_again.got->subject_id == "subject-a");
  REQUIRE(b_answer.arrived(15s));
  CHECK(b_answer.got->command_id == "b");
  CHECK_FALSE(w.forget(token));  // already answered
  w.stop();
}

TEST_CASE("stop() commits the writer group's offsets that the interval has not committed yet", "[unit][workflow]") {
  temp_dir dir{"yilian-writer-test"};
  auto log = open_log(dir);
  gate_fold f;
  single_writer w(*log, f,
                  single_writer_options{.name = "test", .topic = topic, .command_type = command_type,
                                        .commit_interval = std::chrono::hours(1)});
  REQUIRE(w.start());
  REQUIRE(eventually([&] { return w.caught_up(); }));
  std::vector<std::unique_ptr<answer>> answers;
  for (int i = 0; i < 20; ++i) {
    const std::string id = "c" + std::to_string(i);
    answers.push_back(std::make_unique<answer>());
    w.wait(id, answers.back()->callback());
    w.send(command(id), [](result<void>) {});
  }
  for (auto& a : answers) REQUIRE(a->arrived(15s));
  w.stop();

  // A member of the writer's group (alone in it now) sees what the group committed.
  auto probe = log->subscribe(bus::consumer_options{.group = "yilian-test", .topics = {topic}});
  REQUIRE(probe);
  REQUIRE(eventually([&] { return (*probe)->assignment().size() == 2; }));
  auto lag = (*probe)->lag();
  REQUIRE(lag);
  std::int64_t records = 0;
  for (const auto& p : *lag) {
    records += p.end;
    CHECK(p.committed > 0);
  }
  CHECK(records == 40);  // 20 commands and their 20 decisions
  // What the group would read again is at most the last decisions (the writer
  // had not come round to them): no command is decided twice after a restart.
  auto again = (*probe)->poll(200ms, 100);
  REQUIRE(again);
  for (const auto& r : *again) CHECK(header_is(r, "type", "test.Decision"));
}

TEST_CASE("take_direct moves the command only when the writer takes it", "[unit][workflow]") {
  temp_dir dir{"yilian-writer-test"};
  auto log = open_log(dir);
  gate_fold f;
  single_writer w(*log, f, single_writer_options{.name = "test", .topic = topic, .command_type = command_type});

  // Not started: no partition is owned, the caller still has the command to send().
  auto early = command("early");
  CHECK_FALSE(w.take_direct(std::move(early)));
  CHECK(early.event_id() == "cmd:early");  // NOLINT(bugprone-use-after-move): left as it was, by contract

  REQUIRE(w.start());
  REQUIRE(eventually([&] { return w.caught_up(); }));
  // The only instance of its group owns every partition once it is assigned.
  answer got;
  w.wait("direct", got.callback());
  auto cmd = command("direct");
  REQUIRE(eventually([&] { return w.take_direct(std::move(cmd)); }));
  REQUIRE(got.arrived(15s));
  CHECK(got.got->subject_id == "subject-direct");
  w.stop();
}

TEST_CASE("a fold that keeps its changes: each decision is applied once, when decided, and the view confirms it",
          "[unit][workflow]") {
  temp_dir dir{"yilian-writer-test"};
  auto log = open_log(dir);
  claim_fold f;
  single_writer w(*log, f, single_writer_options{.name = "test", .topic = topic, .command_type = command_type});
  REQUIRE(w.start());
  REQUIRE(eventually([&] { return w.caught_up(); }));
  std::vector<std::unique_ptr<answer>> answers;
  for (int i = 0; i < 30; ++i) {
    // Keys k0..k9, three claims each: the first of each key wins.
    const std::string id = "k" + std::to_string(i % 10) + "/" + std::to_string(i / 10);
    answers.push_back(std::make_unique<answer>());
    w.wait(id, answers.back()->callback());
    w.send(command(id), [](result<void>) {});
  }
  for (auto& a : answers) REQUIRE(a->arrived(15s));
  for (int i = 0; i < 30; ++i) {
    INFO("claim " << i);
    CHECK(answers[static_cast<std::size_t>(i)]->got->refused.has_value() == (i >= 10));
  }
  CHECK(f.keeps.load() == 30);
  CHECK(f.applies.load() == 0);  // the view applied none again
  CHECK(f.taken_back.load() == 0);
  // A waiter that comes after the view confirmed the decision is answered at once.
  answer late;
  CHECK(w.wait("k3/0", late.callback()) == 0);
  REQUIRE(late.got);
  CHECK_FALSE(late.got->refused);
  w.stop();
  CHECK(f.holder("k3") == "k3/0");
}

TEST_CASE("another writer's decision read before the kept ones takes them back; the log order decides",
          "[unit][workflow]") {
  temp_dir dir{"yilian-writer-test"};
  auto log = open_log(dir);
  claim_fold f;
  f.bus_ = log.get();
  f.foreign_key = "k1";  // published while the writer keeps its claim of k1, so it is first in the log
  metrics::registry registry;
  single_writer w(*log, f, single_writer_options{.name = "test", .topic = topic, .command_type = command_type},
                  &registry);
  REQUIRE(w.start());
  REQUIRE(eventually([&] { return w.caught_up(); }));
  answer mine, after;
  w.wait("k1/mine", mine.callback());
  w.send(command("k1/mine"), [](result<void>) {});
  REQUIRE(mine.arrived(15s));
  // The writer decided on a state without the other writer's claim; at its
  // place in the log its decision no longer holds.
  REQUIRE(mine.got->refused);
  CHECK(mine.got->refused->code == "taken");
  CHECK(f.taken_back.load() >= 1);
  // Operators see it: one decision taken back per change the fold took back.
  CHECK(registry.render().find("yilian_test_taken_back_total " + std::to_string(f.taken_back.load())) !=
        std::string::npos);
  CHECK(f.applies.load() >= 2);  // the other writer's decision, then this one's again
  // Decisions after it are kept and confirmed again.
  const int applies = f.applies.load();
  w.wait("k2/0", after.callback());
  w.send(command("k2/0"), [](result<void>) {});
  REQUIRE(after.arrived(15s));
  CHECK_FALSE(after.got->refused);
  CHECK(f.applies.load() == applies);
  w.stop();
  CHECK(f.holder("k1") == "k1/other-writer");
  CHECK(f.holder("k2") == "k2/0");
}

TEST_CASE("a kept decision that cannot be published is taken back and its command decided again", "[unit][workflow]") {
  temp_dir dir{"yilian-writer-test"};
  auto log = open_log(dir);
  failing_bus b(*log);
  claim_fold f;
  single_writer w(b, f, single_writer_options{.name = "test", .topic = topic, .command_type = command_type});
  REQUIRE(w.start());
  REQUIRE(eventually([&] { return w.caught_up(); }));
  b.fail_decisions.store(1);
  answer got;
  w.wait("k5/0", got.callback());
  // A waiter must not hear of the kept decision before it is durable.
  w.send(command("k5/0"), [](result<void>) {});
  REQUIRE(got.arrived(15s));
  CHECK_FALSE(got.got->refused);  // accepted, not "taken" by its own lost first decision
  CHECK(b.fail_decisions.load() == 0);
  CHECK(f.keeps.load() == 2);
  CHECK(f.taken_back.load() == 1);

  // A command handed to the writer directly (no bus record) is decided again too.
  b.fail_decisions.store(1);
  answer direct;
  w.wait("k6/0", direct.callback());
  auto cmd = command("k6/0");
  REQUIRE(eventually([&] { return w.take_direct(std::move(cmd)); }));
  REQUIRE(direct.arrived(15s));
  CHECK_FALSE(direct.got->refused);
  CHECK(f.keeps.load() == 4);
  CHECK(f.taken_back.load() == 2);
  w.stop();
  CHECK(f.holder("k5") == "k5/0");
  CHECK(f.holder("k6") == "k6/0");
}
