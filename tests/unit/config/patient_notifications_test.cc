// Consortium.patient_notifications: the gateway endpoint must be a WEBHOOK
// with a URL, every event type patients hear about needs a fallback
// template, and templates name known event types, statuses and placeholders.
// Each consortium is written to a temporary directory and borrows the
// profiles of tests/data/config/base.
#include <stdlib.h>

#include <fstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "tests/unit/config/test_support.h"

using namespace yilian::config;
using namespace yilian::config::testing;
using Catch::Matchers::Contains;

namespace {

class temp_consortium {
 public:
  explicit temp_consortium(const std::string& patient_block) {
    std::string pattern = (std::filesystem::temp_directory_path() / "yilian-notify-config-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = pattern;
    const auto profiles = repo_root() / "tests/data/config/base/profiles";
    std::ofstream out(dir_ / "consortium.yaml");
    out << "id: test\n"
           "name: 测试医联体\n"
           "hospitals:\n"
           "  - {id: h-one, name: 一号医院, tier: TERTIARY, profile: "
        << (profiles / "h-one.yaml").string()
        << "}\n"
           "  - {id: h-two, name: 二号卫生院, tier: PRIMARY, profile: "
        << (profiles / "h-two.yaml").string()
        << "}\n"
           "http: {port: 18081}\n"
        << patient_block;
  }
  ~temp_consortium() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  temp_consortium(const temp_consortium&) = delete;
  temp_consortium& operator=(const temp_consortium&) = delete;

  validation_result validate() const { return validate_consortium(dir_); }

  // The diagnostics without the file name: "line:column: field: message".
  std::vector<std::string> errors() const {
    std::vector<std::string> out;
    for (const auto& d : validate().report.diagnostics) {
      out.push_back(std::to_string(d.line) + ":" + std::to_string(d.column) + ": " + d.field + ": " + d.message);
    }
    return out;
  }

 private:
  std::filesystem::path dir_;
};

const std::string good_block = R"(patient_notifications:
  endpoint:
    id: sms-gateway
    kind: WEBHOOK
    address: https://sms.example.cn/yilian/notify
    credentials: {scheme: HMAC_SHA256, secret: {env: YILIAN_SMS_KEY}}
    event_types: [ReportIssued, AppointmentChanged]
  templates:
    - {event_type: ReportIssued, text: "{hospital}的{exam}{status}已出，报告号{report_id}。"}
    - {event_type: ReportIssued, when: c, text: "{exam}报告已更正，{supersedes}。"}
    - {event_type: AppointmentChanged, text: "{exam}预约{state}。"}
    - {event_type: AppointmentChanged, when: NO_SHOW, text: "您未按约于{start}到{hospital}检查。"}
)";

}  // namespace

TEST_CASE("a patient notification channel with a fallback template per event type is valid and gets defaults",
          "[unit]") {
  temp_consortium t(good_block);
  const auto v = t.validate();
  INFO(v.report.to_string());
  REQUIRE(v.report.ok());
  const auto& pn = v.loaded->consortium.patient_notifications();
  // The endpoint gets the same defaults as a profile's outbound endpoints.
  CHECK(pn.endpoint().retry().initial_backoff_ms() == 1000);
  CHECK(pn.endpoint().retry().max_backoff_ms() == 300000);
  CHECK(pn.endpoint().retry().max_attempts() == 20);
  CHECK(pn.endpoint().timeout_ms() == 10000);
  CHECK(pn.templates_size() == 4);
}

TEST_CASE("the example consortium's patient channel is valid and covers reports, bookings and referrals", "[unit]") {
  const auto v = validate_from_root("deploy/examples/consortium");
  INFO(v.report.to_string());
  REQUIRE(v.report.ok());
  const auto& pn = v.loaded->consortium.patient_notifications();
  CHECK(pn.endpoint().kind() == v1::ENDPOINT_KIND_WEBHOOK);
  CHECK(pn.endpoint().address() == "http://127.0.0.1:6670/notify");
  std::vector<std::string> covered;
  for (const auto& tmpl : pn.templates()) covered.push_back(tmpl.event_type() + "/" + tmpl.when());
  for (const char* want : {"ReportIssued/", "ReportIssued/P", "ReportIssued/F", "ReportIssued/C", "AppointmentChanged/",
                           "AppointmentChanged/BOOKED", "AppointmentChanged/CANCELLED", "AppointmentChanged/NO_SHOW",
                           "ReferralStateChanged/", "ReferralStateChanged/ACCEPTED", "ReferralStateChanged/REJECTED",
                           "ReferralStateChanged/EXPIRED", "ReferralStateChanged/SCHEDULED"}) {
    CHECK(std::find(covered.begin(), covered.end(), want) != covered.end());
  }
}

TEST_CASE("the patient gateway must be a WEBHOOK endpoint with an id, a URL and event types", "[unit]") {
  temp_consortium t(R"(patient_notifications:
  endpoint:
    kind: MLLP
    address: 127.0.0.1:6670
    credentials: {scheme: BEARER}
  templates:
    - {event_type: ReportIssued, text: "报告已出"}
)");
  const auto lines = t.errors();
  INFO(Catch::Detail::stringify(lines));
  CHECK(lines == std::vector<std::string>{
                     "8:3: patient_notifications.endpoint.id: required (names the consumer group and the metrics, "
                     "e.g. \"sms-gateway\")",
                     "8:3: patient_notifications.endpoint.event_types: at least one event type required (the events "
                     "patients hear about)",
                     "9:11: patient_notifications.endpoint.kind: must be WEBHOOK (the gateway receives an HTTP POST "
                     "of JSON), not MLLP",
                     "10:14: patient_notifications.endpoint.address: \"127.0.0.1:6670\" is not an http:// or https:// "
                     "URL",
                     "11:5: patient_notifications.endpoint.credentials.secret: required for scheme BEARER",
                     "13:20: patient_notifications.templates[0].event_type: ReportIssued is not in "
                     "endpoint.event_types: patients never hear about it, so this template is never used",
                 });
}

