"""The real Conductor server scenarios of the benchmark harness: the pinned conductor-oss 3.32.3
jar (``tests/tools/conductor_server.py`` starts it) on SQLite and on PostgreSQL, with every
worker program side by side. bench/README.md says what is measured; ``bench/run.py`` calls
``run_backend`` once per backend (one server start each: they take 20 to 80 s).

Unlike the dev server, the real server has no pause and no stats, so:

- the tasks (one single-task workflow each, ``POST /api/workflow/{name}`` from a few threads)
  are queued before the worker program starts, and the rate is read from the server's own
  clock afterwards: the workflows' ``endTime`` from ``/api/workflow/search``, (n - 1)
  completions over the span from the first to the last, so the worker's start-up is not in it;
- progress is the search's ``totalHits`` for ``status IN (COMPLETED)``;
- the server's CPU is the java process's utime + stime from /proc (and the PostgreSQL
  processes' on that backend) over the run, per 1,000 tasks: on this server the server is
  usually the limit, and this says how much each runtime's requests cost it.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import http.client
import json
import random
import statistics
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import run as h

sys.path.insert(0, str(h.ROOT / "tests"))
from tools.conductor_server import NotAvailable  # type: ignore[import-not-found]

BACKENDS = ("sqlite", "postgres")
LABELS = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
# Workflow starts at once: SQLite answers SQLITE_BUSY to more than a couple of writers (retried
# here), PostgreSQL takes more.
ENQUEUE_THREADS = {"sqlite": 2, "postgres": 4}
PICKUP_CONCURRENCY = 10


def scenario_ids(backend: str) -> list[str]:
    return [f"real-{backend}-noop-10", f"real-{backend}-noop-50", f"real-{backend}-idle-pickup"]


def scenarios(s: h.Settings) -> list[h.Scenario]:
    out: list[h.Scenario] = []
    for b in BACKENDS:
        name = LABELS[b]
        out += [
            h.Scenario(
                f"real-{b}-noop-{c}",
                f"real Conductor server ({name}): no-op tasks, concurrency {c}",
                "real",
                "noop",
                c,
                s.real_tasks,
                programs=lambda p: p.real_server,
            )
            for c in (10, 50)
        ]
        out.append(
            h.Scenario(
                f"real-{b}-idle-pickup",
                f"real Conductor server ({name}): idle worker (concurrency {PICKUP_CONCURRENCY}), then "
                f"{s.real_probes} single workflows",
                "real-pickup",
                "noop",
                PICKUP_CONCURRENCY,
                programs=lambda p: p.real_server,
            )
        )
    return out


def backend_of(sc: h.Scenario) -> str:
    return sc.id.split("-")[1]


def epoch_ms(value: Any) -> float:
    """A time of the real server's search results (ISO 8601, ``...Z``) or tasks (ms), in ms."""
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value:
        return datetime.datetime.fromisoformat(value).timestamp() * 1000
    raise ValueError(f"not a time: {value!r}")


def server_rate(summaries: list[dict[str, Any]]) -> tuple[float, float]:
    """Tasks/s and the span in seconds from the server's clock: (n - 1) completions over the span
    between the first and the last ``endTime`` (the first completion only starts the clock)."""
    ends = sorted(epoch_ms(w["endTime"]) for w in summaries if w.get("endTime"))
    if len(ends) < 2:
        raise ValueError(f"{len(ends)} completed workflow(s): no rate")
    span_s = (ends[-1] - ends[0]) / 1000
    if span_s <= 0:
        raise ValueError("every workflow ended in the same millisecond: no rate")
    return (len(ends) - 1) / span_s, span_s


def pickups_ms(workflows: list[dict[str, Any]]) -> list[float]:
    """``startTime - scheduledTime`` of each workflow's first task (the server's ms clock)."""
    out = []
    for w in workflows:
        tasks = w.get("tasks") or []
        if not tasks or not tasks[0].get("startTime"):
            raise ValueError(f"workflow {w.get('workflowId')}: its task never started ({w.get('status')})")
        out.append(float(tasks[0]["startTime"] - tasks[0]["scheduledTime"]))
    return out


