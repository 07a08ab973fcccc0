"""``RegistryOverPorts``: what it asks of each port (a HEAD never asks the blob store; a pull by
tag asks nothing while nothing changed) and the rules it decides itself."""

from __future__ import annotations

import pytest

from ocigate.oci.digest import Digest
from ocigate.oci.errors import BlobUnknown, ManifestBlobUnknown
from ocigate.oci.reference import Tag
from ocigate.registry import StoredManifest, UploadChunk
from ocigate.store.core.registry import RegistryOverPorts
from ocigate.store.memory.blobstore import MemoryBlobStore
from ocigate.store.memory.metadata import InMemoryMetadata

from ...embedded_helpers import body, image, index

pytestmark = pytest.mark.anyio


class NoBlobReads(MemoryBlobStore):
    """Bytes can be written and listed but not looked at."""

    async def size(self, digest: Digest) -> int | None:
        raise AssertionError("asked the blob store")


class CountingMetadata(InMemoryMetadata):
    def __init__(self) -> None:
        super().__init__()
        self.tag_reads = 0

    async def manifest_by_tag(self, repo: str, tag: str) -> StoredManifest | None:
        self.tag_reads += 1
        return await super().manifest_by_tag(repo, tag)


async def push(registry: RegistryOverPorts, repo: str, data: bytes) -> Digest:
    digest = Digest.of(data)
    upload = await registry.start_upload(repo)
    await registry.commit_upload(repo, upload.id, digest, UploadChunk(body(data)))
    return digest


async def test_heads_and_pulls_by_tag_ask_only_the_metadata_and_then_memory() -> None:
    meta = CountingMetadata()
    registry = RegistryOverPorts(NoBlobReads(), meta)
    for data in (b"{}", b"layer"):
        await push(registry, "r", data)
    manifest, data = image(b"{}", [b"layer"])
    await registry.put_manifest("r", manifest, data, [Tag("latest")])
    assert await registry.stat_blob("r", Digest.of(b"layer")) == 5
    for _ in range(3):
        assert (await registry.stat_manifest("r", Tag("latest"))).digest == manifest.digest
    assert meta.tag_reads == 1
    await registry.put_manifest("r", manifest, data, [Tag("other")])  # a change: asked again
    assert (await registry.get_manifest("r", Tag("latest"))).data == data
    assert meta.tag_reads == 2
    await registry.close()


async def test_sparse_index_and_auto_mount_are_decided_by_the_logic() -> None:
    strict = RegistryOverPorts(MemoryBlobStore(), InMemoryMetadata())
    sparse = RegistryOverPorts(MemoryBlobStore(), InMemoryMetadata(), sparse_index=True)
    child, _ = image(b"{}")
    parent, parent_data = index([child])
    with pytest.raises(ManifestBlobUnknown):
        await strict.put_manifest("r", parent, parent_data, [])
    await sparse.put_manifest("r", parent, parent_data, [Tag("i")])
    assert (await sparse.get_manifest("r", Tag("i"))).digest == parent.digest

    blobs, meta = MemoryBlobStore(), InMemoryMetadata()
    plain = RegistryOverPorts(blobs, meta)
    auto = RegistryOverPorts(blobs, meta, auto_mount=True)
    digest = await push(plain, "a", b"shared")
    with pytest.raises(BlobUnknown):
        await plain.mount_blob("b", None, digest)
    assert await auto.mount_blob("b", None, digest) == 6
    assert await plain.stat_blob("b", digest) == 6
