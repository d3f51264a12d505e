"""The Python package never shows a secret or a token: every log record of the ``conductor_worker``
logger at the lowest level (the core's TRACE included), every ``repr``, ``str`` and exception, and
the worker's own stderr are captured while tokens are minted, expire every second and are refused,
then searched."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import pytest

from tools.devserver import DevServer
from tools.rest import Client

KEY_ID = "py-key-5d2e8a"
SECRET = "py-s3cr3t-Lm4kQ-never-shown"
WRONG = "py-wr0ng-Tz9-also-hidden"
TOKEN_PREFIX = "devtoken."


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=1)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelno} {record.name} {record.getMessage()} {record.__dict__!r}")


def assert_clean(what: str, text: str) -> None:
    for needle in (SECRET, WRONG, TOKEN_PREFIX):
        at = text.find(needle)
        assert at < 0, f"{what} holds {needle!r}: ...{text[max(0, at - 200) : at + 80]}..."


@pytest.fixture
def auth_dev() -> Any:
    with_ttl = DevServer("--auth", f"{KEY_ID}:{SECRET}", "--token-ttl-secs", "1")
    try:
        yield with_ttl
    finally:
        with_ttl.stop()


def test_secrets_and_tokens_never_reach_logs_reprs_or_errors(
    auth_dev: DevServer, capfd: pytest.CaptureFixture[str]
) -> None:
    from conductor_worker import Runner, Server, worker

    task_type = f"secret_{uuid.uuid4().hex[:8]}"
    admin = Client(auth_dev.url)
    r = admin.post("/admin/tasks", {"taskType": task_type, "count": 200, "input": {"n": 1}})
    assert r.status == 200, r.text

    handler = Collect()
    log = logging.getLogger("conductor_worker")
    old_level = log.level
    log.addHandler(handler)
    log.setLevel(1)
    assert log.isEnabledFor(5), "TRACE (5) must be enabled for this test to mean anything"
    shown: list[str] = []
    try:

        @worker(task_type, concurrency=4)
        def slow(n: int) -> dict[str, int]:
            time.sleep(0.05)  # 200 tasks take ~3 s: tokens (1 s) expire and are refreshed
            return {"n": n}

        server = Server(auth_dev.api, key_id=KEY_ID, key_secret=SECRET)
        with Runner([slow], servers=[server], journal="off") as runner:
            deadline = time.monotonic() + 60
            while admin.get("/admin/stats").json()["tasks"]["completed"] < 200:
                assert time.monotonic() < deadline, "the tasks did not complete"
                time.sleep(0.1)
            shown += [repr(server), str(server), repr(runner), repr(runner.health())]
        stats = admin.get("/admin/stats").json()
        assert stats["requests"]["token"] >= 2, f"no token refresh was exercised: {stats['requests']}"

        # A wrong secret: refused, reported, and still not shown.
        wrong = Server(auth_dev.api, key_id=KEY_ID, key_secret=WRONG)
        runner = Runner([slow], servers=[wrong], journal="off")
        runner.start()
        time.sleep(1.5)
        shown += [repr(wrong), repr(runner.health())]
        report = runner.stop(timeout=2)
        shown.append(repr(report))
        try:
            Runner([slow], servers=[Server("not a url", key_id=KEY_ID, key_secret=SECRET)], journal="off").start()
        except Exception as e:  # noqa: BLE001 -- any error type; its text is what is checked
            shown.append(f"{type(e).__name__}: {e} {e!r}")
        else:
            pytest.fail("a malformed server URL was accepted")
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)

    text = "\n".join(handler.lines)
    # The capture really holds the run at its lowest levels (else this proves nothing): TRACE (5)
    # was enabled, so the core forwarded everything it logs; DEBUG records arrived.
    assert any(int(line.split(" ", 1)[0]) <= logging.DEBUG for line in handler.lines), "no DEBUG records captured"
    assert "401" in text or "auth" in text.lower(), "the refused secret was not reported"
    assert_clean("the log records", text)
    assert_clean("repr/str/errors", "\n".join(shown))
    out, err = capfd.readouterr()
    assert_clean("stdout/stderr", out + err)
