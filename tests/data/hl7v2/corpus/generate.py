#!/usr/bin/env python3
"""Writes the HL7 v2 message corpus in this folder (the *.hl7 files).

    python3 tests/data/hl7v2/corpus/generate.py            # rewrite the files
    python3 tests/data/hl7v2/corpus/generate.py --check    # exit 1 if a file differs

The messages are what the hospitals of the example consortium
(deploy/examples/consortium) would send: their facility ids, identifier
authorities, local exam code systems and equipment, in the HL7 versions and
character sets their profiles describe. All patients are invented; resident ID
numbers are synthetic but carry a valid GB 11643 check digit; phone numbers use
the reserved-looking 0760-8xxx / 138 0000 xxxx ranges.

One message per file, segments ended by CR, no MLLP framing. Files are UTF-8
unless the README says GBK or GB 18030 (then the bytes are in that charset and
the text below is encoded on write). Which file covers what: README.md.

The generated files are committed; run this script after changing it and
commit both.
"""
import base64
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# ---------------------------------------------------------------------------
# Helpers


def resident_id(area, birth, seq):
    """18-digit resident identity number with its GB 11643 check digit.
    area: 6-digit administrative division code; birth: YYYYMMDD; seq: 3 digits
    (odd for men, even for women)."""
    body = "%s%s%03d" % (area, birth, seq)
    assert len(body) == 17 and body.isdigit()
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    check = "10X98765432"[sum(int(d) * w for d, w in zip(body, weights)) % 11]
    return body + check


def seg(seg_id, fields, sep="|"):
    """A segment from {field number: value}; missing numbers are empty, trailing empty fields left out."""
    n = max((k for k, v in fields.items() if v), default=0)
    return seg_id + "".join(sep + fields.get(i, "") for i in range(1, n + 1))


def msh(app, facility, ts, msg_type, control_id, version, charset="", accept_ack="",
        app_ack="", receiving=("YILIAN", "ZS-YILIAN"), encoding="^~\\&", extra=None):
    """MSH with the usual fields; MSH-1 is '|' and MSH-2 `encoding`."""
    f = {
        3: app, 4: facility, 5: receiving[0], 6: receiving[1], 7: ts, 9: msg_type,
        10: control_id, 11: "P", 12: version, 15: accept_ack, 16: app_ack,
        17: "CHN", 18: charset,
    }
    if extra:
        f.update(extra)
    n = max(k for k, v in f.items() if v)
    return "MSH|" + encoding + "".join("|" + f.get(i, "") for i in range(3, n + 1))


CORPUS = []  # (file name, encoding, [segments], README line)


def add(name, segments, covers, encoding="utf-8"):
    CORPUS.append((name, encoding, segments, covers))


# ---------------------------------------------------------------------------
# People and places (all invented)

ZS_OID = "2.16.156.10011.1.1.4420001"
ZS_MRN_HD = "ZSRMYY&" + ZS_OID + "&ISO"

# (hanzi family, hanzi given, pinyin family, pinyin given, sex, birth, area, seq)
ZHANG = ("张", "伟明", "ZHANG", "WEIMING", "M", "19680315", "442000", 1)
LI = ("李", "秀兰", "LI", "XIULAN", "F", "19521102", "442000", 24)
WANG = ("王", "建国", "WANG", "JIANGUO", "M", "19750721", "442000", 37)
CHEN = ("陈", "淑珍", "CHEN", "SHUZHEN", "F", "19600109", "442000", 46)
ZHAO = ("赵", "丽娟", "ZHAO", "LIJUAN", "F", "19880418", "442000", 52)
ZHOU = ("周", "国庆", "ZHOU", "GUOQING", "M", "19491001", "442000", 15)
WU = ("吴", "静", "WU", "JING", "F", "19950228", "442000", 68)
HUANG = ("黄", "志强", "HUANG", "ZHIQIANG", "M", "19830606", "442000", 71)
# GBK senders: characters whose second GBK byte is '|' (東 瑋), '\' (誠), '^' (繼)
# or '~' (葉), so a parser that splits before decoding cuts them in half.
YE = ("葉", "東誠", "YE", "DONGCHENG", "M", "19810530", "442000", 93)
CHEN_T = ("陳", "繼瑋", "CHEN", "JIWEI", "M", "19700814", "442000", 119)
# GB 18030: 𠮷 (U+20BB7) is a four-byte GB 18030 character.
LIU = ("刘", "𠮷祥", "LIU", "JIXIANG", "M", "19490808", "442000", 131)
SUN = ("孙", "秀英", "SUN", "XIUYING", "F", "19580320", "442000", 142)


def rid(p):
    return resident_id(p[6], p[5], p[7])


def xpn(p, repeat_pinyin=True, rep="~"):
    """PID-5: legal name in hanzi (XPN-8 I, ideographic) and pinyin (A, alphabetic)."""
    name = "%s^%s^^^^^L^I" % (p[0], p[1])
    if repeat_pinyin:
        name += rep + "%s^%s^^^^^L^A" % (p[2], p[3])
    return name


# ---------------------------------------------------------------------------
# ADT

add("adt_a01_zs_admit.hl7", [
    msh("HIS", "ZSRMYY", "20250612093015", "ADT^A01^ADT_A01", "ZSHIS20250612093015001", "2.5",
        charset="UNICODE UTF-8"),
    seg("EVN", {1: "A01", 2: "20250612093000", 5: "0231^刘^医生"}),
    seg("PID", {1: "1", 3: "0012345^^^%s^MR~%s^^^CHN^NNCHN~ZSYB6603987712^^^ZSYB^YB" % (ZS_MRN_HD, rid(ZHANG)),
                5: xpn(ZHANG), 7: ZHANG[5], 8: ZHANG[4],
                11: "孙文中路88号^^中山市^广东省^528400^CHN^H", 13: "^PRN^PH^^^0760^88231234~^PRN^CP^^^^13800001234",
                16: "M^已婚^GB/T2261.2", 22: "01^汉族^GB3304", 28: "CHN^中国^ISO3166"}),
    seg("NK1", {1: "1", 2: "张^小红", 3: "SPO^配偶^HL70063", 5: "^PRN^CP^^^^13800005678"}),
    seg("PV1", {1: "1", 2: "I", 3: "NK01^0312^02^ZSRMYY^^^住院部^3", 7: "0231^刘^德华^^^主任医师",
                10: "CAR", 19: "ZY20250612001", 44: "20250612093000"}),
    seg("DG1", {1: "1", 3: "I20.000^不稳定型心绞痛^ICD-10", 6: "A"}),
    seg("ZPI", {1: "VIP2", 2: "城镇职工医保", 3: "1"}),
], "ADT^A01 v2.5, MSH-18 UNICODE UTF-8; PID-3 MRN (HD with OID) + resident ID + insurance card; "
   "PID-5 hanzi (XPN-8 I) and pinyin (A); PV1 inpatient; DG1; Z-segment ZPI")

add("adt_a04_zs_outpatient.hl7", [
    msh("HIS", "ZSRMYY", "20250612101522", "ADT^A04^ADT_A01", "ZSHIS20250612101522007", "2.5.1"),
    seg("EVN", {2: "20250612101520"}),
    seg("PID", {1: "1", 3: "0012346^^^ZSRMYY^MR~%s^^^CHN^NNCHN~JKK44200019520002^^^JKK^HC" % rid(LI),
                5: xpn(LI), 7: LI[5], 8: LI[4], 11: "东区长江路12号3栋501^^中山市^广东省^528403^CHN^H",
                13: "^PRN^CP^^^^13800002345"}),
    seg("NK1", {1: "1", 2: "李^国华", 3: "CHD^子女^HL70063", 5: "^PRN^CP^^^^13800003456"}),
    seg("PV1", {1: "1", 2: "O", 3: "MZ-NK^^^ZSRMYY^^^门诊楼^2", 7: "0452^陈^思远", 10: "GEN",
                19: "MZ20250612000731", 44: "20250612101500"}),
], "ADT^A04 v2.5.1, no MSH-18 (profile default UTF-8); PID-3 MRN + resident ID + health card; outpatient PV1")

