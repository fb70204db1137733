#include "adapters/webhook/notification.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>

#include <nlohmann/json.hpp>

namespace yilian::webhook {

namespace ev = events::v1;
namespace cfg = config::v1;
using json = nlohmann::ordered_json;

namespace {

constexpr std::array<std::string_view, 8> kPlaceholders{"hospital", "exam",        "report_id", "status",
                                                        "start",    "referral_id", "state",     "supersedes"};

constexpr std::string_view kSupersedes = "取代此前发出的报告";

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::string trimmed(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

// "BOOKING_STATE_NO_SHOW" -> "NO_SHOW"; the UNSPECIFIED value -> "".
std::string enum_suffix(const std::string& full, std::string_view prefix) {
  if (!full.starts_with(prefix)) return full;
  std::string s = full.substr(prefix.size());
  return s == "UNSPECIFIED" ? std::string{} : s;
}

bool is_name(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return (c >= 'a' && c <= 'z') || c == '_'; });
}

// Calls on_text(literal) and on_name(name) along `text`: "{name}" with a
// lower-case name is a placeholder, anything else is literal.
template <class Text, class Name>
void scan(std::string_view text, Text on_text, Name on_name) {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto open = text.find('{', i);
    if (open == std::string_view::npos) {
      on_text(text.substr(i));
      return;
    }
    const auto close = text.find('}', open + 1);
    if (close == std::string_view::npos) {
      on_text(text.substr(i));
      return;
    }
    const std::string_view name = text.substr(open + 1, close - open - 1);
    if (!is_name(name)) {
      // Not a placeholder: keep the brace and look again after it.
      on_text(text.substr(i, open + 1 - i));
      i = open + 1;
      continue;
    }
    on_text(text.substr(i, open - i));
    on_name(name);
    i = close + 1;
  }
}

std::string hospital_name(const cfg::Consortium& c, const std::string& id) {
  for (const auto& h : c.hospitals()) {
    if (h.id() == id) return h.name().empty() ? id : h.name();
  }
  return id;
}

std::string equipment_hospital(const cfg::Consortium& c, const std::string& equipment_id) {
  for (const auto& e : c.equipment()) {
    if (e.id() == equipment_id) return e.hospital();
  }
  return {};
}

std::string catalogue_name(const cfg::Consortium& c, const std::string& code) {
  if (code.empty()) return {};
  for (const auto& e : c.equipment()) {
    for (const auto& x : e.exam_types()) {
      if (x.code() == code && !x.name().empty()) return x.name();
    }
  }
  return {};
}

std::string exam_name(const cfg::Consortium& c, const ev::Coding& catalogue, const ev::Coding& local) {
  if (auto n = catalogue_name(c, catalogue.code()); !n.empty()) return n;
  if (auto n = catalogue_name(c, local.code()); !n.empty()) return n;
  for (const auto* coding : {&catalogue, &local}) {
    if (!coding->display().empty()) return coding->display();
  }
  return !catalogue.code().empty() ? catalogue.code() : local.code();
}

std::string first_of(std::initializer_list<const std::string*> values) {
  for (const auto* v : values) {
    if (!v->empty()) return *v;
  }
  return {};
}

// The hospital that acted, as the {hospital} placeholder documents.
std::string acting_hospital(const ev::Envelope& e, const cfg::Consortium& c) {
  const std::string& source = e.source().hospital();
  switch (e.body_case()) {
    case ev::Envelope::kReportIssued:
      return first_of({&e.report_issued().performing_hospital(), &source});
    case ev::Envelope::kAppointmentChanged:
      return first_of({&e.appointment_changed().owning_hospital(), &source});
    case ev::Envelope::kReferralStateChanged: {
      const auto& r = e.referral_state_changed();
      return first_of({&r.actor_hospital(), &r.to_hospital(), &source});
    }
    case ev::Envelope::kReferralRequested: {
      const auto& r = e.referral_requested();
      return first_of({&r.actor_hospital(), &r.from_hospital(), &source});
    }
    case ev::Envelope::kCarePlanOccurrence: {
      const auto& o = e.care_plan_occurrence();
      const std::string machine = equipment_hospital(c, o.equipment_id());
      return first_of({&machine, &o.clinic_hospital(), &source});
    }
    case ev::Envelope::kCarePlanChanged:
      return first_of({&e.care_plan_changed().clinic_hospital(), &source});
    default:
      return source;
  }
}

