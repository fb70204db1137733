// ACKs: the error -> HL7 acknowledgment mapping (table-tested over every
// errc), ERR-2 locations, the ACK header rules, v2.3/2.4 vs v2.5+ error
// segments, headers read from bytes that do not parse, and reading ACKs.
#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <vector>

#include "adapters/hl7v2/ack.h"
#include "adapters/hl7v2/message.h"

using namespace yilian;
using namespace yilian::hl7v2;
using namespace std::chrono_literals;

namespace {

// 2024-05-01 00:30:00 UTC.
const std::chrono::system_clock::time_point t0 =
    std::chrono::sys_days{std::chrono::year{2024} / 5 / 1} + 30min;

ack_build_options options(std::string id = "ACK0001") {
  return {.control_id = std::move(id), .timestamp = t0, .utc_offset = 480min, .application = "YILIAN",
          .facility = "LIAN"};
}

const std::string adt_25 =
    "MSH|^~\\&|HIS^1.2.3^ISO|ZSRMYY|YILIAN|LIAN|20240501083000||ADT^A04^ADT_A01|MSG0001|P|2.5\r"
    "EVN|A04|20240501083000\r"
    "PID|1||123^^^ZS^MR\r";

struct row {
  errc code;
  std::string where;
  std::string message;
  std::string err3;       // expected table 0357 code
  ack_code original;      // AE / AR
  ack_code commit;        // CE / CR
};

}  // namespace

TEST_CASE("the error to ACK mapping, for every error code", "[unit]") {
  const std::vector<row> table{
      {errc::parse_error, "PID-7", "not a timestamp", "102", ack_code::AE, ack_code::CE},
      {errc::parse_error, "PID-3[2].4", "bad assigning authority", "102", ack_code::AE, ack_code::CE},
      {errc::parse_error, "PV1", "segment out of place", "100", ack_code::AE, ack_code::CE},
      {errc::parse_error, "", "no MSH segment", "100", ack_code::AE, ack_code::CE},
      {errc::validation_failed, "PID-3", "required field PID-3 is empty", "101", ack_code::AE, ack_code::CE},
      {errc::validation_failed, "OBR-4", "Required: OBR-4", "101", ack_code::AE, ack_code::CE},
      {errc::validation_failed, "PV1-2", "unknown code \"Z\" in PV1-2", "103", ack_code::AE, ack_code::CE},
      {errc::validation_failed, "PID-7", "birth date in the future", "207", ack_code::AE, ack_code::CE},
      {errc::unsupported, "MSH-9", "message type XYZ is not handled", "200", ack_code::AR, ack_code::CR},
      {errc::unsupported, "MSH-9.1", "message type XYZ is not handled", "200", ack_code::AR, ack_code::CR},
      {errc::unsupported, "MSH-9.3", "structure not handled", "200", ack_code::AR, ack_code::CR},
      {errc::unsupported, "MSH-9.2", "event A99 is not handled", "201", ack_code::AR, ack_code::CR},
      {errc::unsupported, "MSH-11", "processing id D is not accepted", "202", ack_code::AR, ack_code::CR},
      {errc::unsupported, "MSH-12", "version 2.1 is not supported", "203", ack_code::AR, ack_code::CR},
      {errc::unsupported, "MSH-12.1", "version 2.1 is not supported", "203", ack_code::AR, ack_code::CR},
      {errc::unsupported, "MSH-18", "charset not supported", "207", ack_code::AR, ack_code::CR},
      {errc::conflict, "MSH-10", "control id reused with different content", "205", ack_code::AE, ack_code::CE},
      {errc::already_exists, "PID-3", "patient exists", "205", ack_code::AE, ack_code::CE},
      {errc::not_found, "PID-3", "no such patient", "204", ack_code::AE, ack_code::CE},
      {errc::permission_denied, "MSH-4", "sending facility is not accepted on this channel", "207", ack_code::AR,
       ack_code::CR},
      {errc::unauthenticated, "", "client certificate required", "207", ack_code::AR, ack_code::CR},
      {errc::unavailable, "yilian.patient.v1", "bus unavailable", "207", ack_code::AR, ack_code::CR},
      {errc::timeout, "", "bus did not acknowledge in time", "207", ack_code::AR, ack_code::CR},
      {errc::overloaded, "", "ingest queue full", "207", ack_code::AR, ack_code::CR},
      {errc::io_error, "", "raw store write failed", "207", ack_code::AR, ack_code::CR},
      {errc::cancelled, "", "engine shutting down", "207", ack_code::AR, ack_code::CR},
      {errc::invalid_argument, "", "bad call", "207", ack_code::AE, ack_code::CE},
      {errc::corrupt, "", "stored record unreadable", "207", ack_code::AE, ack_code::CE},
      {errc::config_error, "", "profile has no code map", "207", ack_code::AE, ack_code::CE},
      {errc::internal, "", "invariant failed", "207", ack_code::AE, ack_code::CE},
  };

  // Every errc value has at least one row (a new code must be mapped on purpose).
  for (int c = 1; to_string(static_cast<errc>(c)) != "unknown"; ++c) {
    const auto code = static_cast<errc>(c);
    INFO("errc " << to_string(code));
    CHECK(std::any_of(table.begin(), table.end(), [&](const row& r) { return r.code == code; }));
  }

  for (const auto& r : table) {
    const auto e = error::make(r.code, r.message, r.where);
    INFO(e.describe());
    const auto a = to_ack_error(e);
    CHECK(a.code == r.err3);
    CHECK(a.text == r.message);
    CHECK(a.severity == 'E');
    CHECK(a.where == parse_location(r.where));
    CHECK(ack_code_for(e, false) == r.original);
    CHECK(ack_code_for(e, true) == r.commit);
  }
}

