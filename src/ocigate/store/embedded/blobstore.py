"""The embedded store's ``BlobStore`` (``store.ports``): blob files plus upload sessions on disk.

Bytes live in ``blobfiles`` (verified, read-only files), uploads in ``uploads`` (any worker
process continues any upload). A commit verifies the digest, fsyncs the data and renames it into
``blobs/`` before the caller's metadata transaction links it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import anyio.to_thread

from ...oci.digest import Digest
from ...oci.errors import DigestInvalid
from ...registry import Chunks, FileRange
from ..ports import BlobEntry, StagedUpload
from .blobfiles import BlobFiles
from .uploads import Session, Uploads

run = anyio.to_thread.run_sync


class _LocalUpload:
    """A locked upload session (``StagedUpload``)."""

    def __init__(self, store: LocalBlobStore, session: Session) -> None:
        self._store = store
        self._session = session

    @property
    def id(self) -> str:
        return self._session.id

    @property
    def repo(self) -> str:
        return self._session.repo

    @property
    def offset(self) -> int:
        return self._session.offset

    async def append(self, chunks: Chunks, offset: int | None, length: int | None) -> int:
        return await self._store.uploads.append(self._session, chunks, offset, length)

    async def save(self) -> None:
        await run(self._store.uploads.save, self._session)

    async def commit(self, digest: Digest) -> int:
        return await run(self._commit, digest)

    def _commit(self, digest: Digest) -> int:
        session, uploads = self._session, self._store.uploads
        actual = uploads.digest(session, digest.algorithm)
        if actual != digest.encoded:
            uploads.remove(session.id)
            raise DigestInvalid(
                {"digest": str(digest), "actual": f"{digest.algorithm}:{actual}"},
                "provided digest did not match uploaded content",
            )
        os.fsync(session.fd)
        self._store.files.adopt(session.data_path, digest)
        uploads.remove(session.id)
        return session.offset

    async def discard(self) -> None:
        await run(self._store.uploads.remove, self._session.id)


class LocalBlobStore:
    def __init__(self, data_dir: Path) -> None:
        self.files = BlobFiles(data_dir)
        self.uploads = Uploads(data_dir, self.files.tmp)

    async def size(self, digest: Digest) -> int | None:
        return self.files.size(digest)

    async def open(self, digest: Digest, size: int, start: int, length: int) -> FileRange | None:
        fd = self.files.open(digest)
        if fd is None:
            return None
        return FileRange(digest, size, start, length, fd)

    async def write(self, digest: Digest, data: bytes) -> None:
        await run(self.files.write, digest, data)

    async def start_upload(self, repo: str) -> str:
        return await run(self.uploads.create, repo)

    async def upload_offset(self, repo: str, upload_id: str) -> int:
        return self.uploads.status(repo, upload_id)

    @contextlib.asynccontextmanager
    async def upload(self, repo: str, upload_id: str) -> AsyncIterator[StagedUpload]:
        async with self.uploads.locked(repo, upload_id) as session:
            yield _LocalUpload(self, session)

    async def expire_uploads(self, max_age: float) -> int:
        def expire() -> int:
            self.files.sweep_tmp(max_age)
            return self.uploads.expire(max_age)

        return await run(expire)

    async def list(self) -> AsyncIterator[BlobEntry]:
        def entries() -> list[BlobEntry]:
            found = []
            for digest, path in self.files.walk():
                if digest is None:  # not a blob (fsck reports it)
                    continue
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                found.append(BlobEntry(digest, stat.st_size, stat.st_mtime))
            return found

        for entry in await run(entries):
            yield entry

    async def delete(self, digests: Sequence[Digest]) -> None:
        def delete() -> None:
            for digest in digests:
                self.files.path(digest).unlink(missing_ok=True)

        await run(delete)

    async def close(self) -> None:
        pass  # nothing held open between calls
