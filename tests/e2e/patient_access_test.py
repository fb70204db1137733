"""End to end: a patient reads their own report through the consortium's
patient app (issue 5: "who may read a report is ... the patient";
docs/patient-access.md).

The real `yilian serve` (embedded log) on a copy of the example consortium,
with YILIAN_PATIENT_TOKEN_KEY set; the tertiary hospital's HIS/RIS played by a
real MLLP client (ADT^A04 registrations, ORU^R01 reports with an embedded
PDF), its outbound endpoints and the notification gateway by real servers.
The patient app backend (principal patient-app, role PATIENT_GATEWAY,
dev token dev-patient-app-token) asks for a patient token by the person's
hospital number; the report was sent under that MRN only, and finding it
goes through the identity index (the token is asked for by the same MRN: a
resident ID alone is not a record key of the index yet). Also: a second engine without the key
starts, answers patient sessions 503 and says so once in its log.
"""
import base64
import json
import os
import shutil
import time
import unittest
import uuid

from engine import Engine, OPERATOR, consortium_copy
from hl7tools import MllpServer, mllp_exchange, mllp_ports, msa, now_hl7, with_check_digit
from httptools import WebhookServer

GATEWAY = "dev-patient-app-token"
TERTIARY = "dev-zs-tertiary-his-token"
KEY_ENV = "YILIAN_PATIENT_TOKEN_KEY"
RESIDENT = "urn:yilian:id:cn:resident"
ZS_MRN = "urn:yilian:id:zs-tertiary:mrn"
PDF = b"%PDF-1.4\n1 0 obj <</Type /Catalog>> endobj\n% patient access\ntrailer <</Root 1 0 R>>\n%%EOF\n"

# Made-up people: names from common characters, resident IDs with computed check digits.
WANG = {"mrn": "PA%06d" % (os.getpid() % 1000000), "resident": with_check_digit("11010119600501003"),
        "name": "王^建国", "birth": "19600501", "sex": "M"}
LI = {"mrn": "PB%06d" % (os.getpid() % 1000000), "resident": with_check_digit("44200019750312004"),
      "name": "李^秀英", "birth": "19750312", "sex": "F"}


def ctl(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:12])


def start_engine(config, key):
    """An engine on `config` with the patient-token key set to `key` (None: unset)."""
    saved = os.environ.pop(KEY_ENV, None)
    try:
        if key is not None:
            os.environ[KEY_ENV] = key
        return Engine(config=os.path.join(config, "consortium.yaml"), extra_args=["--mllp-any-port"])
    finally:
        os.environ.pop(KEY_ENV, None)
        if saved is not None:
            os.environ[KEY_ENV] = saved


