"""The core's log records, handed over in batches by the extension, as ``logging`` records of
the logger ``conductor_worker`` (child loggers ``conductor_worker.<module>`` by origin)."""

from __future__ import annotations

import atexit
import logging

from conductor_worker import _native

logger = logging.getLogger("conductor_worker")


def forward(records: list[tuple[int, str, str, float]]) -> None:
    """Called by the extension's log thread with ``(level, target, message, created)``."""
    for level, target, message, created in records:
        name = target.replace("::", ".")
        log = logging.getLogger(name) if name.startswith("conductor_worker") else logger
        if not log.isEnabledFor(level):
            continue
        record = log.makeRecord(log.name, level, target, 0, message, (), None)
        record.created = created
        record.msecs = (created - int(created)) * 1000
        log.handle(record)


def sync_level() -> None:
    """Tells the core the level of the ``conductor_worker`` logger, so it does not even format
    records nobody will see. Runner.start() calls it; call it again after changing the level."""
    _native.set_log_level(max(1, min(255, logger.getEffectiveLevel())))


atexit.register(_native.close_forwarding)
