#!/usr/bin/env bash
# The benchmark harness in one command: installs what it needs (bench/setup.sh), then runs every
# runtime and mode side by side with conductor-python 2.0.0 and the physical limit on one dev
# server, and writes bench/results/latest.md, latest.json and latest.png.
# Usage: bench/run.sh [--quick] [--only SCENARIOS] [--programs KEYS]   (bench/run.py --help)
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
bench/setup.sh
exec .venv/bin/python bench/run.py "$@"
