// The ingest pipeline end to end inside one process: real example profiles,
// a real embedded log and a real ingest store in a temp dir. The bus that
// fails on demand is a thin decorator over the real one (the e2e tests make a
// real broker unavailable).
#include <catch2/catch.hpp>

#include <atomic>
#include <filesystem>
#include <future>
#include <random>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include "adapters/hl7v2/ack.h"
#include "adapters/hl7v2/ingest.h"
#include "engine/bus/embedded_log.h"
#include "engine/config/config.h"
#include "yilian/events/v1/envelope.pb.h"

using namespace yilian;
using namespace yilian::hl7v2;
namespace fs = std::filesystem;
namespace yb = yilian::bus;

namespace {

fs::path temp_dir() {
  std::random_device rd;
  auto p = fs::temp_directory_path() / ("yilian-ingest-test-" + std::to_string(rd()));
  fs::create_directories(p);
  return p;
}

// Fails every publish while `down` is set, like a bus that cannot accept now.
class switchable_bus final : public yb::bus {
 public:
  explicit switchable_bus(yb::bus& inner) : inner_(inner) {}
  std::atomic<bool> down{false};
  std::string_view kind() const noexcept override { return inner_.kind(); }
  result<void> ensure_topics(std::span<const yb::topic_spec> t) override { return inner_.ensure_topics(t); }
  result<std::int32_t> partitions(std::string_view t) override { return inner_.partitions(t); }
  void publish(yb::message msg, yb::publish_handler done) override {
    if (down) {
      done(fail(errc::unavailable, "bus down (test)"));
      return;
    }
    inner_.publish(std::move(msg), std::move(done));
  }
  result<std::unique_ptr<yb::consumer>> subscribe(yb::consumer_options o) override { return inner_.subscribe(o); }
  result<void> flush(std::chrono::milliseconds t) override { return inner_.flush(t); }
  result<void> check_ready(std::chrono::milliseconds t) override { return inner_.check_ready(t); }

 private:
  yb::bus& inner_;
};

struct fixture {
  fs::path dir = temp_dir();
  config::loaded_consortium cfg;
  std::unique_ptr<yb::bus> log;
  std::unique_ptr<switchable_bus> bus;
  std::unique_ptr<store::ingest_store> store;
  metrics::registry registry;
  std::shared_ptr<ingest_metrics> metrics = std::make_shared<ingest_metrics>(registry);
  std::map<std::string, std::unique_ptr<ingest_pipeline>> pipelines;
  int group = 0;

  fixture() {
    auto loaded = config::load_consortium(fs::path(YILIAN_SOURCE_DIR) / "deploy/examples/consortium",
                                          config::load_options{.data_dir = dir});
    REQUIRE(loaded);
    cfg = std::move(*loaded);
    auto opened = yb::open_embedded_log(yb::embedded_log_options{.path = dir / "bus" / "events.db"});
    REQUIRE(opened);
    log = std::move(*opened);
    std::vector<yb::topic_spec> topics;
    for (const auto& t : cfg.topics) topics.push_back(yb::topic_spec{.name = t.name, .partitions = 2});
    REQUIRE(log->ensure_topics(topics));
    bus = std::make_unique<switchable_bus>(*log);
    auto s = store::ingest_store::open(store::ingest_store_options{.file = dir / "ingest" / "ingest.db"});
    REQUIRE(s);
    store = std::move(*s);
  }
  ~fixture() {
    pipelines.clear();
    store.reset();
    log.reset();
    fs::remove_all(dir);
  }

  ingest_pipeline& pipeline(const std::string& hospital) {
    auto& p = pipelines[hospital];
    if (!p) {
      const auto* profile = cfg.profile(hospital);
      REQUIRE(profile != nullptr);
      auto m = mapper::compile(&cfg, profile, hospital);
      REQUIRE(m);
      p = std::make_unique<ingest_pipeline>(ingest_options{.hospital = hospital, .consortium = &cfg, .profile = profile},
                                            std::move(*m), *bus, *store, metrics);
    }
    return *p;
  }

