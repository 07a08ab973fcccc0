"""The pull-through cache: an :class:`UpstreamStore` plus a local copy of what was pulled.

Cache keys (see ``cache_index`` for the tables):

- blob bytes by digest, shared by every repository of the upstream (``blobs/<alg>/<hex>``), plus
  a ``(repo, digest)`` row recording that the upstream served it for that repository;
- manifest bytes by ``(repo, digest)``, byte-exact and verified against the digest;
- ``(repo, tag) -> digest`` with the time the upstream last confirmed it.

Digests are immutable, so a cached digest is served without asking the upstream. A tag younger
than ``tag_ttl`` seconds is served as cached; an older one is revalidated with a HEAD (comparing
``Docker-Content-Digest``) and only fetched again when it moved. When the upstream cannot answer
(unreachable, timeout, 429, 5xx) a cached tag is served anyway with a ``Warning`` header; what is
not cached fails with the upstream's 502/503/504/429.

Blobs are fetched whole and shared by concurrent readers (see ``cache_fill``); ranged reads of a
blob not yet cached go straight to the upstream and are not cached. Listings (tags, referrers,
catalog) always come from the upstream.

Pushes are refused (405 UNSUPPORTED) unless ``push`` is ``"write-through"``: then they are
forwarded to the upstream and the cached entries they change are dropped.

With ``max_size``, blob files beyond that many bytes are evicted least recently served first,
after each download completes (manifests and tags are small and stay). A file removed under a
reader is still read to the end through its open descriptor.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Literal

from ..layers.delegate import Delegate
from ..metrics import BLOB_HIT, BLOB_MISS, MANIFEST_HIT, MANIFEST_MISS
from ..oci.digest import Digest, is_digest
from ..oci.errors import (
    BadGateway,
    GatewayTimeout,
    ManifestUnknown,
    NameUnknown,
    OCIError,
    TooManyRequests,
    Unavailable,
    Unsupported,
)
from ..oci.manifests import Manifest
from ..registry import BlobBody, ByteRange, Chunks, ManifestInfo, StoredManifest, UploadState
from .blobfiles import BlobFiles
from .cache_fill import BlobFill
from .cache_index import CacheIndex
from .upstream import UpstreamStore

PushMode = Literal["reject", "write-through"]
# Errors meaning "the upstream cannot answer now", as opposed to an answer such as 404.
OUTAGE: tuple[type[OCIError], ...] = (BadGateway, GatewayTimeout, Unavailable, TooManyRequests)
TMP_MAX_AGE = 24 * 3600  # temporary files older than this were left by a crash


class CacheStore(Delegate):
    def __init__(
        self,
        upstream: UpstreamStore,
        local_dir: Path,
        tag_ttl: float = 60.0,
        push: PushMode = "reject",
        max_size: int | None = None,
    ) -> None:
        super().__init__(upstream)
        self.upstream = upstream
        self.tag_ttl = tag_ttl
        self.push = push
        self.max_size = max_size
        local_dir.mkdir(parents=True, exist_ok=True)
        self._files = BlobFiles(local_dir)
        self._files.sweep_tmp(TMP_MAX_AGE)
        self._index = CacheIndex(local_dir / "index.db")
        self._fills: dict[tuple[str, Digest], BlobFill] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.upstream_blob_fetches = 0  # for tests: whole-blob downloads started

    # --- blobs -----------------------------------------------------------------------------

    def _local(self, repo: str, digest: Digest) -> tuple[int, int] | None:
        """``(fd, size)`` of a blob cached for ``repo``."""
        size = self._index.blob(repo, digest)
        if size is None:
            return None
        fd = self._files.open(digest)
        if fd is None:  # the file was removed by hand: forget it and fetch again
            self._index.unlink_blob(repo, digest)
            return None
        return fd, size

    async def stat_blob(self, repo: str, digest: Digest) -> int:
        size = self._index.blob(repo, digest)
        if size is not None and self._files.size(digest) == size:
            return size
        return await self.upstream.stat_blob(repo, digest)

    async def get_blob(self, repo: str, digest: Digest, byte_range: ByteRange | None) -> BlobBody:
        local = self._local(repo, digest)
        if local is None and self._files.size(digest) is not None:
            # Pulled through another repository: ask the upstream whether this one has it too.
            size = await self.upstream.stat_blob(repo, digest)
            if self._files.size(digest) == size:
                self._index.link_blob(repo, digest, size)
                local = self._local(repo, digest)
        if local is not None:
            BLOB_HIT.inc()
            fd, size = local
            if self.max_size is not None:  # last use only matters for eviction
                self._index.file_used(digest, time.time())
            try:
                start, end = (0, size - 1) if byte_range is None else byte_range.resolve(size)
            except BaseException:
                os.close(fd)
                raise
            return BlobBody(digest=digest, size=size, start=start, length=end - start + 1, fd=fd)
        BLOB_MISS.inc()
        if byte_range is not None:
            return await self.upstream.get_blob(repo, digest, byte_range)
        fill = self._fills.get((repo, digest))
        if fill is None:
            fill = self._start_fill(repo, digest)
        size = await fill.wait_started()
        return BlobBody(digest=digest, size=size, start=0, length=size, stream=fill.reader())

    def _start_fill(self, repo: str, digest: Digest) -> BlobFill:
        key = (repo, digest)

        def stored(size: int) -> None:
            self._index.link_blob(repo, digest, size)
            self._index.file_stored(digest, size, time.time())
            self._evict()

        fill = BlobFill(self._files, digest, stored)
        self._fills[key] = fill
        self.upstream_blob_fetches += 1
        task = asyncio.create_task(fill.run(lambda: self.upstream.get_blob(repo, digest, None)))
        self._tasks.add(task)

        def finished(done: asyncio.Task[None]) -> None:
            self._tasks.discard(done)
            if self._fills.get(key) is fill:
                del self._fills[key]

        task.add_done_callback(finished)
        return fill

    def _evict(self) -> None:
        if self.max_size is None:
            return
        for digest in self._index.evictable(self.max_size):
            with contextlib.suppress(FileNotFoundError):  # another worker was first
                self._files.path(digest).unlink()
            self._index.forget_file(digest)

    # --- manifests -------------------------------------------------------------------------

    def _cached_manifest(self, repo: str, digest: Digest) -> StoredManifest | None:
        found = self._index.manifest(repo, digest)
        if found is None:
            return None
        media_type, data = found
        if Digest.of(data, digest.algorithm) != digest:  # a damaged row: never serve it
            self._index.drop_manifest(repo, digest)
            return None
        return StoredManifest(digest, media_type, data)

    async def _fetch_manifest(self, repo: str, reference: str) -> StoredManifest:
        MANIFEST_MISS.inc()
        stored = await self.upstream.get_manifest(repo, reference)
        if Digest.of(stored.data, stored.digest.algorithm) != stored.digest:
            raise BadGateway({"digest": str(stored.digest)}, "upstream manifest digest mismatch")
        self._index.put_manifest(repo, stored.digest, stored.media_type, stored.data)
        if not is_digest(reference):
            self._index.put_tag(repo, reference, stored.digest, time.time())
        return stored

    async def stat_manifest(self, repo: str, reference: str) -> ManifestInfo:
        return (await self.get_manifest(repo, reference)).info()

    async def get_manifest(self, repo: str, reference: str) -> StoredManifest:
        """A cache hit is counted for every answer not fetched from the upstream (a
        revalidation with an unchanged digest included); ``_fetch_manifest`` counts misses."""
        if is_digest(reference):
            cached = self._cached_manifest(repo, Digest.parse(reference))
            if cached is not None:
                MANIFEST_HIT.inc()
                return cached
            return await self._fetch_manifest(repo, reference)
        entry = self._index.tag(repo, reference)
        cached = None if entry is None else self._cached_manifest(repo, entry[0])
        if entry is None or cached is None:
            return await self._fetch_manifest(repo, reference)
        age = time.time() - entry[1]
        if age < self.tag_ttl:
            MANIFEST_HIT.inc()
            return cached
        try:
            # a HEAD, shared with concurrent revalidations of the tag (see ``collapse``)
            current = (await self.upstream.stat_manifest(repo, reference)).digest
            if current == cached.digest:
                self._index.put_tag(repo, reference, cached.digest, time.time())
                MANIFEST_HIT.inc()
                return cached
            return await self._fetch_manifest(repo, reference)
        except (ManifestUnknown, NameUnknown):
            self._index.drop_tag(repo, reference)  # the upstream says the tag is gone
            raise
        except OUTAGE as exc:
            note = (
                f"served from cache: upstream unavailable ({exc.status} {exc.code});"
                f" tag last confirmed {int(age)} s ago"
            )
            MANIFEST_HIT.inc()
            return replace(cached, warnings=(*cached.warnings, note))

    # --- pushes: refused, or forwarded ------------------------------------------------------

    def _writable(self) -> None:
        if self.push != "write-through":
            raise Unsupported({"cache": "read-only"}, "this repository is a read-only cache")

    async def delete_blob(self, repo: str, digest: Digest) -> None:
        self._writable()
        await self.upstream.delete_blob(repo, digest)
        self._index.unlink_blob(repo, digest)

    async def start_upload(self, repo: str) -> UploadState:
        self._writable()
        return await self.upstream.start_upload(repo)

    async def upload_status(self, repo: str, upload_id: str) -> UploadState:
        self._writable()
        return await self.upstream.upload_status(repo, upload_id)

    async def write_upload(
        self, repo: str, upload_id: str, chunks: Chunks, offset: int | None, length: int | None
    ) -> UploadState:
        self._writable()
        return await self.upstream.write_upload(repo, upload_id, chunks, offset, length)

    async def commit_upload(
        self,
        repo: str,
        upload_id: str,
        digest: Digest,
        chunks: Chunks | None,
        offset: int | None,
        length: int | None,
    ) -> int:
        self._writable()
        return await self.upstream.commit_upload(repo, upload_id, digest, chunks, offset, length)

    async def cancel_upload(self, repo: str, upload_id: str) -> None:
        self._writable()
        await self.upstream.cancel_upload(repo, upload_id)

    async def mount_blob(self, repo: str, source: str | None, digest: Digest) -> int:
        self._writable()
        return await self.upstream.mount_blob(repo, source, digest)

    async def put_manifest(
        self, repo: str, manifest: Manifest, data: bytes, tags: Sequence[str]
    ) -> None:
        self._writable()
        await self.upstream.put_manifest(repo, manifest, data, tags)
        for tag in tags:  # the next pull asks the upstream again
            self._index.drop_tag(repo, tag)

    async def delete_manifest(self, repo: str, digest: Digest) -> None:
        self._writable()
        await self.upstream.delete_manifest(repo, digest)
        self._index.drop_manifest(repo, digest)

    async def delete_tag(self, repo: str, tag: str) -> None:
        self._writable()
        await self.upstream.delete_tag(repo, tag)
        self._index.drop_tag(repo, tag)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._index.close()
        await self.upstream.close()
