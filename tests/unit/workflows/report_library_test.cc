// The report library (engine/workflows/reports/library.h): a SQLite-backed
// view of the report topic. Versions and what they supersede, replays,
// newest-first pages, a restart that resumes from the offsets stored in the
// file, rebuilds when the file and the bus disagree, and memory that stays
// bounded however many reports the file holds.
//
// Hermetic: a real embedded log and the library's own file in a temporary
// directory; fold() is also fed made-up records directly where the bus adds
// nothing but time.
#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <future>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <sqlite3.h>

#include "engine/bus/embedded_log.h"
#include "engine/workflows/reports/library.h"
#include "tests/support/eventually.h"
#include "tests/support/temp_dir.h"

using namespace yilian;
namespace rp = yilian::workflows::reports;
namespace ev = yilian::events::v1;
using namespace std::chrono_literals;
using yilian::test::temp_dir;

namespace {

const std::string topic = "yilian.report.v1";
constexpr std::int32_t kPartitions = 4;
constexpr std::int64_t kT0 = 1'760'000'000'000;  // ms since the epoch, October 2025

using yilian::test::eventually;

std::unique_ptr<bus::bus> open_log(const std::filesystem::path& path) {
  auto b = bus::open_embedded_log(bus::embedded_log_options{.path = path, .default_partitions = kPartitions});
  if (!b) FAIL(b.error().describe());
  const std::vector<bus::topic_spec> topics{{.name = topic, .partitions = kPartitions}};
  if (auto r = (*b)->ensure_topics(topics); !r) FAIL(r.error().describe());
  return std::move(*b);
}

rp::library_options options_for(const std::filesystem::path& file) {
  return rp::library_options{.topic = topic, .group_prefix = "", .file = file, .cache_kib = 512, .readers = 2,
                             .max_batch = 512, .bus_commit_interval = 100ms};
}

// A ReportIssued of `hospital` with a status (P, F, C) and some padding
// (findings), so rows are the size of real ones when asked.
ev::Envelope report(const std::string& hospital, const std::string& report_id, const std::string& status,
                    const std::string& event_id, std::size_t findings_bytes = 64) {
  ev::Envelope e;
  e.set_schema_version(1);
  e.set_event_id(event_id);
  e.set_type("yilian.events.v1.ReportIssued");
  e.mutable_source()->set_hospital(hospital);
  e.mutable_source()->set_system("RIS");
  e.mutable_source()->set_protocol(ev::PROTOCOL_HL7V2_MLLP);
  auto* id = e.mutable_subject()->add_identifiers();
  id->set_system("urn:yilian:mrn:" + hospital);
  id->set_value("MRN-" + report_id);
  e.mutable_occurred_at()->set_seconds(kT0 / 1000);
  auto* r = e.mutable_report_issued();
  r->set_report_id(report_id);
  r->set_performing_hospital(hospital);
  r->set_status(status == "C"   ? ev::REPORT_STATUS_CORRECTED
                : status == "P" ? ev::REPORT_STATUS_PRELIMINARY
                                : ev::REPORT_STATUS_FINAL);
  r->set_status_code(status);
  r->mutable_issued_at()->set_seconds(kT0 / 1000 - 60);
  r->mutable_exam()->set_code("CT-HEAD-PLAIN");
  r->set_findings(std::string(findings_bytes, 'x'));
  r->set_conclusion("no acute finding");
  return e;
}

bus::record record_of(const ev::Envelope& e, std::int32_t partition, std::int64_t offset, std::int64_t ts_ms) {
  return bus::record{.topic = topic, .partition = partition, .offset = offset, .key = e.report_issued().report_id(),
                     .value = e.SerializeAsString(), .headers = {}, .timestamp_ms = ts_ms};
}

void publish(bus::bus& b, const ev::Envelope& e) {
  auto done = std::make_shared<std::promise<result<bus::position>>>();
  auto fut = done->get_future();
  b.publish(bus::message{.topic = topic,
                         .key = e.report_issued().performing_hospital() + "|" + e.report_issued().report_id(),
                         .value = e.SerializeAsString(),
                         .headers = {{"event_id", e.event_id()}, {"type", e.type()}}},
            [done](result<bus::position> r) { done->set_value(std::move(r)); });
  REQUIRE(fut.wait_for(10s) == std::future_status::ready);
  auto r = fut.get();
  if (!r) FAIL(r.error().describe());
}

// Publishes reports r<from>..r<to-1> (one final version each).
void publish_reports(bus::bus& b, int from, int to, const std::string& hospital = "zs-tertiary") {
  for (int i = from; i < to; ++i) {
    const std::string id = "R" + std::to_string(i);
    publish(b, report(hospital, id, "F", "ev-" + hospital + "-" + id + "-F"));
  }
}

// Whether the library has read the whole topic as it is now.
bool read_to_end(bus::bus& b, const rp::library& lib) {
  auto c = b.subscribe(bus::consumer_options{.group = "probe-" + std::to_string(std::rand()), .topics = {topic}});
  if (!c) FAIL(c.error().describe());
  for (int i = 0; i < 100 && (*c)->assignment().size() < static_cast<std::size_t>(kPartitions); ++i) {
    (void)(*c)->poll(10ms, 1);
  }
  auto lag = (*c)->lag();
  if (!lag) FAIL(lag.error().describe());
  for (const auto& p : *lag) {
    if (p.end > 0 && !lib.wait_past(p.partition, p.end - 1, 20s)) return false;
  }
  return true;
}

std::size_t size_of(const rp::library& lib) {
  auto n = lib.size();
  if (!n) FAIL(n.error().describe());
  return *n;
}

// Every event id the library holds, to check there are no duplicates.
std::multiset<std::string> all_event_ids(const rp::library& lib) {
  std::multiset<std::string> out;
  std::optional<rp::newest_cursor> after;
  while (true) {
    auto page = lib.newest(100, after);
    if (!page) FAIL(page.error().describe());
    for (const auto& e : page->entries) {
      for (const auto& v : e.versions) out.insert(v.event_id);
    }
    if (!page->next) break;
    after = page->next;
  }
  return out;
}

}  // namespace

