"""pytest fixtures for any test suite under tests/ (contract, Python workers, ...):

    from tools.fixtures import conductor_server_fixture, devserver_fixture  # in a conftest.py
    pytest_terminal_summary = tools.fixtures.pytest_terminal_summary          # optional

``conductor_server_fixture`` starts one real Conductor server per session (see
``conductor_server.py``); when the jar or Java cannot be had, it skips the tests that use it and
records why, and ``pytest_terminal_summary`` then ends the output with
``real Conductor server tier NOT RUN: <why>``; the reason is also written to the file named by
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

NOT_RUN: list[str] = []  # why the real-server tier did not run, if it did not
FIGURES: dict[str, float] = {}  # the real server's startup seconds and RSS, for the summary


def _record_not_run(why: str) -> None:
    if why not in NOT_RUN:
        NOT_RUN.append(why)
    path = os.environ.get("CONDUCTOR_NOT_RUN_FILE")
    if path:
        Path(path).write_text(why + "\n")


@pytest.fixture(scope="session")
def conductor_server_fixture() -> Iterator[ConductorServer]:
    """One real Conductor server for the session; skipped (loudly) when it cannot run here."""
    if NOT_RUN:
        pytest.skip(f"real Conductor server tier NOT RUN: {NOT_RUN[0]}")
    try:
        server = ConductorServer()
    except NotAvailable as e:
        _record_not_run(str(e))
        pytest.skip(f"real Conductor server tier NOT RUN: {e}")
    if server.pid is not None:  # not a reused server
        FIGURES["startup_s"] = server.startup_seconds
    try:
        yield server
    finally:
        if server.pid is not None:
            FIGURES["rss_mib"] = server.rss_mb()
        server.stop()


@pytest.fixture(scope="session")
def devserver_fixture() -> Iterator[DevServer]:
    """One dev server (default flags) for the session."""
    server = DevServer()
    try:
        yield server
    finally:
        server.stop()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.write_line(
            f"real Conductor server: healthy after {FIGURES.get('startup_s', 0):.1f} s, "
            f"RSS at the end {FIGURES.get('rss_mib', 0):.0f} MiB"
        )
    if NOT_RUN:
        terminalreporter.write_line(f"real Conductor server tier NOT RUN: {NOT_RUN[0]}", red=True, bold=True)