class RealServer:
    """A real Conductor server started for this harness run, with thread-local HTTP connections
    and the /proc trees of its processes (the JVM, and PostgreSQL's postmaster on that backend)."""

    def __init__(self, backend: str) -> None:
        from tools.conductor_server import ConductorServer  # type: ignore[import-not-found]

        self.backend = backend
        self.server = ConductorServer(backend=backend)
        self.api = self.server.api
        self.startup_s = self.server.startup_seconds
        self._host = urllib.parse.urlsplit(self.server.url).netloc
        self._local = threading.local()
        self.trees = [h.ProcTree(self.server.pid)] if self.server.pid else []
        pg = getattr(self.server, "postgres", None)
        if pg is not None:
            pid_file = Path(pg.data) / "postmaster.pid"
            self.trees.append(h.ProcTree(int(pid_file.read_text().split()[0])))

    def cpu_seconds(self) -> float | None:
        """CPU time of the server's processes; None for a reused server (its pid is unknown)."""
        if not self.trees:
            return None
        for t in self.trees:
            t.refresh()
        return sum(t.cpu_seconds() for t in self.trees)

    def rss_mb(self) -> float:
        for t in self.trees:
            t.refresh()
        return sum(t.rss_mb() for t in self.trees)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"content-type": "application/json"} if data is not None else {}
        for attempt in (0, 1):
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = http.client.HTTPConnection(self._host, timeout=60)
            try:
                conn.request(method, path, body=data, headers=headers)
                r = conn.getresponse()
                return r.status, r.read()
            except (http.client.HTTPException, OSError):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def patient(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        """``request``, tried again while SQLite refuses a concurrent writer (SQLITE_BUSY, a 500)."""
        for _ in range(50):
            status, data = self.request(method, path, body)
            if status != 500 or b"SQLITE_BUSY" not in data:
                break
            time.sleep(0.02)
        return status, data

    def json(self, method: str, path: str, body: Any = None) -> Any:
        status, data = self.patient(method, path, body)
        if status >= 300:
            raise RuntimeError(f"{method} {path}: {status} {data[:300]!r}")
        return json.loads(data) if data else None

    def register(self, task_type: str) -> str:
        """A task definition without retries and its single-task workflow; the workflow's name."""
        task_def = {
            "name": task_type,
            "retryCount": 0,
            "timeoutSeconds": 0,
            "responseTimeoutSeconds": 600,
            "ownerEmail": "bench@example.com",
        }
        self.json("POST", "/api/metadata/taskdefs", [task_def])
        wf = f"bench_wf_{task_type}"
        self.json(
            "POST",
            "/api/metadata/workflow",
            {
                "name": wf,
                "version": 1,
                "schemaVersion": 2,
                "ownerEmail": "bench@example.com",
                "tasks": [{"name": task_type, "taskReferenceName": "t", "type": "SIMPLE"}],
            },
        )
        return wf

    def start(self, wf: str) -> str:
        status, body = self.patient("POST", f"/api/workflow/{wf}", {})
        if status != 200:
            raise RuntimeError(f"start workflow {wf}: {status} {body[:200]!r}")
        return body.decode().strip().strip('"')

    def enqueue(self, wf: str, count: int) -> list[str]:
        with concurrent.futures.ThreadPoolExecutor(ENQUEUE_THREADS[self.backend]) as pool:
            return list(pool.map(lambda _: self.start(wf), range(count)))

    def search(self, wf: str, statuses: str, size: int) -> dict[str, Any]:
        query = urllib.parse.quote(f"workflowType IN ({wf}) AND status IN ({statuses})")
        return self.json("GET", f"/api/workflow/search?query={query}&size={size}&start=0")  # type: ignore[no-any-return]

    def count(self, wf: str, statuses: str) -> int:
        return int(self.search(wf, statuses, 0)["totalHits"])

    def last_poll_ms(self, task_type: str) -> float:
        data = self.json("GET", f"/api/tasks/queue/polldata?taskType={urllib.parse.quote(task_type)}") or []
        return max((float(d.get("lastPollTime") or 0) for d in data), default=0.0)

    def stop(self) -> None:
        self.server.stop()


BAD = "FAILED,TIMED_OUT,TERMINATED"


def drain(program: h.Program, server: RealServer, concurrency: int, tasks: int, settings: h.Settings,
          workdir: Path) -> dict[str, Any]:  # fmt: skip
    """One run: ``tasks`` workflows queued, then a fresh worker program drains them."""
    task_type = f"{program.key.replace('-', '_')}_{next(h._ids)}_{int(time.time())}"
    wf = server.register(task_type)
    t_enq = time.monotonic()
    server.enqueue(wf, tasks)
    enqueue_s = time.monotonic() - t_enq
    w = h.WorkerProcess(program, [task_type], concurrency, "noop", [server], workdir)  # type: ignore[list-item]
    try:
        # The worker's CPU counts from its first poll: conductor-python's processes import the SDK
        # after `ready`, which is start-up, not work.
        wait_first_poll(w, server, task_type)
        cpu0, server_cpu0, t0 = w.tree.cpu_seconds(), server.cpu_seconds(), time.monotonic()
        next_tree = t0 + 1.0
        while True:
            time.sleep(0.25)
            done = server.count(wf, "COMPLETED")
            if done >= tasks or time.monotonic() - t0 >= settings.real_box_s:
                break
            if time.monotonic() >= next_tree:
                w.tree.refresh()
                next_tree = time.monotonic() + 1.0
            if w.proc.poll() is not None:
                raise RuntimeError(f"the worker exited with {w.proc.returncode}{w._tail()}")
        wall_s = time.monotonic() - t0
        w.tree.refresh()
        cpu = w.tree.cpu_seconds() - cpu0
        server_cpu1 = server.cpu_seconds()
        server_cpu = server_cpu1 - server_cpu0 if server_cpu1 is not None and server_cpu0 is not None else None
        peak = w.tree.peak_rss_mb()
        procs, threads = w.tree.max_procs, w.tree.max_threads
    finally:
        stopped = w.stop()
    bad = server.count(wf, BAD)
    if bad:
        raise RuntimeError(f"{bad} workflow(s) failed, timed out or were terminated")
    summaries = server.search(wf, "COMPLETED", tasks)["results"]
    rate, span = server_rate(summaries)
    return {
        "tasks": done,
        "enqueued": tasks,
        "complete": done >= tasks,
        "enqueue_s": round(enqueue_s, 2),
        "seconds": round(span, 3),
        "wall_s": round(wall_s, 2),
        "tasks_per_s": rate,
        "cpu_s_per_1000": cpu / done * 1000 if done else None,  # = ms per task
        "cores_busy": cpu / wall_s,
        "server_cpu_s_per_1000": server_cpu / done * 1000 if done and server_cpu is not None else None,
        "server_cores_busy": server_cpu / wall_s if server_cpu is not None else None,
        "peak_rss_mb": peak,
        "procs": procs,
        "threads": threads,
        **stopped,
    }


def wait_first_poll(w: h.WorkerProcess, server: RealServer, task_type: str) -> None:
    """The ``ready`` line, then the server's record of a poll for ``task_type`` by this worker
    (conductor-python's worker processes poll about a second after ``ready``)."""
    w.wait_ready_line()
    deadline = time.monotonic() + 60
    while server.last_poll_ms(task_type) <= 0:  # the task type is new: any poll is this worker's
        if time.monotonic() > deadline:
            raise RuntimeError(f"ready, but the server saw no poll within 60 s{w._tail()}")
        if w.proc.poll() is not None:
            raise RuntimeError(f"the worker exited with {w.proc.returncode}{w._tail()}")
        time.sleep(0.02)


def pickup(program: h.Program, server: RealServer, settings: h.Settings, workdir: Path) -> dict[str, Any]:
    """An idle worker (concurrency 10), then single workflows one at a time with a random gap;
    pickup = the task's ``startTime - scheduledTime`` on the server's clock."""
    task_type = f"{program.key.replace('-', '_')}_pickup_{next(h._ids)}_{int(time.time())}"
    wf = server.register(task_type)
    w = h.WorkerProcess(program, [task_type], PICKUP_CONCURRENCY, "noop", [server], workdir)  # type: ignore[list-item]
    try:
        wait_first_poll(w, server, task_type)
        time.sleep(1.0)  # let start-up settle
        w.tree.refresh()
        c0, s0, t0 = w.tree.cpu_seconds(), server.cpu_seconds(), time.monotonic()
        time.sleep(settings.real_idle_window_s)
        c1, s1, t1 = w.tree.cpu_seconds(), server.cpu_seconds(), time.monotonic()
        server_pct = (s1 - s0) / (t1 - t0) * 100 if s1 is not None and s0 is not None else None
        rng = random.Random(11)
        ids = []
        for _ in range(settings.real_probes):
            time.sleep(rng.uniform(0.3, 0.6))
            ids.append(server.start(wf))
        deadline = time.monotonic() + 30
        while server.count(wf, "COMPLETED") < len(ids):
            if time.monotonic() > deadline:
                raise RuntimeError("the probe workflows were not all completed within 30 s")
            time.sleep(0.1)
        w.tree.refresh()
        rss = w.tree.rss_mb()
    finally:
        stopped = w.stop()
    lat = pickups_ms([server.json("GET", f"/api/workflow/{i}?includeTasks=true") for i in ids])
    return {
        "pickup_ms": lat,
        "pickup_p50_ms": h.percentile(lat, 0.5),
        "pickup_p99_ms": h.percentile(lat, 0.99),
        "pickup_mean_ms": statistics.fmean(lat),
        "idle_cpu_pct": (c1 - c0) / (t1 - t0) * 100,
        "idle_server_cpu_pct": server_pct,
        "rss_mb": rss,
        **stopped,
    }


def warm_up(server: RealServer, tasks: int) -> float:
    """Drains ``tasks`` workflows with the harness's own poller before anything is measured: a
    freshly started JVM runs its request paths interpreted and spends several times the CPU per
    task on them until the JIT has compiled them (measured: the first program after a start
    cost the server 60-75 CPU-s per 1,000 tasks, the same program later 15). Completions go
    through both `POST /api/tasks` and `/api/tasks/update-v2`, the two paths the runtimes use.
    Returns the seconds it took."""
    t0 = time.monotonic()
    task_type = f"warm_up_{next(h._ids)}_{int(time.time())}"
    wf = server.register(task_type)
    server.enqueue(wf, tasks)
    done = threading.Event()

    def complete(task: dict[str, Any], v2: bool) -> None:
        body = {"taskId": task["taskId"], "workflowInstanceId": task["workflowInstanceId"], "status": "COMPLETED"}
        status, data = server.patient(
            "POST", "/api/tasks/update-v2" if v2 else "/api/tasks", {**body, "outputData": {}}
        )
        if status >= 300:
            raise RuntimeError(f"warm-up update: {status} {data[:200]!r}")
        following = json.loads(data) if v2 and data.strip().startswith(b"{") else None
        if following and following.get("taskId"):
            complete(following, False)

    def poller(n: int) -> None:
        deadline = time.monotonic() + 120
        while not done.is_set() and time.monotonic() < deadline:
            polled = server.json("GET", f"/api/tasks/poll/batch/{task_type}?count=5&timeout=0&workerid=warm-up-{n}")
            for i, task in enumerate(polled or []):
                complete(task, v2=(i + n) % 2 == 0)
            if not polled:
                if server.count(wf, "COMPLETED") >= tasks:
                    done.set()
                time.sleep(0.05)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(poller, range(4)))
    if not done.is_set():
        raise RuntimeError(f"the warm-up did not complete its {tasks} workflows in 120 s")
    return time.monotonic() - t0


