"""Large payloads and batch long polls as a worker sees them over HTTP, on every server.

External payload storage: above the task input threshold (3072 KB on every server here) the
server hands a polled task ``inputData: {}`` and ``externalInputPayloadStoragePath``; the worker
asks ``GET /api/tasks/externalstoragelocation`` for a location and, when it has a ``uri``, GETs
the input from it. What the storage offers differs per server (``server.storage``, DIFFERENCES.md):
Postgres storage hands out URIs served by the Conductor server, for reads only ("read-only"); the
SQLite tier's default storage hands out none ("none"); the dev server uploads and reads by default
("upload") and can play the other two (``DEVSERVER_VARIANTS``, dev server tier only).

Sizes follow the server's limits (``server.behaviour``): with the defaults, "big" is 4 MB (over
the 3072 KB threshold, under the 5120 KB workflow input threshold), "small" 1 MB, "too big" 12 MB
(over the 10240 KB maximum).
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import pytest

from conftest import DEVSERVER_VARIANTS, SERVERS, Target, target_for, wait_for
from tools.rest import Client, Response

KB = 1024


@pytest.fixture(scope="module", params=[*SERVERS, *DEVSERVER_VARIANTS])
def server(request: pytest.FixtureRequest) -> Target:
    """Every server of the suite, and the dev server with other flags (in the devserver tier)."""
    return target_for(request, request.param)


def payload_workflow(server: Target) -> tuple[str, str]:
    """A workflow of one SIMPLE task whose input ``doc`` is the workflow's input ``doc`` and whose
    output ``big`` is the task's output ``big``; returns (task type, workflow name)."""
    task_type = server.unique("payload")
    server.taskdef(task_type)
    name = server.unique("wf")
    task = {"name": task_type, "taskReferenceName": "only", "type": "SIMPLE"}
    server.workflow(
        name, [{**task, "inputParameters": {"doc": "${workflow.input.doc}"}}], {"big": "${only.output.big}"}
    )
    return task_type, name


def location(server: Target, operation: str, payload_type: str, path: str = "") -> dict[str, Any]:
    query = f"path={quote(path)}&operation={operation}&payloadType={payload_type}"
    r = server.api.get(f"/tasks/externalstoragelocation?{query}")
    assert r.status == 200, (r.status, r.text)
    return dict(r.json())


def at(uri: str, method: str = "GET", body: Any = None) -> Response:
    """A request to a storage URI as a worker makes it: the bare URI, no API key, JSON body."""
    return Client(uri, timeout=60).request(method, "", body)


def finished(server: Target, workflow_id: str) -> dict[str, Any]:
    return dict(
        wait_for(
            lambda: (w := server.workflow_status(workflow_id))["status"] in {"COMPLETED", "FAILED"} and w,
            20,
            "the workflow to finish",
        )
    )


