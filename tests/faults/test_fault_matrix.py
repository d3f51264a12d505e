"""The fault matrix: every scenario for every runtime (Rust, Python, Ruby worker programs), judged
from the dev servers' own stats. All runs go at once in a pool (``FAULT_MATRIX_PARALLEL``, default
8: most of a run is waiting for a fault to end); each run is then one test, so a failure names its
scenario and runtime. The table goes to ``tests/faults/results.md`` when the whole matrix ran.

    .venv/bin/python -m pytest tests/faults                       # the whole matrix (~5 min)
    .venv/bin/python -m pytest tests/faults -k "sigkill and rust"  # one run (table printed only)

Needs the release builds: ``cargo build --release -p conductor-devserver --example bench_worker
-p conductor-worker`` (tests/run_all.sh does it) and the Python package in ``.venv``.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from faults.harness import RUNTIMES, SCENARIOS, Result, dump, run, table

TASKS = int(os.environ.get("FAULT_MATRIX_TASKS", "1000"))
PARALLEL = int(os.environ.get("FAULT_MATRIX_PARALLEL", "8"))
HERE = Path(__file__).resolve().parent
IDS = [(s.key, rt.name) for s in SCENARIOS for rt in RUNTIMES]


@pytest.fixture(scope="module")
def matrix(request: pytest.FixtureRequest) -> dict[tuple[str, str], Result]:
    selected = {
        (item.callspec.params["scenario"], item.callspec.params["runtime"])
        for item in request.session.items
        if hasattr(item, "callspec") and item.originalname == "test_fault_scenario"
    }
    runs = [(s, rt) for s in SCENARIOS for rt in RUNTIMES if (s.key, rt.name) in selected]
    # Longest first, so the pool ends together.
    runs.sort(key=lambda p: (p[0].servers, "down" in p[0].key or "slow" in p[0].key), reverse=True)
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        futures = {(s.key, rt.name): pool.submit(run, s, rt, TASKS) for s, rt in runs}
        results = {k: f.result() for k, f in futures.items()}
    wall = time.monotonic() - t0
    ordered = [results[k] for k in IDS if k in results]
    text = table(ordered, TASKS, wall)
    print("\n" + text)
    if len(selected) == len(IDS) and TASKS >= 1000:
        (HERE / "results.md").write_text(text)
        (HERE / "results.json").write_text(dump(ordered) + "\n")
    return results


@pytest.mark.parametrize(("scenario", "runtime"), IDS, ids=[f"{s}-{r}" for s, r in IDS])
def test_fault_scenario(matrix: dict[tuple[str, str], Result], scenario: str, runtime: str) -> None:
    result = matrix[(scenario, runtime)]
    if result.not_run:
        pytest.skip(f"not run: {result.not_run}")
    detail = f"{scenario}/{runtime}: {result.completed}/{result.tasks} completed, notes: {result.notes}"
    assert not result.failures, f"{'; '.join(result.failures)} ({detail})"
