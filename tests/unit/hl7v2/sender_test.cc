// The outbound MLLP sender against real TCP MLLP servers (scripted to answer
// AA/AR/AE, to stay silent or to be absent) and a real embedded log in a
// temporary directory: order, retries, dead letters, isolation between
// destinations, restart from committed offsets, metrics.
#include <catch2/catch.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "adapters/hl7v2/charset.h"
#include "adapters/hl7v2/framer.h"
#include "adapters/hl7v2/message.h"
#include "adapters/hl7v2/sender.h"
#include "engine/bus/embedded_log.h"
#include "engine/bus/publish.h"
#include "engine/core/murmur2.h"
#include "tests/support/eventually.h"
#include "tests/support/temp_dir.h"
#include "yilian/events/v1/envelope.pb.h"

using namespace yilian;
using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace ev = yilian::events::v1;
namespace cfg = yilian::config::v1;
using tcp = asio::ip::tcp;
using yilian::test::temp_dir;

namespace {

const std::string kOutbound = "yilian.outbound.v1";
const std::string kDeadletter = "yilian.deadletter.v1";

using yilian::test::eventually;

// What the scripted server does with one received message.
struct action {
  enum kind { ack, silent, close } what = ack;
  std::string code = "AA";
  std::string text;
};

// A tiny MLLP server on 127.0.0.1 (its own io_context thread) that answers
// each message as its script says. attempt counts the receptions of one
// control id (1 = first).
class mllp_server {
 public:
  using script = std::function<action(const std::string& control_id, int attempt)>;

  explicit mllp_server(script s) : script_(std::move(s)), acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    port_ = acceptor_.local_endpoint().port();
    asio::co_spawn(io_, accept_loop(), asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }
  ~mllp_server() {
    io_.stop();
    thread_.join();
  }
  mllp_server(const mllp_server&) = delete;
  mllp_server& operator=(const mllp_server&) = delete;

  std::uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  std::vector<std::string> received() const {
    std::lock_guard lock(mu_);
    return received_;
  }
  std::vector<std::string> texts() const {
    std::lock_guard lock(mu_);
    return texts_;
  }
  std::size_t count() const {
    std::lock_guard lock(mu_);
    return received_.size();
  }
  int connections() const { return connections_.load(); }
  int max_concurrent() const { return max_concurrent_.load(); }

 private:
  asio::awaitable<void> accept_loop() {
    for (;;) {
      boost::system::error_code ec;
      tcp::socket s = co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
      ++connections_;
      asio::co_spawn(io_, session(std::move(s)), asio::detached);
    }
  }

