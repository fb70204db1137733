// The identity workflow (engine/workflows/identity/service.h) on a real
// embedded log in a temporary directory: patient events published on the
// patient topic reach the identity log through the feed, every view folds the
// log into the same index, the writer announces each decision once as
// PatientLinkChanged, operators' commands round-trip through the log, and a
// restart rebuilds the same index without announcing anything twice.
//
// Every wait has a deadline.
#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "engine/bus/embedded_log.h"
#include "engine/workflows/identity/service.h"
#include "tests/support/eventually.h"
#include "tests/support/temp_dir.h"
#include "tests/unit/identity/test_people.h"

using namespace yilian;
using namespace yilian::workflows::identity;
namespace ev = yilian::events::v1;
namespace idt = yilian::identity::test;
using steady = std::chrono::steady_clock;
using yilian::test::temp_dir;

namespace {

const std::string patient_topic = "yilian.patient.v1";
const std::string log_topic = "yilian.identity.v1";
const std::string referral_topic = "yilian.referral.v1";

std::unique_ptr<bus::bus> open_log(const temp_dir& dir) {
  auto b = bus::open_embedded_log(bus::embedded_log_options{.path = dir.file("bus/log.db"), .default_partitions = 4});
  if (!b) FAIL(b.error().describe());
  const std::vector<bus::topic_spec> topics{{.name = patient_topic, .partitions = 4},
                                            {.name = referral_topic, .partitions = 4},
                                            {.name = log_topic, .partitions = 1}};
  if (auto r = (*b)->ensure_topics(topics); !r) FAIL(r.error().describe());
  return std::move(*b);
}

service_options test_options() {
  service_options o;
  o.index = idt::test_options();
  o.observed_topics = {referral_topic};
  return o;
}

void publish(bus::bus& b, const std::string& topic, const ev::Envelope& e) {
  std::promise<result<bus::position>> done;
  auto f = done.get_future();
  b.publish(bus::message{.topic = topic, .key = e.subject().identifiers(0).value(), .value = e.SerializeAsString()},
            [&done](result<bus::position> p) { done.set_value(std::move(p)); });
  auto r = f.get();
  if (!r) FAIL(r.error().describe());
}

// A workflow's event (source ENGINE) about hospital h-a's patient `mrn`.
ev::Envelope engine_event(const std::string& id, const std::string& mrn) {
  ev::Envelope e;
  e.set_event_id(id);
  e.mutable_source()->set_hospital("h-a");
  e.mutable_source()->set_protocol(ev::PROTOCOL_ENGINE);
  auto* m = e.mutable_subject()->add_identifiers();
  m->set_system(idt::mrn_a);
  m->set_value(mrn);
  m->set_type(ev::IDENTIFIER_TYPE_MRN);
  m->set_assigner("h-a");
  return e;
}

struct person {
  std::string hospital;
  std::string mrn_system;
  std::string mrn;
  std::string hanzi;
  std::string birth_date;
  std::string rid;
  std::string phone;
};

ev::Envelope registered(const person& p, const std::string& event_id) {
  ev::Envelope e;
  e.set_event_id(event_id);
  e.set_type("yilian.events.v1.PatientRegistered");
  e.mutable_source()->set_hospital(p.hospital);
  e.mutable_source()->set_protocol(ev::PROTOCOL_HL7V2_MLLP);
  auto* mrn = e.mutable_subject()->add_identifiers();
  mrn->set_system(p.mrn_system);
  mrn->set_value(p.mrn);
  mrn->set_type(ev::IDENTIFIER_TYPE_MRN);
  mrn->set_assigner(p.hospital);
  if (!p.rid.empty()) {
    auto* rid = e.mutable_subject()->add_identifiers();
    rid->set_system(idt::rid_system);
    rid->set_value(p.rid);
    rid->set_type(ev::IDENTIFIER_TYPE_RESIDENT_ID);
  }
  auto& d = *e.mutable_patient_registered()->mutable_demographics();
  d.mutable_name()->set_hanzi(p.hanzi);
  d.set_birth_date(p.birth_date);
  if (!p.phone.empty()) {
    auto* t = d.add_telecom();
    t->set_system("phone");
    t->set_value(p.phone);
  }
  return e;
}

using yilian::test::eventually;

// PatientLinkChanged events on the patient topic, read by a fresh group.
std::vector<ev::Envelope> announcements(bus::bus& b) {
  auto c = b.subscribe(bus::consumer_options{.group = "test-reader-" + std::to_string(steady::now().time_since_epoch().count()),
                                             .topics = {patient_topic},
                                             .start = bus::start_from::earliest});
  if (!c) FAIL(c.error().describe());
  std::vector<ev::Envelope> out;
  for (int empty = 0; empty < 3;) {
    auto batch = (*c)->poll(std::chrono::milliseconds(100), 1000);
    if (!batch || batch->empty()) {
      ++empty;
      continue;
    }
    for (const auto& r : *batch) {
      ev::Envelope e;
      if (e.ParseFromString(r.value) && e.has_patient_link_changed()) out.push_back(std::move(e));
    }
  }
  return out;
}

result<command_outcome> submit(service& svc, ev::PatientLinkCommand c) {
  std::promise<result<command_outcome>> done;
  auto f = done.get_future();
  svc.submit(std::move(c), "", [&done](result<command_outcome> r) { done.set_value(std::move(r)); });
  if (f.wait_for(std::chrono::seconds(20)) != std::future_status::ready) return fail(errc::timeout, "no outcome");
  return f.get();
}

const identity::civil_date born{.year = 1968, .month = 3, .day = 14};

}  // namespace

