"""Every implementation of each port (``ocigate.store.ports``), for the contract tests: a
fixture makes a store and, on the same backend, another instance (another worker or replica)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from ocigate.store.embedded.blobstore import LocalBlobStore
from ocigate.store.embedded.gc_lock import FileLock
from ocigate.store.embedded.metadata import SqliteMetadata
from ocigate.store.memory.blobstore import MemoryBlobStore
from ocigate.store.memory.metadata import InMemoryMetadata
from ocigate.store.objects.ledger import ObjectLedger
from ocigate.store.ports import BlobStore, MetadataStore
from ocigate.store.postgres.database import Database
from ocigate.store.postgres.ledger import PostgresLedger
from ocigate.store.postgres.metadata import PostgresMetadata
from ocigate.store.postgres.migrate import migrate
from parts.postgres import postgres_server, postgres_url

__all__ = ["postgres_server", "postgres_url"]  # fixtures for the tests below

BlobStores = Callable[[], BlobStore]
MetadataStores = Callable[[], MetadataStore]
Ledgers = Callable[[], Awaitable[ObjectLedger]]


@pytest.fixture(params=["files", "memory"])
async def blob_stores(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStores:
    """Makes instances of one blob store: each a new instance on the same backend (the memory
    store has one instance per backend, so it is returned again)."""
    if request.param == "files":
        return lambda: LocalBlobStore(tmp_path)
    memory = MemoryBlobStore()
    return lambda: memory


@pytest.fixture
def blob_store(blob_stores: BlobStores) -> BlobStore:
    return blob_stores()


async def replicas(url: str, count: int) -> list[Database]:
    """``count`` pools on one migrated database: what as many replicas would hold."""
    databases = [await Database.connect(url, pool_size=4) for _ in range(count)]
    await migrate(databases[0])
    return databases


@pytest.fixture(params=["sqlite", "memory", "postgres"])
async def metadata_stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[MetadataStores]:
    """As ``blob_stores``, for metadata stores; all are closed after the test. PostgreSQL's
    instances (at most two a test) are replicas: each on a pool of its own."""
    made: list[MetadataStore] = []
    pools: list[Database] = []
    if request.param == "postgres":
        pools = await replicas(request.getfixturevalue("postgres_url"), 2)

    def make() -> MetadataStore:
        if request.param == "postgres":
            made.append(PostgresMetadata(pools[len(made)]))
        elif request.param == "sqlite":
            made.append(SqliteMetadata(tmp_path / "meta.db", FileLock(tmp_path / "gc.lock")))
        elif not made:
            made.append(InMemoryMetadata())
        return made[-1]

    yield make
    for store in made:
        await store.close()
    for db in pools[len(made) :]:
        await db.close()


@pytest.fixture
def metadata(metadata_stores: MetadataStores) -> MetadataStore:
    return metadata_stores()


@pytest.fixture(params=["postgres"])
async def ledgers(request: pytest.FixtureRequest) -> AsyncIterator[Ledgers]:
    """Makes instances of one object ledger, each as another replica would hold it."""
    pools: list[Database] = []
    url = request.getfixturevalue("postgres_url")  # set up first, so torn down last

    async def make() -> ObjectLedger:
        pools.extend(await replicas(url, 1))
        return PostgresLedger(pools[-1])

    yield make
    for db in pools:
        await db.close()


@pytest.fixture
async def ledger(ledgers: Ledgers) -> ObjectLedger:
    return await ledgers()
