"""The objects backend's ``BlobStore`` (``store.ports``): blob bytes as segments in an S3 bucket,
uploads and the blob index in an ``ObjectLedger``, so any replica continues any upload.

Appending: each PATCH body becomes one or more new *segments* (objects under keys never used
before), hashed as the bytes pass with a resumable SHA-256 whose state the ledger keeps, so a
commit on another replica verifies the digest without reading anything back. A body shorter
than ``part_size`` (8 MiB) is one PUT, so S3's 5 MiB minimum part size never applies to a small
chunk; a longer one is a multipart upload of ``part_size`` parts, ``concurrency`` (2) in flight,
memory about ``(concurrency + 1) * part_size`` whatever its length. A segment ends after
``segment_size`` bytes (4 GiB, 512 parts) and the body goes on in a new one, so no object ever
needs more than S3's 10,000 parts and a 100 GiB layer in one PATCH is 25 segments. On any
failure or cancellation the multipart upload in progress is aborted, the new segments are
deleted (best effort: when S3 itself fails, keys nobody references may remain) and the upload
is as it was. Only a crash leaves an incomplete multipart upload (invisible, but stored): give
the bucket a lifecycle rule aborting those after a day.

Commit: the digest checked (sha256 from the saved state; another algorithm by streaming the
segments back), then the upload ended and the blob indexed, in that order: a crash between
leaves unreferenced segments, never an index entry an expiry could delete. No copy: the blob is
the segment list. Reads fetch only the byte ranges asked for, ``read_window`` (4 MiB) per
request with one window fetched ahead; a single-segment blob may instead be answered with a
redirect to a presigned GET URL, or read with one GET by a ``SegmentReader`` (``relay``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence

import anyio
import anyio.to_thread

from ...malloc import give_back_freed
from ...oci.digest import Digest
from ...oci.errors import BlobUploadUnknown, DigestInvalid, RangeInvalid, SizeInvalid
from ...registry import Chunks, Redirect, Stream
from ..ports import BlobEntry, StagedUpload
from .bucket import Bucket, StorageUnavailable
from .ledger import BlobObject, ObjectLedger, Segment, UploadRecord
from .relay import SegmentReader
from .resumable_hash import ResumableSha256

MiB = 1024 * 1024
GiB = 1024 * MiB
MIN_PART = 5 * MiB  # S3's smallest part but the last
MAX_PARTS = 10_000  # S3's most parts of one multipart upload
BATCH = 1 * MiB  # bytes hashed (in a thread) and handed to the bucket at a time
DELETE_BATCH = 1000  # S3's most keys per DeleteObjects
_ID = re.compile(r"[0-9a-f]{32}")
log = logging.getLogger("ocigate.store.objects")


def _unknown(upload_id: str) -> BlobUploadUnknown:
    return BlobUploadUnknown({"upload": upload_id[:64]})


def _new_key() -> str:
    return f"segments/{uuid.uuid4().hex}"


class _Body:
    """A request body read in batches, its length checked as it arrives."""

    def __init__(self, chunks: Chunks, length: int | None) -> None:
        self._chunks = aiter(chunks)
        self._length = length
        self._pending = b""
        self._ended = False
        self.received = 0

    async def take(self, limit: int) -> bytes:
        """Up to ``limit`` bytes (at least a batch, or what remains); empty at the end."""
        parts, size = [self._pending] if self._pending else [], len(self._pending)
        while size < min(limit, BATCH) and not self._ended:
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                self._ended = True
                if self._length is not None and self.received != self._length:
                    raise SizeInvalid(
                        {"length": self._length, "received": self.received},
                        "body shorter than Content-Length",
                    ) from None
                break
            self.received += len(chunk)
            if self._length is not None and self.received > self._length:
                raise SizeInvalid({"length": self._length}, "body longer than Content-Length")
            parts.append(chunk)
            size += len(chunk)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        self._pending = data[limit:]
        return data[:limit]


class _ObjectUpload:
    """A held upload (``StagedUpload``); ``record`` changes only when an append succeeded."""

    def __init__(self, store: ObjectBlobStore, record: UploadRecord) -> None:
        self._store = store
        self._record = record

    @property
    def id(self) -> str:
        return self._record.id

    @property
    def repo(self) -> str:
        return self._record.repo

    @property
    def offset(self) -> int:
        return self._record.offset

    async def append(self, chunks: Chunks, offset: int | None, length: int | None) -> int:
        record = self._record
        if offset is not None and offset != record.offset:
            raise RangeInvalid(
                {"offset": record.offset}, f"upload is at offset {record.offset}, not {offset}"
            )
        hasher = ResumableSha256.resume(record.hash_state)
        body = _Body(chunks, length)
        written: list[Segment] = []
        try:
            while (segment := await self._store.write_segment(body, hasher, written)) is not None:
                written.append(segment)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._store.discard_segments(written)
            raise
        record.segments.extend(written)
        record.offset += body.received
        record.hash_state = hasher.state()
        return record.offset

    async def save(self) -> None:
        await self._store.ledger.save_upload(self._record)

    async def commit(self, digest: Digest) -> int:
        record, store = self._record, self._store
        if digest.algorithm == "sha256":
            actual = ResumableSha256.resume(record.hash_state).hexdigest()
        else:
            actual = await store.rehash(record.segments, digest.algorithm)
        await store.ledger.end_upload(record.id)
        if actual != digest.encoded:
            await store.discard_segments(record.segments)
            raise DigestInvalid(
                {"digest": str(digest), "actual": f"{digest.algorithm}:{actual}"},
                "provided digest did not match uploaded content",
            )
        blob = BlobObject(digest, record.offset, tuple(record.segments), time.time())
        if not await store.ledger.add_blob(blob):  # held already: these bytes are spare
            await store.discard_segments(record.segments)
        return record.offset

    async def discard(self) -> None:
        await self._store.ledger.end_upload(self._record.id)
        await self._store.discard_segments(self._record.segments)


class ObjectBlobStore:
    def __init__(
        self,
        bucket: Bucket,
        ledger: ObjectLedger,
        *,
        part_size: int = 8 * MiB,
        segment_size: int = 4 * GiB,
        concurrency: int = 2,
        read_window: int = 4 * MiB,
        redirect: bool = False,
        redirect_expiry: float = 1200.0,
        reader: SegmentReader | None = None,
    ) -> None:
        if segment_size > part_size and part_size < MIN_PART:
            raise ValueError(f"part_size {part_size} is below S3's minimum of {MIN_PART}")
        if -(-segment_size // part_size) > MAX_PARTS:
            raise ValueError(f"segment_size {segment_size} needs more than {MAX_PARTS} parts")
        if min(segment_size, concurrency, read_window) < 1 or redirect_expiry <= 0:
            raise ValueError("segment_size, concurrency, read_window, redirect_expiry must be > 0")
        self.bucket = bucket
        self.ledger = ledger
        self.part_size = part_size
        self.segment_size = segment_size
        self.concurrency = concurrency
        self.read_window = read_window
        self.redirect = redirect
        self.redirect_expiry = redirect_expiry
        self.reader = reader

    # -- segments --------------------------------------------------------------------------

    async def write_segment(
        self, body: _Body, hasher: ResumableSha256, written: list[Segment]
    ) -> Segment | None:
        """The next segment of ``body`` (None at its end); hashes what passes. The segment's
        key is reported through ``written`` before any byte is sent, so a failure deletes it."""
        first: list[bytes] = []
        size = 0
        head = min(self.part_size, self.segment_size)
        while size < head and (data := await body.take(head - size)):
            await anyio.to_thread.run_sync(hasher.update, data)
            first.append(data)
            size += len(data)
        if not size:
            return None
        key = _new_key()
        written.append(Segment(key, 0))
        if size < self.part_size or self.segment_size <= self.part_size:
            await self.bucket.put(key, b"".join(first))
        else:

            async def rest() -> AsyncIterator[bytes]:
                nonlocal size
                while first:
                    yield first.pop(0)
                while size < self.segment_size and (
                    data := await body.take(self.segment_size - size)
                ):
                    await anyio.to_thread.run_sync(hasher.update, data)
                    size += len(data)
                    yield data

            try:
                await self.bucket.put_stream(
                    key, rest(), part_size=self.part_size, concurrency=self.concurrency
                )
            finally:
                give_back_freed()  # the parts' megabytes, left below live objects (``malloc``)
        written.pop()
        return Segment(key, size)

    async def delete_segments(self, segments: Sequence[Segment]) -> None:
        keys = [segment.key for segment in segments]
        for at in range(0, len(keys), DELETE_BATCH):
            await self.bucket.delete(keys[at : at + DELETE_BATCH])

    async def discard_segments(self, segments: Sequence[Segment]) -> None:
        """Delete segments nothing references any more, when the outcome to report is another
        (a digest mismatch, a failed append): a storage failure is logged, the keys left."""
        try:
            await self.delete_segments(segments)
        except StorageUnavailable as exc:
            keys = ", ".join(segment.key for segment in segments[:5])
            log.warning("%d unreferenced segments left (%s...): %s", len(segments), keys, exc)

    def _windows(
        self, segments: Sequence[Segment], start: int, length: int
    ) -> Iterator[tuple[str, int, int]]:
        """(key, start, end) of each request reading ``length`` bytes from ``start``."""
        end = start + length
        base = 0
        for segment in segments:
            low, high = max(start, base), min(end, base + segment.size)
            for at in range(low, high, self.read_window):
                yield segment.key, at - base, min(at + self.read_window, high) - base
            base += segment.size
            if base >= end:
                return

    async def _fetch(self, window: tuple[str, int, int]) -> bytes:
        key, start, end = window
        data = await self.bucket.get_range(key, start, end)
        if data is None or len(data) != end - start:
            raise self.bucket.unavailable("GET", key, "segment missing or short: damaged store")
        return data

    async def _chunks(
        self, first: bytes, windows: Iterator[tuple[str, int, int]]
    ) -> AsyncGenerator[bytes, None]:
        """``first``, then each window's bytes, the next one fetched while one is sent."""
        pending: asyncio.Task[bytes] | None = None
        try:
            window = next(windows, None)
            pending = None if window is None else asyncio.ensure_future(self._fetch(window))
            yield first
            while pending is not None:
                data = await pending
                window = next(windows, None)
                pending = None if window is None else asyncio.ensure_future(self._fetch(window))
                yield data
        finally:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending

    async def rehash(self, segments: Sequence[Segment], algorithm: str) -> str:
        """The hex digest of the segments' bytes, read back (for algorithms but sha256)."""
        hasher = hashlib.new(algorithm)
        total = sum(segment.size for segment in segments)
        windows = self._windows(segments, 0, total)
        first = next(windows, None)
        if first is not None:
            chunks = self._chunks(await self._fetch(first), windows)
            try:
                async for data in chunks:
                    await anyio.to_thread.run_sync(hasher.update, data)
            finally:
                await chunks.aclose()
        return hasher.hexdigest()

    # -- BlobStore ---------------------------------------------------------------------------

    async def size(self, digest: Digest) -> int | None:
        blob = await self.ledger.blob(digest)
        return None if blob is None else blob.size

    async def open(
        self, digest: Digest, size: int, start: int, length: int
    ) -> Stream | Redirect | None:
        blob = await self.ledger.blob(digest)
        if blob is None:
            return None
        if self.redirect and len(blob.segments) == 1:
            url = await self.bucket.sign_get(blob.segments[0].key, self.redirect_expiry)
            return Redirect(307, url)
        if self.reader is not None and len(blob.segments) == 1 and length:
            return await self.reader.open(blob.segments[0].key, digest, size, start, length)
        windows = self._windows(blob.segments, start, length)
        first = next(windows, None)
        data = b""
        if first is not None:  # fetched now: a missing object is None, a failure an error
            found = await self.bucket.get_range(*first)
            if found is None:
                return None
            data = found
        return Stream(digest, size, start, length, self._chunks(data, windows))

    async def write(self, digest: Digest, data: bytes) -> None:
        if await self.ledger.blob(digest) is not None:
            return
        key = _new_key()
        await self.bucket.put(key, data)
        blob = BlobObject(digest, len(data), (Segment(key, len(data)),), time.time())
        if not await self.ledger.add_blob(blob):
            await self.discard_segments(blob.segments)

    async def start_upload(self, repo: str) -> str:
        upload_id = uuid.uuid4().hex
        await self.ledger.create_upload(UploadRecord(upload_id, repo, updated=time.time()))
        return upload_id

    async def upload_offset(self, repo: str, upload_id: str) -> int:
        record = await self.ledger.find_upload(upload_id) if _ID.fullmatch(upload_id) else None
        if record is None or record.repo != repo:
            raise _unknown(upload_id)
        return record.offset

    @contextlib.asynccontextmanager
    async def upload(self, repo: str, upload_id: str) -> AsyncIterator[StagedUpload]:
        if not _ID.fullmatch(upload_id):
            raise _unknown(upload_id)
        async with self.ledger.hold_upload(upload_id) as record:
            if record is None or record.repo != repo:
                raise _unknown(upload_id)
            yield _ObjectUpload(self, record)

    async def expire_uploads(self, max_age: float) -> int:
        before = time.time() - max_age
        removed = 0
        for idle in await self.ledger.idle_uploads(before):
            async with self.ledger.hold_upload(idle.id) as record:
                if record is None or record.updated >= before:  # ended or used meanwhile
                    continue
                await self.ledger.end_upload(record.id)
                await self.discard_segments(record.segments)
                removed += 1
        return removed

    async def list(self) -> AsyncIterator[BlobEntry]:
        async for blob in self.ledger.blobs():
            yield BlobEntry(blob.digest, blob.size, blob.modified)

    async def delete(self, digests: Sequence[Digest]) -> None:
        removed = await self.ledger.remove_blobs(digests)
        await self.delete_segments([s for blob in removed for s in blob.segments])

    async def close(self) -> None:
        # obstore's clients hold no resource needing release; the reader's pool does.
        if self.reader is not None:
            await self.reader.close()
