// The webhook sender against real HTTP(S) servers (Boost.Beast, scripted to
// answer 2xx/4xx/5xx, to be slow, to hang or to be absent) and a real embedded
// log in a temporary directory: order, signatures, retries, dead letters,
// isolation between destinations, restart from committed offsets, the patient
// notification channel and its bound, TLS, secrets, metrics shared with the
// MLLP sender.
#include <catch2/catch.hpp>

#include <stdlib.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "adapters/hl7v2/sender.h"
#include "adapters/webhook/notification.h"
#include "adapters/webhook/sender.h"
#include "adapters/webhook/signing.h"
#include "engine/bus/embedded_log.h"
#include "engine/bus/publish.h"
#include "engine/core/log.h"
#include "tests/support/eventually.h"
#include "tests/support/temp_dir.h"
#include "yilian/events/v1/envelope.pb.h"

using namespace yilian;
using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
namespace ev = yilian::events::v1;
namespace cfg = yilian::config::v1;
using tcp = asio::ip::tcp;
using Catch::Matchers::Contains;
using yilian::test::temp_dir;

namespace {

const std::string kOutbound = "yilian.outbound.v1";
const std::string kDeadletter = "yilian.deadletter.v1";
const std::string kPhone = "13800138000";
const std::string kResidentId = "110101199003070019";

using yilian::test::eventually;

// --- a scripted HTTP server ----------------------------------------------------

struct request_seen {
  std::string target;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::string key;  // Idempotency-Key
  int attempt = 0;  // receptions of this key so far (1 = first)
  int connection = 0;
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string{} : it->second;
  }
};

struct reply {
  unsigned status = 200;
  std::string body = "ok";
  std::chrono::milliseconds delay{0};
  bool hang = false;  // never answer (the client's deadline ends it)
  std::vector<std::pair<std::string, std::string>> headers;
  bool close_after = false;  // answer as if keeping the connection, then close it
};

// An HTTP/1.1 server on 127.0.0.1 (plain, or TLS with `tls`), on its own
// io_context thread; answers each request as the script says.
class http_server {
 public:
  using script = std::function<reply(const request_seen&)>;

  explicit http_server(script s, ssl::context* tls = nullptr)
      : script_(std::move(s)), tls_(tls), acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    port_ = acceptor_.local_endpoint().port();
    asio::co_spawn(io_, accept_loop(), asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }
  ~http_server() {
    io_.stop();
    thread_.join();
  }
  http_server(const http_server&) = delete;
  http_server& operator=(const http_server&) = delete;

