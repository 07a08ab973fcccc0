"""Mark-and-sweep garbage collection of the embedded store's blob files.

Mark: every manifest and every digest a manifest references (config, layers, index children,
subject), in any repository. A repository's link alone does not keep a blob: a layer of a
deleted image is garbage, though its repository still links it.
Sweep: every other file under ``blobs/`` that is older than the grace period (counted from its
file's time and its latest link, whichever is later) is deleted, after its links are removed (so
``HEAD`` answers 404, never 200 with no bytes). The grace period keeps the blobs of a push in
progress: a client uploads the layers first and the manifest that references them last.

In-flight work is protected by ``gc.lock``: everything that makes a blob file visible or links
one (upload commit, manifest put, mount) holds it shared from before it checks or creates the
file until its metadata transaction has committed, and the collector holds it exclusively from
the mark to the end of the sweep. So a file is never swept between "the file is there" and "the
link is committed", and a manifest is never stored referencing a blob being swept (its check
finds the link gone and answers MANIFEST_BLOB_UNKNOWN). Uploads still in progress live under
``uploads/``, which the collector never touches; idle ones are removed by upload expiry instead.
"""

from __future__ import annotations

import fcntl
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .blobfiles import BlobFiles
from .metadata import Metadata

DEFAULT_GRACE = 3600.0


@dataclass(frozen=True, slots=True)
class Garbage:
    digest: str
    size: int
    reason: str


@dataclass(frozen=True, slots=True)
class GcReport:
    blobs_kept: int
    blobs_removed: int
    bytes_freed: int
    dry_run: bool = False
    removed: list[Garbage] = field(default_factory=list)  # or, in a dry run, what would be

    def summary(self) -> dict[str, int]:
        return {
            "blobs_kept": self.blobs_kept,
            "blobs_removed": self.blobs_removed,
            "bytes_freed": self.bytes_freed,
        }


def _ago(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} d"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


def _reason(links: tuple[int, float] | None, age: float) -> str:
    if links is None:
        return f"no manifest references it and no repository links it (written {_ago(age)} ago)"
    count, _ = links
    where = "repository" if count == 1 else "repositories"
    return f"no manifest references it; linked in {count} {where}, last {_ago(age)} ago"


def collect(
    blobs: BlobFiles, meta: Metadata, grace: float = DEFAULT_GRACE, dry_run: bool = False
) -> GcReport:
    """Run one collection (blocking; run it in a thread)."""
    kept = 0
    garbage: list[tuple[Garbage, Path]] = []
    with blobs.gc_lock(exclusive=True):
        now = time.time()
        marked = meta.referenced_digests()
        links = meta.links()
        for digest, path in blobs.walk():
            if digest is None:
                continue
            name = str(digest)
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            linked = links.get(name)
            age = now - max(stat.st_mtime, linked[1] if linked else 0.0)
            if name in marked or age < grace:
                kept += 1
                continue
            garbage.append((Garbage(name, stat.st_size, _reason(linked, age)), path))
        if not dry_run:
            meta.unlink_everywhere([item.digest for item, _ in garbage if item.digest in links])
            for _, path in garbage:
                path.unlink(missing_ok=True)
    removed = [item for item, _ in garbage]
    return GcReport(
        blobs_kept=kept,
        blobs_removed=len(removed),
        bytes_freed=sum(item.size for item in removed),
        dry_run=dry_run,
        removed=removed,
    )


def collect_if_due(
    blobs: BlobFiles, meta: Metadata, marker: Path, interval: float, grace: float
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
        report = collect(blobs, meta, grace)
        stamp = b"%.3f" % time.time()
        os.ftruncate(fd, 0)
        os.pwrite(fd, stamp, 0)
        return report
    finally:
        os.close(fd)  # releases the flock
