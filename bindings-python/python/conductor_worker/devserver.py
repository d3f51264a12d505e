"""The bundled dev server, an in-memory Conductor-compatible server for development and tests.

Installing the package puts ``conductor-devserver`` on the PATH (this module's :func:`main`)::

    conductor-devserver --port 8080          # serves http://127.0.0.1:8080/api until Ctrl-C
    conductor-devserver --help               # fault injection, auth, payload limits, ...

It is the same server as the Rust ``conductor-devserver`` binary, compiled into the package's
extension, so it needs nothing else installed.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from conductor_worker import _native

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``conductor-devserver`` with ``argv`` (default: this process's arguments) until
    SIGINT or SIGTERM; returns the exit status (0 after a signal, 2 for bad flags)."""
    args = ["conductor-devserver", *(sys.argv[1:] if argv is None else argv)]
    try:
        return _native.run_devserver(args)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
