"""End to end: the two-way referral and report-sharing loop on the example
consortium (issue 5).

The real `yilian serve` (embedded log); hospital systems played by real MLLP
endpoints that ACK what they get (the tertiary hospital's HIS/RIS, the clinic's
HIS), real MLLP clients sending what those systems send, and a real HTTP server
as the consortium's patient notification gateway (the outbound webhook).

The closed loop: the clinic sends REF^I12 -> the tertiary hospital's HIS gets
it -> accepts with RRI -> the clinic hears RRI (RF1-1 A) and the patient is
told -> a CT is booked for the referral -> the patient arrives (ADT^A04), the
exam is performed (ORM) -> the tertiary RIS sends ORU^R01 -> the clinic's HIS
gets the ORU (ACKed) and the patient gateway the report notice, together ->
the corrected report reaches both as a correction -> the tertiary hospital
refers the patient back down, linked to the first referral. Also: rejection,
cancellation, expiry and no-show, each with what each side is told; who may
read which referral and report; the audit log.
"""
import base64
import json
import os
import shutil
import time
import unittest
import uuid

from engine import Engine, OPERATOR, consortium_copy
from hl7tools import MllpServer, field, mllp_exchange, mllp_ports, msa, now_hl7, with_check_digit
from httptools import WebhookServer

CLINIC = "dev-xz-thc-user-token"          # 西镇卫生院's clinic user
OTHER_CLINIC = "dev-dc-chc-user-token"    # 东城社区: takes no part in these referrals
TERTIARY = "dev-zs-tertiary-his-token"    # 中山市人民医院's HIS
PDF = b"%PDF-1.4\n1 0 obj <</Type /Catalog>> endobj\ntrailer <</Root 1 0 R>>\n%%EOF\n"


def resident_id(seq):
    """A valid 18-digit resident ID (GB 11643 check digit) for a synthetic person."""
    return with_check_digit("44200019%02d0101%03d" % (50 + seq % 40, 100 + seq % 800))


def fld(message, segment, index):
    """field() that reads a missing segment as empty (messages of other kinds are in the same inbox)."""
    return field(message, segment, index) or ""


def ctl(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:12])


