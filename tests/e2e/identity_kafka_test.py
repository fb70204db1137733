"""End to end on a real Kafka broker: two `yilian serve` instances share the
identity index. Registrations arrive at both instances (the tertiary hospital's
at one, 西镇's at the other); each instance folds the one-partition identity log
into its own index, so both answer the same enterprise id for every record, and
exactly one instance (the holder of the log's partition) announces each
decision — once.

Needs YILIAN_KAFKA_BROKERS (./tools/test starts the broker); fails, never skips,
without it.
"""
import collections
import os
import time
import unittest
import urllib.parse
import uuid

from engine import OPERATOR, Engine
from hl7tools import events, mllp_exchange, mllp_ports, msa, now_hl7, with_check_digit

BROKERS = os.environ.get("YILIAN_KAFKA_BROKERS", "")
ZS_MRN = "urn:yilian:id:zs-tertiary:mrn"
XZ_MRN = "urn:yilian:id:xz-thc:mrn"
PEOPLE = 12


resident_id = with_check_digit


class IdentityOnKafka(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not BROKERS:
            raise AssertionError("YILIAN_KAFKA_BROKERS is not set: start a broker (./tools/test does)")
        args = ["--kafka-brokers", BROKERS, "--mllp-any-port"]
        cls.engines = [Engine(extra_args=args), Engine(extra_args=args)]
        for e in cls.engines:  # also when setUpClass fails (tearDownClass would not run)
            cls.addClassCleanup(e.close)
        cls.ports = [mllp_ports(e, ["zs-tertiary", "xz-thc"]) for e in cls.engines]
        for e in cls.engines:
            e.wait_ready(90)

    def send(self, port, *segments):
        reply = mllp_exchange(port, ("\r".join(segments) + "\r").encode("utf-8"))[0]
        self.assertEqual(msa(reply)[1], "AA", reply)

    def enterprise_id(self, engine, system, value, timeout=60):
        q = urllib.parse.urlencode({"identifier": "%s|%s" % (system, value)})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = engine.request("GET", "/api/v1/patients?" + q, token=OPERATOR)
            if r.status == 200 and r.json()["patients"]:
                return r.json()["patients"][0]["enterprise_id"]
            time.sleep(0.2)
        raise AssertionError("%s|%s never reached the index of %s" % (system, value, engine.address))

    def test_both_instances_link_alike_and_one_announces_each_decision_once(self):
        run = uuid.uuid4().hex[:6].upper()
        seq = int(run, 16)
        people = []
        for i in range(PEOPLE):
            rid = resident_id("4420001970%02d%02d%03d" % (1 + i % 12, 1 + i % 28, (seq + i) % 900 + 100))
            zs, xz = "KZ%s%02d" % (run, i), "KX%s%02d" % (run, i)
            people.append((zs, xz))
            given = "测试" + "甲乙丙丁戊己庚辛壬癸子丑"[i]
            self.send(self.ports[0]["zs-tertiary"],
                      "MSH|^~\\&|HIS|ZSRMYY|YILIAN|ZSYL|%s||ADT^A04^ADT_A01|%s-Z%d|P|2.5|||||CHN|UNICODE UTF-8" % (now_hl7(), run, i),
                      "PID|1||%s^^^ZSRMYY^MR~%s^^^CHN^NNCHN||王^%s||%s|F" % (zs, rid, given, rid[6:14]))
            self.send(self.ports[1]["xz-thc"],
                      "MSH|^~\\&|CLINIC|XZWSY|YILIAN|ZSYL|%s||ADT^A04^ADT_A01|%s-X%d|P|2.5|||||CHN|UNICODE UTF-8" % (now_hl7(), run, i),
                      "PID|1||%s^^^XZWSY^MR~%s^^^^SFZ||王^%s||%s|F" % (xz, rid, given, rid[6:14]))
        for zs, xz in people:
            ids = {self.enterprise_id(e, system, value) for e in self.engines for system, value in ((ZS_MRN, zs), (XZ_MRN, xz))}
            self.assertEqual(len(ids), 1, "%s / %s: %s" % (zs, xz, ids))

        # Announcements: one ASSIGNED and one LINKED per person, no event id twice.
        mine = set(v for p in people for v in p)
        deadline = time.monotonic() + 60
        while True:
            found = []
            for e in events(self.engines[0].data_dir, "yilian.patient.v1", extra=["--kafka-brokers", BROKERS]):
                env = e["envelope"]
                if env.get("type") != "yilian.events.v1.PatientLinkChanged":
                    continue
                values = {i.get("value") for i in env["patientLinkChanged"].get("identifiers", [])}
                if values & mine:
                    found.append(env)
            linked = [x for x in found if x["patientLinkChanged"]["action"] == "LINK_ACTION_LINKED"]
            if len(linked) >= PEOPLE or time.monotonic() > deadline:
                break
            time.sleep(1)
        counts = collections.Counter(x["eventId"] for x in found)
        self.assertEqual([k for k, n in counts.items() if n > 1], [], "an announcement was published twice")
        actions = collections.Counter(x["patientLinkChanged"]["action"] for x in found)
        self.assertEqual(actions["LINK_ACTION_LINKED"], PEOPLE, actions)
        self.assertEqual(actions["LINK_ACTION_ASSIGNED"], PEOPLE, actions)
        # An instance holds the identity log's partition and announces. Its log
        # line may reach us after the announcements did (the engine writes its
        # log from a thread of its own): look for a while.
        deadline = time.monotonic() + 30
        writers = []
        while time.monotonic() < deadline:
            writers = [e for e in self.engines
                       if any(x.get("msg") == "identity writer assignment: announcing link decisions" for x in e.log_entries())]
            if writers:
                break
            time.sleep(0.2)
        self.assertGreaterEqual(len(writers), 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
