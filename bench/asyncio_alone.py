#!/usr/bin/env python3
"""The ceiling of the sleep scenarios for any asyncio worker on this machine: the same tasks
(``asyncio.sleep``) kept ``--concurrency`` in flight on one plain asyncio loop, with no server,
no network and no worker runtime. Prints ``<tasks/s> tasks/s``.

    python3 bench/asyncio_alone.py --concurrency 1000 --tasks 40000 --sleep-ms 50

Each task starts the moment another one ends, as in a worker that gets its next task for
free; what it loses against concurrency / sleep is the loop's own timer lateness and
bookkeeping.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time


async def drain(concurrency: int, tasks: int, sleep_s: float) -> float:
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    started = finished = 0
    running: set[asyncio.Task[None]] = set()

    async def task() -> None:
        await asyncio.sleep(sleep_s)

    def start() -> None:
        nonlocal started
        started += 1
        t = loop.create_task(task())
        running.add(t)
        t.add_done_callback(end)

    def end(t: asyncio.Task[None]) -> None:
        nonlocal finished
        running.discard(t)
        finished += 1
        if started < tasks:
            start()
        elif finished == tasks:
            done.set_result(None)

    t0 = time.monotonic()
    for _ in range(min(concurrency, tasks)):
        start()
    await done
    return tasks / (time.monotonic() - t0)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="asyncio_alone.py", description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--concurrency", type=int, required=True)
    p.add_argument("--tasks", type=int, required=True)
    p.add_argument("--sleep-ms", type=int, default=50)
    args = p.parse_args(argv)
    if args.concurrency < 1 or args.tasks < 1 or args.sleep_ms < 0:
        p.error("--concurrency and --tasks must be >= 1, --sleep-ms >= 0")
    rate = asyncio.run(drain(args.concurrency, args.tasks, args.sleep_ms / 1000))
    print(f"{rate:.1f} tasks/s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
