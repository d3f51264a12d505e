#!/usr/bin/env bash
# Every test of the project, in one command (CI runs it through .ci/run).
#
# Installs what it needs itself, idempotently: Debian packages (only when missing; PostgreSQL 15
# only for its programs, never its system service), a venv at .venv with pytest and ruff, the
# pinned Conductor server jar in ~/.cache/conductor (never in the repository). Then, in order:
# cargo fmt --check, cargo clippy -D warnings with the 80-line function limit (whole workspace)
# and a check that no two modules of a crate use each other,
# cargo test (core + dev server), the dev server release build, the release artifacts
# (scripts/dist.sh), ruff on the Python test code, and the contract suite: first against the dev
# server, then against a real Conductor server on SQLite, then against a real Conductor server on
# its own PostgreSQL cluster; then the Python and Ruby tiers on the installed wheel and platform
# gem, the installed-artifact tests, end to end, benchmark tools and reliability.
#
# The real-server tiers are required whenever the jar, a Java 21+ runtime (and for the second
# PostgreSQL 15) can be had: their failure fails the run. If they truly cannot be had, the output
# ENDS with
#   real Conductor server tier NOT RUN: <why>
#   real Conductor server (postgres) tier NOT RUN: <why>
# (whichever applies; exit status 0, since a registry hiccup must not block CI; set
# REQUIRE_REAL_CONDUCTOR=1 to make it fail the run instead).
#
# Works from any directory, with CI=true and no stdin.
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
exec </dev/null

PY=.venv/bin/python
LOG_DIR=$(mktemp -d /tmp/run_all.XXXXXX)
SUMMARY=()          # one line per step: what ran, how long, the result
REAL_NOT_RUN=""     # why the real-server tier (SQLite) did not run, if it did not
PG_NOT_RUN=""       # why the real-server tier on PostgreSQL did not run, if it did not
FAILED=0

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
now() { date +%s; }
record() { SUMMARY+=("$(printf '%-34s %5ss  %s' "$1" "$2" "$3")"); }

# Run a step; stop the whole run at its first failure (the Rust checks gate everything after).
# (errexit does not apply inside an `if` condition: the step functions return their own failures.)
timed() {
  local name=$1; shift
  step "$name"
  local t0; t0=$(now)
  if "$@"; then
    record "$name" $(($(now) - t0)) "ok"
  else
    local rc=$?
    record "$name" $(($(now) - t0)) "FAILED (exit $rc)"
    print_summary
    exit "$rc"
  fi
}

# Why the real server cannot run on backend $1 (prints nothing when it can; its check goes to stderr).
not_available() {
  local out why
  if out=$("$PY" tests/tools/conductor_server.py check --backend "$1" 2>&1); then
    printf '%s\n' "$out" >&2
    return 0
  fi
  why=$(printf '%s\n' "$out" | sed -n 's/^NOT AVAILABLE: //p' | tail -1)
  printf '%s\n' "${why:-$(printf '%s\n' "$out" | tail -1)}"
}

install_prerequisites() {
  local need=(ruby ruby-dev rake ruby-minitest libclang1-14 libclang-common-14-dev)
  local optional=(postgresql)  # the Postgres tier's (initdb, pg_ctl); without it that tier is NOT RUN
  if ! dpkg -s "${need[@]}" >/dev/null 2>&1; then
    echo "installing Debian packages: ${need[*]}"
    apt-get update -qq || return 1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null || return 1
  fi
  if ! dpkg -s "${optional[@]}" >/dev/null 2>&1; then
    echo "installing Debian packages: ${optional[*]}"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${optional[@]}" >/dev/null; } ||
      echo "could not install ${optional[*]}: the Postgres tier will not run"
  fi
  if [ ! -x "$PY" ]; then
    echo "creating .venv"
    python3 -m venv .venv || return 1
  fi
  if ! "$PY" -c 'import pytest' 2>/dev/null || [ ! -x .venv/bin/ruff ]; then
    "$PY" -m pip install -q --disable-pip-version-check pytest ruff || return 1
  fi
  # The jar (~440 MiB), a Java 21+ runtime and PostgreSQL for the real-server tiers. Not fatal
  # here: what cannot be had is reported as NOT RUN at the end.
  REAL_NOT_RUN=$(not_available sqlite)
  [ -z "$REAL_NOT_RUN" ] || echo "the real Conductor server cannot run here: $REAL_NOT_RUN"
  PG_NOT_RUN=${REAL_NOT_RUN:-$(not_available postgres)}
  [ -z "$PG_NOT_RUN" ] || echo "the real Conductor server on PostgreSQL cannot run here: $PG_NOT_RUN"
}

