"""``current_task()``: the task being executed, from anywhere inside a task function (also
in threads and asyncio tasks it starts with the context copied, and in the child process of an
``isolation="process"`` worker)."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TaskContext:
    """The task being executed. ``log()`` lines are added to the task's execution log (sent
    with its result)."""

    task_id: str
    workflow_instance_id: str
    task_type: str
    retry_count: int
    poll_count: int
    reference_task_name: str = ""
    correlation_id: str | None = None
    input: dict[str, Any] = field(default_factory=dict)
    logs: list[str] = field(default_factory=list)

    @property
    def workflow_id(self) -> str:
        """Alias of ``workflow_instance_id``."""
        return self.workflow_instance_id

    def log(self, *parts: object) -> None:
        """Adds a line (the parts joined by spaces, like ``print``) to the task's log."""
        self.logs.append(" ".join(str(p) for p in parts))


_current: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar(
    "conductor_worker_current_task", default=None
)


def current_task() -> TaskContext:
    """The task being executed. Raises LookupError outside a task function."""
    ctx = _current.get()
    if ctx is None:
        raise LookupError("current_task() is only available while a task function runs")
    return ctx
