#!/usr/bin/env python3
"""The benchmark harness: every runtime and mode side by side with conductor-python 2.0.0 and
the physical limit, on one dev server, in one run. ``bench/run.sh`` installs what it needs and
runs this file; bench/README.md says what is measured and how.

    bench/run.sh                 # the full run (about 30 minutes on 2 cores)
    bench/run.sh --quick         # a smoke test: fewer tasks, one run each
    bench/run.sh --only noop-10,idle --programs rust,py-sync,peer-sync

Writes bench/results/latest.md, latest.json and latest.png (``--out`` for another stem).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import functools
import http.client
import json
import os
import platform
import random
import re
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "target" / "release"
WORKERS = ROOT / "bench" / "workers"
TICK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGESIZE") // 1024


# What a failed measurement raises: it is reported in the table, and the run goes on.
FAILURES = (
    RuntimeError,
    OSError,
    ValueError,
    KeyError,
    TypeError,
    http.client.HTTPException,
    subprocess.SubprocessError,
)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- the dev server ------------------------------------------------------------------------------


class DevServer:
    """A conductor-devserver process on a free port, with a keep-alive admin connection."""

    def __init__(self, workdir: Path, name: str, args: list[str] | None = None) -> None:
        self.workdir, self.name, self.args = workdir, name, list(args or [])
        self.restarts = 0
        self._faults: dict[str, Any] | None = None
        self._start()

    def _start(self) -> None:
        workdir, name = self.workdir, self.name
        self.out = open(workdir / f"{name}.out", "w+")  # noqa: SIM115 (closed in stop())
        self.err = open(workdir / f"{name}.err", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(RELEASE / "conductor-devserver"), "--port", "0", *self.args],
            stdout=self.out,
            stderr=self.err,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        url = ""
        while time.monotonic() < deadline and not url:
            time.sleep(0.05)
            self.out.seek(0)
            m = re.search(r"listening on (http://\S+)", self.out.read())
            url = m.group(1) if m else ""
            if self.proc.poll() is not None:
                break
        if not url:
            self.stop()
            raise RuntimeError(f"the dev server did not start: {(workdir / f'{name}.err').read_text()[-2000:]}")
        self.url = url
        self.api = url + "/api"
        self._host = url.removeprefix("http://")
        self._conn = http.client.HTTPConnection(self._host, timeout=30)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"content-type": "application/json"} if data is not None else {}
        for attempt in (0, 1):
            try:
                self._conn.request(method, path, body=data, headers=headers)
                r = self._conn.getresponse()
                return r.status, r.read()
            except (http.client.HTTPException, OSError):
                self._conn.close()
                self._conn = http.client.HTTPConnection(self._host, timeout=30)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, body: Any = None) -> Any:
        status, data = self.request(method, path, body)
        if status >= 300:
            raise RuntimeError(f"{method} {path}: {status} {data[:300]!r}")
        return json.loads(data) if data else None

    def stats(self) -> dict[str, Any]:
        return self.json("GET", "/admin/stats")  # type: ignore[no-any-return]

    def requests_total(self) -> int:
        return sum(self.stats()["requests"].values())

    def enqueue(self, task_type: str, count: int) -> None:
        left = count
        while left > 0:
            n = min(left, 50_000)
            self.json("POST", "/admin/tasks", {"taskType": task_type, "count": n, "input": {}, "retryCount": 0})
            left -= n

    def faults(self, body: dict[str, Any]) -> None:
        self._faults = body
        self.json("PUT", "/admin/faults", body)

    def rss_mb(self) -> float:
        return _status_kb(self.proc.pid, "VmRSS") / 1024

    def revive(self) -> bool:
        """Starts the server again (on a new port) if something outside killed it; the run in
        progress is then repeated. Counted in the results."""
        if self.proc.poll() is None:
            return False
        log(f"dev server {self.name} died (exit {self.proc.returncode}); starting it again")
        self.stop()
        self.restarts += 1
        self._start()
        if self._faults is not None:
            self.faults(self._faults)
        return True

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()
        self.err.close()


# -- /proc of a process tree ---------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    return data[data.rfind(")") + 2 :].split()


def _status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


class ProcTree:
    """The process tree under one pid: CPU time, summed peak RSS, threads, processes."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.pids: set[int] = {root}
        self.max_procs = 0
        self.max_threads = 0

    def refresh(self) -> None:
        children: dict[int, list[int]] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            fields = _stat_fields(int(entry.name))
            if fields and len(fields) > 2:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
        found = {self.root}
        todo = [self.root]
        while todo:
            for child in children.get(todo.pop(), []):
                if child not in found:
                    found.add(child)
                    todo.append(child)
        self.pids = {p for p in found if os.path.exists(f"/proc/{p}")}
        threads = sum(_status_kb(p, "Threads") for p in self.pids)
        self.max_procs = max(self.max_procs, len(self.pids))
        self.max_threads = max(self.max_threads, threads)

    def cpu_seconds(self) -> float:
        """utime + stime of every live process, plus what reaped children used (cutime, cstime)."""
        total = 0
        for pid in self.pids:
            f = _stat_fields(pid)
            if f and len(f) > 14:
                total += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
        return total / TICK

    def peak_rss_mb(self) -> float:
        """Summed over processes of each one's peak (VmHWM): at least the peak of the sum."""
        return sum(_status_kb(p, "VmHWM") for p in self.pids) / 1024

    def rss_mb(self) -> float:
        return sum(_status_kb(p, "VmRSS") for p in self.pids) / 1024


# -- worker programs -----------------------------------------------------------------------------


@dataclass
class Program:
    key: str
    label: str
    argv: list[str]
    family: str  # rust | python | ruby | peer
    asyncio: bool = False  # runs 1,000 tasks in flight cheaply (the sleep c=1000 scenario)
    multi_server: bool = True
    not_run: str | None = None
    real_server: bool = False  # measured on the real Conductor server too (bench/real_server.py)

    @property
    def is_peer(self) -> bool:
        return self.family == "peer"


# The programs the real Conductor server scenarios run (they are slow: the server is the limit).
REAL_SERVER_PROGRAMS = ("rust", "py-sync", "py-async", "rb-threads", "peer-sync", "peer-async")