TEST_CASE("patient records from two hospitals become one person through the identity log", "[unit]") {
  temp_dir dir{"yilian-identity-test"};
  auto b = open_log(dir);
  const std::string rid = idt::make_rid("440101", born, 123);
  service svc(*b, test_options());
  REQUIRE(svc.start());
  REQUIRE(eventually([&] { return svc.caught_up(); }));

  publish(*b, patient_topic, registered({"h-a", idt::mrn_a, "A-100", "张建国", "1968-03-14", rid, ""}, "ev-a"));
  publish(*b, patient_topic, registered({"h-b", idt::mrn_b, "B-7", "张建国", "1968-03-14", rid, ""}, "ev-b"));
  // Same name and birth date but a resident ID with a broken check digit:
  // never linked by it.
  publish(*b, patient_topic,
          registered({"h-b", idt::mrn_b, "B-8", "张建国", "1968-03-14", idt::break_check(idt::make_rid("440101", born, 555)), ""},
                     "ev-c"));

  REQUIRE(eventually([&] { return svc.read([](const view& v) { return v.index().stats().records == 3; }); }));
  const std::string a = svc.enterprise_id_of(idt::mrn_a, "A-100");
  const std::string bid = svc.enterprise_id_of(idt::mrn_b, "B-7");
  const std::string c = svc.enterprise_id_of(idt::mrn_b, "B-8");
  CHECK(a.starts_with("YL"));
  CHECK(a == bid);
  CHECK(c != a);

  auto x = svc.cross_reference_of(idt::mrn_b, "B-7");
  REQUIRE(x);
  CHECK(x->enterprise_id == a);
  std::vector<std::string> values;
  for (const auto& id : x->identifiers) values.push_back(id.value);
  CHECK(std::find(values.begin(), values.end(), "A-100") != values.end());
  CHECK(std::find(values.begin(), values.end(), rid) != values.end());
  CHECK(x->identifiers.front().type == "MRN");
  CHECK(x->identifiers.front().hospital == "h-a");

  auto p = svc.read([&](const view& v) { return v.person(a); });
  REQUIRE(p);
  REQUIRE(p->records.size() == 2);
  CHECK(p->records[0].demographics.name().hanzi() == "张建国");
  CHECK(p->records[1].hospital == "h-b");

  // The writer announces: ASSIGNED for A-100, LINKED by resident ID for B-7,
  // ASSIGNED for B-8 (no link, no review: a broken ID never scores).
  REQUIRE(eventually([&] { return announcements(*b).size() >= 3; }));
  const auto ann = announcements(*b);
  REQUIRE(ann.size() >= 3);
  CHECK(ann[0].patient_link_changed().action() == ev::LINK_ACTION_ASSIGNED);
  CHECK(ann[1].patient_link_changed().action() == ev::LINK_ACTION_LINKED);
  CHECK(ann[1].patient_link_changed().basis() == ev::LINK_BASIS_RESIDENT_ID);
  CHECK(ann[1].patient_link_changed().enterprise_patient_id() == a);
  CHECK(ann[1].patient_link_changed().hospital() == "h-b");
  CHECK(ann[1].patient_link_changed().score() == 1.0);
  CHECK(ann[2].patient_link_changed().action() == ev::LINK_ACTION_ASSIGNED);
  CHECK(ann[2].patient_link_changed().enterprise_patient_id() == c);
  // B-8 may wait for review (same name and birth date), never a link; the
  // broken number is not among its identifiers.
  for (std::size_t i = 3; i < ann.size(); ++i) {
    CHECK(ann[i].patient_link_changed().action() == ev::LINK_ACTION_REVIEW);
    CHECK(ann[i].patient_link_changed().enterprise_patient_id() == c);
    CHECK(ann[i].patient_link_changed().identifiers_size() == 1);
  }
  for (const auto& e : ann) {
    CHECK(e.subject().enterprise_patient_id() == e.patient_link_changed().enterprise_patient_id());
    CHECK(e.source().protocol() == ev::PROTOCOL_ENGINE);
  }
  // The engine's own announcements do not feed back into the log.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(svc.read([](const view& v) { return v.applied_through(); }) == 3);
  CHECK(announcements(*b).size() == ann.size());
}

