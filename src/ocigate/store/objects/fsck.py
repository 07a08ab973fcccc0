"""Online consistency check of the objects backend (read-only; safe with replicas running).

Problems: a blob whose segments are missing, of the wrong size or whose bytes do not hash to its
digest; metadata pointing at blobs or manifests that do not exist; a manifest whose stored bytes
do not hash to its digest. Info: what a crash or a client may legitimately leave behind and no
client sees: upload sessions in progress or abandoned (removed by upload expiry) and objects in
the bucket no blob or upload references (a replica killed mid-PATCH; garbage collection's
``delete`` runs after the rows are gone, so a crash there leaves some too).

It holds the GC lock shared, as a commit does, so a collection cannot delete what it compares.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..embedded.fsck import FsckReport, check_manifest_row
from .store import ObjectsStore

SEGMENTS = "segments/"


async def check(store: ObjectsStore, *, rehash: bool = True) -> FsckReport:
    report = FsckReport()
    async with store.meta.gc_lock(exclusive=False):
        held = await _check_blobs(store, report, rehash)
        await _check_metadata(store, held, report)
        await _check_leftovers(store, held, report)
    return report


@dataclass(slots=True)
class _Held:
    sizes: dict[str, int] = field(default_factory=dict)  # digest -> size, of indexed blobs
    keys: set[str] = field(default_factory=set)  # every segment key referenced


async def _check_blobs(store: ObjectsStore, report: FsckReport, rehash: bool) -> _Held:
    held = _Held()
    bucket = store.blobs.bucket
    async for blob in store.blobs.ledger.blobs():
        name = str(blob.digest)
        held.sizes[name] = blob.size
        held.keys.update(segment.key for segment in blob.segments)
        damaged = False
        for segment in blob.segments:
            size = await bucket.size(segment.key)
            if size is None:
                report.problems.append(f"blob {name}: segment {segment.key} is missing")
                damaged = True
            elif size != segment.size:
                report.problems.append(
                    f"blob {name}: segment {segment.key} has {size} bytes, not {segment.size}"
                )
                damaged = True
        if sum(segment.size for segment in blob.segments) != blob.size:
            report.problems.append(f"blob {name}: its segments do not add up to {blob.size}")
        elif rehash and not damaged:
            actual = await store.blobs.rehash(blob.segments, blob.digest.algorithm)
            if actual != blob.digest.encoded:
                report.problems.append(
                    f"blob {name}: corrupted, content hashes to {blob.digest.algorithm}:{actual}"
                )
    return held


async def _check_metadata(store: ObjectsStore, held: _Held, report: FsckReport) -> None:
    async with store.database.transaction() as conn:
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        manifests: set[tuple[str, str]] = set()
        for repo, digest, data, size in await conn.fetch(
            "SELECT repo, digest, data, size FROM manifests"
        ):
            manifests.add((repo, digest))
            check_manifest_row(repo, digest, bytes(data), size, report)
            if digest not in held.sizes:
                report.problems.append(f"manifest {repo}@{digest}: its blob is missing")
        for repo, digest, size in await conn.fetch("SELECT repo, digest, size FROM repo_blobs"):
            if digest not in held.sizes:
                report.problems.append(f"repository {repo} links missing blob {digest}")
            elif held.sizes[digest] != size:
                report.problems.append(
                    f"repository {repo} records size {size} for {digest}"
                    f" of {held.sizes[digest]} bytes"
                )
        for repo, tag, digest in await conn.fetch("SELECT repo, tag, digest FROM tags"):
            if (repo, digest) not in manifests:
                report.problems.append(f"tag {repo}:{tag} points at missing manifest {digest}")
        for repo, manifest, digest, kind in await conn.fetch(
            "SELECT repo, manifest, digest, kind FROM manifest_refs"
        ):
            if (repo, manifest) not in manifests:
                report.problems.append(f"reference from missing manifest {repo}@{manifest}")
            elif kind == "blob" and digest not in held.sizes:
                report.problems.append(
                    f"manifest {repo}@{manifest} references missing blob {digest}"
                )
        for upload_id, segments in await conn.fetch("SELECT id, segments FROM object_uploads"):
            report.info.append(f"upload {upload_id}: unfinished")
            held.keys.update(key for key, _ in json.loads(segments))


async def _check_leftovers(store: ObjectsStore, held: _Held, report: FsckReport) -> None:
    async for key in store.blobs.bucket.keys(SEGMENTS):
        if key not in held.keys:
            report.info.append(f"object {key}: referenced by no blob or upload")
