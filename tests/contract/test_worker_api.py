"""The worker API contract, run against the dev server and the real Conductor servers (SQLite
and Postgres) alike.

Where servers legitimately differ the test says so (``server.is_devserver``; the Target
properties ``backend``, ``storage`` and ``batch_poll_waits_for_count`` say more, see
test_large_payloads.py) and DIFFERENCES.md lists it; anything else the dev server does differently
is a dev server bug. Batch long polls for more tasks than are ready are in test_large_payloads.py.
"""

from __future__ import annotations

import threading
import time

import pytest

from conftest import Target, wait_for


def test_task_definitions_register_idempotently_update_and_read(server: Target) -> None:
    name = server.unique("def")
    server.taskdef(name, retryCount=2)
    server.taskdef(name, retryCount=2)  # registering again is an upsert
    got = server.api.get(f"/metadata/taskdefs/{name}").json()
    assert got["name"] == name and got["retryCount"] == 2
    updated = {**got, "retryCount": 5}
    assert server.api.put("/metadata/taskdefs", updated).status == 200
    assert server.api.get(f"/metadata/taskdefs/{name}").json()["retryCount"] == 5
    missing = server.unique("missing")
    assert server.api.put("/metadata/taskdefs", {**updated, "name": missing}).status == 404
    assert server.api.get(f"/metadata/taskdefs/{missing}").status == 404


def test_empty_polls(server: Target) -> None:
    task_type = server.unique("empty")
    assert server.api.get(f"/tasks/poll/{task_type}?workerid=w").status == 204
    r = server.api.get(f"/tasks/poll/batch/{task_type}?workerid=w&count=5&timeout=100")
    assert (r.status, r.json()) == (200, [])


def test_a_long_poll_above_5_s_is_rejected(server: Target) -> None:
    r = server.api.get(f"/tasks/poll/batch/{server.unique('t')}?workerid=w&count=1&timeout=5001")
    assert r.status == 400
    assert "5" in r.text


def test_an_empty_long_poll_waits_its_timeout(server: Target) -> None:
    t0 = time.monotonic()
    assert server.poll(server.unique("idle"), count=1, timeout=2000) == []
    assert 1.8 <= time.monotonic() - t0 < 4.5


def test_a_long_poll_returns_when_a_task_arrives(server: Target) -> None:
    if not server.is_devserver:
        # Measured on 3.32.3, SQLite and Postgres alike: a task that arrives 0.5 s into a 5 s
        # long poll of one is not handed out within 2 s (DIFFERENCES.md).
        pytest.skip(f"{server.name} does not answer a long poll when a task arrives (DIFFERENCES.md)")
    task_type = server.unique("arrive")
    wf = server.simple_workflow(task_type)
    threading.Timer(0.5, lambda: server.start(wf, {"x": 1})).start()
    t0 = time.monotonic()
    tasks = server.poll(task_type, count=1, timeout=5000)
    assert len(tasks) == 1 and time.monotonic() - t0 < 2.0


def test_a_workflow_runs_task_by_task_with_expressions(server: Target) -> None:
    a, b = server.unique("a"), server.unique("b")
    server.taskdef(a)
    server.taskdef(b)
    wf = server.unique("wf")
    server.workflow(
        wf,
        [
            {
                "name": a,
                "taskReferenceName": "first",
                "type": "SIMPLE",
                "inputParameters": {"name": "${workflow.input.name}", "n": "${workflow.input.n}"},
            },
            {
                "name": b,
                "taskReferenceName": "second",
                "type": "SIMPLE",
                "inputParameters": {"greeting": "${first.output.greeting}", "nested": "${first.output.deep.value}"},
            },
        ],
        output={"result": "${second.output.shout}"},
    )
    workflow_id = server.start(wf, {"name": "Ada", "n": 3})
    first = server.poll_one(a)
    assert first["status"] == "IN_PROGRESS"
    assert first["pollCount"] == 1 and first["workerId"] == "contract-worker"
    assert first["workflowInstanceId"] == workflow_id
    assert first["inputData"] == {"name": "Ada", "n": 3}, "whole-string expressions keep their type"
    r = server.update(first, "COMPLETED", outputData={"greeting": "hello Ada", "deep": {"value": [1, 2]}})
    assert r.status == 200 and r.text.strip().strip('"') == first["taskId"]
    second = server.poll_one(b)
    assert second["inputData"] == {"greeting": "hello Ada", "nested": [1, 2]}
    assert server.update(second, "COMPLETED", outputData={"shout": "HELLO ADA"}).status == 200
    done = wait_for(
        lambda: (w := server.workflow_status(workflow_id))["status"] == "COMPLETED" and w, 10, "workflow completion"
    )
    assert done["output"] == {"result": "HELLO ADA"}
    assert [t["status"] for t in done["tasks"]] == ["COMPLETED", "COMPLETED"]


