"""An in-memory ``Registry`` for tests: the embedded store's semantics without files or SQLite.

Single process only, nothing survives a restart; it exists so that layers and the HTTP layer can
be tested fast against a backend with the same contract.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from ..oci.descriptors import Descriptor
from ..oci.digest import Digest
from ..oci.errors import (
    BlobUnknown,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestUnknown,
    NameUnknown,
    RangeInvalid,
    SizeInvalid,
)
from ..oci.manifests import Manifest
from ..registry import BlobBody, ByteRange, Chunks, ManifestInfo, Page, StoredManifest, UploadState


@dataclass
class _Repo:
    blobs: dict[Digest, int] = field(default_factory=dict)
    manifests: dict[Digest, tuple[int, Manifest, bytes]] = field(default_factory=dict)
    tags: dict[str, Digest] = field(default_factory=dict)


def _page(items: list[str], last: str | None, n: int | None) -> Page:
    after = sorted(item for item in items if last is None or item > last)
    if n is None:
        return Page(after, False)
    return Page(after[:n], len(after) > n)


async def _stream(data: bytes) -> AsyncIterator[bytes]:
    yield data


class MemoryStore:
    def __init__(self, *, sparse_index: bool = False, auto_mount: bool = False) -> None:
        self.sparse_index = sparse_index
        self.auto_mount = auto_mount
        self._content: dict[Digest, bytes] = {}  # shared by all repositories, as on disk
        self._repos: dict[str, _Repo] = {}
        self._uploads: dict[str, tuple[str, bytearray]] = {}
        self._order = itertools.count()

    def _repo(self, name: str) -> _Repo:
        return self._repos.setdefault(name, _Repo())

    def _link(self, repo: str, digest: Digest, data: bytes) -> int:
        self._content.setdefault(digest, data)
        self._repo(repo).blobs[digest] = len(data)
        return len(data)

    # blobs
    async def stat_blob(self, repo: str, digest: Digest) -> int:
        size = self._repos.get(repo, _Repo()).blobs.get(digest)
        if size is None:
            raise BlobUnknown({"digest": str(digest)})
        return size

    async def get_blob(self, repo: str, digest: Digest, byte_range: ByteRange | None) -> BlobBody:
        size = await self.stat_blob(repo, digest)
        start, end = byte_range.resolve(size) if byte_range is not None else (0, size - 1)
        data = self._content[digest][start : end + 1]
        return BlobBody(digest, size, start, len(data), stream=_stream(data))

    async def delete_blob(self, repo: str, digest: Digest) -> None:
        await self.stat_blob(repo, digest)
        del self._repos[repo].blobs[digest]

    # uploads
    def _upload(self, repo: str, upload_id: str) -> bytearray:
        owner, data = self._uploads.get(upload_id, ("", bytearray()))
        if owner != repo:
            raise BlobUploadUnknown({"upload": upload_id[:64]})
        return data

    async def start_upload(self, repo: str) -> UploadState:
        upload_id = uuid.uuid4().hex
        self._uploads[upload_id] = (repo, bytearray())
        return UploadState(upload_id, 0)

    async def upload_status(self, repo: str, upload_id: str) -> UploadState:
        return UploadState(upload_id, len(self._upload(repo, upload_id)))

    async def write_upload(
        self, repo: str, upload_id: str, chunks: Chunks, offset: int | None, length: int | None
    ) -> UploadState:
        data = self._upload(repo, upload_id)
        if offset is not None and offset != len(data):
            raise RangeInvalid({"offset": len(data)}, f"upload is at offset {len(data)}")
        received = bytearray()
        async for chunk in chunks:
            received += chunk
            if length is not None and len(received) > length:
                raise SizeInvalid({"length": length}, "body longer than Content-Length")
        if length is not None and len(received) != length:
            raise SizeInvalid({"length": length}, "body shorter than Content-Length")
        data += received
        return UploadState(upload_id, len(data))

    async def commit_upload(
        self,
        repo: str,
        upload_id: str,
        digest: Digest,
        chunks: Chunks | None,
        offset: int | None,
        length: int | None,
    ) -> int:
        if chunks is not None:
            await self.write_upload(repo, upload_id, chunks, offset, length)
        data = bytes(self._upload(repo, upload_id))
        del self._uploads[upload_id]
        if Digest.of(data, digest.algorithm) != digest:
            raise DigestInvalid({"digest": str(digest)})
        return self._link(repo, digest, data)

    async def cancel_upload(self, repo: str, upload_id: str) -> None:
        self._upload(repo, upload_id)
        del self._uploads[upload_id]

    async def mount_blob(self, repo: str, source: str | None, digest: Digest) -> int:
        holders = [source] if source is not None else list(self._repos) if self.auto_mount else []
        for holder in holders:
            if digest in self._repos.get(holder, _Repo()).blobs:
                return self._link(repo, digest, self._content[digest])
        raise BlobUnknown({"digest": str(digest)})

    # manifests and tags
    def _resolve(self, repo: str, reference: str) -> Digest:
        entry = self._repos.get(repo, _Repo())
        digest = Digest.parse(reference) if ":" in reference else entry.tags.get(reference)
        if digest is None or digest not in entry.manifests:
            raise ManifestUnknown({"reference": reference[:300]})
        return digest

    async def stat_manifest(self, repo: str, reference: str) -> ManifestInfo:
        return (await self.get_manifest(repo, reference)).info()

    async def get_manifest(self, repo: str, reference: str) -> StoredManifest:
        digest = self._resolve(repo, reference)
        _, manifest, data = self._repos[repo].manifests[digest]
        return StoredManifest(digest, manifest.media_type, data)

    async def put_manifest(
        self, repo: str, manifest: Manifest, data: bytes, tags: Sequence[str]
    ) -> None:
        entry = self._repos.get(repo, _Repo())
        missing = [d for d in manifest.blobs if d.digest not in entry.blobs]
        if not self.sparse_index:
            missing += [d for d in manifest.children if d.digest not in entry.manifests]
        if missing:
            raise ManifestBlobUnknown({"digest": str(missing[0].digest)})
        target = self._repo(repo)
        previous = target.manifests.get(manifest.digest)
        order = previous[0] if previous else next(self._order)
        target.manifests[manifest.digest] = (order, manifest, data)
        self._link(repo, manifest.digest, data)
        for tag in tags:
            target.tags[tag] = manifest.digest

    async def delete_manifest(self, repo: str, digest: Digest) -> None:
        self._resolve(repo, str(digest))
        entry = self._repos[repo]
        del entry.manifests[digest]
        entry.blobs.pop(digest, None)
        entry.tags = {tag: d for tag, d in entry.tags.items() if d != digest}

    async def delete_tag(self, repo: str, tag: str) -> None:
        self._resolve(repo, tag)
        del self._repos[repo].tags[tag]

    async def list_tags(self, repo: str, last: str | None, n: int | None) -> Page:
        if repo not in self._repos:
            raise NameUnknown({"name": repo[:300]})
        return _page(list(self._repos[repo].tags), last, n)

    async def list_referrers(
        self, repo: str, digest: Digest, artifact_type: str | None
    ) -> list[Descriptor]:
        found = sorted(
            (order, manifest)
            for order, manifest, _ in self._repos.get(repo, _Repo()).manifests.values()
            if manifest.subject is not None and manifest.subject.digest == digest
        )
        referrers = [manifest.as_referrer() for _, manifest in found]
        return [d for d in referrers if artifact_type is None or d.artifact_type == artifact_type]

    async def list_repositories(self, last: str | None, n: int | None) -> Page:
        return _page(list(self._repos), last, n)

    async def close(self) -> None:
        self._uploads.clear()