def run_backend(backend: str, scs: list[h.Scenario], progs: list[h.Program], settings: h.Settings,
                workdir: Path) -> dict[str, Any]:  # fmt: skip
    """Every selected scenario of one backend on one server start; what the server was like."""
    h.log(f"== real Conductor server ({backend}): starting it")
    try:
        server = RealServer(backend)
    except (*h.FAILURES, NotAvailable) as e:  # it did not come up: every cell says why
        why = f"not run: the real server ({backend}) did not start: {str(e).splitlines()[0][:300]}"
        h.log(why)
        for sc in scs:
            for p in progs:
                sc.results[p.key] = {"error": why}
        return {"error": why}
    try:
        h.log(f"real server ({backend}) up on {server.api} after {server.startup_s:.0f} s")
        warm_s = warm_up(server, settings.real_warmup_tasks)
        h.log(f"real server ({backend}) warmed up with {settings.real_warmup_tasks} tasks in {warm_s:.0f} s")
        for k, sc in enumerate(scs):
            runnable = [p for p in progs if not p.not_run and sc.programs(p)]
            if k % 2:  # with one run each, no program always goes first (the server keeps warming)
                runnable.reverse()
            h.log(f"== {sc.id}: {sc.title} ({', '.join(p.key for p in runnable)})")
            if sc.kind == "real":
                run_drains(sc, runnable, server, settings, workdir)
            else:
                run_pickups(sc, runnable, server, settings, workdir)
        return {
            "startup_s": round(server.startup_s, 1),
            "warm_up_s": round(warm_s, 1),
            "rss_mb_at_end": round(server.rss_mb()),
        }
    finally:
        server.stop()