def ruby_status() -> tuple[list[str], str | None]:
    """The ruby command that loads our gem, or why the Ruby rows cannot run."""
    script = WORKERS / "ruby_worker.rb"
    if not shutil.which("ruby"):
        return [], "ruby is not installed"
    if not script.exists():
        return [], "bench/workers/ruby_worker.rb does not exist yet"
    # This checkout's extension first (bench/setup.sh builds it), so an older installed gem
    # is never measured by mistake.
    for extra in (["-I", str(ROOT / "bindings-ruby" / "lib")], []):
        r = subprocess.run(
            ["ruby", *extra, "-e", 'require "conductor_worker"'],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if r.returncode == 0:
            return ["ruby", *extra, str(script)], None
    why = (r.stderr.strip().splitlines() or ["(no message)"])[0]
    return [], f"the gem does not load (ruby -e 'require \"conductor_worker\"'): {why[:160]}"


def programs() -> list[Program]:
    py = str(ROOT / ".venv" / "bin" / "python")
    peer = str(ROOT / "bench" / ".venv-peer" / "bin" / "python")
    ruby, ruby_why = ruby_status()
    out = [
        Program("rust", "Rust (tokio)", [str(RELEASE / "examples" / "bench_worker"), "--mode", "tokio"], "rust", True),
        Program("py-sync", "Python threads", [py, str(WORKERS / "python_worker.py"), "--mode", "sync"], "python"),
        Program(
            "py-async", "Python asyncio", [py, str(WORKERS / "python_worker.py"), "--mode", "async"], "python", True
        ),
        Program(
            "py-process", "Python processes", [py, str(WORKERS / "python_worker.py"), "--mode", "process"], "python"
        ),
        Program("rb-threads", "Ruby threads", [*ruby, "--mode", "threads"], "ruby", not_run=ruby_why),
        Program("rb-fibers", "Ruby fibers", [*ruby, "--mode", "fibers"], "ruby", True, not_run=ruby_why),
        Program("rb-ractors", "Ruby Ractors", [*ruby, "--mode", "ractors"], "ruby", not_run=ruby_why),
        Program(
            "peer-sync",
            "conductor-python 2.0.0 (sync)",
            [peer, str(WORKERS / "peer_worker.py"), "--mode", "sync"],
            "peer",
            multi_server=False,
        ),
        Program(
            "peer-async",
            "conductor-python 2.0.0 (asyncio)",
            [peer, str(WORKERS / "peer_worker.py"), "--mode", "async"],
            "peer",
            True,
            multi_server=False,
        ),
    ]
    for p in out:
        p.real_server = p.key in REAL_SERVER_PROGRAMS
        if p.not_run is None and not (Path(p.argv[0]).exists() or shutil.which(p.argv[0])):
            p.not_run = f"{p.argv[0]} is missing (run bench/setup.sh)"
    return out


class WorkerProcess:
    """One running worker program, started in its own session so its whole tree can be stopped."""

    def __init__(
        self,
        program: Program,
        task_types: list[str],
        concurrency: int,
        work: str,
        servers: list[DevServer],
        workdir: Path,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.program = program
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CONDUCTOR_", "conductor."))}
        env["CONDUCTOR_SERVER_URL"] = ",".join(s.api for s in servers)
        env["CONDUCTOR_WORKER_JOURNAL"] = str(workdir / f"journal-{task_types[0]}.jsonl")
        env["PYTHONUNBUFFERED"] = "1"
        env.update(extra_env or {})
        argv = [*program.argv, "--concurrency", str(concurrency), "--work", work]
        for t in task_types:
            argv += ["--task-type", t]
        self.stderr_path = workdir / f"{task_types[0]}.stderr"
        self._stderr = open(self.stderr_path, "w")  # noqa: SIM115 (closed in stop())
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        self.tree = ProcTree(self.proc.pid)
        self.ready_s: float | None = None

    def wait_ready(self, servers: list[DevServer], timeout: float = 90) -> None:
        """Waits for the ``ready`` line, then for the servers to see a poll (conductor-python's
        ``ready`` comes before its worker processes poll)."""
        before = [s.stats()["requests"] for s in servers]
        deadline = time.monotonic() + timeout
        self.wait_ready_line(timeout)
        while True:
            now = [s.stats()["requests"] for s in servers]
            if all(
                n.get("batch_poll", 0) + n.get("poll", 0) > b.get("batch_poll", 0) + b.get("poll", 0)
                for n, b in zip(now, before, strict=True)
            ):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"ready, but no poll reached the servers within {timeout:.0f} s{self._tail()}")
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with {self.proc.returncode}{self._tail()}")
            time.sleep(0.02)
        self.ready_s = time.monotonic() - self.started
        self.tree.refresh()

    def wait_ready_line(self, timeout: float = 90) -> None:
        """Waits for the ``ready`` line on stdout (a worker that exits first raises, with the end
        of its stderr: a mode it does not have is named there)."""
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise RuntimeError(f"no 'ready' within {timeout:.0f} s{self._tail()}")
            chunk = os.read(self.proc.stdout.fileno(), 1)
            if not chunk:
                raise RuntimeError(f"exited with {self.proc.wait()} before 'ready'{self._tail()}")
            line += chunk
        sel.close()
        if line.strip() != b"ready":
            raise RuntimeError(f"printed {line!r} instead of 'ready'")
        self.ready_s = time.monotonic() - self.started
        self.tree.refresh()

    def _tail(self) -> str:
        self._stderr.flush()
        text = self.stderr_path.read_text(errors="replace").strip()
        return f"; stderr: {text[-600:]}" if text else ""

    def stop(self, timeout: float = 40) -> dict[str, Any]:
        """SIGTERM, then waits for the drain; SIGKILL to the session if it does not exit."""
        t0 = time.monotonic()
        result: dict[str, Any] = {}
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                result["killed"] = True
        result["exit_code"] = self.proc.poll()
        result["stop_s"] = round(time.monotonic() - t0, 2)
        # Whatever is left of the session (the worker's own children) goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()
        return result


# -- measurements --------------------------------------------------------------------------------


@dataclass
class Settings:
    quick: bool
    runs: int
    noop_tasks: int
    sleep_rounds: int  # tasks per run = concurrency x rounds (each round is 50 ms of sleeping)
    cpu_tasks: int
    cpu_rounds: int
    run_box_s: float  # a run stops after this long even if not all tasks are done
    idle_window_s: float
    idle_probes: int
    multi_tasks: int
    # The real Conductor server (bench/real_server.py) and the large-payload scenario
    # (bench/payloads.py); defaults for results written before they existed.
    real_tasks: int = 500
    real_runs: int = 1
    real_warmup_tasks: int = 300
    real_probes: int = 25
    real_box_s: float = 60.0
    real_idle_window_s: float = 3.0
    payload_tasks: int = 5


def run_counter() -> Iterator[int]:
    n = 0
    while True:
        n += 1
        yield n


_ids = run_counter()


def drain(
    program: Program,
    servers: list[DevServer],
    loaded: list[DevServer],
    concurrency: int,
    work: str,
    tasks: int,
    settings: Settings,
    workdir: Path,
) -> dict[str, Any]:
    """One run: a fresh worker process, ``tasks`` enqueued on the loaded servers while they are
    paused, the clock started when they resume; stops at the last completion or the time box."""
    task_type = f"{program.key.replace('-', '_')}_{next(_ids)}_{os.getpid()}"
    w = WorkerProcess(program, [task_type], concurrency, work, servers, workdir)
    try:
        w.wait_ready(servers)
        base = [s.stats()["tasks"] for s in loaded]
        per = tasks // len(loaded)
        for s in loaded:
            s.request("POST", "/admin/pause")
        try:
            for s in loaded:
                s.enqueue(task_type, per)
        finally:
            cpu0 = w.tree.cpu_seconds()
            t0 = time.monotonic()
            for s in loaded:
                s.request("POST", "/admin/resume")
        total = per * len(loaded)
        done = 0
        next_tree = t0 + 1.0
        while True:
            elapsed = time.monotonic() - t0
            time.sleep(min(0.05, max(0.005, elapsed / 200)))
            now = [s.stats()["tasks"] for s in loaded]
            t = time.monotonic()
            done = sum(n["completed"] - b["completed"] for n, b in zip(now, base, strict=True))
            bad = sum(
                n[k] - b[k] for n, b in zip(now, base, strict=True) for k in ("failed", "failed_terminal", "timed_out")
            )
            if bad:
                raise RuntimeError(f"{bad} task(s) failed or timed out")
            if done >= total or t - t0 >= settings.run_box_s:
                break
            if t >= next_tree:
                w.tree.refresh()
                next_tree = t + 1.0
            if w.proc.poll() is not None:
                raise RuntimeError(f"the worker exited with {w.proc.returncode}{w._tail()}")
        elapsed = t - t0
        w.tree.refresh()  # processes started during the run (a process pool's) count too
        cpu = w.tree.cpu_seconds() - cpu0
        result = {
            "tasks": done,
            "enqueued": total,
            "complete": done >= total,
            "seconds": round(elapsed, 3),
            "tasks_per_s": done / elapsed,
            "cpu_s_per_1000": cpu / done * 1000 if done else None,
            "cores_busy": cpu / elapsed,
            "peak_rss_mb": w.tree.peak_rss_mb(),
            "procs": w.tree.max_procs,
            "threads": w.tree.max_threads,
            "ready_s": round(w.ready_s or 0, 2),
        }
    finally:
        stopped = w.stop()
    result.update(stopped)
    return result


def measured_rate(what: str, argv: list[str]) -> float:
    """Runs ``what``, a measuring program that prints ``<rate> tasks/s``; its rate."""
    r = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=300)
    m = re.search(r"([0-9.]+) tasks/s", r.stdout)
    if r.returncode != 0 or not m:
        raise RuntimeError(f"{what} failed ({r.returncode}): {r.stdout[-500:]} {r.stderr[-500:]}")
    return float(m.group(1))


