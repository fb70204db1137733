"""Independent HL7 v2 clients against the real engine, on the embedded log and
on a real Kafka broker: python-hl7's mllp_send (its own process and socket
code) and HAPI's MLLP initiator (tests/peers/hapi, Java). Both must get the
right ACK and the events must be on the bus.

The Kafka half needs YILIAN_KAFKA_BROKERS (./tools/test starts the broker);
it fails, never skips, without it."""
import json
import os
import subprocess
import tempfile
import unittest
import uuid

from engine import SRC, Engine
from hl7tools import adt_a04, events, mllp_ports, mllp_send

BROKERS = os.environ.get("YILIAN_KAFKA_BROKERS", "")
FIXTURES = os.path.join(SRC, "deploy", "examples", "consortium", "profiles", "zs-tertiary", "fixtures")


def hapi_jar():
    out = subprocess.run([os.path.join(SRC, "tests", "peers", "hapi", "build")], capture_output=True, text=True,
                         timeout=900)
    if out.returncode != 0:
        raise AssertionError("cannot build the HAPI peer: %s" % out.stderr)
    return out.stdout.strip()


def hapi_send(port, files):
    out = subprocess.run(["java", "-jar", hapi_jar(), "send", "--host", "127.0.0.1", "--port", str(port), *files],
                         capture_output=True, text=True, timeout=300)
    return out.returncode, [json.loads(l) for l in out.stdout.splitlines() if l.strip()], out.stderr


class Clients:
    """Shared cases; subclasses say which bus."""
    extra = []

    @classmethod
    def setUpClass(cls):
        cls.engine = Engine(extra_args=["--mllp-any-port", *cls.extra])
        cls.port = mllp_ports(cls.engine, ["zs-tertiary"])["zs-tertiary"]
        cls.run_id = uuid.uuid4().hex[:10]

    @classmethod
    def tearDownClass(cls):
        cls.engine.close()

    def topic(self, name):
        return events(self.engine.data_dir, name, extra=(["--kafka-brokers", BROKERS] if BROKERS and self.extra else []))

    def test_hapi_gets_AA_for_the_profile_fixtures_and_AE_for_the_bad_ones(self):
        good = sorted(os.path.join(FIXTURES, f) for f in os.listdir(FIXTURES)
                      if f.endswith(".hl7") and not f.startswith("9"))
        # Unique control ids per run so the shared Kafka topics do not dedupe across runs.
        tmp = tempfile.mkdtemp(prefix="yilian-hapi-")
        files = []
        for path in good:
            with open(path, "rb") as f:
                data = f.read()
            msh = data.split(b"\r", 1)[0].split(b"|")
            cid = msh[9]
            data = data.replace(b"|" + cid + b"|", b"|" + cid + b"-" + self.run_id.encode() + b"|", 1)
            dst = os.path.join(tmp, os.path.basename(path))
            with open(dst, "wb") as f:
                f.write(data)
            files.append(dst)
        code, acks, err = hapi_send(self.port, files)
        self.assertEqual(code, 0, err + "\n" + "\n".join(map(str, acks)))
        self.assertEqual(len(acks), len(files))
        for a in acks:
            self.assertEqual(a["msa1"], "AA", a)
            self.assertEqual(a["msa2"], a["control_id"], a)
            self.assertTrue(a["ack_msh9"].startswith("ACK^"), a)
        seen = {e["envelope"]["source"].get("controlId") for t in ("yilian.patient.v1", "yilian.booking.v1",
                                                                  "yilian.report.v1", "yilian.referral.v1")
                for e in self.topic(t)}
        for a in acks:
            self.assertIn(a["control_id"], seen)

    def test_mllp_send_gets_AA_and_the_event_is_on_the_bus(self):
        cid = "CL-" + self.run_id
        out = mllp_send(self.port, adt_a04(cid))
        self.assertIn(b"MSA|AA|" + cid.encode(), out)
        got = [e for e in self.topic("yilian.patient.v1") if e["envelope"]["source"].get("controlId") == cid]
        self.assertTrue(any(e["envelope"]["type"].endswith("PatientRegistered") for e in got))


class ClientsOnEmbeddedLog(Clients, unittest.TestCase):
    extra = []


class ClientsOnKafka(Clients, unittest.TestCase):
    extra = ["--kafka-brokers", BROKERS]

    @classmethod
    def setUpClass(cls):
        if not BROKERS:
            raise AssertionError("YILIAN_KAFKA_BROKERS is not set: start a broker (./tools/test does)")
        super().setUpClass()


if __name__ == "__main__":
    unittest.main()