add("adt_a08_zs_update_nulls.hl7", [
    msh("HIS", "ZSRMYY", "20250613080101", "ADT^A08^ADT_A01", "ZSHIS20250613080101002", "2.5"),
    seg("EVN", {2: "20250613080100"}),
    seg("PID", {1: "1", 3: "0012345^^^ZSRMYY^MR~%s^^^CHN^NNCHN" % rid(ZHANG), 5: xpn(ZHANG),
                7: ZHANG[5], 8: ZHANG[4], 11: '""', 13: '""', 14: "", 16: '""'}),
    seg("PV1", {1: "1", 2: "I", 3: "NK01^0312^02^ZSRMYY", 19: "ZY20250612001"}),
], "ADT^A08 v2.5 with HL7 nulls (\"\" in PID-11, PID-13, PID-16: delete) next to empty fields (no change)")

add("adt_a28_nh_add_person.hl7", [
    msh("HIS", "NHSQ", "20250614141005", "ADT^A28^ADT_A05", "NHSQ-0000081233", "2.6",
        charset="UNICODE UTF-8"),
    seg("EVN", {2: "20250614141000", 7: "NHSQ"}),
    seg("PID", {1: "1", 3: "NH00078231^^^NHSQ^MR~%s^^^CHN^NNCHN" % rid(ZHAO), 5: xpn(ZHAO),
                7: ZHAO[5], 8: ZHAO[4], 11: "南湖路18号^^中山市^广东省^528400^CHN^H",
                13: "^PRN^CP^^^^13800004567"}),
    seg("PV1", {1: "1", 2: "N"}),
], "ADT^A28 v2.6 (ADT_A05) from 南湖社区 NHSQ, UTF-8")

add("adt_a31_nh_update_person.hl7", [
    msh("HIS", "NHSQ", "20250614160233", "ADT^A31^ADT_A05", "NHSQ-0000081290", "2.7",
        charset="UNICODE UTF-8", encoding="^~\\&#"),
    seg("EVN", {2: "20250614160230"}),
    seg("PID", {1: "1", 3: "NH00078231^^^NHSQ^MR~%s^^^CHN^NNCHN" % rid(ZHAO), 5: xpn(ZHAO),
                7: ZHAO[5], 8: ZHAO[4], 11: "南湖路18号^7栋\\P\\2单元^中山市^广东省^528400^CHN^H",
                13: "^PRN^CP^^^^13800004568"}),
    seg("PV1", {1: "1", 2: "N"}),
    seg("NTE", {1: "1", 3: "更新联系电话"}),
], "ADT^A31 v2.7 with MSH-2 ^~\\&# (truncation character) and \\P\\ in PID-11.2")

add("adt_a40_zs_merge.hl7", [
    msh("HIS", "ZSRMYY", "20250615110000", "ADT^A40^ADT_A39", "ZSHIS20250615110000003", "2.5"),
    seg("EVN", {2: "20250615105958"}),
    seg("PID", {1: "1", 3: "0012345^^^ZSRMYY^MR~%s^^^CHN^NNCHN" % rid(ZHANG), 5: xpn(ZHANG),
                7: ZHANG[5], 8: ZHANG[4]}),
    seg("MRG", {1: "0098761^^^ZSRMYY^MR~0098762^^^ZSRMYY^MR", 7: "张^伟明"}),
], "ADT^A40 v2.5 (ADT_A39): merge two old MRNs (MRG-1 repeating) into 0012345")

add("adt_a04_qh_gb18030.hl7", [
    msh("HIS", "QHXRMYY", "20250616083000", "ADT^A04", "QH202506160830000012", "2.3"),
    seg("EVN", {1: "A04", 2: "20250616083000"}),
    seg("PID", {1: "1", 3: "QH0003321^^^QHXRMYY^PI~%s^^^^SFZ~QHYB20150033^^^QHYB^YB" % rid(LIU),
                5: xpn(LIU), 7: LIU[5] + "000000", 8: LIU[4],
                11: "清河县城关镇银河路7号^^清河县^河北省^054800^CHN^H", 13: "0319-8123456"}),
    seg("PV1", {1: "1", 2: "O", 3: "NKMZ^^^QHXRMYY", 19: "MZ0616001"}),
], "ADT^A04 v2.3 (MSH-9 without structure) from 清河县 QHXRMYY, GB 18030 bytes, no MSH-18 "
   "(profile default GB18030); 4-byte GB 18030 character 𠮷 in PID-5; resident ID with empty "
   "authority and type SFZ; birth date with fake time", encoding="gb18030")

add("adt_a01_qh_gb18030_msh18.hl7", [
    msh("HIS", "QHXRMYY", "20250616142000", "ADT^A01^ADT_A01", "QH202506161420000044", "2.3.1",
        charset="GB 18030-2000"),
    seg("EVN", {1: "A01", 2: "20250616142000"}),
    seg("PID", {1: "1", 3: "QH0003390^^^QHXRMYY^PI~%s^^^^SFZ" % rid(SUN), 5: xpn(SUN),
                7: SUN[5], 8: SUN[4], 11: "清河县葛仙庄镇^^清河县^河北省^054800^CHN^H"}),
    seg("PV1", {1: "1", 2: "I", 3: "WK2^12^3^QHXRMYY", 7: "1021^葉^銅魚", 19: "ZY0616017"}),
    seg("DG1", {1: "1", 3: "K80.200^胆囊结石^ICD-10", 6: "A"}),
], "ADT^A01 v2.3.1 with MSH-18 GB 18030-2000, GB 18030 bytes; PV1-7 has 葉 (trail byte ~) "
   "and 銅 魚 (trail byte ~)", encoding="gb18030")

add("adt_a04_dc_gbk.hl7", [
    msh("HIS", "DCSQ", "20250617090512", "ADT^A04^ADT_A01", "DCSQ0617090512", "2.4",
        accept_ack="AL", app_ack="ER"),
    seg("EVN", {1: "A04", 2: "20250617090500"}),
    seg("PID", {1: "1", 3: "DC0041122^^^DCSQ^MR~%s^^^CHN^NNCHN~JKK44200019810093^^^JKK^HC" % rid(YE),
                5: xpn(YE), 7: YE[5], 8: YE[4], 11: "東城街道興中路3號^^中山市^广东省^528400^CHN^H",
                13: "^PRN^CP^^^^13800006789"}),
    seg("PV1", {1: "1", 2: "O", 3: "QK^^^DCSQ", 19: "DC20250617015"}),
], "ADT^A04 v2.4 from 东城社区 DCSQ, GBK bytes, no MSH-18 (profile default GBK); name 葉東誠 "
   "has GBK trail bytes ~ | \\; enhanced mode MSH-15 AL / MSH-16 ER", encoding="gbk")

add("adt_a28_xz_gbk.hl7", [
    msh("HIS", "XZWSY", "20250617113000", "ADT^A28^ADT_A05", "XZ2025061711300001", "2.4"),
    seg("EVN", {1: "A28", 2: "20250617113000"}),
    seg("PID", {1: "1", 3: "XZ000512^^^XZWSY^MR~%s^^^^SFZ" % rid(CHEN_T), 5: xpn(CHEN_T),
                7: CHEN_T[5], 8: CHEN_T[4], 11: "西鎮繼光村12號^^中山市^广东省^528400^CHN^H"}),
    seg("PV1", {1: "1", 2: "N"}),
], "ADT^A28 v2.4 from 西镇卫生院 XZWSY, GBK bytes, no MSH-18; name 陳繼瑋 (trail bytes ^ |)",
    encoding="gbk")

