"""Fixtures of the end-to-end tests: the real Conductor servers of ``tools.fixtures`` (one per
backend for the session, skipped and reported NOT RUN when they cannot run here) and dev servers
in each external storage mode (one per mode for the module)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tools.devserver import DevServer
from tools.fixtures import conductor_postgres_server_fixture, conductor_server_fixture
from tools.fixtures import pytest_terminal_summary as servers_summary

from .programs import NOT_RUN as PROGRAMS_NOT_RUN

__all__ = ["conductor_postgres_server_fixture", "conductor_server_fixture"]


def _devserver(mode: str) -> Iterator[DevServer]:
    server = DevServer("--external-storage", mode)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def devserver_upload() -> Iterator[DevServer]:
    """A dev server whose storage takes uploads (like S3 with presigned URLs)."""
    yield from _devserver("upload")


@pytest.fixture(scope="module")
def devserver_read_only() -> Iterator[DevServer]:
    """A dev server whose storage serves reads only (like the real server's postgres storage)."""
    yield from _devserver("read-only")


@pytest.fixture(scope="module")
def devserver_none() -> Iterator[DevServer]:
    """A dev server whose storage hands out no uris (like the real server's default storage)."""
    yield from _devserver("none")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    servers_summary(terminalreporter)
    for language, why in PROGRAMS_NOT_RUN.items():
        terminalreporter.write_line(f"end-to-end {language} worker not run: {why}", red=True, bold=True)
