"""What only the dev server has: Orkes-style auth, fault injection through /admin/faults, stats
counters and bulk enqueue. A real OSS Conductor server has none of these (conductor-api.md §5,
§6.8), so these tests run against the dev server binary only, each with the flags it needs."""

from __future__ import annotations

import http.client
import json
import subprocess
import threading
import time
import urllib.error
from collections.abc import Iterator

import pytest

from conftest import Target, wait_for
from tools.devserver import DevServer, binary
from tools.rest import Client, Response


@pytest.fixture(scope="module")
def dev() -> Iterator[DevServer]:
    """One dev server for the fault and stats tests; faults and stats are reset before each test."""
    server = DevServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def target(dev: DevServer) -> Iterator[Target]:
    admin = Client(dev.url)
    assert admin.post("/admin/faults/reset").status == 200
    assert admin.post("/admin/stats/reset").status == 200
    yield Target("devserver", Client(dev.api, timeout=10), admin)
    admin.post("/admin/faults/reset")
    admin.post("/admin/resume")


def set_faults(target: Target, **faults: object) -> dict[str, object]:
    r = target.root.put("/admin/faults", faults)
    assert r.status == 200, (r.status, r.text)
    current = target.root.get("/admin/faults").json()
    for key, value in faults.items():
        assert current[key] == value, (key, current)
    return dict(current)


def stats(target: Target) -> dict[str, dict[str, int]]:
    return dict(target.root.get("/admin/stats").json())


def token(client: Client, key: str = "app", secret: str = "s3cret") -> Response:
    return client.post("/token", {"keyId": key, "keySecret": secret})


# --- auth -------------------------------------------------------------------------------------


def test_without_auth_there_is_no_token_endpoint(target: Target) -> None:
    r = token(target.api)
    assert r.status == 404, "like OSS Conductor: a client reads 404 as 'run unauthenticated'"
    assert target.api.get("/tasks/poll/batch/anything?timeout=0").status == 200


def test_auth_issues_tokens_and_requires_them() -> None:
    with_auth = DevServer("--auth", "app:s3cret", "--auth", "other:pw")
    try:
        api = Client(with_auth.api)
        missing = api.get("/tasks/poll/batch/t?timeout=0")
        assert missing.status == 401 and missing.json()["error"] == "INVALID_TOKEN"
        wrong = token(api, secret="nope")
        assert wrong.status == 401
        assert token(api, key="other", secret="pw").status == 200, "every --auth key works"
        r = token(api)
        assert r.status == 200
        jwt = r.json()["token"]
        assert isinstance(jwt, str) and jwt
        bogus = api.get("/tasks/poll/batch/t?timeout=0", headers={"X-Authorization": "not-a-token"})
        assert bogus.status == 401 and bogus.json()["error"] == "INVALID_TOKEN"
        api.headers["X-Authorization"] = jwt
        assert api.get("/tasks/poll/batch/t?timeout=0").status == 200
        assert api.get("/tasks/poll/t").status == 204
        # /health and the admin endpoints never need a token.
        assert Client(with_auth.url).get("/health").status == 200
        assert Client(with_auth.url).get("/admin/stats").status == 200
        # Expired: every issued token, at once.
        assert Client(with_auth.url).post("/admin/tokens/expire").status == 200
        expired = api.get("/tasks/poll/batch/t?timeout=0")
        assert expired.status == 401
        body = expired.json()
        assert body["error"] == "EXPIRED_TOKEN", body
        api.headers["X-Authorization"] = token(api).json()["token"]
        assert api.get("/tasks/poll/batch/t?timeout=0").status == 200, "a fresh token works again"
    finally:
        with_auth.stop()


