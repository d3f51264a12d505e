"""The arithmetic behind the real-server and large-payload rows of the benchmark
(bench/real_server.py, bench/payloads.py): a rate read from the server's clock, pickup
latency from a workflow's task, and the peak-RSS verdict against the no-payload baseline."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import payloads
import real_server


def ended(*iso: str) -> list[dict[str, str]]:
    return [{"endTime": t, "status": "COMPLETED"} for t in iso]


def test_the_rate_counts_completions_after_the_first_over_the_span() -> None:
    # 5 completions over 2 s: the first starts the clock, 4 more in 2 s.
    rate, span = real_server.server_rate(
        ended(
            "2026-12-03T15:00:00.000Z",
            "2026-12-03T15:00:00.500Z",
            "2026-12-03T15:00:02.000Z",
            "2026-12-03T15:00:01.000Z",
            "2026-12-03T15:00:01.500Z",
        )
    )
    assert span == pytest.approx(2.0)
    assert rate == pytest.approx(2.0)


def test_a_rate_needs_two_distinct_completions() -> None:
    with pytest.raises(ValueError, match="1 completed"):
        real_server.server_rate(ended("2026-12-03T15:00:00.000Z") + [{"status": "RUNNING"}])
    with pytest.raises(ValueError, match="same millisecond"):
        real_server.server_rate(ended("2026-12-03T15:00:00.000Z", "2026-12-03T15:00:00.000Z"))


def test_pickup_is_start_minus_scheduled_of_the_first_task() -> None:
    wfs = [
        {"workflowId": "a", "tasks": [{"scheduledTime": 1_000, "startTime": 1_042}]},
        {"workflowId": "b", "tasks": [{"scheduledTime": 5_000, "startTime": 5_100}]},
    ]
    assert real_server.pickups_ms(wfs) == [42.0, 100.0]
    with pytest.raises(ValueError, match="workflow c: its task never started"):
        real_server.pickups_ms([{"workflowId": "c", "status": "RUNNING", "tasks": [{"scheduledTime": 1}]}])


def test_peak_rss_above_the_baseline_is_judged_against_six_payloads() -> None:
    verdict = payloads.excess({"peak_rss_mb": 20.0}, {"peak_rss_mb": 60.0})
    assert verdict["above_baseline_mb"] == pytest.approx(40.0)
    assert verdict["target_mb"] == pytest.approx(48.0)
    assert verdict["target_met"]
    assert not payloads.excess({"peak_rss_mb": 20.0}, {"peak_rss_mb": 70.0})["target_met"]


def test_an_echo_run_whose_payload_stayed_inline_is_refused() -> None:
    counts = {"externalized_inputs": 3, "external_reads": 3, "external_writes": 3}
    payloads.check_external("echo", 3, counts)
    with pytest.raises(RuntimeError, match="external_writes: 0 for 3 tasks"):
        payloads.check_external("echo", 3, {**counts, "external_writes": 0})
    payloads.check_external("noop", 3, {})


def test_the_dev_server_counters_are_diffed_per_run() -> None:
    before = {"external_reads": 2, "external_writes": 1, "externalized_inputs": 2, "tasks": {}}
    now = {"external_reads": 5, "external_writes": 4, "externalized_inputs": 5, "externalized_outputs": 0}
    assert payloads.payload_counts(before, now) == {
        "externalized_inputs": 3,
        "external_reads": 3,
        "external_writes": 3,
        "externalized_outputs": 0,
    }


def test_the_python_worker_program_echoes_an_externalized_input(tmp_path: Path) -> None:
    """``--work echo`` end to end on the payload scenario's dev server: a 4 MiB input (above the
    3,072 KB threshold, so stored externally) comes back as the task's output, uploaded."""
    import run

    program = next(p for p in run.programs() if p.key == "py-sync")
    assert program.not_run is None, program.not_run
    server = run.DevServer(tmp_path, "payload", payloads.SERVER_ARGS)
    worker = None
    try:
        server.json(
            "POST",
            "/api/metadata/workflow",
            {
                "name": "echo_wf",
                "version": 1,
                "ownerEmail": "bench@example.com",
                "tasks": [
                    {
                        "name": "echo_t",
                        "taskReferenceName": "t",
                        "type": "SIMPLE",
                        "inputParameters": {"data": "${workflow.input.data}"},
                    }
                ],
            },
        )
        worker = run.WorkerProcess(program, ["echo_t"], 1, "echo", [server], tmp_path)
        worker.wait_ready([server])
        data = "0123456789abcdef" * (4 * 2**20 // 16)
        _, body = server.request("POST", "/api/workflow", {"name": "echo_wf", "version": 1, "input": {"data": data}})
        wid = body.decode().strip('"')
        deadline = time.monotonic() + 60
        while (task := server.json("GET", f"/api/workflow/{wid}")["tasks"][0])["status"] != "COMPLETED":
            assert task["status"] in ("SCHEDULED", "IN_PROGRESS"), task.get("reasonForIncompletion")
            assert time.monotonic() < deadline, "the echo task did not complete in 60 s"
            time.sleep(0.05)
        assert task.get("externalInputPayloadStoragePath"), "the input was not stored externally"
        key = task.get("externalOutputPayloadStoragePath")
        assert key, "the 4 MiB output was not uploaded"
        assert server.json("GET", f"/api/external/{key}") == {"data": data}
    finally:
        if worker is not None:
            worker.stop()
        server.stop()
