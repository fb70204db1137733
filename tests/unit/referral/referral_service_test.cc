// The referral service (engine/workflows/referral/service.h) on a real
// embedded log in a temporary directory: commands in, decisions back; many
// ACCEPT / REJECT / CANCEL commands from both sides racing on the same
// referrals; expiry by the writer's timer on a test clock (once and only
// once); a restart that rebuilds the ledger from the log.
//
// Every wait has a deadline; the clock the service decides with is the test's.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "engine/bus/embedded_log.h"
#include "tests/support/eventually.h"
#include "tests/support/embedded_bus.h"
#include "tests/support/temp_dir.h"
#include "tests/unit/referral/referral_test_support.h"

using namespace yilian;
using namespace yilian::workflows;
using namespace yilian::workflows::referral;
using namespace yilian::workflows::referral::test;
using steady = std::chrono::steady_clock;
using yilian::test::temp_dir;

namespace {

constexpr auto CREATE = ev::REFERRAL_ACTION_CREATE;
constexpr auto RECEIVE = ev::REFERRAL_ACTION_RECEIVE;
constexpr auto ACCEPT = ev::REFERRAL_ACTION_ACCEPT;
constexpr auto REJECT = ev::REFERRAL_ACTION_REJECT;
constexpr auto SCHEDULE = ev::REFERRAL_ACTION_SCHEDULE;
constexpr auto CANCEL = ev::REFERRAL_ACTION_CANCEL;
constexpr auto EXPIRE = ev::REFERRAL_ACTION_EXPIRE;
const std::string topic = "yilian.referral.v1";

std::unique_ptr<bus::bus> open_log(const temp_dir& dir) { return yilian::test::open_log_with_topic(dir, topic, 4); }

// A clock the test moves; starts at test_now.
struct test_clock {
  std::shared_ptr<std::atomic<std::int64_t>> t =
      std::make_shared<std::atomic<std::int64_t>>(test_now.time_since_epoch().count());
  void advance(std::chrono::seconds d) { t->fetch_add(d.count()); }
  seconds now() const { return seconds(std::chrono::seconds(t->load())); }
  std::function<seconds()> fn() const {
    return [clock = t] { return seconds(std::chrono::seconds(clock->load())); };
  }
};

using yilian::test::eventually;

std::unique_ptr<service> start_service(bus::bus& b, const test_clock& clock,
                                       std::chrono::milliseconds sweep = 1000ms) {
  service_options o;
  o.now = clock.fn();
  o.expiry_sweep = sweep;
  auto s = std::make_unique<service>(b, std::make_unique<ledger>(consortium(), options_from(consortium())),
                                     std::move(o));
  if (auto r = s->start(); !r) FAIL(r.error().describe());
  REQUIRE(eventually([&] { return s->caught_up(); }));
  return s;
}

struct pending {
  std::string command_id;
  std::future<decision> answer;
  std::future<result<void>> durable;
};

pending submit(service& s, const ev::Envelope& command) {
  auto answer = std::make_shared<std::promise<decision>>();
  auto durable = std::make_shared<std::promise<result<void>>>();
  pending p{.command_id = command.referral_command().command_id(), .answer = answer->get_future(),
            .durable = durable->get_future()};
  s.wait(p.command_id, [answer](decision d) { answer->set_value(std::move(d)); });
  s.send(command, [durable](result<void> r) { durable->set_value(std::move(r)); });
  return p;
}

decision await(pending& p, std::chrono::seconds within = 20s) {
  REQUIRE(p.durable.wait_for(within) == std::future_status::ready);
  const auto sent = p.durable.get();
  if (!sent) FAIL(sent.error().describe());
  if (p.answer.wait_for(within) != std::future_status::ready) FAIL("no decision for " << p.command_id);
  return p.answer.get();
}

decision ask(service& s, const cmd& c, seconds at = test_now) {
  auto p = submit(s, make_command(c, at));
  return await(p);
}

std::string code_of(const decision& d) { return d.refused ? d.refused->code : std::string(); }

cmd create(std::string id, std::string from = "dc-chc", std::string to = "zs-tertiary") {
  cmd c;
  c.act = CREATE;
  c.referral = std::move(id);
  c.actor_hospital = from;
  c.from = std::move(from);
  c.to = std::move(to);
  return c;
}
cmd by(ev::ReferralAction a, std::string id, std::string hospital, std::string command_id = "") {
  cmd c;
  c.act = a;
  c.referral = std::move(id);
  c.actor_hospital = std::move(hospital);
  c.id = std::move(command_id);
  return c;
}

// Every referral of the ledger, described, in id order.
std::vector<std::string> all_referrals(const service& s) {
  return s.read([](const ledger& l) {
    std::map<std::string, std::string> by_id;
    for (const auto* r : l.all(1000000)) by_id.emplace(r->id, describe(*r));
    std::vector<std::string> out;
    for (auto& [id, text] : by_id) out.push_back(cat(id, " => ", text));
    return out;
  });
}

state state_of(const service& s, const std::string& id) {
  return s.read([&](const ledger& l) {
    const auto* r = l.find(id);
    return r == nullptr ? ev::REFERRAL_STATE_UNSPECIFIED : r->st;
  });
}

// The decisions on the topic, read by a fresh group: per command id, how
// many; and every ReferralStateChanged, in log order per partition.
struct log_scan {
  std::map<std::string, int> decisions;
  std::vector<ev::ReferralStateChanged> changes;
  int commands = 0;
};

log_scan scan_log(bus::bus& b) {
  static std::atomic<int> groups{0};
  auto c = b.subscribe(bus::consumer_options{.group = cat("scan-", std::to_string(++groups)), .topics = {topic}});
  if (!c) FAIL(c.error().describe());
  log_scan out;
  for (;;) {
    auto batch = (*c)->poll(300ms, 4096);
    if (!batch) FAIL(batch.error().describe());
    if (batch->empty()) break;
    ev::Envelope e;
    for (const auto& r : *batch) {
      if (!e.ParseFromString(r.value)) continue;
      if (e.has_referral_command()) {
        ++out.commands;
      } else if (e.has_referral_requested() || e.has_referral_state_changed() || e.has_referral_command_rejected()) {
        ++out.decisions[command_id_of(e)];
        if (e.has_referral_state_changed()) out.changes.push_back(e.referral_state_changed());
      }
    }
  }
  return out;
}

}  // namespace

