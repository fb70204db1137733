#include "adapters/hl7v2/pix.h"

#include <algorithm>
#include <optional>
#include <set>
#include <utility>

#include "adapters/hl7v2/render.h"
#include "yilian/events/v1/envelope.pb.h"

namespace yilian::hl7v2 {

namespace {

namespace ev = events::v1;
namespace cfg = config::v1;

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

pix_domain domain_of(const repetition_view& cx) {
  return pix_domain{.namespace_id = cx.component(4, 1),
                    .universal_id = cx.component(4, 2),
                    .universal_id_type = cx.component(4, 3),
                    .type_code = cx.component(5)};
}

// Does a profile's authority name the domain? CX-4 by namespace id or by
// universal id (ITI-9 lets the consumer send either, or both for the same
// entity); an empty CX-4 with a CX-5 matches an authority declared with an
// empty namespace (qh-county's resident ID "^^^^SFZ"). CX-5, when sent, must
// match.
bool names(const cfg::IdentifierAuthority& a, const pix_domain& d) {
  bool authority = false;
  if (!d.namespace_id.empty() && d.namespace_id == a.namespace_id()) authority = true;
  if (!d.universal_id.empty() && !a.universal_id().empty() && d.universal_id == a.universal_id()) authority = true;
  // No authority at all names nothing unless a type code says which kind.
  if (d.namespace_id.empty() && d.universal_id.empty() && a.namespace_id().empty() && !d.type_code.empty()) {
    authority = true;
  }
  if (!authority) return false;
  return d.type_code.empty() || d.type_code == a.type_code();
}

void add_unique(std::vector<std::string>& v, const std::string& s) {
  if (std::find(v.begin(), v.end(), s) == v.end()) v.push_back(s);
}

ev::IdentifierType type_of(std::string_view name) {
  ev::IdentifierType t = ev::IDENTIFIER_TYPE_UNSPECIFIED;
  if (name.empty()) return t;
  if (!ev::IdentifierType_Parse("IDENTIFIER_TYPE_" + std::string(name), &t)) t = ev::IDENTIFIER_TYPE_OTHER;
  return t;
}

// Built member by member: brace-initialized ack_error temporaries in an
// initializer list trip g++ 12's -Wmaybe-uninitialized at -O3.
void add_error(std::vector<ack_error>& errors, location where, std::string code, std::string text) {
  auto& e = errors.emplace_back();
  e.where = std::move(where);
  e.code = std::move(code);
  e.text = std::move(text);
  e.severity = 'E';
}

std::vector<ack_error> one_error(location where, std::string code, std::string text) {
  std::vector<ack_error> errors;
  add_error(errors, std::move(where), std::move(code), std::move(text));
  return errors;
}

location qpd_at(std::uint32_t field, std::uint32_t rep = 0, std::uint32_t comp = 0) {
  return location{.segment = "QPD", .segment_seq = 1, .field = field, .repetition = rep, .component = comp};
}

// Assembles RSP^K23: header (MSH, MSA, ERR) + QAK + QPD echo + PID.
struct rsp_writer {
  const message& msg;
  const ack_header& header;
  const ack_build_options& build;

