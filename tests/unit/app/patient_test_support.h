// What the identity index's REST and FHIR tests (patient_api_test.cc,
// patient_fhir_test.cc) share: the identity service on an embedded log in a
// temporary directory fed by PatientRegistered envelopes published to
// yilian.patient.v1, both sets of routes on the real HTTP server on 127.0.0.1
// port 0, the example consortium, the audit log read back from its file, and
// the made-up patient.
//
// Principals: zs-tertiary-his (the tertiary hospital's system), dc-chc-user
// (a clinic user of dc-chc), nh-chc-user (a clinic that never saw the
// patient) and operator (consortium-wide); each one's token is "tok-<id>".
// The patients are made up: names from common characters, resident IDs with
// computed check digits.
#pragma once

#include <catch2/catch.hpp>

#include <google/protobuf/util/time_util.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "engine/api/audit.h"
#include "engine/api/server.h"
#include "engine/app/patient_api.h"
#include "engine/app/patient_fhir.h"
#include "engine/bus/embedded_log.h"
#include "engine/config/config.h"
#include "engine/workflows/identity/service.h"
#include "tests/support/eventually.h"
#include "tests/support/api_host.h"
#include "tests/support/audit_file.h"
#include "tests/support/temp_dir.h"

namespace yilian::app::test {

using namespace std::chrono_literals;
namespace wi = yilian::workflows::identity;
namespace ev = yilian::events::v1;
using json = nlohmann::json;
namespace http = boost::beast::http;
using steady = std::chrono::steady_clock;
using reply = yilian::test::http_reply;

inline const std::string patient_topic = "yilian.patient.v1";
inline const std::string identity_topic = "yilian.identity.v1";

inline std::filesystem::path source_dir() {
  if (const char* dir = std::getenv("YILIAN_SOURCE_DIR"); dir != nullptr && *dir != '\0') return dir;
  return YILIAN_SOURCE_DIR;
}

inline const config::loaded_consortium& consortium() {
  static const config::loaded_consortium loaded = [] {
    auto r = config::load_consortium(source_dir() / "deploy/examples/consortium");
    if (!r) throw std::runtime_error("example consortium does not load: " + r.error().describe());
    return std::move(*r);
  }();
  return loaded;
}

// A resident ID: 17 digits + the GB 11643 (ISO 7064 MOD 11-2) check character.
inline std::string resident_id(const std::string& first17) {
  static constexpr int weights[] = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
  int sum = 0;
  for (std::size_t i = 0; i < 17; ++i) sum += (first17[i] - '0') * weights[i];
  return first17 + "10X98765432"[sum % 11];
}

using yilian::test::eventually;

inline ev::Identifier identifier(const std::string& system, const std::string& value, ev::IdentifierType type,
                          const std::string& assigner = {}) {
  ev::Identifier i;
  i.set_system(system);
  i.set_value(value);
  i.set_type(type);
  i.set_assigner(assigner);
  return i;
}
inline ev::Identifier mrn(const std::string& hospital, const std::string& value) {
  return identifier("urn:yilian:id:" + hospital + ":mrn", value, ev::IDENTIFIER_TYPE_MRN, hospital);
}
inline ev::Identifier resident(const std::string& value) {
  return identifier("urn:yilian:id:cn:resident", value, ev::IDENTIFIER_TYPE_RESIDENT_ID);
}

struct person_in {
  std::string hanzi, family, given, pinyin, birth_date, phone;
  ev::Sex sex = ev::SEX_MALE;
};

inline ev::Demographics demographics(const person_in& p) {
  ev::Demographics d;
  d.mutable_name()->set_hanzi(p.hanzi);
  d.mutable_name()->set_family(p.family);
  d.mutable_name()->set_given(p.given);
  d.mutable_name()->set_pinyin(p.pinyin);
  d.set_birth_date(p.birth_date);
  d.set_sex(p.sex);
  if (!p.phone.empty()) {
    auto* t = d.add_telecom();
    t->set_system("phone");
    t->set_value(p.phone);
    t->set_use(ev::CONTACT_USE_MOBILE);
  }
  return d;
}

// The made-up patient of these tests.
inline const std::string wang_id = resident_id("11010119600501001");
inline const person_in wang{.hanzi = "王建国", .family = "王", .given = "建国", .pinyin = "", .birth_date = "1960-05-01",
                     .phone = "13800138000", .sex = ev::SEX_MALE};
inline const person_in wang_pinyin{.hanzi = "", .family = "", .given = "", .pinyin = "WANG JIANGUO",
                            .birth_date = "1960-05-01", .phone = "", .sex = ev::SEX_MALE};

// The consortium's index options; while options_from refuses the example
// consortium's three card systems (zs and qh insurance, the health card), the
// two the tests' patients could carry.
inline wi::service_options service_options() {
  if (auto o = wi::options_from(consortium())) return std::move(*o);
  WARN("options_from(example consortium) failed; using resident ID + two card systems");
  wi::service_options o;
  o.index.resident_id_systems = {"urn:yilian:id:cn:resident"};
  o.index.card_systems[0] = "urn:yilian:id:zs:insurance";
  o.index.card_systems[1] = "urn:yilian:id:cn:health-card";
  return o;
}

struct fixture {
  yilian::test::temp_dir dir{"yilian-patient-test"};
  std::unique_ptr<bus::bus> log;
  std::unique_ptr<wi::service> svc;
  std::unique_ptr<api::audit_log> audit;
  yilian::test::api_host host;
  int published = 0;

