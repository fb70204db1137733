"""End to end: one patient across hospitals (issue 6) against the real engine.

Registrations arrive over MLLP from three hospitals (the tertiary hospital in
UTF-8, two clinics that declare UTF-8 in MSH-18); the identity index links the
tertiary hospital's and 西镇's records by a valid resident ID + name + birth
date, keeps 东城's namesake with a broken resident ID apart, announces every
decision as PatientLinkChanged, stamps the enterprise id on later events, and
answers the same cross-reference to a PIX query over MLLP (QBP^Q23 -> RSP^K23)
and to Patient/$ihe-pix over HTTP. Operators decide the review queue over
REST; hospitals see only what the sharing rules let them; every read is in
the audit log.
"""
import json
import os
import shutil
import time
import unittest
import urllib.parse
import uuid

from engine import Engine, OPERATOR, consortium_copy
from hl7tools import MllpServer, events, field, mllp_exchange, mllp_ports, msa, now_hl7, with_check_digit

TERTIARY = "dev-zs-tertiary-his-token"
XZ = "dev-xz-thc-his-token"
XZ_USER = "dev-xz-thc-user-token"
DC = "dev-dc-chc-his-token"
DC_USER = "dev-dc-chc-user-token"
QH = "dev-qh-county-his-token"

ZS_MRN = "urn:yilian:id:zs-tertiary:mrn"
XZ_MRN = "urn:yilian:id:xz-thc:mrn"
DC_MRN = "urn:yilian:id:dc-chc:mrn"
RESIDENT = "urn:yilian:id:cn:resident"


resident_id = with_check_digit


def broken(rid):
    return rid[:17] + ("0" if rid[17] != "0" else "1")


def ctl(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:12])


