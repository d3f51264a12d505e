"""``Runner`` and ``run()``: the native runtime plus the executors that run task functions.

Sync functions run on Python threads that pull tasks from the core with the GIL released while
they wait; ``async def`` functions run on one asyncio loop (a thread of the runner); functions
with ``isolation="process"`` run in a process pool while the core stays in this process.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import logging
import os
import signal
import threading
import time
import traceback
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Union

from conductor_worker import _logging, _native
from conductor_worker._native import Task
from conductor_worker.context import TaskContext, _current
from conductor_worker.decorator import WorkerSpec, registered, spec_of
from conductor_worker.errors import NonRetryableError, NotRunningError, TaskInProgress
from conductor_worker.mapping import InputMismatch, jsonable, to_output

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from conductor_worker._options import RuntimeOptions

logger = logging.getLogger("conductor_worker")

# How long an idle executor thread waits in Rust per call; it only bounds how often an idle
# thread wakes up (the core wakes it at once when a task arrives or the worker stops).
_IDLE_WAIT = 5.0


@dataclass(frozen=True)
class Server:
    """A Conductor server: base URL including ``/api``, with optional key credentials."""

    url: str
    key_id: str | None = None
    key_secret: str | None = None

    def __repr__(self) -> str:  # never show the secret
        return f"Server(url={self.url!r}, key_id={self.key_id!r})"


@dataclass(frozen=True)
class StopReport:
    """What ``stop()`` / ``kill()`` left behind."""

    abandoned_tasks: int = 0
    """Tasks still running when the deadline passed (their results go to the journal)."""
    journalled_results: int = 0
    """Results written to the journal, to be delivered at the next start."""
    returned_tasks: int = 0
    """Tasks polled but not started, handed back to their server."""


@dataclass(frozen=True)
class Event:
    """A runtime event: ``kind`` (``poll_started``, ``poll_completed``, ``poll_failed``,
    ``execution_started``, ``execution_completed``, ``execution_failed``,
    ``update_delivered``, ``update_failed``, ``worker_state_changed``,
    ``circuit_state_changed``, ``external_payload_used``, ``external_payload_failed``,
    ``poll_loop_restarted``) and its fields (``task_type``,
    ``task_id``, ``server``, ``duration`` in seconds, ``reason``, ...)."""

    kind: str
    fields: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.fields[name]
        except KeyError:
            raise AttributeError(name) from None


WorkerLike = Union[WorkerSpec, Callable[..., Any]]

# run() quiets on SIGTSTP and resumes on SIGCONT where the platform has them.
_QUIET_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTSTP", "SIGCONT") if hasattr(signal, name))

_runners: weakref.WeakSet[Runner] = weakref.WeakSet()


class _Executor:
    """One worker's executors."""

    def __init__(self, spec: WorkerSpec, native: _native.Worker) -> None:
        self.spec = spec
        self.native = native
        self.threads: list[threading.Thread] = []
        self.pool: concurrent.futures.ProcessPoolExecutor | None = None


