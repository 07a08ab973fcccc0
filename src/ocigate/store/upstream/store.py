"""The upstream store: a :class:`Registry` that forwards every operation to another OCI registry.

Bytes are streamed both ways (blobs and upload chunks never sit whole in memory); manifests are
forwarded byte-exact. Each concern is a module of its own, over one request core (``core``:
the client, scopes, failure translation, collapsed reads):

- ``blobs``: stat and get, relayed as a stream verified against the digest, or redirected;
- ``uploads``: signed upload ids (``upload_tokens``), chunks checked to continue the upload,
  commit, cancel and mount;
- ``manifests``: get, head, put with several tags, delete, tag deletion by digest;
- ``listings``: tags and the catalog, paged safely;
- ``referrers``: the upstream's own referrers API and the probe telling whether it has one.
  Without one, the gateway wraps this store in ``layers.referrers_tags``, which keeps the
  referrers tag schema.

Errors are told honestly (``errors``): nothing turns an outage into "unknown".
"""

from __future__ import annotations

from collections.abc import Sequence

from ...client import ClientOptions
from ...oci.descriptors import Descriptor
from ...oci.digest import Digest
from ...oci.manifests import Manifest
from ...registry import (
    BlobBody,
    ByteRange,
    Chunks,
    ManifestInfo,
    Page,
    StoredManifest,
    UploadState,
)
from .blobs import UpstreamBlobs
from .core import UpstreamCore
from .listings import UpstreamListings
from .manifests import UpstreamManifests
from .referrers import UpstreamReferrers
from .upload_tokens import UploadSigner
from .uploads import UpstreamUploads


class UpstreamStore:
    """Forwards the :class:`Registry` protocol to one upstream registry."""

    def __init__(
        self,
        options: ClientOptions,
        signing_key: bytes,
        max_manifest_size: int = 4 * 1024 * 1024,
        *,
        pass_redirects: bool = False,
    ) -> None:
        core = UpstreamCore(options)
        self.client = core.client
        self.name = core.name
        self._blobs = UpstreamBlobs(core, pass_redirects)
        self._uploads = UpstreamUploads(core, UploadSigner(signing_key, self.name), self._blobs)
        listings = UpstreamListings(core)
        self._listings = listings
        self._manifests = UpstreamManifests(core, max_manifest_size, self._blobs, listings)
        self._referrers = UpstreamReferrers(core, listings)

    async def has_referrers_api(self, repo: str) -> bool:
        return await self._referrers.has_api(repo)

    async def stat_blob(self, repo: str, digest: Digest) -> int:
        return await self._blobs.stat(repo, digest)

    async def get_blob(self, repo: str, digest: Digest, byte_range: ByteRange | None) -> BlobBody:
        return await self._blobs.get(repo, digest, byte_range)

    async def delete_blob(self, repo: str, digest: Digest) -> None:
        await self._blobs.delete(repo, digest)

    async def start_upload(self, repo: str) -> UploadState:
        return await self._uploads.start(repo)

    async def upload_status(self, repo: str, upload_id: str) -> UploadState:
        return await self._uploads.status(repo, upload_id)

    async def write_upload(
        self, repo: str, upload_id: str, chunks: Chunks, offset: int | None, length: int | None
    ) -> UploadState:
        return await self._uploads.write(repo, upload_id, chunks, offset, length)

    async def commit_upload(
        self,
        repo: str,
        upload_id: str,
        digest: Digest,
        chunks: Chunks | None,
        offset: int | None,
        length: int | None,
    ) -> int:
        return await self._uploads.commit(repo, upload_id, digest, chunks, offset, length)

    async def cancel_upload(self, repo: str, upload_id: str) -> None:
        await self._uploads.cancel(repo, upload_id)

    async def mount_blob(self, repo: str, source: str | None, digest: Digest) -> int:
        return await self._uploads.mount(repo, source, digest)

    async def get_manifest(self, repo: str, reference: str) -> StoredManifest:
        return await self._manifests.get(repo, reference)

    async def stat_manifest(self, repo: str, reference: str) -> ManifestInfo:
        return await self._manifests.stat(repo, reference)

    async def put_manifest(
        self, repo: str, manifest: Manifest, data: bytes, tags: Sequence[str]
    ) -> None:
        await self._manifests.put(repo, manifest, data, tags)

    async def delete_manifest(self, repo: str, digest: Digest) -> None:
        await self._manifests.delete(repo, digest)

    async def delete_tag(self, repo: str, tag: str) -> None:
        await self._manifests.delete_tag(repo, tag)

    async def list_tags(self, repo: str, last: str | None, n: int | None) -> Page:
        return await self._listings.tags(repo, last, n)

    async def list_referrers(
        self, repo: str, digest: Digest, artifact_type: str | None
    ) -> list[Descriptor]:
        return await self._referrers.find(repo, digest, artifact_type)

    async def list_repositories(self, last: str | None, n: int | None) -> Page:
        return await self._listings.repositories(last, n)

    async def close(self) -> None:
        await self.client.aclose()
