"""Upload sessions of the embedded store, kept on disk so that any worker process can continue any
upload.

``uploads/<id>/`` holds ``data`` (the bytes received so far) and ``state.json``
(``{"repo": ..., "offset": ...}``, replaced atomically after each successful append, once the
data is fdatasynced: the recorded offset never exceeds durable data). Every operation on an
upload holds ``flock(LOCK_EX)`` on its ``data`` file, so concurrent PATCHes from different
processes are serialised; on taking the lock, bytes past the recorded offset (a crashed or failed
append) are truncated away. A running sha256 per upload is cached in process memory keyed by
offset; the bytes below a recorded offset never change, so a stale entry is caught up by hashing
only the file's tail, and a missing one by hashing the whole file.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import re
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.to_thread

from ...oci.digest import Hasher, new_hasher
from ...oci.errors import BlobUploadUnknown, RangeInvalid, SizeInvalid
from .blobfiles import hash_fd, start_writeback

BATCH = 1024 * 1024
_ID = re.compile(r"[0-9a-f]{32}")  # fullmatch: "$" allows a final "\n"
_CACHE_SIZE = 1024
# Hashing runs beside the write of the same batch; sha256 releases the GIL.
_HASH_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="ocigate-hash")


@dataclass(slots=True)
class Session:
    """A locked upload. ``hasher`` is the sha256 of the data's first ``hash_offset`` bytes."""

    id: str
    repo: str
    dir: Path
    fd: int
    offset: int
    hash_offset: int = 0
    hasher: Hasher = field(default_factory=lambda: new_hasher("sha256"))

    @property
    def data_path(self) -> Path:
        return self.dir / "data"


def _unknown(upload_id: str) -> BlobUploadUnknown:
    return BlobUploadUnknown({"upload": upload_id[:64]})


