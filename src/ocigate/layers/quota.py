"""Storage quotas: a push that would take a repository past its rule's ``max_bytes`` or
``max_tags`` is refused with 403 DENIED, before any byte past the limit is stored.

What counts is the metadata store's ``usage``: the distinct blobs and manifests a repository
links, each once, and its tags. An upload in progress counts its bytes received so far on top;
a body with a Content-Length that would cross the limit is refused before it is read, one
without (chunked, streamed) is cut off at the limit, and the failed append leaves the upload as
it was. A blob the repository already links adds nothing (re-pushing a layer with its digest
known: monolithic PUT, mount); a PATCH does not know its digest yet and counts in full.

Tolerance: the check and the link are not one transaction, so two pushes into one repository
at the same moment may each pass against the same usage and together exceed the limit by up
to what the last of them adds; the next push is refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from ..oci.digest import Digest
from ..oci.errors import Denied
from ..oci.manifests import Manifest
from ..oci.reference import Tag
from ..quota_config import QuotaRule, human_size, rule_for
from ..registry import Chunks, Registry, UploadChunk, UploadState
from ..store.ports import MetadataStore, Usage
from .delegate import Delegate


def _quota_of(repo: str, rule: QuotaRule) -> str:
    return f'quota exceeded for repository "{repo}" (rule "{rule.repos}")'


@dataclass(frozen=True, slots=True)
class _ByteLimit:
    """A repository's byte quota as it stands: the rule, its limit, the usage now."""

    repo: str
    rule: QuotaRule
    max_bytes: int
    usage: Usage

    def fits(self, adds: int) -> bool:
        return self.usage.bytes + adds <= self.max_bytes

    def exceeded(self, adds: int, what: str) -> Denied:
        return Denied(
            {
                "repository": self.repo,
                "rule": self.rule.repos,
                "used_bytes": self.usage.bytes,
                "max_bytes": self.max_bytes,
                "adds_bytes": adds,
            },
            f"{_quota_of(self.repo, self.rule)}: {human_size(self.usage.bytes)} of"
            f" {human_size(self.max_bytes)} used, {what} adds {human_size(adds)}",
        )


class QuotaLayer(Delegate):
    def __init__(self, inner: Registry, rules: Sequence[QuotaRule], meta: MetadataStore) -> None:
        super().__init__(inner)
        self.rules = rules
        self.meta = meta

    async def _byte_limit(self, repo: str) -> _ByteLimit | None:
        """The byte quota of ``repo``; None when no rule limits its bytes."""
        rule = rule_for(self.rules, repo)
        if rule is None or rule.max_bytes is None:
            return None
        return _ByteLimit(repo, rule, int(rule.max_bytes), await self.meta.usage(repo))

    async def _limited(
        self, repo: str, upload_id: str, chunk: UploadChunk, allowance: int = 0
    ) -> UploadChunk:
        """``chunk`` checked against the quota: refused now when its length crosses the limit,
        else its body cut off where it would. ``allowance``: the upload's total may reach it
        even past the quota (the size of a blob the repository already links)."""
        limit = await self._byte_limit(repo)
        if limit is None:
            return chunk
        offset = (await self.inner.upload_status(repo, upload_id)).offset
        room = max(limit.max_bytes - limit.usage.bytes, allowance) - offset
        if chunk.length is not None:
            if chunk.length > room:
                raise limit.exceeded(offset + chunk.length, "this blob")
            return chunk

        async def cut_off(chunks: Chunks) -> AsyncIterator[bytes]:
            received = 0
            async for data in chunks:
                received += len(data)
                if received > room:  # before this piece reaches the store
                    raise limit.exceeded(offset + received, "this blob")
                yield data

        return UploadChunk(cut_off(chunk.chunks), chunk.offset, chunk.length)

    async def write_upload(self, repo: str, upload_id: str, chunk: UploadChunk) -> UploadState:
        chunk = await self._limited(repo, upload_id, chunk)
        return await self.inner.write_upload(repo, upload_id, chunk)

    async def commit_upload(
        self, repo: str, upload_id: str, digest: Digest, chunk: UploadChunk | None
    ) -> int:
        linked = await self.meta.blob_size(repo, digest)
        if chunk is not None:
            chunk = await self._limited(repo, upload_id, chunk, linked or 0)
        elif linked is None and (limit := await self._byte_limit(repo)) is not None:
            # Chunks that each fitted may not fit together with what was linked since.
            offset = (await self.inner.upload_status(repo, upload_id)).offset
            if not limit.fits(offset):
                raise limit.exceeded(offset, "this blob")
        return await self.inner.commit_upload(repo, upload_id, digest, chunk)

    async def mount_blob(self, repo: str, source: str | None, digest: Digest) -> int:
        limit = await self._byte_limit(repo)
        if limit is not None and await self.meta.blob_size(repo, digest) is None:
            size = await (
                self.meta.any_blob_size(digest)
                if source is None
                else self.meta.blob_size(source, digest)
            )
            if size is not None and not limit.fits(size):
                raise limit.exceeded(size, "this blob")
        return await self.inner.mount_blob(repo, source, digest)

    async def put_manifest(
        self, repo: str, manifest: Manifest, data: bytes, tags: Sequence[Tag]
    ) -> None:
        rule = rule_for(self.rules, repo)
        if rule is not None:
            usage = await self.meta.usage(repo)
            if rule.max_bytes is not None:
                limit = _ByteLimit(repo, rule, int(rule.max_bytes), usage)
                # A re-push of a manifest the repository holds adds nothing.
                fits = limit.fits(len(data))
                if not fits and await self.meta.blob_size(repo, manifest.digest) is None:
                    raise limit.exceeded(len(data), "this manifest")
            if rule.max_tags is not None and tags:
                await self._check_tags(repo, rule, rule.max_tags, usage, tags)
        await self.inner.put_manifest(repo, manifest, data, tags)

    async def _check_tags(
        self, repo: str, rule: QuotaRule, max_tags: int, usage: Usage, tags: Sequence[Tag]
    ) -> None:
        # Moving a tag that exists does not add one.
        new = [tag for tag in tags if await self.meta.manifest_by_tag(repo, tag) is None]
        if new and usage.tags + len(new) > max_tags:
            raise Denied(
                {"repository": repo, "rule": rule.repos, "tags": usage.tags, "max_tags": max_tags},
                f"{_quota_of(repo, rule)}: {usage.tags} of {max_tags} tags used,"
                f" this manifest adds {len(new)}",
            )
