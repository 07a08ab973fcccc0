"""An ``ObjectLedger`` in process memory: uploads and the blob index of one process, every
instance of the object blob store in it sharing them (tests, a single-process deployment).

Holding an upload is an ``asyncio`` lock per upload; nothing survives the process, so no lease.
Records are copied in and out, as a database would, so a holder's unsaved changes stay its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Sequence

from ...oci.digest import Digest
from .ledger import BlobObject, UploadRecord


def _copy(record: UploadRecord) -> UploadRecord:
    return dataclasses.replace(record, segments=list(record.segments))


class MemoryLedger:
    def __init__(self) -> None:
        self._uploads: dict[str, UploadRecord] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._blobs: dict[Digest, BlobObject] = {}

    async def create_upload(self, record: UploadRecord) -> None:
        if record.id in self._uploads:
            raise ValueError(f"upload {record.id} exists")
        self._uploads[record.id] = dataclasses.replace(_copy(record), updated=time.time())
        self._locks[record.id] = asyncio.Lock()

    async def find_upload(self, upload_id: str) -> UploadRecord | None:
        found = self._uploads.get(upload_id)
        return None if found is None else _copy(found)

    @contextlib.asynccontextmanager
    async def hold_upload(self, upload_id: str) -> AsyncIterator[UploadRecord | None]:
        lock = self._locks.get(upload_id)
        if lock is None:
            yield None
            return
        async with lock:
            found = self._uploads.get(upload_id)  # ended while we waited?
            yield None if found is None else _copy(found)

    async def save_upload(self, record: UploadRecord) -> None:
        if record.id in self._uploads:
            self._uploads[record.id] = dataclasses.replace(_copy(record), updated=time.time())

    async def end_upload(self, upload_id: str) -> None:
        self._uploads.pop(upload_id, None)
        self._locks.pop(upload_id, None)

    async def idle_uploads(self, before: float) -> list[UploadRecord]:
        return [
            _copy(record)
            for upload_id, record in self._uploads.items()
            if record.updated < before and not self._locks[upload_id].locked()
        ]

    async def blob(self, digest: Digest) -> BlobObject | None:
        return self._blobs.get(digest)

    async def add_blob(self, blob: BlobObject) -> bool:
        held = self._blobs.get(blob.digest)
        if held is not None:
            self._blobs[blob.digest] = dataclasses.replace(held, modified=blob.modified)
            return False
        self._blobs[blob.digest] = blob
        return True

    async def blobs(self) -> AsyncIterator[BlobObject]:
        for blob in list(self._blobs.values()):
            yield blob

    async def remove_blobs(self, digests: Sequence[Digest]) -> list[BlobObject]:
        return [blob for d in digests if (blob := self._blobs.pop(d, None)) is not None]
