"""A job shared by the worker processes of one data directory: one run per interval, whichever
worker gets there first (a marker file records when). Scheduled GC (``gc.last``) and the
scheduled sync use it."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


async def collect_if_due(
    marker: Path, interval: float, collect: Callable[[], Awaitable[T]]
) -> T | None:
    """``collect()``, unless another process is collecting now or finished one less than
    ``interval`` seconds ago (``marker`` holds when)."""
    fd = os.open(marker, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        try:
            last = float(os.pread(fd, 64, 0) or b"0")
        except ValueError:
            last = 0.0  # a torn marker: collect
        if time.time() - last < interval * 0.9:
            return None
        report = await collect()
        stamp = b"%.3f" % time.time()
        os.ftruncate(fd, 0)
        os.pwrite(fd, stamp, 0)
        return report
    finally:
        os.close(fd)  # releases the flock