  asio::awaitable<void> session(tcp::socket s) {
    const int now = ++open_;
    if (now > max_concurrent_.load()) max_concurrent_.store(now);
    hl7v2::framer fr;
    std::array<char, 4096> buf{};
    for (;;) {
      boost::system::error_code ec;
      const std::size_t n = co_await s.async_read_some(asio::buffer(buf), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
      fr.feed(std::string_view(buf.data(), n));
      bool closed = false;
      for (auto e = fr.next(); e.kind == hl7v2::framer::event_kind::frame; e = fr.next()) {
        // No Catch2 assertions here: this is the server's thread. A message
        // that does not decode or parse is recorded under an empty id.
        auto decoded = hl7v2::decode_message(e.payload, cfg::CHARSET_UTF8);
        if (!decoded) decoded = hl7v2::decoded_text{.utf8 = e.payload};
        auto m = hl7v2::message::parse(decoded->utf8);
        if (!m) {
          std::lock_guard lock(mu_);
          received_.emplace_back();
          texts_.push_back(decoded->utf8);
          continue;
        }
        const std::string control = m->control_id();
        int attempt = 0;
        {
          std::lock_guard lock(mu_);
          attempt = ++attempts_[control];
          received_.push_back(control);
          texts_.push_back(decoded->utf8);
        }
        const action a = script_(control, attempt);
        if (a.what == action::silent) continue;
        if (a.what == action::close) {
          s.close(ec);
          closed = true;
          break;
        }
        std::string ack = "MSH|^~\\&|HIS|HOSP|YILIAN|zs-yilian|20250601083000||ACK^A04^ACK|ACK-" + control.substr(0, 8) +
                          "-" + std::to_string(attempt) + "|P|2.5\rMSA|" + a.code + "|" + control +
                          (a.text.empty() ? "" : "|" + a.text) + "\r";
        if (a.code == "AE") ack += "ERR||PID^1^3|103^Table value not found^HL70357|E||||" + a.text + "\r";
        // Named, not a temporary: g++ 12 mishandles temporaries in co_await expressions.
        const std::string framed = hl7v2::mllp_frame(ack);
        co_await asio::async_write(s, asio::buffer(framed), asio::redirect_error(asio::use_awaitable, ec));
        if (ec) break;
      }
      if (closed) break;
    }
    --open_;
  }

  script script_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;
  std::thread thread_;
  mutable std::mutex mu_;
  std::vector<std::string> received_;
  std::vector<std::string> texts_;
  std::map<std::string, int> attempts_;
  std::atomic<int> connections_{0};
  std::atomic<int> open_{0};
  std::atomic<int> max_concurrent_{0};
};

// A port nothing listens on.
std::uint16_t closed_port() {
  asio::io_context io;
  tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const auto p = a.local_endpoint().port();
  a.close();
  return p;
}

cfg::OutboundEndpoint endpoint(const std::string& address, std::uint32_t max_attempts = 3,
                               std::uint32_t timeout_ms = 5000) {
  cfg::OutboundEndpoint e;
  e.set_id("his-mllp");
  e.set_kind(cfg::ENDPOINT_KIND_MLLP);
  e.set_address(address);
  e.set_timeout_ms(timeout_ms);
  e.mutable_retry()->set_initial_backoff_ms(20);
  e.mutable_retry()->set_max_backoff_ms(80);
  e.mutable_retry()->set_max_attempts(max_attempts);
  e.add_event_types("PatientRegistered");
  e.add_event_types("ImagingStudyAvailable");
  return e;
}

config::hospital_profile profile(const std::string& hospital, std::vector<cfg::OutboundEndpoint> endpoints) {
  config::hospital_profile hp;
  hp.hospital_id = hospital;
  hp.file = "/nonexistent/profiles/" + hospital + "/profile.yaml";
  hp.profile.set_hospital(hospital);
  hp.profile.set_time_zone("UTC");
  hp.profile.set_default_charset(cfg::CHARSET_UTF8);
  auto* a = hp.profile.add_identifier_authorities();
  a->set_namespace_id("HOSP");
  a->set_type_code("MR");
  a->set_system("urn:yilian:id:" + hospital + ":mrn");
  a->set_type(ev::IDENTIFIER_TYPE_MRN);
  for (auto& e : endpoints) *hp.profile.add_outbound() = std::move(e);
  return hp;
}

config::loaded_consortium consortium(std::vector<config::hospital_profile> profiles) {
  config::loaded_consortium c;
  c.consortium.set_id("zs-yilian");
  c.consortium.set_name("test");
  for (const auto& p : profiles) {
    auto* h = c.consortium.add_hospitals();
    h->set_id(p.hospital_id);
    h->set_name(p.hospital_id);
  }
  c.profiles = std::move(profiles);
  return c;
}

ev::Envelope registration(const std::string& event_id, const std::string& hospital) {
  ev::Envelope e;
  e.set_event_id(event_id);
  e.set_type("yilian.events.v1.PatientRegistered");
  e.mutable_recorded_at()->set_seconds(1748766600);
  auto* id = e.mutable_subject()->add_identifiers();
  id->set_system("urn:yilian:id:" + hospital + ":mrn");
  id->set_value("MRN-" + event_id);
  e.mutable_patient_registered()->set_trigger("A04");
  return e;
}

// The embedded log with the two topics, plus helpers.
struct bus_env {
  temp_dir dir{"yilian-sender-test"};
  std::unique_ptr<bus::bus> log;

