#!/usr/bin/env bash
# End-to-end MLLP ingest (issue 3): frame in -> raw bytes and receipt durable
# -> events durable on the bus -> AA out, against `yilian serve` on the example
# consortium (every workflow running, as in production), driven by
# yilian-loadgen over loopback.
#
#   tests/bench/mllp/ingest.sh [--kafka HOST:PORT] [--bin build/bin] [-- loadgen options...]
#   e.g. tests/bench/mllp/ingest.sh -- --connections 64 --duration 15 --warmup 3
#        tests/bench/mllp/ingest.sh -- --connections 64 --duration 15 --warmup 3 --rate 1500
#
# Prints the load generator's JSON line, then the engine's CPU seconds per
# thread over the run (from /proc: which part of the engine costs what) and
# the total in microseconds per message. A fresh data directory every run.
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
bin="$root/build/bin"
kafka=""
while [ $# -gt 0 ]; do
  case "$1" in
    --kafka) kafka="$2"; shift ;;
    --bin) bin="$2"; shift ;;
    --) shift; break ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
work=$(mktemp -d /tmp/yilian-mllp-ingest.XXXXXX)
serve_args=()
[ -n "$kafka" ] && serve_args=(--kafka-brokers "$kafka")
. "$root/tests/bench/mllp/engine.sh"
start_engine "$root/deploy/examples/consortium" "$work" "${serve_args[@]}"
# CPU ticks per thread name (threads of one kind summed).
cpu() {
  for t in /proc/$engine/task/*; do
    printf '%s %s\n' "$(tr ' ' '_' <"$t/comm")" "$(awk '{print $14 + $15}' "$t/stat")"
  done | awk '{a[$1] += $2} END {for (k in a) print k, a[k]}' | sort
}
cpu >"$work/before"
"$bin/yilian-loadgen" --port "$port" "$@" >"$work/loadgen.json"
cpu >"$work/after"
cat "$work/loadgen.json"
ticks=$(getconf CLK_TCK)
join -a 2 -e 0 -o 0,1.2,2.2 "$work/before" "$work/after" |
  awk -v hz="$ticks" '{printf "%-16s %7.2f s\n", $1, ($3 - $2) / hz}' | sort -k2 -n -r
python3 - "$work/before" "$work/after" "$work/loadgen.json" "$ticks" <<'PY'
import json, sys
def load(p): return {l.split()[0]: int(l.split()[1]) for l in open(p) if l.strip()}
before, after, run, hz = load(sys.argv[1]), load(sys.argv[2]), json.load(open(sys.argv[3])), int(sys.argv[4])
total = sum(after[k] - before.get(k, 0) for k in after) / hz
messages = run["acked_aa"] + run["acked_other"]
print(json.dumps({"engine_cpu_s": round(total, 2), "messages": messages,
                  "engine_cpu_us_per_message": round(total * 1e6 / max(1, messages), 1)}))
PY
