"""End to end on a real Kafka broker: two `yilian serve` instances in one
consumer group share the booking topic's partitions. 200 clients, spread over
both instances, race for 50 slots: exactly 50 bookings, every other request is
told the slot is taken, no slot is booked twice — whichever instance took the
request and whichever owns the machine's partition.

Needs YILIAN_KAFKA_BROKERS (./tools/test starts the broker); fails, never skips,
without it.
"""
import concurrent.futures
import json
import os
import time
import unittest
import uuid

from engine import Engine

BROKERS = os.environ.get("YILIAN_KAFKA_BROKERS", "")
TERTIARY = "dev-zs-tertiary-his-token"


class BookingOnKafka(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not BROKERS:
            raise AssertionError("YILIAN_KAFKA_BROKERS is not set: start a broker (./tools/test does)")
        args = ["--kafka-brokers", BROKERS, "--mllp-any-port"]
        cls.engines = [Engine(extra_args=args), Engine(extra_args=args)]
        for e in cls.engines:
            e.wait_ready(90)
        # Both writers hold partitions once the group has rebalanced.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            held = [max([x.get("partitions", 0) for x in e.log_entries()
                         if x.get("msg") == "workflow writer assignment" and x.get("workflow") == "booking"] or [0]) for e in cls.engines]
            if all(h > 0 for h in held):
                break
            time.sleep(0.2)

    @classmethod
    def tearDownClass(cls):
        for e in cls.engines:
            e.close()

    def call(self, engine, method, path, body=None, headers=None):
        # 200 requests at once on two instances sharing 2 cores with a broker:
        # the claim here is one booking per slot, not latency (the booking
        # benchmark measures that), so a request may queue for a while.
        return engine.request(method, path, body=json.dumps(body) if body is not None else None, token=TERTIARY,
                              headers={"Content-Type": "application/json", **(headers or {})}, timeout=90)

    def book(self, engine, body, key):
        # As a clinic system should: a 504 (no decision within the engine's
        # 10 s, e.g. while the group rebalances or the machine is starved by
        # other tests' brokers) is sent again with the same Idempotency-Key
        # until the decision comes; the resend never books a second slot.
        deadline = time.monotonic() + 120
        while True:
            r = self.call(engine, "POST", "/api/v1/bookings", body, {"Idempotency-Key": key})
            if r.status != 504 or time.monotonic() > deadline:
                return r
            time.sleep(0.2)

    def test_two_instances_200_clients_50_slots(self):
        held = [[x.get("partitions") for x in e.log_entries() if x.get("msg") == "workflow writer assignment" and x.get("workflow") == "booking"]
                for e in self.engines]
        self.assertTrue(all(h and h[-1] > 0 for h in held), "both instances must own booking partitions: %s" % held)
        r = self.call(self.engines[0], "GET", "/api/v1/slots?exam=MR-KNEE-PLAIN&limit=50&hospital=zs-tertiary")
        self.assertEqual(r.status, 200, r.body)
        slots = r.json()["slots"]
        self.assertEqual(len(slots), 50)
        run = uuid.uuid4().hex[:8]

        def one(i):
            slot = slots[i % 50]
            r = self.book(self.engines[i % 2], {
                "slot_id": slot["slot_id"],
                "identifiers": [{"system": "urn:yilian:id:zs-tertiary:mrn", "value": "K%s%04d" % (run, i)}]},
                "k-%s-%d" % (run, i))
            return slot["slot_id"], r.status, r.json()

        with concurrent.futures.ThreadPoolExecutor(max_workers=200) as pool:
            results = list(pool.map(one, range(200)))
        won = [s for s, status, _ in results if status == 201]
        lost = [(status, body) for _, status, body in results if status != 201]
        self.assertEqual(len(won), 50, lost[:5])
        self.assertEqual(len(set(won)), 50, "a slot was booked twice")
        self.assertTrue(all(status == 409 and body["code"] == "slot_taken" for status, body in lost), lost[:5])
        # Both instances' views agree on the outcome.
        for e in self.engines:
            deadline = time.monotonic() + 30
            mine = []
            while time.monotonic() < deadline:
                listed = self.call(e, "GET", "/api/v1/bookings?limit=1000").json()["bookings"]
                mine = [b for b in listed if b["identifiers"] and b["identifiers"][0]["value"].startswith("K" + run)]
                if len(mine) == 50:
                    break
                time.sleep(0.2)
            self.assertEqual(len(mine), 50)
            self.assertEqual(len({(b["equipment_id"], b["start"]) for b in mine}), 50)


if __name__ == "__main__":
    unittest.main(verbosity=2)
