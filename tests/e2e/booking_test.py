"""End to end: shared-equipment booking on the example consortium (issue 4).

The real `yilian serve` (embedded log), real HTTP clients, and hospital systems
played by real MLLP endpoints: the tertiary hospital's RIS receives SIU^S12 and
ACKs it, checks the patient in with ADT^A04 and reports the exam performed with
ORM^O01; the clinic sees every state through the REST API and hears SIU on its
own MLLP endpoint. Also: a clinic HIS booking by OMI^O23, 200 clients racing for
50 slots, who may see and change which booking, bad requests, the audit log.
"""
import concurrent.futures
import datetime
import json
import os
import shutil
import time
import unittest
import uuid

from engine import Engine, OPERATOR, consortium_copy
from hl7tools import MllpServer, field, mllp_exchange, mllp_ports, msa, with_check_digit

CLINIC = "dev-xz-thc-user-token"          # 西镇卫生院, a primary clinic
OTHER_CLINIC = "dev-dc-chc-user-token"    # 东城社区, another clinic
TERTIARY = "dev-zs-tertiary-his-token"    # 中山市人民医院's HIS/RIS


def resident_id(seq):
    """A valid 18-digit resident ID (GB 11643 check digit) for a synthetic person."""
    return with_check_digit("110101198001%02d%03d" % (1 + seq % 28, 100 + seq % 800))