  bus_env() { open(); }
  void open() {
    auto b = bus::open_embedded_log(bus::embedded_log_options{.path = dir.path() / "bus.db", .default_partitions = 4});
    REQUIRE(b.has_value());
    log = std::move(*b);
    const std::vector<bus::topic_spec> topics{{.name = kOutbound, .partitions = 4}, {.name = kDeadletter, .partitions = 4}};
    REQUIRE(log->ensure_topics(topics).has_value());
  }
  void publish(const std::string& key, const std::string& value) {
    auto r = bus::publish_sync(*log, bus::message{.topic = kOutbound, .key = key, .value = value});
    REQUIRE(r.has_value());
  }
  void publish(const ev::Envelope& e, const std::string& hospital) { publish(hospital, e.SerializeAsString()); }

  // Every dead letter so far (a fresh group reads from the start).
  std::vector<std::pair<std::string, ev::Envelope>> dead_letters() {
    static std::atomic<int> n{0};
    auto c = log->subscribe(bus::consumer_options{.group = "test-dl-" + std::to_string(++n), .topics = {kDeadletter}});
    REQUIRE(c.has_value());
    std::vector<std::pair<std::string, ev::Envelope>> out;
    for (;;) {
      auto batch = (*c)->poll(100ms, 100);
      REQUIRE(batch.has_value());
      if (batch->empty()) break;
      for (const auto& r : *batch) {
        ev::Envelope e;
        REQUIRE(e.ParseFromString(r.value));
        out.emplace_back(r.key, std::move(e));
      }
    }
    return out;
  }
};

// An io_context with two threads, like `yilian serve`.
struct engine {
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
  std::vector<std::thread> threads;
  engine() {
    for (int i = 0; i < 2; ++i) threads.emplace_back([this] { io.run(); });
  }
  ~engine() {
    work.reset();
    io.stop();
    for (auto& t : threads) t.join();
  }
  void stop(hl7v2::outbound_sender& s) {
    s.stop();
    std::promise<void> done;
    asio::co_spawn(io, s.wait_stopped(), [&done](std::exception_ptr) { done.set_value(); });
    REQUIRE(done.get_future().wait_for(10s) == std::future_status::ready);
  }
};

hl7v2::sender_options fast_options() {
  hl7v2::sender_options o;
  o.poll_timeout = 20ms;
  o.lag_interval = 20ms;
  o.connect_timeout = 500ms;
  return o;
}

double metric(const metrics::registry& reg, const std::string& series) {
  const std::string text = reg.render();
  const auto at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + series.size() + 2));
}

std::string label(const std::string& hospital) { return "{destination=\"" + hospital + "/his-mllp\"}"; }

std::string unique_id(const std::string& base) {
  static std::atomic<int> n{0};
  return base + "-" + std::to_string(++n);
}

}  // namespace

