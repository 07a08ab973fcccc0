"""A change on one replica is seen by the very next request on any other: the PostgreSQL
store's change stamp never repeats, so no replica answers from its in-memory caches."""

from __future__ import annotations

import pytest

from ocigate.oci.digest import Digest
from ocigate.oci.reference import Tag
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
        await one.commit_upload("r", upload.id, Digest.of(config), body(config), None, None)
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
