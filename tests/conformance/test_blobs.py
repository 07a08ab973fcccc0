"""Blobs once uploaded: stat, ranged reads, mounting, deleting, unknown blobs."""

from __future__ import annotations

import pytest

from ocigate.oci.digest import Digest
from ocigate.oci.errors import BlobUnknown, RangeNotSatisfiable
from ocigate.oci.reference import Tag
from ocigate.registry import ByteRange, Registry

from .conftest import Names
from .content import image, push_blob, read

pytestmark = pytest.mark.anyio

DATA = bytes(range(256)) * 2  # 512 distinct-looking bytes: a wrong offset shows


# (first, last) as requested -> (start, end) served, inclusive
RANGES = {
    (0, 0): (0, 0),  # the first byte
    (10, 19): (10, 19),  # first-last
    (500, 10_000): (500, 511),  # a last beyond the end is cut to the end
    (100, None): (100, 511),  # first-
    (None, 12): (500, 511),  # -suffix
    (None, 10_000): (0, 511),  # a suffix longer than the blob is the whole blob
}
UNSATISFIABLE = [(512, None), (600, 700), (None, 0)]


async def test_ranged_reads(registry: Registry, names: Names) -> None:
    repo = names.repo()
    digest = await push_blob(registry, repo, DATA)
    for (first, last), (start, end) in RANGES.items():
        body = await registry.get_blob(repo, digest, ByteRange(first, last))
        served = (body.size, body.start, body.length)
        assert served == (len(DATA), start, end - start + 1), (first, last)
        assert await read(body) == DATA[start : end + 1], (first, last)
    for first, last in UNSATISFIABLE:
        with pytest.raises(RangeNotSatisfiable):
            await registry.get_blob(repo, digest, ByteRange(first, last))


async def test_whole_blob(registry: Registry, names: Names) -> None:
    repo = names.repo()
    digest = await push_blob(registry, repo, DATA)
    assert await registry.stat_blob(repo, digest) == len(DATA)
    body = await registry.get_blob(repo, digest, None)
    assert (body.digest, body.size, body.start, body.length) == (digest, len(DATA), 0, len(DATA))
    assert await read(body) == DATA


async def test_mount_from_another_repository(registry: Registry, names: Names) -> None:
    source, target = names.repo("source"), names.repo("target")
    digest = await push_blob(registry, source, DATA)
    with pytest.raises(BlobUnknown):
        await registry.stat_blob(target, digest)
    assert await registry.mount_blob(target, source, digest) == len(DATA)
    assert await registry.stat_blob(target, digest) == len(DATA)
    assert await registry.mount_blob(target, source, digest) == len(DATA)  # again: a no-op
    assert await read(await registry.get_blob(target, digest, None)) == DATA


async def test_unknown_mount(registry: Registry, names: Names) -> None:
    source, target = names.repo("source"), names.repo("target")
    held = await push_blob(registry, source, DATA)
    nowhere = Digest.of(b"pushed nowhere")
    with pytest.raises(BlobUnknown):
        await registry.mount_blob(target, source, nowhere)
    with pytest.raises(BlobUnknown):  # the source does not hold it
        await registry.mount_blob(target, names.repo("empty"), held)
    with pytest.raises(BlobUnknown):  # no source named (and no automatic mounting)
        await registry.mount_blob(target, None, held)
    for digest in (nowhere, held):
        with pytest.raises(BlobUnknown):
            await registry.stat_blob(target, digest)


async def test_delete_blob(registry: Registry, names: Names) -> None:
    repo, other = names.repo(), names.repo("other")
    digest = await push_blob(registry, repo, DATA)
    await push_blob(registry, other, DATA)
    assert await read(await registry.get_blob(repo, digest, None)) == DATA  # a cache keeps it
    await registry.delete_blob(repo, digest)
    with pytest.raises(BlobUnknown):
        await registry.stat_blob(repo, digest)
    with pytest.raises(BlobUnknown):
        await registry.get_blob(repo, digest, None)
    with pytest.raises(BlobUnknown):
        await registry.delete_blob(repo, digest)
    # Only the link goes: another repository holding the same bytes keeps them.
    assert await read(await registry.get_blob(other, digest, None)) == DATA


async def test_unknown_blob(registry: Registry, names: Names) -> None:
    repo, digest = names.repo(), Digest.of(b"never pushed")
    await push_blob(registry, repo, DATA)  # the repository exists; the blob does not
    for where in (repo, names.repo("nowhere")):
        with pytest.raises(BlobUnknown):
            await registry.stat_blob(where, digest)
        with pytest.raises(BlobUnknown):
            await registry.get_blob(where, digest, None)
        with pytest.raises(BlobUnknown):
            await registry.get_blob(where, digest, ByteRange(0, 1))
        with pytest.raises(BlobUnknown):
            await registry.delete_blob(where, digest)


async def test_ranged_read_of_a_blob_read_before(registry: Registry, names: Names) -> None:
    repo = names.repo()
    digest = await push_blob(registry, repo, DATA)
    for _ in range(2):  # a cache serves the second read from its copy
        assert await read(await registry.get_blob(repo, digest, None)) == DATA
    assert await read(await registry.get_blob(repo, digest, ByteRange(3, 9))) == DATA[3:10]
    assert await read(await registry.get_blob(repo, digest, ByteRange(None, 2))) == DATA[-2:]
    with pytest.raises(RangeNotSatisfiable):
        await registry.get_blob(repo, digest, ByteRange(len(DATA), None))


async def test_delete_a_layer_of_an_image_read_before(registry: Registry, names: Names) -> None:
    repo = names.repo()
    pushed = await image("layered").push(registry, repo, "v1")
    layer = pushed.manifest.blobs[-1].digest
    await registry.get_manifest(repo, Tag("v1"))
    assert await read(await registry.get_blob(repo, layer, None)) == pushed.blobs[-1]
    await registry.delete_blob(repo, layer)
    with pytest.raises(BlobUnknown):
        await registry.stat_blob(repo, layer)
    with pytest.raises(BlobUnknown):
        await registry.get_blob(repo, layer, None)