def test_tokens_expire_after_their_ttl() -> None:
    with_auth = DevServer("--auth", "app:s3cret", "--token-ttl-secs", "1")
    try:
        api = Client(with_auth.api)
        api.headers["X-Authorization"] = token(api).json()["token"]
        assert api.get("/tasks/poll/batch/t?timeout=0").status == 200
        time.sleep(1.3)
        r = api.get("/tasks/poll/batch/t?timeout=0")
        assert (r.status, r.json()["error"]) == (401, "EXPIRED_TOKEN")
        # The TTL can be changed at run time for tokens issued from then on.
        assert Client(with_auth.url).put("/admin/auth", {"token_ttl_secs": 3600}).status == 200
        api.headers["X-Authorization"] = token(api).json()["token"]
        time.sleep(1.3)
        assert api.get("/tasks/poll/batch/t?timeout=0").status == 200
    finally:
        with_auth.stop()


# --- faults -----------------------------------------------------------------------------------


def test_latency_delays_every_api_request(target: Target) -> None:
    set_faults(target, latency_ms=500)
    t0 = time.monotonic()
    assert target.api.get("/tasks/poll/batch/t?timeout=0").status == 200
    assert time.monotonic() - t0 >= 0.49
    t0 = time.monotonic()
    assert target.root.get("/admin/faults").status == 200
    assert time.monotonic() - t0 < 0.4, "admin endpoints are never delayed"
    assert stats(target)["faults_injected"]["latency"] >= 1


def test_a_fail_rate_answers_5xx_with_a_retryable_error(target: Target) -> None:
    set_faults(target, fail_rate={"poll": 0.5})
    statuses = [target.api.get("/tasks/poll/batch/t?timeout=0").status for _ in range(200)]
    failed = statuses.count(500)
    assert statuses.count(200) + failed == 200
    assert 50 <= failed <= 150, f"{failed} of 200 failed at rate 0.5"
    assert stats(target)["faults_injected"]["fail"] == failed
    set_faults(target, fail_rate={"poll": 1.0})
    r = target.api.get("/tasks/poll/batch/t?timeout=0")
    assert r.status == 500 and r.json()["retryable"] is True
    assert target.api.get("/tasks/no-such-id").status == 404, "other groups are not affected"


def test_a_dropped_connection_answers_nothing(target: Target) -> None:
    set_faults(target, drop_rate={"update": 1.0})
    with pytest.raises((ConnectionError, http.client.HTTPException, urllib.error.URLError)):
        target.api.post("/tasks", {"taskId": "t", "workflowInstanceId": "w", "status": "COMPLETED"})
    assert target.api.get("/tasks/poll/batch/t?timeout=0").status == 200, "polls still answer"
    assert stats(target)["faults_injected"]["drop"] == 1


def test_a_malformed_body_is_not_json(target: Target) -> None:
    task_type = target.unique("malformed")
    target.start(target.simple_workflow(task_type), {"x": 1})
    set_faults(target, malformed_rate={"poll": 1.0})
    r = target.api.get(f"/tasks/poll/batch/{task_type}?count=1&timeout=0")
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.body)
    assert stats(target)["faults_injected"]["malformed"] == 1


def test_paused_holds_requests_until_resumed(target: Target) -> None:
    assert target.root.post("/admin/pause").status == 200
    assert target.root.get("/admin/faults").json()["paused"] is True
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        target.api.get("/tasks/poll/batch/t?timeout=0", timeout=0.5)
    answers: list[Response] = []
    waiting = threading.Thread(target=lambda: answers.append(target.api.get("/tasks/poll/t", timeout=10)))
    waiting.start()
    time.sleep(0.5)
    assert not answers, "answered while paused"
    t0 = time.monotonic()
    assert target.root.post("/admin/resume").status == 200
    waiting.join(5)
    assert answers and answers[0].status == 204 and time.monotonic() - t0 < 2


@pytest.mark.parametrize("status", ["404", "405"])
def test_update_v2_can_be_switched_off_like_an_old_server(status: str) -> None:
    old = DevServer("--no-update-v2", "--update-v2-missing-status", status)
    try:
        api = Client(old.api)
        r = api.post("/tasks/update-v2", {"taskId": "a", "workflowInstanceId": "b", "status": "COMPLETED"})
        assert r.status == int(status)
        # What a real server without the route answers: an ErrorResponse about the route, never
        # "No such task/workflow", so a client can tell a missing endpoint from a task that is gone.
        message = r.json()["message"]
        assert "no such" not in message.lower(), message
        expected = "No static resource api/tasks/update-v2." if status == "404" else "Request method 'POST'"
        assert message.startswith(expected), message
        v1 = api.post("/tasks", {"taskId": "a", "workflowInstanceId": "b", "status": "COMPLETED"})
        assert v1.status == 404 and "No such workflow" in v1.json()["message"], "v1 updates still work"
    finally:
        old.stop()


