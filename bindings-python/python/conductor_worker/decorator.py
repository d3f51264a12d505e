"""``@worker``: turns a function into the executor of a Conductor task type."""

from __future__ import annotations

import contextlib
import inspect
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal, TypeVar, overload

from conductor_worker import _native
from conductor_worker.mapping import Binder

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from conductor_worker._options import WorkerOptions

Isolation = Literal["thread", "process"]
F = TypeVar("F", bound=Callable[..., Any])

ATTRIBUTE = "__conductor_worker__"


@dataclass(frozen=True)
class WorkerSpec:
    """A task type and the function that executes it, with its options: ``options`` are the
    core's worker options by name (:class:`conductor_worker.WorkerOptions`, checked by the core
    when the spec is made; the environment overrides them at start), ``isolation`` is how
    Python runs the function."""

    task_type: str
    func: Callable[..., Any]
    options: dict[str, Any] = field(default_factory=dict)
    isolation: Isolation = "thread"
    binder: Binder = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.isolation not in ("thread", "process"):
            raise ValueError(f"isolation must be 'thread' or 'process', not {self.isolation!r}")
        if self.isolation == "process" and self.is_async:
            raise ValueError(f"{self.task_type}: isolation='process' is for sync functions; async def runs on asyncio")
        _native.check_worker_options(self.task_type, self.options)
        object.__setattr__(self, "binder", Binder(self.func))

    @property
    def domain(self) -> str | None:
        return self.options.get("domain") or None

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
    task_type: str | None = None, *, isolation: Isolation = "thread", **options: Unpack[WorkerOptions]
) -> Callable[[F], F]: ...


def worker(
    task_type: str | Callable[..., Any] | None = None, *, isolation: Isolation = "thread", **options: Any
) -> Any:
    """Declares ``func`` the executor of ``task_type`` (default: the function's name).

    ``options`` are the core's worker options (:class:`conductor_worker.WorkerOptions` lists
    them with their defaults and environment names): e.g. ``concurrency`` (tasks run at once:
    threads for sync functions, asyncio tasks for ``async def``, processes with
    ``isolation="process"``), ``poll_interval`` and ``poll_timeout`` (seconds), ``domain``,
    ``lease_extend``, ``paused``, ``register`` (``True``, or a dict of task definition fields
    such as ``{"retryCount": 5, "responseTimeoutSeconds": 120}``). A bad or unknown option is a
    :class:`~conductor_worker.errors.ConfigError` here, naming it.
    ``isolation="process"``: run a CPU-bound function in a pool of processes.

    The function is returned unchanged: it can still be called (and tested) directly.
    """

    def decorate(func: F, name: str | None) -> F:
        spec = WorkerSpec(task_type=name or func.__name__, func=func, options=options, isolation=isolation)
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
