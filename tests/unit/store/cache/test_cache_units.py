"""Unit tests of the pull-through cache's parts: the shared blob fill (readers held back from the
last byte until the digest is verified, cleanup on failure and cancellation), the cache index,
the cache settings and the ``Warning`` header."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from ocigate.api.manifests import _headers
from ocigate.oci.digest import Digest
from ocigate.oci.errors import BadGateway, BlobUnknown
from ocigate.oci.reference import Tag
from ocigate.registry import BlobBody, StoredManifest, Stream
from ocigate.store.cache.fill import BlobFill
from ocigate.store.cache.index import CacheIndex
from ocigate.store.embedded.blobfiles import BlobFiles
from ocigate.store.gateway.build import cache_dir
from ocigate.upstream_config import UpstreamConfig

pytestmark = pytest.mark.anyio


class Gate:
    """An upstream body released piece by piece by the test."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces
        self.released = asyncio.Semaphore(0)

    async def stream(self) -> AsyncGenerator[bytes, None]:
        for piece in self.pieces:
            await self.released.acquire()
            yield piece

    def body(self, digest: Digest) -> BlobBody:
        size = sum(len(p) for p in self.pieces)
        return Stream(digest, size, 0, size, self.stream())


async def _read_all(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([piece async for piece in stream])


async def test_readers_get_everything_but_the_last_byte_before_verification(
    tmp_path: Path,
) -> None:
    data = b"abcdefgh" * 1000
    digest = Digest.of(data)
    files = BlobFiles(tmp_path)
    stored: list[int] = []
    gate = Gate([data[:4000], data[4000:]])
    fill = BlobFill(files, digest, stored.append)

    async def upstream() -> BlobBody:
        return gate.body(digest)

    task = asyncio.create_task(fill.run(upstream))
    assert await fill.wait_started() == len(data)
    reader = fill.reader()
    gate.released.release()
    assert await reader.__anext__() == data[:4000]
    gate.released.release()
    rest = await _read_all(reader)
    await task
    assert data[:4000] + rest == data
    assert stored == [len(data)]
    assert files.size(digest) == len(data)
    assert list(files.tmp.iterdir()) == []


async def test_a_mismatch_cuts_the_readers_and_stores_nothing(tmp_path: Path) -> None:
    data = b"x" * 10_000
    digest = Digest.of(b"something else")
    files = BlobFiles(tmp_path)
    gate = Gate([data])
    fill = BlobFill(files, digest, lambda size: pytest.fail("stored"))

    async def upstream() -> BlobBody:
        return gate.body(digest)

    task = asyncio.create_task(fill.run(upstream))
    await fill.wait_started()
    reader = fill.reader()
    gate.released.release()
    received = b""
    with pytest.raises(BadGateway):
        async for piece in reader:
            received += piece
    await task
    assert len(received) < len(data)
    assert files.size(digest) is None
    assert list(files.tmp.iterdir()) == []


async def test_an_upstream_error_reaches_the_waiters(tmp_path: Path) -> None:
    files = BlobFiles(tmp_path)
    fill = BlobFill(files, Digest.of(b"a"), lambda size: None)

    async def upstream() -> BlobBody:
        raise BlobUnknown({}, "not there")

    await fill.run(upstream)
    with pytest.raises(BlobUnknown):
        await fill.wait_started()


async def test_cancelling_a_fill_removes_its_file_and_closes_reader_fds(tmp_path: Path) -> None:
    data = b"y" * 5000
    digest = Digest.of(data)
    files = BlobFiles(tmp_path)
    gate = Gate([data[:100], data[100:]])
    fill = BlobFill(files, digest, lambda size: None)

    async def upstream() -> BlobBody:
        return gate.body(digest)

    task = asyncio.create_task(fill.run(upstream))
    await fill.wait_started()
    fds_before = len(os.listdir("/proc/self/fd"))
    reader = fill.reader()
    assert len(os.listdir("/proc/self/fd")) == fds_before + 1
    await reader.aclose()  # never iterated: its descriptor is closed all the same
    assert len(os.listdir("/proc/self/fd")) == fds_before
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert list(files.tmp.iterdir()) == []
    assert files.size(digest) is None


def test_index_keys(tmp_path: Path) -> None:
    index = CacheIndex(tmp_path / "index.db")
    digest = Digest.of(b"{}")
    index.put_manifest("a/b", digest, "application/json", b"{}", [(digest, 2)])
    index.put_tag("a/b", Tag("v1"), digest, 100.0)
    index.link_blob("a/b", digest, 2)
    assert index.manifest("a/b", digest) == ("application/json", b"{}")
    assert index.manifest("other", digest) is None  # per repository
    assert index.tag("a/b", Tag("v1")) == (digest, 100.0)
    assert index.blob("a/b", digest) == 2 and index.blob("other", digest) is None
    assert index.referenced_size("a/b", digest) == 2
    assert index.referenced_size("other", digest) is None
    index.drop_manifest("a/b", digest)  # its tags go with it
    assert index.tag("a/b", Tag("v1")) is None
    index.close()


def test_cache_settings(tmp_path: Path) -> None:
    plain = UpstreamConfig(url="https://r.example")
    assert (plain.cache, plain.cache_tag_ttl, plain.cache_push) == (False, 60.0, "reject")
    on = UpstreamConfig(url="https://r.example", cache=True, cache_push="write-through")
    assert on.cache_push == "write-through"
    with pytest.raises(ValidationError):
        UpstreamConfig.model_validate({"url": "https://r.example", "cache_push": "maybe"})
    with pytest.raises(ValidationError):
        UpstreamConfig(url="https://r.example", cache_tag_ttl=-1)
    other = UpstreamConfig(url="https://s.example")
    assert cache_dir(tmp_path, plain).parent == tmp_path / "cache"
    assert cache_dir(tmp_path, plain) != cache_dir(tmp_path, other)


def test_warnings_become_spec_warning_headers() -> None:
    manifest = StoredManifest(Digest.of(b"{}"), "application/json", b"{}", ('a "quoted" note',))
    assert (b"warning", b'299 - "a \\"quoted\\" note"') in _headers(manifest)
    plain = StoredManifest(Digest.of(b"{}"), "application/json", b"{}")
    assert not [h for h in _headers(plain) if h[0] == b"warning"]
