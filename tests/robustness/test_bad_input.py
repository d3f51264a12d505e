"""Bad input from the server, end to end, for the Rust worker program and the Python package: a
10 MB input, JSON nested 100,000 deep, invalid UTF-8, a field of the wrong type, a task without
an id, and (Python) input that does not fit the function and output that JSON cannot hold (NaN,
Infinity, an object). Each fails that one task clearly (or, for the 10 MB input, just works), the
worker goes on with the next task, and the process neither crashes nor hangs: it exits 0 on
SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from robustness.crafted_server import TASK_TYPE, CraftedServer, batch, task_json

ROOT = Path(__file__).resolve().parents[2]
RUST_WORKER = ROOT / "target/release/examples/bench_worker"
TERMINAL_FAIL = "FAILED_WITH_TERMINAL_ERROR"

BIG = "x" * (10 * 1024 * 1024)
DEEP = "[" * 100_000 + "]" * 100_000


def crafted_bodies() -> list[bytes]:
    """Each bad task in its own poll answer, then a batch mixing good and bad tasks."""
    # The input's string value holds bytes that are not UTF-8.
    bad_utf8 = task_json("utf8", '{"s":"').removesuffix(b"}") + b'\xff\xfe\x80"}}'
    return [
        batch(task_json("big", f'{{"blob":"{BIG}"}}')),
        batch(task_json("deep", f'{{"x":{DEEP}}}')),
        batch(bad_utf8),
        batch(task_json("wrongtype", "{}").replace(b'"status":"IN_PROGRESS"', b'"pollCount":"many"')),
        # Not a list at all: the poll fails (logged), the worker polls again.
        task_json("not-a-list"),
        batch(b'{"inputData":{}}', task_json("after-noid")),
        batch(task_json("mixed-ok-1"), task_json("mixed-deep", f'{{"x":{DEEP}}}'), task_json("mixed-ok-2")),
    ]


EXPECTED: dict[str, tuple[str, str]] = {
    # task id: (status, a word the reason must contain)
    "big": ("COMPLETED", ""),
    "deep": (TERMINAL_FAIL, "recursion limit"),
    "utf8": (TERMINAL_FAIL, "UTF-8"),
    "wrongtype": (TERMINAL_FAIL, "invalid type"),
    "after-noid": ("COMPLETED", ""),
    "mixed-ok-1": ("COMPLETED", ""),
    "mixed-deep": (TERMINAL_FAIL, "recursion limit"),
    "mixed-ok-2": ("COMPLETED", ""),
}


class Proc:
    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.err = log.open("wb")
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=self.err, stdin=subprocess.DEVNULL, env={**os.environ, **env}, cwd=ROOT
        )
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(60):
            self.proc.kill()
            raise AssertionError(f"the worker never printed ready: {self.stderr()}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip() == b"ready":
                self.ready.set()

    def stderr(self) -> str:
        self.err.flush()
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=40)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.err.close()


def check(results: dict[str, dict[str, Any]], expected: dict[str, tuple[str, str]]) -> None:
    for task_id, (status, word) in expected.items():
        got = results[task_id]
        assert got["status"] == status, f"{task_id}: {got['status']} {got.get('reasonForIncompletion')!r}"
        if word:
            reason = got.get("reasonForIncompletion") or ""
            assert word in reason, f"{task_id}: the reason does not say what is wrong: {reason!r}"


PY_WORKER = """
import math, sys
from conductor_worker import Runner, worker

@worker("crafted", concurrency=2)
def crafted(blob: str = "", n: int = 0, kind: str = "", **rest: object) -> dict:
    if kind == "nan":
        return {"v": float("nan")}
    if kind == "inf":
        return {"v": float("inf")}
    if kind == "ninf":
        return {"nested": [1, {"v": -math.inf}]}
    if kind == "object":
        return {"v": object()}
    return {"len": len(blob), "n": n}

runner = Runner(journal="off")
runner.start()
print("ready", flush=True)
runner.run()
"""

PY_BODIES = [
    batch(task_json("py-nan", '{"kind":"nan"}')),
    batch(task_json("py-inf", '{"kind":"inf"}')),
    batch(task_json("py-ninf", '{"kind":"ninf"}')),
    batch(task_json("py-object", '{"kind":"object"}')),
    batch(task_json("py-misfit", '{"n":"many"}')),
    batch(task_json("py-after", '{"n":3}')),
]

PY_EXPECTED: dict[str, tuple[str, str]] = {
    "py-nan": (TERMINAL_FAIL, "is NaN, which JSON cannot represent"),
    "py-inf": (TERMINAL_FAIL, "is inf, which JSON cannot represent"),
    "py-ninf": (TERMINAL_FAIL, "is -inf, which JSON cannot represent"),
    "py-object": (TERMINAL_FAIL, "serialis"),
    "py-misfit": (TERMINAL_FAIL, "'n'"),
    "py-after": ("COMPLETED", ""),
}


@pytest.mark.parametrize("runtime", ["rust", "python"])
def test_bad_input_fails_only_its_task_and_the_worker_goes_on(runtime: str, tmp_path: Path) -> None:
    bodies = crafted_bodies() + (PY_BODIES if runtime == "python" else [])
    expected = {**EXPECTED, **(PY_EXPECTED if runtime == "python" else {})}
    server = CraftedServer(bodies)
    env = {"CONDUCTOR_SERVER_URL": server.api, "CONDUCTOR_WORKER_JOURNAL": "off", "RUST_LOG": "warn"}
    if runtime == "rust":
        if not RUST_WORKER.is_file():
            pytest.fail(f"{RUST_WORKER} is not built: cargo build --release --example bench_worker -p conductor-worker")
        args = [str(RUST_WORKER), "--mode", "tokio", "--task-type", TASK_TYPE, "--concurrency", "2", "--work", "noop"]
    else:
        script = tmp_path / "crafted_worker.py"
        script.write_text(PY_WORKER)
        args = [sys.executable, str(script)]
    worker = Proc(args, env, tmp_path / "worker.log")
    try:
        results = server.wait_results(list(expected), within=90)
        check(results, expected)
        if runtime == "python":
            assert results["py-after"]["outputData"] == {"len": 0, "n": 3}
        else:
            assert results["big"]["outputData"] == {}
        # Still polling after all of it (no crash, no hang), and a clean exit on SIGTERM.
        polls = server.polls
        time.sleep(1.0)
        assert worker.proc.poll() is None, f"the worker died: {worker.stderr()}"
        assert server.polls > polls, "the worker stopped polling"
    finally:
        code = worker.stop()
        server.stop()
    assert code == 0, f"exit {code}: {worker.stderr()}"
    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert "panicked" not in log, log[-2000:]
    if runtime == "python":
        # The core's error reaches Python's logging (the last-resort handler prints it); the Rust
        # worker program installs no log subscriber, so it has nothing to say here.
        assert "without a readable taskId" in log, "the task without an id went unreported"