def test_a_domain_task_is_only_polled_in_its_domain(server: Target) -> None:
    task_type = server.unique("dom")
    wf = server.simple_workflow(task_type)
    r = server.api.post("/workflow", {"name": wf, "version": 1, "input": {"x": 1}, "taskToDomain": {task_type: "blue"}})
    assert r.status == 200, r.text
    assert server.poll(task_type, count=1, timeout=500) == []
    task = server.poll_one(task_type, domain="blue")
    assert task["domain"] == "blue"


@pytest.mark.parametrize("endpoint", ["/tasks", "/tasks/update-v2"])
def test_an_update_for_an_unknown_task_is_404_with_an_error_body(server: Target, endpoint: str) -> None:
    unknown_workflow = server.api.post(
        endpoint, {"taskId": "no-such-task", "workflowInstanceId": "no-such-wf", "status": "COMPLETED"}
    )
    assert unknown_workflow.status == 404
    body = unknown_workflow.json()
    # The whole ErrorResponse: {"status":404,"message":"...","instance":"<host>","retryable":false}
    assert set(body) == {"status", "message", "instance", "retryable"} and body["status"] == 404
    assert body["message"] == "No such workflow found by id: no-such-wf", "the workflow is looked up first"
    assert body["retryable"] is False
    task_type = server.unique("unknown")
    workflow_id = server.start(server.simple_workflow(task_type), {"x": 1})
    unknown_task = server.api.post(
        endpoint, {"taskId": "no-such-task", "workflowInstanceId": workflow_id, "status": "COMPLETED"}
    )
    assert unknown_task.status == 404
    assert unknown_task.json()["message"] == "No such task found by id: no-such-task"


def test_a_missing_route_answers_an_error_response_not_about_a_task(server: Target) -> None:
    # What an old server without update-v2 answers: the path matches GET /api/tasks/{taskId}.
    r = server.api.post("/tasks/update-v9", {"taskId": "t", "workflowInstanceId": "w", "status": "COMPLETED"})
    assert r.status == 405
    assert "no such" not in r.json()["message"].lower()
    r = server.api.post("/tasks/a/b/c/d", {})
    assert r.status == 404 and "no such" not in r.json()["message"].lower()


def test_an_update_for_a_terminal_task_is_accepted_and_ignored(server: Target) -> None:
    task_type = server.unique("terminal")
    server.start(server.simple_workflow(task_type), {"x": 1})
    task = server.poll_one(task_type)
    assert server.update(task, "COMPLETED", outputData={"v": 1}).status == 200
    late = server.update(task, "FAILED", outputData={"v": 2}, reasonForIncompletion="late")
    assert late.status == 200
    stored = server.task(task["taskId"])
    assert stored["status"] == "COMPLETED" and stored["outputData"] == {"v": 1}


def test_extend_lease_only_extends(server: Target) -> None:
    task_type = server.unique("lease")
    server.start(server.simple_workflow(task_type), {"x": 1})
    task = server.poll_one(task_type)
    before = server.task(task["taskId"])["updateTime"]
    time.sleep(1.1)
    r = server.update(task, "COMPLETED", extendLease=True, outputData={"ignored": True})
    assert r.status == 200 and r.text.strip().strip('"') == task["taskId"]
    stored = server.task(task["taskId"])
    assert stored["status"] == "IN_PROGRESS"
    assert "ignored" not in (stored.get("outputData") or {})
    assert stored["updateTime"] - before >= 1000, "the lease (updateTime) is renewed"


def test_in_progress_with_a_callback_requeues_after_the_delay(server: Target) -> None:
    task_type = server.unique("callback")
    server.start(server.simple_workflow(task_type), {"x": 1})
    task = server.poll_one(task_type)
    t0 = time.monotonic()
    assert server.update(task, "IN_PROGRESS", callbackAfterSeconds=2, outputData={"step": 1}).status == 200
    stored = server.task(task["taskId"])
    assert stored["status"] == "SCHEDULED" and stored["outputData"] == {"step": 1}
    again, after = server.first_poll_after(task_type, t0)
    assert 1.8 <= after < 6, f"offered again after {after:.2f} s, callbackAfterSeconds was 2"
    assert again["taskId"] == task["taskId"] and again["pollCount"] == 2
    assert again["outputData"] == {"step": 1}, "the output of the IN_PROGRESS update is kept"