TEST_CASE("the report library keeps every version in log order with what it supersedes", "[unit][reports]") {
  temp_dir dir("yilian-report-library");
  auto log = open_log(dir.file("bus/log.db"));
  rp::library lib(*log, options_for(dir.file("reports/reports.db")));
  REQUIRE(lib.open());

  const auto p = report("zs-tertiary", "R1", "P", "ev-p");
  const auto f = report("zs-tertiary", "R1", "F", "ev-f");
  auto c = report("zs-tertiary", "R1", "C", "ev-c");
  c.mutable_report_issued()->set_conclusion("corrected: small lacunar infarct");
  // Another hospital's report with the same filler id is another report.
  const auto other = report("qh-county", "R1", "F", "ev-other");
  const std::vector<bus::record> batch{record_of(p, 0, 0, kT0), record_of(f, 0, 1, kT0 + 1000),
                                       record_of(other, 1, 0, kT0 + 1500), record_of(c, 0, 2, kT0 + 2000)};
  REQUIRE(lib.fold(batch));

  auto entry = lib.find("zs-tertiary", "R1");
  REQUIRE(entry);
  REQUIRE(*entry);
  const auto& e = **entry;
  CHECK(e.key() == "zs-tertiary/R1");
  REQUIRE(e.versions.size() == 3);
  CHECK(e.versions[0].event_id == "ev-p");
  CHECK(e.versions[0].supersedes.empty());
  CHECK(e.versions[0].status == ev::REPORT_STATUS_PRELIMINARY);
  CHECK(e.versions[1].supersedes == "ev-p");
  CHECK(e.versions[2].supersedes == "ev-f");
  CHECK(e.latest().status == ev::REPORT_STATUS_CORRECTED);
  CHECK(e.latest().status_code == "C");
  CHECK(e.latest().recorded_at.time_since_epoch() == std::chrono::seconds(kT0 / 1000 + 2));
  CHECK(e.latest().issued_at.time_since_epoch() == std::chrono::seconds(kT0 / 1000 - 60));
  // The whole event, as it came.
  CHECK(e.latest().event.SerializeAsString() == c.SerializeAsString());
  CHECK(e.latest().event.report_issued().conclusion() == "corrected: small lacunar infarct");

  auto prev = lib.previous("zs-tertiary", "R1", "ev-c");
  REQUIRE(prev);
  REQUIRE(*prev);
  CHECK((*prev)->event_id == "ev-f");
  auto first = lib.previous("zs-tertiary", "R1", "ev-p");
  REQUIRE(first);
  CHECK_FALSE(*first);

  auto place = lib.place("zs-tertiary", "R1", "ev-c");
  REQUIRE(place);
  REQUIRE(*place);
  CHECK((*place)->number == 3);
  CHECK((*place)->supersedes == "ev-f");
  auto nowhere = lib.place("qh-county", "R1", "ev-c");
  REQUIRE(nowhere);
  CHECK_FALSE(*nowhere);

  auto missing = lib.find("zs-tertiary", "R404");
  REQUIRE(missing);
  CHECK_FALSE(*missing);
  CHECK(size_of(lib) == 2);
  const auto s = lib.stats();
  CHECK(s.versions == 4);
  CHECK(s.batches == 1);
}

