"""A migrated database per test, on the session's PostgreSQL (``parts.postgres``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ocigate.store.postgres.database import Database
from ocigate.store.postgres.migrate import migrate


@pytest.fixture
async def db(postgres_url: str) -> AsyncIterator[Database]:
    database = await Database.connect(postgres_url, connect_timeout=1.0, command_timeout=2.0)
    await migrate(database)
    yield database
    await database.close()
