"""The bus becomes unavailable under the MLLP listener: a real Kafka broker of
the test's own is stopped, the engine must answer AR (or withhold the ACK)
while it is down, accept again once it is back, and lose nothing: every
message that got AA is on the bus exactly once."""
import collections
import os
import shutil
import socket
import subprocess
import tempfile
import time
import unittest
import uuid

from engine import SRC, Engine
from hl7tools import CR, FS, VT, adt_a04, events, mllp_ports, msa, read_frames

KAFKA = os.path.join(SRC, "deploy", "kafka")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class BusDownTest(unittest.TestCase):
    def test_AR_while_the_broker_is_down_and_AA_again_after_nothing_lost(self):
        kdir = tempfile.mkdtemp(prefix="yilian-busdown-kafka-")
        port = free_port()
        brokers = "127.0.0.1:%d" % port
        subprocess.run([os.path.join(KAFKA, "start"), kdir, str(port)], check=True, capture_output=True, timeout=180)
        engine = None
        try:
            engine = Engine(extra_args=["--mllp-any-port", "--kafka-brokers", brokers])
            mllp = mllp_ports(engine, ["zs-tertiary"])["zs-tertiary"]
            run = uuid.uuid4().hex[:8]
            codes = collections.OrderedDict()

            def send(cid, timeout=90):
                try:
                    with socket.create_connection(("127.0.0.1", mllp), timeout=10) as s:
                        s.sendall(VT + adt_a04(cid) + FS + CR)
                        return msa(read_frames(s, 1, timeout)[0])[1]
                except (OSError, AssertionError):
                    return "none"

            for i in range(5):
                cid = "BD-%s-up-%d" % (run, i)
                codes[cid] = send(cid)
            self.assertEqual(set(codes.values()), {"AA"})

            subprocess.run([os.path.join(KAFKA, "stop"), kdir], check=True, capture_output=True, timeout=120)
            down = {}
            for i in range(3):
                cid = "BD-%s-down-%d" % (run, i)
                down[cid] = send(cid)
            self.assertTrue(all(c in ("AR", "none") for c in down.values()), down)

            subprocess.run([os.path.join(KAFKA, "start"), kdir, str(port)], check=True, capture_output=True,
                           timeout=180)
            # The senders resend what was not accepted; the engine accepts again.
            deadline = time.monotonic() + 180
            for cid in down:
                while True:
                    code = send(cid)
                    if code == "AA":
                        break
                    self.assertLess(time.monotonic(), deadline, "not accepted again after the broker came back")
                    time.sleep(1)
            for i in range(3):
                cid = "BD-%s-after-%d" % (run, i)
                self.assertEqual(send(cid), "AA")

            seen = collections.Counter(
                e["envelope"]["source"]["controlId"]
                for e in events(engine.data_dir, "yilian.patient.v1", extra=["--kafka-brokers", brokers])
                if e["envelope"]["type"] == "yilian.events.v1.PatientRegistered")
            expected = list(codes) + list(down) + ["BD-%s-after-%d" % (run, i) for i in range(3)]
            self.assertEqual({c: seen[c] for c in expected}, {c: 1 for c in expected})
        finally:
            try:
                if engine is not None:
                    engine.close()
            finally:
                # Even when the engine did not stop in time: never leave the broker running.
                subprocess.run([os.path.join(KAFKA, "stop"), kdir], capture_output=True, timeout=120)
                shutil.rmtree(kdir, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
