"""End to end: the yilian binary serving the example consortium on a real Kafka broker.

Needs YILIAN_KAFKA_BROKERS (./tools/test starts the broker and sets it); fails,
never skips, without it.
"""
import json
import os
import time
import unittest
import uuid

from engine import EXAMPLE, OPERATOR, Engine, run_cli

BROKERS = os.environ.get("YILIAN_KAFKA_BROKERS", "")


class ServeOnKafka(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not BROKERS:
            raise AssertionError("YILIAN_KAFKA_BROKERS is not set: start a broker (./tools/test does)")
        cls.engine = Engine(extra_args=["--kafka-brokers", BROKERS])

    @classmethod
    def tearDownClass(cls):
        cls.engine.close()

    def test_ready_on_kafka_and_a_published_event_round_trips(self):
        # Ready once the bus answers and the booking view has read its topic
        # (joining the consumer group takes a few seconds on Kafka).
        r = self.engine.wait_ready(60)
        self.assertEqual(r.status, 200, r.body)
        self.assertTrue(any(e.get("msg") == "bus open" and e.get("kind") == "kafka" for e in self.engine.log_entries()))

        event_id = "kafka-e2e-" + uuid.uuid4().hex
        key = "patient-" + uuid.uuid4().hex
        envelope = {"eventId": event_id, "type": "yilian.events.v1.PatientRegistered",
                    "source": {"hospital": "zs-tertiary"}, "patientRegistered": {}}
        r = self.engine.request("POST", "/api/v1/events?topic=yilian.patient.v1&key=" + key,
                                body=json.dumps(envelope), token=OPERATOR)
        self.assertEqual(r.status, 201, r.body)
        self.assertGreaterEqual(r.json()["offset"], 0)

        deadline = time.monotonic() + 30
        seen = []
        while time.monotonic() < deadline:
            seen = self.engine.request("GET", "/api/v1/events?topic=yilian.patient.v1&limit=1000",
                                       token=OPERATOR).json()["events"]
            if any(e["event_id"] == event_id for e in seen):
                break
            time.sleep(0.2)
        self.assertTrue(any(e["event_id"] == event_id for e in seen), "console feed never saw the event")

        metrics = self.engine.request("GET", "/metrics").body
        self.assertRegex(metrics, r'yilian_bus_published_total\{topic="yilian.patient.v1"\} [1-9]')

        out = run_cli("events", "tail", "--config", EXAMPLE, "--kafka-brokers", BROKERS,
                      "--topic", "yilian.patient.v1", "--from-beginning", timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr[-2000:])
        mine = [json.loads(l) for l in out.stdout.splitlines() if event_id in l]
        self.assertEqual(len(mine), 1)
        self.assertEqual(mine[0]["key"], key)


if __name__ == "__main__":
    unittest.main(verbosity=2)