TEST_CASE("operators accept, split and move through the identity log; a restart rebuilds the same index", "[unit]") {
  temp_dir dir{"yilian-identity-test"};
  auto b = open_log(dir);
  service_options o = test_options();
  o.index.match.upper = 1000;  // anything above the lower bound goes to review
  o.index.match.scale_with_population = false;
  std::string first_id;
  std::size_t announced = 0;
  {
    service svc(*b, o);
    REQUIRE(svc.start());
    publish(*b, patient_topic, registered({"h-a", idt::mrn_a, "A-1", "王芳", "1980-05-17", "", "13900000001"}, "ev-1"));
    REQUIRE(eventually([&] { return svc.read([](const view& v) { return v.index().stats().records == 1; }); }));
    publish(*b, patient_topic, registered({"h-b", idt::mrn_b, "B-1", "王芳", "1980-05-17", "", "13900000001"}, "ev-2"));
    REQUIRE(eventually([&] { return svc.read([](const view& v) { return v.reviews(true).size() == 1; }); }));
    const auto review = svc.read([](const view& v) { return v.reviews(true).front(); });
    CHECK(review.state == "open");
    CHECK(review.record.hospital == "h-b");
    first_id = svc.enterprise_id_of(idt::mrn_a, "A-1");
    CHECK(review.candidate_enterprise_id == first_id);
    CHECK(review.record_enterprise_id != first_id);

    ev::PatientLinkCommand accept;
    accept.set_command_id("cmd-accept");
    accept.set_action(ev::PatientLinkCommand::ACTION_ACCEPT_REVIEW);
    accept.set_review_id(review.id);
    accept.set_decided_by("op-1");
    accept.set_reason("same phone, confirmed by the clinic");
    auto accepted = submit(svc, accept);
    REQUIRE(accepted);
    CHECK_FALSE(accepted->refused);
    CHECK(accepted->enterprise_id == first_id);
    CHECK(svc.enterprise_id_of(idt::mrn_b, "B-1") == first_id);

    // The same review again: refused as already decided; the same command
    // id again: the first outcome.
    accept.set_command_id("cmd-accept-2");
    auto again = submit(svc, accept);
    REQUIRE(again);
    REQUIRE(again->refused);
    CHECK(again->refused->code == errc::conflict);
    accept.set_command_id("cmd-accept");
    auto repeated = submit(svc, accept);
    REQUIRE(repeated);
    CHECK_FALSE(repeated->refused);

    ev::PatientLinkCommand split;
    split.set_command_id("cmd-split");
    split.set_action(ev::PatientLinkCommand::ACTION_SPLIT);
    split.mutable_record()->set_system(idt::mrn_b);
    split.mutable_record()->set_value("B-1");
    split.set_decided_by("op-2");
    auto s = submit(svc, split);
    REQUIRE(s);
    REQUIRE_FALSE(s->refused);
    CHECK(s->enterprise_id != first_id);
    CHECK(svc.enterprise_id_of(idt::mrn_b, "B-1") == s->enterprise_id);

    ev::PatientLinkCommand move;
    move.set_command_id("cmd-move");
    move.set_action(ev::PatientLinkCommand::ACTION_MOVE);
    *move.mutable_record() = split.record();
    move.set_to_enterprise_patient_id(first_id);
    move.set_decided_by("op-3");
    auto m = submit(svc, move);
    REQUIRE(m);
    REQUIRE_FALSE(m->refused);
    CHECK(m->enterprise_id == first_id);

    ev::PatientLinkCommand bad = move;
    bad.set_command_id("cmd-bad");
    bad.mutable_record()->set_value("NOPE");
    auto refused = submit(svc, bad);
    REQUIRE(refused);
    REQUIRE(refused->refused);
    CHECK(refused->refused->code == errc::not_found);

    const auto h = svc.read([&](const view& v) { return v.history(first_id); });
    std::vector<ev::LinkAction> actions;
    for (const auto& e : h) actions.push_back(e.action());
    // A-1 and B-1 each got a person of their own, B-1 waited for review
    // against A-1's, was linked by op-1, split by op-2, moved back by op-3.
    CHECK(actions == std::vector<ev::LinkAction>{ev::LINK_ACTION_ASSIGNED, ev::LINK_ACTION_ASSIGNED, ev::LINK_ACTION_REVIEW,
                                                 ev::LINK_ACTION_LINKED, ev::LINK_ACTION_UNLINKED, ev::LINK_ACTION_LINKED});
    REQUIRE(h.size() == 6);
    CHECK(h[2].candidate_enterprise_patient_id() == first_id);
    CHECK(h[2].review_id() == review.id);
    CHECK(h[2].hospital() == "h-b");
    CHECK(h[3].decided_by() == "op-1");
    CHECK(h[3].reason() == "same phone, confirmed by the clinic");
    CHECK(h[3].basis() == ev::LINK_BASIS_MANUAL);
    CHECK(h[3].enterprise_patient_id() == first_id);
    CHECK(h[4].decided_by() == "op-2");
    CHECK(h[4].previous_enterprise_patient_id() == first_id);
    CHECK(h[5].decided_by() == "op-3");

    const auto reviews = svc.read([](const view& v) { return v.reviews(false); });
    REQUIRE(reviews.size() == 1);
    CHECK(reviews[0].state == "accepted");

    REQUIRE(eventually([&] { return announcements(*b).size() >= 6; }));
    announced = announcements(*b).size();
    CHECK(announced == 6);  // ASSIGNED A-1, ASSIGNED B-1, REVIEW, LINKED, UNLINKED, LINKED
    svc.stop();
  }
  // A new instance on the same log: the same index, nothing announced again.
  service again(*b, o);
  REQUIRE(again.start());
  REQUIRE(eventually([&] { return again.caught_up(); }));
  CHECK(again.enterprise_id_of(idt::mrn_a, "A-1") == first_id);
  CHECK(again.enterprise_id_of(idt::mrn_b, "B-1") == first_id);
  CHECK(again.read([](const view& v) { return v.reviews(true).empty(); }));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  CHECK(announcements(*b).size() == announced);
}