def run_drains(sc: h.Scenario, progs: list[h.Program], server: RealServer, settings: h.Settings,
               workdir: Path) -> None:  # fmt: skip
    runs: dict[str, list[dict[str, Any]]] = {p.key: [] for p in progs}
    errors: dict[str, str] = {}
    for i in range(settings.real_runs):
        for p in progs:
            if p.key in errors:
                continue
            try:
                r = drain(p, server, sc.concurrency, sc.tasks, settings, workdir)
            except h.FAILURES as e:
                errors[p.key] = f"failed: {e}"
                h.log(f"{sc.id} {p.key}: FAILED: {e}")
                continue
            runs[p.key].append(r)
            h.log(
                f"{sc.id} run {i + 1}: {p.key:11} {r['tasks_per_s']:7,.1f} tasks/s  worker "
                f"{r['cpu_s_per_1000'] or 0:.2f} ms/task  server {r['server_cpu_s_per_1000'] or 0:.1f} "
                f"cpu-s/1000 ({r['server_cores_busy'] or 0:.2f} cores)  ({r['tasks']}/{r['enqueued']}, "
                f"queued in {r['enqueue_s']} s)"
            )
    for p in progs:
        if p.key in errors:
            sc.results[p.key] = {"error": errors[p.key], "runs": runs[p.key]}
        else:
            med = h.median_of(runs[p.key])
            for key in ("server_cpu_s_per_1000", "server_cores_busy"):
                values = [r[key] for r in runs[p.key] if r.get(key) is not None]
                if values:
                    med[key] = statistics.median(values)
            sc.results[p.key] = {"runs": runs[p.key], "median": med}


