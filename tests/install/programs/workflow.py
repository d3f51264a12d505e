"""Run inside a fresh venv by test_installed_artifacts.py (CPython 3.9+, the standard library
and the installed wheel only): registers a two-task workflow on the dev server at argv[1],
completes it with a sync and an async worker, and prints one JSON line with the result and the
package's import time."""

import asyncio
import json
import sys
import time
import urllib.request

t0 = time.perf_counter()
import conductor_worker
from conductor_worker import Runner, worker

IMPORT_SECONDS = time.perf_counter() - t0
API = sys.argv[1]


def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(API + path, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
    return json.loads(text) if text.startswith(("{", "[")) else text


@worker("install_sync", concurrency=2)
def shout(text: str) -> dict:
    return {"text": text.upper(), "python": sys.version.split()[0]}


@worker("install_async", concurrency=2)
async def frame(text: str) -> dict:
    await asyncio.sleep(0.01)
    return {"text": f"[{text}]"}


def register():
    call(
        "POST",
        "/metadata/taskdefs",
        [
            {"name": n, "retryCount": 0, "responseTimeoutSeconds": 30, "ownerEmail": "install@example.com"}
            for n in ("install_sync", "install_async")
        ],
    )
    call("PUT", "/metadata/workflow", [{
        "name": "install_check", "version": 1, "schemaVersion": 2, "ownerEmail": "install@example.com",
        "tasks": [
            {"name": "install_sync", "taskReferenceName": "sync", "type": "SIMPLE",
             "inputParameters": {"text": "${workflow.input.text}"}},
            {"name": "install_async", "taskReferenceName": "async", "type": "SIMPLE",
             "inputParameters": {"text": "${sync.output.text}"}},
        ],
        "outputParameters": {"text": "${async.output.text}", "python": "${sync.output.python}"},
    }])  # fmt: skip


def main():
    register()
    with Runner([shout, frame], servers=[API], journal="off"):
        workflow_id = call("POST", "/workflow/install_check", {"text": "hello"})
        deadline = time.monotonic() + 30
        while True:
            workflow = call("GET", f"/workflow/{workflow_id}")
            if workflow["status"] != "RUNNING" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    print(json.dumps({"status": workflow["status"], "output": workflow.get("output"),
                      "version": conductor_worker.__version__, "import_seconds": IMPORT_SECONDS}))  # fmt: skip
    return 0 if workflow["status"] == "COMPLETED" else 1


if __name__ == "__main__":
    sys.exit(main())