add("adt_a08_zs_escapes.hl7", [
    msh("HIS", "ZSRMYY", "20250618090000", "ADT^A08^ADT_A01", "ZSHIS20250618090000011", "2.5"),
    seg("EVN", {2: "20250618090000"}),
    seg("PID", {1: "1", 3: "0012347^^^ZSRMYY^MR~%s^^^CHN^NNCHN" % rid(WANG), 5: xpn(WANG),
                7: WANG[5], 8: WANG[4],
                11: "石岐区民族路\\F\\12号\\S\\A座\\T\\B座\\R\\3层\\E\\^^中山市^广东省^528400^CHN^H"}),
    seg("PV1", {1: "1", 2: "O", 3: "MZ-GK^^^ZSRMYY", 19: "MZ20250618000102"}),
    seg("NTE", {1: "1", 3: "分隔符：竖线\\F\\ 尖号\\S\\ 和号\\T\\ 波浪\\R\\ 反斜杠\\E\\"}),
    seg("ZPI", {1: "VIP0", 2: "自费"}),
], "ADT^A08 v2.5: \\F\\ \\S\\ \\T\\ \\R\\ \\E\\ in PID-11.1 and NTE-3")

add("adt_a01_zs_v28.hl7", [
    msh("HIS", "ZSRMYY", "20250619073000", "ADT^A01^ADT_A01", "ZSHIS20250619073000001", "2.8",
        charset="UNICODE UTF-8", encoding="^~\\&#"),
    seg("EVN", {2: "20250619073000"}),
    seg("PID", {1: "1", 3: "0012348^^^%s^MR~%s^^^CHN^NNCHN" % (ZS_MRN_HD, rid(CHEN)), 5: xpn(CHEN),
                7: CHEN[5], 8: CHEN[4], 11: "火炬开发区康乐大道9号^^中山市^广东省^528437^CHN^H"}),
    seg("PV1", {1: "1", 2: "I", 3: "GK02^0501^01^ZSRMYY", 19: "ZY20250619003", 44: "20250619073000"}),
], "ADT^A01 v2.8 (MSH-2 with truncation #)")

add("adt_a04_zs_msh12_components.hl7", [
    msh("HIS", "ZSRMYY^%s^ISO" % ZS_OID, "20250619100000", "ADT^A04^ADT_A01", "ZSHIS20250619100000004",
        "2.5^CHN^HL7CN2.5"),
    seg("EVN", {2: "20250619100000"}),
    seg("PID", {1: "1", 3: "0012349^^^ZSRMYY^MR~%s^^^CHN^NNCHN" % rid(WU), 5: xpn(WU),
                7: WU[5], 8: WU[4]}),
    seg("PV1", {1: "1", 2: "O", 3: "MZ-FK^^^ZSRMYY", 19: "MZ20250619000222"}),
], "ADT^A04 with MSH-12 carrying components (2.5^CHN^HL7CN2.5) and MSH-4 as HD with OID")

# Non-default delimiters: field '#', component '!', repetition '%', escape '$',
# subcomponent '@'. Written out by hand so nothing gets translated by accident.
CUSTOM = [
    "MSH#!%$@#HIS#ZSRMYY#YILIAN#ZS-YILIAN#20250620081500##ADT!A04!ADT_A01#ZSHIS20250620081500009#P#2.5#####CHN"
    "#UNICODE UTF-8",
    seg("EVN", {2: "20250620081500"}, sep="#"),
    seg("PID", {1: "1", 3: "0012350!!!ZSRMYY@%s@ISO!MR%%%s!!!CHN!NNCHN" % (ZS_OID, rid(HUANG)),
                5: "黄!志强!!!!!L!I%HUANG!ZHIQIANG!!!!!L!A", 7: HUANG[5], 8: HUANG[4],
                11: "中山港大道$F$99号$S$2座$T$3楼$R$$E$!!中山市!广东省!528437!CHN!H"}, sep="#"),
    seg("PV1", {1: "1", 2: "O", 3: "MZ-NK!!!ZSRMYY", 19: "MZ20250620000088"}, sep="#"),
]

add("adt_a04_zs_custom_delims.hl7", CUSTOM,
    "ADT^A04 v2.5 with non-default delimiters MSH-1 '#', MSH-2 '!%$@' (component !, repetition %, "
    "escape $, subcomponent @) and $F$ $S$ $T$ $R$ $E$ escapes in PID-11")

add("adt_a04_zs_empty_and_z.hl7", [
    msh("HIS", "ZSRMYY", "20250620120000", "ADT^A04^ADT_A01", "ZSHIS20250620120000010", "2.5"),
    seg("EVN", {2: "20250620120000"}),
    seg("PID", {1: "1", 2: "", 3: "0012351^^^ZSRMYY^MR", 4: "", 5: "周^国庆^^^^^L^I", 6: "", 7: ZHOU[5],
                8: ZHOU[4], 9: "ZHOU^GUOQING", 11: "^^中山市", 13: "~^PRN^CP^^^^13800007890", 18: "",
                19: "", 30: "N"}),
    seg("PV1", {1: "1", 2: "O", 3: "MZ-LN^^^ZSRMYY", 19: "MZ20250620000120"}),
    seg("ZPI", {1: "", 2: "离休干部", 5: "备注：无"}),
    seg("ZXT", {1: "扩展段^含组件", 2: "X~Y"}),
], "ADT^A04 v2.5: only the hanzi name (pinyin in PID-9 as zs-tertiary's quirk says), empty fields "
   "and components, PID-13 with an empty first repetition, two Z-segments (ZPI, ZXT) with empty fields")

# ---------------------------------------------------------------------------
# Orders

add("orm_o01_dc_ct_head.hl7", [
    msh("HIS", "DCSQ", "20250621091000", "ORM^O01^ORM_O01", "DCSQ0621091000", "2.4",
        charset="UNICODE UTF-8", receiving=("RIS", "ZSRMYY")),
    seg("PID", {1: "1", 3: "DC0041122^^^DCSQ^MR~%s^^^CHN^NNCHN" % rid(YE), 5: xpn(YE), 7: YE[5], 8: YE[4]}),
    seg("PV1", {1: "1", 2: "O", 3: "QK^^^DCSQ", 19: "DC20250621003"}),
    seg("ORC", {1: "NW", 2: "DC-ORD-20250621-0001^DCSQ", 5: "SC", 9: "20250621091000",
                12: "D031^林^晓东", 17: "DCSQ^东城街道社区卫生服务中心"}),
    seg("OBR", {1: "1", 2: "DC-ORD-20250621-0001^DCSQ", 4: "JC001^头颅CT平扫^DCSQ-JC", 5: "R",
                6: "20250623090000", 13: "头晕反复发作2周，排除颅内病变", 16: "D031^林^晓东", 18: "DC-REF-0621-01",
                24: "CT"}),
], "ORM^O01 v2.4 from 东城社区 (MSH-18 UNICODE UTF-8 overriding the GBK default): new order, "
   "OBR-4 local code JC001 in DCSQ-JC")

