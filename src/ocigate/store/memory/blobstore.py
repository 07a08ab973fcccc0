"""The memory store's ``BlobStore`` (``store.ports``): bytes and uploads in dictionaries.

One process only, nothing survives a restart.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field

import anyio

from ...oci.digest import Digest
from ...oci.errors import BlobUploadUnknown, DigestInvalid, RangeInvalid, SizeInvalid
from ...registry import Chunks, Stream
from ..ports import BlobEntry, StagedUpload


@dataclass(slots=True)
class _Upload:
    repo: str
    data: bytearray = field(default_factory=bytearray)
    touched: float = field(default_factory=time.time)
    lock: anyio.Lock = field(default_factory=anyio.Lock)


async def _stream(data: bytes) -> AsyncGenerator[bytes, None]:
    yield data


class _MemoryUpload:
    """A held upload (``StagedUpload``)."""

    def __init__(self, store: MemoryBlobStore, upload_id: str, upload: _Upload) -> None:
        self._store = store
        self.id = upload_id
        self._upload = upload

    @property
    def repo(self) -> str:
        return self._upload.repo

    @property
    def offset(self) -> int:
        return len(self._upload.data)

    async def append(self, chunks: Chunks, offset: int | None, length: int | None) -> int:
        if offset is not None and offset != self.offset:
            raise RangeInvalid({"offset": self.offset}, f"upload is at offset {self.offset}")
        received = bytearray()
        async for chunk in chunks:
            received += chunk
            if length is not None and len(received) > length:
                raise SizeInvalid({"length": length}, "body longer than Content-Length")
        if length is not None and len(received) != length:
            raise SizeInvalid({"length": length}, "body shorter than Content-Length")
        self._upload.data += received
        self._upload.touched = time.time()
        return self.offset

    async def save(self) -> None:
        pass  # memory is where it lives

    async def commit(self, digest: Digest) -> int:
        data = bytes(self._upload.data)
        self._store.uploads.pop(self.id, None)
        actual = Digest.of(data, digest.algorithm)
        if actual != digest:
            raise DigestInvalid(
                {"digest": str(digest), "actual": str(actual)},
                "provided digest did not match uploaded content",
            )
        self._store.blobs.setdefault(digest, (data, time.time()))
        return len(data)

    async def discard(self) -> None:
        self._store.uploads.pop(self.id, None)


class MemoryBlobStore:
    def __init__(self) -> None:
        self.blobs: dict[Digest, tuple[bytes, float]] = {}  # bytes, when written
        self.uploads: dict[str, _Upload] = {}

    async def size(self, digest: Digest) -> int | None:
        found = self.blobs.get(digest)
        return None if found is None else len(found[0])

    async def open(self, digest: Digest, size: int, start: int, length: int) -> Stream | None:
        found = self.blobs.get(digest)
        if found is None:
            return None
        data = found[0][start : start + length]
        return Stream(digest, size, start, len(data), _stream(data))

    async def write(self, digest: Digest, data: bytes) -> None:
        self.blobs.setdefault(digest, (data, time.time()))

    async def start_upload(self, repo: str) -> str:
        upload_id = uuid.uuid4().hex
        self.uploads[upload_id] = _Upload(repo)
        return upload_id

    def _owned(self, repo: str, upload_id: str) -> _Upload:
        upload = self.uploads.get(upload_id)
        if upload is None or upload.repo != repo:
            raise BlobUploadUnknown({"upload": upload_id[:64]})
        return upload

    async def upload_offset(self, repo: str, upload_id: str) -> int:
        return len(self._owned(repo, upload_id).data)

    @contextlib.asynccontextmanager
    async def upload(self, repo: str, upload_id: str) -> AsyncIterator[StagedUpload]:
        upload = self._owned(repo, upload_id)
        async with upload.lock:
            if self.uploads.get(upload_id) is not upload:  # ended while we waited
                raise BlobUploadUnknown({"upload": upload_id[:64]})
            yield _MemoryUpload(self, upload_id, upload)

    async def expire_uploads(self, max_age: float) -> int:
        now = time.time()
        idle = [
            upload_id
            for upload_id, upload in self.uploads.items()
            if now - upload.touched > max_age and not upload.lock.locked()
        ]
        for upload_id in idle:
            del self.uploads[upload_id]
        return len(idle)

    async def list(self) -> AsyncIterator[BlobEntry]:
        for digest, (data, written) in list(self.blobs.items()):
            yield BlobEntry(digest, len(data), written)

    async def delete(self, digests: Sequence[Digest]) -> None:
        for digest in digests:
            self.blobs.pop(digest, None)

    async def close(self) -> None:
        self.uploads.clear()
