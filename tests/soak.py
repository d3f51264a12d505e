#!/usr/bin/env python3
"""Soak: workers of every runtime run for 10 minutes against one dev server while a feeder keeps
tasks coming (about 100 per second per runtime); each worker's RSS is sampled every 10 s. Not in
CI. The official Python SDK leaked about 288 MB a day (peers.md); this shows whether ours is flat.

    .venv/bin/python tests/soak.py [--seconds 600] [--rate 100] [--out soak.csv]

Prints a table (runtime, tasks completed, RSS after warm-up, at the end, max, slope in MB/hour
over the samples after the first minute) and writes every sample to the CSV file.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tools.devserver import DevServer
from tools.rest import Client

ROOT = Path(__file__).resolve().parents[1]
WARMUP_S = 60.0

PROGRAMS: dict[str, list[str]] = {
    "rust": [str(ROOT / "target/release/examples/bench_worker"), "--mode", "tokio"],
    "python": [str(ROOT / ".venv/bin/python"), str(ROOT / "bench/workers/python_worker.py"), "--mode", "sync"],
    "ruby": ["ruby", str(ROOT / "bench/workers/ruby_worker.rb"), "--mode", "threads"],
}


def rss_mb(pid: int) -> float:
    """Resident set size of a process and its children (a Python process pool would count)."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def slope_mb_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB), in MB per hour."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(t for t, _ in points) / n
    my = sum(m for _, m in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return sum((t - mx) * (m - my) for t, m in points) / var * 3600


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--seconds", type=float, default=600.0)
    p.add_argument("--rate", type=int, default=100, help="tasks per second per runtime")
    p.add_argument("--out", type=Path, default=Path("soak.csv"))
    args = p.parse_args()

    runnable = {k: v for k, v in PROGRAMS.items() if Path(v[1] if k != "rust" else v[0]).is_file()}
    for name in PROGRAMS.keys() - runnable.keys():
        print(f"{name}: not run: its worker program does not exist", file=sys.stderr)
    dev = DevServer()
    admin = Client(dev.url, timeout=10)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    stop = threading.Event()
    try:
        for name, argv in runnable.items():
            env = {**os.environ, "CONDUCTOR_SERVER_URL": dev.api, "CONDUCTOR_WORKER_JOURNAL": "off"}
            cmd = [*argv, "--task-type", f"soak_{name}", "--concurrency", "10", "--work", "sleep:5"]
            procs[name] = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            assert procs[name].stdout is not None
            if procs[name].stdout.readline().strip() != b"ready":  # type: ignore[union-attr]
                raise RuntimeError(f"{name} worker did not start")

        feed_error: list[str] = []

        def feed() -> None:
            try:
                while not stop.is_set():
                    for name in procs:
                        admin.post("/admin/tasks", {"taskType": f"soak_{name}", "count": args.rate})
                    stop.wait(1.0)
            except OSError as e:
                feed_error.append(f"{e}")

        threading.Thread(target=feed, daemon=True).start()
        t0 = time.monotonic()
        samples: dict[str, list[tuple[float, float]]] = {n: [] for n in procs}
        with args.out.open("w") as csv:
            csv.write("seconds,completed," + ",".join(f"{n}_rss_mb" for n in procs) + "\n")
            while (elapsed := time.monotonic() - t0) < args.seconds:
                if dev.process.poll() is not None or feed_error:
                    raise RuntimeError(
                        f"the dev server died (exit {dev.process.poll()}, feeder: {feed_error}): {dev.stderr()}"
                    )
                done = admin.get("/admin/stats").json()["tasks"]["completed"]
                row = [str(done)]
                for name, proc in procs.items():
                    if proc.poll() is not None:
                        raise RuntimeError(f"{name} worker exited with {proc.returncode}")
                    mb = rss_mb(proc.pid)
                    samples[name].append((elapsed, mb))
                    row.append(f"{mb:.1f}")
                csv.write(f"{elapsed:.0f}," + ",".join(row) + "\n")
                csv.flush()
                time.sleep(10.0)
        stop.set()
        stats = admin.get("/admin/stats").json()
        print(f"soak: {args.seconds:.0f} s, {args.rate} tasks/s per runtime, RSS every 10 s ({args.out})")
        print("| runtime | tasks completed | RSS after 1 min | RSS at the end | max | slope after 1 min |")
        print("|---|---:|---:|---:|---:|---:|")
        completed = stats["tasks"]["completed"]
        for name, pts in samples.items():
            late = [(t, m) for t, m in pts if t >= WARMUP_S] or pts
            print(
                f"| {name} | {completed if len(procs) == 1 else 'see total'} | {late[0][1]:.1f} MB "
                f"| {pts[-1][1]:.1f} MB | {max(m for _, m in pts):.1f} MB | {slope_mb_per_hour(late):+.1f} MB/h |"
            )
        print(f"total tasks completed: {completed} (queued at the end: {stats['tasks']['queued']})")
        return 0
    finally:
        stop.set()
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=40)
                except subprocess.TimeoutExpired:
                    proc.kill()
        dev.stop()


if __name__ == "__main__":
    sys.exit(main())