std::string local_minutes(const google::protobuf::Timestamp& t, const time_zone& zone) {
  const std::int64_t utc = t.seconds();
  const std::int64_t local = utc + zone.offset_at(utc);
  const std::int64_t days = floor_div(local, 86400);
  const std::int64_t sod = local - days * 86400;
  const civil_date d = civil_from_days(days);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d %02d:%02d", d.year, d.month, d.day, static_cast<int>(sod / 3600),
                static_cast<int>(sod % 3600 / 60));
  return buf;
}

std::string utc_text(const google::protobuf::Timestamp& t) {
  const std::int64_t s = t.seconds();
  const std::int64_t days = floor_div(s, 86400);
  const std::int64_t sod = s - days * 86400;
  const civil_date d = civil_from_days(days);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02dZ", d.year, d.month, d.day,
                static_cast<int>(sod / 3600), static_cast<int>(sod % 3600 / 60), static_cast<int>(sod % 60));
  return buf;
}

bool has_time(const google::protobuf::Timestamp& t) { return t.seconds() != 0 || t.nanos() != 0; }

void collect_contacts(const google::protobuf::Message& m, int depth, std::vector<ev::ContactPoint>& out) {
  if (depth > 6) return;
  if (m.GetDescriptor() == ev::Demographics::descriptor()) {
    // Every message here is a generated one (parsed from the bus).
    const auto& demographics = static_cast<const ev::Demographics&>(m);
    for (const auto& t : demographics.telecom()) {
      if (t.value().empty()) continue;
      const bool seen = std::any_of(out.begin(), out.end(), [&](const ev::ContactPoint& o) {
        return o.system() == t.system() && o.value() == t.value();
      });
      if (!seen) out.push_back(t);
    }
    return;
  }
  const auto* r = m.GetReflection();
  std::vector<const google::protobuf::FieldDescriptor*> fields;
  r->ListFields(m, &fields);
  for (const auto* f : fields) {
    if (f->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE) continue;
    if (f->is_repeated()) {
      for (int i = 0; i < r->FieldSize(m, f); ++i) collect_contacts(r->GetRepeatedMessage(m, f, i), depth + 1, out);
    } else {
      collect_contacts(r->GetMessage(m, f), depth + 1, out);
    }
  }
}

}  // namespace

std::span<const std::string_view> placeholder_names() { return kPlaceholders; }

std::string body_type(const ev::Envelope& e) {
  if (e.body_case() == ev::Envelope::BODY_NOT_SET) return {};
  const auto* f = ev::Envelope::descriptor()->FindFieldByNumber(static_cast<int>(e.body_case()));
  return f != nullptr && f->message_type() != nullptr ? f->message_type()->name() : std::string{};
}

std::string event_status(const ev::Envelope& e) {
  switch (e.body_case()) {
    case ev::Envelope::kReportIssued: {
      const auto& r = e.report_issued();
      if (auto code = upper(trimmed(r.status_code())); !code.empty()) return code;
      switch (r.status()) {
        case ev::REPORT_STATUS_PRELIMINARY: return "P";
        case ev::REPORT_STATUS_FINAL: return "F";
        case ev::REPORT_STATUS_CORRECTED: return "C";
        case ev::REPORT_STATUS_CANCELLED: return "X";
        default: return {};
      }
    }
    case ev::Envelope::kAppointmentChanged:
      return enum_suffix(ev::BookingState_Name(e.appointment_changed().state()), "BOOKING_STATE_");
    case ev::Envelope::kReferralStateChanged:
      return enum_suffix(ev::ReferralState_Name(e.referral_state_changed().state()), "REFERRAL_STATE_");
    case ev::Envelope::kReferralRequested:
      return enum_suffix(ev::ReferralState_Name(e.referral_requested().state()), "REFERRAL_STATE_");
    case ev::Envelope::kCarePlanOccurrence:
      return e.care_plan_occurrence().failure().empty() ? "BOOKED" : "FAILED";
    case ev::Envelope::kCarePlanChanged:
      return enum_suffix(ev::CarePlanStatus_Name(e.care_plan_changed().status()), "CARE_PLAN_STATUS_");
    default:
      return {};
  }
}

