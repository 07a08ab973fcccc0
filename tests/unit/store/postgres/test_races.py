"""Replicas racing on one database, each on connections of its own: the database decides
(one tag value, one row per link, manifest and tag), and the GC lock spans replicas without
starving any pool."""

from __future__ import annotations

import time

import anyio
import pytest

from ocigate.oci.digest import Digest
from ocigate.oci.reference import Tag
from ocigate.store.ports import Required
from ocigate.store.postgres.database import Database, DatabaseUnavailable
from ocigate.store.postgres.metadata import PostgresMetadata
from ocigate.store.postgres.migrate import migrate

from ...embedded_helpers import image

pytestmark = pytest.mark.anyio
REPLICAS = 32


async def test_32_replicas_pushing_one_tag_and_one_blob(postgres_url: str, db: Database) -> None:
    stores = [
        PostgresMetadata(await Database.connect(postgres_url, pool_size=1, lock_connections=1))
        for _ in range(REPLICAS)
    ]
    layer = b"the shared layer"
    shared, shared_data = image(b"{}", [layer])
    own = [image(b'{"n": %d}' % n, [layer]) for n in range(REPLICAS)]

    async def push(index: int) -> None:
        meta = stores[index]
        manifest, data = own[index]
        for blob in (layer, b"{}", b'{"n": %d}' % index):
            async with meta.gc_lock(exclusive=False):
                await meta.link_blob("race/app", Digest.of(blob), len(blob))
        for pushed, pushed_data, tag in ((manifest, data, "latest"), (shared, shared_data, "s")):
            required = [Required(d.digest, "blob") for d in pushed.blobs]
            async with meta.gc_lock(exclusive=False):
                await meta.put_manifest("race/app", pushed, pushed_data, [Tag(tag)], required)

    async with anyio.create_task_group() as tg:
        for index in range(REPLICAS):
            tg.start_soon(push, index)
    found = await stores[0].manifest_by_tag("race/app", Tag("latest"))
    assert found is not None and found.digest in {m.digest for m, _ in own}
    counts = await db.fetchrow(
        "SELECT (SELECT count(*) FROM repositories), (SELECT count(*) FROM tags),"
        " (SELECT count(*) FROM manifests), (SELECT count(*) FROM repo_blobs),"
        " (SELECT count(*) FROM repo_blobs WHERE digest = $1),"
        " (SELECT count(*) FROM manifest_refs)",
        str(Digest.of(layer)),
    )
    # one repository, two tags, 33 manifests; links: the layer, 33 configs-or-{}, 33 manifests
    assert counts is not None
    assert tuple(counts) == (1, 2, REPLICAS + 1, 1 + 1 + REPLICAS + REPLICAS + 1, 1, 66)
    for meta in stores:
        await meta.close()


async def test_sharers_never_starve_the_query_pool(postgres_url: str) -> None:
    """More concurrent commits holding the GC lock than the query pool has connections (and
    than the lock pool has): each still gets its queries answered, because the lock lives on
    other connections, and waits its turn for a lock connection."""
    database = await Database.connect(postgres_url, pool_size=2, lock_connections=4)
    meta = PostgresMetadata(database)
    await migrate(meta.db)
    done: list[int] = []

    async def commit(index: int) -> None:
        async with meta.gc_lock(exclusive=False):
            await anyio.sleep(0.05)  # the bytes being committed
            await meta.link_blob("r", Digest.of(b"%d" % index), 1)
            done.append(index)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for index in range(16):
                tg.start_soon(commit, index)
    assert sorted(done) == list(range(16))
    await meta.close()


async def test_a_collection_on_one_replica_holds_off_commits_on_another(
    postgres_url: str, db: Database
) -> None:
    collector = PostgresMetadata(db)
    committer = PostgresMetadata(await Database.connect(postgres_url), lock_wait=0.5)
    async with collector.gc_lock(exclusive=True):
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable, match=r"lock .* not granted within 0\.5 s"):
            async with committer.gc_lock(exclusive=False):
                pass
        waited = time.monotonic() - started
    assert 0.4 < waited < 2.0  # the bounded wait, then a clear 503
    async with committer.gc_lock(exclusive=False):  # free again
        pass
    await committer.close()


async def test_a_push_racing_a_delete_of_one_manifest_never_deadlocks(
    postgres_url: str, db: Database
) -> None:
    """Re-pushes and deletes of one manifest from two replicas, many times at once: each
    finishes (the transactions lock rows in one order), and the end state is whole."""
    pusher = PostgresMetadata(db)
    deleter = PostgresMetadata(await Database.connect(postgres_url))
    manifest, data = image(b"{}", [b"layer"])
    for blob in (b"{}", b"layer"):
        await pusher.link_blob("r", Digest.of(blob), len(blob))

    async def push() -> None:
        await pusher.put_manifest("r", manifest, data, [Tag("a"), Tag("b")], [])

    async def delete() -> None:
        await deleter.delete_manifest("r", manifest.digest)

    with anyio.fail_after(20):
        for _ in range(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(push)
                tg.start_soon(delete)
    stored = await pusher.manifest_by_digest("r", manifest.digest)
    tags = await pusher.list_tags("r", None, None)
    assert tags is not None and (tags.items == ["a", "b"]) == (stored is not None)
    await deleter.close()
