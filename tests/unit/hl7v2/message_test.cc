#include <catch2/catch.hpp>

#include <string>

#include "adapters/hl7v2/message.h"

using namespace yilian;
using namespace yilian::hl7v2;

namespace {
const std::string adt =
    "MSH|^~\\&|HIS|ZSRMYY|YILIAN|ZSYL|20260101083000+0800||ADT^A04^ADT_A01|MSG0001|P|2.5|||AL|NE||UNICODE UTF-8\r"
    "EVN|A04|20260101083000\r"
    "PID|1||123456^^^ZSRMYY&2.16.156&ISO^MR~110101199003070038^^^CHN^NNCHN||张^三^^^^^L^I~ZHANG^SAN^^^^^L^A||19900307|M\r"
    "PV1|1|O|CT^^^ZSRMYY||||D001^李^四||||||||||||V0001\r"
    "ZPI|custom|data\r";
}

TEST_CASE("an ADT message is split into segments, fields, repetitions and components", "[unit]") {
  auto m = message::parse(adt);
  REQUIRE(m.has_value());
  CHECK(m->segment_count() == 5);
  CHECK(m->message_code() == "ADT");
  CHECK(m->trigger() == "A04");
  CHECK(m->structure() == "ADT_A01");
  CHECK(m->control_id() == "MSG0001");
  CHECK(m->version() == "2.5");
  CHECK(m->msh().field(1).raw() == "|");
  CHECK(m->msh().field(2).raw() == "^~\\&");
  CHECK(m->msh().text(2) == "^~\\&");
  CHECK(m->msh().text(18) == "UNICODE UTF-8");
  const auto pid = m->find("PID");
  REQUIRE(pid);
  CHECK(pid->field(3).repetition_count() == 2);
  CHECK(pid->field(3).repetition(1).component(1) == "110101199003070038");
  CHECK(pid->field(3).component(4, 1) == "ZSRMYY");
  CHECK(pid->field(3).component(4, 2) == "2.16.156");
  CHECK(pid->field(3).component(4) == "ZSRMYY&2.16.156&ISO");
  CHECK(m->get("PID-3[2].5") == "NNCHN");
  CHECK(m->get("PID-5[1].1") == "张");
  CHECK(m->get("PID-5[2].8") == "A");
  CHECK(m->get("PID-7") == "19900307");
  CHECK(m->get("PV1-19") == "V0001");
  CHECK(m->get("ZPI-2") == "data");
  CHECK(m->get("PID-99").empty());
  CHECK(m->get("OBR-4").empty());
  CHECK(m->get("not a path").empty());
}

TEST_CASE("segments may end with CR, LF or CRLF and blank lines are skipped", "[unit]") {
  for (const std::string end : {"\r", "\n", "\r\n"}) {
    const std::string text = "MSH|^~\\&|A|B|C|D|20260101||ADT^A08|1|P|2.4" + end + end + "PID|1||42" + end;
    auto m = message::parse(text);
    REQUIRE(m.has_value());
    CHECK(m->segment_count() == 2);
    CHECK(m->get("PID-3") == "42");
  }
}

TEST_CASE("escape sequences are decoded on access, not before", "[unit]") {
  const std::string text =
      "MSH|^~\\&|A|B|C|D|20260101||ORU^R01|1|P|2.5\r"
      "OBX|1|TX|CODE||a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\.br\\g\\X41\\\\H\\bold\\N\\h\\Z99\\\r";
  auto m = message::parse(text);
  REQUIRE(m.has_value());
  const auto obx = m->find("OBX");
  REQUIRE(obx);
  CHECK(obx->field(5).raw().find("\\F\\") != std::string_view::npos);
  CHECK(obx->text(5) == "a|b^c&d~e\\f\ngAboldh\\Z99\\");
}

TEST_CASE("an HL7 null is told apart from an empty field", "[unit]") {
  auto m = message::parse("MSH|^~\\&|A|B|C|D|20260101||ADT^A08|1|P|2.5\rPID|1||42||\"\"|\r");
  REQUIRE(m.has_value());
  const auto pid = m->find("PID");
  CHECK(pid->field(5).is_null());
  CHECK(pid->text(5).empty());
  CHECK(pid->field(6).empty());
  CHECK_FALSE(pid->field(6).is_null());
}

