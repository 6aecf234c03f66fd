"""Fixtures for the server tests: a started server subprocess (always killed at the end) and a client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_helpers import ServerProcess

from protocol.client import Client


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[ServerProcess] = []

    def make(*extra: str, data_dir: Path | None = None, workers: int = 2) -> ServerProcess:
        server = ServerProcess(data_dir or tmp_path / "data", *extra, workers=workers)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server per test module, for tests that do not depend on what else ran on it (a server
    that keeps serving after other tests' kills, cancels and garbage is itself the point)."""
    shared = ServerProcess(tmp_path_factory.mktemp("shared") / "data").start()
    yield shared
    shared.stop()


@pytest.fixture
def fresh_server(server_factory: Any) -> ServerProcess:
    """A server of this test's own, for tests that count or list every job."""
    return server_factory()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[Client]:
    with server.client() as c:
        yield c
