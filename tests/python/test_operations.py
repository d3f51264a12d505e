"""What an operator scrapes and probes: the queue depth gauge on the dev server and on the real
Conductor server, parsed the way Prometheus tooling parses it, and the probes of a paused
worker."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import pytest
from conductor_worker import Runner, worker
from prometheus_client.parser import text_string_to_metric_families

from conftest import Server, unique, wait_for


@pytest.fixture(params=["devserver", "conductor"])
def any_server(request: pytest.FixtureRequest) -> Server:
    if request.param == "devserver":
        return request.getfixturevalue("dev")
    real = request.getfixturevalue("conductor_server_fixture")
    return Server(real.api, real.url)


def scrape(runner: Runner, path: str = "/metrics") -> tuple[int, str]:
    addr = runner.metrics_addr
    assert addr is not None
    try:
        with urllib.request.urlopen(f"http://{addr[0]}:{addr[1]}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def queue_depth(text: str, task_type: str) -> float | None:
    family = families(text).get("task_queue_depth")
    samples = [s for s in family.samples if s.labels.get("taskType") == task_type] if family else []
    return samples[0].value if samples else None


def test_a_paused_workers_queue_depth_reads_what_waits_on_the_server(any_server: Server) -> None:
    task_type = unique("depth")

    @worker(task_type, paused=True)
    def never() -> None:
        raise AssertionError("a paused worker ran a task")

    any_server.run_tasks(task_type, [{} for _ in range(7)])
    with Runner([never], servers=[any_server.api_url], journal="off", metrics_port=0, queue_depth_interval=1) as r:
        wait_for(lambda: queue_depth(scrape(r)[1], task_type) == 7, 4, "task_queue_depth 7 (one interval)")
        parsed = families(scrape(r)[1])
        assert parsed["task_queue_depth"].type == "gauge"
        assert parsed["task_poll_time_seconds"].type == "histogram"
        assert parsed["task_poll"].type == "counter", "counters parse as counters"
        status, body = scrape(r, "/health/live")
        assert status == 200, body


def test_the_runtime_options_for_operations_are_refused_when_wrong() -> None:
    @worker(unique("opts"))
    def noop() -> None: ...

    with pytest.raises(Exception, match="metrics_host") as raised:
        Runner([noop], servers=["http://127.0.0.1:1/api"], metrics_host="not-an-ip").start()
    assert "expected an IP address" in str(raised.value)