rust_fmt() { cargo fmt --all -- --check; }
rust_clippy() {
  cargo clippy --workspace --all-targets -- -D warnings -W clippy::too_many_lines &&
    python3 tests/tools/module_cycles.py core/src devserver/src bindings-python/src bindings-ruby/src
}
rust_tests() { cargo test; }  # default members: core and dev server (unit, integration, doc tests)
build_devserver() { cargo build --release -p conductor-devserver; }
python_lint() { .venv/bin/ruff check tests && .venv/bin/ruff format --check tests; }

# A pytest tier; runs even when an earlier tier failed, so every failure is seen in one run.
pytest_tier() {
  local name=$1; shift
  step "$name"
  local t0 rc=0 log="$LOG_DIR/$name.log"
  t0=$(now)
  "$PY" -m pytest -q -p no:cacheprovider "$@" 2>&1 | tee "$log" || rc=$?
  local line
  line=$(grep -E '^=*\s*[0-9]+ (passed|failed|error|skipped|deselected|xfailed)' "$log" | tail -1 | tr -d '=' | sed 's/^ *//;s/ *$//' || true)
  line=${line:-no pytest summary line}
  if [ "$rc" -eq 0 ]; then
    record "$name" $(($(now) - t0)) "ok: $line"
  else
    record "$name" $(($(now) - t0)) "FAILED (exit $rc): $line"
    FAILED=1
  fi
}

contract_devserver() {
  pytest_tier "contract suite on the dev server" tests/contract --servers=devserver
}

# contract_real NAME SERVERS NOT_RUN_VARIABLE: the contract suite on one real-server tier, or
# NOT RUN (and why, into the variable) when that server cannot run here.
contract_real() {
  local name=$1 servers=$2 var=$3
  if [ -n "${!var}" ]; then
    record "$name" 0 "NOT RUN: ${!var}"
    return
  fi
  local not_run_file="$LOG_DIR/not-run-$servers"
  CONDUCTOR_NOT_RUN_FILE="$not_run_file" pytest_tier "$name" tests/contract --servers="$servers"
  if [ -s "$not_run_file" ]; then
    printf -v "$var" '%s' "$(head -1 "$not_run_file")"
  fi
}
contract_conductor() { contract_real "contract suite on real Conductor" conductor REAL_NOT_RUN; }
contract_conductor_postgres() {
  contract_real "contract suite: Conductor+Postgres" conductor-postgres PG_NOT_RUN
}

# ---- release artifacts (scripts/dist.sh, tests/install) ------------------------------------------
# The wheel, the sdist, the platform and source gems and the crate, built once into dist/; the
# Python and Ruby tiers below test the wheel and the platform gem, installed as users install
# them, and tests/install installs each artifact into fresh environments (every CPython 3.9-3.13,
# a fresh GEM_HOME; no toolchain on the PATH) and builds the sdist and the source gem.
dist_build() { scripts/dist.sh; }
installed_artifact_tests() { pytest_tier "installed artifacts" tests/install -s; }

