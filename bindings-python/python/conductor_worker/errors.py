"""Exceptions: what the runtime raises, and what task functions raise to steer their task.

Raised by the runtime (all subclasses of :class:`ConductorWorkerError`)::

    ConductorWorkerError
    ├── ConfigError (also ValueError)        a setting is invalid; .setting, .value
    ├── ServerError                          a server could not be used; .server
    │   ├── TransportError (ConnectionError) connection refused, reset, timed out; .timed_out
    │   ├── StatusError                      unexpected HTTP status; .status, .endpoint
    │   ├── DecodeError                      undecodable answer; .endpoint
    │   └── AuthError (PermissionError)      bad key/secret or token endpoint failing; .retry_in
    ├── UnknownTaskError (LookupError)       a result for a task this worker did not hand out
    ├── NotRunningError (RuntimeError)       not started yet, or stopped; .state
    ├── JournalError (OSError)               the journal file cannot be read or written; .path
    └── MetricsError (OSError)               the metrics endpoint cannot listen; .port

Raised by task functions: :class:`TaskInProgress` and :class:`NonRetryableError`.
"""

from __future__ import annotations

from typing import Any


class ConductorWorkerError(Exception):
    """Base class of the errors the runtime raises. ``retryable`` says whether trying the
    same operation again later can succeed."""

    retryable: bool = False


class ConfigError(ConductorWorkerError, ValueError):
    """A configuration value is invalid; the message names the setting and the value."""

    setting: str = ""
    value: str = ""


class ServerError(ConductorWorkerError):
    """A Conductor server could not be used."""

    server: str = ""


class TransportError(ServerError, ConnectionError):
    """The request could not be sent or its answer not received."""

    timed_out: bool = False


class StatusError(ServerError):
    """The server answered with an unexpected HTTP status."""

    status: int = 0
    endpoint: str = ""


class DecodeError(ServerError):
    """The server's answer could not be decoded."""

    endpoint: str = ""


class AuthError(ServerError, PermissionError):
    """Authentication with the server failed."""

    retry_in: float = 0.0


class UnknownTaskError(ConductorWorkerError, LookupError):
    """A result for a task id this worker never handed out, or already completed."""

    task_type: str = ""
    task_id: str = ""


class NotRunningError(ConductorWorkerError, RuntimeError):
    """The runtime is not running (not started yet, or stopped)."""

    state: str = ""


class JournalError(ConductorWorkerError, OSError):
    """The journal of undelivered results cannot be read or written."""

    path: str = ""


class MetricsError(ConductorWorkerError, OSError):
    """The metrics endpoint could not be started."""

    port: int = 0


class TaskInProgress(Exception):
    """Raise (or return) this from a task function to keep the task ``IN_PROGRESS``: the
    server offers it again after ``callback_after_seconds`` (with ``poll_count`` + 1), with
    ``output`` stored so far. For long jobs that are checked on periodically.

    >>> raise TaskInProgress(callback_after_seconds=30, output={"progress": 0.4})
    """

    def __init__(self, callback_after_seconds: int = 60, output: dict[str, Any] | None = None) -> None:
        super().__init__(f"in progress, call back after {callback_after_seconds} s")
        if callback_after_seconds < 0:
            raise ValueError(f"callback_after_seconds must be >= 0, not {callback_after_seconds}")
        self.callback_after_seconds = int(callback_after_seconds)
        self.output: dict[str, Any] = dict(output or {})


class NonRetryableError(Exception):
    """Raise this from a task function to fail the task for good
    (``FAILED_WITH_TERMINAL_ERROR``): the server does not retry it. Any other exception fails
    the task with ``FAILED``, which the server retries per the task definition."""


__all__ = [
    "AuthError",
    "ConductorWorkerError",
    "ConfigError",
    "DecodeError",
    "JournalError",
    "MetricsError",
    "NonRetryableError",
    "NotRunningError",
    "ServerError",
    "StatusError",
    "TaskInProgress",
    "TransportError",
    "UnknownTaskError",
]
