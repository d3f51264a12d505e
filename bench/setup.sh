#!/usr/bin/env bash
# Builds and installs everything the worker programs of bench/workers/ need; idempotent.
#   - release builds: the dev server, the load generator and the Rust worker program;
#   - the release artifacts (scripts/dist.sh), so what is measured is what users install:
#     .venv gets the wheel, and the Ruby worker program loads bindings-ruby/lib with the platform
#     gem's extension that dist.sh put there;
#   - .venv: matplotlib for the chart;
#   - bench/.venv-peer: conductor-python 2.0.0 from PyPI, in a venv of its own.
# Usage: bench/setup.sh            (BENCH_SKIP_PIP=1 skips rebuilding and reinstalling the artifacts)
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

step() { printf '==> %s\n' "$*" >&2; }

step "release builds: conductor-devserver, conductor-loadgen, bench_worker"
cargo build --release --quiet -p conductor-devserver --bins
cargo build --release --quiet -p conductor-worker --example bench_worker

need=(ruby ruby-dev libclang1-14 libclang-common-14-dev)
if ! dpkg -s "${need[@]}" >/dev/null 2>&1; then
  step "Debian packages: ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ ! -x .venv/bin/python ]; then
  step "creating .venv"
  python3 -m venv .venv
fi
if [ "${BENCH_SKIP_PIP:-0}" != 1 ] || ! .venv/bin/python -c 'import conductor_worker' 2>/dev/null; then
  step "release artifacts (scripts/dist.sh); the wheel into .venv"
  scripts/dist.sh >&2
  # A `rake compile` copy would be loaded before the platform gem's extension.
  rm -f bindings-ruby/lib/conductor_worker/conductor_worker_ruby.so
  .venv/bin/python -m pip install -q --disable-pip-version-check --force-reinstall --no-deps dist/conductor_worker-*.whl
fi
if ! .venv/bin/python -c 'import matplotlib' 2>/dev/null; then
  step "pip install matplotlib"
  .venv/bin/python -m pip install -q --disable-pip-version-check matplotlib
fi

if ! bench/.venv-peer/bin/python -c 'import conductor.client' 2>/dev/null; then
  step "bench/.venv-peer: conductor-python 2.0.0"
  python3 -m venv bench/.venv-peer
  bench/.venv-peer/bin/python -m pip install -q --disable-pip-version-check conductor-python==2.0.0
fi
step "ready: $(bench/.venv-peer/bin/python -m pip show conductor-python 2>/dev/null | sed -n 's/^Version: /conductor-python /p')"