  std::string url(const std::string& path) const {
    return std::string(tls_ != nullptr ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_) + path;
  }
  std::uint16_t port() const { return port_; }
  void set_script(script s) {
    std::lock_guard lock(mu_);
    script_ = std::move(s);
  }
  std::vector<request_seen> requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }
  std::vector<std::string> keys() const {
    std::vector<std::string> out;
    for (const auto& r : requests()) out.push_back(r.key);
    return out;
  }
  std::size_t count() const {
    std::lock_guard lock(mu_);
    return requests_.size();
  }
  std::size_t count(const std::string& key) const {
    std::size_t n = 0;
    for (const auto& r : requests()) n += r.key == key ? 1u : 0u;
    return n;
  }
  int connections() const { return connections_.load(); }
  int max_concurrent() const { return max_concurrent_.load(); }

 private:
  asio::awaitable<void> accept_loop() {
    for (;;) {
      boost::system::error_code ec;
      tcp::socket s = co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
      const int id = ++connections_;
      if (tls_ != nullptr) {
        asio::co_spawn(io_, tls_session(std::move(s), id), asio::detached);
      } else {
        asio::co_spawn(io_, plain_session(std::move(s), id), asio::detached);
      }
    }
  }

  asio::awaitable<void> plain_session(tcp::socket s, int id) { co_await serve(s, id); }

  asio::awaitable<void> tls_session(tcp::socket s, int id) {
    ssl::stream<tcp::socket> stream(std::move(s), *tls_);
    boost::system::error_code ec;
    co_await stream.async_handshake(ssl::stream_base::server, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
    co_await serve(stream, id);
  }

  // No Catch2 assertions here: this is the server's thread.
  template <class Stream>
  asio::awaitable<void> serve(Stream& stream, int id) {
    const int now = ++open_;
    if (now > max_concurrent_.load()) max_concurrent_.store(now);
    beast::flat_buffer buffer;
    for (;;) {
      boost::system::error_code ec;
      http::request<http::string_body> req;
      co_await http::async_read(stream, buffer, req, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
      request_seen seen;
      seen.target = std::string(req.target());
      for (const auto& f : req) {
        std::string name(f.name_string());
        for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        seen.headers[name] = std::string(f.value());
      }
      seen.body = req.body();
      seen.key = seen.header("idempotency-key");
      seen.connection = id;
      script current;
      {
        std::lock_guard lock(mu_);
        seen.attempt = ++attempts_[seen.key];
        requests_.push_back(seen);
        current = script_;
      }
      const reply r = current(seen);
      if (r.hang || r.delay > 0ms) {
        asio::steady_timer t(io_);
        t.expires_after(r.hang ? std::chrono::milliseconds(60s) : r.delay);
        co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        if (r.hang) break;
      }
      http::response<http::string_body> res{static_cast<http::status>(r.status), 11};
      res.set(http::field::content_type, "text/plain; charset=utf-8");
      for (const auto& [k, v] : r.headers) res.set(k, v);
      res.body() = r.body;
      res.keep_alive(req.keep_alive());
      res.prepare_payload();
      co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
      if (ec || !res.keep_alive() || r.close_after) break;
    }
    --open_;
  }

  mutable std::mutex mu_;
  script script_;
  ssl::context* tls_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;
  std::thread thread_;
  std::vector<request_seen> requests_;
  std::map<std::string, int> attempts_;
  std::atomic<int> connections_{0};
  std::atomic<int> open_{0};
  std::atomic<int> max_concurrent_{0};
};

reply ok(const request_seen&) { return reply{}; }

// A port nothing listens on.
std::uint16_t closed_port() {
  asio::io_context io;
  tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const auto p = a.local_endpoint().port();
  a.close();
  return p;
}

// --- configuration -------------------------------------------------------------

cfg::OutboundEndpoint webhook_endpoint(const std::string& address, std::uint32_t max_attempts = 3,
                              std::uint32_t timeout_ms = 3000) {
  cfg::OutboundEndpoint e;
  e.set_id("webhook");
  e.set_kind(cfg::ENDPOINT_KIND_WEBHOOK);
  e.set_address(address);
  e.set_timeout_ms(timeout_ms);
  e.mutable_retry()->set_initial_backoff_ms(20);
  e.mutable_retry()->set_max_backoff_ms(80);
  e.mutable_retry()->set_max_attempts(max_attempts);
  e.add_event_types("AppointmentChanged");
  e.add_event_types("ReportIssued");
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

config::loaded_consortium consortium(std::vector<config::hospital_profile> profiles,
                                     const std::filesystem::path& directory = "/nonexistent") {
  config::loaded_consortium c;
  c.directory = directory;
  c.file = directory / "consortium.yaml";
  c.consortium.set_id("zs-yilian");
  c.consortium.set_name("test");
  c.consortium.set_time_zone("Asia/Shanghai");
  auto* t = c.consortium.add_hospitals();
  t->set_id("zs-tertiary");
  t->set_name("中山市人民医院");
  for (const auto& p : profiles) {
    auto* h = c.consortium.add_hospitals();
    h->set_id(p.hospital_id);
    h->set_name(p.hospital_id);
  }
  auto* e = c.consortium.add_equipment();
  e->set_id("zs-ct-1");
  e->set_hospital("zs-tertiary");
  auto* x = e->add_exam_types();
  x->set_code("CT-HEAD-PLAIN");
  x->set_name("头颅CT平扫");
  c.profiles = std::move(profiles);
  return c;
}

void add_patient_channel(config::loaded_consortium& c, const std::string& address, std::uint32_t max_attempts = 3) {
  auto* pn = c.consortium.mutable_patient_notifications();
  auto& ep = *pn->mutable_endpoint();
  ep = webhook_endpoint(address, max_attempts);
  ep.set_id("sms-gateway");
  ep.add_event_types("CarePlanOccurrence");
  auto add = [&](const char* type, const char* when, const char* text) {
    auto* t = pn->add_templates();
    t->set_event_type(type);
    t->set_when(when);
    t->set_text(text);
  };
  add("AppointmentChanged", "", "{exam}预约{state}。");
  add("AppointmentChanged", "BOOKED", "您已预约{start}在{hospital}做{exam}。");
  add("ReportIssued", "", "您在{hospital}的{exam}{status}已出，报告号{report_id}。");
  // Nothing for CarePlanOccurrence: such an event cannot be rendered.
}

ev::Envelope appointment(const std::string& event_id, ev::BookingState state = ev::BOOKING_STATE_BOOKED) {
  ev::Envelope e;
  e.set_event_id(event_id);
  e.set_type("yilian.events.v1.AppointmentChanged");
  e.mutable_recorded_at()->set_seconds(1748766600);
  e.mutable_source()->set_hospital("zs-tertiary");
  e.mutable_source()->set_protocol(ev::PROTOCOL_ENGINE);
  auto* id = e.mutable_subject()->add_identifiers();
  id->set_system("urn:yilian:id:cn:resident");
  id->set_value(kResidentId);
  id->set_type(ev::IDENTIFIER_TYPE_RESIDENT_ID);
  e.mutable_correlation()->set_appointment_id("BK-" + event_id);
  auto* a = e.mutable_appointment_changed();
  a->set_appointment_id("BK-" + event_id);
  a->set_state(state);
  a->set_owning_hospital("zs-tertiary");
  a->set_requesting_hospital("dc-chc");
  a->mutable_start()->set_seconds(1748914200);  // 2025-06-03 09:30 in Shanghai
  a->mutable_catalogue_code()->set_code("CT-HEAD-PLAIN");
  auto* phone = a->mutable_patient()->add_telecom();
  phone->set_system("phone");
  phone->set_value(kPhone);
  phone->set_use(ev::CONTACT_USE_MOBILE);
  return e;
}

ev::Envelope report(const std::string& event_id) {
  ev::Envelope e = appointment(event_id);
  e.set_type("yilian.events.v1.ReportIssued");
  auto* r = e.mutable_report_issued();
  r->set_report_id("RPT-" + event_id);
  r->set_status_code("F");
  r->set_performing_hospital("zs-tertiary");
  r->mutable_catalogue_code()->set_code("CT-HEAD-PLAIN");
  return e;
}

std::string unique_id(const std::string& base) {
  static std::atomic<int> n{0};
  return base + "-" + std::to_string(++n);
}

// --- bus and engine ------------------------------------------------------------

struct bus_env {
  temp_dir dir{"yilian-webhook-test"};
  std::unique_ptr<bus::bus> log;

  bus_env() {
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
  void publish(const ev::Envelope& e, const std::string& key) { publish(key, e.SerializeAsString()); }

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
  template <class Sender>
  void stop(Sender& s) {
    std::promise<void> done;
    s.stop();
    asio::co_spawn(io, s.wait_stopped(), [&done](std::exception_ptr) { done.set_value(); });
    REQUIRE(done.get_future().wait_for(10s) == std::future_status::ready);
  }
};

webhook::sender_options fast_options() {
  webhook::sender_options o;
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

std::string label(const std::string& destination) { return "{destination=\"" + destination + "\"}"; }

// Lines logged while it lives (debug and up).
struct log_capture {
  std::mutex mu;
  std::vector<std::string> lines;
  log_capture() {
    REQUIRE(log::configure({.min_level = log::level::debug,
                            .to_stderr = false,
                            .file = {},
                            .capture = [this](std::string_view l) {
                              std::lock_guard lock(mu);
                              lines.emplace_back(l);
                            }}));
  }
  ~log_capture() { (void)log::configure({}); }
  std::vector<std::string> all() {
    std::lock_guard lock(mu);
    return lines;
  }
};

}  // namespace

// --- hospitals -------------------------------------------------------------------

TEST_CASE("hospital webhooks get signed JSON envelopes in publish order, one at a time, on one connection",
          "[unit]") {
  bus_env env;
  env.dir.write("secrets/dc-chc.key", "s3cret\n");
  http_server gw(ok);
  auto ep = webhook_endpoint(gw.url("/yilian/events?src=yilian"));
  ep.mutable_credentials()->set_scheme(cfg::AUTH_SCHEME_HMAC_SHA256);
  ep.mutable_credentials()->mutable_secret()->set_file("secrets/dc-chc.key");
  // The same hospital also has an MLLP endpoint (nothing it takes is
  // published): the MLLP sender runs beside, on the same registry.
  cfg::OutboundEndpoint mllp;
  mllp.set_id("his-mllp");
  mllp.set_kind(cfg::ENDPOINT_KIND_MLLP);
  mllp.set_address("127.0.0.1:" + std::to_string(closed_port()));
  mllp.add_event_types("PatientRegistered");
  auto cfgs = consortium({profile("dc-chc", {ep, mllp})}, env.dir.path());
  metrics::registry reg;
  engine eng;
  hl7v2::sender_options hl7_options;
  hl7_options.poll_timeout = 20ms;
  hl7v2::outbound_sender hl7(eng.io.get_executor(), *env.log, cfgs, hl7_options, reg);
  REQUIRE(hl7.start().has_value());
  auto started = webhook::start_webhook_senders(eng.io.get_executor(), *env.log, cfgs, fast_options(), reg);
  REQUIRE(started.has_value());
  auto& sender = **started;
  // Every series exists from the start, at zero, beside the MLLP sender's.
  CHECK(metric(reg, "yilian_outbound_delivered_total" + label("dc-chc/webhook")) == 0);
  CHECK(metric(reg, "yilian_outbound_dead_letters_total" + label("dc-chc/webhook")) == 0);
  CHECK(metric(reg, "yilian_outbound_retries_total" + label("dc-chc/webhook")) == 0);
  CHECK(metric(reg, "yilian_outbound_last_success_timestamp_seconds" + label("dc-chc/webhook")) == 0);
  CHECK(metric(reg, "yilian_outbound_delivered_total" + label("dc-chc/his-mllp")) == 0);

  std::vector<std::string> expected;
  std::map<std::string, ev::Envelope> published;
  for (int i = 0; i < 25; ++i) {
    const auto id = unique_id("order");
    auto e = i % 2 == 0 ? appointment(id) : report(id);
    env.publish(e, "dc-chc");
    expected.push_back(id);
    published[id] = e;
    if (i % 8 == 0) {
      // Another hospital's record, a type the endpoint does not take, and a
      // delivery outcome (never delivered).
      env.publish(appointment(unique_id("other")), "qh-county");
      ev::Envelope upd = appointment(unique_id("upd"));
      upd.mutable_patient_updated();
      env.publish(upd, "dc-chc");
      ev::Envelope ack = appointment(unique_id("ack"));
      ack.mutable_delivery_acknowledged()->set_delivered_event_id(id);
      env.publish(ack, "dc-chc");
    }
  }
  REQUIRE(eventually([&] { return gw.count() >= expected.size(); }));
  std::this_thread::sleep_for(150ms);
  CHECK(gw.keys() == expected);
  CHECK(gw.max_concurrent() == 1);
  CHECK(gw.connections() == 1);  // kept alive

  const auto reqs = gw.requests();
  for (const auto& r : reqs) {
    INFO(r.key);
    CHECK(r.target == "/yilian/events?src=yilian");
    CHECK(r.header("content-type") == "application/json; charset=utf-8");
    CHECK(r.header("x-yilian-event-id") == r.key);
    CHECK(r.header("x-yilian-attempt") == "1");
    CHECK(r.header("host") == "127.0.0.1:" + std::to_string(gw.port()));
    CHECK(r.header("x-yilian-event-type") == webhook::body_type(published[r.key]));
    const std::string ts = r.header("x-yilian-timestamp");
    REQUIRE(!ts.empty());
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch());
    CHECK(std::abs(std::stoll(ts) - now.count()) < 60);
    // The receiver's check: HMAC over "<timestamp>.<raw body>" with the shared secret.
    CHECK(r.header("x-yilian-signature") == "sha256=" + webhook::hmac_sha256_hex("s3cret", ts + "." + r.body));
    CHECK(r.header("authorization").empty());
    // The body is the envelope in protobuf JSON.
    ev::Envelope parsed;
    REQUIRE(google::protobuf::util::JsonStringToMessage(r.body, &parsed).ok());
    CHECK(google::protobuf::util::MessageDifferencer::Equals(parsed, published[r.key]));
  }

  REQUIRE(eventually([&] { return metric(reg, "yilian_outbound_queue_depth" + label("dc-chc/webhook")) == 0; }));
  CHECK(metric(reg, "yilian_outbound_delivered_total" + label("dc-chc/webhook")) == 25);
  CHECK(metric(reg, "yilian_outbound_retries_total" + label("dc-chc/webhook")) == 0);
  CHECK(metric(reg, "yilian_outbound_last_success_timestamp_seconds" + label("dc-chc/webhook")) > 1.7e9);
  const auto st = sender.status();
  REQUIRE(st.size() == 1);  // the MLLP endpoint is not the webhook sender's
  CHECK(st[0].label == "dc-chc/webhook");
  CHECK(st[0].group == "yilian-outbound-dc-chc-webhook");
  CHECK(st[0].address == "http://127.0.0.1:" + std::to_string(gw.port()));
  CHECK(st[0].delivered == 25);
  CHECK(st[0].connected);
  CHECK(st[0].last_outcome == "200");
  eng.stop(sender);
  eng.stop(hl7);

  // Everything, skipped records included, was committed: a restart sends nothing again.
  webhook::webhook_sender again(eng.io.get_executor(), *env.log, cfgs, fast_options(), reg);
  REQUIRE(again.start().has_value());
  std::this_thread::sleep_for(300ms);
  CHECK(gw.count() == expected.size());
  CHECK(again.status()[0].queue_depth == 0);
  eng.stop(again);
}

TEST_CASE("a 503 or 429 is retried with backoff and the same Idempotency-Key; later events wait", "[unit]") {
  bus_env env;
  const std::string first = unique_id("busy");
  http_server gw([&](const request_seen& r) {
    if (r.key != first || r.attempt >= 3) return reply{};
    if (r.attempt == 1) return reply{.status = 503, .body = "maintenance", .delay = 0ms, .hang = false, .headers = {}};
    // Retry-After is honoured up to max_backoff_ms (80 ms here).
    return reply{.status = 429, .body = "slow down", .delay = 0ms, .hang = false, .headers = {{"Retry-After", "30"}}};
  });
  auto cfgs = consortium({profile("dc-chc", {webhook_endpoint(gw.url("/hook"))})});
  metrics::registry reg;
  engine eng;
  webhook::webhook_sender sender(eng.io.get_executor(), *env.log, cfgs, fast_options(), reg);
  REQUIRE(sender.start().has_value());
  const std::string second = unique_id("next");
  const std::string third = unique_id("next");
  const auto t0 = std::chrono::steady_clock::now();
  for (const auto& id : {first, second, third}) env.publish(appointment(id), "dc-chc");
  REQUIRE(eventually([&] { return gw.count() >= 5; }));
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);  // not the 30 s the gateway asked for
  std::this_thread::sleep_for(100ms);
  CHECK(gw.keys() == std::vector<std::string>{first, first, first, second, third});
  const auto reqs = gw.requests();
  CHECK(reqs[0].header("x-yilian-attempt") == "1");
  CHECK(reqs[1].header("x-yilian-attempt") == "2");
  CHECK(reqs[2].header("x-yilian-attempt") == "3");
  CHECK(reqs[2].header("idempotency-key") == first);
  CHECK(metric(reg, "yilian_outbound_retries_total" + label("dc-chc/webhook")) == 2);
  CHECK(metric(reg, "yilian_outbound_delivered_total" + label("dc-chc/webhook")) == 3);
  CHECK(metric(reg, "yilian_outbound_dead_letters_total" + label("dc-chc/webhook")) == 0);
  eng.stop(sender);
  CHECK(env.dead_letters().empty());
}

TEST_CASE("a refused event is retried up to max_attempts, then dead-lettered, and the next one goes on", "[unit]") {
  bus_env env;
  const std::string refused = unique_id("refused");
  http_server gw([&](const request_seen& r) {
    if (r.key == refused) {
      return reply{.status = 422, .body = "患者不存在 (patient unknown)", .delay = 0ms, .hang = false, .headers = {}};
    }
    return reply{};
  });
  auto cfgs = consortium({profile("dc-chc", {webhook_endpoint(gw.url("/hook"), 3)})});
  metrics::registry reg;
  engine eng;
  webhook::webhook_sender sender(eng.io.get_executor(), *env.log, cfgs, fast_options(), reg);
  REQUIRE(sender.start().has_value());
  const std::string after = unique_id("after");
  const ev::Envelope bad = appointment(refused);
  env.publish(bad, "dc-chc");
  env.publish("dc-chc", std::string("\x0a\xff", 2));  // not an Envelope
  env.publish(appointment(after), "dc-chc");
  REQUIRE(eventually([&] { return gw.count(after) == 1; }));
  CHECK(gw.keys() == std::vector<std::string>{refused, refused, refused, after});
  REQUIRE(eventually([&] { return metric(reg, "yilian_outbound_dead_letters_total" + label("dc-chc/webhook")) == 2; }));
  CHECK(metric(reg, "yilian_outbound_delivered_total" + label("dc-chc/webhook")) == 1);
  CHECK(metric(reg, "yilian_outbound_retries_total" + label("dc-chc/webhook")) == 2);

  const auto dls = env.dead_letters();
  REQUIRE(dls.size() == 2);
  const auto& [key, dl] = dls[0];
  CHECK(key == "dc-chc");
  CHECK(dl.type() == "yilian.events.v1.DeadLetter");
  CHECK(dl.event_id() == webhook::sha256_hex("outbound|dc-chc/webhook|" + refused));
  CHECK(dl.causation_id() == refused);
  CHECK(dl.correlation().appointment_id() == "BK-" + refused);
  CHECK(!dl.has_subject());  // never the patient's identifiers
  const auto& d = dl.dead_letter();
  CHECK(d.stage() == "outbound");
  CHECK(d.where() == "outbound:dc-chc/webhook");
  CHECK(d.source_hospital() == "dc-chc");
  CHECK(d.attempts() == 3);
  CHECK(d.original_event_id() == refused);
  CHECK(d.original_topic() == kOutbound);
  CHECK(d.control_id() == refused);
  CHECK(d.message_type() == "webhook:AppointmentChanged");
  CHECK(d.error_code() == "validation_failed");
  CHECK(!d.retriable());
  CHECK_THAT(d.reason(), Contains("422 Unprocessable Entity"));
  CHECK_THAT(d.reason(), Contains("患者不存在 (patient unknown)"));  // a hospital's answer is kept
  CHECK_THAT(d.raw().uri(), Contains("event://yilian.outbound.v1/"));
  CHECK(d.raw().sha256() == webhook::sha256_hex(bad.SerializeAsString()));
  CHECK(d.raw().size_bytes() == bad.SerializeAsString().size());

  const auto& garbage = dls[1].second.dead_letter();
  CHECK(garbage.error_code() == "parse_error");
  CHECK(garbage.attempts() == 0);
  CHECK(garbage.message_type() == "webhook");
  const auto st = sender.status();
  CHECK(st[0].last_outcome == "200");
  eng.stop(sender);

  // Dead-lettered records were committed too.
  webhook::webhook_sender again(eng.io.get_executor(), *env.log, cfgs, fast_options(), reg);
  REQUIRE(again.start().has_value());
  std::this_thread::sleep_for(300ms);
  CHECK(gw.count() == 4);
  eng.stop(again);
  CHECK(env.dead_letters().size() == 2);
}

TEST_CASE("a slow endpoint does not delay another hospital, and a hospital's unreachable endpoint is retried "
          "without bound",
          "[unit]") {
  bus_env env;
  http_server slow([](const request_seen&) { return reply{.status = 200, .body = "ok", .delay = 2s, .hang = false, .headers = {}}; });
  http_server fast(ok);
  auto cfgs = consortium({profile("slow-h", {webhook_endpoint(slow.url("/hook"), 2, 5000)}),
                          profile("fast-h", {webhook_endpoint(fast.url("/hook"), 2)}),
                          profile("down-h", {webhook_endpoint("http://127.0.0.1:" + std::to_string(closed_port()) + "/hook", 2)})});
  metrics::registry reg;
  engine eng;
  webhook::webhook_sender sender(eng.io.get_executor(), *env.log, cfgs, fast_options(), reg);
  REQUIRE(sender.start().has_value());
  std::vector<std::string> fast_ids;
  for (int i = 0; i < 20; ++i) {
    if (i < 3) {
      env.publish(appointment(unique_id("slow")), "slow-h");
      env.publish(appointment(unique_id("down")), "down-h");
    }
    fast_ids.push_back(unique_id("fast"));
    env.publish(appointment(fast_ids.back()), "fast-h");
  }
  REQUIRE(eventually([&] { return fast.count() >= 20; }, 1500ms));
  CHECK(fast.keys() == fast_ids);
  CHECK(slow.count() <= 1);  // still on its first
  // The unreachable endpoint is retried far beyond max_attempts (2), without dead letters.
  REQUIRE(eventually([&] { return metric(reg, "yilian_outbound_retries_total" + label("down-h/webhook")) >= 5; }));
  CHECK(metric(reg, "yilian_outbound_dead_letters_total" + label("down-h/webhook")) == 0);
  CHECK(eventually([&] { return metric(reg, "yilian_outbound_queue_depth" + label("down-h/webhook")) == 3; }));
  for (const auto& s : sender.status()) {
    if (s.key != "down-h") continue;
    CHECK(s.last_outcome == "unavailable");
    CHECK_THAT(s.last_error, Contains("connect failed"));
    CHECK(!s.connected);
  }
  const auto t0 = std::chrono::steady_clock::now();
  eng.stop(sender);  // abandons the slow POST in flight
  CHECK(std::chrono::steady_clock::now() - t0 < 2s);
  CHECK(env.dead_letters().empty());
}

TEST_CASE("a POST that gets no answer in time is retried on a new connection", "[unit]") {
  bus_env env;
  http_server gw([](const request_seen& r) {
    return r.attempt == 1 ? reply{.status = 200, .body = {}, .delay = 0ms, .hang = true, .headers = {}} : reply{};
  });
  auto cfgs = consortium({profile("dc-chc", {webhook_endpoint(gw.url("/hook"), 3, 300)})});
  metrics::registry reg;
  engine eng;
  webhook::webhook_sender sender(eng.io.get_executor(), *env.log, cfgs, fast_options(), reg);
  REQUIRE(sender.start().has_value());
  const std::string id = unique_id("late");
  env.publish(appointment(id), "dc-chc");
  REQUIRE(eventually([&] { return metric(reg, "yilian_outbound_delivered_total" + label("dc-chc/webhook")) == 1; }));
  CHECK(gw.keys() == std::vector<std::string>{id, id});
  CHECK(gw.connections() == 2);  // the timed-out connection is not reused
  CHECK(metric(reg, "yilian_outbound_retries_total" + label("dc-chc/webhook")) == 1);
  eng.stop(sender);
}

TEST_CASE("a kept-alive connection the server closed meanwhile is replaced without counting a retry", "[unit]") {
  bus_env env;
  http_server gw([](const request_seen&) {
    reply r;
    r.close_after = true;
    return r;
  });
  auto cfgs = consortium({profile("dc-chc", {webhook_endpoint(gw.url("/hook"))})});
  metrics::registry reg;
  engine eng;
  webhook::webhook_sender sender(eng.io.get_executor(), *env.log, cfgs, fast_options(), reg);
  REQUIRE(sender.start().has_value());
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(unique_id("idle"));
    env.publish(appointment(ids.back()), "dc-chc");
    REQUIRE(eventually([&] { return gw.count(ids.back()) == 1; }));
    std::this_thread::sleep_for(50ms);  // the server's close reaches the client's socket
  }
  REQUIRE(eventually([&] { return metric(reg, "yilian_outbound_delivered_total" + label("dc-chc/webhook")) == 3; }));
  CHECK(gw.keys() == ids);
  CHECK(gw.connections() == 3);
  CHECK(metric(reg, "yilian_outbound_retries_total" + label("dc-chc/webhook")) == 0);
  for (const auto& r : gw.requests()) CHECK(r.header("x-yilian-attempt") == "1");
  eng.stop(sender);
}

