# Sourced by the MLLP benchmarks: start_engine CONFIG_DIR WORK [serve options...]
# starts `$bin/yilian serve` on CONFIG_DIR with data under WORK/data and its
# log in WORK/engine.log, stops and removes WORK on exit, and sets `engine`
# (its pid) and `port` (zs-tertiary's MLLP port, from the "mllp listening"
# log line). Exits with the log's tail when the engine does not come up.
start_engine() {
  local config="$1" dir="$2"
  shift 2
  "$bin/yilian" serve --config "$config" --data-dir "$dir/data" --http-listen 127.0.0.1:0 \
    --mllp-any-port "$@" 2>"$dir/engine.log" &
  engine=$!
  # shellcheck disable=SC2064  # expand now: the trap must name this engine and directory
  trap "kill $engine 2>/dev/null; wait $engine 2>/dev/null; rm -rf '$dir'" EXIT
  port=""
  for _ in $(seq 1 300); do
    port=$(sed -n 's/.*"mllp listening","hospital":"zs-tertiary","address":"127.0.0.1:\([0-9]*\)".*/\1/p' \
      "$dir/engine.log" | head -1)
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { echo "engine did not start:" >&2; tail -20 "$dir/engine.log" >&2; exit 1; }
  sleep 1
}