TEST_CASE("whatever is retriable is rejected so that the sender resends", "[unit]") {
  auto e = error::make(errc::parse_error, "odd", "PID-7");
  CHECK(ack_code_for(e, false) == ack_code::AE);
  e.retriable = true;
  CHECK(ack_code_for(e, false) == ack_code::AR);
  CHECK(ack_code_for(e, true) == ack_code::CR);
  // An oversized frame (the framer says overloaded, not retriable) is still rejected.
  auto big = error::make(errc::overloaded, "MLLP frame larger than the maximum", "stream byte 0");
  big.retriable = false;
  CHECK(ack_code_for(big, false) == ack_code::AR);
}

TEST_CASE("error locations are read from the paths errors carry", "[unit]") {
  struct loc_row {
    std::string where;
    location want;
  };
  const std::vector<loc_row> rows{
      {"PID-3[2].4", {.segment = "PID", .segment_seq = 1, .field = 3, .repetition = 2, .component = 4}},
      {"OBR[2]-25", {.segment = "OBR", .segment_seq = 2, .field = 25}},
      {"MSH-9.2", {.segment = "MSH", .segment_seq = 1, .field = 9, .component = 2}},
      {"PID-3.4.1", {.segment = "PID", .segment_seq = 1, .field = 3, .component = 4, .subcomponent = 1}},
      {"PID", {.segment = "PID", .segment_seq = 1}},
      {"ZPD[3]", {.segment = "ZPD", .segment_seq = 3}},
      {"PID-3 at byte 217", {.segment = "PID", .segment_seq = 1, .field = 3}},
      {"", {}},
      {"stream byte 12", {}},
      {"consortium.yaml:12 hospitals[0]", {}},
      {"yilian.patient.v1/3", {}},
      {"PIDX", {}},
      {"PID-", {}},
      {"PID-0", {}},
      {"PID-3x", {}},
      {"PID[0]-3", {}},
      {"PID-99999999", {}},
  };
  for (const auto& r : rows) {
    INFO(r.where);
    CHECK(parse_location(r.where) == r.want);
  }
}

TEST_CASE("an AA swaps sender and receiver, echoes MSH-10 and keeps the version", "[unit]") {
  const auto h = header_from_raw(adt_25);
  CHECK(h.has_msh);
  CHECK(h.sending_application == "HIS^1.2.3^ISO");
  CHECK(h.control_id == "MSG0001");
  CHECK(h.trigger == "A04");
  CHECK(h.message_code == "ADT");
  const auto ack = build_ack(h, ack_code::AA, {}, options());
  CHECK(ack ==
        "MSH|^~\\&|YILIAN|LIAN|HIS^1.2.3^ISO|ZSRMYY|20240501083000+0800||ACK^A04^ACK|ACK0001|P|2.5\r"
        "MSA|AA|MSG0001\r");
}