class Runner:
    """Runs workers: ``start()``, ``stop(timeout=...)``, ``kill()``, ``join()``, ``health()``,
    ``quiet()`` / ``resume_all()``.

    ``workers``: decorated functions (or specs); default every ``@worker`` declared so far.
    ``options``: the core's runtime options (:class:`conductor_worker.RuntimeOptions` lists
    them with their defaults and environment variables), e.g. ``servers`` (URLs or
    :class:`Server` s; default ``CONDUCTOR_SERVER_URL``), ``metrics_port`` (serve Prometheus
    ``/metrics`` and ``/health``; 0: any free port, see ``metrics_addr``), ``journal`` (a file
    for results still undelivered at exit, ``"off"`` for none), ``request_timeout``,
    ``external_payload_threshold_kb``. A bad or unknown option is a
    :class:`~conductor_worker.errors.ConfigError` at ``start()``, naming it.
    ``stop_timeout``: how long ``stop()`` and Ctrl-C let running tasks finish. ``mp_context``:
    the multiprocessing context of ``isolation="process"`` pools (default: the program's own
    start method). ``loop_factory``: makes the event loop that runs ``async def`` workers
    (default ``asyncio.new_event_loop``; e.g. ``uvloop.new_event_loop``).

    As a context manager it starts on entry and stops (draining) on exit.
    """

    def __init__(
        self,
        workers: Iterable[WorkerLike] | None = None,
        *,
        stop_timeout: float = 30.0,
        mp_context: Any = None,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
        **options: Unpack[RuntimeOptions],
    ) -> None:
        if loop_factory is not None and not callable(loop_factory):
            raise TypeError(f"loop_factory must be callable (like asyncio.new_event_loop), not {loop_factory!r}")
        self._loop_factory = loop_factory or asyncio.new_event_loop
        self._specs = [spec_of(w) for w in workers] if workers is not None else None
        self._options = _native_options(dict(options))
        self.stop_timeout = stop_timeout
        self._mp_context = mp_context
        self._runtime: _native.Runtime | None = None
        self._executors: list[_Executor] = []
        self._listeners: list[Callable[[Event], None]] = []
        self._events_thread: threading.Thread | None = None
        self._loop_thread: threading.Thread | None = None
        self._state = "created"
        self._state_lock = threading.Lock()
        self._stopped = threading.Event()
        self._stop_requested = threading.Event()
        # SIGTSTP / SIGCONT noted by run()'s handlers, acted on by its main loop.
        self._quiet_signals: collections.deque[int] = collections.deque()
        self._report = StopReport()
        self._pid = os.getpid()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Connects the workers and starts polling. Raises ConfigError for invalid settings
        and the server's error if task definitions cannot be registered."""
        with self._state_lock:
            if self._state != "created":
                raise NotRunningError(f"a Runner starts once (it is {self._state})")
            self._state = "starting"
        try:
            self._start()
        except BaseException:
            with self._state_lock:
                self._state = "stopped"
            self._stopped.set()
            raise

    def _start(self) -> None:
        _logging.sync_level()
        specs = self._specs if self._specs is not None else registered()
        if not specs:
            raise ValueError("no workers: decorate functions with @worker or pass workers=[...]")
        runtime = _native.Runtime(self._options)
        for spec in specs:
            native = runtime.add_worker(spec.task_type, spec.options)
            self._executors.append(_Executor(spec, native))
        if self._listeners:
            self._start_events(runtime)
        async_executors = [e for e in self._executors if e.spec.is_async]
        loop = self._new_loop() if async_executors else None
        self._runtime = runtime
        runtime.start()
        if loop is not None:
            self._start_loop(loop, async_executors)
        for ex in self._executors:
            if not ex.spec.is_async:
                self._start_threads(ex)
        with self._state_lock:
            self._state = "running"
        _runners.add(self)
        logger.info(
            "started %d worker(s) on %s: %s",
            len(self._executors),
            ", ".join(runtime.status()["servers"]),
            ", ".join(f"{e.spec.task_type} x{e.native.concurrency}" for e in self._executors),
        )

    def stop(self, timeout: float | None = None) -> StopReport:
        """Stops polling, lets running tasks finish for up to ``timeout`` seconds (default
        ``stop_timeout``), delivers their results and journals what could not be delivered."""
        if not self._begin_stop():
            self._stopped.wait()
            return self._report
        assert self._runtime is not None
        deadline = time.monotonic() + (self.stop_timeout if timeout is None else timeout)
        report = self._runtime.stop(max(0.0, deadline - time.monotonic()))
        self._finish(deadline)
        return self._end(report)

    def kill(self) -> StopReport:
        """Stops at once: no draining; results not yet delivered go to the journal."""
        with self._state_lock:
            if self._state in ("created", "stopped"):
                self._state = "stopped"
                self._stopped.set()
                return self._report
            self._state = "stopping"
        assert self._runtime is not None
        for ex in self._executors:
            ex.native.interrupt()
        report = self._runtime.kill()
        self._finish(time.monotonic() + 0.5, cancel=True)
        return self._end(report)

    def join(self, timeout: float | None = None) -> bool:
        """Waits until the runner has stopped; False if ``timeout`` passed first."""
        return self._stopped.wait(timeout)

    def run(self) -> None:
        """Starts (unless started) and blocks until Ctrl-C or SIGTERM, then drains within
        ``stop_timeout``; a second Ctrl-C or SIGTERM during the drain kills at once.

        As in Sidekiq, SIGTSTP quiets the process before a deploy (:meth:`quiet`: no more
        polling, running tasks finish, the process stays up) and SIGCONT makes it poll again
        (:meth:`resume_all`); SIGTERM then drains and exits as always. The previous handlers of
        all four signals are back when ``run()`` returns. Signals are handled only when
        ``run()`` is called on the main thread."""
        in_main = threading.current_thread() is threading.main_thread()
        previous: dict[signal.Signals, Any] = {}
        if in_main:
            # Before start: a Ctrl-C or SIGTERM while the executors start (a task may already
            # be running) asks for a drain like any other, instead of interrupting the start.
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, self._on_signal)
            for sig in _QUIET_SIGNALS:
                previous[sig] = signal.signal(sig, self._on_quiet_signal)
        try:
            if self._state == "created":
                self.start()
            while not self._stop_requested.is_set() and not self._stopped.is_set():
                self._apply_quiet_signals()
                self._stop_requested.wait(0.1)
            if not self._stopped.is_set():
                logger.info("draining: running tasks get %.0f s (Ctrl-C again to stop at once)", self.stop_timeout)
                self.stop()
        except KeyboardInterrupt:
            if self._runtime is None:
                raise
            logger.warning("stopping at once: undelivered results go to the journal")
            self.kill()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._stop_requested.is_set():
            raise KeyboardInterrupt
        self._stop_requested.set()

    def _on_quiet_signal(self, signum: int, frame: Any) -> None:
        # Only noted: a handler runs wherever the main thread is, possibly inside a call into
        # the core (start, stop), so run()'s loop calls quiet() / resume_all() instead.
        self._quiet_signals.append(signum)

    def _apply_quiet_signals(self) -> None:
        while self._quiet_signals:
            if self._quiet_signals.popleft() == signal.SIGTSTP:
                logger.info("SIGTSTP: quiet, running tasks finish (SIGCONT polls again, SIGTERM drains and exits)")
                self.quiet()
            else:
                logger.info("SIGCONT: polling again")
                self.resume_all()

    def _begin_stop(self) -> bool:
        with self._state_lock:
            if self._state != "running":
                if self._state == "created":
                    self._state = "stopped"
                    self._stopped.set()
                return False
            self._state = "stopping"
        self._stop_requested.set()
        return True

    def _finish(self, deadline: float, cancel: bool = False) -> None:
        for ex in self._executors:
            for t in ex.threads:
                t.join(max(0.05, deadline - time.monotonic()))
        if self._loop_thread is not None:
            self._loop_thread.join(max(0.05, deadline - time.monotonic()))
        for ex in self._executors:
            if ex.pool is not None:
                ex.pool.shutdown(wait=not cancel, cancel_futures=True)

    def _end(self, report: dict[str, int]) -> StopReport:
        self._report = StopReport(**report)
        with self._state_lock:
            self._state = "stopped"
        self._stopped.set()
        logger.info("stopped: %s", self._report)
        return self._report

    def __enter__(self) -> Runner:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is KeyboardInterrupt:
            self.kill()
        else:
            self.stop()

    # -- observation and control -------------------------------------------------------------

    @property
    def state(self) -> str:
        """``created``, ``starting``, ``running``, ``stopping`` or ``stopped``."""
        return self._state

    def health(self) -> list[dict[str, Any]]:
        """Each worker's state, running and buffered tasks, poll errors in a row, restarts."""
        return self._runtime.health() if self._runtime is not None else []

    def is_healthy(self) -> bool:
        """Running, and every worker polls without errors piling up."""
        return self._runtime is not None and bool(self._runtime.status()["healthy"])

    def metrics_text(self) -> str:
        """The Prometheus text exposition (also served on ``metrics_port`` if set)."""
        return self._runtime.metrics_text() if self._runtime is not None else ""

    @property
    def metrics_addr(self) -> tuple[str, int] | None:
        """``(host, port)`` of the metrics and health endpoint, once started."""
        addr = self._runtime.status()["metrics_addr"] if self._runtime is not None else None
        return (addr[0], addr[1]) if addr else None

    def pause(self, task_type: str | None = None) -> None:
        """Stops polling (one task type, or all); running tasks go on."""
        for ex in self._select(task_type):
            ex.native.pause()

    def resume(self, task_type: str | None = None) -> None:
        """Starts polling again after ``pause``."""
        for ex in self._select(task_type):
            ex.native.resume()

    def quiet(self) -> None:
        """Quiets the runner before a deploy (Sidekiq's TSTP; ``run()`` calls it on SIGTSTP):
        every worker stops polling, running tasks finish and their results are delivered, and
        the process stays up; the readiness probe (``/health/ready`` on ``metrics_port``)
        answers 503 from now on. ``stop()`` then drains as usual; ``resume_all()`` undoes it.
        The runner must be started."""
        self._started_runtime().quiet()

    def resume_all(self) -> None:
        """Every worker polls again, after ``quiet()`` or ``pause()`` (``run()`` calls it on
        SIGCONT). The runner must be started."""
        self._started_runtime().resume_all()

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        """Calls ``listener(event)`` for every runtime :class:`Event` from now on, on a thread
        of this runner that takes them from the core in batches, never on the polling path."""
        self._listeners.append(listener)
        if self._runtime is not None:
            self._start_events(self._runtime)

    def _start_events(self, runtime: _native.Runtime) -> None:
        if self._events_thread is not None:
            return
        runtime.listen()
        self._events_thread = threading.Thread(
            target=self._pull_events, args=(runtime,), name="conductor-worker-events", daemon=True
        )
        self._events_thread.start()

    def _pull_events(self, runtime: _native.Runtime) -> None:
        while True:
            batch = runtime.next_events(1024, 0.5)
            if not batch and self._stopped.is_set():
                return
            for kind, fields in batch:
                event = Event(kind, fields)
                for listener in list(self._listeners):
                    try:
                        listener(event)
                    except Exception:
                        logger.exception("event listener %r raised", listener)

    def register_task_defs(self, defs: Iterable[dict[str, Any]]) -> None:
        """Registers task definitions (server field names, e.g. ``{"name": "greet",
        "retryCount": 5}``) on every server. The runner must be started."""
        self._started_runtime().register_task_defs(list(defs))

    def _started_runtime(self) -> _native.Runtime:
        if self._runtime is None:
            raise NotRunningError("start the runner first")
        return self._runtime

    def _select(self, task_type: str | None) -> list[_Executor]:
        chosen = [e for e in self._executors if task_type is None or e.spec.task_type == task_type]
        if task_type is not None and not chosen:
            raise LookupError(f"no worker for task type {task_type!r} in this runner")
        return chosen

    # -- thread executors ---------------------------------------------------------------------

    def _start_threads(self, ex: _Executor) -> None:
        if ex.spec.isolation == "process":
            ex.pool = self._new_pool(ex)
        for i in range(ex.native.concurrency):
            t = threading.Thread(
                target=self._thread_loop, args=(ex,), name=f"conductor-{ex.spec.task_type}-{i}", daemon=True
            )
            ex.threads.append(t)
            t.start()

    def _new_pool(self, ex: _Executor) -> concurrent.futures.ProcessPoolExecutor:
        return concurrent.futures.ProcessPoolExecutor(max_workers=ex.native.concurrency, mp_context=self._mp_context)

    def _thread_loop(self, ex: _Executor) -> None:
        native = ex.native
        run = self._run_in_pool if ex.pool is not None else _execute
        try:
            while True:
                # Busy: the next task is often already buffered (update-v2 brings it with the
                # last result); taking it with the GIL held avoids a thread hand-off.
                tasks = native.ready_tasks(1)
                if not tasks:
                    if tasks is None:
                        return
                    tasks = native.next_tasks(1, _IDLE_WAIT)
                    if tasks is None:
                        return
                for task in tasks:
                    run(ex, task)
        except NotRunningError:
            return
        except BaseException:
            logger.exception("executor thread of %s failed", ex.spec.task_type)

    def _run_in_pool(self, ex: _Executor, task: Task) -> None:
        assert ex.pool is not None
        spec = ex.spec
        try:
            args, kwargs = spec.binder.bind(task)
        except InputMismatch as e:
            _fail_input(ex, task, e)
            return
        ctx = TaskContext(task).snapshot()
        try:
            future = ex.pool.submit(_call_in_process, spec.func, args, kwargs, ctx)
            outcome = future.result()
        except Exception as e:
            if isinstance(e, concurrent.futures.process.BrokenProcessPool):
                ex.pool = self._new_pool(ex)
            reason = f"the worker process failed: {type(e).__name__}: {e}"
            _send(ex, task, "FAILED", reason=reason, logs=[*ctx.logs, traceback.format_exc()])
            return
        _report_outcome(ex, task, outcome)

    # -- asyncio executors -------------------------------------------------------------------

    def _new_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop_factory()
        if not isinstance(loop, asyncio.AbstractEventLoop):
            raise TypeError(f"loop_factory must return an asyncio event loop, not {loop!r}")
        return loop

    def _start_loop(self, loop: asyncio.AbstractEventLoop, executors: list[_Executor]) -> None:
        ready = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(loop)
            ready.set()
            try:
                loop.run_until_complete(asyncio.gather(*(_AsyncDispatcher(ex, loop).run() for ex in executors)))
            except BaseException:
                logger.exception("the asyncio executor failed")
            finally:
                # Give deliveries already scheduled by the core a chance to run before closing.
                loop.run_until_complete(asyncio.sleep(0))
                loop.close()

        self._loop_thread = threading.Thread(target=main, name="conductor-asyncio", daemon=True)
        self._loop_thread.start()
        ready.wait()


