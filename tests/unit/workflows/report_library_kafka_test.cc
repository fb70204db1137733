// The report library (engine/workflows/reports/library.h) on the real Kafka
// broker named by YILIAN_KAFKA_BROKERS (fails, never skips, without it):
// partitions are assigned during poll and committed offsets come from the
// broker, so the start-up check of the file against the bus and the resume
// from the file's offsets are exercised the way a Kafka deployment runs them.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "engine/bus/kafka_bus.h"
#include "engine/core/ids.h"
#include "engine/workflows/reports/library.h"
#include "tests/support/eventually.h"
#include "tests/support/temp_dir.h"

using namespace yilian;
namespace rp = yilian::workflows::reports;
namespace ev = yilian::events::v1;
using namespace std::chrono_literals;
using yilian::test::temp_dir;

namespace {

template <class Pred>
bool eventually(Pred&& p) {
  return yilian::test::eventually(std::forward<Pred>(p), std::chrono::seconds(60), std::chrono::milliseconds(20));
}

std::unique_ptr<bus::bus> open_kafka(const std::string& topic) {
  const char* brokers = std::getenv("YILIAN_KAFKA_BROKERS");
  if (brokers == nullptr || *brokers == 0) FAIL("YILIAN_KAFKA_BROKERS is not set: start a broker (./tools/test does)");
  auto b = bus::open_kafka_bus(bus::kafka_options{.brokers = brokers});
  if (!b) FAIL(b.error().describe());
  const std::vector<bus::topic_spec> topics{{.name = topic, .partitions = 3}};
  if (auto r = (*b)->ensure_topics(topics); !r) FAIL(r.error().describe());
  return std::move(*b);
}

void publish_reports(bus::bus& b, const std::string& topic, int from, int to) {
  std::vector<std::future<result<bus::position>>> pending;
  for (int i = from; i < to; ++i) {
    ev::Envelope e;
    e.set_schema_version(1);
    e.set_event_id("ev-R" + std::to_string(i));
    e.set_type("yilian.events.v1.ReportIssued");
    e.mutable_source()->set_hospital("zs-tertiary");
    e.mutable_source()->set_protocol(ev::PROTOCOL_HL7V2_MLLP);
    e.mutable_report_issued()->set_report_id("R" + std::to_string(i));
    e.mutable_report_issued()->set_status(ev::REPORT_STATUS_FINAL);
    auto done = std::make_shared<std::promise<result<bus::position>>>();
    pending.push_back(done->get_future());
    b.publish(bus::message{.topic = topic, .key = "R" + std::to_string(i), .value = e.SerializeAsString()},
              [done](result<bus::position> r) { done->set_value(std::move(r)); });
  }
  for (auto& f : pending) {
    REQUIRE(f.wait_for(30s) == std::future_status::ready);
    auto r = f.get();
    if (!r) FAIL(r.error().describe());
  }
}

std::size_t size_of(const rp::library& lib) {
  auto n = lib.size();
  if (!n) FAIL(n.error().describe());
  return *n;
}

}  // namespace

TEST_CASE("on Kafka the report library resumes from its file after a restart", "[integration][reports]") {
  temp_dir dir("yilian-report-library-kafka");
  const std::string topic = random_id("yilian.report.test.");
  auto kafka = open_kafka(topic);
  const rp::library_options o{.topic = topic, .group_prefix = "test-", .file = dir.file("reports/reports.db")};
  publish_reports(*kafka, topic, 0, 30);
  {
    rp::library lib(*kafka, o);
    REQUIRE(lib.start());
    REQUIRE(eventually([&] { return lib.caught_up(); }));
    CHECK(size_of(lib) == 30);
    CHECK(lib.stats().rebuilds == 0);
    lib.stop();
  }
  publish_reports(*kafka, topic, 30, 40);
  {
    rp::library lib(*kafka, o);
    REQUIRE(lib.start());
    REQUIRE(eventually([&] { return lib.caught_up() && size_of(lib) == 40; }));
    const auto s = lib.stats();
    CHECK(s.rebuilds == 0);
    CHECK(s.records == 10);
    CHECK(s.versions == 10);
    lib.stop();
  }
  // The file is lost: a new one folds the topic from the beginning under a new group.
  std::filesystem::remove_all(dir.file("reports"));
  rp::library lib(*kafka, o);
  REQUIRE(lib.start());
  REQUIRE(eventually([&] { return lib.caught_up() && size_of(lib) == 40; }));
  CHECK(lib.stats().records == 40);
  CHECK(lib.stats().rebuilds == 0);
}