  std::vector<std::string> send(const std::string& hospital, std::string payload) {
    boost::asio::io_context ioc;
    auto f = boost::asio::co_spawn(ioc, pipeline(hospital).handle(std::move(payload)), boost::asio::use_future);
    ioc.run();
    return f.get();
  }

  // Every envelope on a topic, oldest first per partition.
  std::vector<events::v1::Envelope> read(const std::string& topic) {
    auto c = log->subscribe(yb::consumer_options{.group = "reader-" + std::to_string(++group), .topics = {topic}});
    REQUIRE(c);
    std::vector<events::v1::Envelope> out;
    while (true) {
      auto recs = (*c)->poll(std::chrono::milliseconds(300), 1000);
      REQUIRE(recs);
      if (recs->empty()) break;
      for (const auto& r : *recs) {
        events::v1::Envelope e;
        REQUIRE(e.ParseFromString(r.value));
        out.push_back(std::move(e));
      }
    }
    return out;
  }
};

std::string adt(const std::string& control_id, const std::string& mrn = "100001",
                const std::string& facility = "ZSRMYY", const std::string& ack_types = "") {
  return "MSH|^~\\&|HIS|" + facility + "|YILIAN|ZSYL|20260105093000+0800||ADT^A04^ADT_A01|" + control_id +
         "|P|2.5" + ack_types + "\rEVN|A04|20260105093000+0800\rPID|1||" + mrn +
         "^^^ZSRMYY^MR||测试^患者^^^^^L^I||19900307|F\rPV1|1|O|RAD^^^ZSRMYY||||||||||||||||V" + control_id + "\r";
}

parsed_ack ack_of(const std::string& payload) {
  auto a = parse_ack(payload);
  REQUIRE(a);
  return *a;
}

std::size_t count_control(const std::vector<events::v1::Envelope>& evs, const std::string& control_id) {
  return static_cast<std::size_t>(std::count_if(evs.begin(), evs.end(), [&](const auto& e) {
    return e.source().control_id() == control_id;
  }));
}

}  // namespace

TEST_CASE("a valid message is acknowledged AA once its events are on the bus", "[unit]") {
  fixture f;
  const auto replies = f.send("zs-tertiary", adt("T1"));
  REQUIRE(replies.size() == 1);
  const auto a = ack_of(replies[0]);
  CHECK(a.code == ack_code::AA);
  CHECK(a.acknowledged_control_id == "T1");
  const auto evs = f.read("yilian.patient.v1");
  REQUIRE(count_control(evs, "T1") >= 1);
  for (const auto& e : evs) {
    CHECK(e.raw_ref().uri().starts_with("raw://zs-tertiary/"));
    CHECK(e.raw_ref().sha256().size() == 64);
    auto raw = f.store->read_raw(e.raw_ref().uri());
    REQUIRE(raw);
    CHECK(*raw == adt("T1"));
  }
}

TEST_CASE("a resend is acknowledged again and publishes nothing new", "[unit]") {
  fixture f;
  CHECK(ack_of(f.send("zs-tertiary", adt("T2"))[0]).code == ack_code::AA);
  const auto before = count_control(f.read("yilian.patient.v1"), "T2");
  CHECK(ack_of(f.send("zs-tertiary", adt("T2"))[0]).code == ack_code::AA);
  CHECK(count_control(f.read("yilian.patient.v1"), "T2") == before);
}

TEST_CASE("the same control id with other content is AE 205 and dead-lettered", "[unit]") {
  fixture f;
  CHECK(ack_of(f.send("zs-tertiary", adt("T3", "1"))[0]).code == ack_code::AA);
  const auto a = ack_of(f.send("zs-tertiary", adt("T3", "2"))[0]);
  CHECK(a.code == ack_code::AE);
  CHECK(a.error_code == "205");
  const auto dead = f.read("yilian.deadletter.v1");
  REQUIRE(dead.size() == 1);
  CHECK(dead[0].dead_letter().error_code() == "conflict");
  CHECK(dead[0].dead_letter().where() == "MSH-10");
  auto raw = f.store->read_raw(dead[0].dead_letter().raw().uri());
  REQUIRE(raw);
  CHECK(*raw == adt("T3", "2"));
}

