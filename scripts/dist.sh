#!/usr/bin/env bash
# Builds every release artifact into dist/ (and nothing else there), on this machine:
#
#   conductor_worker-<v>-cp39-abi3-manylinux_2_17_x86_64.whl   one wheel for CPython 3.9+, glibc 2.17+
#   conductor_worker-<v>.tar.gz                                 the sdist (pip builds it with cargo)
#   conductor-worker-<v>-x86_64-linux.gem                       the platform gem: prebuilt, per Ruby minor
#   conductor-worker-<v>.gem                                    the source gem (gem install runs cargo)
#   conductor-worker-<v>.crate                                  the Rust crate (cargo package, verified)
#
# The wheel and the gem's extensions are linked against glibc 2.17 with zig (PyPI's ziglang, through
# maturin and cargo-zigbuild), so they load on any x86_64 Linux from 2014 on (CentOS 7, Debian 8,
# Ubuntu 14.04 and later). The build tools live in a venv under ~/.cache/conductor-worker (pinned
# below, installed once); the cargo build trees stay in target/, so a second run is incremental.
#
# Usage: scripts/dist.sh              (idempotent)
#   DIST_RUBIES="ruby3.1 ruby3.2 ..."  the Ruby interpreters to prebuild the platform gem for
#                                      (default: the `ruby` on the PATH); one extension per minor
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

TOOLS=${XDG_CACHE_HOME:-$HOME/.cache}/conductor-worker/dist-tools
TOOL_VERSIONS=(maturin==1.16.0 ziglang==0.17.1 auditwheel==6.8.2 cargo-zigbuild==0.24.1)
ZIG_TARGET=x86_64-unknown-linux-gnu.2.17   # cargo-zigbuild's way to say "link for glibc 2.17"
MAX_WHEEL_BYTES=$((10 * 1024 * 1024))
NATIVE_DIR=bindings-ruby/lib/conductor_worker   # the platform gem's <major.minor>/ extensions
STAGE=target/dist                               # everything is built here, then moved to dist/

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'dist.sh: %s\n' "$*" >&2; exit 1; }

build_tools() {
  local stamp="$TOOLS/.versions"
  if [ "$(cat "$stamp" 2>/dev/null)" != "${TOOL_VERSIONS[*]}" ]; then
    log "installing the build tools into $TOOLS: ${TOOL_VERSIONS[*]}"
    rm -rf "$TOOLS"
    python3 -m venv "$TOOLS"
    "$TOOLS/bin/python" -m pip install -q --disable-pip-version-check "${TOOL_VERSIONS[@]}"
    printf '%s' "${TOOL_VERSIONS[*]}" >"$stamp"
  fi
  # maturin runs `python -m ziglang` with the first python on the PATH.
  export PATH="$TOOLS/bin:$PATH"
}

project_version() {
  cargo metadata --no-deps --format-version 1 |
    python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "conductor-worker"))'
}

python_artifacts() {
  log "Python wheel (release, stripped, manylinux2014 through zig) and sdist"
  maturin build --quiet --release --strip --zig --compatibility manylinux2014 --out "$STAGE"
  maturin sdist --out "$STAGE"
}

# One stripped extension per Ruby in DIST_RUBIES, at $NATIVE_DIR/<major.minor>/.
ruby_extensions() {
  rm -rf "$NATIVE_DIR"/[0-9]*/
  local ruby minor built
  for ruby in ${DIST_RUBIES:-ruby}; do
    minor=$("$ruby" -e 'print RUBY_VERSION[/\A\d+\.\d+/]') || die "cannot run $ruby"
    log "Ruby $minor extension (release, glibc 2.17 through zig)"
    RUBY=$(command -v "$ruby") cargo-zigbuild zigbuild --quiet --locked --release \
      -p conductor-worker-ruby --target "$ZIG_TARGET" --target-dir "target/ruby-$minor"
    built="target/ruby-$minor/x86_64-unknown-linux-gnu/release/libconductor_worker_ruby.so"
    mkdir -p "$NATIVE_DIR/$minor"
    cp "$built" "$NATIVE_DIR/$minor/conductor_worker_ruby.so"
    strip --strip-unneeded "$NATIVE_DIR/$minor/conductor_worker_ruby.so"
  done
}

ruby_gems() {
  log "Ruby platform gem and source gem"
  rm -f conductor-worker-*.gem
  CONDUCTOR_WORKER_GEM_PLATFORM=x86_64-linux gem build --silent bindings-ruby/conductor-worker.gemspec
  mv "conductor-worker-$VERSION-x86_64-linux.gem" "$STAGE/"
  gem build --silent bindings-ruby/conductor-worker.gemspec
  mv "conductor-worker-$VERSION.gem" "$STAGE/"
}

rust_crate() {
  log "Rust crate (cargo package: packaged and built from the package)"
  local dirty=()
  if [ -n "$(git status --porcelain 2>/dev/null)" ]; then
    echo "note: the working tree has uncommitted changes; the crate includes them"
    dirty=(--allow-dirty)
  fi
  cargo package --quiet --locked -p conductor-worker "${dirty[@]}"
  cp "target/package/conductor-worker-$VERSION.crate" "$STAGE/"
}

check_wheel() {
  local wheel=$1 size verdict
  size=$(stat -c %s "$wheel")
  [ "$size" -le "$MAX_WHEEL_BYTES" ] || die "$wheel is $size bytes, more than $MAX_WHEEL_BYTES"
  verdict=$(auditwheel show "$wheel" | tr '\n' ' ' | grep -o 'consistent with the following platform tag: "[^"]*"') ||
    die "auditwheel show found no manylinux policy for $wheel"
  printf '  wheel   %s\n          %s bytes; auditwheel: %s\n' "$(basename "$wheel")" "$size" "$verdict"
}

# The newest glibc symbol version an extension needs.
glibc_needed() { objdump -T "$1" | grep -o 'GLIBC_[0-9.]*' | sort -Vu | tail -1; }

summary() {
  log "dist/"
  check_wheel dist/conductor_worker-"$VERSION"-cp39-abi3-*.whl
  local so
  for so in "$NATIVE_DIR"/[0-9]*/conductor_worker_ruby.so; do
    printf '  gem     Ruby %s extension %s bytes, needs %s\n' \
      "$(basename "$(dirname "$so")")" "$(stat -c %s "$so")" "$(glibc_needed "$so")"
  done
  ls -l dist/ | tail -n +2
}

build_tools
VERSION=$(project_version)
rm -rf "$STAGE" && mkdir -p "$STAGE" dist
python_artifacts
ruby_extensions
ruby_gems
rust_crate
rm -f dist/*
mv "$STAGE"/* dist/
summary