TEST_CASE("the service decides a command sent on the bus and answers the waiter", "[unit][referral]") {
  temp_dir dir{"yilian-referral-test"};
  auto log = open_log(dir);
  test_clock clock;
  auto s = start_service(*log, clock);

  auto c = create("ref-1");
  c.id = "c-1";
  const auto created = ask(*s, c);
  REQUIRE(created.referral);
  CHECK_FALSE(created.refused);
  CHECK(created.command_id == "c-1");
  CHECK(created.referral->id == "ref-1");
  CHECK(created.referral->st == ev::REFERRAL_STATE_REQUESTED);
  CHECK(created.referral->direction == ev::REFERRAL_DIRECTION_UP);
  CHECK(created.referral->version == 1);
  CHECK(created.referral->expires_at == test_now + 72h);

  const auto own = ask(*s, by(ACCEPT, "ref-1", "dc-chc", "c-2"));
  CHECK_FALSE(own.referral);
  CHECK(code_of(own) == "not_allowed");
  CHECK(own.refused->kind == errc::permission_denied);

  const auto accepted = ask(*s, by(ACCEPT, "ref-1", "zs-tertiary", "c-3"));
  REQUIRE(accepted.referral);
  CHECK(accepted.referral->st == ev::REFERRAL_STATE_ACCEPTED);
  CHECK(accepted.referral->version == 2);

  CHECK(code_of(ask(*s, by(ACCEPT, "ref-404", "zs-tertiary", "c-4"))) == "not_found");
  CHECK(code_of(ask(*s, create("ref-1", "nh-chc"))) == "duplicate_referral_id");

  SECTION("waiting for a command already decided answers at once, with the first answer") {
    std::optional<decision> got;
    s->wait("c-2", [&](decision d) { got = std::move(d); });
    REQUIRE(got);
    CHECK(code_of(*got) == "not_allowed");
  }
  SECTION("a resent command gets the first answer and is not decided again") {
    auto again = submit(*s, make_command(c));
    const auto d = await(again);
    REQUIRE(d.referral);
    CHECK(d.referral->id == "ref-1");
    CHECK_FALSE(d.refused);
    // A command sent after it on the same partition is answered, so the resend has been seen.
    CHECK(ask(*s, by(SCHEDULE, "ref-1", "zs-tertiary", "c-5")).referral);
    const auto scan = scan_log(*log);
    CHECK(scan.decisions.at("c-1") == 1);
    CHECK(scan.decisions.at("c-5") == 1);
  }
  SECTION("stop() answers whoever still waits") {
    std::optional<decision> last;
    s->wait("c-never", [&](decision d) { last = std::move(d); });
    s->stop();
    REQUIRE(last);
    CHECK(code_of(*last) == "shutting_down");
  }
}

