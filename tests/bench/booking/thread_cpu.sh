#!/usr/bin/env bash
# Where a booking's CPU goes: runs tests/bench/booking/run.sh and, for 8 s in
# the middle of the booking phase, reads every thread's CPU time of the engine
# and of the load generator from /proc/<pid>/task/*/stat, then divides by the
# booking decisions made in those 8 s (yilian_booking_decisions_total from
# /metrics). Also prints the machine's idle and stolen time over the window.
# A steadier measure than bookings/s on a noisy machine: compare builds by
# µs per booking of the thread a change is about.
#
#   tests/bench/booking/thread_cpu.sh [--bin build/bin] [--connections 1000] [--duration 15]
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
bin="$root/build/bin"
connections=1000
duration=15
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin="$2"; shift ;;
    --connections) connections="$2"; shift ;;
    --duration) duration="$2"; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[ "$duration" -ge 14 ] || { echo "--duration must be at least 14 (3 s warm-up, 3 s settling, 8 s window)" >&2; exit 2; }
out=$(mktemp -d /tmp/yilian-thread-cpu.XXXXXX)
trap 'rm -rf "$out"' EXIT
"$root/tests/bench/booking/run.sh" --connections "$connections" --duration "$duration" --bin "$bin" >"$out/run" 2>&1 &
runner=$!
booking_loadgen() { pgrep -f "yilian-booking-loadgen.*--port" | while read -r p; do
  grep -qa -- "--mode" "/proc/$p/cmdline" 2>/dev/null || echo "$p"; done | head -1; }
lg=""
for _ in $(seq 1 300); do
  lg=$(booking_loadgen || true)
  [ -n "$lg" ] && break
  sleep 0.5
done
[ -n "$lg" ] || { echo "the booking phase did not start:" >&2; cat "$out/run" >&2; exit 1; }
sleep 6
engine=$(pgrep -P "$runner" -x yilian | head -1)
[ -n "$engine" ] || engine=$(pgrep -x yilian | head -1)
args=$(tr '\0' ' ' <"/proc/$lg/cmdline")
port=$(sed 's/.*--port \([0-9]*\).*/\1/' <<<"$args")
token=$(sed 's/.*--token \([^ ]*\).*/\1/' <<<"$args")
decisions() {
  curl -fsS -H "Authorization: Bearer $token" "http://127.0.0.1:$port/metrics" |
    awk '/^yilian_booking_decisions_total/ {s += $2} END {printf "%d\n", s}'
}
# Ticks (utime + stime) per thread name, engine and load generator.
snapshot() {
  for t in /proc/"$engine"/task/* /proc/"$lg"/task/*; do
    name=$(tr ' ' '_' <"$t/comm" 2>/dev/null) || continue
    ticks=$(awk '{print $14 + $15}' "$t/stat" 2>/dev/null) || continue
    [ "$(dirname "$t")" = "/proc/$lg/task" ] && name="loadgen:$name"
    echo "$name $ticks"
  done | awk '{a[$1] += $2} END {for (k in a) print k, a[k]}' | sort
}
d1=$(decisions); snapshot >"$out/s1"; read -r -a c1 < <(head -1 /proc/stat)
sleep 8
snapshot >"$out/s2"; read -r -a c2 < <(head -1 /proc/stat); d2=$(decisions)
wait "$runner" || true
n=$((d2 - d1))
hz=$(getconf CLK_TCK)
window=$((8 * hz * $(nproc)))
echo "decisions in 8 s: $n; machine idle $(( (c2[4] - c1[4]) * 100 / window ))%, stolen $(( (c2[8] - c1[8]) * 100 / window ))%"
join "$out/s1" "$out/s2" | awk -v n="$n" -v hz="$hz" '
  { us = ($3 - $2) * 1e6 / hz / n; if (us >= 0.5) printf "%-24s %7.1f us/booking\n", $1, us
    if ($1 !~ /^loadgen:/) engine += us }
  END { printf "%-24s %7.1f us/booking\n", "engine (all threads)", engine }' | sort -k2 -n -r
tail -1 "$out/run"
