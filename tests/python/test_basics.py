"""The package as installed, the decorator and run loop, and errors a user sees."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import conductor_worker
import pytest
from conductor_worker import ConfigError, NotRunningError, Runner, Server, worker

from conftest import Dev, unique, wait_for

FAST = {"poll_timeout": 0.2, "poll_interval": 0.05}


def test_the_installed_package_is_typed_and_abi3() -> None:
    package = Path(conductor_worker.__file__).parent
    assert (package / "py.typed").is_file()
    assert (package / "_native.pyi").is_file()
    native = [p.name for p in package.iterdir() if p.name.startswith("_native") and p.suffix in (".so", ".pyd")]
    assert native and all(".abi3." in n for n in native), native
    for name in ("worker", "run", "Runner", "TaskInProgress", "NonRetryableError", "current_task"):
        assert name in conductor_worker.__all__


def test_a_decorated_function_completes_its_tasks(dev: Dev) -> None:
    task_type = unique("greet")

    @worker(task_type, concurrency=10, **FAST)
    def greet(name: str, times: int = 1) -> dict:
        return {"greeting": " ".join([f"hello {name}"] * times)}

    # The function is returned unchanged: still callable directly.
    assert greet("x") == {"greeting": "hello x"}
    ids = dev.run_tasks(task_type, [{"name": "Ada", "times": 2}, {"name": "Bo"}])
    with Runner([greet], servers=[dev.api_url], journal="off"):
        first, second = (dev.task_of(i) for i in ids)
    assert first["status"] == "COMPLETED", first
    assert first["outputData"] == {"greeting": "hello Ada hello Ada"}
    assert second["outputData"] == {"greeting": "hello Bo"}


def test_run_reads_the_server_from_the_environment_and_drains_on_sigterm(dev: Dev, tmp_path: Path) -> None:
    task_type = unique("env")
    ids = dev.run_tasks(task_type, [{"n": 1}])
    script = tmp_path / "w.py"
    script.write_text(
        textwrap.dedent(f"""
        from conductor_worker import run, worker

        @worker("{task_type}", poll_timeout=0.2)
        def double(n: int) -> int:
            print("ran", flush=True)
            return n * 2

        run(journal="off")
        print("exited cleanly", flush=True)
        """)
    )
    env = {**os.environ, "CONDUCTOR_SERVER_URL": dev.api_url}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ran"
        assert dev.task_of(ids[0])["outputData"] == {"result": 2}
        proc.terminate()
        out, _ = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert "exited cleanly" in out


def test_invalid_settings_raise_config_error_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    @worker(unique("cfg"))
    def f() -> None: ...

    with pytest.raises(ConfigError) as e:
        Runner([f], servers=["localhost:8080"], journal="off").start()
    assert isinstance(e.value, ValueError)
    assert e.value.setting == "server url" and "localhost:8080" in str(e.value)

    monkeypatch.setenv("CONDUCTOR_WORKER_ALL_THREAD_COUNT", "many")
    with pytest.raises(ConfigError, match="CONDUCTOR_WORKER_ALL_THREAD_COUNT"):
        Runner([f], servers=["http://127.0.0.1:9/api"], journal="off").start()

    monkeypatch.delenv("CONDUCTOR_SERVER_URL", raising=False)
    with pytest.raises(ConfigError, match="CONDUCTOR_SERVER_URL"):
        Runner([f], journal="off").start()


def test_runner_control_start_once_health_join_and_context_manager(dev: Dev) -> None:
    task_type = unique("ctl")

    @worker(task_type, concurrency=3, **FAST)
    def f() -> None: ...

    runner = Runner([f], servers=[Server(dev.api_url)], journal="off")
    assert runner.health() == [] and runner.state == "created"
    runner.start()
    with pytest.raises(NotRunningError):
        runner.start()
    [health] = wait_for(
        lambda: (h := runner.health()) and h[0]["last_successful_poll"] and h[0]["idle_executors"] == 3 and h,
        5,
        "a poll, and every executor waiting",
    )
    assert health["task_type"] == task_type and health["state"] == "running"
    assert runner.is_healthy()
    assert not runner.join(0.1)
    stopper = threading.Thread(target=runner.stop)
    stopper.start()
    assert runner.join(10)
    stopper.join()
    assert runner.state == "stopped"
    assert runner.health()[0]["state"] == "stopped"
    # stop and kill after stop are harmless.
    assert runner.stop().abandoned_tasks == 0
    runner.kill()


def test_kill_does_not_wait_for_running_tasks(dev: Dev) -> None:
    task_type = unique("kill")
    started = threading.Event()

    @worker(task_type, **FAST)
    def slow() -> None:
        started.set()
        time.sleep(3)

    dev.enqueue(task_type, 1)
    runner = Runner([slow], servers=[dev.api_url], journal="off")
    runner.start()
    assert started.wait(10)
    t0 = time.monotonic()
    report = runner.kill()
    assert time.monotonic() - t0 < 2
    assert report.abandoned_tasks == 1


def _runtime_imports(tree: ast.AST) -> list[ast.stmt]:
    """The imports a module runs: those under ``if TYPE_CHECKING:`` only the type checker does."""
    type_checking = {
        id(node)
        for branch in ast.walk(tree)
        if isinstance(branch, ast.If) and isinstance(branch.test, ast.Name) and branch.test.id == "TYPE_CHECKING"
        for statement in branch.body
        for node in ast.walk(statement)
    }
    return [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) and id(n) not in type_checking]


def test_the_package_needs_nothing_beyond_the_standard_library() -> None:
    # pydantic is used when the program has it, never imported by the package itself.
    package = Path(conductor_worker.__file__).parent
    for source in package.glob("*.py"):
        for node in _runtime_imports(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                roots = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots = [node.module.split(".")[0]]
            else:
                continue
            for root in roots:
                assert root in sys.stdlib_module_names or root == "conductor_worker", (source.name, root)
