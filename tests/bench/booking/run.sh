#!/usr/bin/env bash
# Booking benchmark (issue 4): N concurrent clinic clients booking on M
# machines through the REST API, against `yilian serve` on the embedded log
# (default) or on Kafka (--kafka host:port), with the HTTP stack's own ceiling
# (GET /healthz, same clients) measured in the same run as the baseline.
#
#   tests/bench/booking/run.sh [--kafka 127.0.0.1:9092] [--connections 1000]
#       [--equipment 200] [--duration 20] [--bin build/bin]
# Prints two JSON lines (baseline, booking) and the ratio.
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
bin="$root/build/bin"
kafka=""
connections=1000
equipment=200
duration=20
while [ $# -gt 0 ]; do
  case "$1" in
    --kafka) kafka="$2"; shift ;;
    --connections) connections="$2"; shift ;;
    --equipment) equipment="$2"; shift ;;
    --duration) duration="$2"; shift ;;
    --bin) bin="$2"; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
work=$(mktemp -d /tmp/yilian-booking-bench.XXXXXX)
token=$(python3 "$root/tests/bench/booking/make_consortium.py" "$work/consortium" --equipment "$equipment")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
args=(serve --config "$work/consortium/consortium.yaml" --data-dir "$work/data" --http-listen "127.0.0.1:$port")
[ -n "$kafka" ] && args+=(--kafka-brokers "$kafka")
"$bin/yilian" "${args[@]}" 2>"$work/engine.log" &
engine=$!
trap 'kill $engine 2>/dev/null; wait $engine 2>/dev/null; rm -rf "$work"' EXIT
ready=0
for _ in $(seq 1 600); do
  if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.2
done
[ "$ready" -eq 1 ] || { echo "engine did not get ready:" >&2; tail -20 "$work/engine.log" >&2; exit 1; }
# A Kafka broker keeps earlier runs' bookings: start each run on other days.
days=$((1 + $(date +%s) / 60 % 360))
common=(--port "$port" --token "$token" --connections "$connections" --equipment "$equipment" --duration "$duration"
        --warmup 3 --days-ahead "$days")
base=$("$bin/yilian-booking-loadgen" "${common[@]}" --mode healthz || true)
# While bookings run, /metrics is scraped every 5 s as a Prometheus server
# would (its per-equipment gauges read the booking ledger): how long a scrape
# takes is printed, and a slow one shows in the bookings' latency.
(
  while sleep 5; do
    curl -s -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $token" "http://127.0.0.1:$port/metrics" || true
  done
) > "$work/scrapes" &
scraper=$!
book=$("$bin/yilian-booking-loadgen" "${common[@]}" || true)
kill "$scraper" 2>/dev/null; wait "$scraper" 2>/dev/null || true
echo "$base"
echo "$book"
python3 - "$base" "$book" "$work/scrapes" <<'PY'
import json, sys
b, k = json.loads(sys.argv[1]), json.loads(sys.argv[2])
scrapes = [float(x) for x in open(sys.argv[3]).read().split()]
print("bookings/s %.0f = %.2f x the HTTP ceiling (%.0f req/s); booking p50 %.1f ms p99 %.1f ms; "
      "%d /metrics scrapes, slowest %.3f s"
      % (k["throughput_per_s"], k["throughput_per_s"] / max(b["throughput_per_s"], 1), b["throughput_per_s"],
         k["latency_ms"]["p50"], k["latency_ms"]["p99"], len(scrapes), max(scrapes, default=0)))
PY