class Identity(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tertiary = MllpServer()  # the tertiary hospital's HIS, receiving referrals
        cls.config = consortium_copy({"127.0.0.1:6661": "127.0.0.1:%d" % cls.tertiary.port})
        cls.engine = Engine(config=os.path.join(cls.config, "consortium.yaml"), extra_args=["--mllp-any-port"])
        # tearDownClass does not run when setUpClass fails: clean up regardless.
        cls.addClassCleanup(cls.engine.close)
        cls.addClassCleanup(cls.tertiary.close)
        cls.addClassCleanup(shutil.rmtree, cls.config, ignore_errors=True)
        cls.ports = mllp_ports(cls.engine, ["zs-tertiary", "xz-thc", "dc-chc"])
        cls.engine.wait_ready(30)
        run = uuid.uuid4().hex[:6].upper()
        cls.zs_mrn = "ZS" + run
        cls.xz_mrn = "XZ" + run
        cls.dc_mrn = "DC" + run
        cls.rid = resident_id("44200019680314%03d" % (int(run, 16) % 900 + 100))
        cls.send(cls, "zs-tertiary",
                 "MSH|^~\\&|HIS|ZSRMYY|YILIAN|ZSYL|%s||ADT^A04^ADT_A01|%s|P|2.5|||||CHN|UNICODE UTF-8" % (now_hl7(), ctl("A04")),
                 "EVN|A04|%s" % now_hl7(),
                 "PID|1||%s^^^ZSRMYY^MR~%s^^^CHN^NNCHN||张^建国||19680314|M|||东区起湾道1号^^中山^广东||13800000001" % (
                     cls.zs_mrn, cls.rid),
                 "PV1|1|O")
        # The clinic types the name in pinyin and sends the resident ID with its local type code.
        cls.send(cls, "xz-thc",
                 "MSH|^~\\&|CLINIC|XZWSY|YILIAN|ZSYL|%s||ADT^A04^ADT_A01|%s|P|2.5|||||CHN|UNICODE UTF-8" % (now_hl7(), ctl("A04")),
                 "EVN|A04|%s" % now_hl7(),
                 "PID|1||%s^^^XZWSY^MR~%s^^^^SFZ||ZHANG^JIANGUO||19680314|M" % (cls.xz_mrn, cls.rid),
                 "PV1|1|O")
        # A namesake born the same day whose resident ID has a broken check digit.
        cls.send(cls, "dc-chc",
                 "MSH|^~\\&|HIS|DCSQ|YILIAN|ZSYL|%s||ADT^A04^ADT_A01|%s|P|2.5|||||CHN|UNICODE UTF-8" % (now_hl7(), ctl("A04")),
                 "EVN|A04|%s" % now_hl7(),
                 "PID|1||%s^^^DCSQ^MR~%s^^^CHN^NNCHN||张^建国||19680314|M" % (cls.dc_mrn, broken(cls.rid)),
                 "PV1|1|O")

    def send(self, hospital, *segments):
        payload = ("\r".join(segments) + "\r").encode("utf-8")
        reply = mllp_exchange(self.ports[hospital], payload)[0]
        # 东城 speaks enhanced mode: its commit ACK (CA) comes first.
        if msa(reply)[1] not in ("AA", "CA"):
            raise AssertionError(reply)
        return reply

    def call(self, method, path, token, body=None):
        return self.engine.request(method, path, body=json.dumps(body) if body is not None else None, token=token,
                                   headers={"Content-Type": "application/json"})

    def person(self, system, value, token=OPERATOR, timeout=30):
        q = urllib.parse.urlencode({"identifier": "%s|%s" % (system, value)})
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            r = self.call("GET", "/api/v1/patients?" + q, token)
            last = (r.status, r.body)
            if r.status == 200 and r.json().get("patients"):
                return r.json()["patients"][0]
            time.sleep(0.1)
        raise AssertionError("no person for %s|%s: %s" % (system, value, last))

    def pix_mllp(self, hospital, qpd3, qpd4=""):
        return mllp_exchange(self.ports[hospital], (
            "\r".join([
                "MSH|^~\\&|CLINIC|XZWSY|YILIAN|ZSYL|%s||QBP^Q23^QBP_Q21|%s|P|2.5|||||CHN|UNICODE UTF-8" % (now_hl7(), ctl("PIX")),
                "QPD|IHE PIX Query|%s|%s|%s" % (ctl("Q"), qpd3, qpd4),
                "RCP|I"]) + "\r").encode("utf-8"))[0].decode("utf-8")

    # --- the tests ------------------------------------------------------------------------------------

    def test_records_link_by_valid_resident_id_and_a_broken_one_never_links(self):
        zs = self.person(ZS_MRN, self.zs_mrn)
        xz = self.person(XZ_MRN, self.xz_mrn)
        dc = self.person(DC_MRN, self.dc_mrn)
        self.assertEqual(zs["enterprise_id"], xz["enterprise_id"])
        self.assertNotEqual(zs["enterprise_id"], dc["enterprise_id"])
        hospitals = sorted(r["hospital"] for r in zs["records"])
        self.assertEqual(hospitals, ["xz-thc", "zs-tertiary"])
        # The decisions are on the bus: an assignment for the tertiary record,
        # a resident-ID link for the clinic's, nothing that links 东城's.
        deadline = time.monotonic() + 30
        links = []
        while time.monotonic() < deadline:
            links = [e["envelope"]["patientLinkChanged"] for e in events(self.engine.data_dir, "yilian.patient.v1")
                     if e["envelope"].get("type") == "yilian.events.v1.PatientLinkChanged"]
            mine = [l for l in links if any(i.get("value") == self.xz_mrn for i in l.get("identifiers", []))]
            if any(l.get("action") == "LINK_ACTION_LINKED" for l in mine):
                break
            time.sleep(0.2)
        xz_links = [l for l in links if any(i.get("value") == self.xz_mrn for i in l.get("identifiers", []))]
        self.assertTrue(any(l["action"] == "LINK_ACTION_LINKED" and l["basis"] == "LINK_BASIS_RESIDENT_ID"
                            and l["enterprisePatientId"] == zs["enterprise_id"] for l in xz_links), xz_links)
        dc_links = [l for l in links if any(i.get("value") == self.dc_mrn for i in l.get("identifiers", []))]
        self.assertTrue(dc_links)
        self.assertFalse(any(l["action"] == "LINK_ACTION_LINKED" for l in dc_links), dc_links)
        # The broken number is not one of 东城's record's identifiers.
        self.assertNotIn(broken(self.rid), [i["value"] for r in dc["records"] for i in r["identifiers"]])

    def test_later_events_carry_the_enterprise_id(self):
        zs = self.person(ZS_MRN, self.zs_mrn)
        control = ctl("A08")
        self.send("xz-thc",
                  "MSH|^~\\&|CLINIC|XZWSY|YILIAN|ZSYL|%s||ADT^A08^ADT_A01|%s|P|2.5|||||CHN|UNICODE UTF-8" % (now_hl7(), control),
                  "EVN|A08|%s" % now_hl7(),
                  "PID|1||%s^^^XZWSY^MR~%s^^^^SFZ||ZHANG^JIANGUO||19680314|M|||||13900000002" % (self.xz_mrn, self.rid),
                  "PV1|1|O")
        updated = [e["envelope"] for e in events(self.engine.data_dir, "yilian.patient.v1")
                   if e["envelope"].get("type") == "yilian.events.v1.PatientUpdated"
                   and e["envelope"]["source"].get("controlId") == control]
        self.assertEqual(len(updated), 1)
        self.assertEqual(updated[0]["subject"]["enterprisePatientId"], zs["enterprise_id"])

    def test_a_referral_reaches_the_tertiary_hospital_under_its_own_mrn(self):
        self.person(XZ_MRN, self.xz_mrn)
        rid = "RF-" + uuid.uuid4().hex[:10]
        # The clinic refers by its own MRN only; the tertiary hospital's HIS files
        # messages under its MRN, which the identity index knows.
        self.send("xz-thc",
                  "MSH|^~\\&|CLINIC|XZWSY|YILIAN|ZSRMYY|%s||REF^I12^REF_I12|%s|P|2.5|||||CHN|UNICODE UTF-8" % (now_hl7(), ctl("REF")),
                  "RF1|P|R||||%s^XZWSY|||||^胸痛待查" % rid,
                  "PRD|RP|张^全科||全科^^^XZWSY|||XZ03",
                  "PRD|RT|||放射科^^^ZSRMYY",
                  "PID|1||%s^^^XZWSY^MR||ZHANG^JIANGUO||19680314|M" % self.xz_mrn,
                  "DG1|1||R07.4^胸痛^ICD10")
        got = self.tertiary.wait_for(lambda m: "REF^I12" in m and rid in m)
        pid3 = field(got, "PID", 3).split("~")
        first = pid3[0].split("^")
        self.assertEqual(first[0], self.zs_mrn, got)
        self.assertEqual(first[3].split("&")[0], "ZSRMYY")
        self.assertIn(self.xz_mrn, [c.split("^")[0] for c in pid3])
        eid = self.person(ZS_MRN, self.zs_mrn)["enterprise_id"]
        self.assertIn(eid, [c.split("^")[0] for c in pid3])
        # The person's referrals, whichever hospital's number they were made under.
        listed = self.call("GET", "/api/v1/referrals?patient=" + eid, TERTIARY).json()["referrals"]
        self.assertIn(rid, [r["id"] for r in listed])
        other = self.call("GET", "/api/v1/referrals?patient=" + self.person(DC_MRN, self.dc_mrn)["enterprise_id"],
                          TERTIARY).json()["referrals"]
        self.assertNotIn(rid, [r["id"] for r in other])
        self.assertEqual(self.call("GET", "/api/v1/referrals?patient=YL999999999", TERTIARY).json()["referrals"], [])

    def test_pix_over_mllp_and_ihe_pix_over_http_return_the_same_cross_reference(self):
        self.person(XZ_MRN, self.xz_mrn)
        reply = self.pix_mllp("xz-thc", "%s^^^XZWSY^MR" % self.xz_mrn)
        self.assertEqual(msa(reply.encode())[1], "AA", reply)
        self.assertEqual(field(reply, "QAK", 2), "OK", reply)
        authorities = {("ZSRMYY", "MR"): ZS_MRN, ("XZWSY", "MR"): XZ_MRN, ("", "SFZ"): RESIDENT, ("CHN", "NNCHN"): RESIDENT}
        over_mllp = set()
        for cx in field(reply, "PID", 3).split("~"):
            comps = cx.split("^")
            ns = comps[3].split("&")[0] if len(comps) > 3 else ""
            over_mllp.add((authorities[(ns, comps[4] if len(comps) > 4 else "")], comps[0]))
        self.assertEqual(over_mllp, {(ZS_MRN, self.zs_mrn), (RESIDENT, self.rid)})

        q = urllib.parse.urlencode({"sourceIdentifier": "%s|%s" % (XZ_MRN, self.xz_mrn)})
        r = self.call("GET", "/fhir/r4/Patient/$ihe-pix?" + q, XZ)
        self.assertEqual(r.status, 200, r.body)
        params = r.json()
        self.assertEqual(params["resourceType"], "Parameters")
        over_http = {(p["valueIdentifier"]["system"], p["valueIdentifier"]["value"])
                     for p in params["parameter"] if p["name"] == "targetIdentifier"}
        over_http.discard((XZ_MRN, self.xz_mrn))  # PIXm may list the source identifier; ITI-9 does not
        self.assertEqual(over_http, over_mllp)
        target_ids = [p["valueReference"]["reference"] for p in params["parameter"] if p["name"] == "targetId"]
        self.assertEqual(target_ids, ["Patient/" + self.person(XZ_MRN, self.xz_mrn)["enterprise_id"]])

        # Only the tertiary hospital's domain, both ways.
        reply = self.pix_mllp("xz-thc", "%s^^^XZWSY^MR" % self.xz_mrn, "^^^ZSRMYY^MR")
        self.assertEqual([c.split("^")[0] for c in field(reply, "PID", 3).split("~")], [self.zs_mrn])
        q = urllib.parse.urlencode({"sourceIdentifier": "%s|%s" % (XZ_MRN, self.xz_mrn), "targetSystem": ZS_MRN})
        r = self.call("GET", "/fhir/r4/Patient/$ihe-pix?" + q, XZ)
        self.assertEqual([p["valueIdentifier"]["value"] for p in r.json()["parameter"] if p["name"] == "targetIdentifier"],
                         [self.zs_mrn])

        # Unknown identifier: AE 204 over MLLP, 404 over HTTP.
        reply = self.pix_mllp("xz-thc", "NOSUCH^^^XZWSY^MR")
        self.assertEqual(msa(reply.encode())[1], "AE", reply)
        self.assertEqual(field(reply, "ERR", 3).split("^")[0], "204", reply)
        q = urllib.parse.urlencode({"sourceIdentifier": "%s|NOSUCH" % XZ_MRN})
        self.assertEqual(self.call("GET", "/fhir/r4/Patient/$ihe-pix?" + q, XZ).status, 404)

    def test_sharing_rules_and_audit(self):
        zs = self.person(ZS_MRN, self.zs_mrn)
        eid = zs["enterprise_id"]
        # The tertiary hospital sees its own record's demographics, not the clinic's.
        mine = self.call("GET", "/api/v1/patients/" + eid, TERTIARY).json()
        by_hospital = {r["hospital"]: r for r in mine["records"]}
        self.assertIn("demographics", by_hospital["zs-tertiary"])
        self.assertNotIn("demographics", by_hospital["xz-thc"])
        self.assertEqual({i["value"] for i in by_hospital["xz-thc"]["identifiers"]} >= {self.xz_mrn}, True)
        # A hospital the person never visited does not learn the person exists.
        self.assertEqual(self.call("GET", "/api/v1/patients/" + eid, QH).status, 404)
        self.assertEqual(self.call("GET", "/fhir/r4/Patient/" + eid, QH).status, 404)
        # FHIR Patient for the clinic: its own demographics, every identifier.
        r = self.call("GET", "/fhir/r4/Patient/" + eid, XZ)
        self.assertEqual(r.status, 200, r.body)
        patient = r.json()
        self.assertEqual(patient["resourceType"], "Patient")
        self.assertEqual(patient["id"], eid)
        self.assertIn(self.zs_mrn, [i["value"] for i in patient["identifier"]])
        # Review queue: operators only.
        self.assertEqual(self.call("GET", "/api/v1/patient-reviews", TERTIARY).status, 403)
        self.assertEqual(self.call("GET", "/api/v1/patient-reviews", OPERATOR).status, 200)
        # Reads are audited with ids, never names or ID numbers.
        audit_file = os.path.join(self.engine.data_dir, "audit", "audit.log")
        deadline = time.monotonic() + 10
        text = ""
        while time.monotonic() < deadline:
            if os.path.exists(audit_file):
                with open(audit_file, encoding="utf-8") as f:
                    text = f.read()
            if eid in text and "pix-query" in text:
                break
            time.sleep(0.2)
        self.assertIn(eid, text)
        self.assertNotIn(self.rid, text)
        self.assertNotIn("张", text)
        self.assertNotIn("13800000001", text)
        log = "".join(self.engine.lines)
        self.assertNotIn(self.rid, log)
        self.assertNotIn("建国", log)

    def test_an_a40_merge_folds_a_hospital_duplicate_into_its_survivor(self):
        run = uuid.uuid4().hex[:6].upper()
        rid = resident_id("44200019820301%03d" % (int(run, 16) % 900 + 100))
        for mrn in ("S" + run, "D" + run):
            self.send("zs-tertiary",
                      "MSH|^~\\&|HIS|ZSRMYY|YILIAN|ZSYL|%s||ADT^A04^ADT_A01|%s|P|2.5|||||CHN|UNICODE UTF-8" % (now_hl7(), ctl("A04")),
                      "EVN|A04|%s" % now_hl7(),
                      "PID|1||%s^^^ZSRMYY^MR~%s^^^CHN^NNCHN||李^秀英||19820301|F" % (mrn, rid),
                      "PV1|1|O")
        survivor = self.person(ZS_MRN, "S" + run)
        duplicate = self.person(ZS_MRN, "D" + run)
        # Two records of one hospital never link automatically: that is the hospital's A40 to make.
        self.assertNotEqual(survivor["enterprise_id"], duplicate["enterprise_id"])
        self.send("zs-tertiary",
                  "MSH|^~\\&|HIS|ZSRMYY|YILIAN|ZSYL|%s||ADT^A40^ADT_A39|%s|P|2.5|||||CHN|UNICODE UTF-8" % (now_hl7(), ctl("A40")),
                  "EVN|A40|%s" % now_hl7(),
                  "PID|1||S%s^^^ZSRMYY^MR||李^秀英||19820301|F" % run,
                  "MRG|D%s^^^ZSRMYY^MR" % run)
        deadline = time.monotonic() + 30
        merged = None
        while time.monotonic() < deadline:
            merged = self.person(ZS_MRN, "D" + run)
            if merged["enterprise_id"] == survivor["enterprise_id"]:
                break
            time.sleep(0.1)
        self.assertEqual(merged["enterprise_id"], survivor["enterprise_id"])
        # One record now, carrying both MRNs.
        person = self.call("GET", "/api/v1/patients/" + survivor["enterprise_id"], OPERATOR).json()
        zs_records = [r for r in person["records"] if r["hospital"] == "zs-tertiary"]
        self.assertEqual(len(zs_records), 1)
        self.assertTrue({"S" + run, "D" + run} <= {i["value"] for i in zs_records[0]["identifiers"]})
        history = self.call("GET", "/api/v1/patients/%s/history" % survivor["enterprise_id"], OPERATOR).json()
        self.assertIn("LINK_ACTION_MERGED", [h["action"] for h in history["history"]])

    def test_an_operator_accepts_a_review_and_splits_a_wrong_link(self):
        run = uuid.uuid4().hex[:6].upper()
        # Same surname, birth date and phone at two hospitals, no identifier in common ...
        self.send("zs-tertiary",
                  "MSH|^~\\&|HIS|ZSRMYY|YILIAN|ZSYL|%s||ADT^A04^ADT_A01|%s|P|2.5|||||CHN|UNICODE UTF-8" % (now_hl7(), ctl("A04")),
                  "EVN|A04|%s" % now_hl7(),
                  "PID|1||R%s^^^ZSRMYY^MR||欧阳^晓燕||19750921|F|||||13700001111" % run,
                  "PV1|1|O")
        self.send("dc-chc",
                  "MSH|^~\\&|HIS|DCSQ|YILIAN|ZSYL|%s||ADT^A04^ADT_A01|%s|P|2.5|||||CHN|UNICODE UTF-8" % (now_hl7(), ctl("A04")),
                  "EVN|A04|%s" % now_hl7(),
                  "PID|1||R%s^^^DCSQ^MR||欧阳^小燕||19750921|F|||||13700001111" % run,
                  "PV1|1|O")
        a = self.person(ZS_MRN, "R" + run)
        b = self.person(DC_MRN, "R" + run)
        deadline = time.monotonic() + 30
        review = None
        while time.monotonic() < deadline and review is None:
            queue = self.call("GET", "/api/v1/patient-reviews?state=open", OPERATOR).json()["reviews"]
            review = next((x for x in queue if x["candidate_enterprise_id"] in (a["enterprise_id"], b["enterprise_id"])), None)
            time.sleep(0.1)
        # ... the given names sound alike (晓燕 / 小燕) under one birth date: how twins look, so a person decides.
        self.assertIsNotNone(review, "no review queued")
        self.assertNotEqual(a["enterprise_id"], b["enterprise_id"])
        self.assertEqual(review["hold"], "given_name_similar")
        r = self.call("POST", "/api/v1/patient-reviews/%d/accept" % review["id"], OPERATOR,
                      {"reason": "clinic confirmed by phone"})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(self.person(ZS_MRN, "R" + run)["enterprise_id"], self.person(DC_MRN, "R" + run)["enterprise_id"])
        self.assertEqual(self.call("POST", "/api/v1/patient-reviews/%d/accept" % review["id"], OPERATOR, {}).status, 409)
        eid = self.person(ZS_MRN, "R" + run)["enterprise_id"]
        r = self.call("POST", "/api/v1/patients/%s/split" % eid, OPERATOR,
                      {"identifier": {"system": DC_MRN, "value": "R" + run}, "reason": "different mothers' names"})
        self.assertEqual(r.status, 200, r.body)
        self.assertNotEqual(self.person(DC_MRN, "R" + run)["enterprise_id"], eid)
        history = self.call("GET", "/api/v1/patients/%s/history" % eid, OPERATOR).json()
        actions = [h["action"] for h in history["history"]]
        self.assertIn("LINK_ACTION_UNLINKED", actions)
        self.assertEqual(self.call("POST", "/api/v1/patients/%s/split" % eid, TERTIARY,
                                   {"identifier": {"system": ZS_MRN, "value": "R" + run}}).status, 403)


if __name__ == "__main__":
    unittest.main(verbosity=2)