add("orm_o01_qh_cancel.hl7", [
    msh("HIS", "QHXRMYY", "20250621150000", "ORM^O01", "QH202506211500000031", "2.3"),
    seg("PID", {1: "1", 3: "QH0003321^^^QHXRMYY^PI~%s^^^^SFZ" % rid(LIU), 5: xpn(LIU),
                7: LIU[5] + "000000", 8: LIU[4]}),
    seg("ORC", {1: "CA", 2: "QH-ORD-88123", 3: "QH-RIS-55001", 5: "CA", 9: "20250621150000",
                16: "PC^患者取消^QHXRMYY-REASON"}),
    seg("OBR", {1: "1", 2: "QH-ORD-88123", 3: "QH-RIS-55001", 4: "210300001-XB^胸部CT平扫^QHXRMYY-JC",
                20: "QHCT2025062100017", 24: "CT", 25: "X"}),
    seg("ZDS", {1: "1.2.156.112605.14038005.20250621.150000.17^QHXRMYY^Application^DICOM"}),
], "ORM^O01 v2.3 (no structure in MSH-9) cancel from 清河县, GB 18030 bytes without MSH-18; "
   "accession in OBR-20, study UID in ZDS-1", encoding="gb18030")

add("omg_o19_dc_referral_exam.hl7", [
    msh("HIS", "DCSQ", "20250622100000", "OMG^O19^OMG_O19", "DCSQ0622100000", "2.5.1",
        charset="GBK", accept_ack="AL", app_ack="ER", receiving=("RIS", "ZSRMYY")),
    seg("PID", {1: "1", 3: "DC0041122^^^DCSQ^MR~%s^^^CHN^NNCHN" % rid(YE), 5: xpn(YE), 7: YE[5], 8: YE[4]}),
    seg("PV1", {1: "1", 2: "O", 3: "QK^^^DCSQ"}),
    seg("ORC", {1: "NW", 2: "DC-ORD-20250622-0002^DCSQ", 5: "SC", 9: "20250622100000",
                12: "D031^林^曉東"}),
    seg("TQ1", {1: "1", 7: "20250624143000", 9: "R^常规^HL70485"}),
    seg("OBR", {1: "1", 2: "DC-ORD-20250622-0002^DCSQ", 4: "JC010^腹部超声（肝胆胰脾）^DCSQ-JC",
                13: "右上腹隱痛1月", 18: "DC-REF-0622-02", 24: "US"}),
    seg("NTE", {1: "1", 3: "患者葉東誠要求上午檢查"}),
], "OMG^O19 v2.5.1 from 东城社区 with MSH-18 'GBK' (common non-table spelling), GBK bytes; "
   "TQ1; NTE with GBK trail bytes", encoding="gbk")

add("omg_o19_zs_two_orders.hl7", [
    msh("HIS", "ZSRMYY", "20250622103000", "OMG^O19^OMG_O19", "ZSHIS20250622103000005", "2.5",
        receiving=("RIS", "ZSRMYY")),
    seg("PID", {1: "1", 3: "0012346^^^ZSRMYY^MR~%s^^^CHN^NNCHN" % rid(LI), 5: xpn(LI), 7: LI[5], 8: LI[4]}),
    seg("PV1", {1: "1", 2: "O", 3: "MZ-NK^^^ZSRMYY", 19: "MZ20250622000311"}),
    seg("ORC", {1: "NW", 2: "ZS-ORD-7781001^ZSRMYY", 4: "ZS-GRP-7781^ZSRMYY", 5: "SC"}),
    seg("OBR", {1: "1", 2: "ZS-ORD-7781001^ZSRMYY", 4: "US0100^腹部超声（肝胆胰脾）^ZSRMYY-EXAM", 24: "US"}),
    seg("ORC", {1: "NW", 2: "ZS-ORD-7781002^ZSRMYY", 4: "ZS-GRP-7781^ZSRMYY", 5: "SC"}),
    seg("OBR", {1: "2", 2: "ZS-ORD-7781002^ZSRMYY", 4: "US0301^甲状腺超声^ZSRMYY-EXAM", 24: "US"}),
], "OMG^O19 v2.5 with two ORC/OBR orders in one placer group")

add("omi_o23_zs_ct_ipc.hl7", [
    msh("RIS", "ZSRMYY", "20250623081000", "OMI^O23^OMI_O23", "ZSRIS20250623081000001", "2.5",
        receiving=("PACS", "ZSRMYY")),
    seg("PID", {1: "1", 3: "0012347^^^ZSRMYY^MR~%s^^^CHN^NNCHN" % rid(WANG), 5: xpn(WANG),
                7: WANG[5], 8: WANG[4]}),
    seg("PV1", {1: "1", 2: "O", 3: "MZ-SJ^^^ZSRMYY", 19: "MZ20250623000015"}),
    seg("ORC", {1: "NW", 2: "ZS-ORD-7790001^ZSRMYY", 3: "ZS-RIS-CT-250623-0007^ZSRMYY", 5: "SC",
                9: "20250623081000"}),
    seg("TQ1", {1: "1", 7: "20250623100000", 8: "20250623101500"}),
    seg("OBR", {1: "1", 2: "ZS-ORD-7790001^ZSRMYY", 3: "ZS-RIS-CT-250623-0007^ZSRMYY",
                4: "CT0101^头颅CT平扫^ZSRMYY-EXAM", 18: "ZSCT250623007", 24: "CT"}),
    seg("IPC", {1: "ZSCT250623007^ZSRMYY", 2: "RP250623007^ZSRMYY",
                3: "1.2.156.112605.189250946103.20250623081000.1^DICOM",
                4: "SPS250623007^ZSRMYY", 5: "CT^CT^DCM", 7: "ZSRMYY_CT1", 8: "CT1^^^ZSRMYY",
                9: "ZSRMYY_CT1"}),
], "OMI^O23 v2.5 from RIS to PACS: IPC with accession, requested procedure, study UID, SPS, "
   "modality and AE title of zs-ct-1")

add("omi_o23_qh_ipc.hl7", [
    msh("RIS", "QHXRMYY-RIS", "20250623140000", "OMI^O23^OMI_O23", "QHRIS-20250623-140000-02", "2.6",
        charset="UNICODE UTF-8"),
    seg("PID", {1: "1", 3: "QH0003390^^^QHXRMYY^PI~%s^^^^SFZ" % rid(SUN), 5: xpn(SUN), 7: SUN[5],
                8: SUN[4]}),
    seg("ORC", {1: "NW", 2: "QH-ORD-88200", 3: "QH-RIS-55120", 5: "SC"}),
    seg("OBR", {1: "1", 2: "QH-ORD-88200", 3: "QH-RIS-55120", 4: "210300001-TL^头颅CT平扫^QHXRMYY-JC",
                20: "QHCT2025062300031", 24: "CT"}),
    seg("IPC", {1: "QHCT2025062300031", 2: "QHRP55120", 3: "1.2.156.112605.14038005.20250623.140000.31",
                4: "QHSPS55120", 5: "CT", 9: "QHXRMYY_CT1"}),
], "OMI^O23 v2.6 from 清河县 RIS (MSH-4 QHXRMYY-RIS), UTF-8 by MSH-18; accession in OBR-20 and IPC-1")

add("orm_o01_xz_status.hl7", [
    msh("HIS", "XZWSY", "20250624090000", "ORM^O01^ORM_O01", "XZ2025062409000003", "2.4"),
    seg("PID", {1: "1", 3: "XZ000512^^^XZWSY^MR~%s^^^^SFZ" % rid(CHEN_T), 5: xpn(CHEN_T), 7: CHEN_T[5],
                8: CHEN_T[4]}),
    seg("ORC", {1: "SC", 2: "XZ-ORD-000231", 3: "ZS-RIS-CT-250624-0003", 5: "IP", 9: "20250624090000"}),
    seg("OBR", {1: "1", 2: "XZ-ORD-000231", 3: "ZS-RIS-CT-250624-0003", 4: "CT-XB^胸部CT平扫^XZWSY-JC",
                24: "CT", 25: "I"}),
], "ORM^O01 v2.4 status change (ORC-1 SC, ORC-5 IP) from 西镇卫生院, GBK bytes without MSH-18",
    encoding="gbk")