def test_faults_can_be_given_on_the_command_line() -> None:
    faulty = DevServer("--fail-rate", "task=1.0", "--latency-ms", "50")
    try:
        faults = Client(faulty.url).get("/admin/faults").json()
        assert faults["fail_rate"] == {"task": 1.0} and faults["latency_ms"] == 50
        assert Client(faulty.api).get("/tasks/x").status == 500
    finally:
        faulty.stop()


@pytest.mark.parametrize("flag", [["--fail-rate", "poll=2"], ["--fail-rate", "nogroup=0.5"], ["--port", "x"]])
def test_bad_flags_exit_2_naming_the_value(flag: list[str]) -> None:
    result = subprocess.run(
        [str(binary()), *flag], check=False, capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 2
    assert flag[1] in result.stderr and flag[0] in result.stderr, result.stderr


# --- stats and bulk enqueue -------------------------------------------------------------------


def test_stats_count_requests_tasks_and_updates(target: Target) -> None:
    task_type = target.unique("stats")
    wf = target.simple_workflow(task_type, retryCount=1)
    for x in range(3):
        target.start(wf, {"x": x})
    a, b, c = target.poll(task_type, count=3, timeout=1000)
    assert target.update(a, "COMPLETED", extendLease=True).status == 200
    assert target.update(a, "COMPLETED").status == 200
    assert target.update(a, "FAILED").status == 200  # late: ignored
    assert target.update(b, "FAILED").status == 200  # retried
    assert target.update(c, "IN_PROGRESS", callbackAfterSeconds=60).status == 200
    assert target.update({**c, "taskId": "no-such-task"}, "COMPLETED").status == 404
    s = wait_for(lambda: (s := stats(target))["tasks"]["scheduled"] == 4 and s, 5, "the retry scheduled")
    assert s["requests"]["batch_poll"] == 1 and s["requests"]["workflow_start"] == 3
    assert s["requests"]["update"] == 6
    assert s["tasks"]["completed"] == 1 and s["tasks"]["failed"] == 1
    assert s["updates"]["lease_extensions"] == 1 and s["updates"]["terminal_task"] == 1
    assert s["updates"]["unknown_task"] == 1 and s["updates"]["in_progress"] == 1
    assert s["tasks"]["queued"] == 1, "the retry of b is queued; c waits for its callback"
    assert target.root.post("/admin/stats/reset").status == 200
    assert stats(target)["requests"]["update"] == 0


def test_bulk_enqueue_and_task_history(target: Target) -> None:
    task_type = target.unique("bulk")
    r = target.root.post("/admin/tasks", {"taskType": task_type, "count": 50, "input": {"n": 1}})
    assert (r.status, r.json()) == (200, {"created": 50})
    assert target.queue_size(task_type) == 50
    tasks = target.poll(task_type, count=50, timeout=1000)
    assert len(tasks) == 50 and len({t["workflowInstanceId"] for t in tasks}) == 50
    assert all(t["inputData"] == {"n": 1} for t in tasks)
    assert target.api.get(f"/metadata/taskdefs/{task_type}").status == 200, "a task def was registered"
    assert target.update(tasks[0], "COMPLETED").status == 200
    history = target.root.get(f"/admin/tasks/{tasks[0]['taskId']}/history").json()
    assert history["polls"] == 1 and [u["status"] for u in history["updates"]] == ["COMPLETED"]
    domain = target.root.post("/admin/tasks", {"taskType": task_type, "count": 2, "domain": "green"})
    assert domain.json() == {"created": 2}
    assert target.queue_size(task_type, domain="green") == 2 and target.queue_size(task_type) == 0