# ---- Python package (bindings-python, tests/python) -------------------------------------------
# Installs the wheel from dist/ into .venv, lints the package (ruff, mypy --strict, stubtest
# against the installed extension), then runs pytest on tests/python against the dev server; its
# real-Conductor workflow test uses the same server tier as above and is skipped (and reported
# NOT RUN) when that tier cannot run.
python_package_build() {
  # pydantic (input mapping), mypy, prometheus_client (parses scrapes), pyyaml (the Kubernetes
  # manifests) are what the tests use; the package itself depends on nothing.
  "$PY" -m pip install -q --disable-pip-version-check pydantic mypy prometheus_client pyyaml &&
    "$PY" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps dist/conductor_worker-*.whl
}
python_package_lint() {
  # stubtest: _native.pyi is written by hand, so it is checked against the extension just built
  # (names, parameters, defaults, properties, @final). MYPYPATH makes it read the checked-in
  # stub, not the copy pip installed, so an edited stub is checked without a reinstall.
  .venv/bin/ruff check bindings-python/python tests/python scripts &&
    .venv/bin/ruff format --check bindings-python/python tests/python scripts &&
    .venv/bin/mypy &&
    MYPYPATH=bindings-python/python .venv/bin/python -m mypy.stubtest conductor_worker._native
}
python_tests() {
  timed "python package: install the wheel" python_package_build
  timed "python package: ruff, mypy, stubtest" python_package_lint
  pytest_tier "python package tests" tests/python
}
python_binding_tests() {
  python_tests
  # examples/kubernetes: the manifests checked against what the installed package serves.
  pytest_tier "kubernetes recipe" tests/kubernetes -rs
}
# ------------------------------------------------------------------------------------------------

# ---- Ruby gem (bindings-ruby, tests/ruby) ------------------------------------------------------
# Installs the platform gem from dist/ the way users do (`gem install --local`, after removing
# any earlier install of either gem), then runs minitest on tests/ruby against the installed gem.
# Its real-Conductor workflow test runs against a server started here when the real-server tier
# can run, and reports NOT RUN otherwise.
ruby_gem_install() {
  gem uninstall --all --executables --ignore-dependencies conductor-worker >/dev/null 2>&1 || true
  gem install --local --no-document dist/conductor-worker-*-x86_64-linux.gem
}
ruby_tier() {
  step "ruby gem tests"
  local t0 rc=0 log="$LOG_DIR/ruby.log" real_url=""
  t0=$(now)
  if [ -z "$REAL_NOT_RUN" ]; then
    real_url=$("$PY" tests/tools/conductor_server.py start 2>"$LOG_DIR/ruby-real.log" | tail -1) || real_url=""
  fi
  (cd /tmp && CONDUCTOR_WORKER_INSTALLED=1 CONDUCTOR_SERVER_URL_FOR_TESTS="$real_url" \
    ruby -w -e 'ARGV.each { |f| require f }' "$OLDPWD"/tests/ruby/test_*.rb) 2>&1 | tee "$log" || rc=$?
  [ -z "$real_url" ] || "$PY" tests/tools/conductor_server.py stop >/dev/null 2>&1 || true
  local line
  line=$(grep -E '^[0-9]+ runs, ' "$log" | tail -1 || true)
  line=${line:-no minitest summary line}
  if [ "$rc" -eq 0 ]; then
    record "ruby gem tests" $(($(now) - t0)) "ok: $line"
  else
    record "ruby gem tests" $(($(now) - t0)) "FAILED (exit $rc): $line"
    FAILED=1
  fi
}
ruby_tests() {
  timed "ruby gem: install the platform gem" ruby_gem_install
  ruby_tier
}

