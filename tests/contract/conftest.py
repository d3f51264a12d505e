"""The contract suite runs every test in test_worker_api.py against both servers: the dev server
and a real Conductor server. Each server starts once per session."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tools.conductor_server import ConductorServer
from tools.devserver import DevServer
from tools.fixtures import conductor_server_fixture, devserver_fixture, pytest_terminal_summary
from tools.rest import Client

__all__ = ["conductor_server_fixture", "devserver_fixture", "pytest_terminal_summary"]


@dataclass
class Target:
    """A server under test and helpers that speak the worker API to it."""

    name: str
    api: Client
    root: Client

    @property
    def is_devserver(self) -> bool:
        return self.name == "devserver"

    def unique(self, prefix: str) -> str:
        return f"{prefix}_{uuid.uuid4().hex[:10]}"

    def taskdef(self, name: str, **fields: Any) -> dict[str, Any]:
        body = {
            "name": name,
            "retryCount": 0,
            "retryDelaySeconds": 0,
            "responseTimeoutSeconds": 60,
            "timeoutSeconds": 0,
            "ownerEmail": "contract@example.com",
            **fields,
        }
        r = self.api.post("/metadata/taskdefs", [body])
        assert r.status == 200, (r.status, r.text)
        return body

    def workflow(self, name: str, tasks: list[dict[str, Any]], output: dict[str, Any] | None = None) -> None:
        body = {
            "name": name,
            "version": 1,
            "schemaVersion": 2,
            "timeoutSeconds": 600,
            "ownerEmail": "contract@example.com",
            "tasks": tasks,
            "outputParameters": output or {},
        }
        r = self.api.put("/metadata/workflow", [body])
        assert r.status == 200, (r.status, r.text)

    def simple_workflow(self, task_type: str, **taskdef: Any) -> str:
        """A workflow of one SIMPLE task of a new type; returns the workflow name."""
        self.taskdef(task_type, **taskdef)
        name = self.unique("wf")
        self.workflow(
            name,
            [
                {
                    "name": task_type,
                    "taskReferenceName": "only",
                    "type": "SIMPLE",
                    "inputParameters": {"x": "${workflow.input.x}"},
                }
            ],
        )
        return name

    def start(self, name: str, input: dict[str, Any] | None = None) -> str:
        r = self.api.post(f"/workflow/{name}", input or {})
        assert r.status == 200, (r.status, r.text)
        return r.text.strip().strip('"')

    def poll(
        self,
        task_type: str,
        count: int = 1,
        timeout: int = 100,
        domain: str | None = None,
        worker: str = "contract-worker",
    ) -> list[dict[str, Any]]:
        query = f"?workerid={worker}&count={count}&timeout={timeout}"
        if domain:
            query += f"&domain={domain}"
        r = self.api.get(f"/tasks/poll/batch/{task_type}{query}")
        if r.status == 204:
            return []
        assert r.status == 200, (r.status, r.text)
        return list(r.json())

    def poll_one(self, task_type: str, within: float = 10.0, **kw: Any) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            tasks = self.poll(task_type, **kw)
            if tasks:
                return tasks[0]
            time.sleep(0.1)
        raise AssertionError(f"no {task_type} task within {within} s")

    def update(self, task: dict[str, Any], status: str, v2: bool = False, **fields: Any) -> Any:
        body = {
            "taskId": task["taskId"],
            "workflowInstanceId": task["workflowInstanceId"],
            "status": status,
            "workerId": "contract-worker",
            **fields,
        }
        return self.api.post("/tasks/update-v2" if v2 else "/tasks", body)

    def workflow_status(self, workflow_id: str) -> dict[str, Any]:
        r = self.api.get(f"/workflow/{workflow_id}?includeTasks=true")
        assert r.status == 200, (r.status, r.text)
        return dict(r.json())

    def task(self, task_id: str) -> dict[str, Any]:
        r = self.api.get(f"/tasks/{task_id}")
        assert r.status == 200, (r.status, r.text)
        return dict(r.json())

    def queue_size(self, task_type: str, domain: str | None = None) -> int:
        query = f"?taskType={task_type}" + (f"&domain={domain}" if domain else "")
        r = self.api.get(f"/tasks/queue/size{query}")
        assert r.status == 200, (r.status, r.text)
        return int(r.json())

    def first_poll_after(self, task_type: str, since: float, within: float = 15.0) -> tuple[dict[str, Any], float]:
        """Poll (short polls, 50 ms apart) until a task comes; the task and the seconds since ``since``."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            tasks = self.poll(task_type, count=1, timeout=0)
            if tasks:
                return tasks[0], time.monotonic() - since
            time.sleep(0.05)
        raise AssertionError(f"no {task_type} task within {within} s")


def wait_for(check: Callable[[], Any], within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within} s")
        time.sleep(0.2)


@pytest.fixture(scope="session", params=["devserver", "conductor"])
def server(request: pytest.FixtureRequest) -> Target:
    """The server under test: each contract test runs once per server; each server starts once."""
    if request.param == "devserver":
        dev: DevServer = request.getfixturevalue("devserver_fixture")
        return Target("devserver", Client(dev.api), Client(dev.url))
    real: ConductorServer = request.getfixturevalue("conductor_server_fixture")
    return Target("conductor", Client(real.api), Client(real.url))


def devserver_bug(request: pytest.FixtureRequest, server: Target, reference: str) -> None:
    """The dev server is known to answer this differently from the real server (DEVSERVER_BUGS.md):
    the test asserts the real server's behaviour and is an expected failure on the dev server until
    it is fixed (an unexpected pass shows up as XPASS)."""
    if server.is_devserver:
        request.applymarker(pytest.mark.xfail(reason=f"dev server bug: {reference} (DEVSERVER_BUGS.md)", strict=False))


SERVERS = ("devserver", "conductor")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--servers",
        default=",".join(SERVERS),
        help="comma-separated tiers to run: devserver (the contract tests on the dev server and the "
        "dev-server-only tests), conductor (the contract tests on a real Conductor server)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = {s.strip() for s in str(config.getoption("--servers")).split(",") if s.strip()}
    unknown = wanted - set(SERVERS)
    if unknown:
        raise pytest.UsageError(f"--servers: unknown {sorted(unknown)}, expected some of {SERVERS}")
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        # Tests without the `server` parameter start dev servers of their own: the devserver tier.
        tier = callspec.params.get("server", "devserver") if callspec else "devserver"
        (keep if tier in wanted else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
