#!/usr/bin/env bash
# Multi-homed: one runtime polling three dev servers, tasks on two of them; the third is
# healthy, then slow (every answer after 10 s), then down (process gone, port closed).
# The two loaded servers' throughput should not notice the third. Prints a markdown table.
# Usage: bench/multi_homed.sh [TASKS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
tasks=${1:-40000}
runs=${2:-3}

cargo build --release --quiet -p conductor-devserver --bins
cargo build --release --quiet -p conductor-worker --example drain

work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
urls=()
for i in 1 2 3; do
  target/release/conductor-devserver --port 0 >"$work/out$i" 2>"$work/err$i" &
  pids+=($!)
  for _ in $(seq 100); do
    url=$(sed -n 's/^conductor-devserver listening on //p' "$work/out$i"); [ -n "$url" ] && break; sleep 0.1
  done
  [ -n "${url:-}" ] || { cat "$work/err$i"; exit 1; }
  urls+=("$url")
done
all="${urls[0]}/api,${urls[1]}/api,${urls[2]}/api"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
measure() {
  local rates=()
  for _ in $(seq "$runs"); do
    rates+=("$(target/release/examples/drain "$all" "$tasks" 50 2 | python3 -c 'import json,sys; print(json.load(sys.stdin)["tasks_per_s"])')")
  done
  printf '%s\n' "${rates[@]}" | median
}

healthy=$(measure)
curl -fsS -X PUT -H 'Content-Type: application/json' -d '{"latency_ms": 10000}' "${urls[2]}/admin/faults" >/dev/null
slow=$(measure)
kill "${pids[2]}"; wait "${pids[2]}" 2>/dev/null || true
down=$(measure)
pct() { python3 -c "print(f'{100*$1/$healthy:.0f} %')"; }
echo
echo "| $(date -u +%F) $(nproc) cores, 3 servers, tasks on 2, concurrency 50 | tasks/s (median of $runs) | of all-healthy |"
echo "|---|---:|---:|"
echo "| third server healthy (idle) | $healthy | 100 % |"
echo "| third server slow (answers after 10 s) | $slow | $(pct "$slow") |"
echo "| third server down (port closed) | $down | $(pct "$down") |"
