"""``gc.lock``: the embedded store's shared/exclusive lock between commits and the GC sweep.

An ``flock`` on one file of the data directory, so it holds across the worker processes (and
between two open descriptors of one process): commits, links and fsck hold it shared, the
collector exclusively (see ``core.gc``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio.to_thread


class FileLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch(exist_ok=True)

    @contextlib.contextmanager
    def held(self, *, exclusive: bool) -> Iterator[None]:
        """Blocking: for code already running in a thread."""
        fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    @contextlib.asynccontextmanager
    async def hold(self, *, exclusive: bool) -> AsyncIterator[None]:
        """Taken at once when free (the usual case for a commit), else waited for in a thread."""
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        try:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                await anyio.to_thread.run_sync(fcntl.flock, fd, mode)
            yield
        finally:
            os.close(fd)
