"""What a task function's return value, exception or TaskInProgress does to its task, how
input maps to parameters, and what current_task() gives."""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import pydantic
import pytest
from conductor_worker import NonRetryableError, Runner, Task, TaskInProgress, current_task, worker
from conductor_worker.mapping import Binder, InputMismatch

from conftest import Dev, unique

FAST = {"poll_timeout": 0.2, "poll_interval": 0.05}


def test_task_in_progress_calls_back_and_then_completes(dev: Dev) -> None:
    task_type = unique("progress")

    @worker(task_type, **FAST)
    def long_job() -> dict:
        ctx = current_task()
        if ctx.poll_count < 2:
            raise TaskInProgress(callback_after_seconds=1, output={"step": ctx.poll_count})
        return {"done": True, "polls": ctx.poll_count}

    [wf] = dev.run_tasks(task_type, [{}])
    with Runner([long_job], servers=[dev.api_url], journal="off"):
        task = dev.task_of(wf, within=20)
    assert task["status"] == "COMPLETED"
    assert task["outputData"]["done"] is True and task["outputData"]["polls"] == 2
    history = dev.root.get(f"/admin/tasks/{task['taskId']}/history").json()
    assert [u["status"] for u in history["updates"]] == ["IN_PROGRESS", "COMPLETED"]


def test_non_retryable_error_fails_for_good_other_exceptions_fail_with_reason_and_traceback(dev: Dev) -> None:
    task_type = unique("raise")

    @worker(task_type, **FAST)
    def fragile(kind: str) -> None:
        current_task().log("about to fail")
        if kind == "terminal":
            raise NonRetryableError("the account is closed")
        raise KeyError("missing-key")

    ids = dev.run_tasks(task_type, [{"kind": "terminal"}, {"kind": "retry"}])
    with Runner([fragile], servers=[dev.api_url], journal="off"):
        terminal, retry = (dev.task_of(i) for i in ids)
    assert terminal["status"] == "FAILED_WITH_TERMINAL_ERROR"
    assert terminal["reasonForIncompletion"] == "the account is closed"
    assert retry["status"] == "FAILED"
    assert retry["reasonForIncompletion"] == "KeyError: 'missing-key'"
    logs = dev.logs(retry["taskId"])
    assert logs[0] == "about to fail"
    assert any("Traceback" in line and "fragile" in line for line in logs), logs


def test_current_task_gives_ids_counts_and_logs_also_in_async_functions(dev: Dev) -> None:
    task_type = unique("ctx")

    @worker(task_type, concurrency=5, **FAST)
    async def describe() -> dict:
        await asyncio.sleep(0.01)
        ctx = current_task()
        ctx.log("step", 1)
        return {
            "task_id": ctx.task_id,
            "workflow_id": ctx.workflow_id,
            "retry": ctx.retry_count,
            "polls": ctx.poll_count,
            "type": ctx.task_type,
        }

    [wf] = dev.run_tasks(task_type, [{}])
    with Runner([describe], servers=[dev.api_url], journal="off"):
        task = dev.task_of(wf)
    out = task["outputData"]
    assert out == {"task_id": task["taskId"], "workflow_id": wf, "retry": 0, "polls": 1, "type": task_type}
    assert dev.logs(task["taskId"]) == ["step 1"]
    with pytest.raises(LookupError):
        current_task()


@dataclass
class Address:
    city: str
    zip: str | None = None


@dataclass
class Order:
    id: int
    address: Address
    tags: list[str] = field(default_factory=list)


class Customer(pydantic.BaseModel):
    name: str
    vip: bool = False


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass
class Receipt:
    order_id: int
    customer: str


def test_input_maps_to_dataclasses_models_and_the_output_back(dev: Dev) -> None:
    task_type = unique("typed")

    @worker(task_type, **FAST)
    def ship(order: Order, customer: Customer, color: Color, note: str | None = None) -> Receipt:
        assert isinstance(order.address, Address) and isinstance(customer, Customer)
        assert color is Color.RED and note is None
        return Receipt(order_id=order.id, customer=customer.name)

    order = {"id": 7, "address": {"city": "Lyon"}, "tags": ["a"]}
    ids = dev.run_tasks(
        task_type,
        [
            {"order": order, "customer": {"name": "Ada"}, "color": "red"},
            {"order": {"id": 8, "address": {}}, "customer": {"name": "Bo"}, "color": "red"},
            {"order": order, "customer": {"vip": True}, "color": "red"},
        ],
    )
    with Runner([ship], servers=[dev.api_url], journal="off"):
        ok, no_city, no_name = (dev.task_of(i) for i in ids)
    assert ok["status"] == "COMPLETED" and ok["outputData"] == {"order_id": 7, "customer": "Ada"}
    assert "input 'order'.address.city is missing" in no_city["reasonForIncompletion"]
    assert "input 'customer' does not fit Customer" in no_name["reasonForIncompletion"]


def test_a_single_task_parameter_receives_the_whole_task(dev: Dev) -> None:
    task_type = unique("whole")

    @worker(task_type, **FAST)
    def raw(task: Task) -> Any:
        return [task.task_id, task.input_data["x"], task.workflow_instance_id]

    [wf] = dev.run_tasks(task_type, [{"x": {"deep": [1, 2.5, None, True]}}])
    with Runner([raw], servers=[dev.api_url], journal="off"):
        task = dev.task_of(wf)
    assert task["outputData"] == {"result": [task["taskId"], {"deep": [1, 2.5, None, True]}, wf]}


def bind(func: Any, data: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    class FakeTask:
        input_data = data

    return Binder(func).bind(FakeTask())  # type: ignore[arg-type]


def test_mapping_rules() -> None:
    def f(a: int, b: float, c: list[int] | None = None, d: Literal["x", "y"] = "x", **rest: Any) -> None: ...

    assert bind(f, {"a": 1, "b": 2, "c": [3], "d": "y", "extra": 1}) == (
        [],
        {"a": 1, "b": 2.0, "c": [3], "d": "y", "extra": 1},
    )
    # null (a workflow input that was not given) leaves a parameter with a default to its default
    assert bind(f, {"a": 2.0, "b": 1.5, "d": None}) == ([], {"a": 2, "b": 1.5})
    for data, message in [
        ({"a": True, "b": 1}, "input 'a' should be an int, got bool True"),
        ({"a": 1, "b": "1"}, "input 'b' should be a number"),
        ({"a": 1, "b": 1, "c": [1, "2"]}, "input 'c'[1] should be an int"),
        ({"a": 1, "b": 1, "d": "z"}, "input 'd' should be one of ['x', 'y']"),
        ({"b": 1}, "input 'a' is missing"),
    ]:
        with pytest.raises(InputMismatch) as e:
            bind(f, data)
        assert message in str(e.value), (data, str(e.value))

    def untyped(x, y=3):  # type: ignore[no-untyped-def]
        ...

    assert bind(untyped, {"x": object}) == ([], {"x": object})


class _Sized(Protocol):
    def __len__(self) -> int: ...


@runtime_checkable
class _Named(Protocol):
    name: str


def test_protocol_parameters_are_checked_only_when_runtime_checkable() -> None:
    def f(items: _Sized, who: _Named) -> None: ...

    class Someone:
        name = "x"

    # A plain Protocol cannot be checked with isinstance: the value is passed as is (it used to
    # raise TypeError on every task, which failed no task and delivered no result).
    who = Someone()
    assert bind(f, {"items": [1, 2], "who": who}) == ([], {"items": [1, 2], "who": who})
    with pytest.raises(InputMismatch, match="'who' should be a _Named"):
        bind(f, {"items": [1], "who": 3})