TEST_CASE("records for a destination arrive in publish order, one at a time, and others are skipped", "[unit]") {
  bus_env env;
  mllp_server his([](const std::string&, int) { return action{}; });
  auto cfgs = consortium({profile("zs-tertiary", {endpoint(his.address())})});
  metrics::registry reg;
  engine eng;
  hl7v2::outbound_sender sender(eng.io.get_executor(), *env.log, cfgs, fast_options(), reg);
  // Every series exists from the start, at zero.
  REQUIRE(sender.start().has_value());
  CHECK(metric(reg, "yilian_outbound_delivered_total" + label("zs-tertiary")) == 0);
  CHECK(metric(reg, "yilian_outbound_dead_letters_total" + label("zs-tertiary")) == 0);
  CHECK(metric(reg, "yilian_outbound_retries_total" + label("zs-tertiary")) == 0);
  CHECK(metric(reg, "yilian_outbound_last_success_timestamp_seconds" + label("zs-tertiary")) == 0);

  std::vector<std::string> expected;
  for (int i = 0; i < 30; ++i) {
    const auto id = unique_id("order");
    env.publish(registration(id, "zs-tertiary"), "zs-tertiary");
    expected.push_back(id);
    if (i % 10 == 0) {
      // Another hospital's record, and a type this endpoint does not take.
      env.publish(registration(unique_id("other"), "qh-county"), "qh-county");
      ev::Envelope upd = registration(unique_id("upd"), "zs-tertiary");
      upd.mutable_patient_updated();
      env.publish(upd, "zs-tertiary");
    }
  }
  REQUIRE(eventually([&] { return his.count() >= expected.size(); }));
  std::this_thread::sleep_for(100ms);
  CHECK(his.received() == expected);
  CHECK(his.connections() == 1);
  CHECK(his.max_concurrent() == 1);
  // The messages say who they are for and carry the event id as MSH-10.
  auto first = hl7v2::message::parse(his.texts().front());
  REQUIRE(first.has_value());
  CHECK(first->get_raw("MSH-9") == "ADT^A04^ADT_A01");
  CHECK(first->get("MSH-4") == "zs-yilian");
  CHECK(first->get("MSH-6") == "zs-tertiary");
  CHECK(first->get("PID-3.4") == "HOSP");

  REQUIRE(eventually([&] { return metric(reg, "yilian_outbound_queue_depth" + label("zs-tertiary")) == 0; }));
  CHECK(metric(reg, "yilian_outbound_delivered_total" + label("zs-tertiary")) == 30);
  CHECK(metric(reg, "yilian_outbound_retries_total" + label("zs-tertiary")) == 0);
  CHECK(metric(reg, "yilian_outbound_last_success_timestamp_seconds" + label("zs-tertiary")) > 1.7e9);
  const auto st = sender.status();
  REQUIRE(st.size() == 1);
  CHECK(st[0].label == "zs-tertiary/his-mllp");
  CHECK(st[0].group == "yilian-outbound-zs-tertiary-his-mllp");
  CHECK(st[0].delivered == 30);
  CHECK(st[0].connected);
  CHECK(st[0].last_outcome == "AA");
  eng.stop(sender);

  // Everything, skipped records included, was committed: a restart sends nothing again.
  hl7v2::outbound_sender again(eng.io.get_executor(), *env.log, cfgs, fast_options(), reg);
  REQUIRE(again.start().has_value());
  std::this_thread::sleep_for(300ms);
  CHECK(his.count() == expected.size());
  CHECK(again.status()[0].queue_depth == 0);
  eng.stop(again);
}

TEST_CASE("an AR is retried with backoff until the receiver accepts, with the same control id", "[unit]") {
  bus_env env;
  mllp_server his([](const std::string&, int attempt) {
    return attempt < 3 ? action{.what = action::ack, .code = "AR", .text = "busy"} : action{};
  });
  auto cfgs = consortium({profile("zs-tertiary", {endpoint(his.address())})});
  metrics::registry reg;
  engine eng;
  hl7v2::outbound_sender sender(eng.io.get_executor(), *env.log, cfgs, fast_options(), reg);
  REQUIRE(sender.start().has_value());
  const auto a = unique_id("ar");
  const auto b = unique_id("ar");
  env.publish(registration(a, "zs-tertiary"), "zs-tertiary");
  env.publish(registration(b, "zs-tertiary"), "zs-tertiary");
  REQUIRE(eventually([&] { return metric(reg, "yilian_outbound_delivered_total" + label("zs-tertiary")) == 2; }));
  CHECK(his.received() == std::vector<std::string>{a, a, a, b, b, b});
  CHECK(metric(reg, "yilian_outbound_retries_total" + label("zs-tertiary")) == 4);
  CHECK(metric(reg, "yilian_outbound_dead_letters_total" + label("zs-tertiary")) == 0);
  // AR is not bounded by max_attempts (3): the third attempt was accepted,
  // and nothing was dead-lettered.
  CHECK(env.dead_letters().empty());
  eng.stop(sender);
}

TEST_CASE("an ACK timeout reconnects and sends the same message again", "[unit]") {
  bus_env env;
  mllp_server his([](const std::string&, int attempt) { return attempt == 1 ? action{.what = action::silent} : action{}; });
  auto cfgs = consortium({profile("zs-tertiary", {endpoint(his.address(), 3, 200)})});
  metrics::registry reg;
  engine eng;
  hl7v2::outbound_sender sender(eng.io.get_executor(), *env.log, cfgs, fast_options(), reg);
  REQUIRE(sender.start().has_value());
  const auto a = unique_id("silent");
  env.publish(registration(a, "zs-tertiary"), "zs-tertiary");
  REQUIRE(eventually([&] { return metric(reg, "yilian_outbound_delivered_total" + label("zs-tertiary")) == 1; }));
  CHECK(his.received() == std::vector<std::string>{a, a});
  CHECK(his.connections() == 2);  // a timed-out connection is never reused
  CHECK(metric(reg, "yilian_outbound_retries_total" + label("zs-tertiary")) == 1);
  eng.stop(sender);
}

