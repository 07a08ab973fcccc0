"""The access-policy layer: every call is checked against the caller's identity before it
reaches the inner registry, so a denied request learns nothing about what exists."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from ..auth.identity import Identity
from ..auth.policy import Action, Decision, Policy
from ..auth.tokens import CATALOG_SCOPE, InsufficientScope
from ..context import request_context
from ..oci.descriptors import Descriptor
from ..oci.digest import Digest
from ..oci.errors import BlobUnknown, Denied, ManifestUnknown
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
from .delegate import Delegate

audit_log = logging.getLogger("ocigate.audit")
_TOKEN_SCOPE = "token scope"
# The token action that grants each policy action (a token's push covers moving a tag).
_TOKEN_ACTION: dict[Action, str] = {
    "pull": "pull",
    "push": "push",
    "overwrite": "push",
    "delete": "delete",
}
# Repository names read per query while filtering the catalog: a caller who sees few of many
# repositories costs one query per this many names, in bounded memory.
CATALOG_BATCH = 5000


class PolicyLayer(Delegate):
    def __init__(self, inner: Registry, policy: Policy) -> None:
        super().__init__(inner)
        self.policy = policy

    def _permitted(self, identity: Identity, repo: str, action: Action) -> Decision:
        """The policy's decision, narrowed by what the caller's token grants."""
        decision = self.policy.decide(identity, repo, action)
        granted = identity.grants is None or action in identity.grants.get(repo, frozenset())
        if decision.allowed and not granted:
            return Decision(False, _TOKEN_SCOPE, "the token does not grant this")
        return decision

    def _decide(
        self,
        identity: Identity,
        repo: str,
        action: Action,
        reference: Reference | None,
        *,
        audit: bool = True,
    ) -> Decision:
        decision = self._permitted(identity, repo, action)
        if (audit or not decision.allowed) and audit_log.isEnabledFor(logging.INFO):
            audit_log.info(
                json.dumps(
                    {
                        "audit": "access",
                        "identity": identity.label(),
                        "method": identity.method,
                        "action": action,
                        "repository": repo,
                        "reference": "" if reference is None else str(reference),
                        "allowed": decision.allowed,
                        "rule": decision.rule,
                    },
                    separators=(",", ":"),
                )
            )
        return decision

    def _require(
        self, repo: str, action: Action, reference: Reference | None = None, *, audit: bool = True
    ) -> Decision:
        decision = self._decide(request_context().identity, repo, action, reference, audit=audit)
        if decision.rule == _TOKEN_SCOPE:
            raise InsufficientScope(f"repository:{repo}:{_TOKEN_ACTION[action]}")
        if not decision.allowed:
            message = decision.message or f"{action} access to {repo} is denied"
            raise Denied({"repository": repo, "action": action}, message)
        return decision

    def precheck(self, repo: str, action: Action) -> None:
        """Refuse ``action`` on ``repo`` from the request line and headers alone, before any
        body is read. The call that follows decides again, with the body's details (artifact
        types, tags), and writes the audit line; this one writes it only when it refuses."""
        self._require(repo, action, audit=False)

    def _allows(self, repo: str, action: Action) -> bool:
        return self._decide(request_context().identity, repo, action, None).allowed

    # blobs
    async def stat_blob(self, repo: str, digest: Digest) -> int:
        self._require(repo, "pull", digest)
        return await self.inner.stat_blob(repo, digest)

    async def get_blob(self, repo: str, digest: Digest, byte_range: ByteRange | None) -> BlobBody:
        self._require(repo, "pull", digest)
        return await self.inner.get_blob(repo, digest, byte_range)

    async def delete_blob(self, repo: str, digest: Digest) -> None:
        self._require(repo, "delete", digest)
        await self.inner.delete_blob(repo, digest)

    # uploads
    async def start_upload(self, repo: str) -> UploadState:
        self._require(repo, "push")
        return await self.inner.start_upload(repo)

    async def upload_status(self, repo: str, upload_id: str) -> UploadState:
        self._require(repo, "push")
        return await self.inner.upload_status(repo, upload_id)

    async def write_upload(self, repo: str, upload_id: str, chunk: UploadChunk) -> UploadState:
        self._require(repo, "push")
        return await self.inner.write_upload(repo, upload_id, chunk)

    async def commit_upload(
        self, repo: str, upload_id: str, digest: Digest, chunk: UploadChunk | None
    ) -> int:
        self._require(repo, "push", digest)
        return await self.inner.commit_upload(repo, upload_id, digest, chunk)

    async def cancel_upload(self, repo: str, upload_id: str) -> None:
        self._require(repo, "push")
        await self.inner.cancel_upload(repo, upload_id)

    async def mount_blob(self, repo: str, source: str | None, digest: Digest) -> int:
        self._require(repo, "push", digest)
        # Without read access to the source (or with no source named: that would search
        # repositories the caller may not see) it quietly becomes an ordinary upload.
        if source is None or not self._allows(source, "pull"):
            raise BlobUnknown({"digest": str(digest)})
        return await self.inner.mount_blob(repo, source, digest)

    # manifests and tags
    async def get_manifest(self, repo: str, reference: Reference) -> StoredManifest:
        self._require(repo, "pull", reference)
        return await self.inner.get_manifest(repo, reference)

    async def stat_manifest(self, repo: str, reference: Reference) -> ManifestInfo:
        self._require(repo, "pull", reference)
        return await self.inner.stat_manifest(repo, reference)

    async def put_manifest(
        self, repo: str, manifest: Manifest, data: bytes, tags: Sequence[Tag]
    ) -> None:
        push = self._require(repo, "push", manifest.digest)
        kind = manifest.artifact_type or manifest.media_type
        if push.artifact_types is not None and kind not in push.artifact_types:
            allowed = ", ".join(sorted(push.artifact_types))
            raise Denied(
                {"repository": repo, "artifactType": kind, "rule": push.rule},
                f"{kind} may not be pushed to {repo} (allowed: {allowed})",
            )
        for tag in tags:
            current = await self._tagged(repo, tag)
            if current is None or current == manifest.digest:
                continue
            overwrite = self._require(repo, "overwrite", tag)
            if overwrite.tag_is_immutable(tag.name) or push.tag_is_immutable(tag.name):
                raise Denied({"repository": repo, "tag": str(tag)}, f"tag {tag} is immutable")
        await self.inner.put_manifest(repo, manifest, data, tags)

    async def _tagged(self, repo: str, tag: Tag) -> Digest | None:
        try:
            return (await self.inner.get_manifest(repo, tag)).digest
        except ManifestUnknown:
            return None

    async def delete_manifest(self, repo: str, digest: Digest) -> None:
        decision = self._require(repo, "delete", digest)
        if decision.immutable_tags:
            page = await self.inner.list_tags(repo, None, None)
            for tag in page.items:
                if decision.tag_is_immutable(tag) and await self._tagged(repo, Tag(tag)) == digest:
                    raise Denied({"repository": repo, "tag": str(tag)}, f"tag {tag} is immutable")
        await self.inner.delete_manifest(repo, digest)

    async def delete_tag(self, repo: str, tag: Tag) -> None:
        if self._require(repo, "delete", tag).tag_is_immutable(tag.name):
            raise Denied({"repository": repo, "tag": str(tag)}, f"tag {tag} is immutable")
        await self.inner.delete_tag(repo, tag)

    async def list_tags(self, repo: str, last: str | None, n: int | None) -> Page:
        self._require(repo, "pull")
        return await self.inner.list_tags(repo, last, n)

    async def list_tag_details(self, repo: str) -> list[TagDetail]:
        self._require(repo, "pull")
        return await self.inner.list_tag_details(repo)

    async def list_referrers(
        self, repo: str, digest: Digest, artifact_type: str | None
    ) -> list[Descriptor]:
        self._require(repo, "pull", digest)
        return await self.inner.list_referrers(repo, digest, artifact_type)

    async def list_repositories(self, last: str | None, n: int | None) -> Page:
        """Only the repositories the caller may pull, paged over the filtered list: read in
        batches and filtered in one pass, so hidden names cost neither queries nor a page."""
        identity = request_context().identity
        if identity.grants is not None and not identity.catalog:
            raise InsufficientScope(CATALOG_SCOPE)
        visible: list[str] = []
        cursor = last
        while True:
            page = await self.inner.list_repositories(cursor, CATALOG_BATCH)
            for name in page.items:
                if self.policy.decide(identity, name, "pull").allowed:
                    if n is not None and len(visible) == n:
                        return Page(visible, True)
                    visible.append(name)
            if not page.more or not page.items:
                return Page(visible, False)
            cursor = page.items[-1]
