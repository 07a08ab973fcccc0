"""Fixtures that run real registry processes on loopback for the end-to-end tests.

By default the tests drive ``ocigate serve --workers 2``.  With
``E2E_REGISTRY=distribution`` the same tests run against Debian's ``docker-registry``
instead (used to validate the harness; checks of features distribution 2.8 lacks are skipped in
that mode only). Not an ``OCIGATE_`` name: ocigate rejects those naming no setting, and the
processes these tests start inherit the environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from parts.registries import http

from .support import ServerProcess, distribution_server, ocigate_server

__all__ = ["http"]

REGISTRY_KIND = os.environ.get("E2E_REGISTRY", "ocigate")
if REGISTRY_KIND not in ("ocigate", "distribution"):
    raise pytest.UsageError(f"E2E_REGISTRY must be ocigate or distribution: {REGISTRY_KIND}")

ServerFactory = Callable[..., ServerProcess]


def new_server(
    data_dir: Path, log_path: Path, workers: int = 2, port: int | None = None
) -> ServerProcess:
    if REGISTRY_KIND == "distribution":
        return distribution_server(data_dir, log_path, port=port)
    return ocigate_server(data_dir, log_path, workers=workers, port=port)


@pytest.fixture(scope="session")
def registry_kind() -> str:
    return REGISTRY_KIND


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One shared server for the tests that only need a working registry."""
    root = tmp_path_factory.mktemp("registry")
    server = new_server(root / "data", root / "server.log", workers=2).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    """Create (not start) servers owned by one test; every one is stopped at teardown."""
    created: list[ServerProcess] = []

    def factory(data_dir: Path, workers: int = 2, port: int | None = None) -> ServerProcess:
        server = new_server(data_dir, tmp_path / f"server-{len(created)}.log", workers, port)
        created.append(server)
        return server

    yield factory
    for server in created:
        server.stop()


@pytest.fixture
def repo(request: pytest.FixtureRequest) -> str:
    """A repository name unique to the test (lowercase, valid per the distribution spec)."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    return f"e2e/{name}"
