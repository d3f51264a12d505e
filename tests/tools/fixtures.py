"""pytest fixtures for any test suite under tests/ (contract, Python workers, ...):

    from tools.fixtures import conductor_server_fixture, devserver_fixture  # in a conftest.py
    pytest_terminal_summary = tools.fixtures.pytest_terminal_summary          # optional

``conductor_server_fixture`` starts one real Conductor server on SQLite per session,
``conductor_postgres_server_fixture`` one on its own PostgreSQL cluster (see
``conductor_server.py``); when the jar, Java or PostgreSQL cannot be had, the fixture skips the
tests that use it and records why, and ``pytest_terminal_summary`` then ends the output with
``real Conductor server tier NOT RUN: <why>`` (``real Conductor server (postgres) tier NOT RUN:
<why>`` for the second); the reason is also written to the file named by
``$CONDUCTOR_NOT_RUN_FILE`` so a wrapper script can repeat it at the very end of its output.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tools.conductor_server import ConductorServer, NotAvailable
from tools.devserver import DevServer

TIER = {"sqlite": "real Conductor server", "postgres": "real Conductor server (postgres)"}
NOT_RUN: dict[str, str] = {}  # backend -> why its real-server tier did not run
FIGURES: dict[str, dict[str, float]] = {}  # backend -> the real server's startup seconds and RSS


def _record_not_run(backend: str, why: str) -> None:
    NOT_RUN.setdefault(backend, why)
    path = os.environ.get("CONDUCTOR_NOT_RUN_FILE")
    if path:
        Path(path).write_text(why + "\n")


def _real_server(backend: str) -> Iterator[ConductorServer]:
    if backend in NOT_RUN:
        pytest.skip(f"{TIER[backend]} tier NOT RUN: {NOT_RUN[backend]}")
    try:
        server = ConductorServer(backend=backend)
    except NotAvailable as e:
        _record_not_run(backend, str(e))
        pytest.skip(f"{TIER[backend]} tier NOT RUN: {e}")
    figures = FIGURES.setdefault(backend, {})
    if server.pid is not None:  # not a reused server
        figures["startup_s"] = server.startup_seconds
    try:
        yield server
    finally:
        if server.pid is not None:
            figures["rss_mib"] = server.rss_mb()
        server.stop()


@pytest.fixture(scope="session")
def conductor_server_fixture() -> Iterator[ConductorServer]:
    """One real Conductor server on SQLite for the session; skipped (loudly) when it cannot run here."""
    yield from _real_server("sqlite")


@pytest.fixture(scope="session")
def conductor_postgres_server_fixture() -> Iterator[ConductorServer]:
    """One real Conductor server on a private PostgreSQL cluster for the session; skipped (loudly)
    when it cannot run here."""
    yield from _real_server("postgres")


@pytest.fixture(scope="session")
def devserver_fixture() -> Iterator[DevServer]:
    """One dev server (default flags) for the session."""
    server = DevServer()
    try:
        yield server
    finally:
        server.stop()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for backend, figures in FIGURES.items():
        if figures:
            terminalreporter.write_line(
                f"{TIER[backend]}: healthy after {figures.get('startup_s', 0):.1f} s, "
                f"RSS at the end {figures.get('rss_mib', 0):.0f} MiB"
            )
    for backend, why in NOT_RUN.items():
        terminalreporter.write_line(f"{TIER[backend]} tier NOT RUN: {why}", red=True, bold=True)