TEST_CASE("an AE in v2.5 carries one ERR per error with location, 0357 code, severity and text", "[unit]") {
  const auto h = header_from_raw(adt_25);
  const std::vector<ack_error> errs{
      to_ack_error(error::make(errc::validation_failed, "required field PID-3 is empty", "PID-3")),
      to_ack_error(error::make(errc::parse_error, "not a date|time", "PID-7[1].1")),
      {.where = {}, .code = "207", .text = "odd", .severity = 'W'},
  };
  const auto ack = build_ack(h, ack_code::AE, errs, options("A2"));
  CHECK(ack ==
        "MSH|^~\\&|YILIAN|LIAN|HIS^1.2.3^ISO|ZSRMYY|20240501083000+0800||ACK^A04^ACK|A2|P|2.5\r"
        "MSA|AE|MSG0001|required field PID-3 is empty\r"
        "ERR||PID^1^3|101^Required field missing^HL70357|E||||required field PID-3 is empty\r"
        "ERR||PID^1^7^1^1|102^Data type error^HL70357|E||||not a date\\F\\time\r"
        "ERR|||207^Application internal error^HL70357|W||||odd\r");
}

TEST_CASE("versions before 2.5 get MSA-3 and one ERR whose ERR-1 repeats", "[unit]") {
  auto h = header_from_raw("MSH|^~\\&|LIS|XQWSY|||20240501||ORU^R01|L77|P|2.4\rPID|1\r");
  REQUIRE(h.version == "2.4");
  const std::vector<ack_error> errs{
      to_ack_error(error::make(errc::validation_failed, "required field OBR-4 is empty", "OBR-4")),
      to_ack_error(error::make(errc::parse_error, "segment out of place", "")),
  };
  const auto ack = build_ack(h, ack_code::AE, errs, options("A3"));
  CHECK(ack ==
        "MSH|^~\\&|YILIAN|LIAN|LIS|XQWSY|20240501083000+0800||ACK^R01^ACK|A3|P|2.4\r"
        "MSA|AE|L77|required field OBR-4 is empty\r"
        "ERR|OBR^1^4^101&Required field missing&HL70357~^^^100&Segment sequence error&HL70357\r");
}

TEST_CASE("v2.7 and later get no MSA-3", "[unit]") {
  const auto h = header_from_raw("MSH|^~\\&#|HIS|H1|YL|LIAN|20240501||ADT^A08^ADT_A01|X1|T|2.7.1|||AL|NE||UNICODE UTF-8\r");
  CHECK(h.delims.truncation == '#');
  CHECK(h.accept_ack_type == "AL");
  CHECK(h.application_ack_type == "NE");
  const std::vector<ack_error> errs{to_ack_error(error::make(errc::unavailable, "bus unavailable", ""))};
  const auto ack = build_ack(h, ack_code::CR, errs, options("C1"));
  CHECK(ack ==
        "MSH|^~\\&#|YL|LIAN|HIS|H1|20240501083000+0800||ACK^A08^ACK|C1|T|2.7.1||||||UNICODE UTF-8\r"
        "MSA|CR|X1\r"
        "ERR|||207^Application internal error^HL70357|E||||bus unavailable\r");
}

TEST_CASE("empty MSH-5/6 are filled with the engine's names, escaped", "[unit]") {
  const auto h = header_from_raw("MSH|^~\\&|HIS|H1|||20240501||ADT^A01|X2|P|2.5\r");
  auto o = options("N|1");
  o.application = "YI^LIAN";
  const auto ack = build_ack(h, ack_code::AA, {}, o);
  CHECK(ack.starts_with("MSH|^~\\&|YI\\S\\LIAN|LIAN|HIS|H1|"));
  CHECK(ack.find("|N\\F\\1|") != std::string::npos);
}

