"""``current_task()``: the task being executed, from anywhere inside a task function (also
in threads and asyncio tasks it starts with the context copied, and in the child process of an
``isolation="process"`` worker)."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import Any, Protocol


class _TaskFields(Protocol):
    @property
    def task_id(self) -> str: ...
    @property
    def workflow_instance_id(self) -> str: ...
    @property
    def task_type(self) -> str: ...
    @property
    def retry_count(self) -> int: ...
    @property
    def poll_count(self) -> int: ...
    @property
    def reference_task_name(self) -> str: ...
    @property
    def correlation_id(self) -> str | None: ...
    @property
    def input_data(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class TaskSnapshot:
    """A task's fields as plain data, for a worker process (the native Task stays here)."""

    task_id: str
    workflow_instance_id: str
    task_type: str
    retry_count: int
    poll_count: int
    reference_task_name: str
    correlation_id: str | None
    input_data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, task: _TaskFields) -> TaskSnapshot:
        return cls(
            task.task_id,
            task.workflow_instance_id,
            task.task_type,
            task.retry_count,
            task.poll_count,
            task.reference_task_name,
            task.correlation_id,
            task.input_data,
        )


class TaskContext:
    """The task being executed. ``log()`` lines are added to the task's execution log (sent
    with its result)."""

    # Built for every task: reading fields on demand keeps that cheap.
    __slots__ = ("_task", "logs")

    def __init__(self, task: _TaskFields) -> None:
        self._task = task
        self.logs: list[str] = []

    @property
    def task_id(self) -> str:
        return self._task.task_id

    @property
    def workflow_instance_id(self) -> str:
        return self._task.workflow_instance_id

    @property
    def workflow_id(self) -> str:
        """Alias of ``workflow_instance_id``."""
        return self._task.workflow_instance_id

    @property
    def task_type(self) -> str:
        return self._task.task_type

    @property
    def retry_count(self) -> int:
        """0 for the first attempt."""
        return self._task.retry_count

    @property
    def poll_count(self) -> int:
        """How many times this attempt was handed out (more than 1 after TaskInProgress)."""
        return self._task.poll_count

    @property
    def reference_task_name(self) -> str:
        return self._task.reference_task_name

    @property
    def correlation_id(self) -> str | None:
        return self._task.correlation_id

    @property
    def input(self) -> dict[str, Any]:
        return self._task.input_data

    def log(self, *parts: object) -> None:
        """Adds a line (the parts joined by spaces, like ``print``) to the task's log."""
        self.logs.append(" ".join(str(p) for p in parts))

    def snapshot(self) -> TaskContext:
        """A copy that can be pickled to a worker process."""
        return TaskContext(TaskSnapshot.of(self._task))

    def __getstate__(self) -> tuple[Any, list[str]]:
        return (self._task, self.logs)

    def __setstate__(self, state: tuple[Any, list[str]]) -> None:
        self._task, self.logs = state

    def __repr__(self) -> str:
        return f"TaskContext(task_type={self.task_type!r}, task_id={self.task_id!r}, poll_count={self.poll_count})"


_current: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar(
    "conductor_worker_current_task", default=None
)


def current_task() -> TaskContext:
    """The task being executed. Raises LookupError outside a task function."""
    ctx = _current.get()
    if ctx is None:
        raise LookupError("current_task() is only available while a task function runs")
    return ctx
