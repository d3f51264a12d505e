"""The fault matrix's machinery: dev servers, worker processes, a stats sampler, the scenarios.

Each run is one scenario for one runtime: fresh dev servers (``tools.devserver``), N tasks
enqueued, one worker program of ``bench/workers/README.md`` started as a user would start it (the
environment names the servers, the credentials and the journal), a fault injected through the dev
server's admin API while tasks are in flight, and a verdict taken from the servers' own stats:
how many tasks completed, how many are lost, how many results arrived for a task the server had
already acknowledged (``updates.duplicate_results``), how many tasks the server handed out again
(``tasks.redelivered`` + ``tasks.timed_out``), how long after the fault the first task completed,
and whether the worker polled again after the fault.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.devserver import DevServer
from tools.rest import Client

ROOT = Path(__file__).resolve().parents[2]
TASK_TYPE = "fault_matrix"
AUTH_KEY = "fm-key"
AUTH_SECRET = "fm-secret-not-for-logs"
READY_BUDGET_S = 60.0
STOP_DEADLINE_S = 30.0  # the worker programs' drain deadline (runtime.stop / Runner.stop_timeout)


# ---- runtimes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Runtime:
    name: str
    argv: list[str]

    def unavailable(self) -> str | None:
        """Why this runtime's worker program cannot run here, or None."""
        program = Path(self.argv[1] if self.argv[0].endswith(("python", "ruby")) else self.argv[0])
        if not program.is_file():
            return f"{program.relative_to(ROOT)} does not exist"
        if self.name == "ruby":
            return probe_ruby(self)
        return None


def _venv_python() -> str:
    return str(ROOT / ".venv/bin/python")


RUNTIMES = [
    Runtime("rust", [str(ROOT / "target/release/examples/bench_worker"), "--mode", "tokio"]),
    Runtime("python", [_venv_python(), str(ROOT / "bench/workers/python_worker.py"), "--mode", "sync"]),
    Runtime("ruby", ["ruby", str(ROOT / "bench/workers/ruby_worker.rb"), "--mode", "threads"]),
]

_ruby_probe: dict[str, str | None] = {}


def probe_ruby(rt: Runtime) -> str | None:
    """Starts the Ruby worker against a port nobody listens on: it must print ``ready``."""
    if "result" in _ruby_probe:
        return _ruby_probe["result"]
    env = dict(os.environ, CONDUCTOR_SERVER_URL="http://127.0.0.1:9/api", CONDUCTOR_WORKER_JOURNAL="off")
    args = [*rt.argv, "--task-type", "probe", "--concurrency", "1", "--work", "noop"]
    try:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    except OSError as e:
        _ruby_probe["result"] = f"cannot start ruby: {e}"
        return _ruby_probe["result"]
    try:
        out, err = proc.communicate(timeout=20)
        why = (err.strip().splitlines() or [f"exited {proc.returncode} without printing ready"])[-1]
        _ruby_probe["result"] = f"the Ruby worker does not load: {why[:160]}"
    except subprocess.TimeoutExpired:
        # Still running after 20 s: did it say ready?
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        _ruby_probe["result"] = None if "ready" in out else "the Ruby worker never printed ready"
    return _ruby_probe["result"]


