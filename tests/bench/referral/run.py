#!/usr/bin/env python3
"""Referral benchmark (issue 5): referral transitions per second, and the
latency from an inbound HL7 message at one hospital to the outbound
notification at the other, against `yilian serve` on the embedded log
(default) or Kafka (--kafka host:port).

Clients: C concurrent MLLP connections of the clinic xz-thc, each sending
REF^I12 one after another (MLLP is one message in flight per connection). The
tertiary hospital's HIS is an asyncio MLLP server that ACKs everything it gets
and, for each REF^I12, answers with RRI^I12 (RF1-1 A) on its own inbound
connection — so every referral makes two decided transitions (CREATE,
ACCEPT) and two notifications (REF^I12 to the tertiary HIS, RRI to the
clinic HIS, which is another ACKing server).

Measured per referral: REF sent by the clinic -> REF^I12 received by the
tertiary HIS ("up"), and RRI sent by the tertiary -> RRI received by the
clinic ("back"). Throughput: transitions decided (2 per referral) per second
of wall time from the first send to the last RRI delivered.

Baseline, side by side on the same engine and connections: ADT^A28 from the
clinic (ingest + durable + AA, no workflow) — the MLLP ingest ceiling the
referral path is built on.

  python3 tests/bench/referral/run.py [--kafka 127.0.0.1:9092] [--referrals 2000]
      [--connections 20] [--bin build/bin]
Prints JSON lines (baseline, referral) and a summary line.
"""
import argparse
import asyncio
import json
import os
import shutil
import sys
import time
import uuid

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

VT, FS, CR = b"\x0b", b"\x1c", b"\x0d"


def frame(text):
    return VT + text.encode("utf-8") + FS + CR


async def read_frame(reader):
    buf = await reader.readuntil(FS + CR)
    start = buf.find(VT)
    return buf[start + 1:-2].decode("utf-8", errors="replace")


def seg_field(msg, seg, idx):
    for s in msg.split("\r"):
        if s.startswith(seg + "|"):
            parts = s.split("|")
            return parts[idx] if len(parts) > idx else ""
    return ""


def ack_for(msg):
    msh = msg.split("\r", 1)[0].split("|")
    trig = msh[8].split("^")[1] if "^" in msh[8] else ""
    return "MSH|^~\\&|%s|%s|%s|%s|20260101000000||ACK^%s^ACK|A%s|P|%s\rMSA|AA|%s\r" % (
        msh[4], msh[5], msh[2], msh[3], trig, msh[9], msh[11], msh[9])


class Hospital:
    """An ACKing MLLP receiver; calls on_message(msg) for each message."""

    def __init__(self, on_message):
        self.on_message = on_message
        self.server = None
        self.port = 0

    async def start(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader, writer):
        try:
            while True:
                msg = await read_frame(reader)
                self.on_message(msg)
                writer.write(frame(ack_for(msg)))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            writer.close()


class Sender:
    """One MLLP connection to an engine channel: send, wait for the ACK."""

    async def open(self, port):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)

    async def send(self, text):
        self.writer.write(frame(text))
        await self.writer.drain()
        ack = await read_frame(self.reader)
        if "MSA|AA" not in ack and "MSA|CA" not in ack:
            raise RuntimeError("not accepted: " + ack.replace("\r", " | ")[:300])


def ts():
    return time.strftime("%Y%m%d%H%M%S", time.localtime()) + "+0800"


def ref_i12(rid, n):
    return "\r".join([
        "MSH|^~\\&|CLINIC|XZWSY|YILIAN|ZSRMYY|%s||REF^I12^REF_I12|%s|P|2.5|||||CHN|UNICODE UTF-8" % (ts(), "R" + rid),
        "RF1|P|R||||%s^XZWSY||||^chest pain" % rid,
        "PRD|RP|ZHANG^GP||GP^^^XZWSY|||XZ03",
        "PRD|RT|||RAD^^^ZSRMYY",
        "PID|1||XZB%07d^^^XZWSY^MR||LI^SI^^^^^L||19520110|M" % n,
        "OBR|1|||CT-TL^HEAD CT^XZWSY-JC"]) + "\r"


def rri_accept(rid):
    return "\r".join([
        "MSH|^~\\&|HIS|ZSRMYY|YILIAN|XZWSY|%s||RRI^I12^RRI_I12|%s|P|2.5" % (ts(), "A" + rid),
        "MSA|AA|R" + rid,
        "RF1|A^Accepted^HL70283|R||||%s^XZWSY" % rid,
        "PRD|RT|LIU^DEHUA||RAD^^^ZSRMYY|||0231",
        "PRD|RP|ZHANG^GP||GP^^^XZWSY|||XZ03"]) + "\r"


def adt_a28(n):
    return "\r".join([
        "MSH|^~\\&|CLINIC|XZWSY|YILIAN|ZSRMYY|%s||ADT^A28^ADT_A05|B%s|P|2.5|||||CHN|UNICODE UTF-8" % (
            ts(), uuid.uuid4().hex[:16]),
        "EVN|A28|%s" % ts(),
        "PID|1||XZA%07d^^^XZWSY^MR||WANG^WU^^^^^L||19700101|M" % n,
        "PV1|1|N"]) + "\r"


def pct(values, p):
    if not values:
        return 0.0
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