def test_failed_is_retried_as_a_new_task(server: Target) -> None:
    task_type = server.unique("retry")
    workflow_id = server.start(server.simple_workflow(task_type, retryCount=1, retryDelaySeconds=2), {"x": 7})
    first = server.poll_one(task_type)
    t0 = time.monotonic()
    assert server.update(first, "FAILED", reasonForIncompletion="boom").status == 200
    retry, after = server.first_poll_after(task_type, t0)
    assert 1.8 <= after < 6, f"retried after {after:.2f} s, retryDelaySeconds was 2"
    assert retry["taskId"] != first["taskId"] and retry["retryCount"] == 1
    assert retry["inputData"] == {"x": 7}, "the retry gets the same input"
    old = server.task(first["taskId"])
    assert old["status"] == "FAILED" and old["reasonForIncompletion"] == "boom"
    assert server.update(retry, "COMPLETED").status == 200
    wait_for(lambda: server.workflow_status(workflow_id)["status"] == "COMPLETED", 10, "completion")


def test_failed_with_terminal_error_is_never_retried(server: Target) -> None:
    task_type = server.unique("terminal_error")
    workflow_id = server.start(server.simple_workflow(task_type, retryCount=3), {"x": 1})
    task = server.poll_one(task_type)
    assert server.update(task, "FAILED_WITH_TERMINAL_ERROR", reasonForIncompletion="bad input").status == 200
    failed = wait_for(
        lambda: (w := server.workflow_status(workflow_id))["status"] == "FAILED" and w, 10, "workflow failure"
    )
    assert len(failed["tasks"]) == 1
    assert server.poll(task_type, count=1, timeout=500) == []


def test_a_task_not_updated_within_its_response_timeout_is_retried(server: Target) -> None:
    task_type = server.unique("timeout")
    server.start(server.simple_workflow(task_type, retryCount=1, responseTimeoutSeconds=2), {"x": 1})
    task = server.poll_one(task_type)
    polled = time.monotonic()
    retry, after = server.first_poll_after(task_type, polled, within=15)
    # The real server notices a timeout 1-2 s late (whole-second queue offsets), see DIFFERENCES.md.
    assert 1.8 <= after < 8, f"retried {after:.2f} s after the poll, responseTimeoutSeconds was 2"
    assert retry["taskId"] != task["taskId"] and retry["retryCount"] == 1
    assert server.task(task["taskId"])["status"] == "TIMED_OUT"
    assert server.update(task, "COMPLETED").status == 200, "a late update is accepted and ignored"
    assert server.task(task["taskId"])["status"] == "TIMED_OUT"


def test_update_v2_returns_the_next_task_or_204(server: Target) -> None:
    task_type = server.unique("v2")
    wf = server.simple_workflow(task_type)
    server.start(wf, {"x": 1})
    server.start(wf, {"x": 2})
    first = server.poll_one(task_type)
    r = server.update(first, "COMPLETED", v2=True)
    assert r.status == 200, (r.status, r.text)
    following = r.json()
    assert following["taskType"] == task_type and following["taskId"] != first["taskId"]
    assert following["status"] == "IN_PROGRESS"
    assert following["workerId"] == "contract-worker" and following["pollCount"] == 1
    last = server.update(following, "COMPLETED", v2=True)
    assert last.status == 204
    assert server.task(following["taskId"])["status"] == "COMPLETED", "a 204 still means the update was applied"


def test_task_logs_and_get_task(server: Target) -> None:
    task_type = server.unique("logs")
    server.start(server.simple_workflow(task_type), {"x": 1})
    task = server.poll_one(task_type)
    r = server.api.post(f"/tasks/{task['taskId']}/log", raw=b"step one done", content_type="text/plain")
    assert r.status == 200
    logs = server.api.get(f"/tasks/{task['taskId']}/log").json()
    assert [entry["log"] for entry in logs] == ["step one done"]
    # A result's log lines carry their own createdTime; logs come back ordered by it.
    assert (
        server.update(task, "COMPLETED", logs=[{"log": "started", "taskId": task["taskId"], "createdTime": 1}]).status
        == 200
    )
    logs = server.api.get(f"/tasks/{task['taskId']}/log").json()
    assert [entry["log"] for entry in logs] == ["started", "step one done"]
    assert server.task(task["taskId"])["taskType"] == task_type
    assert server.api.get("/tasks/no-such-task").status == 404


def test_a_batch_poll_hands_out_up_to_count_tasks(server: Target) -> None:
    task_type = server.unique("batch")
    wf = server.simple_workflow(task_type)
    for x in range(3):
        server.start(wf, {"x": x})
    assert server.queue_size(task_type) == 3
    tasks = server.poll(task_type, count=2, timeout=1000, worker="batch-worker")
    assert len(tasks) == 2 and len({t["taskId"] for t in tasks}) == 2
    for task in tasks:
        assert task["status"] == "IN_PROGRESS" and task["pollCount"] == 1
        assert task["workerId"] == "batch-worker" and task["taskType"] == task_type
        assert task["retryCount"] == 0 and task["startTime"] > 0
    assert server.queue_size(task_type) == 1, "polled tasks leave the queue"
    rest = server.poll(task_type, count=5, timeout=0)
    assert len(rest) == 1 and rest[0]["taskId"] not in {t["taskId"] for t in tasks}
    assert server.queue_size(task_type) == 0
    assert server.poll(task_type, count=5, timeout=0) == []


