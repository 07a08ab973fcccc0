"""Replicas of ``RegistryOverPorts`` over one PostgreSQL database and one bucket: a change on
one is seen by the very next request on another (the store's change stamp never repeats, so no
replica answers from its in-memory caches), and garbage collection run by one frees what
another deleted, keeping the rest."""

from __future__ import annotations

import pytest

from ocigate.oci.digest import Digest
from ocigate.oci.errors import BlobUnknown
from ocigate.oci.reference import Tag
from ocigate.registry import UploadChunk
from ocigate.store.core.registry import RegistryOverPorts
from ocigate.store.memory.blobstore import MemoryBlobStore
from ocigate.store.postgres.database import Database
from ocigate.store.postgres.metadata import PostgresMetadata

from ...embedded_helpers import body, image

pytestmark = pytest.mark.anyio


async def test_a_tag_moved_on_one_replica_is_seen_next_on_another(
    postgres_url: str, db: Database
) -> None:
    blobs = MemoryBlobStore()
    one = RegistryOverPorts(blobs, PostgresMetadata(db))
    other = RegistryOverPorts(blobs, PostgresMetadata(await Database.connect(postgres_url)))
    pushed = []
    for config in (b'{"v":1}', b'{"v":2}'):
        upload = await one.start_upload("r")
        await one.commit_upload("r", upload.id, Digest.of(config), UploadChunk(body(config)))
        pushed.append(image(config))
    await one.put_manifest("r", *pushed[0], [Tag("latest")])
    for _ in range(3):  # hot: would be answered from memory on a single machine
        assert (await other.get_manifest("r", Tag("latest"))).digest == pushed[0][0].digest
    assert (await other.list_tags("r", None, None)).items == ["latest"]
    await one.put_manifest("r", *pushed[1], [Tag("latest"), Tag("v2")])
    assert (await other.get_manifest("r", Tag("latest"))).digest == pushed[1][0].digest
    assert (await other.list_tags("r", None, None)).items == ["latest", "v2"]
    await one.delete_tag("r", Tag("v2"))
    assert (await other.list_tags("r", None, None)).items == ["latest"]
    await other.close()


async def test_a_collection_on_one_replica_frees_what_another_deleted(
    postgres_url: str, db: Database
) -> None:
    blobs = MemoryBlobStore()
    pusher = RegistryOverPorts(blobs, PostgresMetadata(db))
    collector = RegistryOverPorts(
        blobs, PostgresMetadata(await Database.connect(postgres_url, pool_size=2))
    )
    for data in (b"{}", b"kept layer", b"freed layer"):
        upload = await pusher.start_upload("r")
        await pusher.commit_upload("r", upload.id, Digest.of(data), UploadChunk(body(data)))
    kept, kept_data = image(b"{}", [b"kept layer"])
    freed, freed_data = image(b"{}", [b"freed layer"])
    await pusher.put_manifest("r", kept, kept_data, [Tag("kept")])
    await pusher.put_manifest("r", freed, freed_data, [Tag("freed")])
    await pusher.delete_manifest("r", freed.digest)

    dry = await collector.collect_garbage(0, dry_run=True)
    gone = {str(Digest.of(b"freed layer")), str(freed.digest)}
    assert {item.digest for item in dry.removed} == gone
    assert await pusher.stat_blob("r", Digest.of(b"freed layer")) == 11  # a dry run
    report = await collector.collect_garbage(0)
    assert {item.digest for item in report.removed} == gone and report.blobs_kept == 3
    with pytest.raises(BlobUnknown):  # unlinked before its bytes went: HEAD says 404
        await pusher.stat_blob("r", Digest.of(b"freed layer"))
    assert (await pusher.get_manifest("r", Tag("kept"))).data == kept_data
    assert await pusher.stat_blob("r", Digest.of(b"kept layer")) == 10
    await collector.close()
