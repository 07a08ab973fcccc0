"""``RegistryOverPorts``: the ``Registry`` protocol implemented once over a blob store and a
metadata store (``store.ports``).

It decides what the ports only carry out: which references a manifest needs before it is
visible (``sparse_index``), where a mount may take a blob from (``auto_mount``), the upload flow
(append, save, commit, link), and the in-memory answers of hot reads (``core.stamped_cache``,
kept under the metadata store's change stamp): a pull by tag costs one dictionary lookup while
nothing changed. Repositories exist from their first linked blob or manifest and stay listed
after everything in them is deleted; deleting only removes links, bytes go with
``collect_garbage`` once no manifest references them (``core.gc``).
"""

from __future__ import annotations

from collections.abc import Sequence

from ...oci.descriptors import Descriptor
from ...oci.digest import Digest
from ...oci.errors import BlobUnknown, ManifestUnknown, NameUnknown
from ...oci.manifests import Manifest
from ...oci.reference import Reference, Tag
from ...registry import (
    BlobBody,
    ByteRange,
    ManifestInfo,
    Page,
    StoredManifest,
    TagDetail,
    UploadChunk,
    UploadState,
)
from ..ports import BlobStore, MetadataStore, Required
from . import gc
from .gc import GcReport
from .stamped_cache import StampedCache, stamped_cache

CACHE_SECONDS = 2.0


def _blob_unknown(digest: Digest) -> BlobUnknown:
    return BlobUnknown({"digest": str(digest)})


def _manifest_unknown(reference: Reference) -> ManifestUnknown:
    return ManifestUnknown({"reference": str(reference)[:300]})


def _page_weight(page: Page) -> int:
    return 1 + len(page.items)  # an empty answer still takes room


def _list_weight(items: list[Descriptor]) -> int:
    return 1 + len(items)


