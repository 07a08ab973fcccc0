"""One upstream blob download shared by every reader that wants it while it runs ("fill").

The fill is a task of its own, not part of any request: it streams the upstream body into a
temporary file under the cache's ``tmp/``, hashing inline, and renames it into the
content-addressed ``blobs/`` tree only when the digest matches. Readers follow the temporary file
as it grows (``pread`` on a duplicate of its descriptor, which stays valid across the rename), so
the first bytes reach the first client at once and later clients join the same download.

Why a task: an aborted client read then never leaves a partial file behind nor wastes the bytes
fetched so far — the fill finishes (or fails and deletes its file) on its own. Readers are held
back from the blob's last byte until the digest is verified, so a lying upstream can at worst
cause a truncated response, never a complete wrong body.

Sharing is per process: two worker processes pulling one blob at the same moment download it
twice; both verify, and the second rename finds the file in place and drops its copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import uuid
from collections.abc import Awaitable, Callable
from typing import assert_never

from ...oci.digest import Digest, Hasher, new_hasher
from ...oci.errors import BadGateway, OCIError
from ...registry import BlobBody, Chunked, FileRange, Redirect, Stream
from ..embedded.blobfiles import READ_SIZE, BlobFiles, start_writeback


class BlobFill:
    """The state of one download; ``run`` is the task, readers call ``wait_started`` then
    ``reader``."""

    def __init__(self, files: BlobFiles, digest: Digest, on_stored: Callable[[int], None]) -> None:
        self._files = files
        self.digest = digest
        self._on_stored = on_stored
        self._changed = asyncio.Condition()
        self._temp = files.tmp / f"fill-{uuid.uuid4().hex}"
        self._fd: int | None = None  # read-write descriptor of the temporary file
        self.size: int | None = None
        self.written = 0
        self.done = False  # verified and in place
        self.error: OCIError | None = None

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def run(self, open_upstream: Callable[[], Awaitable[BlobBody]]) -> None:
        body: BlobBody | None = None
        try:
            body = await open_upstream()
            stream = _stream(body)
            fd = os.open(self._temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            self._fd, self.size = fd, stream.size
            await self._notify()
            hasher = new_hasher(self.digest.algorithm)
            loop = asyncio.get_running_loop()
            async for piece in stream.chunks:
                # Writing and hashing release the GIL: in a thread they leave the event loop
                # free for other requests (a large first pull would otherwise stall them).
                write = loop.run_in_executor(None, _append, fd, piece, self.written, hasher)
                try:
                    await asyncio.shield(write)
                except asyncio.CancelledError:
                    await asyncio.wait([write])  # the descriptor must outlive the write
                    raise
                self.written += len(piece)
                await self._notify()
            got = Digest(self.digest.algorithm, hasher.hexdigest())
            if self.written != stream.size or got != self.digest:
                raise BadGateway(
                    {"upstream_digest": str(got), "size": self.written},
                    f"upstream sent content that does not match {self.digest}; not cached",
                )
            await asyncio.to_thread(os.fsync, fd)
            self._files.adopt(self._temp, self.digest)
            self._on_stored(stream.size)
            self.done = True
        except OCIError as exc:
            self.error = exc
        except Exception as exc:  # a disk error must still release the waiting readers
            self.error = BadGateway({}, f"caching {self.digest} failed: {exc}")
        except asyncio.CancelledError:
            self.error = BadGateway({}, f"caching {self.digest} was cancelled")
            raise
        finally:
            if not self.done:
                self._temp.unlink(missing_ok=True)
            if body is not None:
                await body.close()
            fd_open, self._fd = self._fd, None
            if fd_open is not None:
                os.close(fd_open)
            with contextlib.suppress(RuntimeError):  # loop closing during cancellation
                await self._notify()

    async def wait_started(self) -> int:
        """The blob's size once the upstream answered; its error when it did not."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.size is not None or self.error is not None)
        if self.size is None:
            assert self.error is not None
            raise self.error
        return self.size

    def reader(self) -> Chunked:
        """The whole blob as it arrives. The descriptor is taken now, so it cannot be missed
        between the fill's rename and the first read."""
        if self._fd is not None:
            fd = os.dup(self._fd)
        elif self.done:
            found = self._files.open(self.digest)
            if found is None:
                raise BadGateway({}, f"cached {self.digest} vanished")
            fd = found
        else:
            raise self.error or BadGateway({}, f"caching {self.digest} failed")
        return _Follower(self, fd)

    def _ready(self, pos: int) -> bool:
        """Whether a reader at ``pos`` can proceed (the last byte waits for verification)."""
        assert self.size is not None
        return self.error is not None or self.done or min(self.written, self.size - 1) > pos

    async def next_piece(self, fd: int, pos: int) -> bytes:
        """The bytes after ``pos`` as soon as they may be served; ``b""`` at the end."""
        assert self.size is not None
        async with self._changed:
            await self._changed.wait_for(functools.partial(self._ready, pos))
        if self.error is not None:
            raise BadGateway(self.error.detail, self.error.message)
        limit = self.size if self.done else min(self.written, self.size - 1)
        if pos >= limit:
            return b""
        data = os.pread(fd, min(READ_SIZE, limit - pos), pos)
        if not data:
            raise BadGateway({}, f"cached {self.digest} is shorter than its size")
        return data


class _Follower:
    """A reader of a fill; owns its descriptor, closed by ``aclose`` even when never iterated
    (an unstarted async generator would skip its ``finally``)."""

    def __init__(self, fill: BlobFill, fd: int) -> None:
        self._fill = fill
        self._fd: int | None = fd
        self._pos = 0

    def __aiter__(self) -> _Follower:
        return self

    async def __anext__(self) -> bytes:
        if self._fd is None:
            raise StopAsyncIteration
        try:
            data = await self._fill.next_piece(self._fd, self._pos)
        except BaseException:
            await self.aclose()
            raise
        if not data:
            await self.aclose()
            raise StopAsyncIteration
        self._pos += len(data)
        return data

    async def aclose(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _stream(body: BlobBody) -> Stream:
    """What a fill copies: the upstream's bytes as they come (an upstream always streams)."""
    match body:
        case Stream():
            return body
        case FileRange() | Redirect():
            raise BadGateway({}, f"the upstream sent no stream but {type(body).__name__}")
        case _:
            assert_never(body)


def _append(fd: int, piece: bytes, offset: int, hasher: Hasher) -> None:
    view = memoryview(piece)
    while view:
        view = view[os.write(fd, view) :]
    start_writeback(fd, offset, len(piece))  # the closing fsync then has little left to do
    hasher.update(piece)
