#!/usr/bin/env python3
"""conductor-python 2.0.0 as a worker program (bench/workers/README.md): modes sync and async.

Runs in its own venv (``bench/setup.sh`` creates ``bench/.venv-peer`` with
``conductor-python==2.0.0``), with the SDK's recommended API: ``@worker_task`` on module-level
functions (``def`` for ``sync``, ``async def`` for ``async``), then
``TaskHandler(workers=[], configuration=Configuration(), scan_for_annotated_workers=True)`` and
``start_processes()``. The SDK starts one process per task type (multiprocessing ``spawn``),
plus a logger process.

Where the SDK differs from the contract, it is the SDK's behaviour that is kept:
- ``ready`` is printed when ``start_processes()`` has returned; the worker processes send their
  first poll about a second later (the harness waits for the server to see it).
- On SIGTERM or SIGINT the program calls ``stop_processes()``, the SDK's own stop: it
  terminates the worker processes without letting running tasks finish (the SDK has no drain).
- One server only: the SDK reads a single ``CONDUCTOR_SERVER_URL`` (a comma-separated list
  exits 2).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import signal
import sys
import threading
import time
from typing import Any

# The work is passed to the worker processes through the environment: they are spawned and
# import this file again (as __mp_main__), without running main().
_WORK_ENV = "PEER_WORKER_WORK"
_kind, _, _n = os.environ.get(_WORK_ENV, "noop").partition(":")
_SLEEP_S = int(_n) / 1000.0 if _kind == "sleep" and _n.isdigit() else 0.0
_ROUNDS = int(_n) if _kind == "cpu" and _n.isdigit() else 0


def hash_rounds(rounds: int) -> str:
    """``rounds`` rounds of SHA-256, each over the previous digest, from 32 zero bytes."""
    digest = bytes(32)
    sha256 = hashlib.sha256
    for _ in range(rounds):
        digest = sha256(digest).digest()
    return digest.hex()


def noop() -> dict[str, Any]:
    return {}


def sleep_blocking() -> dict[str, Any]:
    time.sleep(_SLEEP_S)
    return {}


def cpu() -> dict[str, Any]:
    return {"digest": hash_rounds(_ROUNDS)}


async def noop_async() -> dict[str, Any]:
    return {}


async def sleep_async() -> dict[str, Any]:
    await asyncio.sleep(_SLEEP_S)
    return {}


async def cpu_async() -> dict[str, Any]:
    return {"digest": hash_rounds(_ROUNDS)}


_FUNCS = {
    "noop": (noop, noop_async),
    "sleep": (sleep_blocking, sleep_async),
    "cpu": (cpu, cpu_async),
}


def work_arg(value: str) -> str:
    kind, _, n = value.partition(":")
    if value == "noop" or (kind in ("sleep", "cpu") and n.isdigit()):
        return value
    raise argparse.ArgumentTypeError(f"expected noop, sleep:MS or cpu:N, got {value!r}")


def positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a number from 1, got {value!r}")
    return int(value)


def millis(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"expected milliseconds, got {value!r}")
    return int(value)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="peer_worker.py", description="conductor-python 2.0.0 worker program")
    p.add_argument("--mode", required=True, choices=["sync", "async"])
    p.add_argument("--task-type", required=True, action="append", dest="task_types")
    p.add_argument("--concurrency", required=True, type=positive)
    p.add_argument("--work", required=True, type=work_arg)
    p.add_argument("--poll-interval-ms", type=millis)
    args = p.parse_args(argv)  # exits 2 with a message naming the argument
    if "," in os.environ.get("CONDUCTOR_SERVER_URL", ""):
        p.exit(2, "peer_worker.py: CONDUCTOR_SERVER_URL: conductor-python 2.0.0 takes one server, not a list\n")

    os.environ[_WORK_ENV] = args.work  # for the spawned worker processes
    # Only now (after argument checks) import the SDK: it is slow to import.
    from conductor.client.automator.task_handler import TaskHandler
    from conductor.client.configuration.configuration import Configuration
    from conductor.client.worker.worker_task import worker_task

    sync_fn, async_fn = _FUNCS[args.work.partition(":")[0]]
    func = async_fn if args.mode == "async" else sync_fn
    options: dict[str, Any] = {"thread_count": args.concurrency}
    if args.poll_interval_ms is not None:
        options["poll_interval_millis"] = args.poll_interval_ms
    for task_type in args.task_types:
        worker_task(task_definition_name=task_type, **options)(func)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _signum, _frame: stop.set())
    handler = TaskHandler(workers=[], configuration=Configuration(), scan_for_annotated_workers=True)
    handler.start_processes()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while not stop.wait(0.5):
        pass
    handler.stop_processes()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