# ---------------------------------------------------------------------------
# Scheduling (SIU): zs-tertiary's equipment


def siu(name, trigger, version, control, sch, covers, tq1=True, status="Booked", res_status=None,
        exam=("CT0101", "头颅CT平扫"),
        equipment=("zs-ct-1", "64排螺旋CT"), room="医技楼一层放射科CT1室", patient=WANG, start="20250625093000",
        charset=""):
    if res_status is None:
        res_status = status  # table 0278; Blocked is not used in AIS/AIG/AIL/AIP
    segs = [
        msh("RIS", "ZSRMYY", "20250624160000", "SIU^%s^SIU_S12" % trigger, control, version, charset=charset),
        seg("SCH", {1: sch + "^ZSRMYY", 2: "F" + sch + "^ZSRMYY", 6: "%s^%s^HL70276" % ("ROUTINE", "常规"),
                    7: "%s^%s^ZSRMYY-EXAM" % exam, 8: "NORMAL^常规预约^HL70277", 9: "15", 10: "min",
                    **({} if tq1 else {11: "^^15^%s^%s" % (start, start)}),
                    16: "0621^放射科^预约台", 20: "0621^放射科^预约台", 25: "%s^%s^HL70278" % (status, status) if status else ""}),
    ]
    if tq1:
        segs.append(seg("TQ1", {1: "1", 7: start, 8: start[:10] + "4500"}))
    segs += [
        seg("NTE", {1: "1", 3: "请患者提前15分钟到达，去除金属物品"}),
        seg("PID", {1: "1", 3: "0012347^^^ZSRMYY^MR~%s^^^CHN^NNCHN" % rid(patient), 5: xpn(patient),
                    7: patient[5], 8: patient[4]}),
        seg("PV1", {1: "1", 2: "O", 3: "MZ-SJ^^^ZSRMYY"}),
        seg("RGS", {1: "1", 2: "A"}),
        seg("AIS", {1: "1", 2: "A", 3: "%s^%s^ZSRMYY-EXAM" % exam, 4: start, 7: "15", 8: "min", 10: res_status}),
        seg("AIG", {1: "1", 2: "A", 3: "%s^%s^YILIAN-EQUIPMENT" % equipment, 4: "EQUIPMENT^设备^HL70182",
                    8: start, 14: res_status}),
        seg("AIL", {1: "1", 2: "A", 3: "CT1^^^ZSRMYY^^^医技楼^1", 4: "RAD^放射科", 6: start, 12: res_status}),
        seg("AIP", {1: "1", 2: "A", 3: "0733^黄^一鸣^^^主治医师", 4: "TECH^技师^HL70443", 6: start, 12: res_status}),
    ]
    add(name, segs, covers)


siu("siu_s12_zs_ct_booking.hl7", "S12", "2.5", "ZSRIS20250624160000001", "ZS-APT-20250625-0042",
    "SIU^S12 v2.5 new booking on zs-ct-1: SCH-25 Booked, TQ1, NTE, PID, RGS, AIS (CT0101), AIG (equipment), "
    "AIL, AIP")
siu("siu_s13_zs_reschedule.hl7", "S13", "2.5.1", "ZSRIS20250624160500002", "ZS-APT-20250625-0042",
    "SIU^S13 v2.5.1 reschedule (new start time)", start="20250626140000")
siu("siu_s14_zs_modify.hl7", "S14", "2.6", "ZSRIS20250624161000003", "ZS-APT-20250625-0042",
    "SIU^S14 v2.6 modification (exam changed to CT0201 chest)", exam=("CT0201", "胸部CT平扫"),
    start="20250626140000", charset="UNICODE UTF-8")
siu("siu_s15_zs_cancel.hl7", "S15", "2.5", "ZSRIS20250624162000004", "ZS-APT-20250625-0042",
    "SIU^S15 v2.5 cancellation (SCH-25 Cancelled)", status="Cancelled", start="20250626140000")
siu("siu_s17_zs_delete.hl7", "S17", "2.5", "ZSRIS20250624163000005", "ZS-APT-20250625-0043",
    "SIU^S17 v2.5 deletion (SCH-25 Deleted) of an MR booking on zs-mr-1", status="Deleted",
    exam=("MR0402", "腰椎MR平扫"), equipment=("zs-mr-1", "3.0T磁共振"), patient=ZHOU)
siu("siu_s23_zs_block.hl7", "S23", "2.5", "ZSRIS20250624164000006", "ZS-BLK-20250627-0001",
    "SIU^S23 v2.5 slots blocked on zs-us-1 (SCH-25 Blocked)", status="Blocked", res_status="",
    exam=("US0100", "腹部超声（肝胆胰脾）"), equipment=("zs-us-1", "彩色多普勒超声诊断仪"), start="20250627080000")
siu("siu_s24_zs_open.hl7", "S24", "2.7", "ZSRIS20250624165000007", "ZS-BLK-20250627-0001",
    "SIU^S24 v2.7 slots opened again on zs-us-1 (SCH-25 empty: table 0278 has no open status)", status="",
    exam=("US0100", "腹部超声（肝胆胰脾）"), equipment=("zs-us-1", "彩色多普勒超声诊断仪"), start="20250627080000",
    charset="UNICODE UTF-8")
siu("siu_s26_zs_noshow.hl7", "S26", "2.5.1", "ZSRIS20250625100000008", "ZS-APT-20250625-0044",
    "SIU^S26 v2.5.1 patient did not show up (SCH-25 Noshow)", status="Noshow", patient=WU,
    exam=("US0301", "甲状腺超声"), equipment=("zs-us-1", "彩色多普勒超声诊断仪"))

add("siu_s12_qh_us_gb18030.hl7", [
    msh("RIS", "QHXRMYY-RIS", "20250625110000", "SIU^S12^SIU_S12", "QHRIS-20250625-110000-01", "2.4"),
    seg("SCH", {1: "QH-APT-0625-011", 2: "QH-APT-0625-011", 7: "220201001-FB^腹部彩超^QHXRMYY-JC", 9: "20",
                10: "min", 11: "^^20^20250627083000^20250627085000", 25: "Booked"}),
    seg("PID", {1: "1", 3: "QH0003321^^^QHXRMYY^PI~%s^^^^SFZ" % rid(LIU), 5: xpn(LIU),
                7: LIU[5] + "000000", 8: LIU[4]}),
    seg("RGS", {1: "1"}),
    seg("AIS", {1: "1", 3: "220201001-FB^腹部彩超^QHXRMYY-JC", 4: "20250627083000", 7: "20", 8: "min"}),
    seg("AIG", {1: "1", 3: "qh-us-1^便携式彩超^YILIAN-EQUIPMENT", 4: "EQUIPMENT"}),
    seg("AIL", {1: "1", 3: "BCS^^^QHXRMYY^^^门诊楼^2"}),
], "SIU^S12 v2.4 (no TQ1: timing in SCH-11) from 清河县 RIS on qh-us-1, GB 18030 bytes without MSH-18",
    encoding="gb18030")

# ---------------------------------------------------------------------------
# Results (ORU)


def tiny_pdf():
    """A small, valid one-page PDF (ASCII text only: no CJK font needed)."""
    content = b"BT /F1 14 Tf 72 720 Td (ZSRMYY CT report ZS-RIS-CT-250623-0007: no acute findings) Tj ET"
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for i, o in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + o + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return out


PDF_B64 = base64.b64encode(tiny_pdf()).decode("ascii")

