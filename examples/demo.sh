#!/usr/bin/env bash
# The demo: our dev server, a two-step workflow, and workers completing it.
# Usage: examples/demo.sh        (idempotent; builds what it needs, then cleans up after itself)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

log "building the dev server and the Rust worker example (release)"
cargo build --release --quiet -p conductor-devserver
cargo build --release --quiet -p conductor-worker --example worker

work=$(mktemp -d)
cleanup() {
  [ -n "${worker_pid:-}" ] && kill -TERM "$worker_pid" 2>/dev/null && wait "$worker_pid" 2>/dev/null || true
  [ -n "${server_pid:-}" ] && kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

log "starting the dev server"
target/release/conductor-devserver --port 0 >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
for _ in $(seq 100); do
  url=$(sed -n 's/^conductor-devserver listening on //p' "$work/server.out")
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "${url:-}" ] || { cat "$work/server.err"; echo "the dev server did not start" >&2; exit 1; }
api="$url/api"
echo "    $api"

post() { curl -fsS -X "$1" -H 'Content-Type: application/json' -d "$3" "$api$2"; }

log "registering task definitions and the workflow 'greetings': greet -> shout"
post POST /metadata/taskdefs '[
  {"name":"greet","retryCount":2,"retryDelaySeconds":1,"responseTimeoutSeconds":30,"ownerEmail":"demo@example.com"},
  {"name":"shout","retryCount":2,"retryDelaySeconds":1,"responseTimeoutSeconds":30,"ownerEmail":"demo@example.com"}]' >/dev/null
post PUT /metadata/workflow '[{"name":"greetings","version":1,"schemaVersion":2,"timeoutSeconds":60,
  "ownerEmail":"demo@example.com",
  "tasks":[
    {"name":"greet","taskReferenceName":"greet_ref","type":"SIMPLE","inputParameters":{"name":"${workflow.input.name}"}},
    {"name":"shout","taskReferenceName":"shout_ref","type":"SIMPLE","inputParameters":{"text":"${greet_ref.output.greeting}"}}],
  "outputParameters":{"message":"${shout_ref.output.text}"}}]' >/dev/null

log "starting the Rust workers (core/examples/worker.rs)"
CONDUCTOR_SERVER_URL="$api" CONDUCTOR_WORKER_JOURNAL=off RUST_LOG=warn target/release/examples/worker &
worker_pid=$!

log "starting a workflow"
wf=$(post POST /workflow/greetings '{"name":"Ada"}')
echo "    workflow $wf"
for _ in $(seq 300); do
  status=$(curl -fsS "$api/workflow/$wf" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
  [ "$status" != RUNNING ] && break
  sleep 0.1
done
curl -fsS "$api/workflow/$wf?includeTasks=true" >"$work/workflow.json"
python3 - "$work/workflow.json" <<'PY'
import json, sys
wf = json.load(open(sys.argv[1]))
for t in wf.get("tasks", []):
    output = json.dumps(t.get("outputData"))
    print(f"    {t['referenceTaskName']:<10} {t['status']:<10} worker={t.get('workerId')} output={output}")
print(f"    workflow {wf['status']}: {json.dumps(wf.get('output'))}")
sys.exit(0 if wf["status"] == "COMPLETED" else 1)
PY
log "done: the workflow was completed by our workers"
