// ORU^R01 -> ReportIssued per OBR; OBX observations and embedded documents
// (claim-checks, never copied into the event).
#include <array>
#include <charconv>
#include <memory>

#include <openssl/evp.h>

#include "adapters/hl7v2/encapsulated.h"
#include "adapters/hl7v2/mapping_internal.h"

namespace yilian::hl7v2::detail {

namespace cfg = config::v1;

namespace {

// SHA-256 over bytes fed in pieces; owns the OpenSSL context.
class sha256_stream {
 public:
  sha256_stream() : ctx_(EVP_MD_CTX_new()) {
    if (ctx_) EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr);
  }
  void update(const unsigned char* p, std::size_t n) {
    if (n > 0) EVP_DigestUpdate(ctx_.get(), p, n);
    size_ += n;
  }
  std::string hex() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx_.get(), digest, &len);
    static constexpr char digits[] = "0123456789abcdef";
    std::string out(static_cast<std::size_t>(len) * 2, '0');
    for (unsigned int i = 0; i < len; ++i) {
      out[2 * i] = digits[digest[i] >> 4];
      out[2 * i + 1] = digits[digest[i] & 0x0f];
    }
    return out;
  }
  std::uint64_t size() const { return size_; }
  bool ok() const { return ctx_ != nullptr; }

 private:
  struct free_ctx {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  std::unique_ptr<EVP_MD_CTX, free_ctx> ctx_;
  std::uint64_t size_ = 0;
};

// Decodes in chunks into a fixed buffer: a 20 MB PDF is hashed without a
// second copy of it.
class chunk_sink {
 public:
  explicit chunk_sink(sha256_stream& h) : h_(h) {}
  void put(unsigned char b) {
    buf_[n_++] = b;
    if (n_ == buf_.size()) flush();
  }
  void flush() {
    h_.update(buf_.data(), n_);
    n_ = 0;
  }

 private:
  sha256_stream& h_;
  std::array<unsigned char, 16384> buf_;  // not zeroed: only what put() wrote is read
  std::size_t n_ = 0;
};

bool decode_base64(std::string_view s, sha256_stream& h) {
  chunk_sink out(h);
  const bool ok = hl7v2::decode_base64(s, [&out](unsigned char b) { out.put(b); });
  out.flush();
  return ok;
}

bool decode_hex(std::string_view s, sha256_stream& h) {
  chunk_sink out(h);
  const bool ok = hl7v2::decode_hex(s, [&out](unsigned char b) { out.put(b); });
  out.flush();
  return ok;
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& ch : out) {
    if (ch >= 'a' && ch <= 'z') ch = static_cast<char>(ch - 'a' + 'A');
  }
  return out;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& ch : out) {
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
  }
  return out;
}

// ED-2/ED-3 (RP-3/RP-4): type of data (table 0191) and subtype (table 0291,
// plus the PDF everyone sends) -> MIME type.
std::string content_type(std::string_view type, std::string_view subtype) {
  if (subtype.find('/') != std::string_view::npos) return lower(subtype);
  const std::string sub = upper(subtype);
  if (sub == "PDF") return "application/pdf";
  if (sub == "JPEG" || sub == "JPG") return "image/jpeg";
  if (sub == "PNG") return "image/png";
  if (sub == "GIF") return "image/gif";
  if (sub == "TIFF" || sub == "TIF") return "image/tiff";
  if (sub == "RTF") return "application/rtf";
  if (sub == "HTML") return "text/html";
  if (sub == "XML" || sub == "X-HL7-CDA-LEVEL-ONE") return "application/xml";
  if (sub == "DICOM") return "application/dicom";
  if (sub == "POSTSCRIPT") return "application/postscript";
  if (sub == "SGML") return "text/sgml";
  const std::string t = upper(type);
  if (t == "TEXT" || t == "TX" || t == "FT") return "text/plain";
  if (t == "IM" && !sub.empty()) return "image/" + lower(sub);
  if (t == "AU" && !sub.empty()) return "audio/" + lower(sub);
  return "application/octet-stream";
}

result<ev::ReportStatus> report_status(std::string_view code, const field_ref& where) {
  if (code == "P" || code == "R" || code == "A") return ev::REPORT_STATUS_PRELIMINARY;
  if (code == "F") return ev::REPORT_STATUS_FINAL;
  if (code == "C") return ev::REPORT_STATUS_CORRECTED;
  if (code == "X") return ev::REPORT_STATUS_CANCELLED;
  return unknown_code(where.path(), "result status", code,
                      "table 0123 report statuses: P, F, C, X (R and A read as preliminary)");
}

