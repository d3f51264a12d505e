"""The core's log records as ``logging`` records of the logger ``conductor_worker`` (child
loggers ``conductor_worker.<module>`` by origin), pulled in batches by a daemon thread of this
process (one per process: a forked child starts its own)."""

from __future__ import annotations

import atexit
import logging
import os
import threading

from conductor_worker import _native

logger = logging.getLogger("conductor_worker")

_BATCH = 512
_WAIT = 0.5
# The process whose forwarding thread runs (a forked child has none until it starts one).
_puller: dict[str, int] = {}
_puller_lock = threading.Lock()
_pull_thread: list[threading.Thread] = []
_exiting = threading.Event()


def forward(records: list[tuple[int, str, str, float]]) -> None:
    """Hands ``(level, target, message, created)`` records to their loggers."""
    for level, target, message, created in records:
        name = target.replace("::", ".")
        log = logging.getLogger(name) if name.startswith("conductor_worker") else logger
        if not log.isEnabledFor(level):
            continue
        record = log.makeRecord(log.name, level, target, 0, message, (), None)
        record.created = created
        record.msecs = (created - int(created)) * 1000
        log.handle(record)


def _pull() -> None:
    while not _exiting.is_set():
        records = _native.next_log_records(_BATCH, _WAIT)
        try:
            forward(records)
        except Exception:  # a handler that raises must not end the forwarding
            logging.getLogger(__name__).exception("a log handler raised")


def sync_level() -> None:
    """Tells the core the level of the ``conductor_worker`` logger, so it does not even format
    records nobody will see, and starts this process's forwarding thread. Runner.start() calls
    it; call it again after changing the level."""
    _native.set_log_level(max(1, min(255, logger.getEffectiveLevel())))
    with _puller_lock:
        if _puller.get("pid") != os.getpid():
            thread = threading.Thread(target=_pull, name="conductor-worker-logs", daemon=True)
            thread.start()
            _pull_thread[:] = [thread]
            _puller["pid"] = os.getpid()


def _stop_pulling_at_exit() -> None:
    # A daemon thread that comes back from a wait in Rust while the interpreter finalizes is
    # ended by CPython with pthread_exit, whose forced unwind through the extension's frames can
    # crash the process at exit; so the thread ends before finalization starts.
    _exiting.set()
    for thread in _pull_thread:
        if thread.ident != threading.get_ident():
            thread.join(timeout=_WAIT + 1)


atexit.register(_stop_pulling_at_exit)
