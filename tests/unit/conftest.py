"""Shared fixtures for the unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ocigate.store.embedded import EmbeddedStore


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
    """An embedded store in a fresh directory, closed after the test."""
    s = EmbeddedStore(tmp_path)
    yield s
    await s.close()