class PatientAccess(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.servers = [MllpServer(), MllpServer(encoding="gbk"), MllpServer(), WebhookServer()]
        tertiary, clinic, county, gateway = cls.servers
        cls.config = consortium_copy({"127.0.0.1:6661": "127.0.0.1:%d" % tertiary.port,
                                      "127.0.0.1:6663": "127.0.0.1:%d" % clinic.port,
                                      "127.0.0.1:6662": "127.0.0.1:%d" % county.port,
                                      "http://127.0.0.1:6670/notify": "http://127.0.0.1:%d/notify" % gateway.port})
        cls.addClassCleanup(shutil.rmtree, cls.config, True)
        for s in cls.servers:
            cls.addClassCleanup(s.close)
        cls.engine = start_engine(cls.config, base64.b64encode(os.urandom(48)).decode("ascii"))
        cls.addClassCleanup(cls.engine.close)
        cls.ports = mllp_ports(cls.engine, ["zs-tertiary"])
        cls.engine.wait_ready(30)

    # --- helpers -----------------------------------------------------------------------------------
    def call(self, method, path, token, body=None):
        return self.engine.request(method, path, body=json.dumps(body) if body is not None else None, token=token,
                                   headers={"Content-Type": "application/json"})

    def send_hl7(self, segments):
        ack = mllp_exchange(self.ports["zs-tertiary"], ("\r".join(segments) + "\r").encode("utf-8"))[0]
        self.assertEqual(msa(ack)[1], "AA", ack)

    def register(self, p):
        """The tertiary hospital's HIS registers the patient: MRN and resident ID."""
        self.send_hl7([
            "MSH|^~\\&|HIS|ZSRMYY|YILIAN|ZSYL|%s||ADT^A04^ADT_A01|%s|P|2.5" % (now_hl7(), ctl("ADT")),
            "EVN|A04|%s" % now_hl7(),
            "PID|1||%s^^^ZSRMYY^MR~%s^^^CHN^NNCHN||%s^^^^^^L||%s|%s" % (p["mrn"], p["resident"], p["name"], p["birth"],
                                                                       p["sex"]),
            "PV1|1|O|RAD^^^ZSRMYY"])

    def report(self, p, filler):
        """The tertiary RIS reports a head CT with its PDF, naming the patient by MRN only."""
        pdf = base64.b64encode(PDF).decode("ascii")
        self.send_hl7([
            "MSH|^~\\&|RIS|ZSRMYY|YILIAN|ZSYL|%s||ORU^R01^ORU_R01|%s|P|2.5" % (now_hl7(), ctl("ORU")),
            "PID|1||%s^^^ZSRMYY^MR||%s||%s|%s" % (p["mrn"], p["name"], p["birth"], p["sex"]),
            "ORC|RE|PL-%s|%s||CM" % (filler, filler),
            "OBR|1|PL-%s|%s|CT0101^头颅CT平扫^ZSRMYY-EXAM|||%s|||||||||||ACC-%s||||%s||CT|F" % (
                filler, filler, now_hl7(-3600), filler, now_hl7()),
            "OBX|1|TX|&IMP^诊断意见^IHE||头颅CT平扫未见明显异常。||||||F",
            "OBX|2|ED|PDF^报告单PDF^ZSRMYY-RPT||^AP^PDF^Base64^%s||||||F" % pdf])

    def wait_report(self, filler, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.call("GET", "/api/v1/reports/zs-tertiary/%s" % filler, TERTIARY)
            if r.status == 200:
                return r.json()
            time.sleep(0.05)
        raise AssertionError("report %s never reached the library" % filler)

    def session(self, value, token=GATEWAY, system=ZS_MRN):
        return self.call("POST", "/api/v1/patient-sessions", token,
                         {"identifier": {"system": system, "value": value}})

    def token_for(self, value, timeout=30):
        """A patient token, once the identity index has linked the registration."""
        deadline = time.monotonic() + timeout
        while True:
            r = self.session(value)
            if r.status == 201:
                return r.json()
            self.assertEqual(r.status, 404, r.body)
            if time.monotonic() > deadline:
                raise AssertionError("no patient session for the registered person")
            time.sleep(0.1)

    def audit_records(self):
        path = os.path.join(self.engine.data_dir, "audit", "audit.log")
        time.sleep(1.2)  # the audit log is written out at least once a second
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    # --- the test ---------------------------------------------------------------------------------
    def test_a_patient_reads_their_own_report_and_pdf_and_nobody_elses(self):
        self.register(WANG)
        self.register(LI)
        wang_filler = "RPT-W-%s" % uuid.uuid4().hex[:8]
        li_filler = "RPT-L-%s" % uuid.uuid4().hex[:8]
        self.report(WANG, wang_filler)
        self.report(LI, li_filler)
        self.wait_report(wang_filler)
        self.wait_report(li_filler)

        # The patient app (which has checked the person's SMS code) asks for a token by his
        # hospital number once the index has linked the registration...
        session = self.token_for(WANG["mrn"])
        self.assertEqual(session["token_type"], "Bearer")
        self.assertEqual(session["expires_in"], 900)
        patient = session["token"]
        yl = session["enterprise_id"]
        self.assertRegex(yl, r"^YL\d{9}$")
        # ... or by the resident ID it verified (a person-level identifier one person holds).
        by_rid = self.session(WANG["resident"], system=RESIDENT)
        self.assertEqual(by_rid.status, 201, by_rid.body)
        self.assertEqual(by_rid.json()["enterprise_id"], yl)
        # An identifier nobody holds: 404, and the value is not repeated.
        unknown = self.session(with_check_digit("11010119900101005"), system=RESIDENT)
        self.assertEqual(unknown.status, 404, unknown.body)
        self.assertNotIn("11010119900101005", unknown.body)
        # Hospitals and operators do not issue patient tokens; the gateway reads nothing itself.
        self.assertEqual(self.session(WANG["mrn"], token=TERTIARY).status, 403)
        self.assertEqual(self.session(WANG["mrn"], token=OPERATOR).status, 403)
        self.assertEqual(self.call("GET", "/api/v1/reports", GATEWAY).status, 403)

        # The patient's list holds his report only.
        listed = self.call("GET", "/api/v1/reports", patient)
        self.assertEqual(listed.status, 200, listed.body)
        ids = [r["report_id"] for r in listed.json()["reports"]]
        self.assertIn(wang_filler, ids)
        self.assertNotIn(li_filler, ids)

        # His report, and its PDF by claim-check, byte for byte.
        r = self.call("GET", "/api/v1/reports/zs-tertiary/%s" % wang_filler, patient)
        self.assertEqual(r.status, 200, r.body)
        doc = r.json()["versions"][0]["documents"][0]
        self.assertEqual(doc["content_type"], "application/pdf")
        pdf = self.engine.request("GET", doc["url"], token=patient)
        self.assertEqual(pdf.status, 200, pdf.body)
        self.assertEqual(pdf.headers.get("Content-Type"), "application/pdf")
        self.assertEqual(pdf.body.encode("utf-8"), PDF)

        # Li's report and its PDF do not exist for him.
        self.assertEqual(self.call("GET", "/api/v1/reports/zs-tertiary/%s" % li_filler, patient).status, 404)
        self.assertEqual(self.call("GET", "/api/v1/reports/zs-tertiary/%s/documents/1" % li_filler, patient).status,
                         404)
        # Writes and every other API: 403.
        self.assertEqual(self.call("POST", "/api/v1/referrals", patient,
                                   {"to_hospital": "zs-tertiary",
                                    "identifiers": [{"system": RESIDENT, "value": WANG["resident"]}]}).status, 403)
        self.assertEqual(self.call("GET", "/api/v1/patients/%s" % yl, patient).status, 403)
        self.assertEqual(self.call("GET", "/fhir/r4/Patient/%s" % yl, patient).status, 403)
        self.assertEqual(self.call("GET", "/api/v1/bookings", patient).status, 403)
        self.assertEqual(self.call("GET", "/api/v1/referrals", patient).status, 200)
        # A token with one character changed is not a token.
        tampered = patient[:-3] + ("A" if patient[-3] != "A" else "B") + patient[-2:]
        self.assertEqual(self.call("GET", "/api/v1/reports", tampered).status, 401)

        # Li's own token sees Li's report, not his.
        li = self.token_for(LI["mrn"])["token"]
        self.assertEqual(self.call("GET", "/api/v1/reports/zs-tertiary/%s" % li_filler, li).status, 200)
        self.assertEqual(self.call("GET", "/api/v1/reports/zs-tertiary/%s" % wang_filler, li).status, 404)

        # Audited: the patient by enterprise id, through the gateway; ids only.
        records = self.audit_records()
        mine = [x for x in records if x.get("principal") == yl]
        self.assertTrue(any(x["action"] == "read" and x["resource"] == "Binary" and x["outcome"] == "ok"
                            for x in mine), mine)
        self.assertTrue(any(x["resource"] == "DiagnosticReport" and x["outcome"] == "not_found"
                            and "zs-tertiary/%s" % li_filler in x["ids"] for x in mine), mine)
        self.assertTrue(all(x["role"] == "patient" and x.get("via") == "patient-app" for x in mine), mine)
        self.assertTrue(any(x.get("principal") == "patient-app" and x["resource"] == "PatientSession"
                            and x["ids"] == [yl] for x in records))
        with open(os.path.join(self.engine.data_dir, "audit", "audit.log"), encoding="utf-8") as f:
            text = f.read()
        for secret in (WANG["resident"], LI["resident"], "王", patient):
            self.assertNotIn(secret, text)
        # Logs carry no token and no resident ID either.
        logged = "".join(self.engine.lines)
        self.assertNotIn(patient, logged)
        self.assertNotIn(WANG["resident"], logged)


class PatientAccessWithoutKey(unittest.TestCase):
    def test_the_engine_starts_without_the_key_and_patient_sessions_say_why(self):
        config = consortium_copy({})
        self.addCleanup(shutil.rmtree, config, True)
        engine = start_engine(config, None)
        self.addCleanup(engine.close)
        engine.wait_ready(30)
        r = engine.request("POST", "/api/v1/patient-sessions", token=GATEWAY,
                           body=json.dumps({"identifier": {"system": RESIDENT, "value": WANG["resident"]}}),
                           headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 503, r.body)
        self.assertIn(KEY_ENV, r.json()["detail"])
        self.assertEqual(engine.request("GET", "/api/v1/reports", token=TERTIARY).status, 200)
        engine.request("POST", "/api/v1/patient-sessions", token=GATEWAY, body="{}",
                       headers={"Content-Type": "application/json"})
        said = [e for e in engine.log_entries() if e.get("msg") == "patient sessions unavailable"]
        self.assertEqual(len(said), 1, said)
        self.assertIn(KEY_ENV, said[0]["reason"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
