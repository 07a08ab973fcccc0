"""The embedded store: blobs as content-addressed files, metadata in SQLite, on one data directory
shared safely by several worker processes (each with its own ``EmbeddedStore``).

Layout under ``data_dir``::

    blobs/<alg>/<hex[:2]>/<hex>   verified, read-only blob files (layers, configs, manifest bytes),
                                  shared by all repositories: a blob pushed twice is stored once
    uploads/<uuid4 hex>/data      bytes received so far by an upload session
    uploads/<uuid4 hex>/state.json  {"repo", "offset"}: owner and durable offset (atomic replace)
    tmp/                          temporary files and upload staging dirs; never visible, swept
                                  by ``expire_uploads`` once older than the upload expiry
    meta.db (+ -wal, -shm)        SQLite: repositories, repo_blobs, manifests, tags, manifest_refs
    gc.lock                       flock: shared by commits/links, exclusive for the GC sweep

Write order is always: blob file complete, fsynced and renamed into ``blobs/`` first, then the
metadata transaction that links it, so after a crash metadata never points at a missing file (at
worst an unlinked file is left for GC). See ``uploads``, ``metadata``, ``gc`` for the details.

Repositories exist from their first linked blob or manifest and stay listed after everything in
them is deleted. Deleting a blob or manifest only removes links; files go with ``collect_garbage``
once no manifest references them (see ``gc``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import anyio.to_thread

from ..oci.descriptors import Descriptor
from ..oci.digest import Digest
from ..oci.errors import BlobUnknown, DigestInvalid, ManifestUnknown, NameUnknown
from ..oci.manifests import Manifest
from ..registry import BlobBody, ByteRange, Chunks, ManifestInfo, Page, StoredManifest, UploadState
from . import gc
from .blobfiles import BlobFiles
from .gc import GcReport
from .metadata import Metadata
from .stamped_cache import StampedCache
from .uploads import Session, Uploads

__all__ = ["EmbeddedStore", "GcReport"]

run = anyio.to_thread.run_sync
CACHE_SECONDS = 2.0


async def _no_chunks() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover


def _blob_unknown(digest: Digest) -> BlobUnknown:
    return BlobUnknown({"digest": str(digest)})


def _page_weight(page: Page) -> int:
    return 1 + len(page.items)  # an empty answer still takes room


def _list_weight(items: list[Descriptor]) -> int:
    return 1 + len(items)


def _manifest_unknown(reference: str) -> ManifestUnknown:
    return ManifestUnknown({"reference": reference[:300]})


class EmbeddedStore:
    # Metadata.changing() decides and writes the events layer's staged events in the change's
    # own transaction (see store.outbox).
    stages_events = True

    def __init__(
        self,
        data_dir: Path,
        *,
        sparse_index: bool = False,
        auto_mount: bool = False,
        upload_expiry: int = 86400,
        gc_grace: float = gc.DEFAULT_GRACE,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.sparse_index = sparse_index
        self.auto_mount = auto_mount
        self.upload_expiry = upload_expiry
        self.gc_grace = gc_grace
        self.blobs = BlobFiles(self.data_dir)
        self.uploads = Uploads(self.data_dir, self.blobs.tmp)
        self.meta = Metadata(self.data_dir / "meta.db")
        stamp = self.meta.stamp
        self._manifests: StampedCache[tuple[str, str], StoredManifest]
        self._manifests = StampedCache(stamp, CACHE_SECONDS, capacity=64 * 1024)  # KiB
        self._tags: StampedCache[tuple[str, str | None, int | None], Page]
        self._tags = StampedCache(stamp, CACHE_SECONDS, capacity=100_000)  # names
        self._referrers: StampedCache[tuple[str, Digest, str | None], list[Descriptor]]
        self._referrers = StampedCache(stamp, CACHE_SECONDS, capacity=20_000)  # descriptors
        self._catalog: StampedCache[tuple[str | None, int | None], Page]
        self._catalog = StampedCache(stamp, CACHE_SECONDS, capacity=100_000)  # names

    # -- blobs -----------------------------------------------------------------------------

    async def stat_blob(self, repo: str, digest: Digest) -> int:
        size = self.meta.blob_size(repo, digest)
        if size is None:
            raise _blob_unknown(digest)
        return size

    async def get_blob(self, repo: str, digest: Digest, byte_range: ByteRange | None) -> BlobBody:
        size = await self.stat_blob(repo, digest)
        start, end = byte_range.resolve(size) if byte_range is not None else (0, size - 1)
        fd = self.blobs.open(digest)
        if fd is None:  # linked but missing: damaged store (fsck reports it)
            raise _blob_unknown(digest)
        return BlobBody(digest=digest, size=size, start=start, length=end - start + 1, fd=fd)

    async def delete_blob(self, repo: str, digest: Digest) -> None:
        if not await run(self.meta.unlink_blob, repo, digest):
            raise _blob_unknown(digest)

    # -- uploads ---------------------------------------------------------------------------

    async def start_upload(self, repo: str) -> UploadState:
        return UploadState(await run(self.uploads.create, repo), 0)

    async def upload_status(self, repo: str, upload_id: str) -> UploadState:
        return UploadState(upload_id, self.uploads.status(repo, upload_id))

    async def write_upload(
        self, repo: str, upload_id: str, chunks: Chunks, offset: int | None, length: int | None
    ) -> UploadState:
        async with self.uploads.locked(repo, upload_id) as session:
            before = session.offset
            await self.uploads.append(session, chunks, offset, length)
            if session.offset != before:
                await run(self.uploads.save, session)
            return UploadState(upload_id, session.offset)

    async def commit_upload(
        self,
        repo: str,
        upload_id: str,
        digest: Digest,
        chunks: Chunks | None,
        offset: int | None,
        length: int | None,
    ) -> int:
        async with self.uploads.locked(repo, upload_id) as session:
            body = chunks if chunks is not None else _no_chunks()
            await self.uploads.append(session, body, offset, length)
            return await run(self._commit, session, digest)

    def _commit(self, session: Session, digest: Digest) -> int:
        actual = self.uploads.digest(session, digest.algorithm)
        if actual != digest.encoded:
            self.uploads.remove(session.id)
            raise DigestInvalid(
                {"digest": str(digest), "actual": f"{digest.algorithm}:{actual}"},
                "provided digest did not match uploaded content",
            )
        os.fsync(session.fd)
        with self.blobs.gc_lock(exclusive=False):
            self.blobs.adopt(session.data_path, digest)
            self.meta.link_blob(session.repo, digest, session.offset)
        self.uploads.remove(session.id)
        return session.offset

    async def cancel_upload(self, repo: str, upload_id: str) -> None:
        async with self.uploads.locked(repo, upload_id) as session:
            await run(self.uploads.remove, session.id)

    async def mount_blob(self, repo: str, source: str | None, digest: Digest) -> int:
        return await run(self._mount, repo, source, digest)

    def _mount(self, repo: str, source: str | None, digest: Digest) -> int:
        with self.blobs.gc_lock(exclusive=False):
            if source is not None:
                size = self.meta.blob_size(source, digest)
            elif self.auto_mount:
                size = self.meta.blob_holder_size(digest)
            else:
                size = None
            if size is None or self.blobs.size(digest) is None:
                raise _blob_unknown(digest)
            self.meta.link_blob(repo, digest, size)
            return size

    async def expire_uploads(self) -> int:
        """Remove upload sessions idle for longer than ``upload_expiry`` seconds (and stale
        temporary files); how many uploads were removed."""

        def expire() -> int:
            self.blobs.sweep_tmp(self.upload_expiry)
            return self.uploads.expire(self.upload_expiry)

        return await run(expire)

    # -- manifests and tags ----------------------------------------------------------------

    async def stat_manifest(self, repo: str, reference: str) -> ManifestInfo:
        return (await self.get_manifest(repo, reference)).info()

    async def get_manifest(self, repo: str, reference: str) -> StoredManifest:
        # Pulls by tag are the hot path: a lookup in memory, a query (inline: one indexed row)
        # only after a change.
        key = (repo, reference)
        found, stamp = self._manifests.lookup(key)
        if found is None:
            found = self._load_manifest(repo, reference)
            self._manifests.store(key, found, stamp, 1 + len(found.data) // 1024)
        return found

    def _load_manifest(self, repo: str, reference: str) -> StoredManifest:
        if ":" in reference:
            digest = Digest.parse(reference)
            found = self.meta.manifest_by_digest(repo, digest)
            if found is None:
                raise _manifest_unknown(reference)
            return StoredManifest(digest, found[0], found[1])
        row = self.meta.manifest_by_tag(repo, reference)
        if row is None:
            raise _manifest_unknown(reference)
        algorithm, _, encoded = row[0].partition(":")
        return StoredManifest(Digest(algorithm, encoded), row[1], row[2])

    async def put_manifest(
        self, repo: str, manifest: Manifest, data: bytes, tags: Sequence[str]
    ) -> None:
        await run(self._put_manifest, repo, manifest, data, tuple(tags))

    def _put_manifest(
        self, repo: str, manifest: Manifest, data: bytes, tags: tuple[str, ...]
    ) -> None:
        # Fail fast before writing anything; the check is repeated inside the transaction.
        self.meta.check_references(repo, manifest, sparse_index=self.sparse_index)
        with self.blobs.gc_lock(exclusive=False):
            self.blobs.write(manifest.digest, data)
            self.meta.put_manifest(repo, manifest, data, tags, sparse_index=self.sparse_index)

    async def delete_manifest(self, repo: str, digest: Digest) -> None:
        if not await run(self.meta.delete_manifest, repo, digest):
            raise _manifest_unknown(str(digest))

    async def delete_tag(self, repo: str, tag: str) -> None:
        if not await run(self.meta.delete_tag, repo, tag):
            raise _manifest_unknown(tag)

    async def list_tags(self, repo: str, last: str | None, n: int | None) -> Page:
        def list_() -> Page:
            if not self.meta.repo_exists(repo):
                raise NameUnknown({"name": repo[:300]})
            return Page(*self.meta.list_tags(repo, last, n))

        # Polled by image updaters: kept while nothing changes, queried in a thread otherwise
        # (a page may hold every tag of a large repository).
        found = await self._tags.get((repo, last, n), lambda: run(list_), _page_weight)
        return Page(list(found.items), found.more)  # the caller's to keep or change

    async def list_referrers(
        self, repo: str, digest: Digest, artifact_type: str | None
    ) -> list[Descriptor]:
        # Asked by signature verifiers on every admission of an image.
        key = (repo, digest, artifact_type)
        found = await self._referrers.get(
            key, lambda: run(self.meta.referrers, repo, digest, artifact_type), _list_weight
        )
        return list(found)  # the caller's to keep or change

    async def list_repositories(self, last: str | None, n: int | None) -> Page:
        def list_() -> Page:
            return Page(*self.meta.list_repositories(last, n))

        found = await self._catalog.get((last, n), lambda: run(list_), _page_weight)
        return Page(list(found.items), found.more)  # the caller's to keep or change

    # -- maintenance -----------------------------------------------------------------------

    async def collect_garbage(
        self, grace: float | None = None, *, dry_run: bool = False
    ) -> GcReport:
        """Delete what no manifest references and is older than ``grace`` seconds (default:
        the store's ``gc_grace``); with ``dry_run`` only report it."""
        grace = self.gc_grace if grace is None else grace
        return await run(gc.collect, self.blobs, self.meta, grace, dry_run)

    async def collect_garbage_if_due(self, interval: float) -> GcReport | None:
        """A scheduled collection: None when another worker ran one within ``interval``."""
        marker = self.data_dir / "gc.last"
        return await run(gc.collect_if_due, self.blobs, self.meta, marker, interval, self.gc_grace)

    async def close(self) -> None:
        self.meta.close()