  std::string write(ack_code code, std::string_view qak_status, std::span<const ack_error> errors,
                    const std::string& pid3) const {
    const delimiters d = reply_delimiters(header);
    std::string out = build_response(header, "RSP", "K23", "RSP_K23", code, errors, build);
    const auto qpd = msg.find("QPD");
    out += "QAK";
    out += d.field;
    // QPD-2 as sent: the same delimiters are used for the answer, so the raw
    // bytes are the correctly escaped value.
    if (qpd) out += qpd->field(2).raw();
    out += d.field;
    out += qak_status;
    out += '\r';
    if (qpd) {
      out += qpd->raw();
      out += '\r';
    }
    if (!pid3.empty()) {
      out += "PID";
      out += d.field;
      out += d.field;
      out += d.field;
      out += pid3;
      out += d.field;
      out += d.field;
      out += d.repetition;
      out.append(6, d.component);
      out += 'S';
      out += '\r';
    }
    return out;
  }
};

}  // namespace

bool is_query(const message& msg) { return msg.message_code() == "QBP"; }

result<pix_query> parse_pix_query(const message& msg) {
  const auto qpd = msg.find("QPD");
  if (!qpd) return fail(errc::validation_failed, "required field missing: the QPD segment (query parameters)", "QPD");
  const auto name = qpd->field(1);
  const auto code = name.component(1);
  const auto text = name.component(2);
  if (code.empty() && text.empty()) {
    return fail(errc::validation_failed, "required field missing: QPD-1 message query name", "QPD-1");
  }
  // IHE writes "IHE PIX Query" (one component); HL7's own conformance
  // statement for Q23 is "Q23^Get Corresponding IDs^HL70471".
  const bool pix = iequals(code, "IHE PIX Query") || iequals(text, "IHE PIX Query") || code == "Q23";
  if (!pix) {
    return fail(errc::validation_failed,
                "unknown code: QPD-1 message query name is not a PIX query (\"IHE PIX Query\" or Q23)", "QPD-1");
  }
  pix_query q;
  q.query_tag = qpd->field(2).text();
  const auto person = qpd->field(3).repetition(0);
  q.value = person.component(1);
  if (q.value.empty()) {
    return fail(errc::validation_failed, "required field missing: QPD-3.1 person identifier", "QPD-3[1].1");
  }
  q.domain = domain_of(person);
  const auto domains = qpd->field(4);
  for (std::size_t i = 0; i < domains.repetition_count(); ++i) {
    q.what_domains.push_back(domain_of(domains.repetition(i)));
  }
  return q;
}

std::vector<std::string> resolve_domain(const pix_domain& domain, const cfg::HospitalProfile& requester,
                                        const config::loaded_consortium* consortium) {
  std::vector<std::string> out;
  for (const auto& a : requester.identifier_authorities()) {
    if (names(a, domain)) add_unique(out, a.system());
  }
  if (!out.empty() || consortium == nullptr) return out;
  for (const auto& hp : consortium->profiles) {
    if (hp.hospital_id == requester.hospital()) continue;
    for (const auto& a : hp.profile.identifier_authorities()) {
      if (names(a, domain)) add_unique(out, a.system());
    }
  }
  return out;
}

pix_answer answer_query(const message& msg, const pix_context& ctx, const ack_build_options& build) {
  const ack_header header = header_from(msg);
  pix_answer answer;

  if (msg.trigger() != "Q23") {
    const auto errors = one_error(
        location{.segment = "MSH", .segment_seq = 1, .field = 9, .repetition = 1, .component = 2}, "201",
        "QBP^" + msg.trigger() + " is not answered here: the query this channel answers is the PIX query QBP^Q23");
    answer.code = ack_code::AR;
    answer.outcome = "unsupported_query";
    answer.text = build_ack(header, ack_code::AR, errors, build);
    return answer;
  }

  const rsp_writer rsp{.msg = msg, .header = header, .build = build};
  const auto refuse = [&](ack_code code, std::string outcome, std::vector<ack_error> errors) {
    answer.code = code;
    answer.outcome = std::move(outcome);
    answer.text = rsp.write(code, to_string(code), errors, {});
    return answer;
  };

  auto q = parse_pix_query(msg);
  if (!q) {
    auto err = to_ack_error(q.error());
    // A missing segment is table 0357's 100 ("required segments are missing").
    if (err.where.segment == "QPD" && err.where.field == 0) err.code = "100";
    std::vector<ack_error> errors;
    add_error(errors, std::move(err.where), std::move(err.code), std::move(err.text));
    return refuse(ack_code::AE, "invalid_query", std::move(errors));
  }
  if (ctx.profile == nullptr) {
    return refuse(ack_code::AR, "no_profile", one_error({}, "207", "no hospital profile for this channel"));
  }

  // Domains first: they depend on configuration only, so the answer does not
  // change when the index comes back.
  std::vector<ack_error> domain_errors;
  const auto source = resolve_domain(q->domain, *ctx.profile, ctx.consortium);
  if (source.size() != 1) {
    add_error(domain_errors, qpd_at(3, 1, 4), "204",
              source.empty()
                  ? "QPD-3.4 assigning authority (with QPD-3.5 type code) is not an identifier domain of the consortium"
                  : "QPD-3.4 assigning authority names several identifier domains: QPD-3.5 type code is needed");
  }
  std::vector<std::string> targets;
  for (std::size_t i = 0; i < q->what_domains.size(); ++i) {
    const auto systems = resolve_domain(q->what_domains[i], *ctx.profile, ctx.consortium);
    if (systems.empty()) {
      add_error(domain_errors, qpd_at(4, static_cast<std::uint32_t>(i + 1)), "204",
                "QPD-4 repetition " + std::to_string(i + 1) + " is not an identifier domain of the consortium");
    }
    for (const auto& s : systems) add_unique(targets, s);
  }
  if (!domain_errors.empty()) {
    return refuse(ack_code::AE, source.size() != 1 ? "unknown_domain" : "unknown_target_domain",
                  std::move(domain_errors));
  }

  if (ctx.directory == nullptr) {
    return refuse(ack_code::AR, "index_unavailable",
                  one_error({}, "207", "identity index not available; send the query again later"));
  }
  const std::string& system = source.front();
  auto xref = ctx.directory->cross_reference_of(system, q->value);
  // Sharing rule (docs/patients.md): a hospital learns another hospital's
  // numbers for a person only when the person is its patient too (has a
  // record there); otherwise the answer is the same as for an unknown
  // identifier, so it does not tell that the person exists elsewhere.
  if (xref && std::none_of(xref->identifiers.begin(), xref->identifiers.end(),
                           [&](const identity::xref_identifier& id) { return id.hospital == ctx.hospital; })) {
    xref.reset();
  }
  if (!xref) {
    return refuse(ack_code::AE, "unknown_identifier",
                  one_error(qpd_at(3, 1, 1), "204", "QPD-3.1: no person in the identity index holds this identifier"));
  }

  const delimiters d = reply_delimiters(header);
  std::string pid3;
  std::set<std::pair<std::string_view, std::string_view>> seen;
  for (const auto& id : xref->identifiers) {
    if (id.value.empty()) continue;
    if (id.system == system && id.value == q->value) continue;  // ITI-9: not the queried identifier itself
    if (!targets.empty() && std::find(targets.begin(), targets.end(), id.system) == targets.end()) continue;
    if (!seen.emplace(id.system, id.value).second) continue;
    if (!pid3.empty()) pid3 += d.repetition;
    pid3 += render_identifier(id.value, id.system, type_of(id.type), *ctx.profile, ctx.consortium, d).text;
    ++answer.identifiers_returned;
  }
  answer.code = ack_code::AA;
  answer.outcome = pid3.empty() ? "no_data" : "ok";
  answer.text = rsp.write(ack_code::AA, pid3.empty() ? "NF" : "OK", {}, pid3);
  return answer;
}

}  // namespace yilian::hl7v2