class _AsyncDispatcher:
    """Keeps up to ``concurrency`` tasks of one worker in flight on the loop: asks the core for
    as many tasks as there are free slots (in batches), runs each as an asyncio task.

    The core answers into the worker's mailbox and writes a byte to a socket the loop watches;
    the loop then takes the tasks itself, so no other thread ever waits for the GIL to hand
    tasks over."""

    def __init__(self, ex: _Executor, loop: asyncio.AbstractEventLoop) -> None:
        self.ex = ex
        self.loop = loop
        self.concurrency = ex.native.concurrency
        # Asking for every single freed slot would cost a round trip each; a few percent of
        # the capacity per request keeps large pools full.
        self.min_batch = max(1, self.concurrency // 50)
        self.in_flight = 0
        self.asked = 0
        self.stopping = False
        self.done: asyncio.Future[None] = loop.create_future()
        # The loop keeps only weak references to its tasks.
        self.running: dict[Task, asyncio.Task[None]] = {}
        self.fd = ex.native.wakeup_fd()

    async def run(self) -> None:
        self.loop.add_reader(self.fd, self._on_wakeup)
        try:
            self._refill()
            await self.done
        finally:
            self.loop.remove_reader(self.fd)

    def _refill(self) -> None:
        if self.stopping:
            return
        free = self.concurrency - self.in_flight - self.asked
        if free > 0 and (free >= self.min_batch or self.asked == 0):
            self.asked += free
            try:
                self.ex.native.request_tasks(free)
            except Exception:
                self.asked -= free
                self.stopping = True
                logger.exception("cannot poll for %s", self.ex.spec.task_type)
                self._check_done()

    def _on_wakeup(self) -> None:
        tasks, answered, stopped = self.ex.native.take_requested()
        self.asked -= answered
        if stopped:
            self.stopping = True
        self.in_flight += len(tasks)
        for task in tasks:
            self.running[task] = self.loop.create_task(self._execute(task))
        self._refill()
        self._check_done()

    async def _execute(self, task: Task) -> None:
        ex = self.ex
        spec = ex.spec
        ctx = TaskContext(task)
        _current.set(ctx)  # each asyncio task has its own context copy
        try:
            try:
                args, kwargs = spec.binder.bind(task)
            except InputMismatch as e:
                _fail_input(ex, task, e)
                return
            try:
                value = await spec.func(*args, **kwargs)
            except Exception as e:
                _raised(ex, task, e, ctx.logs)
            else:
                _success(ex, task, value, ctx.logs)
        except Exception:
            logger.exception("cannot report the result of task %s", task.task_id)
        finally:
            # Here rather than in a done callback: one loop callback less per task.
            self.running.pop(task, None)
            self.in_flight -= 1
            self._refill()
            self._check_done()

    def _check_done(self) -> None:
        if self.stopping and self.in_flight == 0 and self.asked == 0 and not self.done.done():
            self.done.set_result(None)


# -- executing one task --------------------------------------------------------------------------


def _send(
    ex: _Executor,
    task: Task,
    status: str,
    output: Any = None,
    reason: str | None = None,
    callback_after_seconds: int | None = None,
    logs: list[str] | None = None,
) -> None:
    try:
        ex.native.complete(task, status, output, reason, callback_after_seconds, logs)
    except (TypeError, ValueError) as first:
        try:
            ex.native.complete(task, status, jsonable(output), reason, callback_after_seconds, logs)
        except (TypeError, ValueError):
            ex.native.complete(
                task,
                "FAILED_WITH_TERMINAL_ERROR",
                None,
                f"the output of {ex.spec.task_type} cannot be serialised as JSON: {first}",
                None,
                logs,
            )


def _fail_input(ex: _Executor, task: Task, e: InputMismatch) -> None:
    # The same input comes back on every retry, so retrying cannot help.
    reason = f"the task input does not fit {ex.spec.func.__qualname__}(): {e}"
    _send(ex, task, "FAILED_WITH_TERMINAL_ERROR", reason=reason)


def _raised(ex: _Executor, task: Task, e: BaseException, logs: list[str]) -> None:
    if isinstance(e, TaskInProgress):
        _send(ex, task, "IN_PROGRESS", e.output, None, e.callback_after_seconds, logs)
    elif isinstance(e, NonRetryableError):
        _send(ex, task, "FAILED_WITH_TERMINAL_ERROR", reason=str(e) or type(e).__name__, logs=logs)
    else:
        reason = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        _send(ex, task, "FAILED", reason=reason, logs=[*logs, traceback.format_exc()])


def _success(ex: _Executor, task: Task, value: Any, logs: list[str]) -> None:
    if isinstance(value, TaskInProgress):
        _send(ex, task, "IN_PROGRESS", value.output, None, value.callback_after_seconds, logs)
    else:
        _send(ex, task, "COMPLETED", to_output(value), logs=logs)


def _execute(ex: _Executor, task: Task) -> None:
    spec = ex.spec
    ctx = TaskContext(task)
    token = _current.set(ctx)
    try:
        try:
            args, kwargs = spec.binder.bind(task)
        except InputMismatch as e:
            _fail_input(ex, task, e)
            return
        try:
            value = spec.func(*args, **kwargs)
        except Exception as e:
            _raised(ex, task, e, ctx.logs)
        else:
            _success(ex, task, value, ctx.logs)
    except Exception:
        logger.exception("cannot report the result of task %s", task.task_id)
    finally:
        _current.reset(token)


def _call_in_process(func: Callable[..., Any], args: list[Any], kwargs: dict[str, Any], ctx: TaskContext) -> Any:
    """Runs in the pool's process; returns an outcome tuple the parent reports."""
    token = _current.set(ctx)
    try:
        value = func(*args, **kwargs)
        if isinstance(value, TaskInProgress):
            return ("in_progress", value.callback_after_seconds, value.output, ctx.logs)
        return ("ok", to_output(value), ctx.logs)
    except TaskInProgress as e:
        return ("in_progress", e.callback_after_seconds, e.output, ctx.logs)
    except NonRetryableError as e:
        return ("terminal", str(e) or type(e).__name__, ctx.logs)
    except Exception as e:
        reason = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        return ("failed", reason, [*ctx.logs, traceback.format_exc()])
    finally:
        _current.reset(token)


def _report_outcome(ex: _Executor, task: Task, outcome: tuple[Any, ...]) -> None:
    kind = outcome[0]
    if kind == "ok":
        _send(ex, task, "COMPLETED", outcome[1], logs=outcome[2])
    elif kind == "in_progress":
        _send(ex, task, "IN_PROGRESS", outcome[2], None, outcome[1], outcome[3])
    elif kind == "terminal":
        _send(ex, task, "FAILED_WITH_TERMINAL_ERROR", reason=outcome[1], logs=outcome[2])
    else:
        _send(ex, task, "FAILED", reason=outcome[1], logs=outcome[2])


def run(workers: Iterable[WorkerLike] | None = None, **options: Any) -> None:
    """Runs the workers (default: every ``@worker``) until Ctrl-C or SIGTERM, then drains;
    SIGTSTP quiets them (no more polling, running tasks finish, the process stays up) and
    SIGCONT resumes them, as :meth:`Runner.run` does. Servers come from
    ``CONDUCTOR_SERVER_URL`` unless given. Options as for :class:`Runner`."""
    Runner(workers, **options).run()


def _native_options(options: dict[str, Any]) -> dict[str, Any]:
    """The runtime options as the core takes them: servers as ``(url, key_id, key_secret)``,
    a journal path as a string."""
    servers = options.get("servers")
    if isinstance(servers, (str, Server)):
        servers = [servers]
    if servers is not None:
        options["servers"] = [(s.url, s.key_id, s.key_secret) if isinstance(s, Server) else str(s) for s in servers]
    if options.get("journal") is not None:
        options["journal"] = os.fspath(options["journal"])
    return options


def _stop_at_exit() -> None:
    # A program that started a Runner and fell off the end of its main module: drain rather
    # than lose the running tasks' results (executor threads are daemons).
    for runner in list(_runners):
        if runner._pid == os.getpid() and runner.state == "running":
            runner.stop()
        # Its event thread waits in Rust up to 0.5 s at a time; it must be out before the
        # interpreter finalizes (see _logging._stop_pulling_at_exit).
        events = runner._events_thread
        if runner._pid == os.getpid() and events is not None and runner._stopped.is_set():
            events.join(timeout=1.5)


atexit.register(_stop_at_exit)
