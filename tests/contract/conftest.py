"""The contract suite runs every test in test_worker_api.py and test_large_payloads.py against
three servers: the dev server, a real Conductor server on SQLite, and a real Conductor server on
PostgreSQL. Each server starts once per session. test_large_payloads.py also runs its tests on
dev servers started with other flags (``DEVSERVER_VARIANTS``), in the dev server tier."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tools.conductor_server import ConductorServer
from tools.devserver import DevServer
from tools.fixtures import (
    conductor_postgres_server_fixture,
    conductor_server_fixture,
    devserver_fixture,
    pytest_terminal_summary,
)
from tools.rest import Client

__all__ = [
    "conductor_postgres_server_fixture",
    "conductor_server_fixture",
    "devserver_fixture",
    "pytest_terminal_summary",
]


@dataclass(frozen=True)
class Behaviour:
    """What a server does where servers legitimately differ (DIFFERENCES.md)."""

    backend: str  # "memory" (dev server), "sqlite", "postgres"
    # What the external payload storage hands a worker: "upload" (a URI that takes GET and PUT),
    # "read-only" (a URI that takes GET only; PUT answers 405), "none" (no URI at all).
    storage: str
    # Does a batch poll wait for `count` tasks (or its timeout) when fewer are ready?
    batch_poll_waits_for_count: bool
    # Payload limits in KB: above a threshold the server stores the task's payload externally,
    # above the maximum it fails the task FAILED_WITH_TERMINAL_ERROR.
    input_threshold_kb: int = 3072
    output_threshold_kb: int = 3072
    max_payload_kb: int = 10240


BEHAVIOUR = {
    "devserver": Behaviour("memory", "upload", batch_poll_waits_for_count=False),
    "conductor": Behaviour("sqlite", "none", batch_poll_waits_for_count=True),
    "conductor-postgres": Behaviour("postgres", "read-only", batch_poll_waits_for_count=True),
}

# Dev servers with other flags, each the dev server's twin of a real server's behaviour (or a
# check that its limit flags work); test_large_payloads.py runs on them as well as on SERVERS.
DEVSERVER_VARIANTS: dict[str, tuple[tuple[str, ...], Behaviour]] = {
    "devserver:read-only": (("--external-storage", "read-only"), Behaviour("memory", "read-only", False)),
    "devserver:none": (("--external-storage", "none"), Behaviour("memory", "none", False)),
    "devserver:wait-for-count": (("--batch-poll-waits-for-count",), Behaviour("memory", "upload", True)),
    "devserver:small-limits": (
        ("--task-input-threshold-kb", "48", "--task-output-threshold-kb", "96", "--max-task-payload-kb", "256"),
        Behaviour("memory", "upload", False, input_threshold_kb=48, output_threshold_kb=96, max_payload_kb=256),
    ),
}


@dataclass
class Target:
    """A server under test and helpers that speak the worker API to it."""

    name: str
    api: Client
    root: Client
    behaviour: Behaviour = field(default_factory=lambda: BEHAVIOUR["devserver"])

    @property
    def is_devserver(self) -> bool:
        return self.name.split(":")[0] == "devserver"

    @property
    def backend(self) -> str:
        """ "memory" (dev server), "sqlite" or "postgres"."""
        return self.behaviour.backend

    @property
    def storage(self) -> str:
        """What its external payload storage does: "upload", "read-only" or "none"."""
        return self.behaviour.storage

    @property
    def batch_poll_waits_for_count(self) -> bool:
        return self.behaviour.batch_poll_waits_for_count

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


SERVERS = ("devserver", "conductor", "conductor-postgres")
REAL_FIXTURE = {"conductor": "conductor_server_fixture", "conductor-postgres": "conductor_postgres_server_fixture"}


def target_for(request: pytest.FixtureRequest, name: str) -> Target:
    """The Target for a server name of SERVERS or DEVSERVER_VARIANTS (started on first use)."""
    if name == "devserver":
        dev: DevServer = request.getfixturevalue("devserver_fixture")
        return Target(name, Client(dev.api), Client(dev.url), BEHAVIOUR[name])
    if name in DEVSERVER_VARIANTS:
        flags, behaviour = DEVSERVER_VARIANTS[name]
        variant: DevServer = request.getfixturevalue("devserver_variants")(flags)
        return Target(name, Client(variant.api), Client(variant.url), behaviour)
    real: ConductorServer = request.getfixturevalue(REAL_FIXTURE[name])
    return Target(name, Client(real.api), Client(real.url), BEHAVIOUR[name])


@pytest.fixture(scope="session", params=SERVERS)
def server(request: pytest.FixtureRequest) -> Target:
    """The server under test: each contract test runs once per server; each server starts once."""
    return target_for(request, request.param)


@pytest.fixture(scope="session")
def devserver_variants() -> Iterator[Callable[[tuple[str, ...]], DevServer]]:
    """Dev servers with extra flags, one per set of flags, each started on first use."""
    started: dict[tuple[str, ...], DevServer] = {}

    def get(flags: tuple[str, ...]) -> DevServer:
        if flags not in started:
            started[flags] = DevServer(*flags)
        return started[flags]

    try:
        yield get
    finally:
        for dev in started.values():
            dev.stop()


def devserver_bug(request: pytest.FixtureRequest, server: Target, reference: str) -> None:
    """The dev server is known to answer this differently from the real server (DEVSERVER_BUGS.md):
    the test asserts the real server's behaviour and is an expected failure on the dev server until
    it is fixed. Strict: once the dev server is fixed the test passes there and fails the run, until
    the marker and its DEVSERVER_BUGS.md entry are removed."""
    if server.is_devserver:
        request.applymarker(pytest.mark.xfail(reason=f"dev server bug: {reference} (DEVSERVER_BUGS.md)", strict=True))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--servers",
        default=",".join(SERVERS),
        help="comma-separated tiers to run: devserver (the contract tests on the dev server, on its "
        "variants and the dev-server-only tests), conductor (the contract tests on a real Conductor "
        "server on SQLite), conductor-postgres (the same on a real Conductor server on PostgreSQL)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = {s.strip() for s in str(config.getoption("--servers")).split(",") if s.strip()}
    unknown = wanted - set(SERVERS)
    if unknown:
        raise pytest.UsageError(f"--servers: unknown {sorted(unknown)}, expected some of {SERVERS}")
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        # Tests without the `server` parameter start dev servers of their own: the devserver tier;
        # so do the dev server variants ("devserver:<variant>").
        tier = str(callspec.params.get("server", "devserver")).split(":")[0] if callspec else "devserver"
        (keep if tier in wanted else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