class Uploads:
    def __init__(self, data_dir: Path, tmp: Path) -> None:
        self.root = data_dir / "uploads"
        self.tmp = tmp
        self.root.mkdir(parents=True, exist_ok=True)
        self._hashes: OrderedDict[str, tuple[int, Hasher]] = OrderedDict()
        self._hashes_lock = threading.Lock()

    def dir(self, upload_id: str) -> Path:
        """The upload's directory; the id is checked strictly before it touches a path."""
        if not isinstance(upload_id, str) or not _ID.fullmatch(upload_id):
            raise _unknown(upload_id if isinstance(upload_id, str) else "")
        return self.root / upload_id

    # -- state -----------------------------------------------------------------------------

    @staticmethod
    def _write_state(directory: Path, repo: str, offset: int, *, sync: bool) -> None:
        temp = directory / "state.tmp"
        with open(temp, "wb") as f:
            f.write(json.dumps({"repo": repo, "offset": offset}).encode())
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.rename(temp, directory / "state.json")

    def _read_state(self, upload_id: str) -> tuple[str, int]:
        try:
            state = json.loads((self.dir(upload_id) / "state.json").read_bytes())
            repo, offset = state["repo"], state["offset"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise _unknown(upload_id) from exc
        if not isinstance(repo, str) or not isinstance(offset, int):
            raise _unknown(upload_id)
        return repo, offset

    def create(self, repo: str) -> str:
        upload_id = uuid.uuid4().hex
        staging = self.tmp / f"upload-{upload_id}"
        staging.mkdir()
        os.close(os.open(staging / "data", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        self._write_state(staging, repo, 0, sync=False)
        os.rename(staging, self.root / upload_id)
        return upload_id

    def status(self, repo: str, upload_id: str) -> int:
        owner, offset = self._read_state(upload_id)
        if owner != repo:
            raise _unknown(upload_id)
        return offset

    # -- locking ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def locked(self, repo: str, upload_id: str) -> AsyncIterator[Session]:
        directory = self.dir(upload_id)
        try:
            fd = os.open(directory / "data", os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise _unknown(upload_id) from None
        try:
            delay = 0.002
            while True:  # polled, so that a cancelled request never leaves a thread waiting
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await anyio.sleep(delay)
                    delay = min(delay * 2, 0.05)
            # Committed, cancelled or expired while we waited?
            try:
                live = os.stat(directory / "data").st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                live = False
            owner, offset = self._read_state(upload_id)
            if not live or owner != repo:
                raise _unknown(upload_id)
            size = os.fstat(fd).st_size
            if size < offset:
                raise _unknown(upload_id)  # state ahead of data: cannot happen unless corrupted
            if size > offset:
                os.ftruncate(fd, offset)  # leftovers of an append that died mid-way
            session = Session(upload_id, repo, directory, fd, offset)
            with self._hashes_lock:
                cached = self._hashes.get(upload_id)
            if cached is not None and cached[0] <= offset:
                session.hash_offset, session.hasher = cached[0], cached[1].copy()
            yield session
        finally:
            os.close(fd)

    # -- appending -------------------------------------------------------------------------

    @staticmethod
    def _write(session: Session, batch: list[bytes], pos: int) -> None:
        """Write one batch at ``pos`` while a second thread hashes it (both release the GIL)."""
        if session.hash_offset != pos:  # another process appended: hash its bytes first
            hash_fd(session.fd, session.hasher, session.hash_offset, pos)
        data = b"".join(batch)
        hashing = _HASH_POOL.submit(session.hasher.update, data)
        view = memoryview(data)
        at = pos
        try:
            while view:
                written = os.pwrite(session.fd, view, at)
                view, at = view[written:], at + written
            start_writeback(session.fd, pos, len(data))
        finally:
            hashing.result()
        session.hash_offset = pos + len(data)

    async def append(
        self,
        session: Session,
        chunks: AsyncIterable[bytes],
        offset: int | None,
        length: int | None,
    ) -> int:
        """Append a request body at the session's offset; its new offset. On any failure
        (including cancellation) the data is truncated back and the session must be dropped.

        Receiving the next batch overlaps with writing and hashing the previous one: at most
        one batch is in flight, so memory stays at two batches whatever the body size."""
        if offset is not None and offset != session.offset:
            raise RangeInvalid(
                {"offset": session.offset},
                f"upload is at offset {session.offset}, not {offset}",
            )
        loop = asyncio.get_running_loop()
        start = pos = session.offset
        received = batched = 0
        batch: list[bytes] = []
        in_flight: asyncio.Future[None] | None = None
        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                received += len(chunk)
                if length is not None and received > length:
                    raise SizeInvalid({"length": length}, "body longer than Content-Length")
                batch.append(chunk)
                batched += len(chunk)
                if batched >= BATCH:
                    if in_flight is not None:
                        await in_flight
                    in_flight = loop.run_in_executor(None, self._write, session, batch, pos)
                    pos, batch, batched = pos + batched, [], 0
            if length is not None and received != length:
                raise SizeInvalid(
                    {"length": length, "received": received}, "body shorter than Content-Length"
                )
            if in_flight is not None:
                await in_flight
                in_flight = None
            if batch:
                await anyio.to_thread.run_sync(self._write, session, batch, pos)
                pos += batched
        except BaseException:
            if in_flight is not None:
                with anyio.CancelScope(shield=True):  # never truncate under a running write
                    with contextlib.suppress(Exception):
                        await in_flight
            os.ftruncate(session.fd, start)
            raise
        session.offset = pos
        return pos

    def save(self, session: Session) -> None:
        """Make an append durable and record the new offset (blocking; run in a thread)."""
        os.fdatasync(session.fd)
        self._write_state(session.dir, session.repo, session.offset, sync=True)
        self._remember(session)

    def _remember(self, session: Session) -> None:
        if session.hash_offset != session.offset:
            return
        with self._hashes_lock:
            self._hashes[session.id] = (session.offset, session.hasher.copy())
            self._hashes.move_to_end(session.id)
            while len(self._hashes) > _CACHE_SIZE:
                self._hashes.popitem(last=False)

    def digest(self, session: Session, algorithm: str) -> str:
        """The hex digest of the whole upload (blocking; run in a thread)."""
        if algorithm == "sha256":
            if session.hash_offset != session.offset:
                hash_fd(session.fd, session.hasher, session.hash_offset, session.offset)
                session.hash_offset = session.offset
            return session.hasher.hexdigest()
        return hash_fd(session.fd, new_hasher(algorithm), 0, session.offset).hexdigest()

    # -- removal ---------------------------------------------------------------------------

    def remove(self, upload_id: str) -> None:
        """Delete an upload (its state first: a waiter then sees it gone). Caller holds the lock."""
        with self._hashes_lock:
            self._hashes.pop(upload_id, None)
        directory = self.dir(upload_id)
        if directory.is_dir():
            (directory / "state.json").unlink(missing_ok=True)
            shutil.rmtree(directory, ignore_errors=True)
        else:
            directory.unlink(missing_ok=True)

    def expire(self, max_age: float) -> int:
        """Remove uploads idle for more than ``max_age`` seconds and not locked; how many."""
        removed = 0
        for entry in os.scandir(self.root):
            if not _ID.fullmatch(entry.name) or self._fresh(Path(entry.path), max_age):
                continue
            try:
                fd = os.open(Path(entry.path) / "data", os.O_RDONLY | os.O_CLOEXEC)
            except (FileNotFoundError, NotADirectoryError):
                fd = None
            try:
                if fd is not None:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        continue  # in use right now
                if not self._fresh(Path(entry.path), max_age):  # re-check under the lock
                    self.remove(entry.name)
                    removed += 1
            finally:
                if fd is not None:
                    os.close(fd)
        return removed

    @staticmethod
    def _fresh(directory: Path, max_age: float) -> bool:
        """Whether an upload saw activity (created or appended) within ``max_age`` seconds."""
        try:
            mtime = (directory / "state.json").stat().st_mtime
        except OSError:  # a crash left no state (or something that is not an upload)
            try:
                mtime = directory.stat().st_mtime
            except FileNotFoundError:
                return True  # gone already
        return time.time() - mtime <= max_age