namespace {

struct racer {
  std::string command_id;
  std::string referral;
  ev::ReferralAction act;
  std::string hospital;
};

// For each of `n` referrals (dc-chc -> zs-tertiary, REQUESTED): 5 ACCEPT and
// 5 REJECT from zs-tertiary, 5 CANCEL from dc-chc, 3 ACCEPT from dc-chc (not
// its to give), 2 RECEIVE from zs-tertiary.
std::vector<racer> race_commands(int n) {
  std::vector<racer> out;
  for (int i = 0; i < n; ++i) {
    const std::string ref = cat("race-", std::to_string(i));
    auto add = [&](ev::ReferralAction a, const std::string& h, int k) {
      out.push_back(racer{cat("c-", ref, "-", action_name(a), "-", h, "-", std::to_string(k)), ref, a, h});
    };
    for (int k = 0; k < 5; ++k) add(ACCEPT, "zs-tertiary", k);
    for (int k = 0; k < 5; ++k) add(REJECT, "zs-tertiary", k);
    for (int k = 0; k < 5; ++k) add(CANCEL, "dc-chc", k);
    for (int k = 0; k < 3; ++k) add(ACCEPT, "dc-chc", k);
    for (int k = 0; k < 2; ++k) add(RECEIVE, "zs-tertiary", k);
  }
  return out;
}

std::map<std::string, decision> race(const std::vector<racer>& all, std::vector<service*> via, int threads) {
  std::vector<std::vector<racer>> per_thread(static_cast<std::size_t>(threads));
  for (std::size_t i = 0; i < all.size(); ++i) per_thread[i % static_cast<std::size_t>(threads)].push_back(all[i]);
  std::mutex mu;
  std::vector<pending> sent;
  std::vector<std::thread> workers;
  for (int w = 0; w < threads; ++w) {
    workers.emplace_back([&, w] {
      auto& mine = per_thread[static_cast<std::size_t>(w)];
      std::mt19937 rng(static_cast<unsigned>(w) + 7U);
      std::shuffle(mine.begin(), mine.end(), rng);
      std::size_t n = 0;
      for (const auto& r : mine) {
        auto c = by(r.act, r.referral, r.hospital, r.command_id);
        if (r.act == REJECT) c.reason = "NO-BED";
        auto p = submit(*via[n++ % via.size()], make_command(c));
        std::lock_guard lock(mu);
        sent.push_back(std::move(p));
      }
    });
  }
  for (auto& w : workers) w.join();
  std::map<std::string, decision> out;
  for (auto& p : sent) {
    const auto id = p.command_id;
    out.emplace(id, await(p, 30s));
  }
  return out;
}

// Exactly one answer per referral (accepted, rejected or cancelled while it
// waited), at most one cancel after an acceptance, every other command
// refused clearly; the history is made of exactly the winners, and each
// command has exactly one decision on the log.
void check_race(const std::vector<racer>& all, const std::map<std::string, decision>& answers, const service& s,
                bus::bus& b, int referrals) {
  REQUIRE(answers.size() == all.size());
  std::map<std::string, std::set<std::string>> winners;  // referral -> command ids accepted
  std::map<std::string, const racer*> by_id;
  for (const auto& r : all) by_id[r.command_id] = &r;
  for (const auto& [id, d] : answers) {
    const auto& r = *by_id.at(id);
    INFO(id << " -> " << (d.refused ? cat(d.refused->code, ": ", d.refused->message) : std::string("taken")));
    CHECK(d.command_id == id);
    if (!d.refused) {
      CHECK(d.referral);
      winners[r.referral].insert(id);
      CHECK(r.hospital == (r.act == CANCEL ? "dc-chc" : "zs-tertiary"));
      continue;
    }
    // The clinic's own ACCEPT is not allowed while there is an answer to give,
    // a wrong transition once there is none; the rest only lost the race.
    if (r.act == ACCEPT && r.hospital == "dc-chc") {
      CHECK((d.refused->code == "not_allowed" || d.refused->code == "wrong_transition"));
    } else {
      CHECK(d.refused->code == "wrong_transition");
      CHECK(d.refused->kind == errc::conflict);
    }
    CHECK_FALSE(d.refused->message.empty());
  }
  auto scan = scan_log(b);
  for (const auto& r : all) {
    INFO(r.command_id);
    CHECK(scan.decisions[r.command_id] == 1);
  }
  s.read([&](const ledger& l) {
    for (int i = 0; i < referrals; ++i) {
      const std::string ref = cat("race-", std::to_string(i));
      INFO(ref);
      const auto* v = l.find(ref);
      REQUIRE(v != nullptr);
      // The history after the creation is the winners, one step each.
      std::set<std::string> steps;
      int answered = 0, received = 0, cancelled_after = 0;
      for (std::size_t k = 1; k < v->history.size(); ++k) {
        const auto& h = v->history[k];
        steps.insert(h.event_id.substr(std::string("referral-decision:").size()));
        const bool waiting = h.from == ev::REFERRAL_STATE_REQUESTED || h.from == ev::REFERRAL_STATE_RECEIVED;
        if (waiting && h.to != ev::REFERRAL_STATE_RECEIVED) ++answered;
        if (h.to == ev::REFERRAL_STATE_RECEIVED) ++received;
        if (h.from == ev::REFERRAL_STATE_ACCEPTED) {
          CHECK(h.to == ev::REFERRAL_STATE_CANCELLED);
          ++cancelled_after;
        }
      }
      CHECK(steps == winners[ref]);
      CHECK(answered == 1);
      CHECK(received <= 1);
      CHECK(cancelled_after <= 1);
      CHECK(v->version == v->history.size());
      CHECK(is_final(v->st) == (v->st != ev::REFERRAL_STATE_ACCEPTED));
    }
    return 0;
  });
}

}  // namespace