def loadgen(server: DevServer, tasks: int) -> float:
    task_type = f"limit_{next(_ids)}_{os.getpid()}"
    return measured_rate(
        "conductor-loadgen",
        [
            str(RELEASE / "conductor-loadgen"),
            "--url",
            server.url,
            "--task-type",
            task_type,
            "--tasks",
            str(tasks),
            "--concurrency",
            "16",
            "--batch",
            "20",
            "--timeout-ms",
            "100",
        ],
    )


def asyncio_alone(concurrency: int, tasks: int, sleep_ms: int) -> float:
    return measured_rate(
        "asyncio_alone.py",
        [
            str(ROOT / ".venv" / "bin" / "python"),
            str(ROOT / "bench" / "asyncio_alone.py"),
            "--concurrency",
            str(concurrency),
            "--tasks",
            str(tasks),
            "--sleep-ms",
            str(sleep_ms),
        ],
    )


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    med: dict[str, Any] = {}
    for key in ("tasks_per_s", "cpu_s_per_1000", "cores_busy", "peak_rss_mb", "procs", "threads", "ready_s"):
        values = [r[key] for r in runs if r.get(key) is not None]
        if values:
            med[key] = statistics.median(values)
    med["complete"] = all(r.get("complete", True) for r in runs)
    med["tasks"] = statistics.median(r["tasks"] for r in runs)
    return med


# -- scenarios -----------------------------------------------------------------------------------


@dataclass
class Scenario:
    id: str
    title: str
    kind: str  # drain | idle | multi
    work: str = "noop"
    concurrency: int = 1
    tasks: int = 0
    limit: str = "none"  # loadgen | ideal | none
    programs: Callable[[Program], bool] = lambda p: True
    results: dict[str, Any] = field(default_factory=dict)
    limit_tasks_per_s: float | None = None
    limit_runs: list[float] = field(default_factory=list)
    # Sleep scenarios: the same tasks on a bare asyncio loop, no server (bench/asyncio_alone.py).
    asyncio_alone_runs: list[float] = field(default_factory=list)
    server_restarts: int = 0