  fixture() {
    auto b = bus::open_embedded_log(bus::embedded_log_options{.path = dir.file("bus/log.db"), .default_partitions = 4});
    if (!b) FAIL(b.error().describe());
    log = std::move(*b);
    const std::vector<bus::topic_spec> topics{{.name = patient_topic, .partitions = 4},
                                              {.name = identity_topic, .partitions = 1}};
    if (auto r = log->ensure_topics(topics); !r) FAIL(r.error().describe());
    auto o = service_options();
    o.observed_topics.clear();
    o.instance = "test";
    svc = std::make_unique<wi::service>(*log, std::move(o));
    if (auto r = svc->start(); !r) FAIL(r.error().describe());
    REQUIRE(eventually([&] { return svc->caught_up(); }));
    auto a = api::audit_log::open(dir.file("audit/audit.log"), 5ms);
    if (!a) FAIL(a.error().describe());
    audit = std::move(*a);
    app::add_patient_routes(host.routes(), *svc, *audit, consortium(), app::patient_api_options{.decision_timeout = 10s});
    app::add_patient_fhir_routes(host.routes(), *svc, *audit, consortium());
    host.start({
        {.id = principal_id("zs-tertiary-his"), .role = api::role::hospital_system, .hospital = hospital_id("zs-tertiary")},
        {.id = principal_id("dc-chc-user"), .role = api::role::clinic_user, .hospital = hospital_id("dc-chc")},
        {.id = principal_id("nh-chc-user"), .role = api::role::clinic_user, .hospital = hospital_id("nh-chc")},
        {.id = principal_id("operator"), .role = api::role::operator_, .hospital = hospital_id("")}});
  }
  ~fixture() {
    host.stop();
    svc->stop();
    svc.reset();
    (void)log->flush(5s);
  }
  fixture(const fixture&) = delete;
  fixture& operator=(const fixture&) = delete;

  void publish(ev::Envelope e) {
    e.set_schema_version(1);
    *e.mutable_recorded_at() = google::protobuf::util::TimeUtil::GetCurrentTime();
    *e.mutable_occurred_at() = e.recorded_at();
    auto done = std::make_shared<std::promise<result<bus::position>>>();
    auto fut = done->get_future();
    const auto& first = e.subject().identifiers().empty() ? ev::Identifier() : e.subject().identifiers(0);
    bus::message msg{.topic = patient_topic, .key = first.system() + "|" + first.value(), .value = e.SerializeAsString()};
    msg.headers.push_back({"event_id", e.event_id()});
    msg.headers.push_back({"type", e.type()});
    log->publish(std::move(msg), [done](result<bus::position> r) { done->set_value(std::move(r)); });
    REQUIRE(fut.wait_for(10s) == std::future_status::ready);
    auto r = fut.get();
    if (!r) FAIL(r.error().describe());
    ++published;
  }

  // A hospital registers a patient (ADT^A04 as the HL7 adapter maps it).
  void registered(const std::string& hospital, std::vector<ev::Identifier> ids, const person_in& p) {
    ev::Envelope e;
    e.set_event_id("reg-" + hospital + "-" + ids.front().value());
    e.set_type("yilian.events.v1.PatientRegistered");
    e.mutable_source()->set_hospital(hospital);
    e.mutable_source()->set_system("HIS");
    e.mutable_source()->set_protocol(ev::PROTOCOL_HL7V2_MLLP);
    for (auto& i : ids) *e.mutable_subject()->add_identifiers() = std::move(i);
    e.mutable_patient_registered()->set_trigger("A04");
    *e.mutable_patient_registered()->mutable_demographics() = demographics(p);
    publish(std::move(e));
  }

  // Waits until the index holds the identifier; its person.
  wi::person_info person_of(const ev::Identifier& id, std::size_t records = 1) {
    std::optional<wi::person_info> out;
    const bool seen = eventually([&] {
      out = svc->read([&](const wi::view& v) { return v.person_of(id.system(), id.value()); });
      return out && out->records.size() >= records;
    });
    REQUIRE(seen);
    return *out;
  }

  reply get(const std::string& target, const std::string& who) {
    return host.call(http::verb::get, target, who);
  }
  reply post(const std::string& target, const std::string& who, const json& body) {
    return host.call(http::verb::post, target, who, {.body = body.dump()});
  }

  std::string audit_text() {
    std::ifstream in(audit->path());
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  bool audited(const std::string& principal, const std::string& action, const std::string& resource,
               const std::string& id, const std::string& outcome = "ok") {
    return eventually(
        [&] { return yilian::test::audit_has(yilian::test::audit_records(audit->path()), principal, action, resource, id, outcome); });
  }

  // zs-tertiary and dc-chc registered the same man, both with his resident ID.
  std::string two_hospitals() {
    registered("zs-tertiary", {mrn("zs-tertiary", "ZS-1001"), resident(wang_id)}, wang);
    registered("dc-chc", {mrn("dc-chc", "DC-0001"), resident(wang_id)}, wang_pinyin);
    const auto p = person_of(mrn("dc-chc", "DC-0001"), 2);
    return p.enterprise_id;
  }
};

inline std::string q(const ev::Identifier& id) { return id.system() + "%7C" + id.value(); }

}  // namespace yilian::app::test