TEST_CASE("ACCEPT, REJECT and CANCEL racing on one referral from both sides: one answer, clear refusals",
          "[unit][referral]") {
  temp_dir dir{"yilian-referral-test"};
  auto log = open_log(dir);
  test_clock clock;
  constexpr int referrals = 20;
  const auto commands = race_commands(referrals);

  SECTION("one service, four threads") {
    auto s = start_service(*log, clock);
    for (int i = 0; i < referrals; ++i) REQUIRE(ask(*s, create(cat("race-", std::to_string(i)))).referral);
    const auto answers = race(commands, {s.get()}, 4);
    check_race(commands, answers, *s, *log, referrals);
  }
  SECTION("two services in one group (each hospital's side through its own instance)") {
    auto s1 = start_service(*log, clock);
    auto s2 = start_service(*log, clock);
    for (int i = 0; i < referrals; ++i) REQUIRE(ask(*s1, create(cat("race-", std::to_string(i)))).referral);
    const auto answers = race(commands, {s1.get(), s2.get()}, 4);
    check_race(commands, answers, *s1, *log, referrals);
    REQUIRE(eventually([&] { return all_referrals(*s1) == all_referrals(*s2); }));
  }
}

TEST_CASE("the writer's timer expires an unanswered referral once and only once; answered ones it leaves alone",
          "[unit][referral]") {
  temp_dir dir{"yilian-referral-test"};
  auto log = open_log(dir);
  test_clock clock;
  auto s = start_service(*log, clock, 20ms);
  REQUIRE(ask(*s, create("unanswered")).referral);
  REQUIRE(ask(*s, create("received")).referral);
  REQUIRE(ask(*s, by(RECEIVE, "received", "zs-tertiary")).referral);
  REQUIRE(ask(*s, create("accepted")).referral);
  REQUIRE(ask(*s, by(ACCEPT, "accepted", "zs-tertiary")).referral);
  REQUIRE(ask(*s, create("scheduled")).referral);
  REQUIRE(ask(*s, by(ACCEPT, "scheduled", "zs-tertiary")).referral);
  auto sch = by(SCHEDULE, "scheduled", "zs-tertiary");
  sch.booking = "bk-1";
  REQUIRE(ask(*s, sch).referral);

  // Not before its time: several sweeps pass and nothing changes.
  std::this_thread::sleep_for(200ms);
  clock.advance(72h - 1s);
  std::this_thread::sleep_for(200ms);
  CHECK(state_of(*s, "unanswered") == ev::REFERRAL_STATE_REQUESTED);
  CHECK(state_of(*s, "received") == ev::REFERRAL_STATE_RECEIVED);

  clock.advance(1s);
  REQUIRE(eventually([&] {
    return state_of(*s, "unanswered") == ev::REFERRAL_STATE_EXPIRED &&
           state_of(*s, "received") == ev::REFERRAL_STATE_EXPIRED;
  }));
  s->read([](const ledger& l) {
    const auto* r = l.find("unanswered");
    CHECK(r->version == 2);
    CHECK(r->history.back().act == EXPIRE);
    CHECK(r->history.back().actor == "engine");
    CHECK(r->history.back().reason == "not answered in time");
    REQUIRE(l.decided("expire:unanswered:1"));
    CHECK_FALSE(l.decided("expire:unanswered:1")->refused);
    CHECK(l.find("received")->version == 3);
    CHECK(l.decided("expire:received:2"));
    CHECK(l.overdue(test_now + 72h).empty());
    return 0;
  });
  // Many more sweeps: still one expiry each.
  std::this_thread::sleep_for(300ms);
  CHECK(state_of(*s, "accepted") == ev::REFERRAL_STATE_ACCEPTED);
  CHECK(state_of(*s, "scheduled") == ev::REFERRAL_STATE_SCHEDULED);
  auto expiries = [&](const log_scan& scan, const std::string& id) {
    int n = 0;
    for (const auto& c : scan.changes) n += c.referral_id() == id && c.state() == ev::REFERRAL_STATE_EXPIRED;
    return n;
  };
  {
    const auto scan = scan_log(*log);
    CHECK(expiries(scan, "unanswered") == 1);
    CHECK(expiries(scan, "received") == 1);
    CHECK(scan.decisions.at("expire:unanswered:1") == 1);
    // The initiator is told: the event names both sides.
    for (const auto& c : scan.changes) {
      if (c.state() != ev::REFERRAL_STATE_EXPIRED) continue;
      CHECK(c.from_hospital() == "dc-chc");
      CHECK(c.to_hospital() == "zs-tertiary");
      CHECK(c.action() == EXPIRE);
    }
  }
  // The receiver answering now is too late.
  CHECK(code_of(ask(*s, by(ACCEPT, "unanswered", "zs-tertiary"), clock.now())) == "wrong_transition");

  // Accepted but never scheduled: after 30 days (the example's default).
  clock.advance(std::chrono::days(30) - 72h);
  REQUIRE(eventually([&] { return state_of(*s, "accepted") == ev::REFERRAL_STATE_EXPIRED; }));
  s->read([](const ledger& l) {
    CHECK(l.find("accepted")->history.back().reason == "accepted but never scheduled");
    return 0;
  });
  std::this_thread::sleep_for(200ms);
  CHECK(state_of(*s, "scheduled") == ev::REFERRAL_STATE_SCHEDULED);
  const auto scan = scan_log(*log);
  CHECK(expiries(scan, "accepted") == 1);
  CHECK(expiries(scan, "unanswered") == 1);
  CHECK(expiries(scan, "scheduled") == 0);

  SECTION("a restarted service does not expire them again") {
    s->stop();
    s.reset();
    auto again = start_service(*log, clock, 20ms);
    std::this_thread::sleep_for(300ms);
    const auto after = scan_log(*log);
    CHECK(expiries(after, "unanswered") == 1);
    CHECK(expiries(after, "accepted") == 1);
    CHECK(state_of(*again, "unanswered") == ev::REFERRAL_STATE_EXPIRED);
  }
}

