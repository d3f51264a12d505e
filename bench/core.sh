#!/usr/bin/env bash
# The core's throughput beside the physical limit, measured in one run on one dev server:
#   1. conductor-loadgen: batch-poll + update pairs with no worker logic (the limit);
#   2. the Rust runtime (core/examples/drain.rs) draining no-op tasks.
# Prints a markdown table; the ratio is what to read (absolute rates drift on shared machines).
# Usage: bench/core.sh [TASKS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
tasks=${1:-50000}
runs=${2:-3}

cargo build --release --quiet -p conductor-devserver --bins
cargo build --release --quiet -p conductor-worker --example drain

work=$(mktemp -d)
trap 'kill "$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null; rm -rf "$work"' EXIT
target/release/conductor-devserver --port 0 >"$work/out" 2>"$work/err" &
server_pid=$!
for _ in $(seq 100); do
  url=$(sed -n 's/^conductor-devserver listening on //p' "$work/out"); [ -n "$url" ] && break; sleep 0.1
done
[ -n "${url:-}" ] || { cat "$work/err"; exit 1; }

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
limit=(); ours=(); cpu=(); rss=()
for i in $(seq "$runs"); do
  out=$(target/release/conductor-loadgen --url "$url" --task-type "limit_$i" --tasks "$tasks" --concurrency 16 --batch 20 --timeout-ms 100)
  limit+=("$(printf '%s\n' "$out" | sed -n 's/.*[^0-9.]\([0-9.]\+\) tasks\/s.*/\1/p' | head -1)")
  json=$(target/release/examples/drain "$url/api" "$tasks" 50)
  ours+=("$(printf '%s' "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["tasks_per_s"])')")
  cpu+=("$(printf '%s' "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["cpu_s_per_1000"])')")
  rss+=("$(printf '%s' "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["peak_rss_mb"])')")
done
l=$(printf '%s\n' "${limit[@]}" | median); o=$(printf '%s\n' "${ours[@]}" | median)
c=$(printf '%s\n' "${cpu[@]}" | median); r=$(printf '%s\n' "${rss[@]}" | median)
echo
echo "| $(date -u +%F) $(nproc) cores | tasks/s (median of $runs) | CPU s / 1,000 tasks | peak RSS MB | of the limit |"
echo "|---|---:|---:|---:|---:|"
echo "| load generator (batch poll + update, no worker) | $l | | | 100 % |"
echo "| Rust runtime, no-op tasks, concurrency 50 | $o | $c | $r | $(python3 -c "print(f'{100*$o/$l:.0f} %')") |"