CT_FINDINGS = ("颅骨骨质完整。\\.br\\脑实质内未见异常密度影，灰白质分界清楚。\\.br\\"
               "脑室系统未见扩大，中线结构居中。")

add("oru_r01_zs_ct_final.hl7", [
    msh("RIS", "ZSRMYY", "20250623113000", "ORU^R01^ORU_R01", "ZSRIS20250623113000009", "2.5",
        receiving=("YILIAN", "ZS-YILIAN")),
    seg("PID", {1: "1", 3: "0012347^^^ZSRMYY^MR~%s^^^CHN^NNCHN" % rid(WANG), 5: xpn(WANG),
                7: WANG[5], 8: WANG[4]}),
    seg("PV1", {1: "1", 2: "O", 3: "MZ-SJ^^^ZSRMYY", 19: "MZ20250623000015"}),
    seg("ORC", {1: "RE", 2: "ZS-ORD-7790001^ZSRMYY", 3: "ZS-RIS-CT-250623-0007^ZSRMYY", 5: "CM"}),
    seg("OBR", {1: "1", 2: "ZS-ORD-7790001^ZSRMYY", 3: "ZS-RIS-CT-250623-0007^ZSRMYY",
                4: "CT0101^头颅CT平扫^ZSRMYY-EXAM", 7: "20250623100200", 18: "ZSCT250623007",
                22: "20250623112900", 24: "CT", 25: "F", 32: "0812&周&正&&&&主任医师"}),
    seg("OBX", {1: "1", 2: "TX", 3: "59776-5^检查所见^LN", 5: CT_FINDINGS, 11: "F", 14: "20250623112900"}),
    seg("OBX", {1: "2", 2: "ST", 3: "19005-8^检查结论^LN", 5: "头颅CT平扫未见明显异常", 11: "F"}),
    seg("OBX", {1: "3", 2: "CWE", 3: "IMPRESSION^诊断印象^ZSRMYY-RPT", 5: "N^正常^ZSRMYY-RPT", 11: "F"}),
    seg("OBX", {1: "4", 2: "NM", 3: "CT-HU-BRAIN^脑实质CT值^ZSRMYY-RPT", 5: "32.5", 6: "HU^亨氏单位^UCUM",
                7: "20-40", 8: "N", 11: "F"}),
    seg("OBX", {1: "5", 2: "ST", 3: "STUDY-UID^检查UID^DCM", 5: "1.2.156.112605.189250946103.20250623081000.1",
                11: "F"}),
], "ORU^R01 v2.5 final CT report (OBR-25 F): OBX TX with \\.br\\ line breaks, ST, CWE, NM with units "
   "and range, study UID")

add("oru_r01_zs_ct_pdf.hl7", [
    msh("RIS", "ZSRMYY", "20250623113500", "ORU^R01^ORU_R01", "ZSRIS20250623113500010", "2.5.1",
        charset="UNICODE UTF-8"),
    seg("PID", {1: "1", 3: "0012347^^^ZSRMYY^MR~%s^^^CHN^NNCHN" % rid(WANG), 5: xpn(WANG),
                7: WANG[5], 8: WANG[4]}),
    seg("ORC", {1: "RE", 2: "ZS-ORD-7790001^ZSRMYY", 3: "ZS-RIS-CT-250623-0007^ZSRMYY", 5: "CM"}),
    seg("OBR", {1: "1", 2: "ZS-ORD-7790001^ZSRMYY", 3: "ZS-RIS-CT-250623-0007^ZSRMYY",
                4: "CT0101^头颅CT平扫^ZSRMYY-EXAM", 18: "ZSCT250623007", 24: "CT", 25: "F"}),
    seg("OBX", {1: "1", 2: "ST", 3: "19005-8^检查结论^LN", 5: "头颅CT平扫未见明显异常", 11: "F"}),
    seg("OBX", {1: "2", 2: "ED", 3: "PDF-REPORT^报告PDF^ZSRMYY-RPT",
                5: "ZSRMYY-RIS^AP^PDF^Base64^" + PDF_B64, 11: "F"}),
], "ORU^R01 v2.5.1 with the signed report as an embedded PDF (OBX-2 ED, OBX-5.5 base64)")

add("oru_r01_nh_lab.hl7", [
    msh("LIS", "NHSQ", "20250626103000", "ORU^R01^ORU_R01", "NHSQ-LIS-0000451", "2.5.1",
        charset="UNICODE UTF-8"),
    seg("PID", {1: "1", 3: "NH00078231^^^NHSQ^MR~%s^^^CHN^NNCHN" % rid(ZHAO), 5: xpn(ZHAO),
                7: ZHAO[5], 8: ZHAO[4]}),
    seg("ORC", {1: "RE", 2: "NH-LAB-20250626-031", 5: "CM"}),
    seg("OBR", {1: "1", 2: "NH-LAB-20250626-031", 3: "NHLIS0626031", 4: "24323-8^综合代谢检查^LN",
                7: "20250626081500", 24: "CH", 25: "F"}),
    seg("OBX", {1: "1", 2: "NM", 3: "2345-7^葡萄糖^LN", 5: "7.8", 6: "mmol/L", 7: "3.9-6.1", 8: "H", 11: "F"}),
    seg("OBX", {1: "2", 2: "NM", 3: "2160-0^肌酐^LN", 5: "68", 6: "umol/L", 7: "45-84", 8: "N", 11: "F"}),
    seg("OBX", {1: "3", 2: "NM", 3: "1742-6^丙氨酸氨基转移酶^LN", 5: "25", 6: "U/L", 7: "7-40", 8: "N",
                11: "F"}),
    seg("OBX", {1: "4", 2: "NM", 3: "2093-3^总胆固醇^LN", 5: "6.21", 6: "mmol/L", 7: "<5.2", 8: "H", 11: "F"}),
    seg("OBX", {1: "5", 2: "SN", 3: "4548-4^糖化血红蛋白^LN", 5: "^7.1", 6: "%", 7: "4.0-6.0", 8: "H", 11: "F"}),
    seg("NTE", {1: "1", 3: "空腹血糖偏高，建议复查并内分泌科随诊"}),
], "ORU^R01 v2.5.1 lab panel from 南湖社区 LIS: NM values with units, ranges, abnormal flags; SN; NTE")

add("oru_r01_zs_corrected.hl7", [
    msh("RIS", "ZSRMYY", "20250624090000", "ORU^R01^ORU_R01", "ZSRIS20250624090000001", "2.6"),
    seg("PID", {1: "1", 3: "0012347^^^ZSRMYY^MR~%s^^^CHN^NNCHN" % rid(WANG), 5: xpn(WANG),
                7: WANG[5], 8: WANG[4]}),
    seg("ORC", {1: "RE", 2: "ZS-ORD-7790001^ZSRMYY", 3: "ZS-RIS-CT-250623-0007^ZSRMYY", 5: "CM"}),
    seg("OBR", {1: "1", 2: "ZS-ORD-7790001^ZSRMYY", 3: "ZS-RIS-CT-250623-0007^ZSRMYY",
                4: "CT0101^头颅CT平扫^ZSRMYY-EXAM", 18: "ZSCT250623007", 24: "CT", 25: "C"}),
    seg("OBX", {1: "1", 2: "ST", 3: "19005-8^检查结论^LN", 5: "左侧基底节区腔隙性梗死灶（更正）", 11: "C"}),
    seg("NTE", {1: "1", 3: "更正原因：复阅后补充诊断"}),
], "ORU^R01 v2.6 corrected report (OBR-25 C, OBX-11 C) superseding the final one")