TEST_CASE("a restart POSTs again what was not committed, with the same Idempotency-Key", "[unit]") {
  bus_env env;
  const std::string first = unique_id("inflight");
  const std::string second = unique_id("queued");
  // First life: the gateway takes the request and never answers.
  http_server gw([](const request_seen&) { return reply{.status = 200, .body = {}, .delay = 0ms, .hang = true, .headers = {}}; });
  auto cfgs = consortium({profile("dc-chc", {webhook_endpoint(gw.url("/hook"), 3, 10000)})});
  metrics::registry reg;
  engine eng;
  {
    webhook::webhook_sender sender(eng.io.get_executor(), *env.log, cfgs, fast_options(), reg);
    REQUIRE(sender.start().has_value());
    env.publish(appointment(first), "dc-chc");
    env.publish(appointment(second), "dc-chc");
    REQUIRE(eventually([&] { return gw.count() == 1; }));
    eng.stop(sender);  // abandons the POST in flight: nothing committed
  }
  gw.set_script(ok);
  {
    webhook::webhook_sender sender(eng.io.get_executor(), *env.log, cfgs, fast_options(), reg);
    REQUIRE(sender.start().has_value());
    REQUIRE(eventually([&] { return gw.count() == 3; }));
    std::this_thread::sleep_for(100ms);
    CHECK(gw.keys() == std::vector<std::string>{first, first, second});
    const auto reqs = gw.requests();
    CHECK(reqs[1].header("idempotency-key") == reqs[0].header("idempotency-key"));
    CHECK(reqs[1].body == reqs[0].body);
    eng.stop(sender);
  }
  {
    webhook::webhook_sender sender(eng.io.get_executor(), *env.log, cfgs, fast_options(), reg);
    REQUIRE(sender.start().has_value());
    std::this_thread::sleep_for(300ms);
    CHECK(gw.count() == 3);
    eng.stop(sender);
  }
}