# ---- end to end (tests/e2e) ---------------------------------------------------------------------
# Large payloads through real worker programs (core/examples/payload_worker.rs, and the Python and
# Ruby ones under tests/e2e/workers on the package and the gem installed above) on the real server
# (SQLite and PostgreSQL, one of each for the tier) and the dev server in its three storage modes.
# A real server that cannot run is NOT RUN like the contract tiers; a language whose program cannot
# run is a "not run" line in the summary.
e2e_build() { cargo build --release -p conductor-worker --example payload_worker; }
e2e_tests() {
  timed "end-to-end: Rust worker build" e2e_build
  local name="end-to-end large payloads" line k=""
  # A server found missing before is not tried again (a new attempt may download for minutes).
  [ -z "$REAL_NOT_RUN" ] || k="not sqlite"
  [ -z "$PG_NOT_RUN" ] || k="${k:+$k and }not postgres"
  [ -z "$k" ] || record "  $name" 0 "deselected ($k): those servers are NOT RUN"
  pytest_tier "$name" tests/e2e ${k:+-k "$k"}
  while IFS= read -r line; do
    record "  $name" 0 "$line"
    case $line in
      "real Conductor server tier NOT RUN: "*) REAL_NOT_RUN=${REAL_NOT_RUN:-${line#*NOT RUN: }} ;;
      "real Conductor server (postgres) tier NOT RUN: "*) PG_NOT_RUN=${PG_NOT_RUN:-${line#*NOT RUN: }} ;;
    esac
  done < <(sed 's/\x1b\[[0-9;]*m//g' "$LOG_DIR/$name.log" | grep -E '(tier NOT RUN|worker not run): ' || true)
}

# ---- reliability (tests/robustness, tests/faults) ------------------------------------------------
# Bad input from a crafted server and secrets in Python's logs (Rust worker program + Python
# package), then the fault matrix: every scenario for the Rust, Python and Ruby worker programs
# (bench/workers/README.md) against dev servers with fault injection, 1,000 tasks each, runs in
# parallel (~3-5 min); it writes tests/faults/results.md. Ruby rows say "not run: <why>" when
# the Ruby worker cannot load.
reliability_build() { cargo build --release -p conductor-devserver --example bench_worker -p conductor-worker; }
reliability_tests() {
  timed "reliability: release builds" reliability_build
  pytest_tier "bad input and secrets" tests/robustness
  pytest_tier "fault matrix" tests/faults
}

# ---- benchmark tools (tests/bench) -------------------------------------------------------------
# The parts of bench/ whose numbers the README quotes as limits.
bench_tool_tests() { pytest_tier "benchmark tools" tests/bench; }

print_summary() {
  step "summary"
  printf '%s\n' "${SUMMARY[@]}"
}

t_start=$(now)
timed "prerequisites" install_prerequisites
timed "cargo fmt --check" rust_fmt
timed "cargo clippy, module cycles" rust_clippy
timed "cargo test" rust_tests
timed "dev server release build" build_devserver
timed "release artifacts: scripts/dist.sh" dist_build
timed "ruff (tests/)" python_lint
contract_devserver
contract_conductor
contract_conductor_postgres
python_binding_tests
ruby_tests
installed_artifact_tests
e2e_tests
bench_tool_tests
reliability_tests
print_summary
echo "total $(($(now) - t_start)) s"

not_run_lines() {
  [ -z "$REAL_NOT_RUN" ] || printf '\033[1;31mreal Conductor server tier NOT RUN: %s\033[0m\n' "$REAL_NOT_RUN"
  [ -z "$PG_NOT_RUN" ] || printf '\033[1;31mreal Conductor server (postgres) tier NOT RUN: %s\033[0m\n' "$PG_NOT_RUN"
}
if [ "$FAILED" -ne 0 ]; then
  printf '\n\033[1;31mFAILED\033[0m (see above)\n'
  not_run_lines
  exit 1
fi
if [ -n "$REAL_NOT_RUN$PG_NOT_RUN" ]; then
  printf '\nEverything that ran passed, but NOT every real-server tier.\n'
  not_run_lines
  [ "${REQUIRE_REAL_CONDUCTOR:-0}" = 1 ] && exit 1
  exit 0
fi
printf '\n\033[1;32mall passed\033[0m (including the real Conductor server tiers, SQLite and Postgres)\n'