TEST_CASE("the ACK is written in the sender's delimiters", "[unit]") {
  const auto h = header_from_raw("MSH!@*$%!HIS@X!H1!YL!LIAN!20240501!!ADT@A01@ADT_A01!Z9!P!2.5\r");
  REQUIRE(h.has_msh);
  CHECK(h.delims.field == '!');
  CHECK(h.trigger == "A01");
  const std::vector<ack_error> errs{{.where = {.segment = "PID", .segment_seq = 1, .field = 3}, .code = "101",
                                     .text = "a!b", .severity = 'E'}};
  const auto ack = build_ack(h, ack_code::AE, errs, options("Q"));
  CHECK(ack ==
        "MSH!@*$%!YL!LIAN!HIS@X!H1!20240501083000+0800!!ACK@A01@ACK!Q!P!2.5\r"
        "MSA!AE!Z9!a$F$b\r"
        "ERR!!PID@1@3!101@Required field missing@HL70357!E!!!!a$F$b\r");
}

TEST_CASE("MSH-7 is the timestamp at the given UTC offset", "[unit]") {
  const auto h = header_from_raw(adt_25);
  auto o = options();
  o.utc_offset = -330min;  // crosses midnight backwards
  CHECK(build_ack(h, ack_code::AA, {}, o).find("|20240430190000-0530|") != std::string::npos);
  o.utc_offset = 0min;
  o.timestamp = t0 + 59s + 999ms;
  CHECK(build_ack(h, ack_code::AA, {}, o).find("|20240501003059+0000|") != std::string::npos);
}

TEST_CASE("header_from_raw finds the MSH of bytes that do not parse", "[unit]") {
  SECTION("after garbage, on its own line") {
    const auto h = header_from_raw("\x01junk\nMSH|^~\\&|A|B|C|D|||ORU^R01|CTL9|P|2.3.1\rOBX|broken");
    CHECK(h.has_msh);
    CHECK(h.control_id == "CTL9");
    CHECK(h.version == "2.3.1");
    CHECK(h.sending_facility == "B");
  }
  SECTION("in the middle of a line") {
    const auto h = header_from_raw("xxMSH|^~\\&|A|B|C|D|||ADT^A01|C7|P|2.5");
    CHECK(h.has_msh);
    CHECK(h.control_id == "C7");
  }
  SECTION("without an MSH, defaults") {
    const auto h = header_from_raw("GET / HTTP/1.1\r\n");
    CHECK_FALSE(h.has_msh);
    CHECK(h.delims == delimiters{});
    CHECK(h.version == "2.5");
    CHECK(h.control_id.empty());
    const auto ack = build_ack(h, ack_code::AR, {}, options("R1"));
    CHECK(ack == "MSH|^~\\&|YILIAN|LIAN|||20240501083000+0800||ACK^^ACK|R1|P|2.5\rMSA|AR\r");
  }
  SECTION("unusable delimiters are no MSH") {
    CHECK_FALSE(header_from_raw("MSH|^^\\&|A|B").has_msh);
    CHECK_FALSE(header_from_raw("MSHA^~\\&A").has_msh);
    CHECK_FALSE(header_from_raw("MSH|^~").has_msh);
  }
  SECTION("control characters are dropped and values cut at 256 bytes; other bytes kept") {
    const std::string gbk_name = "\xd6\xd0\xc9\xbd";  // GBK bytes, kept as sent
    const auto h = header_from_raw("MSH|^~\\&|A\x0b\x1c|" + gbk_name + "|C|D|||ADT^A01|" + std::string(300, '9') +
                                   "|P|2.5");
    CHECK(h.sending_application == "A");
    CHECK(h.sending_facility == gbk_name);
    CHECK(h.control_id == std::string(256, '9'));
  }
  SECTION("a short MSH leaves the missing fields empty") {
    const auto h = header_from_raw("MSH|^~\\&|A");
    CHECK(h.has_msh);
    CHECK(h.sending_application == "A");
    CHECK(h.version == "2.5");
    CHECK(h.processing_id == "P");
  }
}

