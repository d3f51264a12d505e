"""``@worker``: turns a function into the executor of a Conductor task type."""

from __future__ import annotations

import contextlib
import inspect
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, TypeVar, overload

from conductor_worker.mapping import Binder

Isolation = Literal["thread", "process"]
F = TypeVar("F", bound=Callable[..., Any])

ATTRIBUTE = "__conductor_worker__"


@dataclass(frozen=True)
class WorkerSpec:
    """A task type and the function that executes it, with its options. ``None`` means the
    core's default (overridable by the environment, see the README's Configuration)."""

    task_type: str
    func: Callable[..., Any]
    concurrency: int | None = None
    poll_interval: float | None = None
    poll_timeout: float | None = None
    domain: str | None = None
    worker_id: str | None = None
    lease_extend: bool | None = None
    paused: bool | None = None
    register: bool | dict[str, Any] | None = None
    isolation: Isolation = "thread"
    binder: Binder = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.task_type:
            raise ValueError("the task type must not be empty")
        if self.isolation not in ("thread", "process"):
            raise ValueError(f"isolation must be 'thread' or 'process', not {self.isolation!r}")
        if self.isolation == "process" and self.is_async:
            raise ValueError(f"{self.task_type}: isolation='process' is for sync functions; async def runs on asyncio")
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError(f"{self.task_type}: concurrency must be at least 1, not {self.concurrency}")
        object.__setattr__(self, "binder", Binder(self.func))

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.func)


_lock = threading.Lock()
_registry: dict[tuple[str, str | None], WorkerSpec] = {}


def registered() -> list[WorkerSpec]:
    """Every worker declared with ``@worker`` so far, in declaration order."""
    with _lock:
        return list(_registry.values())


@overload
def worker(task_type: F) -> F: ...


@overload
def worker(
    task_type: str | None = None,
    *,
    concurrency: int | None = None,
    poll_interval: float | None = None,
    poll_timeout: float | None = None,
    domain: str | None = None,
    worker_id: str | None = None,
    lease_extend: bool | None = None,
    paused: bool | None = None,
    register: bool | dict[str, Any] | None = None,
    isolation: Isolation = "thread",
) -> Callable[[F], F]: ...


def worker(
    task_type: str | Callable[..., Any] | None = None,
    *,
    concurrency: int | None = None,
    poll_interval: float | None = None,
    poll_timeout: float | None = None,
    domain: str | None = None,
    worker_id: str | None = None,
    lease_extend: bool | None = None,
    paused: bool | None = None,
    register: bool | dict[str, Any] | None = None,
    isolation: Isolation = "thread",
) -> Any:
    """Declares ``func`` the executor of ``task_type`` (default: the function's name).

    ``concurrency``: tasks run at once (threads for sync functions, asyncio tasks for
    ``async def``, processes with ``isolation="process"``). ``poll_interval``: the longest
    pause between polls when idle, in seconds. ``poll_timeout``: the server's long poll, in
    seconds (at most 5). ``domain``: the task domain. ``lease_extend``: heartbeat long tasks
    at 80 % of their response timeout (on by default). ``paused``: start paused.
    ``register``: register the task definition at start (``True``, or a dict of task
    definition fields such as ``{"retryCount": 5, "responseTimeoutSeconds": 120}``).
    ``isolation="process"``: run a CPU-bound function in a pool of processes.

    The function is returned unchanged: it can still be called (and tested) directly.
    """

    def decorate(func: F, name: str | None) -> F:
        spec = WorkerSpec(
            task_type=name or func.__name__,
            func=func,
            concurrency=concurrency,
            poll_interval=poll_interval,
            poll_timeout=poll_timeout,
            domain=domain,
            worker_id=worker_id,
            lease_extend=lease_extend,
            paused=paused,
            register=register,
            isolation=isolation,
        )
        with _lock:
            _registry[(spec.task_type, spec.domain)] = spec
        with contextlib.suppress(AttributeError):  # a builtin or an object without __dict__
            setattr(func, ATTRIBUTE, spec)
        return func

    if callable(task_type):
        return decorate(task_type, None)
    return lambda func: decorate(func, task_type)


def spec_of(obj: WorkerSpec | Callable[..., Any]) -> WorkerSpec:
    """The spec of a decorated function (or a spec as is)."""
    if isinstance(obj, WorkerSpec):
        return obj
    spec = getattr(obj, ATTRIBUTE, None)
    if spec is None:
        raise TypeError(f"{obj!r} is not decorated with @worker")
    return spec  # type: ignore[no-any-return]