TEST_CASE("records that are not hospital reports are read past without a version", "[unit][reports]") {
  temp_dir dir("yilian-report-library");
  auto log = open_log(dir.file("bus/log.db"));
  rp::library lib(*log, options_for(dir.file("reports/reports.db")));
  REQUIRE(lib.open());
  auto engine_made = report("zs-tertiary", "R1", "F", "ev-engine");
  engine_made.mutable_source()->set_protocol(ev::PROTOCOL_ENGINE);
  auto no_id = report("zs-tertiary", "", "F", "ev-no-id");
  ev::Envelope other;
  other.set_event_id("ev-not-a-report");
  const std::vector<bus::record> batch{record_of(engine_made, 0, 0, kT0), record_of(no_id, 0, 1, kT0),
                                       record_of(other, 0, 2, kT0),
                                       bus::record{.topic = topic, .partition = 0, .offset = 3, .value = "not protobuf"}};
  REQUIRE(lib.fold(batch));
  CHECK(size_of(lib) == 0);
  CHECK(lib.wait_past(0, 3, 0ms));  // read past all of them all the same
  CHECK_FALSE(lib.wait_past(0, 4, 0ms));
}

TEST_CASE("a replayed record adds no version", "[unit][reports]") {
  temp_dir dir("yilian-report-library");
  auto log = open_log(dir.file("bus/log.db"));
  rp::library lib(*log, options_for(dir.file("reports/reports.db")));
  REQUIRE(lib.open());
  const auto f = report("zs-tertiary", "R1", "F", "ev-f");
  const auto c = report("zs-tertiary", "R1", "C", "ev-c");
  const std::vector<bus::record> batch{record_of(f, 2, 0, kT0), record_of(c, 2, 1, kT0 + 1000)};
  REQUIRE(lib.fold(batch));

  SECTION("the same records again are below the stored offset") {
    REQUIRE(lib.fold(batch));
    CHECK(lib.stats().skipped == 2);
  }
  SECTION("the same events published again (new offsets) are known by their event id") {
    const std::vector<bus::record> again{record_of(f, 2, 2, kT0 + 5000), record_of(c, 2, 3, kT0 + 6000)};
    REQUIRE(lib.fold(again));
    CHECK(lib.stats().replays == 2);
    CHECK(lib.wait_past(2, 3, 0ms));
  }
  SECTION("the same event twice within one batch") {
    const auto g = report("zs-tertiary", "R2", "F", "ev-g");
    const std::vector<bus::record> twice{record_of(g, 3, 0, kT0), record_of(g, 3, 1, kT0)};
    REQUIRE(lib.fold(twice));
    CHECK(lib.stats().replays == 1);
    auto r2 = lib.find("zs-tertiary", "R2");
    REQUIRE(r2);
    REQUIRE(*r2);
    CHECK((*r2)->versions.size() == 1);
  }
  auto entry = lib.find("zs-tertiary", "R1");
  REQUIRE(entry);
  REQUIRE(*entry);
  REQUIRE((*entry)->versions.size() == 2);
  CHECK((*entry)->versions[1].supersedes == "ev-f");
}