def scenarios(s: Settings) -> list[Scenario]:
    out = [
        Scenario(f"noop-{c}", f"no-op tasks, concurrency {c}", "drain", "noop", c, s.noop_tasks, "loadgen")
        for c in (1, 10, 50)
    ]
    out += [
        Scenario(
            f"sleep-{c}", f"50 ms sleeping tasks, concurrency {c}", "drain", "sleep:50", c, c * s.sleep_rounds, "ideal"
        )
        for c in (10, 50)
    ]
    out.append(
        Scenario(
            "sleep-1000",
            "50 ms sleeping tasks, concurrency 1,000 (async runtimes)",
            "drain",
            "sleep:50",
            1000,
            1000 * s.sleep_rounds,
            "ideal",
            programs=lambda p: p.asyncio,
        )
    )
    out.append(
        Scenario(
            "cpu-2",
            f"CPU-bound tasks ({s.cpu_rounds} rounds of SHA-256), concurrency 2",
            "drain",
            f"cpu:{s.cpu_rounds}",
            2,
            s.cpu_tasks,
        )
    )
    out.append(Scenario("idle", "10 idle task types, concurrency 1 each", "idle", "noop", 1))
    out.append(
        Scenario(
            "multi",
            "multi-homed: 3 servers, tasks on 2, the third slow (answers after 10 s), concurrency 50",
            "multi",
            "noop",
            50,
            s.multi_tasks,
            "loadgen",
            programs=lambda p: p.multi_server,
        )
    )
    import install
    import payloads
    import real_server

    return out + payloads.scenarios(s) + real_server.scenarios(s) + install.scenarios(s)


def attempt(servers: list[DevServer], fn: Callable[[], Any]) -> Any:
    """``fn()``; if it failed because a dev server was killed from outside, once more on a
    fresh one."""
    for s in servers:
        s.revive()
    try:
        return fn()
    except FAILURES:
        if not [s for s in servers if s.revive()]:
            raise
    return fn()


def run_drain_scenario(
    sc: Scenario, progs: list[Program], server: DevServer, settings: Settings, workdir: Path, limit_tasks: int
) -> None:
    """Runs interleaved: run 1 of every program, then run 2 of every program, ..."""
    runs: dict[str, list[dict[str, Any]]] = {p.key: [] for p in progs}
    errors: dict[str, str] = {}
    for i in range(settings.runs):
        if sc.limit == "loadgen":
            sc.limit_runs.append(attempt([server], lambda: loadgen(server, limit_tasks)))
            log(f"{sc.id} run {i + 1}: loadgen {sc.limit_runs[-1]:,.0f} tasks/s")
        if sc.work.startswith("sleep:") and any(p.asyncio for p in progs):
            sc.asyncio_alone_runs.append(asyncio_alone(sc.concurrency, sc.tasks, int(sc.work.split(":")[1])))
            log(f"{sc.id} run {i + 1}: asyncio alone {sc.asyncio_alone_runs[-1]:,.0f} tasks/s")
        for p in progs:
            if p.key in errors:
                continue
            try:
                r = attempt(
                    [server],
                    functools.partial(
                        drain, p, [server], [server], sc.concurrency, sc.work, sc.tasks, settings, workdir
                    ),
                )
            except FAILURES as e:
                errors[p.key] = f"failed: {e}"
                log(f"{sc.id} {p.key}: FAILED: {e}")
                continue
            runs[p.key].append(r)
            log(
                f"{sc.id} run {i + 1}: {p.key:11} {r['tasks_per_s']:9,.0f} tasks/s  "
                f"{r['cpu_s_per_1000'] or 0:.3f} cpu-s/1000  {r['peak_rss_mb']:.0f} MB  "
                f"{r['procs']}p/{r['threads']}t  ({r['tasks']}/{r['enqueued']} in {r['seconds']} s)"
            )
    if sc.limit_runs:
        sc.limit_tasks_per_s = statistics.median(sc.limit_runs)
    elif sc.limit == "ideal":
        sc.limit_tasks_per_s = sc.concurrency / 0.05
    for p in progs:
        if p.key in errors:
            sc.results[p.key] = {"error": errors[p.key], "runs": runs[p.key]}
        else:
            sc.results[p.key] = {"runs": runs[p.key], "median": median_of(runs[p.key])}


def probe_latency(server: DevServer, task_type: str, probes: int) -> list[float]:
    """Pickup latency of single tasks enqueued on an idle worker, from the server's clock:
    ``startTime`` (first poll) minus ``scheduledTime``, in ms."""
    wf = f"probe_{task_type}"
    server.json(
        "POST",
        "/api/metadata/workflow",
        {
            "name": wf,
            "version": 1,
            "tasks": [{"name": task_type, "taskReferenceName": "t", "type": "SIMPLE"}],
            "ownerEmail": "bench@example.com",
        },
    )
    rng = random.Random(7)
    out: list[float] = []
    for _ in range(probes):
        time.sleep(rng.uniform(0.15, 0.6))  # random phase against the worker's poll cycle
        status, body = server.request("POST", "/api/workflow", {"name": wf, "version": 1, "input": {}})
        if status != 200:
            raise RuntimeError(f"start workflow: {status} {body[:200]!r}")
        wid = body.decode().strip().strip('"')
        deadline = time.monotonic() + 10
        while True:
            w = server.json("GET", f"/api/workflow/{wid}")
            t = (w.get("tasks") or [{}])[0]
            if t.get("status") == "COMPLETED":
                out.append(float(t["startTime"] - t["scheduledTime"]))
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"probe task not completed within 10 s: {t.get('status')}")
            time.sleep(0.01)
    return out


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def idle_one(p: Program, server: DevServer, settings: Settings, workdir: Path) -> dict[str, Any]:
    base = f"{p.key.replace('-', '_')}_idle_{next(_ids)}"
    types = [f"{base}_{i}" for i in range(10)]
    w = WorkerProcess(p, types, 1, "noop", [server], workdir)
    try:
        w.wait_ready([server])
        time.sleep(2.0 if not settings.quick else 1.0)  # let start-up settle
        w.tree.refresh()
        r0, c0, t0 = server.requests_total(), w.tree.cpu_seconds(), time.monotonic()
        time.sleep(settings.idle_window_s)
        r1, c1, t1 = server.requests_total(), w.tree.cpu_seconds(), time.monotonic()
        w.tree.refresh()
        rss_now = w.tree.rss_mb()
        lat = probe_latency(server, types[0], settings.idle_probes)
        w.tree.refresh()
        res: dict[str, Any] = {
            "requests_per_min": (r1 - r0) / (t1 - t0) * 60,
            "requests_per_min_per_type": (r1 - r0) / (t1 - t0) * 60 / len(types),
            "idle_cpu_pct": (c1 - c0) / (t1 - t0) * 100,
            "rss_mb": rss_now,
            "peak_rss_mb": w.tree.peak_rss_mb(),
            "largest_process_mb": max((_status_kb(pid, "VmRSS") for pid in w.tree.pids), default=0) / 1024,
            "procs": w.tree.max_procs,
            "threads": w.tree.max_threads,
            "pickup_ms": lat,
            "pickup_p50_ms": percentile(lat, 0.5),
            "pickup_p99_ms": percentile(lat, 0.99),
            "pickup_mean_ms": statistics.fmean(lat),
            "ready_s": round(w.ready_s or 0, 2),
        }
    finally:
        stopped = w.stop()
    res.update(stopped)
    return res


