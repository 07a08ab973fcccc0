"""Every implementation of each port (``ocigate.store.ports``), for the contract tests: a
fixture makes a store and, on the same backend, another instance (another worker or replica)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from ocigate.store.embedded.blobstore import LocalBlobStore
from ocigate.store.embedded.gc_lock import FileLock
from ocigate.store.embedded.metadata import SqliteMetadata
from ocigate.store.memory.blobstore import MemoryBlobStore
from ocigate.store.memory.metadata import InMemoryMetadata
from ocigate.store.ports import BlobStore, MetadataStore

BlobStores = Callable[[], BlobStore]
MetadataStores = Callable[[], MetadataStore]


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


@pytest.fixture(params=["sqlite", "memory"])
async def metadata_stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[MetadataStores]:
    """As ``blob_stores``, for metadata stores; all are closed after the test."""
    made: list[MetadataStore] = []

    def make() -> MetadataStore:
        if request.param == "sqlite":
            made.append(SqliteMetadata(tmp_path / "meta.db", FileLock(tmp_path / "gc.lock")))
        elif not made:
            made.append(InMemoryMetadata())
        return made[-1]

    yield make
    for store in made:
        await store.close()


@pytest.fixture
def metadata(metadata_stores: MetadataStores) -> MetadataStore:
    return metadata_stores()
