"""HL7 v2 over MLLP end to end on the embedded bus: real clients (python-hl7's
mllp_send in its own process, and a plain socket client), real engine, events
read back with `yilian events tail`."""
import unittest

from engine import Engine
from hl7tools import adt_a04, events, mllp_exchange, mllp_ports, mllp_send, msa, segments

PATIENT = "yilian.patient.v1"
DEADLETTER = "yilian.deadletter.v1"


class Hl7v2MllpTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.engine = Engine(extra_args=["--mllp-any-port"])
        cls.ports = mllp_ports(cls.engine, ["zs-tertiary", "dc-chc"])

    @classmethod
    def tearDownClass(cls):
        cls.engine.close()

    def patient_events(self, control_id):
        return [e for e in events(self.engine.data_dir, PATIENT)
                if e["envelope"]["source"].get("controlId") == control_id]

    def test_mllp_send_gets_AA_after_the_events_are_on_the_bus(self):
        out = mllp_send(self.ports["zs-tertiary"], adt_a04("E2E-0001"))
        self.assertIn(b"MSA|AA|E2E-0001", out)
        self.assertIn(b"ACK^A04^ACK", out)
        got = self.patient_events("E2E-0001")
        types = sorted(e["envelope"]["type"] for e in got)
        self.assertIn("yilian.events.v1.PatientRegistered", types)
        env = next(e["envelope"] for e in got if e["envelope"]["type"].endswith("PatientRegistered"))
        self.assertEqual(env["source"]["hospital"], "zs-tertiary")
        self.assertTrue(env["rawRef"]["uri"].startswith("raw://zs-tertiary/"))
        systems = {i["system"] for i in env["subject"]["identifiers"]}
        self.assertIn("urn:yilian:id:zs-tertiary:mrn", systems)
        self.assertIn("urn:yilian:id:cn:resident", systems)

    def test_the_ack_header_swaps_sender_and_receiver_and_echoes_the_control_id(self):
        [ack] = mllp_exchange(self.ports["zs-tertiary"], adt_a04("E2E-0002"))
        msh = segments(ack)[0]
        self.assertEqual(msh[2], "YILIAN")   # MSH-3 = original MSH-5
        self.assertEqual(msh[3], "ZSYL")     # MSH-4 = original MSH-6
        self.assertEqual(msh[4], "HIS")      # MSH-5 = original MSH-3
        self.assertEqual(msh[5], "ZSRMYY")   # MSH-6 = original MSH-4
        self.assertEqual(msh[8], "ACK^A04^ACK")
        self.assertNotEqual(msh[9], "E2E-0002")
        self.assertEqual(msh[11], "2.5")
        self.assertEqual(msa(ack)[1:3], ["AA", "E2E-0002"])

    def test_a_resent_message_is_acked_again_without_a_second_event(self):
        msg = adt_a04("E2E-0003")
        [first] = mllp_exchange(self.ports["zs-tertiary"], msg)
        [second] = mllp_exchange(self.ports["zs-tertiary"], msg)
        self.assertEqual(msa(first)[1], "AA")
        self.assertEqual(msa(second)[1], "AA")
        got = self.patient_events("E2E-0003")
        ids = [e["envelope"]["eventId"] for e in got]
        self.assertEqual(len(ids), len(set(ids)))
        self.assertGreaterEqual(len(ids), 1)

    def test_the_same_control_id_with_other_content_is_an_error_and_kept(self):
        [first] = mllp_exchange(self.ports["zs-tertiary"], adt_a04("E2E-0004", mrn="200001"))
        [second] = mllp_exchange(self.ports["zs-tertiary"], adt_a04("E2E-0004", mrn="200002"))
        self.assertEqual(msa(first)[1], "AA")
        self.assertEqual(msa(second)[1], "AE")
        err = [s for s in segments(second) if s[0] == "ERR"]
        self.assertTrue(err, second)
        self.assertIn("205", "|".join(err[0]))
        dead = [e for e in events(self.engine.data_dir, DEADLETTER)
                if e["envelope"]["deadLetter"].get("controlId") == "E2E-0004"]
        self.assertEqual(len(dead), 1)
        self.assertEqual(dead[0]["envelope"]["deadLetter"]["errorCode"], "conflict")
        self.assertTrue(dead[0]["envelope"]["deadLetter"]["raw"]["uri"].startswith("raw://"))
        registered = [e for e in self.patient_events("E2E-0004")
                      if e["envelope"]["type"] == "yilian.events.v1.PatientRegistered"]
        self.assertEqual(len(registered), 1)
        self.assertEqual(registered[0]["envelope"]["subject"]["identifiers"][0]["value"], "200001")

    def test_a_facility_not_allowed_on_the_channel_is_rejected_and_dead_lettered(self):
        [ack] = mllp_exchange(self.ports["zs-tertiary"], adt_a04("E2E-0005", facility="QHXRMYY"))
        self.assertEqual(msa(ack)[1], "AR")
        dead = [e for e in events(self.engine.data_dir, DEADLETTER)
                if e["envelope"]["deadLetter"].get("controlId") == "E2E-0005"]
        self.assertEqual(len(dead), 1)
        self.assertEqual(dead[0]["envelope"]["deadLetter"]["where"], "MSH-4")
        self.assertEqual(self.patient_events("E2E-0005"), [])

    def test_a_message_that_does_not_parse_gets_AE_naming_the_place(self):
        bad = b"MSH|^~\\&|HIS|ZSRMYY|YILIAN|ZSYL|20260105||ADT^A04|E2E-0006|P|2.5\rP!D|1\r"
        [ack] = mllp_exchange(self.ports["zs-tertiary"], bad)
        self.assertEqual(msa(ack)[1:3], ["AE", "E2E-0006"])
        dead = [e for e in events(self.engine.data_dir, DEADLETTER)
                if e["envelope"]["deadLetter"].get("controlId") == "E2E-0006"]
        self.assertEqual(len(dead), 1)
        self.assertEqual(dead[0]["envelope"]["deadLetter"]["stage"], "hl7v2.parse")

    def test_a_gbk_clinic_in_enhanced_mode_gets_a_commit_ack_in_its_charset(self):
        name = "张亅乗"  # GBK trail bytes 0x7C and 0x5C
        msg = ("MSH|^~\\&|HIS|DCSQ|YILIAN|ZSYL|20260105093000||ADT^A04^ADT_A01|E2E-0007|P|2.5\r"
               "EVN|A04|20260105093000\r"
               "PID|1||D0007^^^DCSQ^MR||%s^^^^^^I||19800101|M\r" % name).encode("gbk")
        [commit] = mllp_exchange(self.ports["dc-chc"], msg)
        self.assertEqual(msa(commit, "gbk")[1:3], ["CA", "E2E-0007"])
        got = self.patient_events("E2E-0007")
        self.assertTrue(got)
        env = next(e["envelope"] for e in got if e["envelope"]["type"].endswith("PatientRegistered"))
        self.assertEqual(env["patientRegistered"]["demographics"]["name"]["hanzi"], name)

    def test_metrics_count_messages_by_ack_code(self):
        mllp_exchange(self.ports["zs-tertiary"], adt_a04("E2E-0008"))
        body = self.engine.request("GET", "/metrics").body
        self.assertIn('yilian_hl7v2_messages_total{hospital="zs-tertiary",type="ADT",ack="AA"}', body)
        self.assertIn("yilian_mllp_connections", body)


if __name__ == "__main__":
    unittest.main()