std::string state_words(std::string_view type, std::string_view status) {
  struct word {
    std::string_view status;
    std::string_view text;
  };
  static constexpr std::array<word, 4> report{{{"P", "初步报告"}, {"F", "正式报告"}, {"C", "更正报告"}, {"X", "已撤销"}}};
  static constexpr std::array<word, 9> booking{{{"REQUESTED", "已申请"},
                                                {"HELD", "已锁定号源"},
                                                {"BOOKED", "已预约"},
                                                {"CHECKED_IN", "已签到"},
                                                {"PERFORMED", "已完成检查"},
                                                {"REPORTED", "报告已出"},
                                                {"CORRECTED", "报告已更正"},
                                                {"CANCELLED", "已取消"},
                                                {"NO_SHOW", "未到检"}}};
  static constexpr std::array<word, 13> referral{{{"DRAFT", "草稿"},
                                                  {"REQUESTED", "已提交"},
                                                  {"RECEIVED", "已收到"},
                                                  {"ACCEPTED", "已接收"},
                                                  {"REJECTED", "未被接收"},
                                                  {"SCHEDULED", "已安排"},
                                                  {"ARRIVED", "已到诊"},
                                                  {"COMPLETED", "已完成"},
                                                  {"REPORT_RETURNED", "报告已回传"},
                                                  {"CANCELLED", "已取消"},
                                                  {"EXPIRED", "已过期"},
                                                  {"NO_SHOW", "未到诊"},
                                                  {"TERMINATED", "已终止"}}};
  static constexpr std::array<word, 2> occurrence{{{"BOOKED", "已预约"}, {"FAILED", "未能预约"}}};
  static constexpr std::array<word, 3> care_plan{{{"ACTIVE", "已生效"}, {"ENDED", "已结束"}, {"CANCELLED", "已取消"}}};
  std::span<const word> table;
  if (type == "ReportIssued") table = report;
  else if (type == "AppointmentChanged") table = booking;
  else if (type == "ReferralStateChanged" || type == "ReferralRequested") table = referral;
  else if (type == "CarePlanOccurrence") table = occurrence;
  else if (type == "CarePlanChanged") table = care_plan;
  for (const auto& w : table) {
    if (w.status == status) return std::string(w.text);
  }
  return std::string(status);
}

const cfg::NotificationTemplate* select_template(const google::protobuf::RepeatedPtrField<cfg::NotificationTemplate>& templates,
                                                 std::string_view event_type, std::string_view status) {
  const cfg::NotificationTemplate* fallback = nullptr;
  const std::string wanted = upper(status);
  for (const auto& t : templates) {
    if (t.event_type() != event_type) continue;
    const std::string when = upper(trimmed(t.when()));
    if (when.empty()) {
      if (fallback == nullptr) fallback = &t;
    } else if (!wanted.empty() && when == wanted) {
      return &t;
    }
  }
  return fallback;
}

result<std::string> fill(std::string_view text, const placeholder_values& values) {
  std::string out;
  std::string missing;
  scan(
      text, [&](std::string_view literal) { out += literal; },
      [&](std::string_view name) {
        if (auto it = values.find(name); it != values.end()) {
          out += it->second;
        } else if (missing.empty()) {
          missing = std::string(name);
        }
      });
  if (!missing.empty()) {
    std::string known;
    for (auto n : kPlaceholders) known += (known.empty() ? "{" : ", {") + std::string(n) + "}";
    return fail(errc::config_error, "unknown placeholder {" + missing + "} (known: " + known + ")", "text");
  }
  return out;
}

