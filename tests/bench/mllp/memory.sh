#!/usr/bin/env bash
# Memory of the MLLP ingest path (issue 3), against `yilian serve` on the
# example consortium with the embedded log:
#
#  1. one big ORU^R01: a report whose OBX-5 carries a PDF (random bytes, so
#     nothing compresses) making the message SIZE_MB long, sent with
#     `yilian hl7 send`; the engine's peak RSS (VmHWM, reset just before) is
#     compared with its RSS before the message. The baseline is the message
#     size itself.
#  2. a steady stream: yilian-loadgen at RATE messages/s for DURATION seconds;
#     the engine's RSS every 10 s. Flat means the last third of the samples
#     stays within a few MB of the first third.
#
#   tests/bench/mllp/memory.sh [--size-mb 20] [--rate 1000] [--duration 600]
#       [--connections 16] [--bin build/bin]
# Prints one JSON line per phase.
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
bin="$root/build/bin"
size_mb=20
rate=1000
duration=600
connections=16
while [ $# -gt 0 ]; do
  case "$1" in
    --size-mb) size_mb="$2"; shift ;;
    --rate) rate="$2"; shift ;;
    --duration) duration="$2"; shift ;;
    --connections) connections="$2"; shift ;;
    --bin) bin="$2"; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
work=$(mktemp -d /tmp/yilian-mllp-memory.XXXXXX)
# The example consortium, with frames large enough for the big message.
cp -r "$root/deploy/examples/consortium" "$work/consortium"
sed -i "s/^  max_frame_bytes: .*/  max_frame_bytes: $(((size_mb + 8) * 1048576))/" "$work/consortium/consortium.yaml"
. "$root/tests/bench/mllp/engine.sh"
start_engine "$work/consortium" "$work"
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$engine/status"; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$engine/status"; }

# 1. The big ORU: the corpus report with its PDF replaced by SIZE_MB of data.
python3 - "$root/tests/data/hl7v2/corpus/oru_r01_zs_ct_pdf.hl7" "$work/big.hl7" "$size_mb" <<'PY'
import base64, os, re, sys, time
src, dst, mb = sys.argv[1], sys.argv[2], int(sys.argv[3])
text = open(src, "rb").read()
pdf = b"%PDF-1.4\n" + os.urandom(mb * 1048576 * 3 // 4)
text = re.sub(rb"\^Base64\^[A-Za-z0-9+/=]+", b"^Base64^" + base64.b64encode(pdf), text)
# A control id of its own, so that a rerun on a kept data dir is not a resend.
text = re.sub(rb"\|ZSRIS20250623113500010\|", b"|BIG" + str(int(time.time())).encode() + b"|", text)
open(dst, "wb").write(text)
PY
bytes=$(stat -c %s "$work/big.hl7")
before=$(rss_kb)
echo 5 >"/proc/$engine/clear_refs"  # resets VmHWM to the current RSS
started=$(date +%s.%N)
ack=$("$bin/yilian" hl7 send --host 127.0.0.1 --port "$port" "$work/big.hl7" 2>&1 | sed -n 's/.*"ack":"\([A-Z]*\)".*/\1/p' || true)
took=$(python3 -c "import time; print(round(time.time() - $started, 2))")
peak=$(hwm_kb)
after=$(rss_kb)
# A memory figure for a message the engine did not take would mean nothing.
[ "$ack" = AA ] || { echo "the big ORU was not accepted (ACK '$ack'):" >&2; tail -20 "$work/engine.log" >&2; exit 1; }
python3 - "$bytes" "$before" "$peak" "$after" "$ack" "$took" <<'PY'
import json, sys
size, before, peak, after = (int(x) for x in sys.argv[1:5])
print(json.dumps({"phase": "big_oru", "message_bytes": size, "ack": sys.argv[5], "seconds": float(sys.argv[6]),
                  "rss_before_mb": round(before / 1024, 1), "peak_rss_mb": round(peak / 1024, 1),
                  "rss_after_mb": round(after / 1024, 1),
                  "peak_growth_mb": round((peak - before) / 1024, 1),
                  "peak_growth_x_message": round((peak - before) * 1024 / size, 2)}))
PY

# 2. The steady stream, RSS sampled every 10 s.
"$bin/yilian-loadgen" --port "$port" --connections "$connections" --rate "$rate" --duration "$duration" \
  --warmup 2 >"$work/loadgen.json" 2>"$work/loadgen.err" &
loadgen=$!
samples=()
while kill -0 "$loadgen" 2>/dev/null; do
  samples+=("$(rss_kb)")
  sleep 10
done
wait "$loadgen" || { echo "loadgen failed:" >&2; cat "$work/loadgen.err" >&2; exit 1; }
python3 - "$(cat "$work/loadgen.json")" "${samples[@]}" <<'PY'
import json, sys
load = json.loads(sys.argv[1])
kb = [int(x) for x in sys.argv[2:]]
third = max(1, len(kb) // 3)
first, last = kb[:third], kb[-third:]
print(json.dumps({"phase": "steady", "loadgen": load, "samples": len(kb),
                  "rss_mb_every_10s": [round(k / 1024, 1) for k in kb],
                  "first_third_mean_mb": round(sum(first) / len(first) / 1024, 1),
                  "last_third_mean_mb": round(sum(last) / len(last) / 1024, 1),
                  "max_mb": round(max(kb) / 1024, 1)}))
PY
