"""A change stamp shared by every process on one data directory.

Eight bytes in ``meta.stamp``, mapped into memory: every metadata commit writes new random bytes,
so a process can tell in a memory read whether anything changed since it last looked, and keep
hot-path answers (manifests by tag) in memory without a database query per request. Without a
path the bytes are anonymous memory: a stamp for one process (the memory store's).
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

SIZE = 8


class Stamp:
    def __init__(self, path: Path | None) -> None:
        if path is None:
            self._map = mmap.mmap(-1, SIZE)
            return
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size < SIZE:
                os.ftruncate(fd, SIZE)
            self._map = mmap.mmap(fd, SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)

    def read(self) -> bytes:
        return self._map[:SIZE]

    def bump(self) -> None:
        """Called after each commit; random bytes, so concurrent bumps never cancel out."""
        self._map[:SIZE] = os.urandom(SIZE)