TEST_CASE("AE is retried up to max_attempts, then dead-lettered, committed, and the next record goes", "[unit]") {
  bus_env env;
  const auto bad = unique_id("ae");
  mllp_server his([bad](const std::string& control, int) {
    return control == bad ? action{.what = action::ack, .code = "AE", .text = "unknown MRN authority"} : action{};
  });
  auto cfgs = consortium({profile("zs-tertiary", {endpoint(his.address(), 3)})});
  metrics::registry reg;
  engine eng;
  hl7v2::outbound_sender sender(eng.io.get_executor(), *env.log, cfgs, fast_options(), reg);
  REQUIRE(sender.start().has_value());
  const auto good = unique_id("ok");
  auto bad_event = registration(bad, "zs-tertiary");
  bad_event.mutable_correlation()->set_referral_id("REF-1");
  env.publish(bad_event, "zs-tertiary");
  env.publish(registration(good, "zs-tertiary"), "zs-tertiary");
  REQUIRE(eventually([&] { return metric(reg, "yilian_outbound_delivered_total" + label("zs-tertiary")) == 1; }));
  CHECK(his.received() == std::vector<std::string>{bad, bad, bad, good});
  CHECK(metric(reg, "yilian_outbound_dead_letters_total" + label("zs-tertiary")) == 1);
  CHECK(metric(reg, "yilian_outbound_retries_total" + label("zs-tertiary")) == 2);

  auto dls = env.dead_letters();
  REQUIRE(dls.size() == 1);
  const auto& [key, dl] = dls[0];
  CHECK(key == "zs-tertiary");
  CHECK(dl.type() == "yilian.events.v1.DeadLetter");
  CHECK(dl.event_id().size() == 64);
  CHECK(dl.causation_id() == bad);
  CHECK(dl.correlation().referral_id() == "REF-1");
  CHECK(dl.subject().identifiers_size() == 0);  // no patient data copied
  REQUIRE(dl.has_dead_letter());
  const auto& d = dl.dead_letter();
  CHECK(d.stage() == "outbound");
  CHECK(d.where() == "outbound:zs-tertiary/his-mllp");
  CHECK(d.attempts() == 3);
  CHECK(d.original_event_id() == bad);
  CHECK(d.original_topic() == kOutbound);
  CHECK(d.control_id() == bad);
  CHECK(d.message_type() == "ADT^A04^ADT_A01");
  CHECK(d.error_code() == "validation_failed");
  CHECK(d.reason().find("AE") != std::string::npos);
  CHECK(d.reason().find("unknown MRN authority") != std::string::npos);
  CHECK(d.source_hospital() == "zs-tertiary");
  CHECK(d.protocol() == ev::PROTOCOL_HL7V2_MLLP);
  const std::string prefix = "event://" + kOutbound + "/" + std::to_string(partition_for_key("zs-tertiary", 4)) + "/";
  CHECK(d.raw().uri().starts_with(prefix));
  CHECK(d.raw().sha256().size() == 64);
  CHECK(d.raw().size_bytes() == bad_event.SerializeAsString().size());
  eng.stop(sender);

  // Both are committed: nothing is sent again after a restart.
  hl7v2::outbound_sender again(eng.io.get_executor(), *env.log, cfgs, fast_options(), reg);
  REQUIRE(again.start().has_value());
  std::this_thread::sleep_for(300ms);
  CHECK(his.count() == 4);
  eng.stop(again);
}

