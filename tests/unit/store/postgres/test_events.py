"""Events written by several replicas into one PostgreSQL outbox: exact (one
``repository.created``, each ``tag.moved`` naming the digest the tag really had) and in commit
order, whichever replica made each change."""

from __future__ import annotations

import itertools
import json

import anyio
import anyio.to_thread
import pytest

from ocigate.events.config import EventsConfig
from ocigate.events.layer import EventsLayer
from ocigate.oci.digest import Digest
from ocigate.oci.reference import Tag
from ocigate.store.core.registry import RegistryOverPorts
from ocigate.store.memory.blobstore import MemoryBlobStore
from ocigate.store.postgres.database import Database
from ocigate.store.postgres.metadata import PostgresMetadata

from ...embedded_helpers import body, image

pytestmark = pytest.mark.anyio


async def test_racing_pushes_on_four_replicas_record_exact_events(
    postgres_url: str, db: Database
) -> None:
    blobs = MemoryBlobStore()  # one bucket, as replicas share one
    config = EventsConfig.model_validate({"enabled": True})
    layers = []
    for _ in range(4):
        meta = PostgresMetadata(await Database.connect(postgres_url, pool_size=2))
        assert meta.outbox is not None
        layers.append(EventsLayer(RegistryOverPorts(blobs, meta), config, meta.outbox, staged=True))

    async def push(number: int) -> None:
        registry = layers[number % 4]
        data = b'{"n":%d}' % number
        upload = await registry.start_upload("race/app")
        await registry.commit_upload("race/app", upload.id, Digest.of(data), body(data), None, None)
        manifest, manifest_data = image(data)
        await registry.put_manifest("race/app", manifest, manifest_data, [Tag("latest")])

    async with anyio.create_task_group() as tg:
        for number in range(16):
            tg.start_soon(push, number)
    rows = await db.fetch("SELECT event FROM outbox ORDER BY seq")
    events = [json.loads(row[0]) for row in rows]
    kinds = [e["type"].removeprefix("io.ocigate.") for e in events]
    assert kinds.count("repository.created") == 1
    pushed = [e["data"]["digest"] for e in events if e["type"].endswith("manifest.pushed")]
    moves = [
        (e["data"]["previousDigest"], e["data"]["digest"])
        for e in events
        if e["type"].endswith("tag.moved")
    ]
    assert len(pushed) == 16
    assert moves == list(itertools.pairwise(pushed))  # outbox order is commit order
    latest = await layers[0].get_manifest("race/app", Tag("latest"))
    assert str(latest.digest) == pushed[-1]
    for layer in layers:
        await layer.close()
