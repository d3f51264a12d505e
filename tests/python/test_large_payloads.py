"""Large payloads through the Python package: an input the dev server stored externally reaches
the function (and ``current_task()``) whole, an input no worker can read fails the task without
calling the function, and ``external_payload_threshold_kb`` decides which outputs are uploaded."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from conductor_worker import ConfigError, Event, Runner, current_task, worker

from conftest import Dev, unique, wait_for
from tools.devserver import DevServer

FAST = {"poll_timeout": 0.2, "poll_interval": 0.05}
LOW = ("--task-input-threshold-kb", "64", "--task-output-threshold-kb", "64")


def dev_with(*flags: str) -> Iterator[Dev]:
    server = DevServer(*LOW, *flags)
    try:
        yield Dev(server.api, server.url)
    finally:
        server.stop()


@pytest.fixture
def uploading() -> Iterator[Dev]:
    yield from dev_with("--external-storage", "upload")


@pytest.fixture
def no_uri() -> Iterator[Dev]:
    yield from dev_with("--external-storage", "none")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_an_externalized_input_reaches_the_function_whole(uploading: Dev) -> None:
    task_type = unique("big_in")
    doc = "".join(chr(97 + i % 26) for i in range(300_000))
    seen: dict[str, Any] = {}

    @worker(task_type, **FAST)
    def f(doc: str) -> dict[str, Any]:
        seen["context"] = len(current_task().input["doc"])
        return {"sha": sha(doc)}

    [wf] = uploading.run_tasks(task_type, [{"doc": doc}])
    with Runner([f], servers=[uploading.api_url], journal="off") as runner:
        task = uploading.task_of(wf)
        metrics = runner.metrics_text()
    assert task["status"] == "COMPLETED", task.get("reasonForIncompletion")
    assert task["externalInputPayloadStoragePath"], "the dev server did not externalize the input"
    assert task["outputData"]["sha"] == sha(doc)
    assert seen["context"] == len(doc)
    assert (
        f'external_payload_used_total{{operation="READ",payloadType="TASK_INPUT",taskType="{task_type}"}} 1' in metrics
    )


def test_an_input_no_worker_can_read_fails_without_calling_the_function(no_uri: Dev) -> None:
    task_type = unique("no_uri")
    calls: list[str] = []
    events: list[Event] = []

    @worker(task_type, **FAST)
    def f(doc: str) -> None:
        calls.append(doc)

    [wf] = no_uri.run_tasks(task_type, [{"doc": "x" * 200_000}])
    runner = Runner([f], servers=[no_uri.api_url], journal="off")
    runner.add_listener(events.append)
    with runner:
        task = no_uri.task_of(wf)
        wait_for(lambda: any(e.kind == "external_payload_failed" for e in events), 5, "the event")
    assert calls == []
    assert task["status"] == "FAILED_WITH_TERMINAL_ERROR"
    reason, path = task["reasonForIncompletion"], task["externalInputPayloadStoragePath"]
    assert path, "the dev server did not externalize the input"
    assert "external payload" in reason and path in reason, reason


def test_the_threshold_decides_which_outputs_are_uploaded(uploading: Dev) -> None:
    task_type = unique("big_out")

    @worker(task_type, **FAST)
    def f(n: int) -> dict[str, str]:
        return {"blob": "y" * n}

    # 100 KB: above the server's 64 KB, below this runtime's 200 KB, so sent inline.
    wfs = uploading.run_tasks(task_type, [{"n": 100_000}, {"n": 300_000}])
    with Runner([f], servers=[uploading.api_url], journal="off", external_payload_threshold_kb=200):
        tasks = [uploading.task_of(wf) for wf in wfs]
    stats = uploading.stats()
    assert [t["status"] for t in tasks] == ["COMPLETED", "COMPLETED"]
    assert stats["external_writes"] == 1, stats
    assert stats["externalized_outputs"] == 1, stats
    for wf, n in zip(wfs, (100_000, 300_000), strict=True):
        out = uploading.workflow(wf)["output"]["out"]
        assert out == {"blob": "y" * n}


def test_a_threshold_of_zero_is_refused_naming_the_option(dev: Dev) -> None:
    @worker(unique("zero"), **FAST)
    def f() -> None: ...

    with pytest.raises(ConfigError, match="external_payload_threshold_kb"):
        Runner([f], servers=[dev.api_url], journal="off", external_payload_threshold_kb=0).start()