class Booking(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ris = MllpServer()      # zs-tertiary's his-mllp endpoint
        cls.clinic = MllpServer()   # xz-thc's clinic-mllp endpoint
        cls.county = MllpServer()   # qh-county's his-mllp endpoint
        cls.config = consortium_copy({"127.0.0.1:6661": "127.0.0.1:%d" % cls.ris.port,
                                      "127.0.0.1:6663": "127.0.0.1:%d" % cls.clinic.port,
                                      "127.0.0.1:6662": "127.0.0.1:%d" % cls.county.port})
        cls.engine = Engine(config=os.path.join(cls.config, "consortium.yaml"), extra_args=["--mllp-any-port"])
        cls.ports = mllp_ports(cls.engine, ["zs-tertiary", "xz-thc"])
        cls.engine.wait_ready(30)

    @classmethod
    def tearDownClass(cls):
        cls.engine.close()
        for s in (cls.ris, cls.clinic, cls.county):
            s.close()
        shutil.rmtree(cls.config, ignore_errors=True)

    # --- helpers -----------------------------------------------------------------------------------
    def call(self, method, path, token, body=None, key=None):
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Idempotency-Key"] = key
        return self.engine.request(method, path, body=json.dumps(body) if body is not None else None,
                                   token=token, headers=headers)

    def slots(self, token, exam="CT-HEAD-PLAIN", limit=20, **query):
        q = "&".join("%s=%s" % kv for kv in {"exam": exam, "limit": limit, **query}.items())
        r = self.call("GET", "/api/v1/slots?" + q, token)
        self.assertEqual(r.status, 200, r.body)
        return r.json()["slots"]

    def book(self, token, slot, seq, key=None):
        return self.call("POST", "/api/v1/bookings", token, {
            "slot_id": slot["slot_id"],
            "patient": {"name": {"hanzi": "测试%d" % seq, "pinyin": "CE SHI"}, "birth_date": "1980-01-01",
                        "sex": "SEX_FEMALE"},
            "identifiers": [{"system": "urn:yilian:id:xz-thc:mrn", "value": "XZ%06d" % seq},
                            {"system": "urn:yilian:id:cn:resident", "value": resident_id(seq)}]}, key=key)

    def wait_state(self, booking_id, token, state, timeout=30):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            r = self.call("GET", "/api/v1/bookings/" + booking_id, token)
            last = r.json() if r.status == 200 else r.body
            if r.status == 200 and last["state"] == state:
                return last
            time.sleep(0.05)
        raise AssertionError("booking %s never reached %s; last: %s" % (booking_id, state, last))

    def send_hl7(self, hospital, segments):
        payload = ("\r".join(segments) + "\r").encode("utf-8")
        ack = mllp_exchange(self.ports[hospital], payload)[0]
        self.assertEqual(msa(ack)[1], "AA", ack)

    # --- the closed loop over REST + HL7 v2 ----------------------------------------------------------
    def test_clinic_books_ct_and_follows_it_through_the_tertiary_ris(self):
        slot = self.slots(CLINIC, hospital="zs-tertiary", modality="CT")[0]
        self.assertEqual(slot["equipment_id"], "zs-ct-1")
        r = self.book(CLINIC, slot, 1)
        self.assertEqual(r.status, 201, r.body)
        b = r.json()
        self.assertEqual((b["state"], b["owner"], b["requesting_hospital"]), ("BOOKED", "zs-tertiary", "xz-thc"))
        bid = b["id"]

        # The tertiary hospital's RIS hears SIU^S12 (and ACKs it); so does the clinic's system.
        s12 = self.ris.wait_for(lambda m: field(m, "SCH", 1).startswith(bid) and "SIU^S12" in m)
        self.assertEqual(field(s12, "SCH", 25).split("^")[0], "Booked")
        self.assertIn("测试1", field(s12, "PID", 5))
        self.assertIn("CT-HEAD-PLAIN", field(s12, "AIS", 3))
        self.clinic.wait_for(lambda m: field(m, "SCH", 1).startswith(bid) and "SIU^S12" in m)

        # The patient arrives: the tertiary HIS registers the visit (ADT^A04, resident ID in PID-3).
        rid = resident_id(1)
        self.send_hl7("zs-tertiary", [
            "MSH|^~\\&|HIS|ZSRMYY|YILIAN|ZSYL|20260105093000+0800||ADT^A04^ADT_A01|A04-%s|P|2.5" % uuid.uuid4().hex[:12],
            "EVN|A04|20260105093000+0800",
            "PID|1||ZS777001^^^ZSRMYY^MR~%s^^^CHN^NNCHN||CE^SHI^^^^^L||19800101|F" % rid,
            "PV1|1|O|RAD^^^ZSRMYY"])
        self.wait_state(bid, CLINIC, "CHECKED_IN")
        self.clinic.wait_for(lambda m: field(m, "SCH", 1).startswith(bid) and field(m, "SCH", 25).startswith("Started"))

        # The exam is done: the RIS reports the order completed (ORC-2 = the order number yilian sent).
        placer = field(s12, "SCH", 26).split("^")[0]
        self.assertEqual(placer, bid)
        self.send_hl7("zs-tertiary", [
            "MSH|^~\\&|RIS|ZSRMYY|YILIAN|ZSYL|20260105100000+0800||ORM^O01^ORM_O01|ORM-%s|P|2.5" % uuid.uuid4().hex[:12],
            "PID|1||ZS777001^^^ZSRMYY^MR",
            "ORC|SC|%s|RIS-88001||CM||||20260105100000+0800" % placer,
            "OBR|1|%s|RIS-88001|CT0101^头颅CT平扫^ZSRMYY-EXAM" % placer])
        done = self.wait_state(bid, CLINIC, "PERFORMED")
        self.assertEqual([h["state"] for h in done["history"]], ["BOOKED", "CHECKED_IN", "PERFORMED"])
        self.clinic.wait_for(lambda m: field(m, "SCH", 1).startswith(bid) and field(m, "SCH", 25).startswith("Complete"))

        # The operators' capacity picture counts it.
        today = datetime.date.today()
        r = self.call("GET", "/api/v1/equipment/utilization?from=%s&to=%s&modality=CT" % (
            today - datetime.timedelta(days=2), today + datetime.timedelta(days=60)), OPERATOR)
        self.assertEqual(r.status, 200, r.body)
        ct = {row["equipment_id"]: row for row in r.json()["equipment"]}["zs-ct-1"]
        self.assertGreaterEqual(ct["used"], 1)
        self.assertGreater(ct["offered_minutes"], 0)
        self.assertGreaterEqual(ct["booked_minutes"], 15)
        self.assertIn("zs-tertiary", [h["hospital"] for h in r.json()["by_hospital"]])
        self.assertEqual(self.call("GET", "/api/v1/equipment/utilization", CLINIC).status, 403)
        metrics = self.engine.request("GET", "/metrics").body
        self.assertRegex(metrics, r'yilian_equipment_offered_minutes\{equipment="zs-ct-1"\} [1-9]')

    def test_clinic_his_books_by_sending_omi_o23(self):
        order = "XZ-ORD-%s" % uuid.uuid4().hex[:8]
        self.send_hl7("xz-thc", [
            "MSH|^~\\&|HIS|XZWSY|YILIAN|YLT|20260105090000+0800||OMI^O23^OMI_O23|OMI-%s|P|2.5" % uuid.uuid4().hex[:12],
            "PID|1||XZ900001^^^XZWSY^MR||WANG^WU||19700101|M",
            "ORC|NW|%s|||||||20260105090000+0800" % order,
            "TQ1|1",
            "OBR|1|%s||CT-TL^TOULU CT^XZWSY-JC" % order,
            "IPC|ACC-%s|RP1|1.2.3.%d|SPS1|CT" % (order, int(time.time()))])
        deadline = time.monotonic() + 30
        mine = []
        while time.monotonic() < deadline and not mine:
            r = self.call("GET", "/api/v1/bookings", CLINIC)
            mine = [b for b in r.json()["bookings"] if b["placer_order"] == order]
            time.sleep(0.1)
        self.assertTrue(mine, "the OMI^O23 never became a booking")
        b = mine[0]
        self.assertEqual((b["state"], b["exam_code"]), ("BOOKED", "CT-HEAD-PLAIN"))
        s12 = self.clinic.wait_for(lambda m: field(m, "SCH", 1).startswith(b["id"]))
        self.assertEqual(field(s12, "SCH", 26).split("^")[0], order)

    # --- the same loop through the FHIR facade -----------------------------------------------------
    def fhir(self, method, path, token, body=None):
        return self.engine.request(method, "/fhir/r4/" + path, body=json.dumps(body) if body is not None else None,
                                   token=token, headers={"Content-Type": "application/fhir+json"})

    def test_the_same_loop_through_fhir_appointment(self):
        r = self.fhir("GET", "Slot?schedule.actor=Device/zs-us-1&service-type=US-THYROID&status=free&_count=3", CLINIC)
        self.assertEqual(r.status, 200, r.body)
        slots = r.json()["entry"]
        self.assertEqual(r.json()["resourceType"], "Bundle")
        self.assertTrue(slots and all(e["resource"]["status"] == "free" for e in slots))
        slot = slots[0]["resource"]
        r = self.fhir("POST", "Appointment", CLINIC, {
            "resourceType": "Appointment", "status": "booked",
            "slot": [{"reference": "Slot/" + slot["id"]}],
            "participant": [{"actor": {"type": "Patient", "display": "赵六",
                                       "identifier": {"system": "urn:yilian:id:xz-thc:mrn", "value": "XZF001"}},
                             "status": "accepted"}]})
        self.assertEqual(r.status, 201, r.body)
        appt = r.json()
        self.assertEqual((appt["resourceType"], appt["status"], appt["start"]), ("Appointment", "booked", slot["start"]))
        aid = appt["id"]
        self.ris.wait_for(lambda m: field(m, "SCH", 1).startswith(aid) and "SIU^S12" in m)
        # Booked twice through FHIR: an OperationOutcome that says why.
        r = self.fhir("POST", "Appointment", OTHER_CLINIC, {
            "resourceType": "Appointment", "slot": [{"reference": "Slot/" + slot["id"]}]})
        self.assertEqual(r.status, 409, r.body)
        self.assertEqual(r.json()["resourceType"], "OperationOutcome")
        self.assertIn("taken", r.json()["issue"][0]["diagnostics"])
        # The owner's system moves it along with PUT; the clinic reads each state.
        for status in ("arrived", "fulfilled"):
            cur = self.fhir("GET", "Appointment/" + aid, TERTIARY).json()
            cur["status"] = status
            r = self.fhir("PUT", "Appointment/" + aid, TERTIARY, cur)
            self.assertEqual(r.status, 200, r.body)
            seen = self.fhir("GET", "Appointment/" + aid, CLINIC).json()
            self.assertEqual(seen["status"], {"arrived": "checked-in", "fulfilled": "fulfilled"}[status])
        self.assertEqual(self.fhir("GET", "Appointment/" + aid, OTHER_CLINIC).status, 404)
        stolen = self.fhir("GET", "Appointment/" + aid, CLINIC).json()
        stolen["status"] = "cancelled"
        r = self.fhir("PUT", "Appointment/" + aid, OTHER_CLINIC, stolen)
        self.assertEqual(r.status, 404, r.body)
        self.assertEqual(r.json()["resourceType"], "OperationOutcome")
        other = self.fhir("GET", "Appointment?status=fulfilled", OTHER_CLINIC).json()
        self.assertNotIn(aid, [e["resource"]["id"] for e in other.get("entry", [])])
        listed = self.fhir("GET", "Appointment?status=fulfilled", CLINIC).json()
        self.assertIn(aid, [e["resource"]["id"] for e in listed["entry"]])

    def test_fhir_find_hold_book(self):
        r = self.fhir("POST", "Appointment/$find", CLINIC, {
            "resourceType": "Parameters", "parameter": [{"name": "service-type", "valueCode": "CT-CHEST-PLAIN"},
                                                        {"name": "actor", "valueString": "Organization/qh-county"}]})
        self.assertEqual(r.status, 200, r.body)
        proposed = r.json()["entry"][0]["resource"]
        self.assertEqual(proposed["status"], "proposed")
        proposed["participant"].append({"actor": {"type": "Patient", "identifier": {
            "system": "urn:yilian:id:xz-thc:mrn", "value": "XZH001"}}, "status": "accepted"})
        r = self.fhir("POST", "Appointment/$hold", CLINIC, {
            "resourceType": "Parameters", "parameter": [{"name": "appointment", "resource": proposed}]})
        self.assertEqual(r.status, 201, r.body)
        held = r.json()
        self.assertEqual(held["status"], "pending")
        r = self.fhir("POST", "Appointment/$book", CLINIC, {
            "resourceType": "Parameters", "parameter": [{"name": "appointment", "resource": held}]})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual((r.json()["id"], r.json()["status"]), (held["id"], "booked"))

    # --- no double booking ---------------------------------------------------------------------------
    def test_200_clients_race_for_50_slots(self):
        # The owner books its own machine here, so the consortium share does not cap the day.
        slots = self.slots(TERTIARY, exam="MR-HEAD-PLAIN", limit=50, hospital="zs-tertiary")
        self.assertEqual(len(slots), 50)
        attempts = [(slots[i % 50], i) for i in range(200)]

        def one(arg):
            slot, i = arg
            r = self.call("POST", "/api/v1/bookings", TERTIARY, {
                "slot_id": slot["slot_id"],
                "identifiers": [{"system": "urn:yilian:id:zs-tertiary:mrn", "value": "RACE%05d" % i}]})
            return slot["slot_id"], r.status, r.json()

        with concurrent.futures.ThreadPoolExecutor(max_workers=200) as pool:
            results = list(pool.map(one, attempts))
        won = [(s, body) for s, status, body in results if status == 201]
        lost = [(s, status, body) for s, status, body in results if status != 201]
        self.assertEqual(len(won), 50, [b for _, _, b in lost if b.get("code") != "slot_taken"][:5])
        self.assertEqual(len({s for s, _ in won}), 50, "a slot was booked twice")
        self.assertEqual(len(lost), 150)
        self.assertTrue(all(status == 409 and body["code"] == "slot_taken" for _, status, body in lost),
                        [x for x in lost if x[2].get("code") != "slot_taken"][:3])
        # What the engine holds agrees.
        r = self.call("GET", "/api/v1/bookings?limit=1000", TERTIARY)
        booked = [b for b in r.json()["bookings"] if b["identifiers"] and
                  b["identifiers"][0]["value"].startswith("RACE")]
        self.assertEqual(len(booked), 50)
        self.assertEqual(len({(b["equipment_id"], b["start"]) for b in booked}), 50)

    def test_a_retry_with_the_same_idempotency_key_books_once(self):
        slot = self.slots(CLINIC, exam="US-ABD", hospital="qh-county")[0]
        key = uuid.uuid4().hex
        first = self.book(CLINIC, slot, 7, key=key)
        again = self.book(CLINIC, slot, 7, key=key)
        self.assertEqual(first.status, 201, first.body)
        self.assertEqual(again.status, 201, again.body)
        self.assertEqual(first.json()["id"], again.json()["id"])

    # --- who may see and change what ------------------------------------------------------------------
    def test_a_clinic_cannot_see_or_change_another_clinics_booking(self):
        slot = self.slots(CLINIC, exam="CT-CHEST-PLAIN")[0]
        r = self.book(CLINIC, slot, 3)
        self.assertEqual(r.status, 201, r.body)
        bid = r.json()["id"]
        self.assertEqual(self.call("GET", "/api/v1/bookings/" + bid, OTHER_CLINIC).status, 404)
        for action in ("cancel", "reschedule", "check-in", "no-show"):
            r = self.call("POST", "/api/v1/bookings/%s/%s" % (bid, action), OTHER_CLINIC, {})
            self.assertEqual(r.status, 404, (action, r.body))
        listed = self.call("GET", "/api/v1/bookings", OTHER_CLINIC).json()["bookings"]
        self.assertNotIn(bid, [b["id"] for b in listed])
        self.assertEqual(self.call("GET", "/api/v1/bookings?hospital=xz-thc", OTHER_CLINIC).status, 403)
        # Only the owner (or an operator) may close a machine's time.
        r = self.call("POST", "/api/v1/equipment/%s/block" % slot["equipment_id"], OTHER_CLINIC,
                      {"start": slot["start"], "end": slot["end"], "reason": "x"})
        self.assertEqual((r.status, r.json()["code"]), (403, "not_allowed"), r.body)
        # The booking clinic may not check its own patient in at the tertiary hospital.
        r = self.call("POST", "/api/v1/bookings/%s/check-in" % bid, CLINIC, {})
        self.assertEqual((r.status, r.json()["code"]), (403, "not_allowed"), r.body)
        # The operator sees it; the owner too.
        self.assertEqual(self.call("GET", "/api/v1/bookings/" + bid, OPERATOR).status, 200)
        owner = "dev-%s-his-token" % r.json().get("owner", slot["hospital"]) if False else \
            {"zs-tertiary": TERTIARY, "qh-county": "dev-qh-county-his-token"}[slot["hospital"]]
        self.assertEqual(self.call("GET", "/api/v1/bookings/" + bid, owner).status, 200)
        # Every read was audited, with ids and no patient data.
        audit_path = os.path.join(self.engine.data_dir, "audit", "audit.log")
        deadline = time.monotonic() + 5
        lines = []
        while time.monotonic() < deadline:
            with open(audit_path, encoding="utf-8") as f:
                lines = [json.loads(l) for l in f if bid in l]
            if any(l["principal"] == "operator" and l["action"] == "read" for l in lines):
                break
            time.sleep(0.1)
        readers = {(l["principal"], l["outcome"]) for l in lines if l["action"] == "read"}
        self.assertIn(("dc-chc-user", "not_found"), readers)
        self.assertIn(("operator", "ok"), readers)
        with open(audit_path, encoding="utf-8") as f:
            text = f.read()
        self.assertNotIn("测试3", text)
        self.assertNotIn(resident_id(3), text)

    def test_the_owner_closing_booked_time_flags_a_conflict_and_never_cancels(self):
        county = "dev-qh-county-his-token"
        slot = self.slots(CLINIC, exam="US-THYROID", hospital="qh-county")[0]
        r = self.book(CLINIC, slot, 9)
        self.assertEqual(r.status, 201, r.body)
        bid = r.json()["id"]
        r = self.call("POST", "/api/v1/equipment/%s/block" % slot["equipment_id"], county,
                      {"start": slot["start"], "end": slot["end"], "reason": "设备检修", "id": "maint-1"})
        self.assertEqual(r.status, 201, r.body)
        self.assertEqual(r.json()["conflicting_bookings"], [bid])
        b = self.call("GET", "/api/v1/bookings/" + bid, CLINIC).json()
        self.assertEqual(b["state"], "BOOKED")
        self.assertIn("设备检修", b["conflict"])
        # The closed slot is no longer offered; reopening clears the conflict.
        offered = [x["slot_id"] for x in self.slots(OTHER_CLINIC, exam="US-THYROID", hospital="qh-county", limit=200)]
        self.assertNotIn(slot["slot_id"], offered)
        # Reopened the FHIR way (a free Slot from the owner).
        r = self.fhir("POST", "Slot", county, {"resourceType": "Slot", "status": "free",
                                                "schedule": {"reference": "Schedule/" + slot["equipment_id"]},
                                                "start": slot["start"], "end": slot["end"]})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(self.call("GET", "/api/v1/bookings/" + bid, CLINIC).json()["conflict"], "")

    # --- bad requests get a reason, nothing is half-booked ---------------------------------------------
    def test_bad_requests_say_why(self):
        r = self.call("POST", "/api/v1/bookings", CLINIC, {"equipment_id": "no-such-ct", "exam_code": "CT-HEAD-PLAIN",
                                                          "start": "2030-01-07T09:00:00+08:00"})
        self.assertEqual((r.status, r.json()["code"]), (404, "unknown_equipment"), r.body)
        r = self.call("POST", "/api/v1/bookings", CLINIC, {"equipment_id": "zs-ct-1", "exam_code": "CT-HEAD-PLAIN",
                                                          "start": "2020-01-06T09:00:00+08:00"})
        self.assertEqual((r.status, r.json()["code"]), (422, "slot_in_past"), r.body)
        r = self.call("POST", "/api/v1/bookings", CLINIC, {"equipment_id": "zs-ct-1", "exam_code": "CT-HEAD-PLAIN",
                                                          "start": "2030-01-06T03:00:00+08:00"})
        self.assertEqual((r.status, r.json()["code"]), (422, "outside_schedule"), r.body)
        r = self.call("POST", "/api/v1/bookings", CLINIC, {"equipment_id": "zs-ct-1", "exam_code": "MR-HEAD-PLAIN",
                                                          "start": "2030-01-07T09:00:00+08:00"})
        self.assertEqual((r.status, r.json()["code"]), (422, "unknown_exam"), r.body)
        r = self.engine.request("POST", "/api/v1/bookings", body="{not json", token=CLINIC)
        self.assertEqual(r.status, 400, r.body)
        slot = self.slots(CLINIC, exam="US-THYROID")[0]
        r = self.book(CLINIC, slot, 5)
        self.assertEqual(r.status, 201, r.body)
        bid = r.json()["id"]
        self.assertEqual(self.call("POST", "/api/v1/bookings/%s/cancel" % bid, CLINIC, {"reason": "patient ill"}).status,
                         200)
        r = self.call("POST", "/api/v1/bookings/%s/cancel" % bid, CLINIC, {})
        self.assertEqual((r.status, r.json()["code"]), (409, "wrong_transition"), r.body)
        self.assertIn("CANCELLED", r.json()["detail"])
        # The cancelled slot is free again.
        again = self.book(OTHER_CLINIC, slot, 6)
        self.assertEqual(again.status, 201, again.body)


if __name__ == "__main__":
    unittest.main(verbosity=2)