async def run(args):
    from engine import Engine, consortium_copy
    from hl7tools import mllp_ports

    loop = asyncio.get_running_loop()
    sent_up, got_up, sent_back, got_back = {}, {}, {}, {}
    done = asyncio.Event()
    replies = asyncio.Queue()

    def at_tertiary(msg):
        if "REF^I12" in msg:
            rid = seg_field(msg, "RF1", 6).split("^")[0]
            if rid in sent_up and rid not in got_up:
                got_up[rid] = time.monotonic()
                replies.put_nowait(rid)

    def at_clinic(msg):
        if "RRI^" in msg:
            rid = seg_field(msg, "RF1", 6).split("^")[0]
            if rid in sent_back and rid not in got_back:
                got_back[rid] = time.monotonic()
                if len(got_back) == args.referrals:
                    loop.call_soon_threadsafe(done.set)

    tertiary, clinic = Hospital(at_tertiary), Hospital(at_clinic)
    await tertiary.start()
    await clinic.start()
    config = consortium_copy({"127.0.0.1:6661": "127.0.0.1:%d" % tertiary.port,
                              "127.0.0.1:6663": "127.0.0.1:%d" % clinic.port})
    extra = ["--mllp-any-port"] + (["--kafka-brokers", args.kafka] if args.kafka else [])
    engine = Engine(config=os.path.join(config, "consortium.yaml"), extra_args=extra)
    try:
        ports = mllp_ports(engine, ["zs-tertiary", "xz-thc"])
        deadline = time.monotonic() + 120
        while engine.request("GET", "/readyz").status != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("engine not ready")
            await asyncio.sleep(0.1)

        async def senders(port, count):
            out = []
            for _ in range(count):
                s = Sender()
                await s.open(port)
                out.append(s)
            return out

        clinic_conns = await senders(ports["xz-thc"], args.connections)
        tertiary_conns = await senders(ports["zs-tertiary"], args.connections)

        # Baseline: ADT^A28 ingest, same connections.
        n_base = args.referrals * 2
        counter = iter(range(n_base))
        lat_base = []

        async def base_worker(conn):
            for n in counter:
                t0 = time.monotonic()
                await conn.send(adt_a28(n))
                lat_base.append(time.monotonic() - t0)

        t0 = time.monotonic()
        await asyncio.gather(*(base_worker(c) for c in clinic_conns))
        base_elapsed = time.monotonic() - t0
        baseline = {"mode": "baseline ADT^A28 ingest", "bus": "kafka" if args.kafka else "embedded",
                    "messages": n_base, "connections": args.connections,
                    "throughput_per_s": round(n_base / base_elapsed, 1),
                    "ack_latency_ms": {"p50": round(pct(lat_base, 50) * 1000, 1),
                                       "p99": round(pct(lat_base, 99) * 1000, 1)}}
        print(json.dumps(baseline), flush=True)

        run_id = uuid.uuid4().hex[:6]
        rids = ["B%s-%06d" % (run_id, i) for i in range(args.referrals)]
        todo = iter(enumerate(rids))

        async def clinic_worker(conn):
            for n, rid in todo:
                sent_up[rid] = time.monotonic()
                await conn.send(ref_i12(rid, n))

        async def tertiary_worker(conn):
            while not done.is_set():
                try:
                    rid = await asyncio.wait_for(replies.get(), 1)
                except asyncio.TimeoutError:
                    continue
                sent_back[rid] = time.monotonic()
                await conn.send(rri_accept(rid))

        t0 = time.monotonic()
        answering = [asyncio.create_task(tertiary_worker(c)) for c in tertiary_conns]
        await asyncio.gather(*(clinic_worker(c) for c in clinic_conns))
        try:
            await asyncio.wait_for(done.wait(), args.timeout)
        except asyncio.TimeoutError:
            pass
        elapsed = time.monotonic() - t0
        done.set()
        await asyncio.gather(*answering, return_exceptions=True)
        up = [got_up[r] - sent_up[r] for r in got_up]
        back = [got_back[r] - sent_back[r] for r in got_back]
        result = {"mode": "referral REF^I12 -> REF at receiver, RRI -> RRI at initiator",
                  "bus": "kafka" if args.kafka else "embedded", "referrals": args.referrals,
                  "connections": args.connections, "delivered_up": len(got_up), "delivered_back": len(got_back),
                  "transitions_per_s": round(2 * len(got_back) / elapsed, 1),
                  "up_latency_ms": {"p50": round(pct(up, 50) * 1000, 1), "p99": round(pct(up, 99) * 1000, 1)},
                  "back_latency_ms": {"p50": round(pct(back, 50) * 1000, 1), "p99": round(pct(back, 99) * 1000, 1)}}
        print(json.dumps(result), flush=True)
        print("referral transitions/s %.0f (%d of %d loops closed); inbound->outbound p99 up %.0f ms, back %.0f ms; "
              "baseline ADT ingest %.0f msgs/s (p99 ACK %.1f ms)" % (
                  result["transitions_per_s"], len(got_back), args.referrals, result["up_latency_ms"]["p99"],
                  result["back_latency_ms"]["p99"], baseline["throughput_per_s"], baseline["ack_latency_ms"]["p99"]))
        return 0 if len(got_back) == args.referrals else 1
    finally:
        engine.close()
        for h in (tertiary, clinic):
            h.server.close()
        shutil.rmtree(config, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kafka", default="")
    p.add_argument("--referrals", type=int, default=2000)
    p.add_argument("--connections", type=int, default=20)
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    args = p.parse_args()
    os.environ["YILIAN_BIN_DIR"] = os.path.abspath(args.bin)
    os.environ.setdefault("YILIAN_SOURCE_DIR", ROOT)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