TEST_CASE("header_from a parsed message agrees with header_from_raw", "[unit]") {
  const std::vector<std::string> messages{
      adt_25,
      "MSH|^~\\&#|HIS|H1|YL|LIAN|20240501||ADT^A08^ADT_A01|X1|T|2.7.1^CHN|||AL|NE||UNICODE UTF-8\rPID|1\r",
      "MSH|^~\\&|RIS|ZS\\T\\X|||20240501||ORU^R01|C\\F\\1|P|2.4\rOBR|1\r",
  };
  for (const auto& m : messages) {
    INFO(m);
    auto parsed = message::parse(m);
    REQUIRE(parsed.has_value());
    CHECK(header_from(*parsed) == header_from_raw(m));
  }
}

TEST_CASE("parse_ack reads what build_ack writes", "[unit]") {
  const auto h = header_from_raw(adt_25);
  SECTION("AA") {
    const auto r = parse_ack(build_ack(h, ack_code::AA, {}, options("OUR1")));
    REQUIRE(r.has_value());
    CHECK(r->code == ack_code::AA);
    CHECK(r->acknowledged_control_id == "MSG0001");
    CHECK(r->control_id == "OUR1");
    CHECK(r->text.empty());
    CHECK(r->error_code.empty());
  }
  SECTION("AE v2.5 with two errors") {
    const std::vector<ack_error> errs{
        to_ack_error(error::make(errc::validation_failed, "required field PID-3 is empty", "PID-3")),
        to_ack_error(error::make(errc::parse_error, "bad | value", "PID-7")),
    };
    const auto r = parse_ack(build_ack(h, ack_code::AE, errs, options()));
    REQUIRE(r.has_value());
    CHECK(r->code == ack_code::AE);
    CHECK(r->error_code == "101");
    CHECK(r->text == "required field PID-3 is empty; bad | value");
  }
  SECTION("AR v2.4 with ERR-1") {
    const auto old = header_from_raw("MSH|^~\\&|LIS|X|||20240501||ORU^R01|L77|P|2.4\r");
    const std::vector<ack_error> errs{to_ack_error(error::make(errc::unavailable, "bus down", ""))};
    const auto r = parse_ack(build_ack(old, ack_code::AR, errs, options()));
    REQUIRE(r.has_value());
    CHECK(r->code == ack_code::AR);
    CHECK(r->acknowledged_control_id == "L77");
    CHECK(r->error_code == "207");
    CHECK(r->text == "bus down");
  }
}

TEST_CASE("parse_ack reads foreign ACKs and refuses what is not one", "[unit]") {
  SECTION("LF line ends, MSA-3 only, escaped control id") {
    const auto r = parse_ack("\nMSH|^~\\&|HIS|H|YL|L|20240501||ACK|9|P|2.3\nMSA|CE|A\\F\\1|invalid PID-3|||101\n");
    REQUIRE(r.has_value());
    CHECK(r->code == ack_code::CE);
    CHECK(r->acknowledged_control_id == "A|1");
    CHECK(r->control_id == "9");
    CHECK(r->text == "invalid PID-3");
    CHECK(r->error_code == "101");
  }
  SECTION("no MSA") {
    const auto r = parse_ack("MSH|^~\\&|A|B|C|D|||ADT^A01|1|P|2.5\rPID|1\r");
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == errc::validation_failed);
    CHECK(r.error().where == "MSA");
  }
  SECTION("an unknown MSA-1") {
    const auto r = parse_ack("MSH|^~\\&|A|B|C|D|||ACK|1|P|2.5\rMSA|OK|1\r");
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == errc::validation_failed);
    CHECK(r.error().where == "MSA-1");
  }
  SECTION("not HL7 at all") {
    const auto r = parse_ack("HTTP/1.1 400 Bad Request\r\n");
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == errc::parse_error);
    CHECK(r.error().where == "byte 0");
  }
}

TEST_CASE("ack codes print as table 0008 and know their kind", "[unit]") {
  CHECK(to_string(ack_code::AA) == "AA");
  CHECK(to_string(ack_code::CR) == "CR");
  CHECK(is_commit(ack_code::CE));
  CHECK_FALSE(is_commit(ack_code::AE));
  CHECK(is_positive(ack_code::CA));
  CHECK_FALSE(is_positive(ack_code::AR));
  CHECK(hl7_error_description("203") == "Unsupported version id");
  CHECK(hl7_error_description("999").empty());
}
