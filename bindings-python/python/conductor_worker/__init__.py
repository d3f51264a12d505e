"""conductor-worker: Conductor workers in Python on a Rust core.

    from conductor_worker import worker, run

    @worker("greet", concurrency=10)
    def greet(name: str, times: int = 1) -> dict:
        return {"greeting": " ".join([f"hello {name}"] * times)}

    run()  # servers from CONDUCTOR_SERVER_URL; Ctrl-C or SIGTERM drains

The core (polling, routing across servers, lease extension, result delivery, journal,
metrics) is Rust; Python only runs the task functions.
"""

from conductor_worker._native import Task, core_version
from conductor_worker._options import RuntimeOptions, WorkerOptions
from conductor_worker.context import TaskContext, current_task
from conductor_worker.decorator import WorkerSpec, worker
from conductor_worker.errors import (
    AuthError,
    ConductorWorkerError,
    ConfigError,
    DecodeError,
    JournalError,
    MetricsError,
    NonRetryableError,
    NotRunningError,
    ServerError,
    StatusError,
    TaskInProgress,
    TransportError,
    UnknownTaskError,
)
from conductor_worker.runner import Event, Runner, Server, StopReport, run

__version__ = core_version()

__all__ = [
    "AuthError",
    "ConductorWorkerError",
    "ConfigError",
    "DecodeError",
    "Event",
    "JournalError",
    "MetricsError",
    "NonRetryableError",
    "NotRunningError",
    "Runner",
    "RuntimeOptions",
    "Server",
    "ServerError",
    "StatusError",
    "StopReport",
    "Task",
    "TaskContext",
    "TaskInProgress",
    "TransportError",
    "UnknownTaskError",
    "WorkerOptions",
    "WorkerSpec",
    "core_version",
    "current_task",
    "run",
    "worker",
]
