"""HL7 v2 helpers for the end-to-end tests: message builders (synthetic
patients only), a plain-socket MLLP client independent of yilian's, and
python-hl7's `mllp_send` (Debian python3-hl7) run as a separate process."""
import json
import os
import socket
import subprocess
import tempfile
import time

from engine import run_cli, EXAMPLE

VT, FS, CR = b"\x0b", b"\x1c", b"\r"


def with_check_digit(body17):
    """A resident ID: 17 digits and their GB 11643 (ISO 7064 MOD 11-2) check character."""
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return body17 + "10X98765432"[sum(int(c) * w for c, w in zip(body17, weights)) % 11]


def now_hl7(offset_seconds=0):
    """An HL7 timestamp (local time, +0800), offset_seconds from now."""
    return time.strftime("%Y%m%d%H%M%S", time.localtime(time.time() + offset_seconds)) + "+0800"


def adt_a04(control_id, mrn="100001", facility="ZSRMYY", app="HIS", name="测试^患者", version="2.5",
            extra_pid=""):
    segs = [
        "MSH|^~\\&|%s|%s|YILIAN|ZSYL|20260105093000+0800||ADT^A04^ADT_A01|%s|P|%s" % (app, facility, control_id, version),
        "EVN|A04|20260105093000+0800",
        "PID|1||%s^^^ZSRMYY^MR~110101199003070038^^^CHN^NNCHN||%s^^^^^^I||19900307|F%s" % (mrn, name, extra_pid),
        "PV1|1|O|RAD^^^ZSRMYY||||D01^医生^甲|||||||||||V%s" % control_id,
    ]
    return ("\r".join(segs) + "\r").encode("utf-8")


def mllp_exchange(port, payload, replies=1, timeout=20, host="127.0.0.1"):
    """Sends one framed message on a fresh connection and returns `replies` ACK payloads."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(VT + payload + FS + CR)
        return read_frames(s, replies, timeout)


def read_frames(sock, count, timeout):
    sock.settimeout(timeout)
    buf = b""
    out = []
    while len(out) < count:
        end = buf.find(FS + CR)
        if end >= 0:
            start = buf.find(VT)
            out.append(buf[start + 1:end])
            buf = buf[end + 2:]
            continue
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError("connection closed after %d of %d replies" % (len(out), count))
        buf += chunk
    return out


def segments(payload, encoding="utf-8"):
    return [s.split("|") for s in payload.decode(encoding).split("\r") if s]


def msa(payload, encoding="utf-8"):
    for seg in segments(payload, encoding):
        if seg[0] == "MSA":
            return seg
    raise AssertionError("no MSA in %r" % payload)


def mllp_send(port, payload):
    """python-hl7's mllp_send (its own framing and socket code); returns its stdout."""
    with tempfile.NamedTemporaryFile(suffix=".hl7", delete=False) as f:
        f.write(payload.replace(b"\r", b"\n"))
        path = f.name
    try:
        out = subprocess.run(["/usr/bin/mllp_send", "--loose", "-f", path, "-p", str(port), "127.0.0.1"],
                             capture_output=True, timeout=60)
    finally:
        os.unlink(path)
    if out.returncode != 0:
        raise AssertionError("mllp_send failed: %s" % out.stderr.decode(errors="replace"))
    return out.stdout


def events(data_dir, topic, config=EXAMPLE, extra=()):
    out = run_cli("events", "tail", "--config", config, "--data-dir", data_dir, "--topic", topic,
                  "--from-beginning", *extra, timeout=120)
    if out.returncode != 0:
        raise AssertionError("events tail failed: %s" % out.stderr)
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def mllp_ports(engine, hospitals, timeout=30):
    """Waits for the "mllp listening" log line of each hospital; returns {hospital: port}."""
    ports = {}
    for entry in engine.log_entries():
        if entry.get("msg") == "mllp listening":
            ports[entry["hospital"]] = int(entry["address"].rsplit(":", 1)[1])
    while not set(hospitals) <= set(ports):
        entry = engine.wait_for_log(lambda e: e.get("msg") == "mllp listening", timeout)
        ports[entry["hospital"]] = int(entry["address"].rsplit(":", 1)[1])
    return ports


class MllpServer:
    """A hospital system's MLLP receiver (what yilian's outbound sender talks to):
    accepts connections, keeps every message it reads and answers AA with MSA-2 =
    its MSH-10, in the message's own encoding characters."""

    def __init__(self, host="127.0.0.1", encoding="utf-8"):
        import threading
        self.encoding = encoding  # what the hospital's profile says it speaks (default_charset)
        self.messages = []
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import threading
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        buf = b""
        with conn:
            while not self._closed:
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
                while True:
                    end = buf.find(FS + CR)
                    if end < 0:
                        break
                    start = buf.find(VT)
                    payload = buf[start + 1:end]
                    buf = buf[end + 2:]
                    text = payload.decode(self.encoding, errors="replace")
                    with self._lock:
                        self.messages.append(text)
                    msh = text.split("\r", 1)[0].split("|")
                    ack = "\r".join([
                        "MSH|^~\\&|%s|%s|%s|%s|20260101000000||ACK^%s^ACK|ACK%s|P|%s" % (
                            msh[4], msh[5], msh[2], msh[3], msh[8].split("^")[1] if "^" in msh[8] else "",
                            msh[9], msh[11]),
                        "MSA|AA|%s" % msh[9]]) + "\r"
                    conn.sendall(VT + ack.encode(self.encoding) + FS + CR)

    def received(self, predicate=lambda m: True):
        with self._lock:
            return [m for m in self.messages if predicate(m)]

    def wait_for(self, predicate, timeout=30):
        import time
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.received(predicate)
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError("no matching message within %ss; got:\n%s" % (
            timeout, "\n---\n".join(m.replace("\r", "\n") for m in self.received())))

    def close(self):
        self._closed = True
        self._sock.close()


def field(message, segment, index, occurrence=0):
    """Field `index` of the `occurrence`-th `segment` of a message text (MSH-n counts MSH-1 as the separator)."""
    found = [s.split("|") for s in message.split("\r") if s.startswith(segment + "|")]
    if len(found) <= occurrence:
        return None
    seg = found[occurrence]
    i = index - 1 if segment == "MSH" else index
    return seg[i] if i < len(seg) else ""