class Worker:
    """One worker program process."""

    def __init__(self, rt: Runtime, env: dict[str, str], concurrency: int, work: str, log: Path) -> None:
        self.log = log
        args = [*rt.argv, "--task-type", TASK_TYPE, "--concurrency", str(concurrency), "--work", work]
        self._stderr = log.open("ab")
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=self._stderr, stdin=subprocess.DEVNULL,
            env={**os.environ, **env}, cwd=ROOT,
        )  # fmt: skip
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(READY_BUDGET_S):
            self.kill()
            raise RuntimeError(f"{rt.name} worker never printed ready; stderr: {self.tail()}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip() == b"ready":
                self.ready.set()

    def tail(self, n: int = 1500) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def terminate(self, timeout: float) -> tuple[int | None, float]:
        """SIGTERM; returns (exit code or None if still running after ``timeout``, seconds)."""
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None, time.monotonic() - t0
        return code, time.monotonic() - t0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._stderr.close()


# ---- servers and sampling ---------------------------------------------------------------------


def stat(s: dict[str, Any], group: str, key: str) -> int:
    return int(s.get(group, {}).get(key, 0))


class Servers:
    def __init__(self, count: int, flags: list[str]) -> None:
        self.devs: list[DevServer] = []
        try:
            for _ in range(count):
                self.devs.append(DevServer("--sweep-interval-ms", "100", *flags))
        except Exception:
            self.stop()
            raise
        self.admin = [Client(d.url, timeout=5) for d in self.devs]
        self.last: list[dict[str, Any]] = [{} for _ in self.devs]

    @property
    def url_env(self) -> str:
        return ",".join(d.api for d in self.devs)

    def stats(self, i: int) -> dict[str, Any]:
        """Stats of server i; the last ones seen while its port is closed."""
        try:
            r = self.admin[i].get("/admin/stats")
            if r.status == 200:
                self.last[i] = r.json()
        except OSError:
            pass
        return self.last[i]

    def all_stats(self) -> list[dict[str, Any]]:
        return [self.stats(i) for i in range(len(self.devs))]

    def faults(self, i: int, patch: dict[str, Any]) -> None:
        r = self.admin[i].put("/admin/faults", patch)
        assert r.status == 200, r.text

    def down(self, i: int, seconds: float) -> None:
        r = self.admin[i].post("/admin/down", {"seconds": seconds})
        assert r.status == 200, r.text

    def enqueue(self, i: int, count: int, response_timeout: int, retries: int) -> None:
        r = self.admin[i].post(
            "/admin/tasks",
            {
                "taskType": TASK_TYPE, "count": count, "input": {"n": 1},
                "responseTimeoutSeconds": response_timeout, "retryCount": retries, "retryDelaySeconds": 0,
            },
        )  # fmt: skip
        assert r.status == 200, r.text

    def stop(self) -> None:
        for d in self.devs:
            d.stop()


@dataclass
class Sample:
    t: float
    completed: int
    requests: int  # polls + updates: the worker talks to the server
    per_server: list[tuple[int, int]]  # (completed, requests) of each server


class Sampler:
    """Samples every server's stats every 0.2 s."""

    def __init__(self, servers: Servers) -> None:
        self.servers = servers
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            stats = self.servers.all_stats()
            per = [
                (
                    stat(s, "tasks", "completed"),
                    sum(stat(s, "requests", k) for k in ("batch_poll", "poll", "update", "update_v2")),
                )
                for s in stats
            ]
            self.samples.append(Sample(time.monotonic(), sum(c for c, _ in per), sum(r for _, r in per), per))
            self._stop.wait(0.2)

    def completed(self) -> int:
        return self.samples[-1].completed if self.samples else 0

    def wait_completed(self, n: int, timeout: float) -> bool:
        until = time.monotonic() + timeout
        while time.monotonic() < until:
            if self.completed() >= n:
                return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def recovery_after(self, t_end: float, server: int | None = None) -> tuple[float | None, bool]:
        """(seconds from ``t_end`` to the first completion after it, whether requests resumed),
        on all servers or on the one that had the fault."""

        def view(s: Sample) -> tuple[int, int]:
            return (s.completed, s.requests) if server is None else s.per_server[server]

        before = [s for s in self.samples if s.t <= t_end]
        base = view(before[-1]) if before else (0, 0)
        after = [s for s in self.samples if s.t > t_end]
        first = next((s for s in after if view(s)[0] > base[0]), None)
        resumed = any(view(s)[1] > base[1] for s in after)
        return (first.t - t_end if first else None), resumed

    def longest_stall(self, t0: float, t1: float) -> float:
        """The longest time without a completion between t0 and t1 (for faults that last the run)."""
        last_t, last_c, worst = t0, -1, 0.0
        for s in self.samples:
            if s.t < t0 or s.t > t1:
                continue
            if s.completed != last_c:
                worst = max(worst, s.t - last_t)
                last_t, last_c = s.t, s.completed
        return worst


# ---- scenarios ------------------------------------------------------------------------------------


@dataclass
class Ctx:
    """What a scenario's fault function works with, and what it records."""

    servers: Servers
    sampler: Sampler
    rt: Runtime
    env: dict[str, str]
    log: Path
    journal: Path
    scenario: Scenario
    worker: Worker | None = None
    fault_start: float | None = None
    fault_end: float | None = None
    recovery_from: float | None = None  # when recovery is measured from (default: fault_end)
    notes: list[str] = field(default_factory=list)
    checks: list[tuple[str, bool]] = field(default_factory=list)
    extra_workers: list[Worker] = field(default_factory=list)

    def start_worker(self) -> Worker:
        return Worker(self.rt, self.env, self.scenario.concurrency, self.scenario.work, self.log)

    def trigger(self, timeout: float = 120.0) -> None:
        """Waits until the scenario's trigger point (some tasks done, most still to do)."""
        if not self.sampler.wait_completed(self.scenario.trigger, timeout):
            raise RuntimeError(f"only {self.sampler.completed()} tasks completed before the fault")


FaultFn = Callable[[Ctx], None]


@dataclass
class Scenario:
    key: str
    title: str
    fault: FaultFn
    servers: int = 1
    flags: list[str] = field(default_factory=list)
    # 5 executors x 200 ms: about 25 tasks/s, so 1,000 tasks outlast a 20-30 s fault window and
    # the recovery after it is measured on work still to do.
    concurrency: int = 5
    work: str = "sleep:200"
    response_timeout: int = 10
    retries: int = 10
    trigger: int = 150
    auth: bool = False
    continuous: bool = False  # the fault lasts the whole run: report the longest stall instead
    fault_server: int | None = None  # multi-homed: recovery is measured on the faulted server
    budget_s: float = 240.0


def window(apply: Callable[[Ctx], None], clear: Callable[[Ctx], None], seconds: float) -> FaultFn:
    def run(ctx: Ctx) -> None:
        ctx.trigger()
        ctx.fault_start = time.monotonic()
        apply(ctx)
        time.sleep(seconds)
        clear(ctx)
        ctx.fault_end = time.monotonic()

    return run


def on_all(patch: dict[str, Any]) -> Callable[[Ctx], None]:
    def apply(ctx: Ctx) -> None:
        for i in range(len(ctx.servers.devs)):
            ctx.servers.faults(i, patch)

    return apply


def server_down(seconds: float, index: int = 0) -> FaultFn:
    def run(ctx: Ctx) -> None:
        ctx.trigger()
        ctx.servers.down(index, seconds)
        # The port closes 0.1 s after the answer and opens again `seconds` later.
        ctx.fault_start = time.monotonic() + 0.1
        time.sleep(seconds + 0.1)
        ctx.fault_end = time.monotonic()
        # The port is open again once the server answers.
        until = time.monotonic() + 10
        while time.monotonic() < until:
            try:
                if ctx.servers.admin[index].get("/health").status == 200:
                    break
            except OSError:
                time.sleep(0.05)
        ctx.fault_end = time.monotonic()

    return run


def flapping(index: int, seconds: float, down_s: float = 2.0, up_s: float = 2.0) -> FaultFn:
    def run(ctx: Ctx) -> None:
        ctx.trigger()
        ctx.fault_start = time.monotonic()
        n = 0
        while time.monotonic() - ctx.fault_start < seconds:
            ctx.servers.down(index, down_s)
            n += 1
            time.sleep(0.1 + down_s)
            until = time.monotonic() + 5
            while time.monotonic() < until:
                try:
                    if ctx.servers.admin[index].get("/health").status == 200:
                        break
                except OSError:
                    time.sleep(0.05)
            time.sleep(up_s)
        ctx.fault_end = time.monotonic()
        ctx.notes.append(f"server 2 of 3 went down {n} times")

    return run


def continuous(ctx: Ctx) -> None:
    ctx.fault_start = time.monotonic()


def sigterm_mid_run(ctx: Ctx) -> None:
    """SIGTERM with tasks running: they finish, their results are delivered, the process exits
    within its deadline; then a new process (the deploy) finishes the rest."""
    ctx.trigger()
    assert ctx.worker is not None
    running = sum(stat(s, "tasks", "in_progress") for s in ctx.servers.all_stats())
    ctx.fault_start = time.monotonic()
    code, took = ctx.worker.terminate(STOP_DEADLINE_S + 10)
    ctx.fault_end = time.monotonic()
    stats = ctx.servers.all_stats()
    left = sum(stat(s, "tasks", "in_progress") for s in stats)
    ctx.notes.append(f"{running} tasks running at SIGTERM; exit {code} after {took:.1f} s; {left} left in progress")
    ctx.checks.append((f"the process exits 0 within its {STOP_DEADLINE_S:.0f} s deadline", code == 0))
    ctx.checks.append(("no task is left in progress by the stopped process", left == 0))
    ctx.worker.kill()
    ctx.worker = ctx.start_worker()
    ctx.recovery_from = time.monotonic()


def journal_lines(path: Path) -> int:
    try:
        return sum(1 for line in path.read_text().splitlines() if line.strip())
    except FileNotFoundError:
        return 0


def sigkill_mid_run(ctx: Ctx) -> None:
    """Updates fail for a moment (results go to the journal), SIGKILL, then a restart: the
    journalled results are delivered, the tasks that were running are re-delivered by the
    server after their response timeout, and all complete."""
    ctx.trigger()
    assert ctx.worker is not None
    ctx.fault_start = time.monotonic()
    on_all({"fail_rate": {"update": 1.0}})(ctx)
    time.sleep(2.0)
    ctx.worker.proc.send_signal(signal.SIGKILL)
    ctx.worker.proc.wait()
    ctx.worker.kill()
    on_all({"fail_rate": {"update": 0.0}})(ctx)
    journalled = journal_lines(ctx.journal)
    running = sum(stat(s, "tasks", "in_progress") for s in ctx.servers.all_stats())
    ctx.fault_end = time.monotonic()
    ctx.worker = ctx.start_worker()
    ctx.recovery_from = time.monotonic()
    # The journal is replayed at start.
    until = time.monotonic() + 30
    while journal_lines(ctx.journal) and time.monotonic() < until:
        time.sleep(0.1)
    after = journal_lines(ctx.journal)
    ctx.notes.append(
        f"{journalled} results journalled at SIGKILL, {after} still there after the restart; "
        f"{running} tasks in progress on the server at the kill"
    )
    ctx.checks.append(("results were journalled before the kill", journalled > 0))
    ctx.checks.append(("the restart delivered every journalled result", after == 0))


SCENARIOS: list[Scenario] = [
    Scenario("baseline", "no fault (update-v2 present)", continuous, continuous=True),
    Scenario("server_down_30s", "server process down 30 s (port closed), then back", server_down(30.0)),
    Scenario(
        "update_5xx_20s",
        "50 % of updates answered 500 for 20 s",
        window(on_all({"fail_rate": {"update": 0.5}}), on_all({"fail_rate": {"update": 0.0}}), 20.0),
    ),
    Scenario(
        "latency_2s",
        "2 s added to every request for 20 s",
        window(on_all({"latency_ms": 2000}), on_all({"latency_ms": 0}), 20.0),
    ),
    Scenario(
        "reset_mid_update",
        "connections reset mid-update for 20 s (25 % after applying, 25 % before)",
        window(
            on_all({"reset_after_rate": {"update": 0.25}, "drop_rate": {"update": 0.25}}),
            on_all({"reset_after_rate": {"update": 0.0}, "drop_rate": {"update": 0.0}}),
            20.0,
        ),
    ),
    Scenario(
        "token_expiry_5s",
        "tokens expire every 5 s (whole run)",
        continuous,
        flags=["--auth", f"{AUTH_KEY}:{AUTH_SECRET}", "--token-ttl-secs", "5"],
        auth=True,
        continuous=True,
    ),
    Scenario(
        "malformed_poll",
        "50 % of polled tasks sent as truncated JSON for 20 s (batch polls and update-v2's next task)",
        window(
            on_all({"malformed_rate": {"poll": 0.5, "update": 0.5}}),
            on_all({"malformed_rate": {"poll": 0.0, "update": 0.0}}),
            20.0,
        ),
    ),
    Scenario(
        "update_v2_missing",
        "update-v2 missing (an old server, whole run)",
        continuous,
        flags=["--no-update-v2"],
        continuous=True,
    ),
    Scenario("multi_down", "3 servers, one down 30 s", server_down(30.0, index=1), servers=3, fault_server=1),
    Scenario(
        "multi_slow",
        "3 servers, one answering after 10 s for 30 s",
        window(
            lambda c: c.servers.faults(1, {"latency_ms": 10000}), lambda c: c.servers.faults(1, {"latency_ms": 0}), 30.0
        ),
        servers=3,
        fault_server=1,
    ),
    Scenario(
        "multi_flapping",
        "3 servers, one flapping (down 2 s, up 2 s) for 30 s",
        flapping(1, 30.0),
        servers=3,
        fault_server=1,
    ),
    Scenario(
        "sigterm",
        "SIGTERM mid-run, then a new process (deploy)",
        sigterm_mid_run,
        concurrency=25,
        work="sleep:1000",
        trigger=200,
    ),
    Scenario(
        "sigkill", "SIGKILL mid-run, then a restart", sigkill_mid_run, concurrency=20, work="sleep:200", trigger=200
    ),
]


# ---- one run --------------------------------------------------------------------------------------


@dataclass
class Result:
    scenario: Scenario
    runtime: str
    tasks: int = 0
    completed: int = 0
    lost: int = 0
    duplicates: int = 0
    redelivered: int = 0
    recovery: str = ""
    seconds: float = 0.0
    not_run: str | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    checks: list[tuple[str, bool]] = field(default_factory=list)

    @property
    def failures(self) -> list[str]:
        if self.not_run:
            return []
        out = [f"error: {self.error}"] if self.error else []
        out += [name for name, ok in self.checks if not ok]
        return out


def run(scenario: Scenario, rt: Runtime, tasks: int) -> Result:
    result = Result(scenario, rt.name, tasks=tasks)
    why = rt.unavailable()
    if why:
        result.not_run = why
        return result
    t0 = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix=f"fault-{scenario.key}-{rt.name}-"))
    log = tmp / "worker.log"
    servers = Servers(scenario.servers, scenario.flags)
    sampler = Sampler(servers)
    per = [tasks // scenario.servers + (1 if i < tasks % scenario.servers else 0) for i in range(scenario.servers)]
    for i, n in enumerate(per):
        servers.enqueue(i, n, scenario.response_timeout, scenario.retries)
    env = {
        "CONDUCTOR_SERVER_URL": servers.url_env,
        "CONDUCTOR_WORKER_JOURNAL": str(tmp / "journal.jsonl"),
        "RUST_LOG": "warn",
    }
    if scenario.auth:
        env["CONDUCTOR_AUTH_KEY"] = AUTH_KEY
        env["CONDUCTOR_AUTH_SECRET"] = AUTH_SECRET
    ctx = Ctx(servers, sampler, rt, env, log, tmp / "journal.jsonl", scenario)
    try:
        ctx.worker = ctx.start_worker()
        t_started = time.monotonic()
        scenario.fault(ctx)
        done = sampler.wait_completed(tasks, scenario.budget_s - (time.monotonic() - t0))
        t_done = time.monotonic()
        code, took = ctx.worker.terminate(STOP_DEADLINE_S + 10)
        ctx.worker.kill()
        if code != 0:
            ctx.checks.append((f"the worker exits 0 on SIGTERM at the end (got {code} after {took:.1f} s)", False))
        time.sleep(0.5)
        stats = servers.all_stats()
        result.completed = sum(stat(s, "tasks", "completed") for s in stats)
        result.lost = max(0, tasks - result.completed)
        result.duplicates = sum(stat(s, "updates", "duplicate_results") for s in stats)
        result.redelivered = sum(stat(s, "tasks", "redelivered") + stat(s, "tasks", "timed_out") for s in stats)
        stuck = sum(stat(s, "tasks", "in_progress") + stat(s, "tasks", "queued") for s in stats)
        if scenario.continuous:
            stall = sampler.longest_stall(t_started, t_done)
            result.recovery = f"n/a (longest stall {stall:.1f} s)"
            ctx.checks.append(("the worker never stalled for 10 s or more", stall < 10.0))
        else:
            assert ctx.fault_end is not None
            since = ctx.recovery_from or ctx.fault_end
            rec, resumed = sampler.recovery_after(since, scenario.fault_server)
            result.recovery = f"{rec:.1f} s" if rec is not None else "never"
            ctx.checks.append(("a task completed after the fault", rec is not None))
            ctx.checks.append(("the worker polled/updated again after the fault", resumed))
        ctx.checks.append(("every task completed", done and result.completed == tasks))
        ctx.checks.append(("no result lost", result.lost == 0))
        ctx.checks.append(("no task left queued or in progress", stuck == 0))
        ctx.checks.append(("no result for an already-acknowledged task (duplicate execution)", result.duplicates == 0))
        timed_out = sum(stat(s, "tasks", "timed_out") for s in stats)
        ignored = sum(stat(s, "updates", "terminal_task") for s in stats)
        if timed_out or ignored:
            ctx.notes.append(f"{timed_out} attempts timed out and were retried, {ignored} late results ignored")
        injected = {k: sum(stat(s, "faults_injected", k) for s in stats) for k in
                    ("fail", "drop", "malformed", "reset_after", "latency")}  # fmt: skip
        faults = ", ".join(f"{k} {v}" for k, v in injected.items() if v)
        if faults:
            ctx.notes.append(f"faults injected: {faults}")
        if scenario.key == "token_expiry_5s":
            tokens = sum(stat(s, "requests", "token") for s in stats)
            ctx.notes.append(f"{tokens} tokens minted")
            ctx.checks.append(("tokens were refreshed during the run", tokens >= 3))
        if scenario.key == "malformed_poll":
            ctx.checks.append(("malformed polls were injected", injected["malformed"] > 0))
        if scenario.key == "reset_mid_update":
            ctx.checks.append(("updates were applied and their answers withheld", injected["reset_after"] > 0))
        if scenario.key == "update_v2_missing":
            v2 = sum(stat(s, "requests", "update_v2") for s in stats)
            ctx.notes.append(f"{v2} update-v2 attempts, then POST /api/tasks")
            ctx.checks.append(("update-v2 was given up after a few tries", v2 <= 50))
        if scenario.key == "sigkill":
            # A killed process hands nothing back, and the restart's journal replay must not
            # claim tasks (update-v2's next task) that no executor would run.
            again = sum(stat(s, "tasks", "redelivered") for s in stats)
            ctx.checks.append((f"no task handed out twice by the restart ({again})", again == 0))
        if scenario.key == "baseline":
            v2 = sum(stat(s, "requests", "update_v2") for s in stats)
            ctx.checks.append(("update-v2 is used", v2 >= tasks))
    except Exception as e:  # noqa: BLE001 -- a broken run is a failed row, never a crash of the matrix
        result.error = f"{type(e).__name__}: {e}"
        if ctx.worker is not None:
            result.error += f"; worker stderr: {ctx.worker.tail(600)}"
    finally:
        sampler.stop()
        for w in [ctx.worker, *ctx.extra_workers]:
            if w is not None:
                w.kill()
        servers.stop()
    result.seconds = time.monotonic() - t0
    result.notes = ctx.notes
    result.checks = ctx.checks
    return result


# ---- the table ----------------------------------------------------------------------------------


def table(results: list[Result], tasks: int, wall_s: float) -> str:
    lines = [
        "<!-- written by tests/faults (tests/run_all.sh); do not edit by hand -->",
        (
            f"Fault matrix: {tasks} tasks per run, judged from the dev servers' own stats; "
            f"{wall_s:.0f} s wall time, runs in parallel on a 2-core machine, {time.strftime('%Y-%m-%d')}."
        ),
        "",
        "| scenario | runtime | tasks | completed | lost | duplicates | redelivered | time to recover | verdict |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        if r.not_run:
            lines.append(f"| {r.scenario.title} | {r.runtime} | | | | | | | not run: {r.not_run} |")
            continue
        verdict = "ok" if not r.failures else "FAILED: " + "; ".join(r.failures)
        lines.append(
            f"| {r.scenario.title} | {r.runtime} | {r.tasks} | {r.completed} | {r.lost} | {r.duplicates} "
            f"| {r.redelivered} | {r.recovery} | {verdict} |"
        )
    lines += ["", "Notes per run:", ""]
    for r in results:
        if r.notes and not r.not_run:
            lines.append(f"- {r.scenario.key} / {r.runtime} ({r.seconds:.0f} s): " + "; ".join(r.notes))
    return "\n".join(lines) + "\n"


def to_json(r: Result) -> dict[str, Any]:
    return {
        "scenario": r.scenario.key, "runtime": r.runtime, "tasks": r.tasks, "completed": r.completed,
        "lost": r.lost, "duplicates": r.duplicates, "redelivered": r.redelivered, "recovery": r.recovery,
        "seconds": round(r.seconds, 1), "not_run": r.not_run, "failures": r.failures, "notes": r.notes,
    }  # fmt: skip


def dump(results: list[Result]) -> str:
    return json.dumps([to_json(r) for r in results], indent=1)
