#!/usr/bin/env python3
"""Writes a consortium for the booking benchmark: one owning hospital with N
identical machines working 24/7 (one 5-minute exam, the whole time shared), one
clinic that books them, and a token for the clinic's system.

    make_consortium.py DIR [--equipment 200]   -> DIR/consortium.yaml, prints the token
"""
import argparse
import hashlib
import os

TOKEN = "bench-clinic-his-token"

p = argparse.ArgumentParser()
p.add_argument("dir")
p.add_argument("--equipment", type=int, default=200)
p.add_argument("--http-threads", type=int, default=2)
args = p.parse_args()
os.makedirs(os.path.join(args.dir, "profiles", "bench-owner"), exist_ok=True)
os.makedirs(os.path.join(args.dir, "profiles", "bench-clinic"), exist_ok=True)
for h in ("bench-owner", "bench-clinic"):
    with open(os.path.join(args.dir, "profiles", h, "profile.yaml"), "w") as f:
        f.write("hospital: %s\nidentifier_authorities:\n  - {namespace_id: BENCH, type_code: MR, "
                "system: \"urn:yilian:id:bench:mrn\", type: MRN}\n" % h)
lines = [
    "id: bench", "name: booking benchmark", "time_zone: UTC", "data_dir: var",
    "hospitals:",
    "  - {id: bench-owner, name: Owner, tier: TERTIARY}",
    "  - {id: bench-clinic, name: Clinic, tier: PRIMARY}",
    "equipment:",
]
for i in range(args.equipment):
    lines += [
        "  - id: bench-eq-%d" % i,
        "    hospital: bench-owner",
        "    modality: CT",
        "    exam_types: [{code: BENCH-5, name: bench exam, duration_minutes: 5}]",
        "    schedule: {days: [{weekdays: [MONDAY, TUESDAY, WEDNESDAY, THURSDAY, FRIDAY, SATURDAY, SUNDAY],"
        " start: \"00:00\", end: \"24:00\"}]}",
        "    consortium_share_percent: 100",
    ]
lines += [
    "topics:",
    "  - {name: yilian.booking.v1, partitions: 8}",
    "bus:",
    "  embedded: {path: bus, partitions: 4, max_in_flight: 100000, publish_timeout_ms: 5000}",
    "http: {address: 127.0.0.1, port: 0, threads: %d, max_connections: 4096}" % args.http_threads,
    "principals:",
    "  - {id: bench-clinic-his, role: HOSPITAL_SYSTEM, hospital: bench-clinic, token_sha256: %s}"
    % hashlib.sha256(TOKEN.encode()).hexdigest(),
    "logging: {level: WARN}",
]
with open(os.path.join(args.dir, "consortium.yaml"), "w") as f:
    f.write("\n".join(lines) + "\n")
print(TOKEN)