// --- the patient channel -----------------------------------------------------------

TEST_CASE("patients get the template's text with their identifiers and phone; what cannot be rendered is "
          "dead-lettered",
          "[unit]") {
  log_capture logs;
  bus_env env;
  http_server gw(ok);
  auto cfgs = consortium({profile("dc-chc", {})});
  add_patient_channel(cfgs, gw.url("/notify"));
  metrics::registry reg;
  engine eng;
  webhook::webhook_sender sender(eng.io.get_executor(), *env.log, cfgs, fast_options(), reg);
  REQUIRE(sender.start().has_value());
  const auto st = sender.status();
  REQUIRE(st.size() == 1);
  CHECK(st[0].label == "@patients/sms-gateway");
  CHECK(st[0].group == "yilian-outbound-patients-sms-gateway");

  const std::string booked = unique_id("booked");
  const std::string reported = unique_id("reported");
  const std::string occurrence = unique_id("occurrence");
  env.publish(appointment(booked), "@patients");
  ev::Envelope occ = appointment(occurrence);
  occ.mutable_care_plan_occurrence()->set_care_plan_id("cp-1");
  env.publish(occ, "@patients");
  ev::Envelope study = appointment(unique_id("study"));
  study.mutable_imaging_study_available();
  env.publish(study, "@patients");                           // not a type patients hear about
  env.publish(appointment(unique_id("clinic")), "dc-chc");   // a hospital's, not the patient's
  env.publish(report(reported), "@patients");
  REQUIRE(eventually([&] { return gw.count() >= 2; }));
  REQUIRE(eventually([&] { return metric(reg, "yilian_outbound_dead_letters_total" + label("@patients/sms-gateway")) == 1; }));
  std::this_thread::sleep_for(100ms);
  CHECK(gw.keys() == std::vector<std::string>{booked, reported});

  const auto reqs = gw.requests();
  CHECK(reqs[0].target == "/notify");
  CHECK(reqs[0].header("x-yilian-event-type") == "AppointmentChanged");
  const auto b = nlohmann::json::parse(reqs[0].body);
  CHECK(b["event_id"] == booked);
  CHECK(b["text"] == "您已预约2025-06-03 09:30在中山市人民医院做头颅CT平扫。");
  CHECK(b["template"] == nlohmann::json::parse(R"({"event_type":"AppointmentChanged","when":"BOOKED"})"));
  CHECK(b["status"] == "BOOKED");
  CHECK(b["patient"]["identifiers"][0]["value"] == kResidentId);
  CHECK(b["patient"]["telecom"] == nlohmann::json::parse(R"([{"system":"phone","value":")" + kPhone +
                                                         R"(","use":"MOBILE"}])"));
  CHECK(b["hospital"]["name"] == "中山市人民医院");
  CHECK(b["ids"]["appointment_id"] == "BK-" + booked);
  const auto r = nlohmann::json::parse(reqs[1].body);
  CHECK(r["text"] == "您在中山市人民医院的头颅CT平扫正式报告已出，报告号RPT-" + reported + "。");
  CHECK(r["ids"]["report_id"] == "RPT-" + reported);

  const auto dls = env.dead_letters();
  REQUIRE(dls.size() == 1);
  CHECK(dls[0].first == "@patients");
  const auto& d = dls[0].second.dead_letter();
  CHECK(d.where() == "outbound:@patients/sms-gateway");
  CHECK(d.error_code() == "config_error");
  CHECK(d.attempts() == 0);
  CHECK(d.original_event_id() == occurrence);
  CHECK(d.message_type() == "webhook:CarePlanOccurrence");
  CHECK_THAT(d.reason(), Contains("no patient notification template for CarePlanOccurrence"));
  CHECK(!dls[0].second.has_subject());
  eng.stop(sender);

  // The patient's data went only into the bodies: no log line carries it.
  const auto lines = logs.all();
  CHECK(!lines.empty());
  for (const auto& l : lines) {
    CHECK_THAT(l, !Contains(kPhone));
    CHECK_THAT(l, !Contains(kResidentId));
    CHECK_THAT(l, !Contains("头颅CT"));
  }
}