TEST_CASE("an answer that reaches the writer together with the overdue timer is never followed by an expiry",
          "[unit][referral]") {
  // The referral is overdue when the writer starts, and the receiver's
  // ACCEPT is already on the log, undecided. Either the timer wins (EXPIRED,
  // the ACCEPT refused) or the ACCEPT wins (ACCEPTED, with 30 days to be
  // scheduled); an ACCEPTED referral expired by the timer of its unanswered
  // version is neither.
  temp_dir dir{"yilian-referral-test"};
  test_clock clock;
  auto log = open_log(dir);
  {
    auto s = start_service(*log, clock, 20ms);
    REQUIRE(ask(*s, create("late")).referral);
    s->stop();
  }
  clock.advance(72h + 1min);
  const auto accept = make_command(by(ACCEPT, "late", "zs-tertiary", "c-late-accept"), clock.now());
  std::promise<result<bus::position>> published;
  log->publish(bus::message{.topic = topic, .key = "late", .value = accept.SerializeAsString(),
                            .headers = workflows::record_headers(accept)},
               [&](result<bus::position> r) { published.set_value(std::move(r)); });
  REQUIRE(published.get_future().get().has_value());

  auto s = start_service(*log, clock, 20ms);
  std::promise<decision> answer;
  s->wait("c-late-accept", [&](decision d) { answer.set_value(std::move(d)); });
  auto f = answer.get_future();
  REQUIRE(f.wait_for(20s) == std::future_status::ready);
  const auto d = f.get();
  std::this_thread::sleep_for(300ms);  // several sweeps
  const auto st = state_of(*s, "late");
  INFO("accept: " << (d.refused ? d.refused->code : std::string("taken")) << ", now " << state_name(st));
  if (d.refused) {
    CHECK(d.refused->code == "wrong_transition");
    CHECK(st == ev::REFERRAL_STATE_EXPIRED);
  } else {
    CHECK(st == ev::REFERRAL_STATE_ACCEPTED);
  }
}

