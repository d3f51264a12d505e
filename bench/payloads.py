"""The large-payload scenario of the benchmark harness (``payload-8mb``): a worker takes an 8 MiB
input that the dev server stored externally, and returns it (``--work echo``), so its 8 MiB
output is uploaded too; a few tasks in a row at concurrency 1. Measured: the worker tree's
peak RSS (VmHWM summed) beside the same program's peak on no-op tasks, and the time per task.

The dev server runs with the real server's soft limits (3,072 KB in and out), a hard limit
raised to 20,480 KB so that 8 MiB is allowed, and its external storage taking uploads.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import run as h

PAYLOAD_BYTES = 8 * 1024 * 1024
# Peak RSS above the no-payload baseline a worker may need: this many times the payload (it
# holds the downloaded JSON, the parsed input, the output and its serialized upload at most).
RSS_FACTOR = 6
SERVER_ARGS = [
    "--task-input-threshold-kb", "3072",
    "--task-output-threshold-kb", "3072",
    "--max-task-payload-kb", "20480",
    "--external-storage", "upload",
]  # fmt: skip
PROGRAMS = ("rust", "py-sync", "rb-threads")
PAYLOAD_KEYS = ("externalized_inputs", "external_reads", "external_writes", "externalized_outputs")


def scenarios(s: h.Settings) -> list[h.Scenario]:
    return [
        h.Scenario(
            "payload-8mb",
            f"8 MiB input (stored externally) echoed as an 8 MiB output (uploaded), {s.payload_tasks} tasks "
            "in a row, concurrency 1",
            "payload",
            "echo",
            1,
            s.payload_tasks,
            programs=lambda p: p.key in PROGRAMS,
        )
    ]


def one(program: h.Program, server: h.DevServer, work: str, tasks: int, workdir: Path) -> dict[str, Any]:
    """A fresh worker program, ``tasks`` tasks (8 MiB inputs for ``echo``) enqueued while the
    server is paused; peak RSS and seconds per task once they are all completed."""
    task_type = f"{program.key.replace('-', '_')}_{work}_{next(h._ids)}"
    w = h.WorkerProcess(program, [task_type], 1, work, [server], workdir)
    try:
        w.wait_ready([server])
        before = server.stats()
        body = {"taskType": task_type, "count": tasks, "retryCount": 0}
        body["input"] = {"data": "x" * PAYLOAD_BYTES} if work == "echo" else {}
        server.request("POST", "/admin/pause")
        try:
            server.json("POST", "/admin/tasks", body)
        finally:
            t0 = time.monotonic()
            server.request("POST", "/admin/resume")
        while True:
            time.sleep(0.02)
            now = server.stats()
            done = now["tasks"]["completed"] - before["tasks"]["completed"]
            bad = sum(now["tasks"][k] - before["tasks"][k] for k in ("failed", "failed_terminal", "timed_out"))
            if bad:
                raise RuntimeError(f"{bad} task(s) failed or timed out{w._tail()}")
            if done >= tasks:
                break
            if time.monotonic() - t0 > 120:
                raise RuntimeError(f"{done}/{tasks} tasks completed in 120 s")
            if w.proc.poll() is not None:
                raise RuntimeError(f"the worker exited with {w.proc.returncode}{w._tail()}")
            w.tree.refresh()
        elapsed = time.monotonic() - t0
        w.tree.refresh()
        result = {
            "tasks": done,
            "seconds": round(elapsed, 3),
            "s_per_task": elapsed / done,
            "peak_rss_mb": w.tree.peak_rss_mb(),
            "payload": payload_counts(before, now),
        }
    finally:
        result_stop = w.stop()
    return {**result, **result_stop}


def payload_counts(before: dict[str, Any], now: dict[str, Any]) -> dict[str, int]:
    """What went through external storage during a run (the dev server's counters): that the
    input really was downloaded and the output really uploaded."""
    return {k: int(now[k]) - int(before.get(k, 0)) for k in PAYLOAD_KEYS if k in now}


def check_external(work: str, tasks: int, counts: dict[str, int]) -> None:
    """An echo run whose payloads did not go through external storage measured something else."""
    if work != "echo":
        return
    for key in PAYLOAD_KEYS[:3]:
        if counts.get(key, 0) < tasks:
            raise RuntimeError(f"{key}: {counts[key]} for {tasks} tasks: the payload did not take the external path")


def excess(baseline: dict[str, Any], loaded: dict[str, Any]) -> dict[str, Any]:
    """Peak RSS above the baseline, against the target of ``RSS_FACTOR`` times the payload."""
    above = loaded["peak_rss_mb"] - baseline["peak_rss_mb"]
    target = RSS_FACTOR * PAYLOAD_BYTES / 2**20
    return {
        "baseline_peak_rss_mb": baseline["peak_rss_mb"],
        "above_baseline_mb": above,
        "target_mb": target,
        "target_met": above <= target,
    }


def run(sc: h.Scenario, progs: list[h.Program], settings: h.Settings, workdir: Path) -> None:
    server = h.DevServer(workdir, "server-payload", SERVER_ARGS)
    try:
        for p in progs:
            runs: list[dict[str, Any]] = []
            try:
                for _ in range(settings.runs):
                    base = one(p, server, "noop", sc.tasks, workdir)
                    loaded = one(p, server, "echo", sc.tasks, workdir)
                    check_external("echo", sc.tasks, loaded["payload"])
                    runs.append({**loaded, **excess(base, loaded), "baseline": base})
            except h.FAILURES as e:
                why = " ".join(str(e).split())  # one line: it goes into a table cell
                if "before 'ready'" in why and "--work" in why:
                    why = f"not run: {p.key} has no --work echo mode ({why.split(' usage:')[0][:300]})"
                sc.results[p.key] = {"error": why if why.startswith("not run") else f"failed: {why}", "runs": runs}
                h.log(f"payload-8mb {p.key}: {sc.results[p.key]['error']}")
                continue
            med = h.median_of(runs)
            for key in ("s_per_task", "baseline_peak_rss_mb", "above_baseline_mb"):
                med[key] = statistics.median(r[key] for r in runs)
            med["target_mb"] = runs[0]["target_mb"]
            med["target_met"] = med["above_baseline_mb"] <= med["target_mb"]
            med["payload"] = runs[-1]["payload"]
            sc.results[p.key] = {"runs": runs, "median": med}
            h.log(
                f"payload-8mb {p.key:11} peak {med['peak_rss_mb']:.0f} MB (baseline {med['baseline_peak_rss_mb']:.0f}, "
                f"+{med['above_baseline_mb']:.0f} MB, target <= {med['target_mb']:.0f})  "
                f"{med['s_per_task'] * 1000:.0f} ms/task"
            )
    finally:
        server.stop()


def markdown(scs: list[h.Scenario], progs: list[h.Program]) -> list[str]:
    sc = next((s for s in scs if s.kind == "payload"), None)
    if sc is None:
        return []
    lines = [
        "",
        f"## payload-8mb: {sc.title}",
        "",
        (
            "Dev server with the real server's soft limits (3,072 KB), a 20,480 KB hard limit and external storage "
            "taking uploads: the input is stored externally and downloaded by the worker, the output uploaded. "
            f"Peak RSS: VmHWM of the worker's process tree; baseline: the same program on {sc.tasks} no-op tasks. "
            f"Target: at most {RSS_FACTOR}× the payload ({RSS_FACTOR * PAYLOAD_BYTES // 2**20} MB) above the baseline."
        ),
        "",
        "| runtime | peak RSS MB | baseline peak RSS MB | above baseline MB | target met | ms per task |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for p in progs:
        if not sc.programs(p):
            continue
        if isinstance(c := h.cell(sc, p), str):
            lines.append(h.reason_row(p.label, c, 5))
            continue
        lines.append(
            f"| {p.label} | {c['peak_rss_mb']:.0f} | {c['baseline_peak_rss_mb']:.0f} | {c['above_baseline_mb']:.0f} "
            f"| {'met' if c['target_met'] else 'NOT met'} | {c['s_per_task'] * 1000:.0f} |"
        )
    return lines
