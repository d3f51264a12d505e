#!/usr/bin/env python3
"""A worker for large payloads, the Python one of the end-to-end tests in tests/e2e (the Rust and
Ruby ones, core/examples/payload_worker.rs and payload_worker.rb here, do exactly the same).

    CONDUCTOR_SERVER_URL=http://127.0.0.1:8080/api .venv/bin/python tests/e2e/workers/payload_worker.py [TASK_TYPE]

The task (default type ``payload_check``) takes ``doc`` (a string) and ``out_kb`` (a number of
KiB) and returns ``input_fnv1a`` (FNV-1a 64 of the UTF-8 bytes of ``doc``, 16 hex digits),
``input_len`` (``doc``'s length in characters) and ``blob`` (``doc`` repeated, or ``-`` if it is
empty, cut to ``out_kb`` * 1024 characters). Prints ``ready`` once its worker polls and
``called <taskId>`` each time the function runs; SIGTERM or SIGINT drains and exits 0.
"""

from __future__ import annotations

import sys
from typing import Any

from conductor_worker import NonRetryableError, Runner, current_task, worker
from payload_check import blob, fnv1a  # beside this file

DEFAULT_TASK_TYPE = "payload_check"


# The defaults let the function run on an empty input, so that a runtime which ran it without
# the input the server stored shows as a `called` line instead of hiding behind a type error.
def payload_check(doc: str = "", out_kb: int = 0) -> dict[str, Any]:
    print(f"called {current_task().task_id}", flush=True)
    if out_kb < 0:
        raise NonRetryableError(f"input 'out_kb' should be a number of KiB from 0, got {out_kb}")
    return {"input_fnv1a": fnv1a(doc.encode()), "input_len": len(doc), "blob": blob(doc, out_kb * 1024)}


def main(argv: list[str]) -> int:
    if len(argv) > 1 or (argv and (not argv[0] or argv[0].startswith("-"))):
        print(f"usage: payload_worker.py [TASK_TYPE] (default {DEFAULT_TASK_TYPE})", file=sys.stderr)
        return 2
    worker(argv[0] if argv else DEFAULT_TASK_TYPE, concurrency=2)(payload_check)
    runner = Runner()
    runner.start()
    print("ready", flush=True)
    runner.run()  # until SIGTERM or SIGINT, then drains
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