TEST_CASE("patient data seen in a referral adds a record new to the index but never overrides the registration feed", "[unit]") {
  temp_dir dir{"yilian-identity-test"};
  auto b = open_log(dir);
  service svc(*b, test_options());
  REQUIRE(svc.start());
  publish(*b, patient_topic, registered({"h-a", idt::mrn_a, "A-5", "李娜", "1990-01-02", "", ""}, "ev-reg"));
  REQUIRE(eventually([&] { return svc.read([](const view& v) { return v.index().stats().records == 1; }); }));

  auto referral = [](const std::string& mrn, const std::string& name, const std::string& id) {
    ev::Envelope e = engine_event(id, mrn);
    auto& r = *e.mutable_referral_requested();
    r.mutable_patient()->mutable_name()->set_hanzi(name);
    r.mutable_patient()->set_birth_date("1990-01-02");
    return e;
  };
  publish(*b, referral_topic, referral("A-5", "李娜娜", "ref-1"));  // known record: ignored
  publish(*b, referral_topic, referral("A-6", "赵敏", "ref-2"));    // new record: added
  REQUIRE(eventually([&] { return svc.read([](const view& v) { return v.index().stats().records == 2; }); }));
  auto known = svc.read([](const view& v) { return v.person_of(idt::mrn_a, "A-5"); });
  REQUIRE(known);
  CHECK(known->records[0].demographics.name().hanzi() == "李娜");
  CHECK_FALSE(known->records[0].observed_only);
  auto seen = svc.read([](const view& v) { return v.person_of(idt::mrn_a, "A-6"); });
  REQUIRE(seen);
  CHECK(seen->records[0].observed_only);
  CHECK(seen->records[0].last_event_id == "identity-observed:ref-2");

  // A registration carrying only a resident ID: nothing would address the
  // record, so the index does not store it (nor link anyone through it).
  ev::Envelope rid_only = registered({"h-a", idt::mrn_a, "unused", "李娜", "1990-01-02", idt::make_rid("110101", born, 7), ""},
                                     "ev-rid-only");
  rid_only.mutable_subject()->mutable_identifiers()->DeleteSubrange(0, 1);
  publish(*b, patient_topic, rid_only);
  publish(*b, patient_topic, registered({"h-a", idt::mrn_a, "A-7", "周杰", "1979-01-18", "", ""}, "ev-after"));
  REQUIRE(eventually([&] { return svc.enterprise_id_of(idt::mrn_a, "A-7") != ""; }));
  CHECK(svc.read([](const view& v) { return v.index().records(); }) == 3);
}