std::string joined_text(const map_context& c, const field_view& f) {
  std::string out;
  const std::size_t n = f.repetition_count();
  for (std::size_t i = 0; i < n; ++i) {
    if (i > 0) out += '\n';
    out += c.text(f.repetition(i).raw());
  }
  return out;
}

}  // namespace

result<void> attach_document(const map_context& c, const segment_view& obx,
                             google::protobuf::RepeatedPtrField<ev::ClaimCheck>& out) {
  const std::string_view type = obx.field(2).repetition(0).raw();
  if (type != "ED" && type != "RP") return {};
  return document_claim(c, obx, type, *out.Add());
}

void append_notes(const map_context& c, const segment_view& nte, std::string& text) {
  const field_view f = nte.field(3);
  for (std::size_t r = 0; r < f.repetition_count(); ++r) {
    std::string line = c.text(f.repetition(r).raw());
    if (line.empty()) continue;
    if (!text.empty()) text += '\n';
    text += line;
  }
}

result<void> document_claim(const map_context& c, const segment_view& obx, std::string_view value_type,
                            ev::ClaimCheck& claim) {
  const delimiters& dl = c.delims();
  const std::string_view raw = obx.field(5).repetition(0).raw();
  claim.set_title(c.text(component_of(obx.field(3).repetition(0).raw(), 2, dl)));
  const std::string where = path_of(obx, 5);
  if (value_type == "RP") {
    // A reference: the document is elsewhere; the pointer is the claim.
    claim.set_uri(c.text(component_of(raw, 1, dl)));
    claim.set_content_type(content_type(component_of(raw, 3, dl), component_of(raw, 4, dl)));
    if (claim.uri().empty()) return missing(where + ".1", "reference pointer");
    return {};
  }
  const std::string_view encoding = component_of(raw, 4, dl);
  std::string_view data = component_of(raw, 5, dl);
  if (data.empty()) return missing(where + ".5", "encapsulated data");
  std::string unescaped;
  if (data.find(dl.escape) != std::string_view::npos) {
    unescaped = unescape(data, dl);
    data = unescaped;
  }
  sha256_stream h;
  if (!h.ok()) return fail(errc::internal, "SHA-256 context could not be created", where);
  if (encoding == "Base64") {
    if (!decode_base64(data, h)) return invalid(where + ".5", "encapsulated data is not valid Base64");
  } else if (encoding == "Hex") {
    if (!decode_hex(data, h)) return invalid(where + ".5", "encapsulated data is not valid hexadecimal");
  } else if (encoding.empty() || encoding == "A") {
    h.update(reinterpret_cast<const unsigned char*>(data.data()), data.size());
  } else {
    return unknown_code(where + ".4", "encoding", encoding, "table 0299: A, Hex, Base64");
  }
  claim.set_uri(c.raw_ref().uri() + "#OBX[" + std::to_string(obx.seq()) + "]-5");
  claim.set_size_bytes(h.size());
  claim.set_sha256(h.hex());
  claim.set_content_type(content_type(component_of(raw, 2, dl), component_of(raw, 3, dl)));
  return {};
}

result<void> observation(const map_context& c, const segment_view& obx, ev::Observation& o) {
  const delimiters& dl = c.delims();
  o.set_set_id(c.text(obx.field(1).raw()));
  const std::string_view type = obx.field(2).repetition(0).raw();
  o.set_value_type(std::string(type));
  c.coding(obx.field(3).repetition(0).raw(), *o.mutable_code());
  put_text(o, &ev::Observation::mutable_sub_id, obx.field(4).raw(), dl);
  const field_view value = obx.field(5);
  if (!value.empty() && !value.is_null()) {
    if (type == "NM") {
      std::string text = c.text(value.repetition(0).raw());
      std::string_view v = text;
      while (!v.empty() && encapsulated_detail::is_space(v.front())) v.remove_prefix(1);
      while (!v.empty() && encapsulated_detail::is_space(v.back())) v.remove_suffix(1);
      if (!v.empty() && v.front() == '+') v.remove_prefix(1);
      double number = 0;
      auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), number);
      if (v.empty() || ec != std::errc{} || end != v.data() + v.size()) {
        return invalid(path_of(obx, 5), "not a number (value type NM)");
      }
      o.set_number(number);
    } else if (type == "CWE" || type == "CE" || type == "CNE" || type == "CF") {
      c.coding(value.repetition(0).raw(), *o.mutable_coded());
    } else if (type == "ED" || type == "RP") {
      if (auto claim = document_claim(c, obx, type, *o.mutable_attachment()); !claim) return claim;
    } else {
      o.set_text(joined_text(c, value));
    }
  }
  const std::string_view units = obx.field(6).repetition(0).raw();
  std::string u = c.text(component_of(units, 1, dl));
  if (u.empty()) u = c.text(component_of(units, 2, dl));
  put(o, &ev::Observation::mutable_units, std::move(u));
  put_text(o, &ev::Observation::mutable_reference_range, obx.field(7).repetition(0).raw(), dl);
  const field_view flags = obx.field(8);
  for (std::size_t i = 0; i < flags.repetition_count(); ++i) {
    std::string f = c.text(flags.repetition(i).component_raw(1));
    if (!f.empty()) o.add_abnormal_flags(std::move(f));
  }
  o.set_result_status(c.text(obx.field(11).raw()));
  auto t = c.time_at(obx, 14);
  if (!t) return std::unexpected(std::move(t.error()));
  if (*t) set_timestamp(*o.mutable_observed_at(), **t);
  return {};
}