class RegistryOverPorts:
    def __init__(
        self,
        blobs: BlobStore,
        meta: MetadataStore,
        *,
        sparse_index: bool = False,
        auto_mount: bool = False,
        upload_expiry: int = 86400,
        gc_grace: float = gc.DEFAULT_GRACE,
    ) -> None:
        self.blobs = blobs
        self.meta = meta
        self.sparse_index = sparse_index
        self.auto_mount = auto_mount
        self.upload_expiry = upload_expiry
        self.gc_grace = gc_grace
        stamp = meta.changes
        self._manifests: StampedCache[tuple[str, Reference], StoredManifest]
        self._manifests = stamped_cache(stamp, CACHE_SECONDS, capacity=64 * 1024)  # KiB
        self._tags: StampedCache[tuple[str, str | None, int | None], Page]
        self._tags = stamped_cache(stamp, CACHE_SECONDS, capacity=100_000)  # names
        self._referrers: StampedCache[tuple[str, Digest, str | None], list[Descriptor]]
        self._referrers = stamped_cache(stamp, CACHE_SECONDS, capacity=20_000)  # descriptors
        self._catalog: StampedCache[tuple[str | None, int | None], Page]
        self._catalog = stamped_cache(stamp, CACHE_SECONDS, capacity=100_000)  # names

    # -- blobs -----------------------------------------------------------------------------

    async def stat_blob(self, repo: str, digest: Digest) -> int:
        size = await self.meta.blob_size(repo, digest)
        if size is None:
            raise _blob_unknown(digest)
        return size

    async def get_blob(self, repo: str, digest: Digest, byte_range: ByteRange | None) -> BlobBody:
        size = await self.stat_blob(repo, digest)
        start, end = byte_range.resolve(size) if byte_range is not None else (0, size - 1)
        body = await self.blobs.open(digest, size, start, end - start + 1)
        if body is None:  # linked but missing: damaged store (fsck reports it)
            raise _blob_unknown(digest)
        return body

    async def delete_blob(self, repo: str, digest: Digest) -> None:
        if not await self.meta.unlink_blob(repo, digest):
            raise _blob_unknown(digest)

    # -- uploads ---------------------------------------------------------------------------

    async def start_upload(self, repo: str) -> UploadState:
        return UploadState(await self.blobs.start_upload(repo), 0)

    async def upload_status(self, repo: str, upload_id: str) -> UploadState:
        return UploadState(upload_id, await self.blobs.upload_offset(repo, upload_id))

    async def write_upload(self, repo: str, upload_id: str, chunk: UploadChunk) -> UploadState:
        async with self.blobs.upload(repo, upload_id) as upload:
            before = upload.offset
            await upload.append(chunk.chunks, chunk.offset, chunk.length)
            if upload.offset != before:
                await upload.save()
            return UploadState(upload_id, upload.offset)

    async def commit_upload(
        self, repo: str, upload_id: str, digest: Digest, chunk: UploadChunk | None
    ) -> int:
        async with self.blobs.upload(repo, upload_id) as upload:
            if chunk is not None:
                await upload.append(chunk.chunks, chunk.offset, chunk.length)
            async with self.meta.gc_lock(exclusive=False):
                size = await upload.commit(digest)
                await self.meta.link_blob(repo, digest, size)
            return size

    async def cancel_upload(self, repo: str, upload_id: str) -> None:
        async with self.blobs.upload(repo, upload_id) as upload:
            await upload.discard()

    async def mount_blob(self, repo: str, source: str | None, digest: Digest) -> int:
        async with self.meta.gc_lock(exclusive=False):
            if source is not None:
                size = await self.meta.blob_size(source, digest)
            elif self.auto_mount:
                size = await self.meta.any_blob_size(digest)
            else:
                size = None
            if size is None or await self.blobs.size(digest) is None:
                raise _blob_unknown(digest)
            await self.meta.link_blob(repo, digest, size)
            return size

    async def expire_uploads(self) -> int:
        """Remove upload sessions idle for longer than ``upload_expiry`` seconds (and stale
        temporary files); how many uploads were removed."""
        return await self.blobs.expire_uploads(self.upload_expiry)

    # -- manifests and tags ----------------------------------------------------------------

    async def stat_manifest(self, repo: str, reference: Reference) -> ManifestInfo:
        return (await self.get_manifest(repo, reference)).info()

    async def get_manifest(self, repo: str, reference: Reference) -> StoredManifest:
        # Pulls by tag are the hot path: a lookup in memory, a query only after a change.
        key = (repo, reference)
        found, stamp = self._manifests.lookup(key)
        if found is None:
            if isinstance(reference, Digest):
                found = await self.meta.manifest_by_digest(repo, reference)
            else:
                found = await self.meta.manifest_by_tag(repo, reference)
            if found is None:
                raise _manifest_unknown(reference)
            self._manifests.store(key, found, stamp, 1 + len(found.data) // 1024)
        return found

    def _required(self, manifest: Manifest) -> list[Required]:
        required = [Required(d.digest, "blob") for d in manifest.blobs]
        if not self.sparse_index:
            required += [Required(d.digest, "manifest") for d in manifest.children]
        return required

    async def put_manifest(
        self, repo: str, manifest: Manifest, data: bytes, tags: Sequence[Tag]
    ) -> None:
        required = self._required(manifest)
        # Fail fast before writing anything; the metadata store checks again in its transaction.
        missing = await self.meta.first_missing(repo, required)
        if missing is not None:
            raise missing.unknown()
        async with self.meta.gc_lock(exclusive=False):
            await self.blobs.write(manifest.digest, data)
            await self.meta.put_manifest(repo, manifest, data, tuple(tags), required)

    async def delete_manifest(self, repo: str, digest: Digest) -> None:
        if not await self.meta.delete_manifest(repo, digest):
            raise _manifest_unknown(digest)

    async def delete_tag(self, repo: str, tag: Tag) -> None:
        if not await self.meta.delete_tag(repo, tag):
            raise _manifest_unknown(tag)

    async def list_tags(self, repo: str, last: str | None, n: int | None) -> Page:
        async def list_() -> Page:
            page = await self.meta.list_tags(repo, last, n)
            if page is None:
                raise NameUnknown({"name": repo[:300]})
            return page

        # Polled by image updaters: kept while nothing changes.
        found = await self._tags.get((repo, last, n), list_, _page_weight)
        return Page(list(found.items), found.more)  # the caller's to keep or change

    async def list_tag_details(self, repo: str) -> list[TagDetail]:
        # Not cached: asked by the web UI and retention, not polled.
        found = await self.meta.tag_details(repo)
        if found is None:
            raise NameUnknown({"name": repo[:300]})
        return found

    async def list_referrers(
        self, repo: str, digest: Digest, artifact_type: str | None
    ) -> list[Descriptor]:
        # Asked by signature verifiers on every admission of an image.
        key = (repo, digest, artifact_type)
        found = await self._referrers.get(
            key, lambda: self.meta.referrers(repo, digest, artifact_type), _list_weight
        )
        return list(found)  # the caller's to keep or change

    async def list_repositories(self, last: str | None, n: int | None) -> Page:
        found = await self._catalog.get(
            (last, n), lambda: self.meta.list_repositories(last, n), _page_weight
        )
        return Page(list(found.items), found.more)  # the caller's to keep or change

    # -- maintenance -----------------------------------------------------------------------

    async def collect_garbage(
        self, grace: float | None = None, *, dry_run: bool = False
    ) -> GcReport:
        """Delete what no manifest references and is older than ``grace`` seconds (default:
        the store's ``gc_grace``); with ``dry_run`` only report it."""
        grace = self.gc_grace if grace is None else grace
        return await gc.collect(self.blobs, self.meta, grace, dry_run)

    async def close(self) -> None:
        await self.meta.close()
        await self.blobs.close()