def run_pickups(sc: h.Scenario, progs: list[h.Program], server: RealServer, settings: h.Settings,
                workdir: Path) -> None:  # fmt: skip
    for p in progs:
        try:
            res = pickup(p, server, settings, workdir)
        except h.FAILURES as e:
            sc.results[p.key] = {"error": f"failed: {e}"}
            h.log(f"{sc.id} {p.key}: FAILED: {e}")
            continue
        sc.results[p.key] = {"median": res, "runs": [res]}
        h.log(
            f"{sc.id} {p.key:11} pickup p50 {res['pickup_p50_ms']:.0f} p99 {res['pickup_p99_ms']:.0f} ms  "
            f"idle cpu {res['idle_cpu_pct']:.2f} %  server {res['idle_server_cpu_pct'] or 0:.2f} %"
        )


# -- reporting -----------------------------------------------------------------------------------

PICKUP_TARGET_MS = 50
RATE_TARGET = 1.5


def markdown(doc: dict[str, Any], scs: list[h.Scenario], progs: list[h.Program]) -> list[str]:
    """The section "Real Conductor server" of the results, one table per backend run."""
    by_backend = {b: [sc for sc in scs if sc.kind.startswith("real") and backend_of(sc) == b] for b in BACKENDS}
    if not any(by_backend.values()):
        return []
    lines = [
        "",
        "## Real Conductor server (3.32.3, SQLite / PostgreSQL)",
        "",
        (
            "The pinned conductor-oss server jar, one start per backend (`tests/tools/conductor_server.py`). Drains: "
            f"{fmt_int(doc['settings']['real_tasks'])} single-task workflows queued before a fresh worker program "
            "starts; tasks/s from the server's clock (workflow `endTime`s, first to last); worker CPU per task and "
            "the **server's** CPU (java, plus the PostgreSQL processes) per 1,000 tasks over the run; medians of "
            f"{doc['settings']['real_runs']} run(s). Pickup: a worker idle at concurrency {PICKUP_CONCURRENCY}, "
            f"then {doc['settings']['real_probes']} workflows one at a time (random 0.3-0.6 s gaps), pickup = the "
            "task's `startTime - scheduledTime`. Targets: pickup p50 <= "
            f"{PICKUP_TARGET_MS} ms; tasks/s >= {RATE_TARGET}x conductor-python's better flavour at the same "
            "concurrency, or, where the server is the limit, the server CPU per 1,000 tasks that shows it."
        ),
    ]
    servers = doc.get("real_servers", {})
    for b, group in by_backend.items():
        if group:
            lines += backend_table(b, group, progs, servers.get(b, {}))
    return lines


