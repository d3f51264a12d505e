"""The options come from the core's one table: the generated ``_options`` module is current,
every option reaches the core by its name from ``@worker`` and ``Runner``, and a bad or unknown
one is refused at once, naming it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import conductor_worker as cw
import pytest
from conductor_worker import _native, _options
from conductor_worker.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "generate_python_options", ROOT / "scripts/generate_python_options.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_generated_options_module_is_current() -> None:
    expected = _generator().render(_native.option_tables())
    actual = Path(_options.__file__).read_text()
    assert actual == expected, "run .venv/bin/python scripts/generate_python_options.py"


def test_every_option_of_the_core_is_typed() -> None:
    tables = _native.option_tables()
    assert set(_options.WorkerOptions.__annotations__) == {o["name"] for o in tables["worker"]}
    assert set(_options.RuntimeOptions.__annotations__) == {o["name"] for o in tables["runtime"]}


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"poll_timeout": 9}, "poll_timeout"),
        ({"poll_interval": "soon"}, "poll_interval"),
        ({"register": 3}, "register"),
        ({"concurency": 2}, "concurency"),
    ],
)
def test_a_bad_worker_option_is_refused_when_decorating(options: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named) as caught:
        cw.worker("options_check", **options)(lambda: None)  # type: ignore[arg-type]
    assert "options_check" in str(caught.value)


def _noop() -> None:
    return None


def test_a_bad_runtime_option_is_refused_at_start() -> None:
    spec = cw.WorkerSpec("options_runtime_check", _noop)
    for options, named in [({"metrics_port": 70000}, "70000"), ({"breaker_failure": 2}, "breaker_failure")]:
        runner = cw.Runner([spec], servers="http://127.0.0.1:1/api", **options)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match=named):
            runner.start()


def test_options_reach_the_core_by_name() -> None:
    runtime = _native.Runtime({"servers": ["http://127.0.0.1:1/api"], "request_timeout": 2})
    worker = runtime.add_worker(
        "options_reach", {"concurrency": 3, "poll_interval": 0.25, "poll_timeout": 2, "domain": "blue"}
    )
    assert (worker.concurrency, worker.poll_interval, worker.poll_timeout, worker.domain) == (3, 0.25, 2.0, "blue")
    assert runtime.status()["servers"] == ["http://127.0.0.1:1/api"]


def test_the_readme_documents_every_worker_option() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| prop | default | meaning |") :].split("\n\n")[0]
    for option in _native.option_tables()["worker"]:
        assert any(f"`{name}`" in table for name in option["env"]), f"README's table lacks {option['name']}"
