#!/usr/bin/env bash
# The property tests (fuzzing) over task/result decoding, the batch-poll decoder and the
# configuration parser, run much longer than in CI (where each property gets proptest's default
# 256 cases). Usage: tests/fuzz.sh [CASES]   (default 20000 per property; release build)
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
CASES=${1:-20000}
export PROPTEST_CASES=$CASES
echo "fuzzing with $CASES cases per property"
t0=$(date +%s)
cargo test --release -p conductor-worker --test fuzz -- --test-threads=2
cargo test --release -p conductor-worker --lib decode_props -- --test-threads=2
echo "fuzz: all properties held for $CASES cases each ($(($(date +%s) - t0)) s)"
