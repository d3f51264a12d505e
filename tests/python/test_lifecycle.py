"""Signals, fork, pause/resume, the journal and lease extension, as a user of run() and Runner
sees them."""

from __future__ import annotations

import gc
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conductor_worker import Runner, _native, worker
from conductor_worker.errors import UnknownTaskError

from conftest import Dev, unique, wait_for

FAST = {"poll_timeout": 0.2, "poll_interval": 0.05}

SLOW_WORKER = """
import signal, sys, time
# A child of a non-interactive shell may inherit SIGINT ignored (toolchain.md, gotcha 7).
signal.signal(signal.SIGINT, signal.default_int_handler)
from conductor_worker import run, worker

@worker(sys.argv[1], poll_timeout=0.2)
def slow(seconds: float) -> dict:
    print("started", flush=True)
    time.sleep(seconds)
    return {{"slept": seconds}}

run(servers=[sys.argv[2]], journal="off", stop_timeout={stop_timeout})
print("exited", flush=True)
"""


def start_slow_worker(tmp_path: Path, task_type: str, api: str, stop_timeout: float = 10) -> subprocess.Popen[str]:
    script = tmp_path / "slow.py"
    script.write_text(SLOW_WORKER.format(stop_timeout=stop_timeout))
    proc = subprocess.Popen(
        [sys.executable, str(script), task_type, api], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started", proc.stderr.read() if proc.stderr else ""
    return proc


def test_ctrl_c_drains_running_tasks(dev: Dev, tmp_path: Path) -> None:
    task_type = unique("drain")
    [wf] = dev.run_tasks(task_type, [{"seconds": 1.5}])
    proc = start_slow_worker(tmp_path, task_type, dev.api_url)
    try:
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
        waited = time.monotonic() - t0
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "exited" in out
    assert waited > 0.8, "it did not wait for the running task"
    task = dev.task_of(wf)
    assert task["status"] == "COMPLETED" and task["outputData"] == {"slept": 1.5}


def test_a_second_ctrl_c_stops_at_once(dev: Dev, tmp_path: Path) -> None:
    task_type = unique("kill")
    [wf] = dev.run_tasks(task_type, [{"seconds": 60}])
    proc = start_slow_worker(tmp_path, task_type, dev.api_url, stop_timeout=60)
    try:
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert proc.poll() is None, "the first Ctrl-C must drain, not exit"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
        assert time.monotonic() - t0 < 5
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert dev.workflow(wf)["tasks"][-1]["status"] == "IN_PROGRESS"


FORKING = """
import multiprocessing, os, sys, time
from conductor_worker import Runner, worker

parent_type, fork_type, mp_type, api = sys.argv[1:5]

def run_one(task_type):
    done = []
    def f() -> dict:
        done.append(1)
        return {"pid": os.getpid()}
    runner = Runner([worker(task_type, poll_timeout=0.2)(f)], servers=[api], journal="off")
    runner.start()
    deadline = time.monotonic() + 20
    while not done and time.monotonic() < deadline:
        time.sleep(0.05)
    runner.stop()
    return bool(done)

def mp_child():
    sys.exit(0 if run_one(mp_type) else 3)

if __name__ == "__main__":
    # The parent's runtime is running (and polling) when the children are forked.
    parent = Runner([worker(parent_type, poll_timeout=0.2)(lambda: {"pid": os.getpid()})], servers=[api], journal="off")
    parent.start()
    pid = os.fork()
    if pid == 0:
        os._exit(0 if run_one(fork_type) else 3)
    _, status = os.waitpid(pid, 0)
    print("fork child exit", os.waitstatus_to_exitcode(status), flush=True)
    p = multiprocessing.get_context("fork").Process(target=mp_child)
    p.start()
    p.join(60)
    print("mp child exit", p.exitcode, flush=True)
    print("start method", multiprocessing.get_start_method(allow_none=True), flush=True)
    parent.stop()
    print("parent", os.getpid(), flush=True)
"""


def test_workers_run_in_a_forked_child_and_with_multiprocessing_fork(dev: Dev, tmp_path: Path) -> None:
    parent_type, fork_type, mp_type = unique("parent"), unique("forked"), unique("mpfork")
    [pwf] = dev.run_tasks(parent_type, [{}])
    [fwf] = dev.run_tasks(fork_type, [{}])
    [mwf] = dev.run_tasks(mp_type, [{}])
    script = tmp_path / "forking.py"
    script.write_text(FORKING)
    result = subprocess.run(
        [sys.executable, str(script), parent_type, fork_type, mp_type, dev.api_url],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "fork child exit 0" in lines and "mp child exit 0" in lines, result.stdout + result.stderr
    # Running workers does not set the program's multiprocessing start method.
    assert "start method None" in lines
    parent_pid = int(lines[-1].split()[1])
    pids = [dev.task_of(w)["outputData"]["pid"] for w in (pwf, fwf, mwf)]
    assert pids[0] == parent_pid
    assert parent_pid not in pids[1:] and pids[1] != pids[2]


def test_pause_and_resume(dev: Dev) -> None:
    task_type = unique("pause")

    @worker(task_type, **FAST)
    def f() -> None: ...

    with Runner([f], servers=[dev.api_url], journal="off") as runner:
        runner.pause()
        wait_for(lambda: runner.health()[0]["state"] == "paused", 5, "paused")
        time.sleep(0.5)  # a long poll already in flight (0.2 s) still brings what it finds
        dev.enqueue(task_type, 2)
        time.sleep(1.0)
        assert dev.queue_size(task_type) == 2
        runner.resume(task_type)
        wait_for(lambda: dev.queue_size(task_type) == 0, 10, "tasks taken after resume")


def test_undelivered_results_go_to_the_journal_and_are_sent_at_the_next_start(fresh_dev: Dev, tmp_path: Path) -> None:
    task_type = unique("journal")
    journal = tmp_path / "journal.jsonl"
    ran: list[int] = []

    @worker(task_type, **FAST)
    def f(n: int) -> dict:
        ran.append(n)
        return {"n": n}

    [wf] = fresh_dev.run_tasks(task_type, [{"n": 5}])
    fresh_dev.faults(fail_rate={"update": 1.0})
    runner = Runner([f], servers=[fresh_dev.api_url], journal=journal)
    runner.start()
    wait_for(lambda: ran, 10, "the task ran")
    report = runner.stop(timeout=1)
    assert report.journalled_results == 1
    assert journal.stat().st_size > 0
    assert fresh_dev.workflow(wf)["tasks"][-1]["status"] == "IN_PROGRESS"

    fresh_dev.root.post("/admin/faults/reset")
    with Runner([f], servers=[fresh_dev.api_url], journal=journal):
        task = fresh_dev.task_of(wf)
    assert task["status"] == "COMPLETED" and task["outputData"] == {"n": 5}
    assert ran == [5], "the task ran once; its result came from the journal"


def test_lease_extension_keeps_long_tasks_alive(fresh_dev: Dev) -> None:
    kept, dropped = unique("lease"), unique("nolease")

    def slow() -> None:
        time.sleep(2.5)

    def slow_too() -> None:
        slow()

    long_with = worker(kept, **FAST)(slow)
    long_without = worker(dropped, lease_extend=False, **FAST)(slow_too)
    fresh_dev.enqueue(kept, 1, responseTimeoutSeconds=1)
    fresh_dev.enqueue(dropped, 1, responseTimeoutSeconds=1)
    with Runner([long_with, long_without], servers=[fresh_dev.api_url], journal="off"):
        stats = wait_for(
            lambda: (s := fresh_dev.stats())["tasks"]["completed"] + s["updates"]["terminal_task"] >= 2 and s,
            15,
            "both tasks reported",
        )
    assert stats["tasks"]["completed"] == 1
    assert stats["tasks"]["timed_out"] == 1
    assert stats["updates"]["lease_extensions"] >= 2


def test_a_task_dropped_without_a_result_is_abandoned_not_kept_alive(fresh_dev: Dev) -> None:
    """A task object that goes away without a result (an exception in glue code, a cancelled
    coroutine) abandons its task: the lease is not extended, and the server retries the task after
    its response timeout."""
    task_type = unique("abandoned")
    fresh_dev.enqueue(task_type, 1, responseTimeoutSeconds=1, retryCount=1)
    runtime = _native.Runtime({"servers": [fresh_dev.api_url], "journal": "off"})
    native = runtime.add_worker(task_type, FAST)
    runtime.start()
    try:
        first = native.next_tasks(1, timeout=5)
        assert first, "no task was handed out"
        first_id = first[0].task_id
        del first
        gc.collect()
        again = wait_for(lambda: native.next_tasks(1, timeout=0.5), 15, "the abandoned task handed out again")
        # The server timed the abandoned task out and handed out its retry.
        retry = again[0]
        assert retry.task_id != first_id and retry.retry_count == 1, (retry.task_id, retry.retry_count)
        assert fresh_dev.stats()["updates"]["lease_extensions"] == 0
        assert 'task_abandoned_total{taskType="' + task_type + '"} 1' in runtime.metrics_text()
        native.complete(retry, "COMPLETED")
        with pytest.raises(UnknownTaskError):
            native.complete(retry, "COMPLETED")
    finally:
        runtime.stop(2.0)
