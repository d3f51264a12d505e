"""The release artifacts in dist/ (scripts/dist.sh), installed the way users install them.

The wheel goes into a fresh venv of every CPython pyenv has here (3.9 to 3.13) and the platform
gem into a fresh GEM_HOME, each with a PATH that holds no cargo, rustc or C compiler; each then
starts the dev server from its own bin/ and completes a workflow. The sdist and the source gem
are built from source the way pip and gem do where a toolchain exists.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "dist"
PROGRAMS = Path(__file__).parent / "programs"
PYTHONS = ("3.9", "3.10", "3.11", "3.12", "3.13")
TOOLCHAIN = ("cargo", "rustc", "rustup", "cc", "gcc", "c++", "g++", "clang", "zig")
LISTENING = "conductor-devserver listening on "
VERSION = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]["version"]


def artifact(pattern: str) -> Path:
    found = sorted(DIST.glob(pattern))
    if len(found) != 1:
        pytest.fail(f"expected one dist/{pattern}, found {[p.name for p in found]}: run scripts/dist.sh")
    return found[0]


def run(args: list[str | Path], env: dict[str, str], timeout: float = 120) -> str:
    """Runs a program to its end; its stdout, or the test fails with both of its outputs."""
    done = subprocess.run([str(a) for a in args], check=False, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        pytest.fail(f"{args} exited {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}")
    return done.stdout


def without_toolchain(tmp_path: Path, *programs: str) -> dict[str, str]:
    """An environment whose PATH holds only ``programs`` (symlinked), so nothing can compile."""
    bare = tmp_path / "bare-bin"
    bare.mkdir()
    for program in programs:
        found = shutil.which(program)
        assert found, f"{program} is not installed"
        (bare / program).symlink_to(found)
    env = {"PATH": str(bare), "HOME": str(tmp_path), "LANG": "C.UTF-8", "TMPDIR": str(tmp_path)}
    present = [tool for tool in TOOLCHAIN if shutil.which(tool, path=env["PATH"])]
    assert not present, f"the PATH still has {present}"
    return env


def with_bin_first(env: dict[str, str], bin_dir: Path) -> dict[str, str]:
    return {**env, "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}"}


def pyenv_python(minor: str) -> Path:
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = sorted(root.glob(f"{minor}.*/bin/python{minor}"), key=lambda p: [int(x) for x in p.parts[-3].split(".")])
    if not found:
        pytest.fail(f"CPython {minor} is not installed under {root} (pyenv install {minor})")
    return found[-1]


@contextmanager
def devserver(executable: Path, env: dict[str, str]) -> Iterator[str]:
    """Starts the installed ``conductor-devserver``; yields its API URL; SIGTERM must stop it (exit 0)."""
    t0 = time.perf_counter()
    process = subprocess.Popen(
        [str(executable), "--port", "0"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    started = time.perf_counter() - t0
    try:
        assert line.startswith(LISTENING), f"{executable} did not start: {line!r} {process.stderr.read()!r}"
        print(f"{executable.name} from {executable.parent}: listening after {started * 1000:.0f} ms")
        yield line[len(LISTENING) :].strip() + "/api"
    finally:
        process.send_signal(signal.SIGTERM)
        status = process.wait(timeout=10)
    assert status == 0, f"{executable} exited {status} on SIGTERM"


def fresh_venv(python: Path, tmp_path: Path, env: dict[str, str]) -> Path:
    venv = tmp_path / "venv"
    run([python, "-m", "venv", venv], env)
    return venv


@pytest.mark.parametrize("minor", PYTHONS)
def test_the_wheel_runs_a_workflow_on_every_cpython_without_a_toolchain(minor: str, tmp_path: Path) -> None:
    wheel = artifact("conductor_worker-*-cp39-abi3-manylinux*_x86_64.whl")
    env = without_toolchain(tmp_path)
    venv = fresh_venv(pyenv_python(minor), tmp_path, env)
    t0 = time.perf_counter()
    run([venv / "bin/python", "-m", "pip", "install", "-q", "--no-index", "--disable-pip-version-check", wheel], env)
    print(f"CPython {minor}: pip install of {wheel.name} took {time.perf_counter() - t0:.2f} s")
    env = with_bin_first(env, venv / "bin")
    with devserver(venv / "bin/conductor-devserver", env) as api:
        result = json.loads(run([venv / "bin/python", PROGRAMS / "workflow.py", api], env).splitlines()[-1])
    print(f"CPython {minor}: import conductor_worker took {result['import_seconds'] * 1000:.0f} ms")
    assert result["status"] == "COMPLETED", result
    assert result["output"]["text"] == "[HELLO]", result
    assert result["output"]["python"].startswith(f"{minor}."), result
    assert result["version"] == VERSION, result


def install_gem(gem: Path, env: dict[str, str], timeout: float = 120) -> str:
    """``gem install`` of a local gem file; what it printed on both outputs."""
    args = ["gem", "install", "--local", "--no-document", str(gem)]
    done = subprocess.run(
        args, check=False, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout
    )
    if done.returncode != 0:
        pytest.fail(f"{args} exited {done.returncode}: {done.stdout}")
    return done.stdout


def gem_env(tmp_path: Path, env: dict[str, str]) -> dict[str, str]:
    home = tmp_path / "gems"
    # GEM_PATH alone: the gems installed on this machine (say, a source gem) stay out of sight.
    return {**env, "GEM_HOME": str(home), "GEM_PATH": str(home)}


def test_the_platform_gem_runs_a_workflow_without_a_toolchain(tmp_path: Path) -> None:
    gem = artifact("conductor-worker-*-x86_64-linux.gem")
    env = gem_env(tmp_path, without_toolchain(tmp_path, "ruby", "gem"))
    t0 = time.perf_counter()
    out = install_gem(gem, env)
    print(f"gem install of {gem.name} took {time.perf_counter() - t0:.2f} s")
    assert "Building native extensions" not in out, out
    home = Path(env["GEM_HOME"])
    assert not any((home / "extensions").glob("**/*.so")), "the platform gem compiled an extension"
    with devserver(home / "bin/conductor-devserver", env) as api:
        result = json.loads(run(["ruby", PROGRAMS / "workflow.rb", api], env).splitlines()[-1])
    print(f"Ruby: require 'conductor_worker' took {result['require_seconds'] * 1000:.0f} ms")
    assert result["status"] == "COMPLETED", result
    assert result["output"]["text"] == "HELLO", result
    assert result["version"] == VERSION, result
    minor = ".".join(result["output"]["ruby"].split(".")[:2])
    assert result["extension"].startswith(str(home)), result
    assert result["extension"].endswith(f"/conductor_worker/{minor}/conductor_worker_ruby.so"), result


def test_the_platform_gem_names_the_rubies_it_supports_on_another_ruby(tmp_path: Path) -> None:
    env = gem_env(tmp_path, without_toolchain(tmp_path, "ruby", "gem"))
    install_gem(artifact("conductor-worker-*-x86_64-linux.gem"), env)
    (native,) = Path(env["GEM_HOME"]).glob("gems/conductor-worker-*/**/conductor_worker/[0-9]*.[0-9]*")
    native.rename(native.with_name("9.9"))  # as if this Ruby were one the gem has no extension for
    done = subprocess.run(
        ["ruby", "-e", 'require "conductor_worker"'], check=False, env=env, capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "prebuilt extension for Ruby 9.9" in done.stderr, done.stderr
    assert "install the source gem" in done.stderr, done.stderr


def test_the_sdist_builds_the_same_package_with_a_toolchain(tmp_path: Path) -> None:
    sdist = artifact("conductor_worker-*.tar.gz")
    wheel = artifact("conductor_worker-*-cp39-abi3-manylinux*_x86_64.whl")
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    # The cargo build tree outlives the test (pip builds in a temporary copy of the sdist).
    env["MATURIN_PEP517_ARGS"] = f"--target-dir {ROOT / 'target/sdist'}"
    venv = fresh_venv(Path(sys.executable), tmp_path, env)
    run([venv / "bin/python", "-m", "pip", "install", "-q", sdist], env, timeout=900)
    installed = run([venv / "bin/python", "-c", "import conductor_worker; print(conductor_worker.__version__)"], env)
    assert installed.strip() == VERSION
    assert run([venv / "bin/conductor-devserver", "--version"], env).split() == ["conductor-devserver", VERSION]
    assert package_files(venv) == wheel_files(wheel)


def package_files(venv: Path) -> set[str]:
    (record,) = venv.glob("lib/python*/site-packages/conductor_worker-*.dist-info/RECORD")
    names = (row.split(",")[0] for row in record.read_text().splitlines())
    return {name for name in names if name.startswith("conductor_worker/") and "/__pycache__/" not in name}


def wheel_files(wheel: Path) -> set[str]:
    import zipfile

    with zipfile.ZipFile(wheel) as z:
        return {name for name in z.namelist() if name.startswith("conductor_worker/")}


def test_the_source_gem_builds_the_extension_with_a_toolchain(tmp_path: Path) -> None:
    gem = artifact(f"conductor-worker-{VERSION}.gem")
    env = gem_env(tmp_path, dict(os.environ))
    env["CARGO_TARGET_DIR"] = str(ROOT / "target/ruby")  # extconf.rb keeps the build tree there
    out = install_gem(gem, env, timeout=900)
    assert "Building native extensions" in out, out
    script = 'require "conductor_worker"; puts ConductorWorker::VERSION, $LOADED_FEATURES.grep(/conductor_worker_ruby/)'
    loaded = run(["ruby", "-e", script], env).split()
    assert loaded[0] == VERSION
    assert loaded[1].startswith(env["GEM_HOME"]) and "/conductor_worker/3." not in loaded[1], loaded
    version = run([Path(env["GEM_HOME"]) / "bin/conductor-devserver", "--version"], env)
    assert version.split() == ["conductor-devserver", VERSION]