TEST_CASE("a file of schema version 1 is upgraded in place and keeps its reports", "[unit][reports]") {
  temp_dir dir("yilian-report-library");
  auto log = open_log(dir.file("bus/log.db"));
  const auto file = dir.file("reports/reports.db");
  const auto f = report("zs-tertiary", "R1", "F", "ev-f");
  {
    rp::library lib(*log, options_for(file));
    REQUIRE(lib.open());
    REQUIRE(lib.fold(std::vector<bus::record>{record_of(f, 1, 0, kT0)}));
  }
  // What version 1 had and version 2 has not: a unique index on event ids.
  auto query = [&](const char* sql) {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(file.c_str(), &db) == SQLITE_OK);
    char* err = nullptr;
    std::string out;
    const int rc = sqlite3_exec(
        db, sql,
        [](void* o, int n, char** values, char**) {
          for (int i = 0; i < n; ++i) *static_cast<std::string*>(o) += values[i] != nullptr ? values[i] : "";
          return 0;
        },
        &out, &err);
    const std::string message = err != nullptr ? err : "";
    sqlite3_free(err);
    sqlite3_close(db);
    INFO(message);
    REQUIRE(rc == SQLITE_OK);
    return out;
  };
  (void)query("CREATE UNIQUE INDEX versions_event ON versions(event_id); PRAGMA user_version=1;");
  REQUIRE(query("PRAGMA user_version") == "1");

  rp::library lib(*log, options_for(file));
  REQUIRE(lib.open());
  auto entry = lib.find("zs-tertiary", "R1");
  REQUIRE(entry);
  REQUIRE(*entry);
  CHECK((*entry)->versions.size() == 1);
  // The same event at a later offset is still a replay, known within its report.
  REQUIRE(lib.fold(std::vector<bus::record>{record_of(f, 1, 1, kT0 + 1000)}));
  CHECK(lib.stats().replays == 1);
  const auto c = report("zs-tertiary", "R1", "C", "ev-c");
  REQUIRE(lib.fold(std::vector<bus::record>{record_of(c, 1, 2, kT0 + 2000)}));
  CHECK(lib.stats().versions == 1);
  lib.stop();
  CHECK(query("PRAGMA user_version") == "2");
  CHECK(query("SELECT count(*) FROM sqlite_master WHERE name = 'versions_event'") == "0");
}