def run_idle(sc: Scenario, progs: list[Program], server: DevServer, settings: Settings, workdir: Path) -> None:
    for p in progs:
        try:
            res = attempt([server], functools.partial(idle_one, p, server, settings, workdir))
        except FAILURES as e:
            sc.results[p.key] = {"error": f"failed: {e}"}
            log(f"idle {p.key}: FAILED: {e}")
            continue
        sc.results[p.key] = {"median": res, "runs": [res]}
        log(
            f"idle {p.key:11} {res['requests_per_min']:7.0f} req/min  cpu {res['idle_cpu_pct']:.2f} %  "
            f"rss {res['rss_mb']:.0f} MB  {res['procs']}p/{res['threads']}t  pickup p50 {res['pickup_p50_ms']:.0f} "
            f"p99 {res['pickup_p99_ms']:.0f} ms"
        )


def run_multi(sc: Scenario, progs: list[Program], server: DevServer, settings: Settings, workdir: Path) -> None:
    """The main server and a second one get the tasks; a third is polled but answers after 10 s."""
    second = DevServer(workdir, "server2")
    slow = DevServer(workdir, "server3")
    try:
        slow.faults({"latency_ms": 10_000})
        runs: dict[str, list[dict[str, Any]]] = {p.key: [] for p in progs}
        errors: dict[str, str] = {}
        for i in range(settings.runs):
            # The limit: the load generator on one server (the two loaded servers share the cores).
            sc.limit_runs.append(attempt([server], lambda: loadgen(server, settings.noop_tasks)))
            for p in progs:
                if p.key in errors:
                    continue
                try:
                    r = attempt(
                        [server, second, slow],
                        functools.partial(
                            drain,
                            p,
                            [server, second, slow],
                            [server, second],
                            sc.concurrency,
                            sc.work,
                            sc.tasks,
                            settings,
                            workdir,
                        ),
                    )
                except FAILURES as e:
                    errors[p.key] = f"failed: {e}"
                    log(f"multi {p.key}: FAILED: {e}")
                    continue
                runs[p.key].append(r)
                log(
                    f"multi run {i + 1}: {p.key:11} {r['tasks_per_s']:9,.0f} tasks/s ({r['tasks']}/{r['enqueued']} in {r['seconds']} s)"
                )
        sc.limit_tasks_per_s = statistics.median(sc.limit_runs) if sc.limit_runs else None
        for p in progs:
            sc.results[p.key] = (
                {"error": errors[p.key], "runs": runs[p.key]}
                if p.key in errors
                else {"runs": runs[p.key], "median": median_of(runs[p.key])}
            )
    finally:
        second.stop()
        slow.stop()


# -- reporting -----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    mem_kb = 0
    try:
        with open("/proc/meminfo") as f:
            mem_kb = int(f.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    rustc = subprocess.run(["rustc", "--version"], check=False, capture_output=True, text=True).stdout.strip()
    ruby = (
        subprocess.run(["ruby", "--version"], check=False, capture_output=True, text=True).stdout.strip()
        if shutil.which("ruby")
        else ""
    )
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "rustc": rustc,
        "ruby": ruby,
        "load_average_at_start": os.getloadavg()[0],
    }