def fmt_int(v: Any) -> str:
    return f"{v:,}" if isinstance(v, int) else str(v)


def _cell(sc: h.Scenario | None, p: h.Program) -> dict[str, Any] | str:
    return "" if sc is None else h.cell(sc, p)


def backend_table(backend: str, group: list[h.Scenario], progs: list[h.Program], info: dict[str, Any]) -> list[str]:
    ids = {sc.id.rsplit("-", 1)[-1] if "noop" in sc.id else "pickup": sc for sc in group}
    d10, d50, pk = ids.get("10"), ids.get("50"), ids.get("pickup")
    up = f", started in {info['startup_s']:.0f} s" if info.get("startup_s") else ""
    lines = [
        "",
        f"### {LABELS[backend]}{up}" + (f": {info['error']}" if info.get("error") else ""),
        "",
        (
            "| runtime | tasks/s c=10 (× peer) | tasks/s c=50 (× peer) | worker CPU ms/task c=10 / c=50 "
            "| server CPU s / 1,000 tasks c=10 / c=50 | server cores busy c=10 / c=50 | pickup p50 ms "
            "| pickup p99 ms | idle: worker CPU % / server CPU % |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    verdicts: list[str] = []
    for p in progs:
        c10, c50, cp = _cell(d10, p), _cell(d50, p), _cell(pk, p)
        if all(isinstance(c, str) for c in (c10, c50, cp)):
            why = next((c for c in (c10, c50, cp) if c and c != "n/a"), "")
            if why:
                lines.append(h.reason_row(p.label, why, 9))
            continue
        lines.append(
            f"| {p.label} | {rate(c10, p)} | {rate(c50, p)} | {get(c10, 'cpu_s_per_1000', '.2f')} / "
            f"{get(c50, 'cpu_s_per_1000', '.2f')} | {get(c10, 'server_cpu_s_per_1000', '.1f')} / "
            f"{get(c50, 'server_cpu_s_per_1000', '.1f')} | {get(c10, 'server_cores_busy', '.2f')} / "
            f"{get(c50, 'server_cores_busy', '.2f')} | {get(cp, 'pickup_p50_ms')} | {get(cp, 'pickup_p99_ms')} "
            f"| {get(cp, 'idle_cpu_pct', '.2f')} / {get(cp, 'idle_server_cpu_pct', '.2f')} |"
        )
        if not p.is_peer:
            verdicts.append(verdict(p, c10, c50, cp, group))
    if verdicts:
        lines += ["", "Targets:", "", *verdicts]
    return lines


def get(c: dict[str, Any] | str, key: str, spec: str = ",.0f") -> str:
    """A figure of a cell, or "failed" where the run failed."""
    if isinstance(c, dict):
        return h.fmt(c.get(key), spec)
    return "failed" if c and c != "n/a" and not c.startswith("not run") else ""


def rate(c: dict[str, Any] | str, p: h.Program) -> str:
    if not isinstance(c, dict):
        return get(c, "")
    x = c.get("x_peer_rate")
    partial = "" if c.get("complete", True) else " (time box)"
    return h.fmt(c.get("tasks_per_s"), ",.1f") + partial + (f" ({x:.2f}×)" if x and not p.is_peer else "")


def verdict(p: h.Program, c10: Any, c50: Any, cp: Any, group: list[h.Scenario]) -> str:
    parts = []
    if isinstance(cp, dict) and cp.get("pickup_p50_ms") is not None:
        ok = cp["pickup_p50_ms"] <= PICKUP_TARGET_MS
        parts.append(f"pickup p50 {cp['pickup_p50_ms']:.0f} ms: {'met' if ok else 'NOT met'}")
    for c, conc in ((c10, 10), (c50, 50)):
        if not isinstance(c, dict) or not c.get("x_peer_rate"):
            continue
        x = c["x_peer_rate"]
        if x >= RATE_TARGET:
            parts.append(f"c={conc} {x:.2f}× peer: met")
            continue
        sc = next(s for s in group if s.kind == "real" and s.concurrency == conc)
        peer_cpu = sc.results.get("_peer_best", {}).get("server_cpu_s_per_1000")
        mine = c.get("server_cpu_s_per_1000")
        why = ""
        if peer_cpu and mine:
            why = (
                f" (server CPU {mine:.1f} s / 1,000 tasks vs the peer's {peer_cpu:.1f} s; server "
                f"{c.get('server_cores_busy') or 0:.2f} cores busy)"
            )
        parts.append(f"c={conc} {x:.2f}× peer: NOT met{why}")
    return f"- {p.label}: " + "; ".join(parts) if parts else f"- {p.label}: no figures"


def annotate_server_cpu(scs: list[h.Scenario], progs: list[h.Program]) -> None:
    """The peer's lowest server CPU per 1,000 tasks, for the verdicts (after ``h.annotate``)."""
    for sc in scs:
        if sc.kind != "real":
            continue
        values = [
            sc.results[p.key]["median"]["server_cpu_s_per_1000"]
            for p in progs
            if p.is_peer and sc.results.get(p.key, {}).get("median", {}).get("server_cpu_s_per_1000")
        ]
        sc.results.setdefault("_peer_best", {})["server_cpu_s_per_1000"] = min(values, default=None)