TEST_CASE("the patient channel dead-letters after max_attempts of any failure, or once the event outlived the "
          "retry window",
          "[unit]") {
  bus_env env;
  http_server gw([](const request_seen&) {
    // A gateway that echoes the number it could not reach.
    return reply{.status = 503, .body = "短信网关繁忙 " + kPhone, .delay = 0ms, .hang = false, .headers = {}};
  });
  metrics::registry reg;
  engine eng;
  const std::string p1 = unique_id("p");
  const std::string p2 = unique_id("p");
  {
    auto cfgs = consortium({});
    add_patient_channel(cfgs, gw.url("/notify"), 3);
    webhook::webhook_sender sender(eng.io.get_executor(), *env.log, cfgs, fast_options(), reg);
    REQUIRE(sender.start().has_value());
    // One at a time: a second event queued behind the first would outlive the
    // (60 ms) retry window meanwhile and get a single attempt (next part).
    env.publish(appointment(p1), "@patients");
    REQUIRE(eventually([&] { return metric(reg, "yilian_outbound_dead_letters_total" + label("@patients/sms-gateway")) == 1; }));
    env.publish(appointment(p2), "@patients");
    REQUIRE(eventually([&] { return metric(reg, "yilian_outbound_dead_letters_total" + label("@patients/sms-gateway")) == 2; }));
    CHECK(gw.keys() == std::vector<std::string>{p1, p1, p1, p2, p2, p2});
    eng.stop(sender);
  }
  auto dls = env.dead_letters();
  REQUIRE(dls.size() == 2);
  for (const auto& [key, e] : dls) {
    CHECK(key == "@patients");
    CHECK(e.dead_letter().attempts() == 3);
    CHECK(e.dead_letter().error_code() == "unavailable");
    CHECK(e.dead_letter().retriable());
    CHECK_THAT(e.dead_letter().reason(), Contains("503 Service Unavailable"));
    CHECK_THAT(e.dead_letter().reason(), !Contains(kPhone));  // the gateway's text is not kept
  }

  // With 20 attempts the window is 20 + 40 + 17 x 80 ms; an event published
  // (by this clock) an hour ago gets one attempt and is then dead-lettered.
  {
    auto cfgs = consortium({});
    add_patient_channel(cfgs, gw.url("/notify"), 20);
    auto opts = fast_options();
    opts.unix_ms = [] {
      return std::chrono::duration_cast<std::chrono::milliseconds>(
                 (std::chrono::system_clock::now() + 1h).time_since_epoch())
          .count();
    };
    webhook::webhook_sender sender(eng.io.get_executor(), *env.log, cfgs, opts, reg);
    REQUIRE(sender.start().has_value());
    const std::string old = unique_id("old");
    env.publish(appointment(old), "@patients");
    REQUIRE(eventually([&] { return metric(reg, "yilian_outbound_dead_letters_total" + label("@patients/sms-gateway")) == 3; }));
    CHECK(gw.count(old) == 1);
    eng.stop(sender);
    dls = env.dead_letters();
    REQUIRE(dls.size() == 3);
    CHECK(dls[2].second.dead_letter().original_event_id() == old);
    CHECK(dls[2].second.dead_letter().attempts() == 1);
  }
}