add("oru_r01_qh_prelim_gb18030.hl7", [
    msh("RIS", "QHXRMYY-RIS", "20250627150000", "ORU^R01", "QHRIS-20250627-150000-05", "2.3.1"),
    seg("PID", {1: "1", 3: "QH0003321^^^QHXRMYY^PI~%s^^^^SFZ" % rid(LIU), 5: xpn(LIU),
                7: LIU[5] + "000000", 8: LIU[4]}),
    seg("OBR", {1: "1", 2: "QH-ORD-88124", 3: "QH-RIS-55002", 4: "210300001-TL^头颅CT平扫^QHXRMYY-JC",
                20: "QHCT2025062700005", 24: "CT", 25: "P"}),
    seg("OBX", {1: "1", 2: "TX", 3: "IMP^印象^QHXRMYY-RPT", 5: "初步印象：頭顱CT平掃未見明顯異常，待上級醫師審核。",
                11: "P"}),
    seg("ZDS", {1: "1.2.156.112605.14038005.20250627.150000.5^QHXRMYY^Application^DICOM"}),
], "ORU^R01 v2.3.1 preliminary (OBR-25 P) from 清河县 RIS, GB 18030 bytes without MSH-18; "
   "traditional characters with trail bytes ^ (頭) in OBX-5; ZDS study UID", encoding="gb18030")

add("oru_r01_zs_escapes_hex.hl7", [
    msh("RIS", "ZSRMYY", "20250628100000", "ORU^R01^ORU_R01", "ZSRIS20250628100000002", "2.5"),
    seg("PID", {1: "1", 3: "0012346^^^ZSRMYY^MR~%s^^^CHN^NNCHN" % rid(LI), 5: xpn(LI), 7: LI[5], 8: LI[4]}),
    seg("OBR", {1: "1", 2: "ZS-ORD-7781001^ZSRMYY", 3: "ZS-RIS-US-250628-0002^ZSRMYY",
                4: "US0100^腹部超声（肝胆胰脾）^ZSRMYY-EXAM", 24: "US", 25: "F"}),
    seg("OBX", {1: "1", 2: "FT", 3: "59776-5^检查所见^LN",
                5: "\\H\\肝脏\\N\\：形态大小正常\\.br\\胆囊：壁光滑\\X0A\\胰腺、脾脏未见异常\\.br\\"
                   "结论 A\\T\\B \\S\\ C\\F\\D", 11: "F"}),
    seg("OBX", {1: "2", 2: "ST", 3: "19005-8^检查结论^LN", 5: "\\X4C49\\肝胆胰脾未见明显异常", 11: "F"}),
], "ORU^R01 v2.5 formatted text (OBX-2 FT): \\H\\ \\N\\ highlighting, \\.br\\, hex \\X0A\\ and \\X4C49\\ next to "
   "\\T\\ \\S\\ \\F\\ in OBX-5 (HAPI keeps formatting and hex sequences as sent; see README)")

# ---------------------------------------------------------------------------
# Referrals (REF / RRI)


def ref_msg(name, trigger, control, ref_id, status, covers, version="2.5", sender=("HIS", "DCSQ"),
            patient=YE, pid3=None, encoding="utf-8", charset="", receiving=("YILIAN", "ZS-YILIAN"),
            upward=True, extra_nte="转诊申请：请上级医院协助诊治"):
    fac = sender[1]
    if pid3 is None:
        pid3 = "DC0041122^^^DCSQ^MR~%s^^^CHN^NNCHN" % rid(patient)
    if upward:
        rp = ("RP^转出医生^HL70286", "林^晓东", "DCSQ^东城街道社区卫生服务中心", "D031^DCSQ")
        rt = ("RT^接收医生^HL70286", "刘^德华", "ZSRMYY^中山市人民医院", "0231^ZSRMYY")
    else:
        rp = ("RP^转出医生^HL70286", "刘^德华", "ZSRMYY^中山市人民医院", "0231^ZSRMYY")
        rt = ("RT^接收医生^HL70286", "林^晓东", "DCSQ^东城街道社区卫生服务中心", "D031^DCSQ")
    segs = [
        msh(sender[0], fac, "20250629090000", "REF^%s^REF_I12" % trigger, control, version,
            charset=charset, receiving=receiving),
        seg("RF1", {1: status, 2: "R^常规^HL70280", 3: "%s^%s^HL70281" % (("UP", "上转") if upward else ("DOWN", "下转")),
                    5: "O^门诊^HL70284", 6: ref_id + "^" + fac, 7: "20250629090000", 8: "20250729235959",
                    10: "DIAG^明确诊断^HL70336", 11: "YL-" + ref_id + "^ZS-YILIAN"}),
        seg("PRD", {1: rp[0], 2: rp[1], 4: "^^^" + rp[2], 7: rp[3]}),
        seg("PRD", {1: rt[0], 2: rt[1], 4: "^^^" + rt[2], 7: rt[3]}),
        seg("PID", {1: "1", 3: pid3, 5: xpn(patient), 7: patient[5], 8: patient[4]}),
        seg("DG1", {1: "1", 3: "I10.x00^原发性高血压^ICD-10", 6: "W"}),
        seg("DG1", {1: "2", 3: "E11.900^2型糖尿病^ICD-10", 6: "W"}),
        seg("NTE", {1: "1", 3: extra_nte}),
    ]
    add(name, segs, covers, encoding)


ref_msg("ref_i12_dc_upward.hl7", "I12", "DCSQ0629090000", "DC-REF-0629-01", "P^待处理^HL70283",
        "REF^I12 v2.5 upward referral (上转) from 东城社区 to 中山市人民医院: RF1 (status, type UP, RF1-6 "
        "originating id, RF1-11 external id), PRD RP and RT, PID, two DG1, NTE; MSH-18 UNICODE UTF-8",
        charset="UNICODE UTF-8")
ref_msg("ref_i12_xz_upward_gbk.hl7", "I12", "XZ2025062909300001", "XZ-REF-0629-03", "P^待处理^HL70283",
        "REF^I12 v2.4 upward referral from 西镇卫生院, GBK bytes without MSH-18; patient 陳繼瑋",
        version="2.4", sender=("HIS", "XZWSY"), patient=CHEN_T,
        pid3="XZ000512^^^XZWSY^MR~%s^^^^SFZ" % rid(CHEN_T), encoding="gbk",
        extra_nte="患者陳繼瑋血壓控制不佳，申請上轉")
ref_msg("ref_i13_dc_modify.hl7", "I13", "DCSQ0629100000", "DC-REF-0629-01", "P^待处理^HL70283",
        "REF^I13 v2.5 modify the referral (same RF1-6)", charset="UNICODE UTF-8",
        extra_nte="补充：近一周血糖波动较大")
ref_msg("ref_i14_dc_cancel.hl7", "I14", "DCSQ0629110000", "DC-REF-0629-01", "C^已取消^HL70283",
        "REF^I14 v2.5.1 cancel the referral (RF1-1 C)", version="2.5.1", charset="UNICODE UTF-8",
        extra_nte="患者已自行前往上级医院就诊，取消转诊")
ref_msg("ref_i12_zs_downward.hl7", "I12", "ZSHIS20250630150000012", "ZS-REF-0630-08", "P^待处理^HL70283",
        "REF^I12 v2.5 downward referral (下转) from 中山市人民医院 back to 东城社区 for follow-up",
        sender=("HIS", "ZSRMYY"), patient=YE,
        pid3="0012360^^^ZSRMYY^MR~%s^^^CHN^NNCHN" % rid(YE), upward=False,
        extra_nte="病情稳定，转回社区继续随访，每月复查血压血糖")