TEST_CASE("content errors are AE with the place and the bytes are kept", "[unit]") {
  fixture f;
  const std::string bad = "MSH|^~\\&|HIS|ZSRMYY|YILIAN|ZSYL|20260105||ADT^A04|T4|P|2.5\rP!D|1\r";
  const auto a = ack_of(f.send("zs-tertiary", bad)[0]);
  CHECK(a.code == ack_code::AE);
  CHECK(a.acknowledged_control_id == "T4");
  auto dead = f.read("yilian.deadletter.v1");
  REQUIRE(dead.size() == 1);
  CHECK(dead[0].dead_letter().stage() == "hl7v2.parse");
  CHECK(*f.store->read_raw(dead[0].raw_ref().uri()) == bad);
  SECTION("and its resend makes no second dead letter") {
    CHECK(ack_of(f.send("zs-tertiary", bad)[0]).code == ack_code::AE);
    CHECK(f.read("yilian.deadletter.v1").size() == 1);
  }
}

TEST_CASE("a sending facility not allowed on the channel is AR and dead-lettered", "[unit]") {
  fixture f;
  const auto a = ack_of(f.send("zs-tertiary", adt("T5", "1", "OTHER"))[0]);
  CHECK(a.code == ack_code::AR);
  const auto dead = f.read("yilian.deadletter.v1");
  REQUIRE(dead.size() == 1);
  CHECK(dead[0].dead_letter().where() == "MSH-4");
  CHECK(count_control(f.read("yilian.patient.v1"), "T5") == 0);
}

TEST_CASE("when the bus cannot accept, the answer is AR and a later resend is accepted once", "[unit]") {
  fixture f;
  f.bus->down = true;
  const auto a = ack_of(f.send("zs-tertiary", adt("T6"))[0]);
  CHECK(a.code == ack_code::AR);
  CHECK(count_control(f.read("yilian.patient.v1"), "T6") == 0);
  f.bus->down = false;
  CHECK(ack_of(f.send("zs-tertiary", adt("T6"))[0]).code == ack_code::AA);
  const auto n = count_control(f.read("yilian.patient.v1"), "T6");
  CHECK(n >= 1);
  CHECK(ack_of(f.send("zs-tertiary", adt("T6"))[0]).code == ack_code::AA);
  CHECK(count_control(f.read("yilian.patient.v1"), "T6") == n);
}

TEST_CASE("enhanced mode answers a commit ACK and the application ACK MSH-16 asks for", "[unit]") {
  fixture f;
  SECTION("MSH-15/16 AL/AL on an original-mode profile") {
    const auto replies = f.send("zs-tertiary", adt("T7", "1", "ZSRMYY", "|||AL|AL"));
    REQUIRE(replies.size() == 2);
    CHECK(ack_of(replies[0]).code == ack_code::CA);
    CHECK(ack_of(replies[1]).code == ack_code::AA);
  }
  SECTION("MSH-16 ER: no application ACK on success, AE on error") {
    CHECK(f.send("zs-tertiary", adt("T8", "1", "ZSRMYY", "|||AL|ER")).size() == 1);
    const auto replies = f.send("zs-tertiary", adt("T8", "2", "ZSRMYY", "|||AL|ER"));
    REQUIRE(replies.size() == 2);
    CHECK(ack_of(replies[0]).code == ack_code::CA);
    CHECK(ack_of(replies[1]).code == ack_code::AE);
  }
  SECTION("a bus that cannot accept gives CR") {
    f.bus->down = true;
    const auto replies = f.send("zs-tertiary", adt("T9", "1", "ZSRMYY", "|||AL|AL"));
    REQUIRE(replies.size() == 1);
    CHECK(ack_of(replies[0]).code == ack_code::CR);
  }
}

TEST_CASE("metrics count messages by hospital, type and ACK", "[unit]") {
  fixture f;
  f.send("zs-tertiary", adt("T10"));
  const auto text = f.registry.render();
  CHECK(text.find("yilian_hl7v2_messages_total{hospital=\"zs-tertiary\",type=\"ADT\",ack=\"AA\"} 1") !=
        std::string::npos);
}
