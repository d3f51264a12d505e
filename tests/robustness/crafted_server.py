"""A test-local Conductor impostor that answers batch polls with crafted bytes (a 10 MB input,
JSON nested 100,000 deep, invalid UTF-8, fields of the wrong type) and records every result it is
sent. Each crafted body is served once, in order, then polls get ``[]``."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

TASK_TYPE = "crafted"


def task_json(task_id: str, input_json: str = "{}") -> bytes:
    """One task whose ``inputData`` is the given JSON text, verbatim."""
    head = (
        f'{{"taskId":"{task_id}","workflowInstanceId":"wf-{task_id}","taskType":"{TASK_TYPE}",'
        f'"status":"IN_PROGRESS","responseTimeoutSeconds":300,"inputData":'
    )
    return head.encode() + input_json.encode() + b"}"


def batch(*tasks: bytes) -> bytes:
    return b"[" + b",".join(tasks) + b"]"


class CraftedServer:
    def __init__(self, bodies: list[bytes]) -> None:
        self.bodies = list(bodies)
        self.results: dict[str, dict[str, Any]] = {}
        self.polls = 0
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes = b"") -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = urlparse(self.path).path
                if path.startswith(f"/api/tasks/poll/batch/{TASK_TYPE}"):
                    with owner.lock:
                        owner.polls += 1
                        body = owner.bodies.pop(0) if owner.bodies else None
                    if body is None:
                        time.sleep(0.2)  # a short long poll
                        body = b"[]"
                    self._send(200, body)
                elif path.startswith("/api/tasks/poll/batch/"):
                    time.sleep(0.2)
                    self._send(200, b"[]")
                else:
                    self._send(404, b'{"status":404,"message":"not here"}')

            def do_POST(self) -> None:
                path = urlparse(self.path).path
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if path in ("/api/tasks", "/api/tasks/update-v2"):
                    result = json.loads(raw)
                    with owner.lock:
                        # A lease extension or IN_PROGRESS is not a result; the terminal one is.
                        if not result.get("extendLease"):
                            owner.results[result["taskId"]] = result
                    self._send(200 if path == "/api/tasks" else 204)
                elif path.endswith("/log"):
                    self._send(200)
                else:
                    self._send(404, b'{"status":404,"message":"not here"}')

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.api = f"http://127.0.0.1:{self.httpd.server_address[1]}/api"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def result(self, task_id: str) -> dict[str, Any] | None:
        with self.lock:
            return self.results.get(task_id)

    def wait_results(self, ids: list[str], within: float) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with self.lock:
                if all(i in self.results and self.results[i].get("status") != "IN_PROGRESS" for i in ids):
                    return {i: self.results[i] for i in ids}
            time.sleep(0.05)
        with self.lock:
            missing = [i for i in ids if i not in self.results]
        raise AssertionError(f"no result for {missing} within {within} s ({self.polls} polls)")

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