TEST_CASE("newest lists reports by their latest version, newest first, a page at a time", "[unit][reports]") {
  temp_dir dir("yilian-report-library");
  auto log = open_log(dir.file("bus/log.db"));
  rp::library lib(*log, options_for(dir.file("reports/reports.db")));
  REQUIRE(lib.open());
  // R0..R9 recorded one second apart (R9 newest); R10 and R11 in the same
  // second as R9 (folded after it); then a correction of R2, the newest of all.
  std::vector<bus::record> batch;
  std::int64_t offset = 0;
  for (int i = 0; i < 10; ++i) {
    batch.push_back(record_of(report("h", "R" + std::to_string(i), "F", "f" + std::to_string(i)), 0, offset++,
                              kT0 + i * 1000));
  }
  batch.push_back(record_of(report("h", "R10", "F", "f10"), 0, offset++, kT0 + 9000 + 100));
  batch.push_back(record_of(report("h", "R11", "F", "f11"), 0, offset++, kT0 + 9000 + 200));
  REQUIRE(lib.fold(batch));
  const std::vector<bus::record> correction{record_of(report("h", "R2", "C", "c2"), 0, offset++, kT0 + 20000)};
  REQUIRE(lib.fold(correction));

  const std::vector<std::string> expected{"R2", "R11", "R10", "R9", "R8", "R7", "R6", "R5", "R4", "R3", "R1", "R0"};
  auto top = lib.newest(3);
  REQUIRE(top);
  REQUIRE(top->entries.size() == 3);
  CHECK(top->entries[0].report_id == "R2");
  CHECK(top->entries[0].versions.size() == 2);
  CHECK(top->entries[0].latest().event_id == "c2");
  CHECK(top->entries[1].report_id == "R11");
  CHECK(top->entries[2].report_id == "R10");
  REQUIRE(top->next);

  std::vector<std::string> walked;
  std::optional<rp::newest_cursor> after;
  int pages = 0;
  while (true) {
    auto page = lib.newest(5, after);
    REQUIRE(page);
    ++pages;
    for (const auto& e : page->entries) walked.push_back(e.report_id);
    if (!page->next) break;
    after = page->next;
  }
  CHECK(walked == expected);
  CHECK(pages == 3);

  auto all = lib.newest(100);
  REQUIRE(all);
  CHECK(all->entries.size() == 12);
  CHECK_FALSE(all->next);
  auto none = lib.newest(0);
  REQUIRE(none);
  CHECK(none->entries.empty());

  SECTION("the page is read through the index, not by sorting the table") {
    sqlite3* raw = nullptr;
    REQUIRE(sqlite3_open_v2(dir.file("reports/reports.db").c_str(), &raw, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
    sqlite3_stmt* s = nullptr;
    REQUIRE(sqlite3_prepare_v2(raw,
                               "EXPLAIN QUERY PLAN SELECT id, hospital, report_id, latest_recorded_at, latest_version "
                               "FROM reports WHERE (latest_recorded_at, latest_version) < (?1, ?2) "
                               "ORDER BY latest_recorded_at DESC, latest_version DESC LIMIT ?3",
                               -1, &s, nullptr) == SQLITE_OK);
    std::string plan;
    while (sqlite3_step(s) == SQLITE_ROW) plan += std::string(reinterpret_cast<const char*>(sqlite3_column_text(s, 3))) + "\n";
    sqlite3_finalize(s);
    sqlite3_close(raw);
    INFO(plan);
    CHECK(plan.find("reports_newest") != std::string::npos);
    CHECK(plan.find("TEMP B-TREE") == std::string::npos);
  }
}

TEST_CASE("the report library survives a restart and resumes from the offsets in its file", "[unit][reports]") {
  temp_dir dir("yilian-report-library");
  auto log = open_log(dir.file("bus/log.db"));
  const auto file = dir.file("reports/reports.db");
  {
    rp::library lib(*log, options_for(file));
    REQUIRE(lib.start());
    publish_reports(*log, 0, 40);
    publish(*log, report("zs-tertiary", "R0", "C", "ev-zs-tertiary-R0-C"));
    REQUIRE(eventually([&] { return lib.caught_up(); }));
    REQUIRE(read_to_end(*log, lib));
    CHECK(size_of(lib) == 40);
    lib.stop();
  }
  publish_reports(*log, 40, 50);  // while the engine is down: the bus is ahead of the file

  rp::library lib(*log, options_for(file));
  // Opened, not started: the reports are there before the bus is read.
  REQUIRE(lib.open());
  CHECK(size_of(lib) == 40);
  REQUIRE(lib.start());
  REQUIRE(eventually([&] { return lib.caught_up(); }));
  REQUIRE(read_to_end(*log, lib));
  const auto s = lib.stats();
  CHECK(s.rebuilds == 0);
  CHECK(s.records == 10);  // only what was published after the stop
  CHECK(s.versions == 10);
  CHECK(size_of(lib) == 50);
  const auto ids = all_event_ids(lib);
  CHECK(ids.size() == 51);
  CHECK(std::set<std::string>(ids.begin(), ids.end()).size() == ids.size());
  auto r0 = lib.find("zs-tertiary", "R0");
  REQUIRE(r0);
  REQUIRE(*r0);
  CHECK((*r0)->versions.size() == 2);
}

TEST_CASE("records the file already holds are skipped when the bus redelivers them", "[unit][reports]") {
  temp_dir dir("yilian-report-library");
  auto log = open_log(dir.file("bus/log.db"));
  const auto file = dir.file("reports/reports.db");
  {
    rp::library lib(*log, options_for(file));
    REQUIRE(lib.start());
    publish_reports(*log, 0, 20);
    REQUIRE(read_to_end(*log, lib));
    lib.stop();  // the group's offset is committed on the bus here
  }
  publish_reports(*log, 20, 30);
  {
    // The file takes in the next 10 records without telling the bus (as
    // after a crash between the file's commit and the bus commit).
    rp::library lib(*log, options_for(file));
    REQUIRE(lib.open());
    auto c = log->subscribe(bus::consumer_options{.group = "copy", .topics = {topic}});
    REQUIRE(c);
    std::vector<bus::record> all;
    REQUIRE(eventually([&] {
      auto b = (*c)->poll(50ms, 100);
      REQUIRE(b);
      all.insert(all.end(), b->begin(), b->end());
      return all.size() == 30;
    }));
    REQUIRE(lib.fold(all));
    CHECK(lib.stats().skipped == 20);
    CHECK(lib.stats().versions == 10);
  }
  rp::library lib(*log, options_for(file));
  REQUIRE(lib.start());
  REQUIRE(eventually([&] { return lib.caught_up(); }));
  REQUIRE(read_to_end(*log, lib));
  const auto s = lib.stats();
  CHECK(s.rebuilds == 0);
  CHECK(s.records == 10);  // redelivered from the group's offset...
  CHECK(s.skipped == 10);  // ...and skipped: the file had them
  CHECK(s.versions == 0);
  CHECK(size_of(lib) == 30);
}

TEST_CASE("the report library is rebuilt when the bus is older than its file", "[unit][reports]") {
  temp_dir dir("yilian-report-library");
  const auto file = dir.file("reports/reports.db");
  {
    auto log = open_log(dir.file("bus/log.db"));
    rp::library lib(*log, options_for(file));
    REQUIRE(lib.start());
    publish_reports(*log, 0, 30, "old-bus");
    REQUIRE(read_to_end(*log, lib));
    lib.stop();
  }
  // The bus was wiped: a new, shorter one (with other reports) under the same data dir.
  std::filesystem::remove_all(dir.file("bus"));
  auto log = open_log(dir.file("bus/log.db"));
  publish_reports(*log, 0, 3, "new-bus");
  auto lib = std::make_unique<rp::library>(*log, options_for(file));
  REQUIRE(lib->start());
  REQUIRE(eventually([&] { return lib->caught_up(); }));
  REQUIRE(read_to_end(*log, *lib));
  CHECK(lib->stats().rebuilds == 1);
  CHECK(size_of(*lib) == 3);
  auto gone = lib->find("old-bus", "R0");
  REQUIRE(gone);
  CHECK_FALSE(*gone);
  auto there = lib->find("new-bus", "R2");
  REQUIRE(there);
  CHECK(*there);

  SECTION("and is not rebuilt again at the next start") {
    lib.reset();
    rp::library again(*log, options_for(file));
    REQUIRE(again.start());
    REQUIRE(eventually([&] { return again.caught_up(); }));
    CHECK(again.stats().rebuilds == 0);
    CHECK(size_of(again) == 3);
  }
}

TEST_CASE("the report library is rebuilt when the bus was wiped and refilled past its file", "[unit][reports]") {
  temp_dir dir("yilian-report-library");
  const auto file = dir.file("reports/reports.db");
  {
    auto log = open_log(dir.file("bus/log.db"));
    rp::library lib(*log, options_for(file));
    REQUIRE(lib.start());
    publish_reports(*log, 0, 8, "old-bus");
    REQUIRE(read_to_end(*log, lib));
    lib.stop();
  }
  std::filesystem::remove_all(dir.file("bus"));
  auto log = open_log(dir.file("bus/log.db"));
  publish_reports(*log, 0, 40, "new-bus");  // longer than before: the offsets alone would not tell
  rp::library lib(*log, options_for(file));
  REQUIRE(lib.start());
  REQUIRE(eventually([&] { return lib.caught_up(); }));
  REQUIRE(read_to_end(*log, lib));
  CHECK(lib.stats().rebuilds == 1);
  CHECK(size_of(lib) == 40);
  auto gone = lib.find("old-bus", "R0");
  REQUIRE(gone);
  CHECK_FALSE(*gone);
}

TEST_CASE("the report library is rebuilt when its file is older than what the bus says it folded",
          "[unit][reports]") {
  temp_dir dir("yilian-report-library");
  auto log = open_log(dir.file("bus/log.db"));
  const auto file = dir.file("reports/reports.db");
  const auto copy = dir.file("copy/reports.db");
  {
    rp::library lib(*log, options_for(file));
    REQUIRE(lib.start());
    publish_reports(*log, 0, 10);
    REQUIRE(read_to_end(*log, lib));
    lib.stop();
  }
  // A copy of the closed file (its WAL was checkpointed into it on close).
  std::filesystem::create_directories(copy.parent_path());
  std::filesystem::copy_file(file, copy);
  {
    rp::library lib(*log, options_for(file));
    REQUIRE(lib.start());
    publish_reports(*log, 10, 25);
    REQUIRE(read_to_end(*log, lib));
    lib.stop();
  }
  // The file is put back from the copy: it misses 15 reports the group read.
  std::filesystem::remove(file);
  std::filesystem::remove(file.string() + "-wal");
  std::filesystem::remove(file.string() + "-shm");
  std::filesystem::copy_file(copy, file);
  rp::library lib(*log, options_for(file));
  REQUIRE(lib.start());
  REQUIRE(eventually([&] { return lib.caught_up(); }));
  REQUIRE(read_to_end(*log, lib));
  CHECK(lib.stats().rebuilds == 1);
  CHECK(size_of(lib) == 25);
}

TEST_CASE("a missing file is folded from the beginning of the topic", "[unit][reports]") {
  temp_dir dir("yilian-report-library");
  auto log = open_log(dir.file("bus/log.db"));
  publish_reports(*log, 0, 12);
  rp::library lib(*log, options_for(dir.file("reports/reports.db")));
  REQUIRE(lib.start());
  REQUIRE(eventually([&] { return lib.caught_up(); }));
  CHECK(size_of(lib) == 12);
  CHECK(lib.stats().rebuilds == 0);
}

TEST_CASE("the router's wait for the library ends once the fold has read past the offset", "[unit][reports]") {
  temp_dir dir("yilian-report-library");
  auto log = open_log(dir.file("bus/log.db"));
  rp::library lib(*log, options_for(dir.file("reports/reports.db")));
  REQUIRE(lib.start());
  REQUIRE(eventually([&] { return lib.caught_up(); }));
  CHECK_FALSE(lib.wait_past(0, 0, 10ms));
  std::thread later([&] {
    std::this_thread::sleep_for(50ms);
    // 32 keys: partition 0 gets some (the keys decide, always the same way).
    publish_reports(*log, 0, 32);
  });
  CHECK(lib.wait_past(0, 0, 20s));
  later.join();
}

TEST_CASE("a second owner of a report library file is refused", "[unit][reports]") {
  temp_dir dir("yilian-report-library");
  auto log = open_log(dir.file("bus/log.db"));
  rp::library one(*log, options_for(dir.file("reports/reports.db")));
  REQUIRE(one.open());
  rp::library two(*log, options_for(dir.file("reports/reports.db")));
  auto r = two.open();
  REQUIRE_FALSE(r);
  CHECK(r.error().code == errc::unavailable);
}

TEST_CASE("a SQLite file of something else is not taken for a report library", "[unit][reports]") {
  temp_dir dir("yilian-report-library");
  auto log = open_log(dir.file("bus/log.db"));
  {
    sqlite3* raw = nullptr;
    std::filesystem::create_directories(dir.file("reports"));
    REQUIRE(sqlite3_open(dir.file("reports/reports.db").c_str(), &raw) == SQLITE_OK);
    REQUIRE(sqlite3_exec(raw, "CREATE TABLE t(x)", nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(raw);
  }
  rp::library lib(*log, options_for(dir.file("reports/reports.db")));
  auto r = lib.open();
  REQUIRE_FALSE(r);
  CHECK(r.error().code == errc::config_error);
}

TEST_CASE("the report library's memory does not grow with the number of reports", "[unit][reports][slow]") {
  temp_dir dir("yilian-report-library");
  auto log = open_log(dir.file("bus/log.db"));
  auto o = options_for(dir.file("reports/reports.db"));
  o.cache_kib = 1024;
  rp::library lib(*log, o);
  REQUIRE(lib.open());

  // Real-sized versions (~3.5 KB serialized, as the heap profile saw them).
  std::int64_t offset = 0;
  std::int64_t ts = kT0;
  auto fold_reports = [&](int from, int to) {
    std::vector<bus::record> batch;
    for (int i = from; i < to; ++i) {
      const std::string id = "R" + std::to_string(i);
      batch.push_back(record_of(report("zs-tertiary", id, "F", "ev-" + id, 3300), 0, offset++, ts));
      ts += 10;
      if (batch.size() == 1000) {
        REQUIRE(lib.fold(batch));
        batch.clear();
      }
    }
    if (!batch.empty()) REQUIRE(lib.fold(batch));
  };
  // Readers at work between the batches too.
  auto read_some = [&](int upto) {
    for (int i = 0; i < upto; i += upto / 50) {
      auto e = lib.find("zs-tertiary", "R" + std::to_string(i));
      REQUIRE(e);
      REQUIRE(*e);
    }
    auto page = lib.newest(200);
    REQUIRE(page);
    REQUIRE(page->entries.size() == 200);
  };

  fold_reports(0, 10000);
  read_some(10000);
  const auto at10k = lib.memory();
  const auto sqlite_at10k = sqlite3_memory_used();
  fold_reports(10000, 50000);
  read_some(50000);
  const auto at50k = lib.memory();
  const auto sqlite_at50k = sqlite3_memory_used();

  CHECK(size_of(lib) == 50000);
  CHECK(std::filesystem::file_size(dir.file("reports/reports.db")) > 100U * 1024U * 1024U);  // the data is on disk...
  INFO("page cache at 10k: " << at10k.page_cache_bytes << ", at 50k: " << at50k.page_cache_bytes << " (limit "
                             << at50k.page_cache_limit << "); sqlite heap at 10k: " << sqlite_at10k
                             << ", at 50k: " << sqlite_at50k);
  // ...and in memory only the page caches, each within its bound (a page
  // costs a little more than its size in the cache), and one offset per partition.
  CHECK(at50k.connections <= 1 + o.readers);
  CHECK(at50k.page_cache_bytes <= at50k.page_cache_limit + at50k.page_cache_limit / 4);
  CHECK(at50k.partitions == 1);
  // 40,000 more reports (~140 MB) change SQLite's heap by less than a cache's worth.
  CHECK(sqlite_at50k - sqlite_at10k < o.cache_kib * 1024);
}
