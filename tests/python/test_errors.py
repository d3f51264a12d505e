"""Core errors reach Python as data: one exception class per kind the core declares, with
each of the kind's fields as an attribute; and a real error arrives with its fields set."""

from __future__ import annotations

import pytest
from conductor_worker import _native, errors


@pytest.mark.parametrize(("kind", "fields"), _native.error_kinds())
def test_every_core_error_kind_has_a_class_with_its_fields(kind: str, fields: list[str]) -> None:
    cls = getattr(errors, kind)
    assert issubclass(cls, errors.ConductorWorkerError)
    for name in [*fields, "retryable"]:
        assert hasattr(cls, name), f"{kind} has no attribute {name}"


def test_a_core_error_arrives_with_its_fields() -> None:
    with pytest.raises(errors.ConfigError) as caught:
        _native.check_worker_options("t", {"concurrency": 0})
    assert (caught.value.setting, caught.value.value, caught.value.retryable) == (
        'worker "t" option concurrency',
        "0",
        False,
    )