result<void> map_report(map_context& c) {
  const std::size_t n = c.size();
  const segment_view msh = c.msg().msh();
  std::string performing = c.facility_hospital(msh.field(4).first_component());
  if (performing.empty()) performing = c.hospital();
  const std::string receiver = c.facility_hospital(msh.field(6).first_component());
  const delimiters& dl = c.delims();
  // The patient of the OBRs that follow (its identifiers are read into each
  // event; they cannot fail when not required).
  std::optional<segment_view> pid;
  constexpr std::size_t no_orc = static_cast<std::size_t>(-1);
  std::size_t pending_orc = no_orc;  // index of an ORC not yet paired with its OBR
  bool any = false;
  for (std::size_t i = 0; i < n; ++i) {
    const segment_view s = c.seg(i);
    if (c.skip(s)) continue;
    if (s.id() == "PID") {
      pid = s;
      pending_orc = no_orc;
      continue;
    }
    if (s.id() == "ORC") {
      pending_orc = i;
      continue;
    }
    if (s.id() != "OBR") continue;
    const segment_view obr = s;
    std::size_t end = i + 1;
    while (end < n) {
      const std::string_view id = c.seg(end).id();
      if (id == "OBR" || id == "ORC" || id == "PID") break;
      ++end;
    }
    const group_range g{pending_orc == no_orc ? i : pending_orc, end};
    const std::optional<segment_view> orc =
        pending_orc == no_orc ? std::nullopt : std::optional<segment_view>(c.seg(pending_orc));
    pending_orc = no_orc;
    const auto ipc = c.find_in("IPC", g);
    any = true;

    std::string placer = c.id_item(cfg::LOCATED_ITEM_PLACER_ORDER, g, orc ? c.comp(*orc, 2, 1) : std::string_view{});
    if (placer.empty()) placer = c.comp_text(obr, 2, 1);
    std::string filler = c.id_item(cfg::LOCATED_ITEM_FILLER_ORDER, g, c.comp(obr, 3, 1));
    if (filler.empty() && orc) filler = c.comp_text(*orc, 3, 1);
    std::string accession;
    if (c.profile().location(cfg::LOCATED_ITEM_ACCESSION) != nullptr) {
      accession = c.id_item(cfg::LOCATED_ITEM_ACCESSION, g, {});
    } else {
      accession = c.comp_text(obr, 18, 1);
      if (accession.empty() && ipc) accession = c.comp_text(*ipc, 1, 1);
    }
    std::string study_uid;
    if (c.profile().location(cfg::LOCATED_ITEM_STUDY_UID) != nullptr) {
      study_uid = c.id_item(cfg::LOCATED_ITEM_STUDY_UID, g, {});
    } else {
      if (ipc) study_uid = c.comp_text(*ipc, 3, 1);
      if (study_uid.empty()) {
        auto zds = c.find_in("ZDS", g);
        if (!zds) zds = c.find_first("ZDS");
        if (zds) study_uid = c.comp_text(*zds, 1, 1);
      }
    }
    std::string report_id = c.id_item(cfg::LOCATED_ITEM_REPORT_ID, g, c.comp(obr, 3, 1));
    if (report_id.empty()) report_id = !filler.empty() ? filler : !accession.empty() ? accession : placer;
    if (report_id.empty()) return missing(path_of(obr, 3), "filler order number (the report id)");
    const std::string referral = c.id_item(cfg::LOCATED_ITEM_REFERRAL_ID, g, {});
    const std::string appointment = c.id_item(cfg::LOCATED_ITEM_APPOINTMENT_ID, g, {});

    const std::string_view status_code = obr.field(25).repetition(0).raw();
    if (status_code.empty() || is_null(status_code)) return missing(path_of(obr, 25), "result status");
    auto status = report_status(status_code, field_ref(obr, 25));
    if (!status) return std::unexpected(std::move(status.error()));

    std::string referring;
    if (orc) referring = xon_hospital(c, orc->field(21).repetition(0).raw());
    if (referring.empty() && receiver != performing) referring = receiver;

    mapped_event& event = c.emit(ev::TOPIC_REPORT);
    ev::Envelope& e = *event.envelope;
    if (pid) {
      if (auto read = patient_identifiers(c, *pid, /*required=*/false, *e.mutable_subject()->mutable_identifiers());
          !read) {
        return read;
      }
    }
    ev::ReportIssued& body = *e.mutable_report_issued();
    body.set_report_id(std::move(report_id));
    body.set_status(*status);
    body.set_status_code(status_code.data(), status_code.size());
    body.set_placer_order(placer);
    body.set_filler_order(filler);
    put(body, &ev::ReportIssued::mutable_accession, accession);
    put(body, &ev::ReportIssued::mutable_study_uid, study_uid);
    if (c.profile().location(cfg::LOCATED_ITEM_EXAM_CODE) != nullptr) {
      const located_value v = c.located(cfg::LOCATED_ITEM_EXAM_CODE, g);
      if (v.whole_repetition) {
        c.coding(v.raw, *body.mutable_exam());
      } else {
        body.mutable_exam()->set_code(c.text(v.raw));
      }
    } else {
      c.coding(obr.field(4).repetition(0).raw(), *body.mutable_exam());
    }
    if (const auto cat = c.catalogue(body.exam()); cat.mapped) cat.write(*body.mutable_catalogue_code());
    body.set_performing_hospital(performing);
    put(body, &ev::ReportIssued::mutable_referring_hospital, referring);
    std::string_view xcn = obr.field(16).repetition(0).raw();
    if (c.profile().location(cfg::LOCATED_ITEM_REFERRING_DOCTOR) != nullptr) {
      xcn = c.located(cfg::LOCATED_ITEM_REFERRING_DOCTOR, g).raw;
    } else if (xcn.empty() && orc) {
      xcn = orc->field(12).repetition(0).raw();
    }
    if (!xcn.empty() && !is_null(xcn)) {
      ev::ProviderRef& ordering = *body.mutable_ordering_provider();
      c.provider_xcn(xcn, ordering);
      ordering.set_hospital(referring);
    }
    // OBR-32 (NDL): the name is a CNN in component 1: id & family & given.
    if (const std::string_view ndl = obr.field(32).first_component(); !ndl.empty() && !is_null(ndl)) {
      auto* interp = body.mutable_interpreter();
      interp->set_id(c.text(subcomponent_of(ndl, 1, dl)));
      interp->set_name(map_context::join_name(c.text(subcomponent_of(ndl, 2, dl)), c.text(subcomponent_of(ndl, 3, dl))));
      interp->set_hospital(performing);
    }
    auto observed = c.time_at(obr, 7);
    if (!observed) return std::unexpected(std::move(observed.error()));
    if (*observed) set_timestamp(*body.mutable_observed_at(), **observed);
    auto issued = c.time_at(obr, 22);
    if (!issued) return std::unexpected(std::move(issued.error()));
    if (*issued) set_timestamp(*body.mutable_issued_at(), **issued);

    for (std::size_t j = i + 1; j < end; ++j) {
      const segment_view obx = c.seg(j);
      if (obx.id() != "OBX" || c.skip(obx)) continue;
      ev::Observation& o = *body.add_observations();
      if (auto read = observation(c, obx, o); !read) return read;
      if (o.has_attachment()) *body.add_documents() = o.attachment();
      if (o.value_case() == ev::Observation::kText) {
        const std::string_view section = c.report_section(o.code());
        std::string* target = section == "findings"     ? body.mutable_findings()
                              : section == "conclusion" ? body.mutable_conclusion()
                                                        : nullptr;
        if (target != nullptr) {
          if (!target->empty()) *target += '\n';
          *target += o.text();
        }
      }
    }
    put(body, &ev::ReportIssued::mutable_referral_id, referral);
    put(body, &ev::ReportIssued::mutable_appointment_id, appointment);

    auto* corr = e.mutable_correlation();
    put(*corr, &ev::Correlation::mutable_placer_order, placer);
    put(*corr, &ev::Correlation::mutable_filler_order, filler);
    put(*corr, &ev::Correlation::mutable_accession, accession);
    put(*corr, &ev::Correlation::mutable_study_uid, std::move(study_uid));
    put(*corr, &ev::Correlation::mutable_referral_id, referral);
    put(*corr, &ev::Correlation::mutable_appointment_id, appointment);
    event.key = !accession.empty() ? std::move(accession) : !placer.empty() ? std::move(placer) : body.report_id();
  }
  if (!any) return missing("OBR", "observation request");
  return {};
}

}  // namespace yilian::hl7v2::detail
