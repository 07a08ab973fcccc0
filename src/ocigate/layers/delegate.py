"""A Registry that forwards every call to an inner Registry; layers override what they change."""

from __future__ import annotations

from collections.abc import Sequence

from ..oci.descriptors import Descriptor
from ..oci.digest import Digest
from ..oci.manifests import Manifest
from ..oci.reference import Reference, Tag
from ..registry import (
    BlobBody,
    ByteRange,
    ManifestInfo,
    Page,
    Registry,
    StoredManifest,
    TagDetail,
    UploadChunk,
    UploadState,
)


class Delegate:
    """Forwards the whole :class:`Registry` protocol to ``inner``."""

    def __init__(self, inner: Registry) -> None:
        self.inner = inner

    async def stat_blob(self, repo: str, digest: Digest) -> int:
        return await self.inner.stat_blob(repo, digest)

    async def get_blob(self, repo: str, digest: Digest, byte_range: ByteRange | None) -> BlobBody:
        return await self.inner.get_blob(repo, digest, byte_range)

    async def delete_blob(self, repo: str, digest: Digest) -> None:
        await self.inner.delete_blob(repo, digest)

    async def start_upload(self, repo: str) -> UploadState:
        return await self.inner.start_upload(repo)

    async def upload_status(self, repo: str, upload_id: str) -> UploadState:
        return await self.inner.upload_status(repo, upload_id)

    async def write_upload(self, repo: str, upload_id: str, chunk: UploadChunk) -> UploadState:
        return await self.inner.write_upload(repo, upload_id, chunk)

    async def commit_upload(
        self, repo: str, upload_id: str, digest: Digest, chunk: UploadChunk | None
    ) -> int:
        return await self.inner.commit_upload(repo, upload_id, digest, chunk)

    async def cancel_upload(self, repo: str, upload_id: str) -> None:
        await self.inner.cancel_upload(repo, upload_id)

    async def mount_blob(self, repo: str, source: str | None, digest: Digest) -> int:
        return await self.inner.mount_blob(repo, source, digest)

    async def get_manifest(self, repo: str, reference: Reference) -> StoredManifest:
        return await self.inner.get_manifest(repo, reference)

    async def stat_manifest(self, repo: str, reference: Reference) -> ManifestInfo:
        return await self.inner.stat_manifest(repo, reference)

    async def put_manifest(
        self, repo: str, manifest: Manifest, data: bytes, tags: Sequence[Tag]
    ) -> None:
        await self.inner.put_manifest(repo, manifest, data, tags)

    async def delete_manifest(self, repo: str, digest: Digest) -> None:
        await self.inner.delete_manifest(repo, digest)

    async def delete_tag(self, repo: str, tag: Tag) -> None:
        await self.inner.delete_tag(repo, tag)

    async def list_tags(self, repo: str, last: str | None, n: int | None) -> Page:
        return await self.inner.list_tags(repo, last, n)

    async def list_tag_details(self, repo: str) -> list[TagDetail]:
        return await self.inner.list_tag_details(repo)

    async def list_referrers(
        self, repo: str, digest: Digest, artifact_type: str | None
    ) -> list[Descriptor]:
        return await self.inner.list_referrers(repo, digest, artifact_type)

    async def list_repositories(self, last: str | None, n: int | None) -> Page:
        return await self.inner.list_repositories(last, n)

    async def close(self) -> None:
        await self.inner.close()