TEST_CASE("an event HL7 v2 cannot express is dead-lettered at once, without an attempt", "[unit]") {
  bus_env env;
  mllp_server his([](const std::string&, int) { return action{}; });
  auto cfgs = consortium({profile("zs-tertiary", {endpoint(his.address())})});
  metrics::registry reg;
  engine eng;
  hl7v2::outbound_sender sender(eng.io.get_executor(), *env.log, cfgs, fast_options(), reg);
  REQUIRE(sender.start().has_value());
  ev::Envelope img = registration(unique_id("img"), "zs-tertiary");
  img.mutable_imaging_study_available()->set_study_uid("1.2.3");
  const auto next = unique_id("next");
  env.publish(img, "zs-tertiary");
  // Not an Envelope at all: quarantined too, never dropped.
  env.publish("zs-tertiary", std::string("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 11));
  env.publish(registration(next, "zs-tertiary"), "zs-tertiary");
  REQUIRE(eventually([&] { return metric(reg, "yilian_outbound_delivered_total" + label("zs-tertiary")) == 1; }));
  CHECK(his.received() == std::vector<std::string>{next});
  auto dls = env.dead_letters();
  REQUIRE(dls.size() == 2);
  CHECK(dls[0].second.dead_letter().error_code() == "unsupported");
  CHECK(dls[0].second.dead_letter().attempts() == 0);
  CHECK(dls[0].second.dead_letter().reason().find("ImagingStudyAvailable") != std::string::npos);
  CHECK(dls[1].second.dead_letter().error_code() == "parse_error");
  CHECK(dls[1].second.dead_letter().original_event_id().empty());
  CHECK(dls[1].second.dead_letter().raw().size_bytes() == 11);
  CHECK(metric(reg, "yilian_outbound_dead_letters_total" + label("zs-tertiary")) == 2);
  eng.stop(sender);
}

TEST_CASE("a stalled destination reads ahead only up to its queue bound, and its depth still counts the backlog",
          "[unit]") {
  bus_env env;
  auto cfgs = consortium({profile("dead-hospital", {endpoint("127.0.0.1:" + std::to_string(closed_port()))})});
  metrics::registry reg;
  engine eng;
  auto opts = fast_options();
  opts.queue_capacity = 4;
  hl7v2::outbound_sender sender(eng.io.get_executor(), *env.log, cfgs, opts, reg);
  REQUIRE(sender.start().has_value());
  for (int i = 0; i < 12; ++i) env.publish(registration(unique_id("stalled"), "dead-hospital"), "dead-hospital");
  // 4 read ahead (one of them in flight) + 8 unread in its partition.
  REQUIRE(eventually([&] { return metric(reg, "yilian_outbound_queue_depth" + label("dead-hospital")) == 12; }, 3s));
  for (int i = 0; i < 3; ++i) env.publish(registration(unique_id("stalled"), "dead-hospital"), "dead-hospital");
  REQUIRE(eventually([&] { return metric(reg, "yilian_outbound_queue_depth" + label("dead-hospital")) == 15; }, 3s));
  eng.stop(sender);
}

TEST_CASE("an unreachable hospital never delays another one", "[unit]") {
  bus_env env;
  mllp_server healthy([](const std::string&, int) { return action{}; });
  auto cfgs = consortium({profile("dead-hospital", {endpoint("127.0.0.1:" + std::to_string(closed_port()))}),
                          profile("zs-tertiary", {endpoint(healthy.address())})});
  metrics::registry reg;
  engine eng;
  hl7v2::outbound_sender sender(eng.io.get_executor(), *env.log, cfgs, fast_options(), reg);
  REQUIRE(sender.start().has_value());
  std::vector<std::string> expected;
  for (int i = 0; i < 20; ++i) {
    env.publish(registration(unique_id("dead"), "dead-hospital"), "dead-hospital");
    const auto id = unique_id("live");
    env.publish(registration(id, "zs-tertiary"), "zs-tertiary");
    expected.push_back(id);
  }
  const auto started = std::chrono::steady_clock::now();
  REQUIRE(eventually([&] { return healthy.count() >= expected.size(); }, 5s));
  const auto took = std::chrono::steady_clock::now() - started;
  CHECK(healthy.received() == expected);
  CHECK(took < 3s);
  // Meanwhile the dead hospital is still retrying its first record (its second
  // attempt may come after the healthy one is done: wait for it).
  REQUIRE(eventually([&] { return sender.status().at(0).attempt >= 2; }, 3s));
  const auto st = sender.status();
  REQUIRE(st.size() == 2);
  CHECK(st[0].hospital == "dead-hospital");
  CHECK(st[0].delivered == 0);
  CHECK(st[0].attempt >= 2);
  CHECK_FALSE(st[0].connected);
  CHECK(st[0].last_outcome == "unavailable");
  CHECK(metric(reg, "yilian_outbound_retries_total" + label("dead-hospital")) >= 1);
  // Its backlog is visible: all 20 records wait (exactly: nothing else shares
  // the count once its partition has been read).
  REQUIRE(eventually([&] { return metric(reg, "yilian_outbound_queue_depth" + label("dead-hospital")) == 20; }, 3s));
  REQUIRE(eventually([&] { return metric(reg, "yilian_outbound_queue_depth" + label("zs-tertiary")) == 0; }, 3s));
  // Connection failures are not AE: nothing is dead-lettered however long it lasts.
  CHECK(metric(reg, "yilian_outbound_dead_letters_total" + label("dead-hospital")) == 0);
  eng.stop(sender);
}

TEST_CASE("a restart resumes from the committed offsets and resends the message in flight with its MSH-10", "[unit]") {
  bus_env env;
  std::vector<std::string> ids;
  for (int i = 0; i < 6; ++i) ids.push_back(unique_id("restart"));
  std::atomic<bool> hang{true};
  // The fourth message gets no answer while `hang` is set.
  mllp_server his([&](const std::string& control, int) {
    return control == ids[3] && hang.load() ? action{.what = action::silent} : action{};
  });
  auto cfgs = consortium({profile("zs-tertiary", {endpoint(his.address(), 3, 10000)})});
  metrics::registry reg;
  engine eng;
  {
    hl7v2::outbound_sender sender(eng.io.get_executor(), *env.log, cfgs, fast_options(), reg);
    REQUIRE(sender.start().has_value());
    for (const auto& id : ids) env.publish(registration(id, "zs-tertiary"), "zs-tertiary");
    REQUIRE(eventually([&] { return his.count() == 4; }));
    std::this_thread::sleep_for(100ms);  // let the commits of the first three land
    const auto st = sender.status();
    CHECK(st[0].current_event_id == ids[3]);
    CHECK(st[0].attempt == 1);
    eng.stop(sender);  // abandons the exchange in flight
  }
  hang = false;
  {
    hl7v2::outbound_sender sender(eng.io.get_executor(), *env.log, cfgs, fast_options(), reg);
    REQUIRE(sender.start().has_value());
    REQUIRE(eventually([&] { return his.count() == 7; }));
    std::this_thread::sleep_for(100ms);
    eng.stop(sender);
  }
  // 1-3 once; 4 twice (at-least-once, same control id), 5 and 6 once, in order.
  CHECK(his.received() == std::vector<std::string>{ids[0], ids[1], ids[2], ids[3], ids[3], ids[4], ids[5]});
  const auto texts = his.texts();
  CHECK(texts[3] == texts[4]);  // byte-identical redelivery

  SECTION("also across a reopened bus") {
    env.log.reset();
    env.open();
    hl7v2::outbound_sender sender(eng.io.get_executor(), *env.log, cfgs, fast_options(), reg);
    REQUIRE(sender.start().has_value());
    std::this_thread::sleep_for(300ms);
    CHECK(his.count() == 7);
    eng.stop(sender);
  }
}

TEST_CASE("a destination whose address is not host:port refuses to start", "[unit]") {
  bus_env env;
  auto cfgs = consortium({profile("zs-tertiary", {endpoint("no-port-here")})});
  metrics::registry reg;
  engine eng;
  hl7v2::outbound_sender sender(eng.io.get_executor(), *env.log, cfgs, fast_options(), reg);
  auto r = sender.start();
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == errc::config_error);
  CHECK(hl7v2::outbound_sender::group_name("zs-yilian", "h", "e") == "zs-yilian-yilian-outbound-h-e");
  CHECK(hl7v2::outbound_sender::group_name("", "h", "e") == "yilian-outbound-h-e");
}
