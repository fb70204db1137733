"""kill -9 in the middle of HL7 v2 streams from several senders.

Every message that got AA must be on the bus after the restart exactly once;
senders that got no ACK resend (same bytes) to the restarted engine and get AA
without creating duplicates. Senders are plain sockets (not yilian code)."""
import collections
import os
import shutil
import socket
import tempfile
import threading
import time
import unittest

from engine import Engine
from hl7tools import CR, FS, VT, adt_a04, events, mllp_ports, msa, read_frames

SENDERS = 4
PER_SENDER = int(os.environ.get("YILIAN_CRASH_MESSAGES", "250"))


class Sender(threading.Thread):
    def __init__(self, n, port_box):
        super().__init__(daemon=True)
        self.n, self.port_box = n, port_box
        self.acked, self.resent, self.errors = [], 0, []

    def run(self):
        sock = None
        for i in range(PER_SENDER):
            cid = "K%d-%04d" % (self.n, i)
            payload = adt_a04(cid, mrn="K%d%04d" % (self.n, i))
            attempts = 0
            while True:
                attempts += 1
                if attempts > 200:
                    self.errors.append("gave up on %s" % cid)
                    return
                try:
                    if sock is None:
                        sock = socket.create_connection(("127.0.0.1", self.port_box["port"]), timeout=5)
                    sock.sendall(VT + payload + FS + CR)
                    [ack] = read_frames(sock, 1, 10)
                    code = msa(ack)[1]
                    if code == "AA":
                        self.acked.append(cid)
                        break
                    if code != "AR":
                        self.errors.append("%s: %s" % (cid, code))
                        return
                except (OSError, AssertionError):
                    if sock is not None:
                        sock.close()
                    sock = None
                    self.resent += 1
                    time.sleep(0.2)
        if sock is not None:
            sock.close()


class Hl7v2CrashTest(unittest.TestCase):
    def test_kill_9_loses_no_acked_message_and_resends_make_no_duplicates(self):
        data = tempfile.mkdtemp(prefix="yilian-crash-")
        engine = Engine(extra_args=["--mllp-any-port"], data_dir=data)
        try:
            box = {"port": mllp_ports(engine, ["zs-tertiary"])["zs-tertiary"]}
            senders = [Sender(n, box) for n in range(SENDERS)]
            for s in senders:
                s.start()
            # Let the streams run, then kill -9 mid-stream.
            deadline = time.monotonic() + 60
            while sum(len(s.acked) for s in senders) < SENDERS * PER_SENDER // 3 and time.monotonic() < deadline:
                time.sleep(0.02)
            acked_before_kill = {cid for s in senders for cid in list(s.acked)}
            engine.proc.kill()
            engine.proc.wait()
            engine.close()
            self.assertGreater(len(acked_before_kill), 0)
            self.assertLess(len(acked_before_kill), SENDERS * PER_SENDER, "the kill came too late to test anything")

            engine = Engine(extra_args=["--mllp-any-port"], data_dir=data)
            box["port"] = mllp_ports(engine, ["zs-tertiary"])["zs-tertiary"]
            for s in senders:
                s.join(timeout=300)
            for s in senders:
                self.assertFalse(s.is_alive(), "a sender did not finish")
                self.assertEqual(s.errors, [])
            all_acked = {cid for s in senders for cid in s.acked}
            self.assertEqual(len(all_acked), SENDERS * PER_SENDER)
            self.assertTrue(sum(s.resent for s in senders) > 0, "no sender had to resend: the kill missed")

            registered = collections.Counter(
                e["envelope"]["source"]["controlId"] for e in events(data, "yilian.patient.v1")
                if e["envelope"]["type"] == "yilian.events.v1.PatientRegistered")
            missing = sorted(c for c in all_acked if registered[c] == 0)
            dupes = sorted(c for c, n in registered.items() if n > 1)
            self.assertEqual(missing, [], "acknowledged but not on the bus")
            self.assertEqual(dupes, [], "on the bus more than once")
            self.assertTrue(acked_before_kill <= set(registered))
        finally:
            engine.close()
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