def test_a_domain_poll_does_not_see_tasks_without_a_domain(server: Target) -> None:
    task_type = server.unique("nodom")
    server.start(server.simple_workflow(task_type), {"x": 1})
    assert server.poll(task_type, count=1, timeout=300, domain="blue") == []
    assert server.queue_size(task_type, domain="blue") == 0 and server.queue_size(task_type) == 1
    # The longest allowed long poll (5000 ms) is accepted; with a task ready it returns at once.
    t0 = time.monotonic()
    assert len(server.poll(task_type, count=1, timeout=5000)) == 1
    assert time.monotonic() - t0 < 2.5


def test_update_v2_in_a_domain_and_for_in_progress(server: Target) -> None:
    task_type = server.unique("v2dom")
    wf = server.simple_workflow(task_type)
    for x in range(2):
        r = server.api.post(
            "/workflow", {"name": wf, "version": 1, "input": {"x": x}, "taskToDomain": {task_type: "red"}}
        )
        assert r.status == 200, r.text
    server.start(wf, {"x": 99})  # no domain: update-v2 must not hand this one out
    first = server.poll_one(task_type, domain="red")
    # IN_PROGRESS is not terminal: nothing next, even with tasks waiting.
    r = server.update(first, "IN_PROGRESS", v2=True, callbackAfterSeconds=60)
    assert r.status == 204, (r.status, r.text)
    second = server.poll_one(task_type, domain="red")
    r = server.update(second, "COMPLETED", v2=True)
    assert r.status == 204, "the only other task of the domain is waiting for its callback"
    assert server.queue_size(task_type) == 1, "the task without a domain was not handed out"


def test_an_update_without_ids_is_400(server: Target) -> None:
    r = server.api.post("/tasks", {"status": "COMPLETED"})
    assert r.status == 400
    body = r.json()
    assert body["status"] == 400 and body["retryable"] is False
    paths = {e["path"].rsplit(".", 1)[-1] for e in body["validationErrors"]}
    assert paths == {"taskId", "workflowInstanceId"}, body


def test_get_task_404_and_empty_logs(server: Target) -> None:
    task_type = server.unique("nolog")
    server.start(server.simple_workflow(task_type), {"x": 1})
    task = server.poll_one(task_type)
    missing = server.api.get("/tasks/no-such-task-id")
    assert missing.status == 404 and "no-such-task-id" in missing.json()["message"]
    empty = server.api.get(f"/tasks/{task['taskId']}/log")
    assert empty.status == 204 and not empty.body.strip()
    assert missing.json()["message"] == "Task not found for taskId: no-such-task-id"


def test_a_failed_task_out_of_retries_fails_the_workflow(server: Target) -> None:
    task_type = server.unique("exhaust")
    workflow_id = server.start(server.simple_workflow(task_type, retryCount=1), {"x": 1})
    first = server.poll_one(task_type)
    assert server.update(first, "FAILED", reasonForIncompletion="one").status == 200
    retry = server.poll_one(task_type)
    assert retry["retryCount"] == 1
    assert server.update(retry, "FAILED", reasonForIncompletion="two").status == 200
    failed = wait_for(
        lambda: (w := server.workflow_status(workflow_id))["status"] == "FAILED" and w, 10, "workflow failure"
    )
    assert [t["status"] for t in failed["tasks"]] == ["FAILED", "FAILED"]
    assert server.poll(task_type, count=1, timeout=300) == [], "no third attempt"


def test_put_workflow_definitions_creates_or_updates(server: Target) -> None:
    task_type = server.unique("wfput")
    server.taskdef(task_type)
    name = server.unique("wf")

    def define(parameter: str) -> None:
        task = {"name": task_type, "taskReferenceName": "t", "type": "SIMPLE"}
        server.workflow(name, [{**task, "inputParameters": {parameter: "${workflow.input.x}"}}])

    define("old")
    define("new")  # the same name and version again: replaced, not a 409
    r = server.api.post(f"/workflow/{name}?version=1&correlationId=order-42", {"x": 5})
    assert r.status == 200, (r.status, r.text)
    task = server.poll_one(task_type)
    assert task["inputData"] == {"new": 5}
    assert task["correlationId"] == "order-42" and task["workflowType"] == name
    assert server.workflow_status(task["workflowInstanceId"])["correlationId"] == "order-42"
