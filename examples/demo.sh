#!/usr/bin/env bash
# The demo: our dev server, a three-step workflow, and workers in Rust, Python and Ruby
# completing it (greet in Rust, exclaim in Python, frame in Ruby).
# Usage: examples/demo.sh        (idempotent; installs and builds what it needs, then cleans up
# after itself)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

need=(ruby ruby-dev libclang1-14 libclang-common-14-dev)
if ! dpkg -s "${need[@]}" >/dev/null 2>&1; then
  log "installing Debian packages: ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

log "building the release artifacts into dist/ (scripts/dist.sh) and the Rust worker example"
scripts/dist.sh >/dev/null
cargo build --release --quiet -p conductor-worker --example worker

# Installed as users install them: the wheel into .venv, the platform gem into a GEM_HOME of its own.
log "installing the Python wheel into .venv and the Ruby platform gem into .venv/gems"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --force-reinstall --no-deps dist/conductor_worker-*.whl
export GEM_HOME=$PWD/.venv/gems GEM_PATH=$PWD/.venv/gems
gem install --silent --local --no-document dist/conductor-worker-*-x86_64-linux.gem

work=$(mktemp -d)
cleanup() {
  for pid in ${worker_pids:-}; do
    kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  done
  [ -n "${server_pid:-}" ] && kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

log "starting the dev server (the wheel's conductor-devserver)"
.venv/bin/conductor-devserver --port 0 >"$work/server.out" 2>"$work/server.err" &
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

log "registering task definitions and the workflow 'greetings': greet (Rust) -> exclaim (Python) -> frame (Ruby)"
taskdef() { printf '{"name":"%s","retryCount":2,"retryDelaySeconds":1,"responseTimeoutSeconds":30,"ownerEmail":"demo@example.com"}' "$1"; }
post POST /metadata/taskdefs "[$(taskdef greet),$(taskdef exclaim),$(taskdef frame)]" >/dev/null
post PUT /metadata/workflow '[{"name":"greetings","version":1,"schemaVersion":2,"timeoutSeconds":60,
  "ownerEmail":"demo@example.com",
  "tasks":[
    {"name":"greet","taskReferenceName":"greet_ref","type":"SIMPLE","inputParameters":{"name":"${workflow.input.name}"}},
    {"name":"exclaim","taskReferenceName":"exclaim_ref","type":"SIMPLE","inputParameters":{"text":"${greet_ref.output.greeting}"}},
    {"name":"frame","taskReferenceName":"frame_ref","type":"SIMPLE","inputParameters":{"text":"${exclaim_ref.output.text}"}}],
  "outputParameters":{"message":"${frame_ref.output.text}"}}]' >/dev/null

log "starting the workers: Rust (core/examples/worker.rs), Python (examples/demo_worker.py), Ruby (examples/demo_worker.rb)"
export CONDUCTOR_SERVER_URL="$api" CONDUCTOR_WORKER_JOURNAL=off
RUST_LOG=warn target/release/examples/worker &
worker_pids=$!
.venv/bin/python examples/demo_worker.py &
worker_pids="$worker_pids $!"
ruby examples/demo_worker.rb &
worker_pids="$worker_pids $!"

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
    print(f"    {t['referenceTaskName']:<12} {t['status']:<10} worker={t.get('workerId')} output={output}")
print(f"    workflow {wf['status']}: {json.dumps(wf.get('output'))}")
sys.exit(0 if wf["status"] == "COMPLETED" else 1)
PY
log "done: the workflow was completed by our Rust, Python and Ruby workers"