std::vector<std::string> unknown_placeholders(std::string_view text) {
  std::vector<std::string> out;
  scan(
      text, [](std::string_view) {},
      [&](std::string_view name) {
        if (std::find(kPlaceholders.begin(), kPlaceholders.end(), name) != kPlaceholders.end()) return;
        if (std::find(out.begin(), out.end(), name) == out.end()) out.emplace_back(name);
      });
  return out;
}

placeholder_values placeholders(const ev::Envelope& e, const render_context& ctx) {
  static const cfg::Consortium empty_consortium;
  const cfg::Consortium& c = ctx.consortium != nullptr ? *ctx.consortium : empty_consortium;
  placeholder_values v;
  for (auto n : kPlaceholders) v.emplace(std::string(n), std::string{});
  const std::string type = body_type(e);
  const std::string status = event_status(e);
  v["hospital"] = [&] {
    const std::string id = acting_hospital(e, c);
    return id.empty() ? std::string{} : hospital_name(c, id);
  }();
  v["state"] = state_words(type, status);
  v["status"] = v["state"];
  std::string referral = e.correlation().referral_id();
  switch (e.body_case()) {
    case ev::Envelope::kReportIssued: {
      const auto& r = e.report_issued();
      v["exam"] = exam_name(c, r.catalogue_code(), r.exam());
      v["report_id"] = r.report_id();
      if (!r.referral_id().empty()) referral = r.referral_id();
      if (!r.supersedes_event_id().empty() || status == "C") v["supersedes"] = std::string(kSupersedes);
      break;
    }
    case ev::Envelope::kAppointmentChanged: {
      const auto& a = e.appointment_changed();
      v["exam"] = exam_name(c, a.catalogue_code(), a.exam());
      if (has_time(a.start())) v["start"] = local_minutes(a.start(), ctx.zone);
      if (!a.referral_id().empty()) referral = a.referral_id();
      break;
    }
    case ev::Envelope::kReferralStateChanged: {
      const auto& r = e.referral_state_changed();
      v["report_id"] = r.report_id();
      if (has_time(r.appointment_start())) v["start"] = local_minutes(r.appointment_start(), ctx.zone);
      if (!r.referral_id().empty()) referral = r.referral_id();
      break;
    }
    case ev::Envelope::kReferralRequested: {
      const auto& r = e.referral_requested();
      if (!r.referral_id().empty()) referral = r.referral_id();
      break;
    }
    case ev::Envelope::kCarePlanOccurrence: {
      const auto& o = e.care_plan_occurrence();
      if (has_time(o.start())) v["start"] = local_minutes(o.start(), ctx.zone);
      break;
    }
    case ev::Envelope::kCarePlanChanged: {
      const auto& p = e.care_plan_changed();
      const std::string name = catalogue_name(c, p.exam_code());
      v["exam"] = name.empty() ? p.exam_code() : name;
      break;
    }
    default:
      break;
  }
  v["referral_id"] = referral;
  return v;
}

std::vector<ev::ContactPoint> contact_points(const ev::Envelope& e) {
  std::vector<ev::ContactPoint> out;
  if (e.body_case() == ev::Envelope::BODY_NOT_SET) return out;
  const auto* f = ev::Envelope::descriptor()->FindFieldByNumber(static_cast<int>(e.body_case()));
  if (f == nullptr || f->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE) return out;
  collect_contacts(e.GetReflection()->GetMessage(e, f), 0, out);
  return out;
}

