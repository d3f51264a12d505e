"""The installed-artifact scenario of the benchmark harness (``install``): what a user waits for
with the release artifacts of scripts/dist.sh. The wheel goes into a fresh venv and the platform
gem into a fresh GEM_HOME (``--no-index`` / ``--local``: the time is the install, not a download);
then ``import conductor_worker`` / ``require "conductor_worker"`` in a fresh process, and the time
from starting the installed ``conductor-devserver`` until it prints its URL. The Rust dev server
binary and conductor-python's import stand beside them for scale. Medians of ``runs`` rounds.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import run as h

DIST = h.ROOT / "dist"
STARTS = 5  # dev server starts and imports per round (each one is a few ms)
PY_IMPORT = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
RB_REQUIRE = (
    't = Process.clock_gettime(Process::CLOCK_MONOTONIC); require "conductor_worker"; '
    "puts Process.clock_gettime(Process::CLOCK_MONOTONIC) - t"
)


def scenarios(s: h.Settings) -> list[h.Scenario]:
    del s
    return [h.Scenario("install", "installing the release artifacts (dist/)", "install")]


def dist_file(pattern: str) -> Path:
    found = sorted(DIST.glob(pattern))
    if len(found) != 1:
        raise RuntimeError(f"expected one dist/{pattern}, found {len(found)}: run scripts/dist.sh")
    return found[0]


def timed(args: list[str], env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(args, env=env, check=True, capture_output=True, timeout=300)
    return time.perf_counter() - t0


def reported(args: list[str], env: dict[str, str] | None = None) -> float:
    """What the program printed last: the seconds it measured itself."""
    out = subprocess.run(args, env=env, check=True, capture_output=True, text=True, timeout=60).stdout
    return float(out.split()[-1])


def devserver_start(executable: Path, env: dict[str, str] | None = None) -> float:
    """Seconds from spawning ``executable --port 0`` until its URL line; then SIGTERM."""
    t0 = time.perf_counter()
    p = subprocess.Popen([str(executable), "--port", "0"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert p.stdout is not None
    line = p.stdout.readline()
    took = time.perf_counter() - t0
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=10)
    if b"listening on" not in line:
        raise RuntimeError(f"{executable} did not start: {line!r}")
    return took


def wheel_round(workdir: Path, n: int) -> dict[str, float]:
    venv = workdir / f"install-venv-{n}"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # pip from the harness's own venv installs into the new one: the venv's creation is not timed.
    install = timed([sys.executable, "-m", "pip", "--python", str(venv / "bin/python"), "install", "-q",
                     "--no-index", "--disable-pip-version-check", str(dist_file("conductor_worker-*.whl"))])  # fmt: skip
    python = str(venv / "bin/python")
    imports = [reported([python, "-c", PY_IMPORT.format(module="conductor_worker")]) for _ in range(STARTS)]
    starts = [devserver_start(venv / "bin/conductor-devserver") for _ in range(STARTS)]
    return {
        "install_s": install,
        "import_ms": 1000 * statistics.median(imports),
        "devserver_start_ms": 1000 * statistics.median(starts),
    }


def gem_round(workdir: Path, n: int) -> dict[str, float]:
    home = workdir / f"install-gems-{n}"
    env = {**os.environ, "GEM_HOME": str(home), "GEM_PATH": str(home)}
    gem = str(dist_file("conductor-worker-*-x86_64-linux.gem"))
    install = timed(["gem", "install", "--local", "--no-document", gem], env)
    requires = [reported(["ruby", "-e", RB_REQUIRE], env) for _ in range(STARTS)]
    starts = [devserver_start(home / "bin/conductor-devserver", env) for _ in range(STARTS)]
    return {
        "install_s": install,
        "import_ms": 1000 * statistics.median(requires),
        "devserver_start_ms": 1000 * statistics.median(starts),
    }


def references() -> dict[str, float]:
    """The Rust binary's start and conductor-python's import, when they are there."""
    out: dict[str, float] = {}
    binary = h.ROOT / "target/release/conductor-devserver"
    if binary.is_file():
        out["rust_devserver_start_ms"] = 1000 * statistics.median(devserver_start(binary) for _ in range(STARTS))
    peer = h.ROOT / "bench/.venv-peer/bin/python"
    if peer.is_file():
        module = "conductor.client.automator.task_handler"
        runs = [reported([str(peer), "-c", PY_IMPORT.format(module=module)]) for _ in range(STARTS)]
        out["peer_import_ms"] = 1000 * statistics.median(runs)
    return out


def run(sc: h.Scenario, settings: h.Settings, workdir: Path) -> None:
    for key, one_round in (("wheel", wheel_round), ("gem", gem_round)):
        try:
            runs = [one_round(workdir, n) for n in range(settings.runs)]
        except (RuntimeError, subprocess.SubprocessError, OSError) as e:
            sc.results[key] = {"error": f"failed: {' '.join(str(e).split())[:300]}"}
            h.log(f"install {key}: {sc.results[key]['error']}")
            continue
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        sc.results[key] = {"runs": runs, "median": med}
        h.log(
            f"install {key:5} {med['install_s']:.2f} s to install, import {med['import_ms']:.0f} ms, "
            f"dev server up in {med['devserver_start_ms']:.0f} ms"
        )
    sc.results["references"] = references()


def markdown(scs: list[h.Scenario]) -> list[str]:
    sc = next((s for s in scs if s.kind == "install"), None)
    if sc is None:
        return []
    lines = [
        "",
        f"## install: {sc.title}",
        "",
        (
            "Into a fresh venv (`pip install --no-index` of the wheel) or GEM_HOME (`gem install --local` of the "
            "platform gem); import or require in a fresh process; the installed `conductor-devserver` from start "
            "to its URL line. Medians."
        ),
        "",
        "| artifact | install s | import / require ms | dev server start ms |",
        "|---|---:|---:|---:|",
    ]
    for key, label in (("wheel", "Python wheel (CPython 3.11)"), ("gem", "Ruby platform gem (Ruby 3.1)")):
        result = sc.results.get(key, {"error": "not run"})
        if "error" in result:
            lines.append(h.reason_row(label, result["error"], 3))
            continue
        m = result["median"]
        lines.append(f"| {label} | {m['install_s']:.2f} | {m['import_ms']:.0f} | {m['devserver_start_ms']:.0f} |")
    refs = sc.results.get("references", {})
    if refs:
        lines += ["", "For scale: " + "; ".join(REFERENCE_TEXT[k].format(v) for k, v in refs.items()) + "."]
    return lines


REFERENCE_TEXT = {
    "rust_devserver_start_ms": "the Rust `conductor-devserver` binary starts in {:.0f} ms",
    "peer_import_ms": "conductor-python 2.0.0 imports its worker module in {:.0f} ms",
}