TEST_CASE("a missing endpoint, \"*\" and unknown or never-delivered event types are refused at their YAML paths",
          "[unit]") {
  SECTION("no endpoint") {
    temp_consortium t("patient_notifications:\n  templates: []\n");
    const auto lines = t.errors();
    REQUIRE(lines.size() == 1);
    CHECK_THAT(lines[0], Contains("patient_notifications.endpoint: required: the gateway patients are notified"));
  }
  SECTION("event types") {
    temp_consortium t(R"(patient_notifications:
  endpoint:
    id: sms
    kind: WEBHOOK
    address: http://127.0.0.1:6670/notify
    event_types: ["*", ReportIsued, DeadLetter, AppointmentChanged]
  templates:
    - {event_type: AppointmentChanged, when: BOOKED, text: "已预约"}
)");
    const auto lines = t.errors();
    INFO(Catch::Detail::stringify(lines));
    REQUIRE(lines.size() == 4);
    CHECK_THAT(lines[0], Contains("patient_notifications.endpoint.event_types[0]: \"*\" is not allowed here"));
    CHECK_THAT(lines[1], Contains("patient_notifications.endpoint.event_types[1]: unknown event type \"ReportIsued\" "
                                  "(did you mean \"ReportIssued\"?)"));
    CHECK_THAT(lines[2], Contains("patient_notifications.endpoint.event_types[2]: DeadLetter is never delivered"));
    // AppointmentChanged has a BOOKED template but nothing for the other states.
    CHECK_THAT(lines[3], Contains("patient_notifications.endpoint.event_types[3]: no template for AppointmentChanged "
                                  "with an empty when"));
  }
}

TEST_CASE("templates name known event types, statuses and placeholders, once each", "[unit]") {
  temp_consortium t(R"(patient_notifications:
  endpoint:
    id: sms
    kind: WEBHOOK
    address: http://127.0.0.1:6670/notify
    event_types: [ReportIssued, AppointmentChanged]
  templates:
    - {event_type: ReportIssued, text: "{hopsital}的报告{report_id}已出 {patient_name} {not a placeholder}"}
    - {event_type: AppointmentChanged, text: "预约{state}"}
    - {event_type: AppointmentChanged, when: BOOKD, text: "已预约"}
    - {event_type: AppointmentChanged, when: "", text: "again"}
    - {event_type: ImagingStudyAvailable, when: F, text: "影像已上传"}
    - {event_type: Nonsense, text: "x"}
    - {event_type: ReportIssued, when: F}
)");
  const auto lines = t.errors();
  INFO(Catch::Detail::stringify(lines));
  CHECK(lines == std::vector<std::string>{
                     "14:40: patient_notifications.templates[0].text: unknown placeholder \"{hopsital}\" (did you "
                     "mean \"{hospital}\"?); unknown placeholder \"{patient_name}\" (known: {hospital}, {exam}, "
                     "{report_id}, {status}, {start}, {referral_id}, {state}, {supersedes})",
                     "16:46: patient_notifications.templates[2].when: unknown status of AppointmentChanged \"BOOKD\" "
                     "(did you mean \"BOOKED\"?)",
                     "17:7: patient_notifications.templates[3]: same event_type and when as templates[1]",
                     "18:20: patient_notifications.templates[4].event_type: ImagingStudyAvailable is not in "
                     "endpoint.event_types: patients never hear about it, so this template is never used",
                     "18:49: patient_notifications.templates[4].when: ImagingStudyAvailable has no status to narrow "
                     "by; leave when empty",
                     "19:20: patient_notifications.templates[5].event_type: unknown event type \"Nonsense\" (known: "
                     "PatientRegistered, PatientUpdated, PatientIdentifiersMerged, PatientLinkChanged, "
                     "ReferralRequested, ReferralStateChanged, OrderPlaced, OrderStatusChanged, "
                     "SlotAvailabilityChanged, AppointmentChanged, EncounterEvent, ImagingStudyAvailable, "
                     "ReportIssued, DocumentShared, DeliveryAcknowledged, ConsentRecorded, DeadLetter, "
                     "BookingCommand, BookingCommandRejected, ReferralCommand, ReferralCommandRejected, "
                     "CarePlanChanged, CarePlanOccurrence, PatientRecordObserved, PatientLinkCommand)",
                     "20:7: patient_notifications.templates[6].text: required (the zh-CN text the patient receives)",
                 });
}

TEST_CASE("tls on a webhook needs an https address", "[unit]") {
  temp_consortium t(R"(patient_notifications:
  endpoint:
    id: sms
    kind: WEBHOOK
    address: http://127.0.0.1:6670/notify
    tls: {server_name: sms.example.cn}
    event_types: [ReportIssued]
  templates:
    - {event_type: ReportIssued, text: "报告已出"}
)");
  const auto lines = t.errors();
  INFO(Catch::Detail::stringify(lines));
  REQUIRE(lines.size() == 1);
  CHECK_THAT(lines[0], Contains("patient_notifications.endpoint.tls: tls is given but the address is http://"));
}
