"""Start and stop the dev server binary (``conductor-devserver``) for tests.

    with devserver("--auth", "key:secret") as dev:
        dev.url   # http://127.0.0.1:PORT   (/health, /admin/...)
        dev.api   # http://127.0.0.1:PORT/api

The binary is ``$CONDUCTOR_DEVSERVER_BIN``, else ``target/release/conductor-devserver``, else
``target/debug/conductor-devserver`` (build it with ``cargo build --release -p conductor-devserver``).
The pytest fixture ``devserver_fixture`` is in ``tools.fixtures``.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LISTENING = "conductor-devserver listening on "
STARTUP_BUDGET_S = 20.0


def binary() -> Path:
    """The dev server binary: $CONDUCTOR_DEVSERVER_BIN, else the release build, else debug."""
    explicit = os.environ.get("CONDUCTOR_DEVSERVER_BIN")
    if explicit:
        if not Path(explicit).is_file():
            raise FileNotFoundError(f"CONDUCTOR_DEVSERVER_BIN={explicit} does not exist")
        return Path(explicit)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    for path in (target / "release/conductor-devserver", target / "debug/conductor-devserver"):
        if path.is_file():
            return path
    raise FileNotFoundError("conductor-devserver is not built: run `cargo build --release -p conductor-devserver`")


class DevServer:
    """A running dev server process; ``url`` is its root, ``api`` the base URL with ``/api``."""

    def __init__(self, *flags: str) -> None:
        self.flags = flags
        fd, name = tempfile.mkstemp(prefix="conductor-devserver-", suffix=".log")
        self.stderr_log = Path(name)
        with os.fdopen(fd, "wb") as stderr:
            self.process = subprocess.Popen(
                [str(binary()), "--port", "0", *flags],
                stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, text=True,
            )  # fmt: skip
        assert self.process.stdout is not None
        line = self._first_line()
        if not line.startswith(LISTENING):
            why = f"the dev server did not start (flags {flags}): stdout {line!r}, stderr {self.stderr()!r}"
            self.stop()
            raise RuntimeError(why)
        self.url = line[len(LISTENING) :].strip().rstrip("/")
        self.api = self.url + "/api"
        # Keep reading stdout so a chatty server never blocks on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()
        deadline = time.monotonic() + STARTUP_BUDGET_S
        while True:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.05)

    def _first_line(self) -> str:
        result: list[str] = []
        assert self.process.stdout is not None
        reader = threading.Thread(target=lambda: result.append(self.process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(STARTUP_BUDGET_S)
        return result[0] if result else ""

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for _ in self.process.stdout:
            pass

    def stderr(self) -> str:
        try:
            return self.stderr_log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.stderr_log.unlink(missing_ok=True)


@contextmanager
def devserver(*flags: str) -> Iterator[DevServer]:
    server = DevServer(*flags)
    try:
        yield server
    finally:
        server.stop()
