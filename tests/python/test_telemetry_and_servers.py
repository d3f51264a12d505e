"""Logs, events and metrics from the core; several servers; task definition registration; and a
workflow on a real Conductor server."""

from __future__ import annotations

import json
import logging
import threading
import urllib.request

import pytest
from conductor_worker import Event, Runner, _logging, worker

from conftest import Dev, Server, unique, wait_for
from tools.conductor_server import ConductorServer
from tools.devserver import devserver

FAST = {"poll_timeout": 0.2, "poll_interval": 0.05}
# Nothing listens there: polls fail at once. The first failure is a warning, the next ones are
# debug records, and the third opens the server's circuit breaker (another warning).
REFUSING = "http://127.0.0.1:9/api"


def test_core_logs_reach_python_logging_from_the_loggers_level_up(
    dev: Dev, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_type = unique("logs")

    @worker(task_type, **FAST)
    def f() -> None: ...

    handed_over: list[int] = []
    forward = _logging.forward

    def spy(records: list[tuple[int, str, str, float]]) -> None:
        handed_over.extend(level for level, *_ in records)
        forward(records)

    monkeypatch.setattr(_logging, "forward", spy)
    caplog.set_level(logging.INFO, logger="conductor_worker")
    with Runner([f], servers=[dev.api_url, REFUSING], journal="off"):
        wait_for(
            lambda: any("circuit breaker open" in (m := r.getMessage()) and REFUSING in m for r in caplog.records),
            10,
            "the breaker's warning, after the debug records of the failed polls before it",
        )
    record = next(r for r in caplog.records if "worker state changed" in (m := r.getMessage()) and task_type in m)
    assert record.name.startswith("conductor_worker")
    assert record.levelno == logging.INFO
    # The core hands over nothing below the logger's level (it does not even format it).
    assert min(handed_over) >= logging.INFO, sorted(set(handed_over))


def test_forwarding_leaves_out_records_below_their_loggers_level(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="conductor_worker")
    caplog.handler.setLevel(logging.NOTSET)  # so that only the forwarding can leave a record out
    mark = unique("forwarded")
    _logging.forward(
        [
            (logging.DEBUG, "conductor_worker::runner", f"{mark} quiet", 1.25),
            (logging.WARNING, "conductor_worker::runner", f"{mark} loud", 1.5),
            (logging.WARNING, "hyper::client", f"{mark} other", 2.0),
        ]
    )
    # Records of conductor_worker's modules go to its child loggers, other crates' to the package's logger.
    assert [(r.name, r.levelno, r.getMessage(), r.created) for r in caplog.records if mark in r.getMessage()] == [
        ("conductor_worker.runner", logging.WARNING, f"{mark} loud", 1.5),
        ("conductor_worker", logging.WARNING, f"{mark} other", 2.0),
    ]


def test_event_listeners_see_executions(dev: Dev) -> None:
    task_type = unique("events")
    events: list[Event] = []
    threads: set[str] = set()

    def listener(e: Event) -> None:
        threads.add(threading.current_thread().name)
        events.append(e)

    @worker(task_type, **FAST)
    def f() -> None: ...

    [wf] = dev.run_tasks(task_type, [{}])
    runner = Runner([f], servers=[dev.api_url], journal="off")
    runner.add_listener(listener)
    with runner:
        task = dev.task_of(wf)
        done = wait_for(
            lambda: [e for e in events if e.kind == "update_delivered" and e.task_id == task["taskId"]], 5, "event"
        )
    assert done[0].task_type == task_type and done[0].attempts == 1
    kinds = {e.kind for e in events if e.fields.get("task_type") == task_type}
    assert {"poll_started", "execution_started", "execution_completed", "update_delivered"} <= kinds
    assert threading.main_thread().name not in threads


def test_metrics_and_health_endpoint(dev: Dev) -> None:
    task_type = unique("metrics")

    @worker(task_type, **FAST)
    def f() -> None: ...

    ids = dev.run_tasks(task_type, [{}, {}])
    with Runner([f], servers=[dev.api_url], journal="off", metrics_port=0) as runner:
        for wf in ids:
            dev.task_of(wf)
        assert runner.metrics_addr is not None
        host, port = runner.metrics_addr
        text = wait_for(
            lambda: (
                (t := urllib.request.urlopen(f"http://{host}:{port}/metrics").read().decode())
                and f'task_execute_time_seconds_count{{taskType="{task_type}"}} 2' in t
                and t
            ),
            5,
            "metrics",
        )
        assert f'task_poll_total{{taskType="{task_type}"}}' in text
        assert f'task_poll_total{{taskType="{task_type}"}}' in runner.metrics_text()
        with urllib.request.urlopen(f"http://{host}:{port}/health") as r:
            health = json.loads(r.read())
        assert r.status == 200 and health["healthy"] is True
        assert health["workers"][0]["taskType"] == task_type


def test_several_servers_and_task_definition_registration() -> None:
    task_type = unique("multi")

    @worker(task_type, concurrency=4, register={"retryCount": 7, "description": "from python"}, **FAST)
    def where(origin: str) -> dict:
        return {"origin": origin}

    with devserver() as a_proc, devserver() as b_proc:
        a, b = Server(a_proc.api, a_proc.url), Server(b_proc.api, b_proc.url)
        with Runner([where], servers=[a.api_url, b.api_url], journal="off"):
            # Registered at start on every server, with the given fields over the defaults.
            for s in (a, b):
                definition = s.api.get(f"/metadata/taskdefs/{task_type}").json()
                assert definition["retryCount"] == 7 and definition["description"] == "from python"
            wf_a = a.run_tasks(task_type, [{"origin": "a"}], retryCount=7)
            wf_b = b.run_tasks(task_type, [{"origin": "b"}], retryCount=7)
            assert a.task_of(wf_a[0])["outputData"] == {"origin": "a"}
            assert b.task_of(wf_b[0])["outputData"] == {"origin": "b"}


def test_a_workflow_on_a_real_conductor_server(conductor_server_fixture: ConductorServer) -> None:
    real = Server(conductor_server_fixture.api, conductor_server_fixture.url)
    task_type = unique("real")

    @worker(task_type, concurrency=2, poll_timeout=0.5)
    def greet(name: str) -> dict:
        return {"greeting": f"hello {name}"}

    ids = real.run_tasks(task_type, [{"name": "Ada"}, {"name": 42}])
    with Runner([greet], servers=[real.api_url], journal="off"):
        ok, misfit = (real.task_of(i, within=60) for i in ids)
        workflow = wait_for(
            lambda: (w := real.workflow(ids[0]))["status"] == "COMPLETED" and w, 30, "workflow completed"
        )
    assert ok["status"] == "COMPLETED" and ok["outputData"] == {"greeting": "hello Ada"}
    assert workflow["output"]["out"] == {"greeting": "hello Ada"}
    assert misfit["status"] == "FAILED_WITH_TERMINAL_ERROR"
    assert "input 'name' should be a str" in misfit["reasonForIncompletion"]
