"""How task functions run: threads that wait without the GIL, one asyncio loop with many tasks
in flight, a process pool, and bad input or output failing only its own task."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest
from conductor_worker import Runner, current_task, worker

from conftest import Dev, unique, wait_for

FAST = {"poll_timeout": 0.2, "poll_interval": 0.05}


def count_for(seconds: float) -> int:
    """How far a pure-Python loop counts in ``seconds`` on this thread."""
    n = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        n += 1
    return n


def test_another_thread_keeps_running_while_every_worker_waits_for_tasks(dev: Dev) -> None:
    sync_type, async_type = unique("idle"), unique("aidle")

    @worker(sync_type, concurrency=20, **FAST)
    def idle() -> None: ...

    @worker(async_type, concurrency=100, **FAST)
    async def aidle() -> None: ...

    baseline = count_for(0.5)
    with Runner([idle, aidle], servers=[dev.api_url], journal="off") as runner:
        # Every executor waits in Rust before the measurement (on a loaded machine the last
        # threads can take a while to get there).
        wait_for(lambda: sum(h["idle_executors"] for h in runner.health()) == 120, 10, "all 120 executors waiting")
        busy = count_for(0.5)
        assert sum(h["idle_executors"] for h in runner.health()) == 120
    # 20 threads wait in Rust: if they held the GIL, this thread would get a fraction of it.
    assert busy > 0.6 * baseline, (busy, baseline)


def test_an_async_worker_holds_1000_tasks_in_flight_on_one_loop(dev: Dev) -> None:
    task_type = unique("many")
    in_flight = 0
    peak = 0
    loops: set[int] = set()
    threads: set[int] = set()
    release = asyncio.Event()

    @worker(task_type, concurrency=1000, **FAST)
    async def wait_for_release(i: int) -> dict:
        nonlocal in_flight, peak
        loops.add(id(asyncio.get_running_loop()))
        threads.add(threading.get_ident())
        in_flight += 1
        peak = max(peak, in_flight)
        if peak >= 1000:
            release.set()
        await asyncio.wait_for(release.wait(), 30)
        in_flight -= 1
        return {"i": i, "task": current_task().task_id}

    dev.enqueue(task_type, 1000, {"i": 7})
    t0 = time.monotonic()
    with Runner([wait_for_release], servers=[dev.api_url], journal="off"):
        wait_for(lambda: dev.queue_size(task_type) == 0 and in_flight == 0 and peak >= 1000, 30, "1000 tasks")
    elapsed = time.monotonic() - t0
    assert peak == 1000
    assert len(loops) == 1 and len(threads) == 1
    assert elapsed < 20, elapsed


class CountingLoop(asyncio.SelectorEventLoop):
    """A loop of the user's choosing (as uvloop's would be), counting the tasks it creates."""

    def __init__(self) -> None:
        super().__init__()
        self.created = 0

    def create_task(self, coro, **kwargs):  # type: ignore[no-untyped-def]
        self.created += 1
        return super().create_task(coro, **kwargs)


def test_async_workers_run_on_the_loop_that_loop_factory_makes(dev: Dev) -> None:
    task_type = unique("ownloop")
    made: list[CountingLoop] = []

    def factory() -> CountingLoop:
        made.append(CountingLoop())
        return made[-1]

    @worker(task_type, concurrency=5, **FAST)
    async def where() -> dict:
        await asyncio.sleep(0.01)
        return {"loop": type(asyncio.get_running_loop()).__name__}

    ids = dev.run_tasks(task_type, [{}] * 6)
    with Runner([where], servers=[dev.api_url], journal="off", loop_factory=factory):
        outputs = [dev.task_of(i)["outputData"] for i in ids]
    assert outputs == [{"loop": "CountingLoop"}] * 6
    assert len(made) == 1 and made[0].created >= 6 and made[0].is_closed()

    with pytest.raises(TypeError, match="loop_factory must be callable"):
        Runner([where], servers=[dev.api_url], loop_factory="uvloop")  # type: ignore[arg-type]
    runner = Runner([where], servers=[dev.api_url], journal="off", loop_factory=lambda: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="loop_factory must return an asyncio event loop, not None"):
        runner.start()
    assert runner.state == "stopped"


def cpu_bound(n: int) -> dict:
    ctx = current_task()
    ctx.log("summing in", os.getpid())
    return {"sum": sum(range(n)), "pid": os.getpid(), "task_id": ctx.task_id}


def test_process_isolation_runs_the_function_in_another_process(dev: Dev) -> None:
    task_type = unique("cpu")
    spec = worker(task_type, concurrency=2, isolation="process", **FAST)(cpu_bound)
    ids = dev.run_tasks(task_type, [{"n": 1000}, {"n": 10}])
    with Runner([spec], servers=[dev.api_url], journal="off"):
        tasks = [dev.task_of(i) for i in ids]
    assert [t["outputData"]["sum"] for t in tasks] == [499500, 45]
    pids = {t["outputData"]["pid"] for t in tasks}
    assert os.getpid() not in pids
    assert tasks[0]["outputData"]["task_id"] == tasks[0]["taskId"]
    assert any("summing in" in line for line in dev.logs(tasks[0]["taskId"]))


def test_input_that_does_not_fit_fails_only_that_task(dev: Dev) -> None:
    task_type = unique("misfit")

    @worker(task_type, concurrency=1, **FAST)
    def greet(name: str, times: int = 1) -> str:
        return name * times

    ids = dev.run_tasks(task_type, [{"name": 3}, {"times": 2}, {"name": "ok", "times": 2}])
    with Runner([greet], servers=[dev.api_url], journal="off"):
        wrong_type, missing, fine = (dev.task_of(i) for i in ids)
    assert wrong_type["status"] == "FAILED_WITH_TERMINAL_ERROR"
    assert "input 'name' should be a str, got int 3" in wrong_type["reasonForIncompletion"]
    assert missing["status"] == "FAILED_WITH_TERMINAL_ERROR"
    assert "input 'name' is missing" in missing["reasonForIncompletion"]
    assert fine["status"] == "COMPLETED" and fine["outputData"] == {"result": "okok"}


def test_output_that_cannot_be_serialised_fails_only_that_task(dev: Dev) -> None:
    task_type = unique("badout")

    @worker(task_type, **FAST)
    def produce(kind: str) -> dict:
        if kind == "object":
            return {"items": [1, {"when": object()}]}
        if kind == "nan":
            return {"x": float("nan")}
        return {"kind": kind}

    ids = dev.run_tasks(task_type, [{"kind": "object"}, {"kind": "nan"}, {"kind": "plain"}])
    with Runner([produce], servers=[dev.api_url], journal="off"):
        obj, nan, plain = (dev.task_of(i) for i in ids)
    assert obj["status"] == "FAILED_WITH_TERMINAL_ERROR"
    assert "cannot be serialised" in obj["reasonForIncompletion"]
    assert 'output["items"][1]["when"] is of type object' in obj["reasonForIncompletion"]
    assert (
        nan["status"] == "FAILED_WITH_TERMINAL_ERROR"
        and "NaN, which JSON cannot represent" in nan["reasonForIncompletion"]
    )
    assert plain["status"] == "COMPLETED"