TEST_CASE("a restarted service rebuilds the same ledger from the log and answers resends with the first answer",
          "[unit][referral]") {
  temp_dir dir{"yilian-referral-test"};
  test_clock clock;
  std::vector<std::string> before;
  {
    auto log = open_log(dir);
    auto s = start_service(*log, clock);
    auto up = create("up");
    up.id = "c-up";
    REQUIRE(ask(*s, up).referral);
    REQUIRE(ask(*s, by(RECEIVE, "up", "zs-tertiary", "c-up-recv")).referral);
    REQUIRE(ask(*s, by(ACCEPT, "up", "zs-tertiary", "c-up-acc")).referral);
    auto sch = by(SCHEDULE, "up", "zs-tertiary", "c-up-sch");
    sch.booking = "bk-up";
    sch.appointment_start = sh(2025, 9, 30, 10);
    REQUIRE(ask(*s, sch).referral);
    REQUIRE(code_of(ask(*s, by(ACCEPT, "up", "dc-chc", "c-up-own"))) == "wrong_transition");
    auto down = create("down", "zs-tertiary", "dc-chc");
    down.id = "c-down";
    down.linked = "up";
    REQUIRE(ask(*s, down).referral);
    REQUIRE(ask(*s, create("other", "xz-thc", "qh-county")).referral);
    auto rej = by(REJECT, "other", "qh-county", "c-other-rej");
    rej.reason_text = "no bed";
    REQUIRE(ask(*s, rej).referral);
    REQUIRE(code_of(ask(*s, by(ACCEPT, "nope", "zs-tertiary", "c-nope"))) == "not_found");
    before = all_referrals(*s);
    REQUIRE(before.size() == 3);
    s->stop();
  }  // the log is closed too

  auto log = open_log(dir);
  auto s = start_service(*log, clock);
  CHECK(all_referrals(*s) == before);
  s->read([](const ledger& l) {
    CHECK(l.find("up")->version == 4);
    CHECK(l.find("up")->followed_by == std::vector<std::string>{"down"});
    CHECK(l.find_by_booking("bk-up") == l.find("up"));
    CHECK(l.decided("c-nope")->refused->code == "not_found");
    CHECK(l.decided("c-up-own")->refused->code == "wrong_transition");
    CHECK_FALSE(l.decided("c-up-acc")->refused);
    return 0;
  });
  // Resends get the first answer.
  const auto again = ask(*s, by(ACCEPT, "up", "zs-tertiary", "c-up-acc"));
  REQUIRE(again.referral);
  CHECK_FALSE(again.refused);
  CHECK(code_of(ask(*s, by(ACCEPT, "nope", "zs-tertiary", "c-nope"))) == "not_found");
  // New commands are decided against the rebuilt ledger.
  CHECK(code_of(ask(*s, by(ACCEPT, "up", "zs-tertiary", "c-up-acc-2"))) == "wrong_transition");
  CHECK(code_of(ask(*s, create("up", "nh-chc"))) == "duplicate_referral_id");
  const auto cancelled = ask(*s, by(CANCEL, "up", "dc-chc", "c-up-cancel"));
  REQUIRE(cancelled.referral);
  CHECK(cancelled.referral->st == ev::REFERRAL_STATE_CANCELLED);
  CHECK(cancelled.referral->version == 5);
  const auto scan = scan_log(*log);
  CHECK(scan.decisions.at("c-up-acc") == 1);
  CHECK(scan.decisions.at("c-nope") == 1);
  CHECK(scan.decisions.at("c-up") == 1);
}
