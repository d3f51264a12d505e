"""Quiet, then stop (Sidekiq's TSTP): ``Runner.quiet()`` / ``resume_all()``, and ``run()`` doing
them on SIGTSTP / SIGCONT before SIGTERM drains and exits."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conductor_worker import Runner, worker
from conductor_worker.errors import NotRunningError

from conftest import Dev, unique, wait_for

FAST = {"poll_timeout": 0.2, "poll_interval": 0.05}

QUIET_WORKER = """
import logging, signal, sys, time
# A child of a non-interactive shell may inherit SIGINT ignored (toolchain.md, gotcha 7).
signal.signal(signal.SIGINT, signal.default_int_handler)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
from conductor_worker import run, worker

@worker(sys.argv[1], concurrency=3, poll_timeout=0.2, poll_interval=0.05)
def slow(seconds: float) -> dict:
    time.sleep(seconds)
    return {"slept": seconds}

run(servers=[sys.argv[2]], journal="off", stop_timeout=10)
print("exited", flush=True)
"""


def status(dev: Dev, workflow_id: str) -> str:
    tasks = dev.workflow(workflow_id).get("tasks") or []
    return str(tasks[-1]["status"]) if tasks else "NONE"


def polls(dev: Dev) -> int:
    requests = dev.stats()["requests"]
    return int(requests.get("poll", 0) + requests.get("batch_poll", 0))


def test_sigtstp_quiets_sigcont_resumes_and_sigterm_then_drains(fresh_dev: Dev, tmp_path: Path) -> None:
    task_type = unique("quiet")
    wf = fresh_dev.workflow_for(task_type, ["seconds"])
    first = [fresh_dev.start(wf, {"seconds": 2}) for _ in range(3)]
    script = tmp_path / "quiet.py"
    script.write_text(QUIET_WORKER)
    log = tmp_path / "stderr.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(script), task_type, fresh_dev.api_url],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        wait_for(lambda: all(status(fresh_dev, w) == "IN_PROGRESS" for w in first), 15, "the 3 tasks running")
        proc.send_signal(signal.SIGTSTP)
        wait_for(lambda: "SIGTSTP: quiet" in log.read_text(), 5, "the worker quieted")
        second = [fresh_dev.start(wf, {"seconds": 0.1}) for _ in range(2)]

        # The running tasks finish and their results are delivered ...
        for w in first:
            task = fresh_dev.task_of(w, within=10)
            assert task["status"] == "COMPLETED" and task["outputData"] == {"slept": 2}, task
        # ... but nothing is polled any more (not even as update-v2's next task), and the
        # process stays up.
        before = polls(fresh_dev)
        time.sleep(2.0)
        assert [status(fresh_dev, w) for w in second] == ["SCHEDULED"] * 2
        assert polls(fresh_dev) == before, "a quiet worker polled"
        assert fresh_dev.stats()["tasks"]["deliveries"] == 3
        assert proc.poll() is None, log.read_text()

        proc.send_signal(signal.SIGCONT)
        for w in second:
            assert fresh_dev.task_of(w, within=10)["status"] == "COMPLETED"

        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)  # the drain deadline is 10 s
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, log.read_text()
    assert "exited" in out


def ready_status(runner: Runner) -> int:
    addr = runner.metrics_addr
    assert addr is not None
    try:
        with urllib.request.urlopen(f"http://{addr[0]}:{addr[1]}/health/ready", timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_runner_quiet_and_resume_all(dev: Dev) -> None:
    kept, other = unique("quiet_a"), unique("quiet_b")

    @worker(kept, **FAST)
    def a() -> None: ...

    @worker(other, **FAST)
    def b() -> None: ...

    runner = Runner([a, b], servers=[dev.api_url], journal="off", metrics_port=0)
    with pytest.raises(NotRunningError):
        runner.quiet()
    with pytest.raises(NotRunningError):
        runner.resume_all()
    with runner:
        wait_for(lambda: ready_status(runner) == 200, 5, "ready")
        runner.quiet()
        assert [h["state"] for h in runner.health()] == ["paused", "paused"]
        assert ready_status(runner) == 503
        time.sleep(0.5)  # a long poll already in flight (0.2 s) still brings what it finds
        dev.enqueue(kept, 2)
        dev.enqueue(other, 1)
        time.sleep(1.0)
        assert (dev.queue_size(kept), dev.queue_size(other)) == (2, 1)
        assert runner.state == "running"

        runner.resume_all()
        assert [h["state"] for h in runner.health()] == ["running", "running"]
        wait_for(lambda: dev.queue_size(kept) == 0 and dev.queue_size(other) == 0, 10, "tasks taken after resume_all")
        assert ready_status(runner) == 200

        # resume_all also resumes a worker paused on its own.
        runner.pause(other)
        runner.resume_all()
        assert [h["state"] for h in runner.health()] == ["running", "running"]


def test_run_handles_sigtstp_and_sigcont_and_restores_the_previous_handlers(dev: Dev) -> None:
    task_type = unique("quiet_handlers")

    @worker(task_type, **FAST)
    def f() -> None: ...

    def mine(signum: int, frame: object) -> None: ...

    quiet_signals = (signal.SIGTSTP, signal.SIGCONT)
    saved = {s: signal.signal(s, mine) for s in quiet_signals}
    runner = Runner([f], servers=[dev.api_url], journal="off")
    during: dict[int, object] = {}

    def look_then_stop() -> None:
        wait_for(lambda: runner.state == "running", 10, "running")
        during.update({s: signal.getsignal(s) for s in quiet_signals})
        runner.stop()

    try:
        stopper = threading.Thread(target=look_then_stop)
        stopper.start()
        runner.run()
        stopper.join(10)
        assert all(during[s] not in (mine, signal.SIG_DFL, signal.SIG_IGN) for s in quiet_signals), during
        assert [signal.getsignal(s) for s in quiet_signals] == [mine, mine]
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
