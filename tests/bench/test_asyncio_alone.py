"""bench/asyncio_alone.py, the ceiling the benchmark shows for asyncio workers: it must measure
real sleeps (never faster than concurrency / sleep) and refuse nonsense arguments by name."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "asyncio_alone.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], check=False, capture_output=True, text=True, timeout=60)


def test_the_rate_is_bounded_by_concurrency_over_the_sleep() -> None:
    r = run("--concurrency", "20", "--tasks", "200", "--sleep-ms", "20")
    assert r.returncode == 0, r.stderr
    m = re.fullmatch(r"([0-9.]+) tasks/s\n", r.stdout)
    assert m, r.stdout
    # 200 tasks, 20 at a time, 20 ms each: 10 rounds, at least 0.2 s, so at most 1,000 tasks/s.
    assert 0 < float(m.group(1)) <= 1000


def test_invalid_arguments_are_named() -> None:
    r = run("--concurrency", "0", "--tasks", "10")
    assert r.returncode == 2
    assert "--concurrency and --tasks must be >= 1" in r.stderr