def rri_msg(name, trigger, control, ack_of, ref_id, status, covers, version="2.5"):
    segs = [
        msh("HIS", "ZSRMYY", "20250629093000", "RRI^%s^RRI_I12" % trigger, control, version,
            receiving=("HIS", "DCSQ")),
        seg("MSA", {1: "AA", 2: ack_of}),
        seg("RF1", {1: status, 2: "R^常规^HL70280", 3: "UP^上转^HL70281", 6: ref_id + "^DCSQ",
                    11: "YL-" + ref_id + "^ZS-YILIAN"}),
        seg("PRD", {1: "RT^接收医生^HL70286", 2: "刘^德华", 4: "^^^ZSRMYY^中山市人民医院", 7: "0231^ZSRMYY"}),
        seg("PRD", {1: "RP^转出医生^HL70286", 2: "林^晓东", 4: "^^^DCSQ^东城街道社区卫生服务中心", 7: "D031^DCSQ"}),
        seg("PID", {1: "1", 3: "0012360^^^ZSRMYY^MR~DC0041122^^^DCSQ^MR~%s^^^CHN^NNCHN" % rid(YE),
                    5: xpn(YE), 7: YE[5], 8: YE[4]}),
        seg("NTE", {1: "1", 3: {"I12": "已接收，安排心内科专家门诊", "I13": "预约时间调整为7月2日上午",
                                "I14": "转诊已取消", "I15": "患者已到诊"}[trigger]}),
    ]
    add(name, segs, covers)


rri_msg("rri_i12_zs_accept.hl7", "I12", "ZSHIS20250629093000013", "DCSQ0629090000", "DC-REF-0629-01",
        "A^已接收^HL70283", "RRI^I12 v2.5 referral accepted by 中山市人民医院 (MSA, RF1-1 A, PRD RT/RP, PID with "
        "both hospitals' MRNs)")
rri_msg("rri_i13_zs_modified.hl7", "I13", "ZSHIS20250629103000014", "DCSQ0629100000", "DC-REF-0629-01",
        "A^已接收^HL70283", "RRI^I13 v2.5 response to the modification", version="2.5")
rri_msg("rri_i14_zs_cancelled.hl7", "I14", "ZSHIS20250629113000015", "DCSQ0629110000", "DC-REF-0629-01",
        "C^已取消^HL70283", "RRI^I14 v2.6 cancellation confirmed", version="2.6")
rri_msg("rri_i15_zs_status.hl7", "I15", "ZSHIS20250702090000016", "DCSQ0702085900", "DC-REF-0629-01",
        "E^已到诊^HL70283", "RRI^I15 v2.8 status: patient arrived", version="2.8")

# ---------------------------------------------------------------------------


# Sending facility (MSH-4.1) -> hospital of the example consortium and its
# profile's default_charset (what an empty MSH-18 means for that sender).
FACILITIES = {
    "ZSRMYY": ("zs-tertiary", "UTF-8"),
    "QHXRMYY": ("qh-county", "GB18030"),
    "QHXRMYY-RIS": ("qh-county", "GB18030"),
    "DCSQ": ("dc-chc", "GBK"),
    "XZWSY": ("xz-thc", "GBK"),
    "NHSQ": ("nh-chc", "UTF-8"),
}

README_HEAD = """# HL7 v2 message corpus

Generated by `generate.py` in this folder (edit the script, run it, commit the
script, the `.hl7` files, `index.json` and this README together;
`generate.py --check` fails when they are out of date). Used by the HAPI oracle
test (`tests/e2e/hl7v2_oracle_test.py`), the HAPI/python-hl7 client tests and
the parser benchmarks.

- One message per file, segments ended by CR (`\\r`), no MLLP framing.
- Sent by the hospitals of `deploy/examples/consortium`: facility ids (MSH-4),
  identifier authorities (PID-3.4/3.5), local exam code systems (OBR-4.3,
  AIS-3.3) and equipment (AIG-3) as their profiles describe them.
- All people are invented. Resident ID numbers are synthetic (area 442000) with a
  valid GB 11643 check digit; phone numbers are made up.
- Bytes are UTF-8 unless the table says GBK or GB 18030. Files without MSH-18 are
  meant to be read with the sending hospital's profile default
  (`default_charset`): `index.json` gives it per file (`default_charset`, as a
  charset name both Java and yilian's `--default-charset` accept).
- GBK / GB 18030 files contain characters whose second byte is a delimiter
  (東 瑋 -> `|`, 誠 -> `\\`, 繼 頭 -> `^`, 葉 銅 魚 -> `~`), so splitting before
  decoding breaks them; one file has the four-byte GB 18030 character 𠮷 (U+20BB7).

`index.json`: one entry per file with `file`, `hospital`, `sending_facility`,
`message_type` (MSH-9.1^MSH-9.2), `version` (MSH-12.1), `msh18`, `bytes_charset`
(how the file is encoded) and `default_charset` (the sender's profile default).

HAPI differences to expect (HAPI 2.x keeps these escape sequences as sent,
yilian decodes them): formatting commands `\\.br\\` (yilian: line feed),
`\\H\\` `\\N\\` (yilian: dropped) and hex `\\Xhh..\\` (yilian: the bytes); see
`oru_r01_zs_escapes_hex.hl7`. HAPI does not know `\\P\\` (v2.7+ truncation
character), so it is only used where the oracle does not look (PID-11.2 of
`adt_a31_nh_update_person.hl7`).

| file | bytes | covers |
|---|---|---|
"""


def header_fields(segments):
    m = segments[0]
    sep, comp = m[3], m[4]
    f = m.split(sep)
    get = lambda n: f[n - 1] if len(f) >= n else ""  # f[0] = "MSH", f[1] = MSH-2
    return {
        "facility": get(4).split(comp)[0],
        "type": "^".join(get(9).split(comp)[:2]),
        "version": get(12).split(comp)[0],
        "msh18": get(18),
    }


def index_json():
    import json
    entries = []
    for name, encoding, segments, _covers in CORPUS:
        h = header_fields(segments)
        hospital, default = FACILITIES[h["facility"]]
        entries.append({
            "file": name, "hospital": hospital, "sending_facility": h["facility"],
            "message_type": h["type"], "version": h["version"], "msh18": h["msh18"],
            "bytes_charset": {"utf-8": "UTF-8", "gbk": "GBK", "gb18030": "GB18030"}[encoding],
            "default_charset": default,
        })
    return (json.dumps(entries, ensure_ascii=False, indent=1) + "\n").encode("utf-8")


def encode(name, encoding, segments):
    text = "\r".join(segments) + "\r"
    return text.encode(encoding)


def readme():
    lines = []
    for name, encoding, _segments, covers in CORPUS:
        cs = {"utf-8": "UTF-8", "gbk": "GBK", "gb18030": "GB 18030"}[encoding]
        lines.append("| `%s` | %s | %s |" % (name, cs, covers.replace("|", "\\|")))
    return (README_HEAD + "\n".join(lines) + "\n").encode("utf-8")


def main():
    check = "--check" in sys.argv[1:]
    outputs = {}
    for name, encoding, segments, _covers in CORPUS:
        assert name not in outputs, name
        outputs[name] = encode(name, encoding, segments)
    outputs["index.json"] = index_json()
    outputs["README.md"] = readme()
    differs = []
    for name, data in outputs.items():
        path = os.path.join(HERE, name)
        old = open(path, "rb").read() if os.path.exists(path) else None
        if old != data:
            differs.append(name)
            if not check:
                with open(path, "wb") as f:
                    f.write(data)
    stale = sorted(f for f in os.listdir(HERE) if f.endswith(".hl7") and f not in outputs)
    if check:
        if differs or stale:
            print("corpus out of date: %s" % ", ".join(differs + stale), file=sys.stderr)
            return 1
        return 0
    for f in stale:
        os.remove(os.path.join(HERE, f))
    print("%d messages (%d files rewritten, %d removed)" % (len(CORPUS), len(differs), len(stale)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
