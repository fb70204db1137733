// recover_pending against a real embedded log: receipts left unsettled by a
// "crash" are settled from what actually reached the bus.
#include <catch2/catch.hpp>

#include <map>

#include <unistd.h>

#include <cstdlib>

#include "engine/bus/embedded_log.h"
#include "engine/bus/kafka_bus.h"
#include "tests/unit/store/store_test_support.h"
#include "yilian/events/v1/envelope.pb.h"

using namespace yilian;
using namespace yilian::store;
using namespace yilian::store::test;
using kind = reserve_outcome::kind;

namespace {

const std::string kPatient = "yilian.patient.v1";
const std::string kReport = "yilian.report.v1";

std::string envelope(const std::string& event_id) {
  events::v1::Envelope e;
  e.set_event_id(event_id);
  e.set_type("yilian.events.v1.PatientRegistered");
  e.set_schema_version(1);
  e.mutable_source()->set_hospital("zs-tertiary");
  e.mutable_raw_ref()->set_uri("raw://zs-tertiary/1/" + std::string(64, 'a'));
  e.mutable_patient_registered();
  return e.SerializeAsString();
}

void publish(bus::bus& b, const std::string& topic, const std::string& value, std::int64_t timestamp_ms = 0) {
  auto p = std::make_shared<std::promise<result<bus::position>>>();
  auto f = p->get_future();
  b.publish(bus::message{.topic = topic, .key = value.substr(0, 8), .value = value, .headers = {},
                         .timestamp_ms = timestamp_ms},
            [p](result<bus::position> r) { p->set_value(std::move(r)); });
  REQUIRE(f.wait_for(30s) == std::future_status::ready);
  auto r = f.get();
  INFO((r ? std::string("published") : r.error().describe()));
  REQUIRE(r.has_value());
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

TEST_CASE("recovery settles unsettled receipts from the bus tail: all found done, none forgotten, some partial",
          "[unit]") {
  temp_dir dir;
  auto log = bus::open_embedded_log({.path = dir.path() / "log.db", .default_partitions = 4});
  REQUIRE(log.has_value());
  auto& b = **log;
  const bus::topic_spec specs[] = {{.name = kPatient, .partitions = 4}, {.name = kReport, .partitions = 2}};
  REQUIRE(b.ensure_topics(specs).has_value());
  const std::vector<std::string> topics{kPatient, kReport};

  auto a = request_for("MSG-A", 0, 3);
  auto bb = request_for("MSG-B", 0, 2);
  auto c = request_for("MSG-C", 0, 3);
  auto d = request_for("MSG-D", 0, 2);

  // An event of B published long ago (before the scan's start): recovery must
  // not read that far back, so it does not count.
  publish(b, kPatient, envelope(bb.event_ids[0]), now_ms() - 3'600'000);
  {
    auto store = open_store({.file = dir.db()});
    for (auto* r : {&a, &bb, &c, &d}) REQUIRE(what(reserve_wait(*store, *r)) == "fresh");
    for (const auto& id : a.event_ids) publish(b, kPatient, envelope(id));
    publish(b, kReport, envelope(c.event_ids[0]));
    publish(b, kPatient, envelope(c.event_ids[2]));
    for (const auto& id : d.event_ids) publish(b, kReport, envelope(id));
    REQUIRE(settle_wait(*store, d.key, true).has_value());
    // Noise: other events and a record that is not an envelope at all.
    for (int i = 0; i < 50; ++i) publish(b, i % 2 ? kPatient : kReport, envelope(sha256_hex("noise" + std::to_string(i))));
    publish(b, kPatient, std::string("\xff\xff\xff not protobuf", 17));
    // The engine dies before completing A, B and C.
  }

  auto store = open_store({.file = dir.db()});
  auto report = recover_pending(*store, b, topics, {.idle = 500ms});
  INFO((report ? std::string("recovered") : report.error().describe()));
  REQUIRE(report.has_value());
  CHECK(report->unsettled == 3);
  CHECK(report->done == 1);
  CHECK(report->deleted == 1);
  CHECK(report->partial == 1);
  CHECK(report->start_timestamp_ms > now_ms() - 600'000);
  CHECK(report->records_scanned > 0);
  CHECK(report->records_scanned <= 58);  // never the old record

  auto left = store->pending();
  REQUIRE(left.has_value());
  CHECK(left->empty());

  THEN("resends get what the bus holds: A acknowledged, B fresh, C only its missing event") {
    auto ra = reserve_wait(*store, a);
    REQUIRE(ra.has_value());
    CHECK(ra->what == kind::resend_done);
    auto rb = reserve_wait(*store, bb);
    REQUIRE(rb.has_value());
    CHECK(rb->what == kind::fresh);
    auto rc = reserve_wait(*store, c);
    REQUIRE(rc.has_value());
    CHECK(rc->what == kind::resend_pending);
    CHECK(rc->unpublished_event_ids == std::vector<std::string>{c.event_ids[1]});
    auto rd = reserve_wait(*store, d);
    REQUIRE(rd.has_value());
    CHECK(rd->what == kind::resend_done);
  }
  AND_THEN("a second recovery finds nothing to do") {
    auto again = recover_pending(*store, b, topics);
    REQUIRE(again.has_value());
    CHECK(again->unsettled == 0);
    CHECK(again->start_timestamp_ms == -1);
  }
}

TEST_CASE("recovery stops reading as soon as every wanted event is found", "[unit]") {
  temp_dir dir;
  auto log = bus::open_embedded_log({.path = dir.path() / "log.db", .default_partitions = 2});
  REQUIRE(log.has_value());
  auto& b = **log;
  const bus::topic_spec spec{.name = kPatient, .partitions = 2};
  REQUIRE(b.ensure_topics({&spec, 1}).has_value());
  auto a = request_for("MSG-EARLY", 0, 2);
  {
    auto store = open_store({.file = dir.db()});
    REQUIRE(what(reserve_wait(*store, a)) == "fresh");
    for (const auto& id : a.event_ids) publish(b, kPatient, envelope(id));
  }
  auto store = open_store({.file = dir.db()});
  // idle is long: the scan must end because everything was found, not by waiting.
  const auto started = std::chrono::steady_clock::now();
  auto report = recover_pending(*store, b, std::vector<std::string>{kPatient}, {.idle = 20s});
  REQUIRE(report.has_value());
  CHECK(std::chrono::steady_clock::now() - started < 10s);
  CHECK(report->done == 1);
  CHECK(what(reserve_wait(*store, a)) == "resend_done");
}

// Hidden (runs only when asked for with "[.kafka]"): the same recovery against
// the real broker named by YILIAN_KAFKA_BROKERS, where assignment and the
// timestamp lookup are asynchronous.
TEST_CASE("recovery settles unsettled receipts from a Kafka tail", "[.kafka]") {
  const char* brokers = std::getenv("YILIAN_KAFKA_BROKERS");
  REQUIRE(brokers != nullptr);
  auto opened = bus::open_kafka_bus({.brokers = brokers, .client_id = "yilian-store-test"});
  REQUIRE(opened.has_value());
  auto& b = **opened;
  const std::string suffix = std::to_string(::getpid()) + "-" + std::to_string(now_ms());
  const std::string patient = "store-recovery-patient-" + suffix;
  const std::string report_topic = "store-recovery-report-" + suffix;
  const bus::topic_spec specs[] = {{.name = patient, .partitions = 3}, {.name = report_topic, .partitions = 2}};
  REQUIRE(b.ensure_topics(specs).has_value());
  const std::vector<std::string> topics{patient, report_topic};
  temp_dir dir;
  auto a = request_for("K-A", 0, 2);
  auto bb = request_for("K-B", 0, 2);
  auto c = request_for("K-C", 0, 2);
  publish(b, patient, envelope(bb.event_ids[0]), now_ms() - 3'600'000);
  {
    auto store = open_store({.file = dir.db()});
    for (auto* r : {&a, &bb, &c}) REQUIRE(what(reserve_wait(*store, *r)) == "fresh");
    for (const auto& id : a.event_ids) publish(b, patient, envelope(id));
    publish(b, report_topic, envelope(c.event_ids[1]));
    for (int i = 0; i < 30; ++i) publish(b, patient, envelope(sha256_hex("noise" + std::to_string(i))));
  }
  auto store = open_store({.file = dir.db()});
  auto report = recover_pending(*store, b, topics);
  INFO((report ? std::string("recovered") : report.error().describe()));
  REQUIRE(report.has_value());
  CHECK(report->done == 1);
  CHECK(report->deleted == 1);
  CHECK(report->partial == 1);
  CHECK(what(reserve_wait(*store, a)) == "resend_done");
  CHECK(what(reserve_wait(*store, bb)) == "fresh");
  auto rc = reserve_wait(*store, c);
  REQUIRE(what(rc) == "resend_pending");
  CHECK(rc->unpublished_event_ids == std::vector<std::string>{c.event_ids[0]});
}
