"""Fixtures for the Python package's tests: a dev server per session (``dev``), fresh ones for
tests that read global stats or inject faults, and helpers that run workflows and read back
what the server recorded."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tools.devserver import DevServer
from tools.fixtures import conductor_server_fixture, devserver_fixture, pytest_terminal_summary
from tools.rest import Client

__all__ = ["conductor_server_fixture", "devserver_fixture", "pytest_terminal_summary"]

TERMINAL = {"COMPLETED", "FAILED", "FAILED_WITH_TERMINAL_ERROR", "TIMED_OUT", "TERMINATED", "CANCELED"}


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def wait_for(check: Callable[[], Any], within: float, what: str, every: float = 0.05) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within} s")
        time.sleep(every)


@dataclass
class Server:
    """A server under test, with helpers speaking its API."""

    api_url: str
    root_url: str

    @property
    def api(self) -> Client:
        return Client(self.api_url)

    @property
    def root(self) -> Client:
        return Client(self.root_url)

    def taskdef(self, name: str, **fields: Any) -> None:
        body = {
            "name": name,
            "retryCount": 0,
            "retryDelaySeconds": 0,
            "responseTimeoutSeconds": 60,
            "timeoutSeconds": 0,
            "ownerEmail": "python-tests@example.com",
            **fields,
        }
        r = self.api.post("/metadata/taskdefs", [body])
        assert r.status == 200, (r.status, r.text)

    def workflow_for(self, task_type: str, keys: list[str], **taskdef: Any) -> str:
        """A workflow of one SIMPLE task whose input takes ``keys`` from the workflow input."""
        self.taskdef(task_type, **taskdef)
        name = unique("wf")
        body = {
            "name": name,
            "version": 1,
            "schemaVersion": 2,
            "timeoutSeconds": 600,
            "ownerEmail": "python-tests@example.com",
            "tasks": [
                {
                    "name": task_type,
                    "taskReferenceName": "only",
                    "type": "SIMPLE",
                    "inputParameters": {k: f"${{workflow.input.{k}}}" for k in keys},
                }
            ],
            "outputParameters": {"out": "${only.output}"},
        }
        r = self.api.put("/metadata/workflow", [body])
        assert r.status == 200, (r.status, r.text)
        return name

    def start(self, workflow: str, input: dict[str, Any]) -> str:
        r = self.api.post(f"/workflow/{workflow}", input)
        assert r.status == 200, (r.status, r.text)
        return r.text.strip().strip('"')

    def run_tasks(self, task_type: str, inputs: list[dict[str, Any]], **taskdef: Any) -> list[str]:
        """Starts one workflow per input; returns the workflow ids."""
        keys = sorted({k for i in inputs for k in i})
        wf = self.workflow_for(task_type, keys, **taskdef)
        return [self.start(wf, i) for i in inputs]

    def workflow(self, workflow_id: str) -> dict[str, Any]:
        r = self.api.get(f"/workflow/{workflow_id}?includeTasks=true")
        assert r.status == 200, (r.status, r.text)
        return dict(r.json())

    def task_of(self, workflow_id: str, within: float = 15.0) -> dict[str, Any]:
        """The (last attempt of the) workflow's task once it is in a terminal state."""

        def done() -> Any:
            tasks = self.workflow(workflow_id).get("tasks") or []
            return tasks[-1] if tasks and tasks[-1]["status"] in TERMINAL else None

        return dict(wait_for(done, within, f"task of workflow {workflow_id} finished"))

    def logs(self, task_id: str) -> list[str]:
        r = self.api.get(f"/tasks/{task_id}/log")
        assert r.status == 200, (r.status, r.text)
        return [entry["log"] for entry in r.json() or []]


@dataclass
class Dev(Server):
    """A dev server: also bulk enqueue, stats and faults."""

    def enqueue(self, task_type: str, count: int, input: dict[str, Any] | None = None, **fields: Any) -> None:
        r = self.root.post("/admin/tasks", {"taskType": task_type, "count": count, "input": input or {}, **fields})
        assert r.status == 200, (r.status, r.text)

    def stats(self) -> dict[str, Any]:
        return dict(self.root.get("/admin/stats").json())

    def faults(self, **faults: Any) -> None:
        r = self.root.put("/admin/faults", faults)
        assert r.status == 200, (r.status, r.text)

    def queue_size(self, task_type: str) -> int:
        return int(self.api.get(f"/tasks/queue/size?taskType={task_type}").json())

    def wait_completed(self, n: int, within: float = 20.0) -> dict[str, Any]:
        return dict(
            wait_for(
                lambda: (s := self.stats())["tasks"]["completed"] >= n and s,
                within,
                f"{n} tasks completed",
            )
        )


@pytest.fixture(scope="session")
def dev(devserver_fixture: DevServer) -> Dev:
    """The session's dev server (tests use task types of their own)."""
    return Dev(devserver_fixture.api, devserver_fixture.url)


@pytest.fixture
def fresh_dev() -> Iterator[Dev]:
    """A dev server of this test's own, for tests that read global stats or inject faults."""
    server = DevServer()
    try:
        yield Dev(server.api, server.url)
    finally:
        server.stop()
