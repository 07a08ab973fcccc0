"""Mark-and-sweep garbage collection over the two ports.

Mark: every manifest and every digest a manifest references (config, layers, index children,
subject), in any repository. A repository's link alone does not keep a blob: a layer of a
deleted image is garbage, though its repository still links it.
Sweep: every other blob that is older than the grace period (counted from when its bytes were
written and its latest link, whichever is later) is deleted, after its links are removed (so
``HEAD`` answers 404, never 200 with no bytes). The grace period keeps the blobs of a push in
progress: a client uploads the layers first and the manifest that references them last.

In-flight work is protected by the metadata store's ``gc_lock``: everything that makes a blob
visible or links one (upload commit, manifest put, mount) holds it shared from before it checks
or writes the bytes until its link has committed, and the collector holds it exclusively from
the mark to the end of the sweep. So bytes are never swept between "they are there" and "the
link is committed", and a manifest is never stored referencing a blob being swept (its check
finds the link gone and answers MANIFEST_BLOB_UNKNOWN). Uploads in progress are not blobs yet;
idle ones are removed by upload expiry instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...oci.digest import Digest
from ..ports import BlobStore, MetadataStore

if TYPE_CHECKING:
    from .retention import Deletion

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
    # What retention deleted before the mark (or, in a dry run, would): tags and manifests.
    retention: list[Deletion] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        return {
            "tags_deleted": sum(1 for item in self.retention if item.tag is not None),
            "manifests_deleted": sum(1 for item in self.retention if item.tag is None),
            "blobs_kept": self.blobs_kept,
            "blobs_removed": self.blobs_removed,
            "bytes_freed": self.bytes_freed,
        }


def ago(seconds: float) -> str:
    """A duration as a report says it: 90 s, 5 min, 3 h, 4 d."""
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} d"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


def _reason(links: tuple[int, float] | None, age: float) -> str:
    if links is None:
        return f"no manifest references it and no repository links it (written {ago(age)} ago)"
    count, _ = links
    where = "repository" if count == 1 else "repositories"
    return f"no manifest references it; linked in {count} {where}, last {ago(age)} ago"


async def collect(
    blobs: BlobStore, meta: MetadataStore, grace: float = DEFAULT_GRACE, dry_run: bool = False
) -> GcReport:
    """Run one collection."""
    kept = 0
    garbage: list[tuple[Garbage, Digest]] = []
    async with meta.gc_lock(exclusive=True):
        now = time.time()
        marked = await meta.referenced_digests()
        links = await meta.links()
        async for entry in blobs.list():
            name = str(entry.digest)
            linked = links.get(name)
            age = now - max(entry.modified, linked[1] if linked else 0.0)
            if name in marked or age < grace:
                kept += 1
                continue
            garbage.append((Garbage(name, entry.size, _reason(linked, age)), entry.digest))
        if not dry_run:
            unlink = [item.digest for item, _ in garbage if item.digest in links]
            await meta.unlink_everywhere(unlink)
            await blobs.delete([digest for _, digest in garbage])
    removed = [item for item, _ in garbage]
    return GcReport(
        blobs_kept=kept,
        blobs_removed=len(removed),
        bytes_freed=sum(item.size for item in removed),
        dry_run=dry_run,
        removed=removed,
    )
