#!/usr/bin/env python3
"""Our Python package as a worker program (bench/workers/README.md): modes sync, async, process.

    CONDUCTOR_SERVER_URL=http://127.0.0.1:8080/api \\
        .venv/bin/python bench/workers/python_worker.py --mode sync --task-type t --concurrency 10 --work noop

Written the way a user writes a worker: ``@worker`` on a module-level function, then
``Runner().run()`` (SIGTERM or SIGINT drains). ``sync`` runs plain functions on threads,
``async`` runs ``async def`` functions on the runner's asyncio loop, ``process`` runs plain
functions with ``isolation="process"``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from conductor_worker import Runner, worker

# Set from the command line before the runner starts; process pools fork, so their children
# see the same values.
_WORK = {"sleep_s": 0.0, "rounds": 0}


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
    time.sleep(_WORK["sleep_s"])
    return {}


def cpu() -> dict[str, Any]:
    return {"digest": hash_rounds(int(_WORK["rounds"]))}


def echo(data: Any = None) -> dict[str, Any]:
    return {"data": data}


async def noop_async() -> dict[str, Any]:
    return {}


async def sleep_async() -> dict[str, Any]:
    await asyncio.sleep(_WORK["sleep_s"])
    return {}


async def cpu_async() -> dict[str, Any]:
    return {"digest": hash_rounds(int(_WORK["rounds"]))}


async def echo_async(data: Any = None) -> dict[str, Any]:
    return {"data": data}


def work_arg(value: str) -> tuple[str, int]:
    if value in ("noop", "echo"):
        return (value, 0)
    kind, _, n = value.partition(":")
    if kind in ("sleep", "cpu") and n.isdigit():
        return (kind, int(n))
    raise argparse.ArgumentTypeError(f"expected noop, echo, sleep:MS or cpu:N, got {value!r}")


def positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a number from 1, got {value!r}")
    return int(value)


def millis(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"expected milliseconds, got {value!r}")
    return int(value)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python_worker.py", description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--mode", required=True, choices=["sync", "async", "process"])
    p.add_argument("--task-type", required=True, action="append", dest="task_types")
    p.add_argument("--concurrency", required=True, type=positive)
    p.add_argument("--work", required=True, type=work_arg)
    p.add_argument("--poll-interval-ms", type=millis)
    return p.parse_args(argv)  # exits 2 with a message naming the argument


def main(argv: list[str]) -> int:
    args = parse(argv)
    kind, n = args.work
    _WORK["sleep_s"] = n / 1000.0 if kind == "sleep" else 0.0
    _WORK["rounds"] = n if kind == "cpu" else 0
    funcs: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
        "noop": (noop, noop_async),
        "sleep": (sleep_blocking, sleep_async),
        "cpu": (cpu, cpu_async),
        "echo": (echo, echo_async),
    }
    sync_fn, async_fn = funcs[kind]
    func = async_fn if args.mode == "async" else sync_fn
    poll_interval = args.poll_interval_ms / 1000.0 if args.poll_interval_ms is not None else None
    for task_type in args.task_types:
        worker(
            task_type,
            concurrency=args.concurrency,
            poll_interval=poll_interval,
            isolation="process" if args.mode == "process" else "thread",
        )(func)

    # A signal between start() and run() (which installs the draining handlers) is kept.
    early: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: early.append(signum))
    runner = Runner()
    runner.start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    if early:
        runner.stop()
    else:
        runner.run()  # until SIGTERM or SIGINT, then drains
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
