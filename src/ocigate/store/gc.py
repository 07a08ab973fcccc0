"""Mark-and-sweep garbage collection of the embedded store's blob files.

Mark: every digest some repository links, some manifest references, or that is a manifest.
Sweep: every file under ``blobs/`` whose digest is not marked is deleted.

In-flight work is protected by ``gc.lock``: everything that makes a blob file visible or links
one (upload commit, manifest put, mount) holds it shared from before it checks or creates the
file until its metadata transaction has committed, and the collector holds it exclusively from
the mark to the end of the sweep. So a file is never swept between "the file is there" and "the
link is committed" (an age threshold would not cover a commit that finds an old orphaned copy of
its blob already present and reuses it). Uploads still in progress live under ``uploads/``, which
the collector never touches; idle ones are removed by upload expiry instead.
"""

from __future__ import annotations

import fcntl
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .blobfiles import BlobFiles
from .metadata import Metadata


@dataclass(frozen=True, slots=True)
class GcReport:
    blobs_kept: int
    blobs_removed: int
    bytes_freed: int


def collect(blobs: BlobFiles, meta: Metadata) -> GcReport:
    """Run one collection (blocking; run it in a thread)."""
    kept = removed = freed = 0
    with blobs.gc_lock(exclusive=True):
        marked = meta.referenced_digests()
        for digest, path in blobs.walk():
            if digest is None or str(digest) in marked:
                kept += digest is not None
                continue
            try:
                size = path.stat().st_size
                os.unlink(path)
            except FileNotFoundError:
                continue
            removed += 1
            freed += size
    return GcReport(blobs_kept=kept, blobs_removed=removed, bytes_freed=freed)


def collect_if_due(
    blobs: BlobFiles, meta: Metadata, marker: Path, interval: float
) -> GcReport | None:
    """One collection, unless another process is collecting now or finished one less than
    ``interval`` seconds ago (``marker`` holds when): the workers of a server each schedule
    collections, and only one of them should run per interval. Blocking; run it in a thread."""
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
        report = collect(blobs, meta)
        stamp = b"%.3f" % time.time()
        os.ftruncate(fd, 0)
        os.pwrite(fd, stamp, 0)
        return report
    finally:
        os.close(fd)  # releases the flock