class Referral(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tertiary = MllpServer()   # zs-tertiary's his-mllp endpoint (HIS: referrals, bookings)
        cls.clinic = MllpServer(encoding="gbk")  # xz-thc's clinic-mllp endpoint (its HIS speaks GBK)
        cls.county = MllpServer()     # qh-county's his-mllp endpoint
        cls.gateway = WebhookServer()  # the patient notification gateway
        cls.config = consortium_copy({"127.0.0.1:6661": "127.0.0.1:%d" % cls.tertiary.port,
                                      "127.0.0.1:6663": "127.0.0.1:%d" % cls.clinic.port,
                                      "127.0.0.1:6662": "127.0.0.1:%d" % cls.county.port,
                                      "http://127.0.0.1:6670/notify": "http://127.0.0.1:%d/notify" % cls.gateway.port})
        cls.engine = Engine(config=os.path.join(cls.config, "consortium.yaml"), extra_args=["--mllp-any-port"])
        cls.ports = mllp_ports(cls.engine, ["zs-tertiary", "xz-thc", "nh-chc"])
        cls.engine.wait_ready(30)

    @classmethod
    def tearDownClass(cls):
        cls.engine.close()
        for s in (cls.tertiary, cls.clinic, cls.county, cls.gateway):
            s.close()
        shutil.rmtree(cls.config, ignore_errors=True)

    # --- helpers -----------------------------------------------------------------------------------
    def call(self, method, path, token, body=None, key=None):
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Idempotency-Key"] = key
        return self.engine.request(method, path, body=json.dumps(body) if body is not None else None,
                                   token=token, headers=headers)

    def send_hl7(self, hospital, segments):
        payload = ("\r".join(segments) + "\r").encode("utf-8")
        ack = mllp_exchange(self.ports[hospital], payload)[0]
        self.assertEqual(msa(ack)[1], "AA", ack)

    def wait_referral(self, rid, token, state, timeout=30):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            r = self.call("GET", "/api/v1/referrals/" + rid, token)
            last = r.json() if r.status == 200 else (r.status, r.body)
            if r.status == 200 and last["state"] == state:
                return last
            time.sleep(0.05)
        raise AssertionError("referral %s never reached %s; last: %s" % (rid, state, last))

    def send_ref_i12(self, rid, seq, expires=None):
        """The clinic's HIS refers a patient up to the tertiary hospital (UTF-8 by MSH-18)."""
        self.send_hl7("xz-thc", [
            "MSH|^~\\&|CLINIC|XZWSY|YILIAN|ZSRMYY|%s||REF^I12^REF_I12|%s|P|2.5|||||CHN|UNICODE UTF-8" % (
                now_hl7(), ctl("REF")),
            "RF1|P|R||||%s^XZWSY||%s||^胸痛待查" % (rid, expires or ""),
            "PRD|RP|张^全科||全科^^^XZWSY|||XZ03",
            "PRD|RT|||放射科^^^ZSRMYY",
            "PID|1||XZ%06d^^^XZWSY^MR~%s^^^^SFZ||李^四^^^^^L||19520110|M" % (seq, resident_id(seq)),
            "DG1|1||R07.4^胸痛^ICD10",
            "OBR|1|||CT-TL^头颅CT^XZWSY-JC"])

    def send_rri(self, rid, status, reason=""):
        """The tertiary hospital's HIS answers a referral (RF1-1 A accepted / R rejected)."""
        self.send_hl7("zs-tertiary", [
            "MSH|^~\\&|HIS|ZSRMYY|YILIAN|XZWSY|%s||RRI^I12^RRI_I12|%s|P|2.5" % (now_hl7(), ctl("RRI")),
            "MSA|AA|REF0001",
            "RF1|%s|R||||%s^XZWSY||||%s" % (status, rid, reason),
            "PRD|RT|刘^德华||放射科^^^ZSRMYY|||0231",
            "PRD|RP|张^全科||全科^^^XZWSY|||XZ03"])

    def book_for(self, rid, seq):
        slots = self.call("GET", "/api/v1/slots?exam=CT-HEAD-PLAIN&hospital=zs-tertiary&limit=40", CLINIC).json()["slots"]
        for slot in slots:
            r = self.call("POST", "/api/v1/bookings", CLINIC, {
                "slot_id": slot["slot_id"], "referral_id": rid,
                "patient": {"name": {"hanzi": "李四"}, "birth_date": "1952-01-10", "sex": "SEX_MALE"},
                "identifiers": [{"system": "urn:yilian:id:xz-thc:mrn", "value": "XZ%06d" % seq},
                                {"system": "urn:yilian:id:cn:resident", "value": resident_id(seq)}]})
            if r.status == 201:
                return r.json()
            self.assertEqual(r.status, 409, r.body)  # taken by another test meanwhile: the next one
        raise AssertionError("no CT slot could be booked")

    def oru(self, placer, filler, status, text):
        pdf = base64.b64encode(PDF).decode("ascii")
        return [
            "MSH|^~\\&|RIS|ZSRMYY|YILIAN|XZWSY|%s||ORU^R01^ORU_R01|%s|P|2.5" % (now_hl7(), ctl("ORU")),
            "PID|1||ZS%06d^^^ZSRMYY^MR||李^四^^^^^L||19520110|M" % (abs(hash(filler)) % 1000000),
            "ORC|RE|%s|%s||CM" % (placer, filler),
            "OBR|1|%s|%s|CT0101^头颅CT平扫^ZSRMYY-EXAM|||%s|||||||||||ACC-%s||||%s||CT|%s" % (
                placer, filler, now_hl7(-3600), filler, now_hl7(), status),
            "OBX|1|TX|&IMP^诊断意见^IHE||%s||||||%s" % (text, status),
            "OBX|2|ED|PDF^报告单PDF^ZSRMYY-RPT||^AP^PDF^Base64^%s||||||%s" % (pdf, status)]

    # --- the closed loop over HL7 v2 ---------------------------------------------------------------
    def test_the_closed_loop_up_and_back_down(self):
        rid = "XZ-REF-%s" % uuid.uuid4().hex[:8]
        seq = 101
        self.send_ref_i12(rid, seq)

        # The tertiary HIS hears the referral itself (REF^I12 with the patient and the reason).
        ref = self.tertiary.wait_for(lambda m: "REF^I12" in m and rid in fld(m, "RF1", 6))
        self.assertIn(resident_id(seq), field(ref, "PID", 3))
        self.assertEqual(field(ref, "RF1", 1).split("^")[0], "P")
        r = self.wait_referral(rid, CLINIC, "REQUESTED")
        self.assertEqual((r["direction"], r["from_hospital"], r["to_hospital"]), ("UP", "xz-thc", "zs-tertiary"))
        self.assertEqual(r["task_status"], "requested")

        # Accepted: the clinic's HIS hears RRI with RF1-1 A; the patient is told.
        self.send_rri(rid, "A^Accepted^HL70283")
        self.wait_referral(rid, CLINIC, "ACCEPTED")
        rri = self.clinic.wait_for(lambda m: "RRI^" in m and rid in fld(m, "RF1", 6))
        self.assertEqual(field(rri, "RF1", 1).split("^")[0], "A")
        told = self.gateway.wait_for(lambda q: q["json"] and q["json"].get("type", "").endswith("ReferralStateChanged")
                                     and rid in json.dumps(q["json"], ensure_ascii=False))
        self.assertIn("已接收", told["json"]["text"])

        # A CT is booked for it: SCHEDULED, and the clinic hears it.
        booking = self.book_for(rid, seq)
        sched = self.wait_referral(rid, CLINIC, "SCHEDULED")
        self.assertEqual(sched["booking_id"], booking["id"])
        self.assertEqual(sched["business_status"], "scheduled")
        s12 = self.tertiary.wait_for(lambda m: "SIU^S12" in m and fld(m, "SCH", 1).startswith(booking["id"]))
        placer = field(s12, "SCH", 26).split("^")[0]

        # The patient arrives (ADT^A04 with the resident ID) and the exam is performed (ORM CM).
        self.send_hl7("zs-tertiary", [
            "MSH|^~\\&|HIS|ZSRMYY|YILIAN|ZSYL|%s||ADT^A04^ADT_A01|%s|P|2.5" % (now_hl7(), ctl("A04")),
            "EVN|A04|%s" % now_hl7(),
            "PID|1||ZS%06d^^^ZSRMYY^MR~%s^^^CHN^NNCHN||李^四^^^^^L||19520110|M" % (seq, resident_id(seq)),
            "PV1|1|O|RAD^^^ZSRMYY||||||||||||||||V%s" % seq])
        self.wait_referral(rid, CLINIC, "ARRIVED")
        filler = "RIS-%s" % uuid.uuid4().hex[:8]
        self.send_hl7("zs-tertiary", [
            "MSH|^~\\&|RIS|ZSRMYY|YILIAN|ZSYL|%s||ORM^O01^ORM_O01|%s|P|2.5" % (now_hl7(), ctl("ORM")),
            "PID|1||ZS%06d^^^ZSRMYY^MR" % seq,
            "ORC|SC|%s|%s||CM||||%s" % (placer, filler, now_hl7()),
            "OBR|1|%s|%s|CT0101^头颅CT平扫^ZSRMYY-EXAM" % (placer, filler)])
        self.wait_referral(rid, CLINIC, "COMPLETED")

        # The report: the clinic's HIS (ORU^R01, ACKed) and the patient gateway get it together.
        self.send_hl7("zs-tertiary", self.oru(placer, filler, "F", "头颅CT平扫未见明显异常。"))
        oru = self.clinic.wait_for(lambda m: "ORU^R01" in m and filler in fld(m, "OBR", 3))
        self.assertEqual(field(oru, "OBR", 25), "F")
        notice = self.gateway.wait_for(lambda q: q["json"] and q["json"].get("type", "").endswith("ReportIssued")
                                       and filler in json.dumps(q["json"]))
        self.assertIn("正式报告", notice["json"]["text"])
        # "At the same time": both left the engine within a couple of seconds of each other.
        returned = self.wait_referral(rid, CLINIC, "REPORT_RETURNED")
        self.assertIn(filler, returned["report_ids"])

        # The clinic (a referrer) reads the report and fetches its PDF by claim-check; another clinic cannot.
        r = self.call("GET", "/api/v1/reports/zs-tertiary/%s" % filler, CLINIC)
        self.assertEqual(r.status, 200, r.body)
        doc = r.json()["versions"][0]["documents"][0]
        pdf = self.engine.request("GET", doc["url"], token=CLINIC)
        self.assertEqual(pdf.status, 200, pdf.body)
        self.assertEqual(pdf.headers.get("Content-Type"), doc["content_type"])
        self.assertEqual(pdf.body.encode("utf-8"), PDF)
        self.assertEqual(self.call("GET", "/api/v1/reports/zs-tertiary/%s" % filler, OTHER_CLINIC).status, 404)
        self.assertEqual(self.engine.request("GET", doc["url"], token=OTHER_CLINIC).status, 404)

        # A correction reaches both as a correction.
        self.send_hl7("zs-tertiary", self.oru(placer, filler, "C", "更正：左侧基底节区腔隙灶。"))
        corrected = self.clinic.wait_for(lambda m: "ORU^R01" in m and filler in fld(m, "OBR", 3)
                                         and fld(m, "OBR", 25) == "C")
        self.assertIn("更正", corrected)
        fixed = self.gateway.wait_for(lambda q: q["json"] and filler in json.dumps(q["json"])
                                      and "更正" in q["json"].get("text", ""))
        self.assertIn("以本次报告为准", fixed["json"]["text"])
        r = self.call("GET", "/api/v1/reports/zs-tertiary/%s" % filler, CLINIC).json()
        self.assertEqual([v["status_code"] for v in r["versions"]], ["F", "C"])
        self.assertEqual(r["versions"][1]["supersedes_event_id"], r["versions"][0]["event_id"])

        # Back down: the tertiary hospital refers the patient back to the clinic, linked to the first.
        down = self.call("POST", "/api/v1/referrals", TERTIARY, {
            "to_hospital": "xz-thc", "linked_referral_id": rid, "reason_text": "术后康复，社区随访",
            "identifiers": [{"system": "urn:yilian:id:cn:resident", "value": resident_id(seq)}],
            "patient": {"name": {"hanzi": "李四"}, "birth_date": "1952-01-10", "sex": "SEX_MALE"}})
        self.assertEqual(down.status, 201, down.body)
        d = down.json()
        self.assertEqual((d["direction"], d["linked_referral_id"], d["state"]), ("DOWN", rid, "REQUESTED"))
        ref_down = self.clinic.wait_for(lambda m: "REF^I12" in m and d["id"] in fld(m, "RF1", 6))
        self.assertIn(rid, field(ref_down, "RF1", 11))
        up = self.call("GET", "/api/v1/referrals/" + rid, CLINIC).json()
        self.assertEqual(up["followed_by"], [d["id"]])
        self.assertEqual([x["id"] for x in up["linked"]], [d["id"]])
        self.assertEqual([s["to"] for s in up["timeline"]],
                         ["REQUESTED", "ACCEPTED", "SCHEDULED", "ARRIVED", "COMPLETED", "REPORT_RETURNED",
                          "REPORT_RETURNED"])

    # --- the same loop through FHIR ServiceRequest / Task ---------------------------------------------
    def fhir(self, method, path, token, body=None):
        return self.engine.request(method, "/fhir/r4/" + path, body=json.dumps(body) if body is not None else None,
                                   token=token, headers={"Content-Type": "application/fhir+json"})

    def move_task(self, rid, token, status, business=None):
        t = self.fhir("GET", "Task/" + rid, token).json()
        t["status"] = status
        t.pop("businessStatus", None)
        if business:
            t["businessStatus"] = {"coding": [{"system": "urn:yilian:referral-business-status", "code": business}]}
        r = self.fhir("PUT", "Task/" + rid, token, t)
        self.assertEqual(r.status, 200, r.body)
        return r.json()

    def test_the_same_loop_through_fhir_service_request_and_task(self):
        seq = 701
        patient = {"resourceType": "Patient", "id": "p1",
                   "identifier": [{"system": "urn:yilian:id:cn:resident", "value": resident_id(seq)},
                                  {"system": "urn:yilian:id:xz-thc:mrn", "value": "XZ%06d" % seq}],
                   "name": [{"text": "王五", "family": "王", "given": ["五"]}], "gender": "male",
                   "birthDate": "1960-05-01"}
        r = self.fhir("POST", "ServiceRequest", CLINIC, {
            "resourceType": "ServiceRequest", "contained": [patient], "status": "active", "intent": "order",
            "code": {"coding": [{"system": "urn:yilian:catalogue:exam", "code": "CT-HEAD-PLAIN"}]},
            "subject": {"reference": "#p1"}, "requester": {"reference": "Organization/xz-thc"},
            "performer": [{"reference": "Organization/zs-tertiary"}],
            "reasonCode": [{"text": "头痛待查"}]})
        self.assertEqual(r.status, 201, r.body)
        rid = r.json()["id"]
        ref = self.tertiary.wait_for(lambda m: "REF^I12" in m and rid in fld(m, "RF1", 6))
        self.assertIn("王", fld(ref, "PID", 5))
        # The tertiary hospital accepts by updating the Task; the clinic hears RRI.
        self.assertEqual(self.fhir("GET", "Task/" + rid, TERTIARY).json()["status"], "requested")
        self.move_task(rid, TERTIARY, "accepted")
        self.clinic.wait_for(lambda m: "RRI^" in m and rid in fld(m, "RF1", 6) and fld(m, "RF1", 1).startswith("A"))
        # A booking for it shows as businessStatus scheduled; the visit and the report follow.
        booking = self.book_for(rid, seq)
        deadline = time.monotonic() + 30
        task = {}
        while time.monotonic() < deadline:
            task = self.fhir("GET", "Task/" + rid, CLINIC).json()
            if task.get("businessStatus", {}).get("coding", [{}])[0].get("code") == "scheduled":
                break
            time.sleep(0.05)
        self.assertEqual(task["businessStatus"]["coding"][0]["code"], "scheduled", task)
        self.assertIn("Appointment/" + booking["id"], json.dumps(task))
        self.move_task(rid, TERTIARY, "in-progress", "arrived")
        self.move_task(rid, TERTIARY, "completed")
        s12 = self.tertiary.wait_for(lambda m: "SIU^S12" in m and fld(m, "SCH", 1).startswith(booking["id"]))
        placer = fld(s12, "SCH", 26).split("^")[0]
        filler = "RIS-%s" % uuid.uuid4().hex[:8]
        self.send_hl7("zs-tertiary", self.oru(placer, filler, "F", "未见异常。"))
        self.clinic.wait_for(lambda m: "ORU^R01" in m and filler in fld(m, "OBR", 3))
        self.gateway.wait_for(lambda q: q["json"] and filler in json.dumps(q["json"]))
        self.wait_referral(rid, CLINIC, "REPORT_RETURNED")
        self.assertEqual(self.fhir("GET", "Task/" + rid, CLINIC).json()["businessStatus"]["coding"][0]["code"],
                         "report-returned")
        # Back down through FHIR: basedOn the first ServiceRequest.
        r = self.fhir("POST", "ServiceRequest", TERTIARY, {
            "resourceType": "ServiceRequest", "contained": [patient], "status": "active", "intent": "order",
            "subject": {"reference": "#p1"}, "requester": {"reference": "Organization/zs-tertiary"},
            "performer": [{"reference": "Organization/xz-thc"}], "basedOn": [{"reference": "ServiceRequest/" + rid}],
            "reasonCode": [{"text": "康复期转回社区"}]})
        self.assertEqual(r.status, 201, r.body)
        down = r.json()["id"]
        self.clinic.wait_for(lambda m: "REF^I12" in m and down in fld(m, "RF1", 6))
        t = self.fhir("GET", "Task/" + down, CLINIC).json()
        self.assertIn("Task/" + rid, json.dumps(t.get("partOf", [])))
        # A clinic with no part in it sees nothing.
        self.assertEqual(self.fhir("GET", "ServiceRequest/" + rid, OTHER_CLINIC).status, 404)

    # --- the ways a referral ends early, and who hears what -----------------------------------------
    def test_rejection_tells_the_clinic_and_the_patient_why(self):
        rid = "XZ-REF-%s" % uuid.uuid4().hex[:8]
        self.send_ref_i12(rid, 201)
        self.wait_referral(rid, CLINIC, "REQUESTED")
        self.send_rri(rid, "R^Rejected^HL70283", "NOBED^床位已满^ZSRMYY-RFR")
        r = self.wait_referral(rid, CLINIC, "REJECTED")
        self.assertEqual(r["timeline"][-1]["reason"], "床位已满")
        rri = self.clinic.wait_for(lambda m: "RRI^" in m and rid in fld(m, "RF1", 6))
        self.assertEqual(field(rri, "RF1", 1).split("^")[0], "R")
        self.assertIn("床位已满", field(rri, "RF1", 10))
        told = self.gateway.wait_for(lambda q: q["json"] and rid in json.dumps(q["json"], ensure_ascii=False))
        self.assertIn("未能接收", told["json"]["text"])
        # A rejected referral cannot be accepted afterwards.
        r = self.call("POST", "/api/v1/referrals/%s/accept" % rid, TERTIARY)
        self.assertEqual(r.status, 409, r.body)
        self.assertEqual(r.json()["code"], "wrong_transition")

    def test_cancellation_by_the_clinic_reaches_the_tertiary_hospital(self):
        rid = "XZ-REF-%s" % uuid.uuid4().hex[:8]
        self.send_ref_i12(rid, 301)
        self.wait_referral(rid, CLINIC, "REQUESTED")
        self.send_hl7("xz-thc", [
            "MSH|^~\\&|CLINIC|XZWSY|YILIAN|ZSRMYY|%s||REF^I14^REF_I12|%s|P|2.5|||||CHN|UNICODE UTF-8" % (
                now_hl7(), ctl("I14")),
            "RF1||||||%s^XZWSY||||^患者已自行就医" % rid,
            "PRD|RP|张^全科||全科^^^XZWSY|||XZ03",
            "PRD|RT|||放射科^^^ZSRMYY",
            "PID|1||XZ000301^^^XZWSY^MR"])
        self.wait_referral(rid, CLINIC, "CANCELLED")
        cancel = self.tertiary.wait_for(lambda m: rid in (fld(m, "RF1", 6) or "") and "I14" in fld(m, "MSH", 9))
        self.assertIn("CANCELLED", field(cancel, "RF1", 1))
        # The tertiary hospital may not cancel the clinic's referral (only the initiator cancels).
        rid2 = "XZ-REF-%s" % uuid.uuid4().hex[:8]
        self.send_ref_i12(rid2, 302)
        self.wait_referral(rid2, CLINIC, "REQUESTED")
        r = self.call("POST", "/api/v1/referrals/%s/cancel" % rid2, TERTIARY)
        self.assertEqual(r.status, 403, r.body)
        self.assertEqual(r.json()["code"], "not_allowed")

    def test_an_unanswered_referral_expires_and_both_sides_hear_it(self):
        rid = "XZ-REF-%s" % uuid.uuid4().hex[:8]
        # RF1-8: it expires in four seconds unless answered.
        self.send_ref_i12(rid, 401, expires=now_hl7(4))
        self.wait_referral(rid, CLINIC, "REQUESTED")
        r = self.wait_referral(rid, CLINIC, "EXPIRED", timeout=30)
        self.assertEqual(r["timeline"][-1]["actor"], "engine")
        rri = self.clinic.wait_for(lambda m: rid in fld(m, "RF1", 6) and fld(m, "RF1", 1).startswith("E"))
        self.assertIn("I14", field(rri, "MSH", 9))
        self.tertiary.wait_for(lambda m: rid in fld(m, "RF1", 6) and fld(m, "RF1", 1).startswith("E"))
        told = self.gateway.wait_for(lambda q: q["json"] and rid in json.dumps(q["json"], ensure_ascii=False))
        self.assertIn("失效", told["json"]["text"])
        # Too late to accept.
        self.send_rri(rid, "A^Accepted^HL70283")
        time.sleep(1)
        self.assertEqual(self.call("GET", "/api/v1/referrals/" + rid, CLINIC).json()["state"], "EXPIRED")

    def test_a_no_show_is_reported_to_the_clinic(self):
        rid = "XZ-REF-%s" % uuid.uuid4().hex[:8]
        self.send_ref_i12(rid, 501)
        self.wait_referral(rid, CLINIC, "REQUESTED")
        self.send_rri(rid, "A^Accepted^HL70283")
        self.wait_referral(rid, CLINIC, "ACCEPTED")
        booking = self.book_for(rid, 501)
        self.wait_referral(rid, CLINIC, "SCHEDULED")
        # The tertiary HIS reports the no-show for the referral (SIU^S26 naming it in RF1-6).
        self.send_hl7("zs-tertiary", [
            "MSH|^~\\&|HIS|ZSRMYY|YILIAN|XZWSY|%s||SIU^S26^SIU_S12|%s|P|2.5" % (now_hl7(), ctl("S26")),
            "SCH|%s^ZSRMYY|%s^ZSRMYY||||NOSHOW^未到诊|||||^^^%s||||^^^XZWSY||||||||||Noshow" % (
                booking["id"], booking["id"], now_hl7()),
            "RF1||||||%s^XZWSY" % rid,
            "PID|1||XZ000501^^^XZWSY^MR",
            "RGS|1",
            "AIS|1||CT0101^头颅CT平扫^ZSRMYY-EXAM|%s|||15|min" % now_hl7(),
            "AIG|1||CT-01^64排螺旋CT|EQUIP"])
        told = self.wait_referral(rid, CLINIC, "NO_SHOW")
        self.assertEqual(told["timeline"][-1]["actor_hospital"], "zs-tertiary")
        self.clinic.wait_for(lambda m: "RRI^" in m and rid in fld(m, "RF1", 6) and "NO_SHOW" in fld(m, "RF1", 1))

    # --- who may see what ---------------------------------------------------------------------------
    # --- a referral sent as an order (OMG^O19) by a HIS without REF^I12 ------------------------
    def send_omg(self, control, placer, seq, extra_orc=""):
        """南湖社区's HIS refers a patient with an OMG^O19 order addressed (MSH-6) to the tertiary hospital."""
        self.send_hl7("nh-chc", [
            "MSH|^~\\&|HIS|NHSQ|YILIAN|ZSRMYY|%s||OMG^O19^OMG_O19|%s|P|2.5.1|||||CHN|UNICODE UTF-8" % (
                now_hl7(), ctl("O19")),
            "PID|1||NH%06d^^^NHSQ^MR~%s^^^CHN^NNCHN||唐^晓红^^^^^L||19770221|F" % (seq, resident_id(seq)),
            "ORC|%s|%s^NHSQ|||||||%s|||NH12^赵^敏%s" % (control, placer, now_hl7(), extra_orc),
            "TQ1|1||||||||R",
            "OBR|1|%s^NHSQ||US0501^心脏彩超^ZSRMYY-EXAM|||||||||活动后胸闷两周" % placer,
            "DG1|1||I20.9^心绞痛^ICD10||%s|W" % now_hl7()[:8]])

    def test_an_omg_o19_referral_order_reaches_the_tertiary_hospital_as_ref_i12_and_ca_cancels_it(self):
        placer = "NH-ORD-%s" % uuid.uuid4().hex[:8]
        seq = 701
        self.send_omg("NW", placer, seq)
        # The same path as a REF^I12: CREATE, and the tertiary HIS hears REF^I12 over real MLLP.
        ref = self.tertiary.wait_for(lambda m: "REF^I12" in m and placer in fld(m, "RF1", 6))
        self.assertIn(resident_id(seq), field(ref, "PID", 3))
        self.assertIn("唐", field(ref, "PID", 5))
        self.assertIn("I20.9", field(ref, "DG1", 3))
        self.assertIn("US0501", field(ref, "OBR", 4))
        self.assertIn("NHSQ", field(ref, "PRD", 4))  # the referring clinic (PRD RP)
        r = self.wait_referral(placer, OPERATOR, "REQUESTED")
        self.assertEqual((r["direction"], r["from_hospital"], r["to_hospital"]), ("UP", "nh-chc", "zs-tertiary"))
        # ORC-1 CA withdraws it: CANCELLED, and the tertiary HIS hears the cancellation.
        self.send_omg("CA", placer, seq, extra_orc="||||PATREQ^患者要求取消")
        self.wait_referral(placer, OPERATOR, "CANCELLED")
        cancel = self.tertiary.wait_for(lambda m: placer in fld(m, "RF1", 6) and "I14" in fld(m, "MSH", 9))
        self.assertIn("CANCELLED", field(cancel, "RF1", 1))

    # --- a refused HL7 message is answered with an application error ------------------------------
    def test_a_refused_ref_i13_is_answered_to_the_clinic_with_rri_ae(self):
        rid = "XZ-REF-%s" % uuid.uuid4().hex[:8]
        self.send_ref_i12(rid, 801)
        self.wait_referral(rid, CLINIC, "REQUESTED")
        self.send_hl7("xz-thc", [
            "MSH|^~\\&|CLINIC|XZWSY|YILIAN|ZSRMYY|%s||REF^I14^REF_I12|%s|P|2.5|||||CHN|UNICODE UTF-8" % (
                now_hl7(), ctl("I14")),
            "RF1||||||%s^XZWSY||||^患者已自行就医" % rid,
            "PID|1||XZ000801^^^XZWSY^MR"])
        self.wait_referral(rid, CLINIC, "CANCELLED")
        # A modification of a cancelled referral: AA (it is durable), then refused by the writer.
        control = ctl("I13")
        self.send_hl7("xz-thc", [
            "MSH|^~\\&|CLINIC|XZWSY|YILIAN|ZSRMYY|%s||REF^I13^REF_I12|%s|P|2.5|||||CHN|UNICODE UTF-8" % (
                now_hl7(), control),
            "RF1|P|S||||%s^XZWSY" % rid,
            "PID|1||XZ000801^^^XZWSY^MR"])
        answer = self.clinic.wait_for(lambda m: "RRI^I13" in fld(m, "MSH", 9) and control in fld(m, "MSA", 2))
        self.assertEqual(field(answer, "MSA", 1), "AE")
        self.assertIn(rid, field(answer, "RF1", 6))
        err = field(answer, "ERR", 3) + "|" + field(answer, "ERR", 5)
        self.assertIn("207", err)
        self.assertIn("wrong_transition", err)
        self.assertIn("cannot", field(answer, "ERR", 8))
        self.assertIn("XZ000801", field(answer, "PID", 3))
        self.assertEqual((fld(answer, "MSH", 5), fld(answer, "MSH", 6)), ("CLINIC", "XZWSY"))
        # Exactly one answer, and no patient data in what it says about the refusal.
        self.assertEqual(len(self.clinic.received(lambda m: control in fld(m, "MSA", 2))), 1)
        self.assertNotIn("李", field(answer, "ERR", 8))
        self.assertNotIn(resident_id(801), field(answer, "ERR", 8))

    def test_a_refused_rri_is_answered_to_the_tertiary_hospital_with_ack_ae(self):
        rid = "XZ-REF-%s" % uuid.uuid4().hex[:8]
        self.send_ref_i12(rid, 802)
        self.wait_referral(rid, CLINIC, "REQUESTED")
        self.send_rri(rid, "R^Rejected^HL70283", "NOBED^床位已满^ZSRMYY-RFR")
        self.wait_referral(rid, CLINIC, "REJECTED")
        # Accepting it afterwards is refused: the HIS hears ACK^I12 with AE for its RRI.
        control = ctl("RRI")
        self.send_hl7("zs-tertiary", [
            "MSH|^~\\&|HIS|ZSRMYY|YILIAN|XZWSY|%s||RRI^I12^RRI_I12|%s|P|2.5" % (now_hl7(), control),
            "MSA|AA|REF0001",
            "RF1|A|R||||%s^XZWSY" % rid,
            "PRD|RT|刘^德华||放射科^^^ZSRMYY|||0231"])
        answer = self.tertiary.wait_for(lambda m: fld(m, "MSH", 9).startswith("ACK^") and control in fld(m, "MSA", 2))
        self.assertEqual(fld(answer, "MSH", 9), "ACK^I12^ACK")
        self.assertEqual(field(answer, "MSA", 1), "AE")
        self.assertIn("wrong_transition", field(answer, "ERR", 5))
        self.assertEqual(field(answer, "MSH", 15), "AL")  # enhanced mode: a commit ACK answers it, nothing more
        # Refusals of REST commands are not sent anywhere: the caller had its answer.
        def errors():
            return self.tertiary.received(lambda m: fld(m, "MSH", 9).startswith("ACK^") and fld(m, "MSA", 1) == "AE")
        before = len(errors())
        r = self.call("POST", "/api/v1/referrals/%s/accept" % rid, TERTIARY)
        self.assertEqual(r.status, 409, r.body)
        time.sleep(1.5)
        self.assertEqual(len(errors()), before)
        self.assertEqual(len([m for m in errors() if fld(m, "MSA", 2) == control]), 1)

    def test_a_clinic_sees_only_referrals_it_takes_part_in_and_every_read_is_audited(self):
        rid = "XZ-REF-%s" % uuid.uuid4().hex[:8]
        self.send_ref_i12(rid, 601)
        self.wait_referral(rid, CLINIC, "REQUESTED")
        self.assertEqual(self.call("GET", "/api/v1/referrals/" + rid, TERTIARY).status, 200)
        self.assertEqual(self.call("GET", "/api/v1/referrals/" + rid, OPERATOR).status, 200)
        self.assertEqual(self.call("GET", "/api/v1/referrals/" + rid, OTHER_CLINIC).status, 404)
        listed = self.call("GET", "/api/v1/referrals", OTHER_CLINIC).json()["referrals"]
        self.assertNotIn(rid, [x["id"] for x in listed])
        self.assertEqual(self.call("POST", "/api/v1/referrals/%s/accept" % rid, OTHER_CLINIC).status, 404)
        mine = self.call("GET", "/api/v1/referrals?role=sent", CLINIC).json()["referrals"]
        self.assertIn(rid, [x["id"] for x in mine])
        self.assertEqual(self.call("GET", "/api/v1/reports", OTHER_CLINIC).status, 200)
        audit = os.path.join(self.engine.data_dir, "audit", "audit.log")
        deadline = time.monotonic() + 5
        lines = []
        while time.monotonic() < deadline:
            with open(audit, encoding="utf-8") as f:
                lines = [json.loads(line) for line in f if line.strip()]
            outcomes = {x.get("outcome") for x in lines if x.get("resource") == "Referral" and rid in x.get("ids", [])}
            if {"ok", "not_found"} <= outcomes:
                break
            time.sleep(0.2)
        mine = [x for x in lines if x.get("resource") == "Referral" and rid in x.get("ids", [])]
        self.assertTrue(any(x.get("outcome") == "not_found" for x in mine), mine)
        self.assertTrue(any(x.get("outcome") == "ok" for x in mine), mine)
        text = open(audit, encoding="utf-8").read()
        self.assertNotIn("李四", text)
        self.assertNotIn(resident_id(601), text)


if __name__ == "__main__":
    unittest.main(verbosity=2)