def run_task(server: Target, **result: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Start a payload workflow with a small input, poll its task, update it COMPLETED with
    ``result`` (e.g. ``outputData``); the polled task and the finished workflow."""
    task_type, wf = payload_workflow(server)
    workflow_id = server.start(wf, {"doc": "small"})
    task = server.poll_one(task_type)
    r = server.update(task, "COMPLETED", **result)
    assert r.status == 200, (r.status, r.text[:300])
    return task, finished(server, workflow_id)


def test_a_big_input_reaches_the_worker_as_a_storage_path(server: Target) -> None:
    task_type, wf = payload_workflow(server)
    doc = "i" * (server.behaviour.input_threshold_kb * KB * 4 // 3)  # 4 MB with the defaults
    workflow_id = server.start(wf, {"doc": doc})
    task = server.poll_one(task_type)
    assert task["inputData"] == {}, "the input is not inline"
    path = task["externalInputPayloadStoragePath"]
    assert path, task.get("externalInputPayloadStoragePath")
    loc = location(server, "READ", "TASK_INPUT", path)
    if server.storage == "none":
        assert not loc.get("uri"), f"the default storage hands out no uri: {loc}"
    else:
        assert loc["uri"].startswith(server.root.base + "/api/external/"), loc
        got = at(loc["uri"])
        assert got.status == 200, (got.status, got.text[:300])
        assert got.json() == {"doc": doc}, "the uri serves the task's input object itself"
    assert server.update(task, "COMPLETED", outputData={"big": "done"}).status == 200
    assert finished(server, workflow_id)["status"] == "COMPLETED"


def test_a_small_input_stays_inline(server: Target) -> None:
    task_type, wf = payload_workflow(server)
    doc = "s" * (server.behaviour.input_threshold_kb * KB // 3)  # 1 MB with the defaults
    server.start(wf, {"doc": doc})
    task = server.poll_one(task_type)
    assert task["inputData"] == {"doc": doc}
    assert not task.get("externalInputPayloadStoragePath")


def test_a_write_location(server: Target) -> None:
    loc = location(server, "WRITE", "TASK_OUTPUT")
    assert loc.get("path"), loc
    if server.storage == "none":
        assert not loc.get("uri"), f"the default storage hands out no uri: {loc}"
        return
    assert loc["uri"].startswith(server.root.base + "/api/external/"), loc
    put = at(loc["uri"], "PUT", {"big": "uploaded"})
    if server.storage == "read-only":
        assert put.status == 405, (put.status, put.text[:300])
    else:
        assert 200 <= put.status < 300, (put.status, put.text[:300])
        assert at(loc["uri"]).json() == {"big": "uploaded"}


def test_an_uploaded_output_is_used_by_path(server: Target) -> None:
    """The upload half of the protocol: PUT the output to a WRITE uri, then complete the task with
    ``externalOutputPayloadStoragePath`` and no ``outputData``. No real server here takes uploads
    (Postgres storage is read-only, the default storage has no uri); the dev server does."""
    if server.storage != "upload":
        pytest.skip(f"{server.name}'s storage takes no uploads ({server.storage})")
    loc = location(server, "WRITE", "TASK_OUTPUT")
    big = "u" * (server.behaviour.output_threshold_kb * KB * 4 // 3)
    assert 200 <= at(loc["uri"], "PUT", {"big": big}).status < 300
    _, done = run_task(server, externalOutputPayloadStoragePath=loc["path"])
    assert done["status"] == "COMPLETED" and done["output"]["big"] == big


def test_a_big_output_sent_inline_is_externalized_by_the_server(server: Target) -> None:
    big = "o" * (server.behaviour.output_threshold_kb * KB * 4 // 3)  # 4 MB with the defaults
    task, done = run_task(server, outputData={"big": big})
    assert done["status"] == "COMPLETED"
    stored = server.task(task["taskId"])
    assert stored["status"] == "COMPLETED"
    assert stored["externalOutputPayloadStoragePath"], "the server stored the output itself"
    assert stored["outputData"] == {}
    assert server.api.get(f"/workflow/{done['workflowId']}").json()["output"]["big"] == big, (
        "the workflow's output mapping reads the stored output"
    )


def test_an_output_above_the_maximum_fails_the_task_terminally(server: Target) -> None:
    huge = "h" * (server.behaviour.max_payload_kb * KB * 6 // 5)  # 12 MB with the defaults
    task, failed = run_task(server, outputData={"big": huge})  # the update is accepted (200)
    assert failed["status"] == "FAILED"
    stored = server.task(task["taskId"])
    assert stored["status"] == "FAILED_WITH_TERMINAL_ERROR"
    # Real servers: "The payload size: 12582922 of task: <id> in workflow: <id>  is greater than
    # the permissible limit: 10485760 bytes"
    limit = server.behaviour.max_payload_kb * KB
    assert f"is greater than the permissible limit: {limit} bytes" in stored["reasonForIncompletion"], stored[
        "reasonForIncompletion"
    ]
    assert stored["outputData"] == {}, "the output is dropped"


def ready_tasks(server: Target, n: int) -> str:
    """A new task type with ``n`` tasks in its queue."""
    task_type = server.unique("ready")
    wf = server.simple_workflow(task_type)
    for x in range(n):
        server.start(wf, {"x": x})
    wait_for(lambda: server.queue_size(task_type) == n, 5, f"{n} tasks queued")
    return task_type


def timed_poll(server: Target, task_type: str, count: int, timeout: int) -> tuple[list[dict[str, Any]], float]:
    t0 = time.monotonic()
    tasks = server.poll(task_type, count=count, timeout=timeout)
    return tasks, time.monotonic() - t0


def test_a_long_poll_for_more_tasks_than_are_ready(server: Target) -> None:
    """The one deliberate long-poll difference (DIFFERENCES.md): with 2 tasks ready,
    ``count=5&timeout=2000``: the real servers (SQLite and Postgres queues alike) wait out the
    timeout for the other 3; the dev server answers at once unless started with
    ``--batch-poll-waits-for-count``."""
    tasks, took = timed_poll(server, ready_tasks(server, 2), count=5, timeout=2000)
    assert len(tasks) == 2
    if server.batch_poll_waits_for_count:
        assert 1.8 <= took < 4.5, f"{server.name} answered after {took:.2f} s"
    else:
        assert took < 1.0, f"{server.name} answered after {took:.2f} s"


def test_a_batch_long_poll_of_one_returns_at_once(server: Target) -> None:
    tasks, took = timed_poll(server, ready_tasks(server, 2), count=1, timeout=2000)
    assert len(tasks) == 1 and took < 1.0, f"{len(tasks)} tasks after {took:.2f} s"


def test_a_batch_poll_without_timeout_returns_what_is_ready(server: Target) -> None:
    tasks, took = timed_poll(server, ready_tasks(server, 2), count=5, timeout=0)
    assert len(tasks) == 2 and took < 1.0, f"{len(tasks)} tasks after {took:.2f} s"