// --- TLS, secrets, configuration ------------------------------------------------------

namespace {

// Certificates for the TLS test, made by the openssl CLI.
struct test_pki {
  temp_dir dir{"yilian-webhook-test"};
  bool ok = false;
  test_pki() {
    dir.write("server.ext", "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
    const std::string d = dir.path().string();
    const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    const std::string script = "cd '" + d + "' && openssl req -x509 " + ec +
                               " -keyout ca.key -out ca.pem -days 2 -subj '/CN=yilian test CA' && openssl req " + ec +
                               " -keyout server.key -out server.csr -subj '/CN=localhost' && openssl x509 -req -in "
                               "server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile "
                               "server.ext";
    ok = std::system((script + " >/dev/null 2>&1").c_str()) == 0;
  }
  std::string file(const std::string& name) const { return (dir.path() / name).string(); }
};

}  // namespace

TEST_CASE("https endpoints are verified against the configured CA and name; an untrusted certificate is retried",
          "[unit]") {
  test_pki pki;
  if (!pki.ok) {
    WARN("openssl CLI not available: TLS test skipped");
    return;
  }
  ssl::context server_ctx(ssl::context::tls_server);
  server_ctx.use_certificate_chain_file(pki.file("server.pem"));
  server_ctx.use_private_key_file(pki.file("server.key"), ssl::context::pem);
  bus_env env;
  http_server gw(ok, &server_ctx);
  auto trusted = webhook_endpoint(gw.url("/hook"));
  trusted.mutable_tls()->set_ca_file(pki.file("ca.pem"));
  trusted.mutable_tls()->set_server_name("localhost");
  auto untrusted = webhook_endpoint(gw.url("/hook"));  // the system store does not know the test CA
  auto cfgs = consortium({profile("good-h", {trusted}), profile("bad-h", {untrusted})});
  metrics::registry reg;
  engine eng;
  webhook::webhook_sender sender(eng.io.get_executor(), *env.log, cfgs, fast_options(), reg);
  REQUIRE(sender.start().has_value());
  const std::string good = unique_id("tls");
  env.publish(appointment(good), "good-h");
  env.publish(appointment(unique_id("tls-bad")), "bad-h");
  REQUIRE(eventually([&] { return gw.count(good) == 1; }));
  REQUIRE(eventually([&] { return metric(reg, "yilian_outbound_retries_total" + label("bad-h/webhook")) >= 3; }));
  CHECK(gw.count() == 1);  // the untrusted connection never got to send
  CHECK(metric(reg, "yilian_outbound_dead_letters_total" + label("bad-h/webhook")) == 0);
  for (const auto& s : sender.status()) {
    if (s.key == "good-h") {
      CHECK(s.address == "https://127.0.0.1:" + std::to_string(gw.port()));
      CHECK(s.last_outcome == "200");
    } else {
      CHECK(s.last_outcome == "tls");
      CHECK_THAT(s.last_error, Contains("TLS handshake failed"));
    }
  }
  eng.stop(sender);
}

TEST_CASE("a secret that cannot be read holds deliveries until it can, without stopping the engine", "[unit]") {
  bus_env env;
  http_server gw(ok);
  auto ep = webhook_endpoint(gw.url("/hook"));
  ep.mutable_credentials()->set_scheme(cfg::AUTH_SCHEME_BEARER);
  ep.mutable_credentials()->mutable_secret()->set_file("secrets/token");
  auto basic = webhook_endpoint(gw.url("/basic"));
  basic.mutable_credentials()->set_scheme(cfg::AUTH_SCHEME_BASIC);
  basic.mutable_credentials()->set_username("yilian");
  basic.mutable_credentials()->mutable_secret()->set_env("YILIAN_WEBHOOK_TEST_PASSWORD");
  ::setenv("YILIAN_WEBHOOK_TEST_PASSWORD", "pa55", 1);
  auto cfgs = consortium({profile("dc-chc", {ep}), profile("nh-chc", {basic})}, env.dir.path());
  metrics::registry reg;
  engine eng;
  webhook::webhook_sender sender(eng.io.get_executor(), *env.log, cfgs, fast_options(), reg);
  REQUIRE(sender.start().has_value());  // a missing secret does not stop the start
  const std::string id = unique_id("secret");
  const std::string basic_id = unique_id("basic");
  env.publish(appointment(id), "dc-chc");
  env.publish(appointment(basic_id), "nh-chc");
  REQUIRE(eventually([&] { return metric(reg, "yilian_outbound_retries_total" + label("dc-chc/webhook")) >= 2; }));
  CHECK(gw.count(id) == 0);
  for (const auto& s : sender.status()) {
    if (s.key != "dc-chc") continue;
    CHECK(s.last_outcome == "no-secret");
    CHECK_THAT(s.last_error, Contains("cannot read secret file"));
  }
  env.dir.write("secrets/token", "tok-1\n");
  REQUIRE(eventually([&] { return gw.count(id) == 1; }));
  for (const auto& r : gw.requests()) {
    if (r.key == id) CHECK(r.header("authorization") == "Bearer tok-1");
    if (r.key == basic_id) CHECK(r.header("authorization") == "Basic " + webhook::base64("yilian:pa55"));
  }
  CHECK(gw.count(basic_id) == 1);
  eng.stop(sender);
  ::unsetenv("YILIAN_WEBHOOK_TEST_PASSWORD");
}

TEST_CASE("a destination that cannot be configured stops the start, naming where", "[unit]") {
  bus_env env;
  metrics::registry reg;
  engine eng;
  SECTION("an address that is not a URL") {
    auto cfgs = consortium({profile("dc-chc", {webhook_endpoint("dc-chc.example.cn:443")})});
    webhook::webhook_sender sender(eng.io.get_executor(), *env.log, cfgs, fast_options(), reg);
    auto r = sender.start();
    REQUIRE(!r.has_value());
    CHECK(r.error().code == errc::config_error);
    CHECK_THAT(r.error().where, Contains("dc-chc"));
    CHECK(sender.status().empty());
  }
  SECTION("tls for an http:// address") {
    auto ep = webhook_endpoint("http://127.0.0.1:1/hook");
    ep.mutable_tls()->set_server_name("x");
    auto cfgs = consortium({profile("dc-chc", {ep})});
    webhook::webhook_sender sender(eng.io.get_executor(), *env.log, cfgs, fast_options(), reg);
    auto r = sender.start();
    REQUIRE(!r.has_value());
    CHECK_THAT(r.error().message, Contains("https://"));
  }
  SECTION("a hospital called \"patients\" whose endpoint has the patient gateway's id") {
    auto ep = webhook_endpoint("http://127.0.0.1:1/hook");
    ep.set_id("sms-gateway");
    auto cfgs = consortium({profile("patients", {ep})});
    add_patient_channel(cfgs, "http://127.0.0.1:1/notify");
    webhook::webhook_sender sender(eng.io.get_executor(), *env.log, cfgs, fast_options(), reg);
    auto r = sender.start();
    REQUIRE(!r.has_value());
    CHECK_THAT(r.error().message, Contains("yilian-outbound-patients-sms-gateway"));
  }
  SECTION("started twice") {
    auto cfgs = consortium({});
    webhook::webhook_sender sender(eng.io.get_executor(), *env.log, cfgs, fast_options(), reg);
    REQUIRE(sender.start().has_value());
    CHECK(sender.start().error().code == errc::invalid_argument);
    CHECK(sender.status().empty());  // nothing configured: nothing runs
    eng.stop(sender);
  }
}

TEST_CASE("consumer groups are named like the MLLP sender's, with \"patients\" for the patient channel", "[unit]") {
  CHECK(webhook::webhook_sender::group_name("", "dc-chc", "webhook") == "yilian-outbound-dc-chc-webhook");
  CHECK(webhook::webhook_sender::group_name("zs-yilian", "dc-chc", "webhook") ==
        "zs-yilian-yilian-outbound-dc-chc-webhook");
  CHECK(webhook::webhook_sender::group_name("", "@patients", "sms-gateway") == "yilian-outbound-patients-sms-gateway");
}