TEST_CASE("delimiters come from MSH-1 and MSH-2, whatever they are", "[unit]") {
  auto m = message::parse("MSH#$*@%#A#B#C#D#20260101##ADT$A08#1#P#2.7\rPID#1##42$$$FAC%X$MR*43$$$FAC$MR#\r");
  REQUIRE(m.has_value());
  CHECK(m->delims().field == '#');
  CHECK(m->delims().component == '$');
  CHECK(m->delims().repetition == '*');
  CHECK(m->delims().escape == '@');
  CHECK(m->delims().subcomponent == '%');
  CHECK(m->trigger() == "A08");
  CHECK(m->get("PID-3.4.1") == "FAC");
  CHECK(m->get("PID-3.4.2") == "X");
  CHECK(m->get("PID-3[2].1") == "43");
}

TEST_CASE("the v2.7 truncation character is read and \\P\\ decodes to it", "[unit]") {
  auto m = message::parse("MSH|^~\\&#|A|B|C|D|20260101||ADT^A08|1|P|2.7^CHN\rNTE|1||x\\P\\y\r");
  REQUIRE(m.has_value());
  CHECK(m->delims().truncation == '#');
  CHECK(m->version() == "2.7");
  CHECK(m->get("MSH-12.2") == "CHN");
  CHECK(m->get("NTE-3") == "x#y");
}

TEST_CASE("repeated segments are numbered and addressable", "[unit]") {
  auto m = message::parse(
      "MSH|^~\\&|A|B|C|D|20260101||ORU^R01|1|P|2.5\rOBR|1|P1\rOBX|1\rOBR|2|P2\rOBX|1\rOBX|2|NM|X||7.5\r");
  REQUIRE(m.has_value());
  CHECK(m->all("OBX").size() == 3);
  CHECK(m->get("OBR[2]-2") == "P2");
  CHECK(m->get("OBX[3]-5") == "7.5");
  const auto obr2 = m->find("OBR", 1);
  REQUIRE(obr2);
  CHECK(obr2->seq() == 2);
  CHECK(obr2->at(25).path() == "OBR[2]-25");
  CHECK(location{.segment = "PID", .segment_seq = 1, .field = 3, .repetition = 2, .component = 4}.path() ==
        "PID-3[2].4");
}

TEST_CASE("malformed messages are errors that say where", "[unit]") {
  SECTION("no MSH") {
    auto m = message::parse("PID|1||42\r");
    REQUIRE_FALSE(m);
    CHECK(m.error().code == errc::parse_error);
    CHECK(m.error().where == "MSH");
  }
  SECTION("short encoding characters") {
    auto m = message::parse("MSH|^~|A|B|C|D|20260101||ADT^A08|1|P|2.5\r");
    REQUIRE_FALSE(m);
    CHECK(m.error().where == "MSH-2");
  }
  SECTION("repeated delimiter") {
    auto m = message::parse("MSH|^^\\&|A|B|C|D|20260101||ADT^A08|1|P|2.5\r");
    REQUIRE_FALSE(m);
    CHECK(m.error().where == "MSH-2");
  }
  SECTION("bad segment id") {
    auto m = message::parse("MSH|^~\\&|A|B|C|D|20260101||ADT^A08|1|P|2.5\rPI|1\r");
    REQUIRE_FALSE(m);
    CHECK(m.error().message.find("at byte 43") != std::string::npos);
  }
  SECTION("missing message type") {
    auto m = message::parse("MSH|^~\\&|A|B|C|D|20260101|||1|P|2.5\r");
    REQUIRE_FALSE(m);
    CHECK(m.error().where == "MSH-9");
  }
  SECTION("two messages in one") {
    auto m = message::parse("MSH|^~\\&|A|B|C|D|1||ADT^A08|1|P|2.5\rMSH|^~\\&|A|B|C|D|1||ADT^A08|2|P|2.5\r");
    REQUIRE_FALSE(m);
  }
  SECTION("too large") {
    auto m = message::parse(adt, parse_options{.max_bytes = 10});
    REQUIRE_FALSE(m);
  }
}

TEST_CASE("escaping then parsing gives the text back", "[unit]") {
  const delimiters d;
  const std::string tricky = "a|b^c&d~e\\f\ng\rh";
  const std::string text = "MSH|^~\\&|A|B|C|D|1||ORU^R01|1|P|2.5\rOBX|1|TX|C||" + escape(tricky, d) + "\r";
  auto m = message::parse(text);
  REQUIRE(m.has_value());
  CHECK(m->get("OBX-5") == tricky);
}

TEST_CASE("copies of a message own their buffer", "[unit]") {
  auto m = message::parse(adt);
  REQUIRE(m.has_value());
  message copy = *m;
  m = message::parse("MSH|^~\\&|A|B|C|D|1||ORU^R01|2|P|2.5\r");
  CHECK(copy.control_id() == "MSG0001");
  CHECK(copy.get("PID-3.1") == "123456");
}
