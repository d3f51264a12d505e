"""The worker programs under test, one per language, started as a user starts them: the
environment names the server, the program polls one task type and prints ``ready`` once it
polls and ``called <taskId>`` whenever its function runs (``core/examples/payload_worker.rs``,
``workers/payload_worker.py``, ``workers/payload_worker.rb``)."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Self

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
LANGUAGES = ("rust", "python", "ruby")
READY_BUDGET_S = 30.0
STOP_BUDGET_S = 40.0  # the programs drain within 30 s
NOT_RUN: dict[str, str] = {}  # language -> why its program cannot run here
_PROBED: set[str] = set()

RUST_BUILD = "cargo build --release -p conductor-worker --example payload_worker"


def argv(language: str) -> list[str]:
    """The command that runs ``language``'s program (the task type is appended)."""
    if language == "rust":
        target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
        return [str(target / "release/examples/payload_worker")]
    if language == "python":
        return [str(ROOT / ".venv/bin/python"), str(HERE / "workers/payload_worker.py")]
    return ["ruby", str(HERE / "workers/payload_worker.rb")]


def _probe(language: str) -> str | None:
    command = argv(language)
    if language == "rust":
        if not Path(command[0]).is_file():
            return f"{command[0]} is not built ({RUST_BUILD})"
        return None
    check = (
        [command[0], "-c", "import conductor_worker"]
        if language == "python"
        else [command[0], "-e", 'require "conductor_worker"']
    )
    try:
        result = subprocess.run(check, check=False, capture_output=True, text=True, timeout=60, cwd="/")
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{' '.join(check)} cannot run: {e}"
    if result.returncode != 0:
        # The line naming the error (Ruby's backtrace follows it, Python's precedes it).
        lines = result.stderr.strip().splitlines() or [f"exit {result.returncode}"]
        last = next((line for line in lines if "Error" in line), lines[-1])
        package = "the Python package (pip install . into .venv)" if language == "python" else "the Ruby gem"
        return f"{package} does not load: {last[:200]}"
    return None


def unavailable(language: str) -> str | None:
    """Why ``language``'s program cannot run here, or None; asked once per session, so that every
    test of a language runs or none does (the reason is kept for the summary)."""
    if language not in _PROBED:
        _PROBED.add(language)
        why = _probe(language)
        if why is not None:
            NOT_RUN[language] = why
    return NOT_RUN.get(language)


class WorkerProgram:
    """One running worker program for ``task_type`` against the server at ``api``."""

    def __init__(self, language: str, task_type: str, api: str) -> None:
        self.language = language
        self.task_type = task_type
        fd, name = tempfile.mkstemp(prefix=f"e2e-{language}-", suffix=".log")
        self.log = Path(name)
        env = {
            **os.environ,
            "CONDUCTOR_SERVER_URL": api,
            "CONDUCTOR_WORKER_JOURNAL": "off",
            "RUST_LOG": os.environ.get("RUST_LOG", "info"),
        }
        with os.fdopen(fd, "wb") as stderr:
            self.proc = subprocess.Popen(
                [*argv(language), task_type], stdout=subprocess.PIPE, stderr=stderr,
                stdin=subprocess.DEVNULL, env=env, cwd="/tmp", text=True,
            )  # fmt: skip
        self.called: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(READY_BUDGET_S):
            self.kill()
            tail = self.tail()
            self.log.unlink(missing_ok=True)
            raise RuntimeError(f"the {language} worker never printed ready; its stderr: {tail}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            word, _, rest = line.strip().partition(" ")
            if word == "ready":
                self._ready.set()
            elif word == "called":
                self.called.append(rest)

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> tuple[int | None, float]:
        """SIGTERM; the exit code (None if it did not exit within the budget) and the seconds taken."""
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=STOP_BUDGET_S)
        except subprocess.TimeoutExpired:
            code = None
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
        self.log.unlink(missing_ok=True)