def annotate(scs: list[Scenario], progs: list[Program]) -> None:
    """Ratios to conductor-python (its better flavour in the same scenario) and to the limit."""
    for sc in scs:
        # A peer that completed almost nothing within the time box (it stalls at 1,000 asyncio
        # tasks) gives no meaningful ratio: the table says so instead.
        enough = min(100, max(1, sc.tasks // 2))
        peers = [
            sc.results[p.key]["median"]
            for p in progs
            if p.is_peer and sc.results.get(p.key, {}).get("median", {}).get("tasks", 0) >= enough
        ]
        best_rate = max((m["tasks_per_s"] for m in peers if "tasks_per_s" in m), default=None)
        best_cpu = min((m["cpu_s_per_1000"] for m in peers if m.get("cpu_s_per_1000")), default=None)
        best_rss = min((m["peak_rss_mb"] for m in peers if m.get("peak_rss_mb")), default=None)
        sc_peer = {"tasks_per_s": best_rate, "cpu_s_per_1000": best_cpu, "peak_rss_mb": best_rss}
        sc.results["_peer_best"] = sc_peer
        for p in progs:
            m = sc.results.get(p.key, {}).get("median")
            if not m:
                continue
            for key in ("x_peer_rate", "x_peer_cpu", "of_limit"):
                m.pop(key, None)
            if best_rate and "tasks_per_s" in m:
                m["x_peer_rate"] = m["tasks_per_s"] / best_rate
            if best_cpu and m.get("cpu_s_per_1000"):
                m["x_peer_cpu"] = m["cpu_s_per_1000"] / best_cpu
            if sc.limit_tasks_per_s and "tasks_per_s" in m:
                m["of_limit"] = m["tasks_per_s"] / sc.limit_tasks_per_s
    import real_server

    real_server.annotate_server_cpu(scs, progs)


def fmt(v: Any, spec: str = ",.0f", suffix: str = "") -> str:
    if v is None:
        return ""
    return f"{v:{spec}}{suffix}"


def reason_row(label: str, why: str, columns: int) -> str:
    """A table row saying why a runtime has no figures (on one line, in its first cell)."""
    return f"| {label} | {' '.join(why.split())[:300]} |" + " |" * (columns - 1)


def cell(sc: Scenario, p: Program) -> dict[str, Any] | str:
    if p.not_run:
        return f"not run: {p.not_run}"
    r = sc.results.get(p.key)
    if r is None:
        if not sc.programs(p):
            return "n/a"
        return "not run: not selected"
    if "error" in r:
        return str(r["error"])
    median: dict[str, Any] = r["median"]
    return median


def headline(progs: list[Program], drains: list[Scenario]) -> list[str]:
    """The headline table of the dev server's drain scenarios."""
    lines = [
        "## Headline: tasks/s (× conductor-python's better flavour in the same scenario)",
        "",
        "| runtime | " + " | ".join(sc.id for sc in drains) + " |",
        "|---|" + "---:|" * len(drains),
    ]
    limit_row = ["physical limit (loadgen) / ideal"]
    for sc in drains:
        limit_row.append(fmt(sc.limit_tasks_per_s) + (" (ideal)" if sc.limit == "ideal" else ""))
    lines.append("| " + " | ".join(limit_row) + " |")
    if any(sc.asyncio_alone_runs for sc in drains):
        alone_row = ["bare asyncio loop, no server (the ceiling of asyncio)"]
        for sc in drains:
            rate = statistics.median(sc.asyncio_alone_runs) if sc.asyncio_alone_runs else None
            share = f" ({100 * rate / sc.limit_tasks_per_s:.0f} %)" if rate and sc.limit_tasks_per_s else ""
            alone_row.append(fmt(rate) + share)
        lines.append("| " + " | ".join(alone_row) + " |")
    for p in progs:
        row = [p.label]
        for sc in drains:
            c = cell(sc, p)
            if isinstance(c, str):
                row.append("n/a" if c == "n/a" else ("not run" if c.startswith("not run") else "failed"))
            else:
                x = c.get("x_peer_rate")
                row.append(fmt(c["tasks_per_s"]) + (f" ({x:.1f}×)" if x and not p.is_peer else ""))
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Scenario ids: " + "; ".join(f"`{sc.id}` {sc.title}" for sc in drains) + "."]
    return lines


def markdown(doc: dict[str, Any], scs: list[Scenario], progs: list[Program]) -> str:
    m = doc["machine"]
    lines = [
        "# Benchmark results",
        "",
        (
            f"{doc['date']}, {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, Linux {m['kernel']}, "
            f"Python {m['python']}, {m['rustc']}{', ' + m['ruby'] if m['ruby'] else ''}. "
            f"{'QUICK MODE (smoke test, not for quoting). ' if doc['settings']['quick'] else ''}"
            f"Medians of {doc['settings']['runs']} run(s), each a fresh worker process; one dev server per scenario; "
            f"took {doc['duration_min']:.1f} min. Command: `{doc['command']}`."
        ),
        "",
    ]
    drains = [sc for sc in scs if sc.kind in ("drain", "multi")]
    if drains:
        lines += headline(progs, drains)
    for sc in drains:
        lines += ["", f"## {sc.id}: {sc.title}", ""]
        limit_name = {"loadgen": "the physical limit", "ideal": "ideal (concurrency / 0.05 s)"}.get(sc.limit, "")
        lines.append(
            f"{fmt(sc.tasks)} tasks per run"
            + (f"; {limit_name}: {fmt(sc.limit_tasks_per_s)} tasks/s" if limit_name else "")
            + "."
        )
        if sc.asyncio_alone_runs and sc.limit_tasks_per_s:
            rate = statistics.median(sc.asyncio_alone_runs)
            lines.append(
                f"The same {sc.concurrency:,} sleeps on a bare asyncio loop of this Python, with no server and no "
                f"worker (`bench/asyncio_alone.py`): {fmt(rate)} tasks/s, {100 * rate / sc.limit_tasks_per_s:.0f} % "
                "of ideal: no asyncio worker can pass that here."
            )
        lines += [
            "",
            "| runtime | tasks/s | × peer | CPU s / 1,000 tasks | CPU × peer | cores busy | peak RSS MB | procs / threads | of limit |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for p in progs:
            c = cell(sc, p)
            if isinstance(c, str):
                if c != "n/a":
                    lines.append(f"| {p.label} | {c} | | | | | | | |")
                continue
            partial = "" if c["tasks"] >= sc.tasks else f" (time box: {fmt(c['tasks'])} done)"
            if c["tasks"] < 100:  # a stalled run: CPU per 1,000 tasks would be meaningless
                c = {k: v for k, v in c.items() if k not in ("cpu_s_per_1000", "x_peer_cpu")}
            lines.append(
                f"| {p.label} | {fmt(c['tasks_per_s'])}{partial} | {fmt(c.get('x_peer_rate'), '.1f', '×')} "
                f"| {fmt(c.get('cpu_s_per_1000'), '.3f')} | {fmt(c.get('x_peer_cpu'), '.3f', '×')} "
                f"| {fmt(c.get('cores_busy'), '.2f')} | {fmt(c.get('peak_rss_mb'), '.0f')} "
                f"| {fmt(c.get('procs'), '.0f')} / {fmt(c.get('threads'), '.0f')} | {fmt(100 * c['of_limit'] if c.get('of_limit') else None, '.0f', ' %')} |"
            )
        for p in progs:
            c = cell(sc, p)
            if p.is_peer and isinstance(c, dict) and c.get("tasks", 0) < 100:
                lines += [
                    "",
                    (
                        f"{p.label} stalled: {fmt(c.get('tasks'))} task(s) completed in the "
                        f"{doc['settings']['run_box_s']:.0f} s time box, so there is no ratio to it here."
                    ),
                ]

    for sc in scs:
        if sc.kind != "idle":
            continue
        lines += [
            "",
            f"## idle: {sc.title}",
            "",
            (
                f"Requests over a {doc['settings']['idle_window_s']:.0f} s window of an idle worker with 10 task types; then "
                f"{doc['settings']['idle_probes']} single tasks enqueued at random moments, pickup latency = the server's "
                "`startTime − scheduledTime` (ms clock)."
            ),
            "",
            "| runtime | requests/min (10 types) | per type | idle CPU % of a core | RSS MB | largest process MB | procs / threads | pickup p50 ms | pickup p99 ms | start to first poll s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for p in progs:
            c = cell(sc, p)
            if isinstance(c, str):
                lines.append(reason_row(p.label, c, 10))
                continue
            lines.append(
                f"| {p.label} | {fmt(c['requests_per_min'])} | {fmt(c['requests_per_min_per_type'], '.1f')} "
                f"| {fmt(c['idle_cpu_pct'], '.2f')} | {fmt(c['rss_mb'], '.0f')} | {fmt(c['largest_process_mb'], '.0f')} "
                f"| {c['procs']} / {c['threads']} | {fmt(c['pickup_p50_ms'], '.0f')} | {fmt(c['pickup_p99_ms'], '.0f')} "
                f"| {fmt(c.get('ready_s'), '.2f')} |"
            )
    import install
    import payloads
    import real_server

    lines += payloads.markdown(scs, progs)
    lines += real_server.markdown(doc, scs, progs)
    lines += install.markdown(scs)
    notes = [p for p in progs if p.not_run]
    if notes:
        lines += ["", "## Not run", ""]
        lines += [f"- {p.label}: {p.not_run}" for p in notes]
    lines += [
        "",
        "## How to read this",
        "",
        (
            "- tasks/s: tasks completed (counted by the server) / seconds from the moment the queue was full; "
            f"a run stops at the last task or after {doc['settings']['run_box_s']:.0f} s (then the partial count is used, "
            'marked "time box").'
        ),
        (
            "- CPU s / 1,000 tasks: user + system time of the worker's whole process tree during the run; "
            "peak RSS: each process's peak (VmHWM) summed over the tree; procs / threads: the most seen."
        ),
        (
            "- × peer: against the better conductor-python flavour (sync or asyncio) in the same scenario: "
            "its higher tasks/s, its lower CPU per task."
        ),
        (
            "- of limit: against the load generator (batch poll + update pairs, no worker logic) on the same server, "
            "or the ideal rate concurrency / 0.05 s for sleeping tasks. The load generator sends a batch poll "
            "and an update per task; a runtime using update-v2 sends about one request per task and can pass it."
        ),
        (
            "- The dev server, the worker and this harness share the machine's cores; absolute numbers drift with "
            "its load, ratios measured in the same run hold better."
        ),
    ]
    return "\n".join(lines) + "\n"


def chart(path: Path, scs: list[Scenario], progs: list[Program], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drains = [sc for sc in scs if sc.kind in ("drain", "multi") and sc.results]
    shown = [p for p in progs if not p.not_run and any("median" in sc.results.get(p.key, {}) for sc in drains)]
    if not drains or not shown:
        return
    colors = {
        "rust": "#b7410e",
        "py-sync": "#1f5fa8",
        "py-async": "#3f88d8",
        "py-process": "#8fbfef",
        "rb-threads": "#9b111e",
        "rb-fibers": "#d0414f",
        "rb-ractors": "#f08a94",
        "peer-sync": "#555555",
        "peer-async": "#a0a0a0",
    }
    fig, ax = plt.subplots(figsize=(13, 5.5), dpi=110)
    width = 0.8 / len(shown)
    for j, p in enumerate(shown):
        xs, ys = [], []
        for i, sc in enumerate(drains):
            m = sc.results.get(p.key, {}).get("median")
            if m and m.get("tasks_per_s"):
                xs.append(i - 0.4 + width * (j + 0.5))
                ys.append(m["tasks_per_s"])
        ax.bar(xs, ys, width, label=p.label, color=colors.get(p.key))
    for i, sc in enumerate(drains):
        if sc.limit_tasks_per_s:
            ax.hlines(sc.limit_tasks_per_s, i - 0.45, i + 0.45, colors="black", linestyles="dashed", linewidth=1)
    ax.plot([], [], "k--", linewidth=1, label="physical limit (loadgen) / ideal")
    ax.set_yscale("log")
    floor = 50.0
    ax.set_ylim(bottom=floor)
    for j, p in enumerate(shown):
        for i, sc in enumerate(drains):
            m = sc.results.get(p.key, {}).get("median")
            if m and m.get("tasks_per_s", floor) < floor:
                x = i - 0.4 + width * (j + 0.5)
                ax.text(x, floor * 1.1, f"{m['tasks_per_s']:.1f}", rotation=90, ha="center", va="bottom", fontsize=7)
    ax.set_ylabel("tasks/s (log scale)")
    ax.set_xticks(range(len(drains)))
    ax.set_xticklabels([sc.id for sc in drains])
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# -- main ----------------------------------------------------------------------------------------


def render(source: Path, out: Path) -> None:
    """The markdown and the chart of a finished run, from its JSON (what the run measured is
    not touched; titles come from the current scenario list)."""
    doc = json.loads(source.read_text())
    progs = [
        Program(key, v["label"], [], v["family"], not_run=v["not_run"], multi_server=v["family"] != "peer")
        for key, v in doc["programs"].items()
    ]
    titles = {sc.id: sc.title for sc in scenarios(Settings(**doc["settings"]))}
    scs = []
    for d in doc["scenarios"]:
        keys = set(d["results"])
        sc = Scenario(
            d["id"],
            titles.get(d["id"], d["title"]),
            d["kind"],
            d["work"],
            d["concurrency"],
            d["tasks"],
            d["limit"],
            programs=lambda p, keys=keys: p.key in keys,  # type: ignore[misc]
            results=d["results"],
            limit_tasks_per_s=d["limit_tasks_per_s"],
            limit_runs=d["limit_runs"],
            asyncio_alone_runs=d.get("asyncio_alone_runs", []),
            server_restarts=d.get("dev_server_restarts", 0),
        )
        scs.append(sc)
    annotate(scs, progs)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(markdown(doc, scs, progs))
    m = doc["machine"]
    chart(
        out.with_suffix(".png"),
        scs,
        progs,
        f"tasks/s per scenario and runtime, {doc['date']}, {m['cores']} cores"
        f"{' (QUICK MODE)' if doc['settings']['quick'] else ''}; dashed: physical limit or ideal",
    )
    log(f"rendered {out}.md and .png from {source}")


def run_special(scs: list[Scenario], progs: list[Program], settings: Settings, workdir: Path) -> dict[str, Any]:
    """The scenarios with servers of their own: the large payload (a dev server with raised
    limits) and the real Conductor server (one start per backend for all its scenarios).
    Returns what each real server was like (start-up time, memory, or why it did not start)."""
    import install
    import payloads
    import real_server

    for sc in scs:
        if sc.kind == "install":
            log(f"== {sc.id}: {sc.title}")
            install.run(sc, settings, workdir)
        if sc.kind == "payload":
            runnable = [p for p in progs if not p.not_run and sc.programs(p)]
            log(f"== {sc.id}: {sc.title} ({', '.join(p.key for p in runnable)})")
            payloads.run(sc, runnable, settings, workdir)
    info: dict[str, Any] = {}
    for backend in real_server.BACKENDS:
        group = [sc for sc in scs if sc.kind.startswith("real") and real_server.backend_of(sc) == backend]
        if group:
            info[backend] = real_server.run_backend(backend, group, progs, settings, workdir)
    return info


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", default=os.environ.get("BENCH_QUICK") == "1", help="smoke test")
    ap.add_argument("--runs", type=int, help="runs per measurement (default 3, quick 1)")
    ap.add_argument(
        "--only",
        help="comma-separated scenario ids (noop-1,noop-10,noop-50,sleep-10,sleep-50,sleep-1000,cpu-2,idle,multi,"
        "payload-8mb,install,real-sqlite-noop-10,real-sqlite-noop-50,real-sqlite-idle-pickup, the same with real-postgres-; "
        "real-sqlite, real-postgres, real and payload select a group)",
    )
    ap.add_argument("--real-tasks", type=int, help="workflows per real-server drain run (default 500, quick 60)")
    ap.add_argument("--real-runs", type=int, help="runs per real-server drain (default 1)")
    ap.add_argument(
        "--programs",
        help="comma-separated program keys (rust,py-sync,py-async,py-process,rb-threads,rb-fibers,rb-ractors,peer-sync,peer-async)",
    )
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "latest"), help="output path without extension")
    ap.add_argument("--render", metavar="JSON", help="only write the markdown and chart again from a results JSON")
    args = ap.parse_args(argv)
    if args.render:
        render(Path(args.render), Path(args.out))
        return 0
    q = args.quick
    settings = Settings(
        quick=q,
        runs=args.runs or (1 if q else 3),
        noop_tasks=2_000 if q else 20_000,
        sleep_rounds=10 if q else 40,
        cpu_tasks=100 if q else 1_000,
        cpu_rounds=5_000,
        run_box_s=5.0 if q else 8.0,
        idle_window_s=4.0 if q else 10.0,
        idle_probes=8 if q else 25,
        multi_tasks=2_000 if q else 20_000,
        real_tasks=args.real_tasks or (60 if q else 500),
        real_runs=args.real_runs or 1,
        real_warmup_tasks=100 if q else 300,
        real_probes=8 if q else 25,
        real_box_s=30.0 if q else 60.0,
        real_idle_window_s=2.0 if q else 3.0,
        payload_tasks=2 if q else 5,
    )
    progs = programs()
    if args.programs:
        keep = set(args.programs.split(","))
        unknown = keep - {p.key for p in progs}
        if unknown:
            ap.error(f"--programs: unknown {sorted(unknown)}")
        progs = [p for p in progs if p.key in keep]
    scs = scenarios(settings)
    if args.only:
        keep = set(args.only.split(","))
        groups = {
            "real": "real-",
            "real-sqlite": "real-sqlite-",
            "real-postgres": "real-postgres-",
            "payload": "payload-",
        }
        unknown = keep - {sc.id for sc in scs} - set(groups)
        if unknown:
            ap.error(f"--only: unknown {sorted(unknown)}")
        prefixes = tuple(groups[k] for k in keep if k in groups)
        scs = [sc for sc in scs if sc.id in keep or (prefixes and sc.id.startswith(prefixes))]
    for p in progs:
        if p.not_run:
            log(f"{p.key}: not run: {p.not_run}")

    started = time.monotonic()
    date = datetime.datetime.now(datetime.UTC)
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    log(f"work dir {workdir}")
    server_rss: dict[str, float] = {}
    real_servers = run_special(scs, progs, settings, workdir)
    for sc in scs:
        if sc.kind not in ("drain", "idle", "multi"):
            continue
        # One dev server per scenario, shared by every runtime of the scenario and by its limit:
        # the dev server keeps every task in memory (~4 KB each), and a full run creates millions.
        server = DevServer(workdir, f"server-{sc.id}")
        try:
            runnable = [p for p in progs if not p.not_run and sc.programs(p)]
            log(f"== {sc.id}: {sc.title} ({', '.join(p.key for p in runnable)}) on {server.url}")
            if sc.kind == "drain":
                run_drain_scenario(sc, runnable, server, settings, workdir, settings.noop_tasks)
            elif sc.kind == "idle":
                run_idle(sc, runnable, server, settings, workdir)
            else:
                run_multi(sc, runnable, server, settings, workdir)
            server_rss[sc.id] = round(server.rss_mb())
            sc.server_restarts = server.restarts
            log(f"dev server RSS {server_rss[sc.id]} MB")
        finally:
            server.stop()
    annotate(scs, progs)
    doc: dict[str, Any] = {
        "date": date.strftime("%Y-%m-%d %H:%M UTC"),
        "command": "bench/run.sh" + (" " + " ".join(argv) if argv else ""),
        "duration_min": (time.monotonic() - started) / 60,
        "machine": machine(),
        "settings": dataclasses.asdict(settings),
        "dev_server_rss_mb_per_scenario": server_rss,
        "real_servers": real_servers,
        "programs": {p.key: {"label": p.label, "family": p.family, "not_run": p.not_run} for p in progs},
        "scenarios": [
            {
                "id": sc.id,
                "title": sc.title,
                "kind": sc.kind,
                "work": sc.work,
                "concurrency": sc.concurrency,
                "tasks": sc.tasks,
                "limit": sc.limit,
                "limit_tasks_per_s": sc.limit_tasks_per_s,
                "limit_runs": sc.limit_runs,
                "asyncio_alone_runs": sc.asyncio_alone_runs,
                "dev_server_restarts": sc.server_restarts,
                "results": sc.results,
            }
            for sc in scs
        ],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1, default=float) + "\n")
    out.with_suffix(".md").write_text(markdown(doc, scs, progs))
    m = doc["machine"]
    chart(
        out.with_suffix(".png"),
        scs,
        progs,
        f"tasks/s per scenario and runtime, {doc['date']}, {m['cores']} cores"
        f"{' (QUICK MODE)' if q else ''}; dashed: physical limit or ideal",
    )
    log(f"wrote {out}.md, .json, .png in {doc['duration_min']:.1f} min")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    # bench/real_server.py and bench/payloads.py import this file as `run`: the same module.
    sys.modules.setdefault("run", sys.modules[__name__])
    sys.exit(main(sys.argv[1:]))
