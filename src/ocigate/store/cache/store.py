"""The pull-through cache: an :class:`UpstreamStore` plus a local copy of what was pulled.

Cache keys (see ``index`` for the tables):

- blob bytes by digest, shared by every repository of the upstream (``blobs/<alg>/<hex>``), plus
  a ``(repo, digest)`` row recording that the upstream served it for that repository;
- manifest bytes by ``(repo, digest)``, byte-exact and verified against the digest;
- ``(repo, tag) -> digest`` with the time the upstream last confirmed it.

Digests are immutable, so a cached digest is served without asking the upstream. A tag younger
than ``tag_ttl`` seconds is served as cached; an older one is revalidated with a HEAD (comparing
``Docker-Content-Digest``) and only fetched again when it moved. Tag lists, catalog pages and
referrers are kept the same way (refetched after ``tag_ttl``). When the upstream cannot answer
(unreachable, timeout, 429, 5xx) or takes longer than ``stale_timeout`` seconds, what is cached
is served anyway (a tag with a ``Warning`` header) while the revalidation goes on in the
background; what is not cached fails with the upstream's 502/503/504/429. After such a failure
the upstream is not asked again for a cool-down (see ``breaker``).

Blobs are fetched whole and shared by concurrent readers (see ``fill``; a reader for
another repository joins once the upstream confirms the blob there); ranged reads of a
blob not yet cached go straight to the upstream and are not cached. Cached bytes are served for
another repository once the upstream confirmed the blob there: a cached manifest of that
repository references it, or a HEAD there finds it.

Pushes are refused (405 UNSUPPORTED) unless ``push`` is ``"write-through"``: then they are
forwarded to the upstream and the cached entries they change are dropped (the tags and manifests
written, the repository's tag list and referrers, the catalog), so whoever pushed through the
cache reads what it wrote at once, not after ``tag_ttl``.

With ``max_size``, blob files beyond that many bytes are evicted least recently served first,
after each download completes (manifests and tags are small and stay). A file removed under a
reader is still read to the end through its open descriptor.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, TypeVar

from ...layers.delegate import Delegate
from ...metrics import BLOB_HIT, BLOB_MISS, MANIFEST_HIT, MANIFEST_MISS
from ...oci.descriptors import Descriptor, parse_descriptor
from ...oci.digest import Digest
from ...oci.errors import (
    BadGateway,
    GatewayTimeout,
    ManifestInvalid,
    ManifestUnknown,
    NameUnknown,
    OCIError,
    Unavailable,
    Unsupported,
)
from ...oci.manifests import Manifest, parse_manifest
from ...oci.reference import Reference, Tag
from ...registry import (
    BlobBody,
    ByteRange,
    FileRange,
    ManifestInfo,
    Page,
    Registry,
    StoredManifest,
    Stream,
    TagDetail,
    UploadChunk,
    UploadState,
)
from ..embedded.blobfiles import BlobFiles
from ..stat_details import stat_tag_details
from ..upstream import UpstreamStore
from .breaker import OUTAGE, Breaker
from .fill import BlobFill
from .index import CacheIndex

PushMode = Literal["reject", "write-through"]
T = TypeVar("T")
TMP_MAX_AGE = 24 * 3600  # temporary files older than this were left by a crash


class CacheStore(Delegate):
    def __init__(
        self,
        upstream: UpstreamStore,
        local_dir: Path,
        tag_ttl: float = 60.0,
        push: PushMode = "reject",
        max_size: int | None = None,
        stale_timeout: float = 5.0,
        cooldown: float = 30.0,
        *,
        source: Registry | None = None,
    ) -> None:
        # Reads and forwarded pushes go through ``source`` (``upstream`` behind its wrappers,
        # such as the referrers tag fallback); ``upstream`` itself names it and is probed.
        super().__init__(source if source is not None else upstream)
        self.upstream = upstream
        self.tag_ttl = tag_ttl
        self.stale_timeout = stale_timeout
        self._breaker = Breaker(upstream.name, cooldown, stale_timeout, self._ping)
        self.push = push
        self.max_size = max_size
        local_dir.mkdir(parents=True, exist_ok=True)
        self._files = BlobFiles(local_dir)
        self._files.sweep_tmp(TMP_MAX_AGE)
        self._index = CacheIndex(local_dir / "index.db")
        self._fills: dict[Digest, tuple[str, BlobFill]] = {}  # the download, and for which repo
        self._tasks: set[asyncio.Task[Any]] = set()
        self.upstream_blob_fetches = 0  # for tests: whole-blob downloads started

    # --- asking the upstream ---------------------------------------------------------------

    async def _ping(self) -> None:
        """The breaker's probe: any answer to ``GET /v2/`` but 429 or 5xx means it is up."""
        response = await self.upstream.client.request("GET", "/v2/", scope="")
        await response.aclose()
        if response.status_code >= 500 or response.status_code == 429:
            raise Unavailable(
                {"upstream": self.upstream.name, "status": response.status_code},
                f"upstream registry {self.upstream.name} answered {response.status_code}",
            )

    def _spawn(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.create_task(work)
        self._tasks.add(task)

        def finished(done: asyncio.Task[T]) -> None:
            self._tasks.discard(done)
            if not done.cancelled():
                done.exception()  # retrieved: a late failure was already accounted for

        task.add_done_callback(finished)
        return task

    async def _refresh(self, refresh: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """``refresh()`` of something cached, waited for at most ``stale_timeout`` seconds
        (the upstream's own timeouts and retries may take minutes): past that it goes on in the
        background, and GatewayTimeout tells the caller to serve what it has. Refused at once
        while the breaker is open."""
        refused = self._breaker.error()
        if refused is not None:
            raise refused
        task = self._spawn(refresh())
        done, _ = await asyncio.wait({task}, timeout=self.stale_timeout)
        if not done:
            late = GatewayTimeout(
                {"upstream": self.upstream.name},
                f"upstream registry {self.upstream.name} did not answer within"
                f" {self.stale_timeout:g} s",
            )
            self._breaker.failed(late)
            raise late
        return task.result()

    async def _revalidated(
        self, cached: T, fetched: float, refresh: Callable[[], Coroutine[Any, Any, T]]
    ) -> tuple[T, OCIError | None]:
        """``cached`` while younger than the TTL, else what ``refresh`` brings; the cached
        value with the reason when the upstream cannot tell."""
        if time.time() - fetched < self.tag_ttl:
            return cached, None
        try:
            return await self._refresh(refresh), None
        except OUTAGE as exc:
            return cached, exc

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

    async def _confirm_elsewhere(self, repo: str, digest: Digest) -> None:
        """Link bytes cached through another repository to ``repo`` once the upstream has
        confirmed the blob there: a cached manifest of ``repo`` references it, or a HEAD in
        ``repo`` finds it with the same size. Never without: the upstream may keep
        repositories apart."""
        on_disk = self._files.size(digest)
        if on_disk is None or self._index.blob(repo, digest) is not None:
            return
        if await self._upstream_size(repo, digest) == on_disk:
            self._index.link_blob(repo, digest, on_disk)

    async def _upstream_size(self, repo: str, digest: Digest) -> int:
        """The blob's size in ``repo`` as the upstream vouches for it: from a cached manifest
        of ``repo`` that references it, else from a HEAD there (BlobUnknown when it lacks it)."""
        size = self._index.referenced_size(repo, digest)
        if size is None:
            size = await self._breaker.call(lambda: self.inner.stat_blob(repo, digest))
        return size

    async def stat_blob(self, repo: str, digest: Digest) -> int:
        await self._confirm_elsewhere(repo, digest)
        size = self._index.blob(repo, digest)
        if size is not None and self._files.size(digest) == size:
            return size
        return await self._breaker.call(lambda: self.inner.stat_blob(repo, digest))

    async def get_blob(self, repo: str, digest: Digest, byte_range: ByteRange | None) -> BlobBody:
        await self._confirm_elsewhere(repo, digest)
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
            return FileRange(digest, size, start, end - start + 1, fd)
        BLOB_MISS.inc()
        if byte_range is not None:
            ranged = byte_range
            return await self._breaker.call(lambda: self.inner.get_blob(repo, digest, ranged))
        running = self._fills.get(digest)
        # Being downloaded for another repository: joined once confirmed for this one.
        if (
            running is not None
            and running[0] != repo
            and await self._upstream_size(repo, digest) != await running[1].wait_started()
        ):
            running = None
        fill = running[1] if running is not None else self._start_fill(repo, digest)
        size = await fill.wait_started()
        return Stream(digest, size, 0, size, fill.reader())

    def _start_fill(self, repo: str, digest: Digest) -> BlobFill:

        def stored(size: int) -> None:
            self._index.link_blob(repo, digest, size)
            self._index.file_stored(digest, size, time.time())
            self._evict()

        fill = BlobFill(self._files, digest, stored)
        self._fills[digest] = (repo, fill)
        self.upstream_blob_fetches += 1
        task = self._spawn(
            fill.run(lambda: self._breaker.call(lambda: self.inner.get_blob(repo, digest, None)))
        )

        def finished(_: asyncio.Task[None]) -> None:
            if self._fills.get(digest) == (repo, fill):
                del self._fills[digest]

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

    async def _fetch_manifest(self, repo: str, reference: Reference) -> StoredManifest:
        MANIFEST_MISS.inc()
        stored = await self._breaker.call(lambda: self.inner.get_manifest(repo, reference))
        if Digest.of(stored.data, stored.digest.algorithm) != stored.digest:
            raise BadGateway({"digest": str(stored.digest)}, "upstream manifest digest mismatch")
        try:
            blobs = parse_manifest(stored.data, stored.media_type, stored.digest).blobs
        except ManifestInvalid:
            blobs = ()  # served as the upstream has it, vouching for no blobs
        self._index.put_manifest(
            repo,
            stored.digest,
            stored.media_type,
            stored.data,
            [(blob.digest, blob.size) for blob in blobs],
        )
        if isinstance(reference, Tag):
            self._index.put_tag(repo, reference, stored.digest, time.time())
        return stored

    async def stat_manifest(self, repo: str, reference: Reference) -> ManifestInfo:
        return (await self.get_manifest(repo, reference)).info()

    async def get_manifest(self, repo: str, reference: Reference) -> StoredManifest:
        """A cache hit is counted for every answer not fetched from the upstream (a
        revalidation with an unchanged digest included); ``_fetch_manifest`` counts misses."""
        if isinstance(reference, Digest):
            cached = self._cached_manifest(repo, reference)
            if cached is not None:
                MANIFEST_HIT.inc()
                return cached
            return await self._fetch_manifest(repo, reference)
        entry = self._index.tag(repo, reference)
        cached = None if entry is None else self._cached_manifest(repo, entry[0])
        if entry is None or cached is None:
            return await self._fetch_manifest(repo, reference)
        found, outage = await self._revalidated(
            cached, entry[1], lambda: self._revalidate_tag(repo, reference, cached)
        )
        if found is cached:
            MANIFEST_HIT.inc()
        if outage is None:
            return found
        note = (
            f"served from cache: upstream unavailable ({outage.status} {outage.code});"
            f" tag last confirmed {int(time.time() - entry[1])} s ago"
        )
        return replace(cached, warnings=(*cached.warnings, note))

    async def _revalidate_tag(
        self, repo: str, reference: Tag, cached: StoredManifest
    ) -> StoredManifest:
        try:
            # a HEAD, shared with concurrent revalidations of the tag (see ``upstream.collapse``)
            info = await self._breaker.call(lambda: self.inner.stat_manifest(repo, reference))
        except (ManifestUnknown, NameUnknown):
            self._index.drop_tag(repo, reference)  # the upstream says the tag is gone
            raise
        if info.digest == cached.digest:
            self._index.put_tag(repo, reference, cached.digest, time.time())
            return cached
        return await self._fetch_manifest(repo, reference)

    # --- listings: kept like tags ----------------------------------------------------------

    async def _listing(
        self, kind: str, repo: str, key: str, fetch: Callable[[], Awaitable[Any]]
    ) -> Any:
        """A JSON-able listing as the upstream last gave it, revalidated after the TTL and
        served stale when the upstream cannot answer."""

        async def refresh() -> Any:
            try:
                found = await self._breaker.call(fetch)
            except (NameUnknown, ManifestUnknown):
                self._index.drop_listing(kind, repo, key)  # the upstream says it is gone
                raise
            self._index.put_listing(kind, repo, key, json.dumps(found), time.time())
            return found

        entry = self._index.listing(kind, repo, key)
        if entry is None:
            return await refresh()
        found, _ = await self._revalidated(json.loads(entry[0]), entry[1], refresh)
        return found

    async def list_tags(self, repo: str, last: str | None, n: int | None) -> Page:
        async def fetch() -> list[str]:
            return (await self.inner.list_tags(repo, None, None)).items

        names: list[str] = await self._listing("tags", repo, "", fetch)
        after = names if last is None else [name for name in names if name > last]
        return Page(after if n is None else after[:n], n is not None and len(after) > n)

    async def list_tag_details(self, repo: str) -> list[TagDetail]:
        # From the cached listing and cached manifests, so it is served while offline too.
        return await stat_tag_details(self.list_tags, self.stat_manifest, repo)

    async def list_repositories(self, last: str | None, n: int | None) -> Page:
        async def fetch() -> dict[str, Any]:
            page = await self.inner.list_repositories(last, n)
            return {"items": page.items, "more": page.more}

        found = await self._listing("catalog", "", f"{last or ''}\n{n}", fetch)
        return Page(list(found["items"]), bool(found["more"]))

    async def list_referrers(
        self, repo: str, digest: Digest, artifact_type: str | None
    ) -> list[Descriptor]:
        # Unfiltered, so every artifactType filter is served from the one entry.
        async def fetch() -> list[dict[str, Any]]:
            found = await self.inner.list_referrers(repo, digest, None)
            return [descriptor.to_json() for descriptor in found]

        raw = await self._listing("referrers", repo, str(digest), fetch)
        found = [parse_descriptor(item, "referrer") for item in raw]
        return [d for d in found if artifact_type is None or d.artifact_type == artifact_type]

    # --- pushes: refused, or forwarded ------------------------------------------------------

    def _writable(self) -> None:
        if self.push != "write-through":
            raise Unsupported({"cache": "read-only"}, "this repository is a read-only cache")

    async def delete_blob(self, repo: str, digest: Digest) -> None:
        self._writable()
        await self.inner.delete_blob(repo, digest)
        self._index.drop_blob(repo, digest)

    async def start_upload(self, repo: str) -> UploadState:
        self._writable()
        return await self.inner.start_upload(repo)

    async def upload_status(self, repo: str, upload_id: str) -> UploadState:
        self._writable()
        return await self.inner.upload_status(repo, upload_id)

    async def write_upload(self, repo: str, upload_id: str, chunk: UploadChunk) -> UploadState:
        self._writable()
        return await self.inner.write_upload(repo, upload_id, chunk)

    async def commit_upload(
        self, repo: str, upload_id: str, digest: Digest, chunk: UploadChunk | None
    ) -> int:
        self._writable()
        size = await self.inner.commit_upload(repo, upload_id, digest, chunk)
        self._index.drop_changed_listings(repo)  # the repository may be new to the catalog
        return size

    async def cancel_upload(self, repo: str, upload_id: str) -> None:
        self._writable()
        await self.inner.cancel_upload(repo, upload_id)

    async def mount_blob(self, repo: str, source: str | None, digest: Digest) -> int:
        self._writable()
        size = await self.inner.mount_blob(repo, source, digest)
        self._index.drop_changed_listings(repo)
        return size

    async def put_manifest(
        self, repo: str, manifest: Manifest, data: bytes, tags: Sequence[Tag]
    ) -> None:
        self._writable()
        await self.inner.put_manifest(repo, manifest, data, tags)
        for tag in tags:  # the next pull asks the upstream again
            self._index.drop_tag(repo, tag)
        self._index.drop_changed_listings(repo)

    async def delete_manifest(self, repo: str, digest: Digest) -> None:
        self._writable()
        await self.inner.delete_manifest(repo, digest)
        self._index.drop_manifest(repo, digest)
        self._index.drop_changed_listings(repo)

    async def delete_tag(self, repo: str, tag: Tag) -> None:
        self._writable()
        await self.inner.delete_tag(repo, tag)
        self._index.drop_tag(repo, tag)
        self._index.drop_changed_listings(repo)

    async def close(self) -> None:
        await self._breaker.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._index.close()
        await self.inner.close()
