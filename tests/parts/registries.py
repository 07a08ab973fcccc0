"""Fixtures for the tests that drive registries on loopback: ``distribution``, a fresh Debian
distribution 2.8.2 per test, and ``http``, a plain client. Consumers import the fixtures into
their conftest: ``from parts.registries import distribution, http``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from e2e.support import ServerProcess, distribution_server


@pytest.fixture
def distribution(tmp_path: Path) -> Iterator[ServerProcess]:
    """A fresh distribution 2.8.2 (filesystem storage, deletes enabled) for one test."""
    server = distribution_server(tmp_path / "dist", tmp_path / "dist.log").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30.0) as client:
        yield client
