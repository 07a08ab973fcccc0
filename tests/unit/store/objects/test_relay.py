"""One-GET reads of a one-segment blob (``objects.relay``), on radosgw and SeaweedFS: the exact
bytes streamed or handed over as a socket, ranges, and clear failures."""

from __future__ import annotations

import os
import select
import socket
import time

import pytest

from conformance.content import read
from ocigate.oci.digest import Digest
from ocigate.registry import Stream
from ocigate.store.objects.blobstore import ObjectBlobStore
from ocigate.store.objects.bucket import Bucket, BucketConfig, StorageUnavailable
from ocigate.store.objects.relay import SegmentReader

from .conftest import ObjectStores
from .test_object_blobstore import chunks

pytestmark = pytest.mark.anyio


def relayed(object_stores: ObjectStores, **options: int) -> ObjectBlobStore:
    store = object_stores(**options)
    store.reader = SegmentReader(store.bucket)
    return store


async def stored(store: ObjectBlobStore, data: bytes) -> Digest:
    digest = Digest.of(data)
    await store.write(digest, data)
    return digest


def read_socket(fd: int, count: int) -> bytes:
    """``count`` bytes from a non-blocking socket descriptor, as the server's splice reads."""
    got = bytearray()
    while len(got) < count:
        select.select([fd], [], [], 10)
        try:
            piece = os.read(fd, count - len(got))
        except BlockingIOError:
            continue
        assert piece, "the socket ended early"
        got += piece
    return bytes(got)


async def test_the_whole_blob_and_ranges_come_from_one_get_each(
    object_stores: ObjectStores,
) -> None:
    store = relayed(object_stores)
    data = os.urandom(3 * 1024 * 1024 + 11)
    digest = await stored(store, data)
    try:
        for start, length in ((0, len(data)), (5, 1000), (len(data) - 1, 1)):
            body = await store.open(digest, len(data), start, length)
            assert isinstance(body, Stream) and body.detach is not None
            assert (body.start, body.length, body.size) == (start, length, len(data))
            assert await read(body) == data[start : start + length]
    finally:
        await store.close()


async def test_the_socket_handed_over_carries_exactly_the_rest(
    object_stores: ObjectStores,
) -> None:
    store = relayed(object_stores)
    data = os.urandom(2 * 1024 * 1024)
    digest = await stored(store, data)
    try:
        body = await store.open(digest, len(data), 100, len(data) - 100)
        assert isinstance(body, Stream) and body.detach is not None
        detached = body.detach()
        assert detached is not None
        rest = read_socket(detached.socket, len(data) - 100 - len(detached.received))
        assert detached.received + rest == data[100:]
        assert detached.read_timeout == store.bucket.config.request_timeout
        await body.close()
        with pytest.raises(OSError):  # the descriptor was the body's, closed with it
            os.fstat(detached.socket)
    finally:
        await store.close()


async def test_a_missing_object_is_none_like_any_damaged_read(
    object_stores: ObjectStores,
) -> None:
    store = relayed(object_stores)
    data = b"gone before the read" * 100
    digest = await stored(store, data)
    try:
        blob = await store.ledger.blob(digest)
        assert blob is not None
        await store.bucket.delete([blob.segments[0].key])
        assert await store.open(digest, len(data), 0, len(data)) is None
    finally:
        await store.close()


async def test_several_segments_and_empty_reads_take_the_windowed_path(
    object_stores: ObjectStores,
) -> None:
    store = relayed(object_stores, segment_size=7)
    data = bytes(range(20))
    upload_id = await store.start_upload("r")
    async with store.upload("r", upload_id) as staged:
        await staged.append(chunks(data), 0, len(data))
        digest = Digest.of(data)
        await staged.commit(digest)
    try:
        streamed = await store.open(digest, len(data), 0, len(data))
        assert isinstance(streamed, Stream) and streamed.detach is None
        assert await read(streamed) == data
    finally:
        await store.close()


async def test_an_unreachable_endpoint_is_a_storage_error_in_bounded_time() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    config = BucketConfig(
        bucket="b",
        endpoint=f"http://127.0.0.1:{port}",
        region="us-east-1",
        access_key="a",
        secret_key="s",
        connect_timeout=1.0,
    )
    reader = SegmentReader(Bucket(config))
    began = time.monotonic()
    try:
        with pytest.raises(StorageUnavailable) as caught:
            await reader.open("segments/x", Digest.of(b"x"), 1, 0, 1)
    finally:
        await reader.close()
    assert time.monotonic() - began < 2
    assert f"127.0.0.1:{port}/b" in caught.value.message
    assert caught.value.detail["operation"] == "GET"
