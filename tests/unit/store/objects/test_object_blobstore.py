"""What the object blob store adds to the ``BlobStore`` contract, on radosgw and SeaweedFS:
segments and multipart uploads, uploads continued by another replica without reading back,
ranges across segments, presigned redirects, failures that leave nothing behind."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest

from conformance.content import read
from ocigate.oci.digest import Digest
from ocigate.oci.errors import DigestInvalid
from ocigate.registry import Redirect, Stream
from ocigate.store.objects.blobstore import MiB, ObjectBlobStore
from ocigate.store.objects.bucket import Bucket
from ocigate.store.objects.ledger import Segment
from parts.s3 import S3Bucket, multipart_uploads

from .conftest import ObjectStores

pytestmark = pytest.mark.anyio


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def keys(store: ObjectBlobStore) -> set[str]:
    return {key async for key in store.bucket.keys("segments/")}


async def segments_of(store: ObjectBlobStore, digest: Digest) -> tuple[Segment, ...]:
    blob = await store.ledger.blob(digest)
    assert blob is not None
    return blob.segments


class CountingBucket(Bucket):
    """The real bucket, counting the reads made through it."""

    reads = 0

    async def get_range(self, key: str, start: int, end: int) -> bytes | None:
        self.reads += 1
        return await super().get_range(key, start, end)


async def test_a_long_body_is_multipart_segments_and_a_replica_commits_it_without_reading(
    object_stores: ObjectStores,
) -> None:
    first = object_stores(part_size=5 * MiB, segment_size=12 * MiB)
    data = random.Random(1).randbytes(30 * MiB + 7)
    pieces = [data[at : at + 65536] for at in range(0, len(data), 65536)]
    upload_id = await first.start_upload("r")
    async with first.upload("r", upload_id) as staged:
        assert await staged.append(chunks(*pieces), 0, len(data)) == len(data)
        await staged.save()
    # Another replica: same ledger and bucket, a bucket object that counts its reads.
    replica = object_stores()
    replica.bucket = counting = CountingBucket(first.bucket.config)
    async with replica.upload("r", upload_id) as staged:
        assert staged.offset == len(data)
        await staged.append(chunks(b"tail"), len(data), 4)
        assert await staged.commit(Digest.of(data + b"tail")) == len(data) + 4
    assert counting.reads == 0  # verified from the saved hash state
    digest = Digest.of(data + b"tail")
    sizes = [segment.size for segment in await segments_of(first, digest)]
    assert sizes == [12 * MiB, 12 * MiB, 6 * MiB + 7, 4]
    assert await keys(first) == {s.key for s in await segments_of(first, digest)}
    body = await first.open(digest, len(data) + 4, 0, len(data) + 4)
    assert body is not None
    assert hashlib.sha256(await read(body)).hexdigest() == digest.encoded


async def test_ranges_across_segment_boundaries_read_only_what_is_asked(
    object_stores: ObjectStores,
) -> None:
    store = object_stores(segment_size=7, read_window=3)
    data = bytes(range(40))
    upload_id = await store.start_upload("r")
    async with store.upload("r", upload_id) as staged:
        await staged.append(chunks(data[:10]), 0, None)  # segments 7 + 3
        await staged.append(chunks(data[10:25], data[25:]), 10, None)  # 7 + 7 + 7 + 7 + 2
        await staged.commit(Digest.of(data))
    digest = Digest.of(data)
    assert [s.size for s in await segments_of(store, digest)] == [7, 3, 7, 7, 7, 7, 2]
    rng = random.Random(2)
    for start, length in [(0, 40), (6, 2), (7, 3), (9, 20), (39, 1), (0, 1)] + [
        (s, rng.randrange(1, 41 - s)) for s in (rng.randrange(40) for _ in range(20))
    ]:
        body = await store.open(digest, 40, start, length)
        assert isinstance(body, Stream) and (body.start, body.length) == (start, length)
        assert await read(body) == data[start : start + length], (start, length)
    # Only the windows holding the range are fetched (7-byte segments, 3-byte windows).
    store.bucket = counting = CountingBucket(store.bucket.config)
    for start, length, requests in [(6, 2, 2), (0, 1, 1), (10, 7, 3), (9, 20, 9)]:
        counting.reads = 0
        body = await store.open(digest, 40, start, length)
        assert body is not None and await read(body) == data[start : start + length]
        assert counting.reads == requests, (start, length)
    # A body closed unread leaves nothing running.
    body = await store.open(digest, 40, 0, 40)
    assert body is not None
    await body.close()


async def test_a_sha512_commit_reads_the_segments_back_and_checks_them(
    object_stores: ObjectStores,
) -> None:
    store = object_stores(segment_size=5, read_window=4)
    data = b"sha512 content over several segments"
    wrong = Digest("sha512", hashlib.sha512(b"other").hexdigest())
    for digest, ok in [(wrong, False), (Digest.of(data, "sha512"), True)]:
        upload_id = await store.start_upload("r")
        async with store.upload("r", upload_id) as staged:
            await staged.append(chunks(data), 0, None)
            await staged.save()
            if ok:
                assert await staged.commit(digest) == len(data)
            else:
                with pytest.raises(DigestInvalid):
                    await staged.commit(digest)
                assert await keys(store) == set()  # the failed upload's segments deleted
    body = await store.open(Digest.of(data, "sha512"), len(data), 0, len(data))
    assert body is not None and await read(body) == data


async def test_a_second_commit_of_held_bytes_deletes_its_own_segments(
    object_stores: ObjectStores,
) -> None:
    store = object_stores()
    for _ in range(2):
        upload_id = await store.start_upload("r")
        async with store.upload("r", upload_id) as staged:
            await staged.append(chunks(b"same bytes"), 0, None)
            await staged.commit(Digest.of(b"same bytes"))
    assert await keys(store) == {s.key for s in await segments_of(store, Digest.of(b"same bytes"))}


@pytest.mark.parametrize("how", ["failed", "cancelled"])
async def test_a_broken_append_leaves_no_segment_and_the_upload_as_it_was(
    object_stores: ObjectStores, s3_bucket: S3Bucket, how: str
) -> None:
    store = object_stores(part_size=5 * MiB, segment_size=12 * MiB)
    upload_id = await store.start_upload("r")
    async with store.upload("r", upload_id) as staged:
        await staged.append(chunks(b"kept"), 0, None)
        await staged.save()
    kept = await keys(store)
    in_flight: list[bytes] = []

    async def stalls() -> AsyncIterator[bytes]:
        # 18 MiB: one whole segment, then 6 MiB of a second whose first part is sent.
        yield os.urandom(18 * MiB)
        await anyio.sleep(1.5)
        in_flight.append(await anyio.to_thread.run_sync(multipart_uploads, s3_bucket))
        if how == "cancelled":
            await anyio.sleep_forever()
        raise OSError("client went away")
        yield b""  # never reached

    with anyio.move_on_after(4), contextlib.suppress(OSError):
        async with store.upload("r", upload_id) as staged:
            await staged.append(stalls(), 4, None)
    assert b"<UploadId>" in in_flight[0]  # the second segment was a multipart upload...
    assert b"<UploadId>" not in multipart_uploads(s3_bucket)  # ...aborted with the append
    assert await store.upload_offset("r", upload_id) == 4
    assert await keys(store) == kept
    async with store.upload("r", upload_id) as staged:
        assert await staged.commit(Digest.of(b"kept")) == 4


async def test_a_single_segment_blob_redirects_to_a_presigned_url(
    object_stores: ObjectStores,
) -> None:
    store = object_stores(redirect=True, redirect_expiry=60)
    data = os.urandom(100_000)
    digest = Digest.of(data)
    await store.write(digest, data)
    body = await store.open(digest, len(data), 0, len(data))
    assert isinstance(body, Redirect) and body.status == 307
    assert "X-Amz-Signature=" in body.url and "X-Amz-Expires=60" in body.url
    async with httpx.AsyncClient() as client:  # a plain client, no credentials
        whole = await client.get(body.url)
        part = await client.get(body.url, headers={"range": "bytes=10-19"})
    assert whole.status_code == 200 and whole.content == data
    assert part.status_code == 206 and part.content == data[10:20]
    # Several segments cannot be one URL: streamed instead.
    many = object_stores(redirect=True, segment_size=40_000)
    upload_id = await many.start_upload("r")
    other = data[::-1]
    async with many.upload("r", upload_id) as staged:
        await staged.append(chunks(other), 0, None)
        await staged.commit(Digest.of(other))
    body = await many.open(Digest.of(other), len(other), 5, 50_000)
    assert isinstance(body, Stream) and await read(body) == other[5:50_005]


async def test_a_missing_segment_object_is_a_missing_blob(object_stores: ObjectStores) -> None:
    store = object_stores()
    await store.write(Digest.of(b"{}"), b"{}")
    await store.bucket.delete([s.key for s in await segments_of(store, Digest.of(b"{}"))])
    assert await store.open(Digest.of(b"{}"), 2, 0, 2) is None
    assert await store.size(Digest.of(b"{}")) == 2  # the index alone: no S3 call


@pytest.mark.parametrize(
    "options",
    [{"part_size": 1 * MiB}, {"segment_size": 100_000 * 8 * MiB}, {"concurrency": 0}],
)
def test_options_s3_cannot_serve_are_refused(
    object_stores: ObjectStores, options: dict[str, int]
) -> None:
    with pytest.raises(ValueError):
        object_stores(**options)