TEST_CASE("of the booking decisions seen, only a booking's first with demographics adds a record", "[unit]") {
  temp_dir dir{"yilian-identity-test"};
  auto b = open_log(dir);
  service svc(*b, test_options());
  REQUIRE(svc.start());
  // As the booking writer writes them: typed, the decision in the body.
  auto decision = [](const std::string& mrn, std::uint64_t version, bool demographics) {
    ev::Envelope e = engine_event("booking-decision:" + mrn + ":" + std::to_string(version), mrn);
    e.set_type("yilian.events.v1.AppointmentChanged");
    auto& a = *e.mutable_appointment_changed();
    a.set_appointment_id("bk-" + mrn);
    a.set_version(version);
    if (demographics) {
      a.mutable_patient()->mutable_name()->set_hanzi("周芳");
      a.mutable_patient()->set_birth_date("1985-03-04");
    }
    return e;
  };
  publish(*b, referral_topic, decision("B-1", 2, true));   // a later decision: not read
  publish(*b, referral_topic, decision("B-2", 1, false));  // no demographics: nothing to add
  publish(*b, referral_topic, decision("B-3", 1, true));   // added
  REQUIRE(eventually([&] { return svc.read([](const view& v) { return v.index().stats().records == 1; }); }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(svc.read([](const view& v) { return v.index().stats().records; }) == 1);
  auto seen = svc.read([](const view& v) { return v.person_of(idt::mrn_a, "B-3"); });
  REQUIRE(seen);
  CHECK(seen->records[0].observed_only);
  CHECK(seen->records[0].last_event_id == "identity-observed:booking-decision:B-3:1");
}

TEST_CASE("enterprise ids format and parse", "[unit]") {
  CHECK(format_enterprise_id(identity::enterprise_id(0)) == "YL000000001");
  CHECK(format_enterprise_id(identity::enterprise_id(41)) == "YL000000042");
  CHECK(parse_enterprise_id("YL000000042") == identity::enterprise_id(41));
  CHECK_FALSE(parse_enterprise_id("YL0"));
  CHECK_FALSE(parse_enterprise_id("XL000000001"));
  CHECK_FALSE(parse_enterprise_id("YL00000000x"));
  CHECK_FALSE(parse_enterprise_id(""));
}