result<notification> render_notification(const ev::Envelope& e, const cfg::PatientNotifications& channel,
                                          const render_context& ctx) {
  static const cfg::Consortium empty_consortium;
  const cfg::Consortium& c = ctx.consortium != nullptr ? *ctx.consortium : empty_consortium;
  const std::string type = body_type(e);
  const std::string status = event_status(e);
  const auto* t = select_template(channel.templates(), type, status);
  if (t == nullptr) {
    std::string what = type.empty() ? std::string("an event without a body") : type;
    if (!status.empty()) what += " with status \"" + status + "\"";
    return fail(errc::config_error,
                "no patient notification template for " + what + " (give one with event_type " +
                    (type.empty() ? std::string("...") : type) + " and an empty when)",
                "patient_notifications.templates");
  }
  const auto values = placeholders(e, ctx);
  auto text = fill(t->text(), values);
  if (!text) {
    auto err = text.error();
    err.where = "patient_notifications.templates (" + t->event_type() + (t->when().empty() ? "" : "/" + t->when()) + ")";
    return std::unexpected(std::move(err));
  }
  const auto contacts = contact_points(e);
  const auto& subject = e.subject();
  if (subject.enterprise_patient_id().empty() && subject.identifiers_size() == 0 && contacts.empty()) {
    return fail(errc::validation_failed, "the event names no patient: no enterprise id, identifier or contact point",
                "subject");
  }

  json body;
  body["event_id"] = e.event_id();
  body["type"] = type;
  if (has_time(e.occurred_at())) body["occurred_at"] = utc_text(e.occurred_at());
  body["template"] = json{{"event_type", t->event_type()}, {"when", t->when()}};
  body["text"] = *text;
  body["status"] = status;
  json patient = json::object();
  if (!subject.enterprise_patient_id().empty()) patient["enterprise_patient_id"] = subject.enterprise_patient_id();
  json identifiers = json::array();
  for (const auto& id : subject.identifiers()) {
    json j;
    if (!id.system().empty()) j["system"] = id.system();
    j["value"] = id.value();
    if (const auto type_name = enum_suffix(ev::IdentifierType_Name(id.type()), "IDENTIFIER_TYPE_"); !type_name.empty()) {
      j["type"] = type_name;
    }
    if (!id.assigner().empty()) j["assigner"] = id.assigner();
    identifiers.push_back(std::move(j));
  }
  patient["identifiers"] = std::move(identifiers);
  json telecom = json::array();
  for (const auto& cp : contacts) {
    json j;
    if (!cp.system().empty()) j["system"] = cp.system();
    j["value"] = cp.value();
    if (const auto use = enum_suffix(ev::ContactUse_Name(cp.use()), "CONTACT_USE_"); !use.empty()) j["use"] = use;
    telecom.push_back(std::move(j));
  }
  patient["telecom"] = std::move(telecom);
  body["patient"] = std::move(patient);
  const std::string hospital = acting_hospital(e, c);
  if (!hospital.empty()) body["hospital"] = json{{"id", hospital}, {"name", hospital_name(c, hospital)}};

  json ids = json::object();
  auto put = [&ids](const char* key, const std::string& value) {
    if (!value.empty() && !ids.contains(key)) ids[key] = value;
  };
  const auto& corr = e.correlation();
  switch (e.body_case()) {
    case ev::Envelope::kReportIssued:
      put("report_id", e.report_issued().report_id());
      put("appointment_id", e.report_issued().appointment_id());
      put("referral_id", e.report_issued().referral_id());
      put("supersedes_event_id", e.report_issued().supersedes_event_id());
      break;
    case ev::Envelope::kAppointmentChanged:
      put("appointment_id", e.appointment_changed().appointment_id());
      put("referral_id", e.appointment_changed().referral_id());
      break;
    case ev::Envelope::kReferralStateChanged:
      put("referral_id", e.referral_state_changed().referral_id());
      put("appointment_id", e.referral_state_changed().appointment_id());
      put("report_id", e.referral_state_changed().report_id());
      break;
    case ev::Envelope::kReferralRequested:
      put("referral_id", e.referral_requested().referral_id());
      break;
    case ev::Envelope::kCarePlanOccurrence:
      put("care_plan_id", e.care_plan_occurrence().care_plan_id());
      put("appointment_id", e.care_plan_occurrence().booking_id());
      break;
    case ev::Envelope::kCarePlanChanged:
      put("care_plan_id", e.care_plan_changed().care_plan_id());
      break;
    default:
      break;
  }
  put("appointment_id", corr.appointment_id());
  put("referral_id", corr.referral_id());
  body["ids"] = std::move(ids);

  notification n;
  n.template_event_type = t->event_type();
  n.template_when = t->when();
  n.status = status;
  n.text = std::move(*text);
  // Bytes that are not UTF-8 become U+FFFD rather than an exception.
  n.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  return n;
}

}  // namespace yilian::webhook
