"""Several registries behind one namespace, chosen by repository prefix.

``dockerhub/library/alpine`` with a route ``dockerhub`` → that route's registry, repository
``library/alpine``. The longest matching prefix wins; the empty prefix matches everything.
Prefixes match whole path components only (``dock`` does not match ``dockerhub/x``).

A request whose ``ns`` query parameter names an upstream's host (``host[:port]`` of its URL) goes
to that upstream whatever its prefix, with the repository name unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ...context import request_context
from ...oci.descriptors import Descriptor
from ...oci.digest import Digest
from ...oci.errors import BlobUnknown, Denied, NameUnknown, NotFound, Unauthorized, Unsupported
from ...oci.manifests import Manifest
from ...oci.reference import Reference, Tag
from ...registry import (
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


class RouterStore:
    def __init__(
        self,
        routes: Sequence[tuple[str, Registry]],
        hosts: Mapping[str, Registry] | None = None,
    ) -> None:
        # ``ns`` → registry, keyed by lower-cased ``host[:port]``.
        self._hosts = {host.lower(): registry for host, registry in (hosts or {}).items()}
        # Longest prefix first, so the first match is the most specific one.
        self._routes = sorted(
            ((prefix.strip("/"), registry) for prefix, registry in routes),
            key=lambda route: len(route[0]),
            reverse=True,
        )

    def route(self, repo: str) -> tuple[Registry, str, str]:
        """``(registry, prefix, repository inside it)`` for a gateway repository name."""
        by_host = self._by_namespace()
        if by_host is not None:
            return by_host, "", repo
        for prefix, registry in self._routes:
            if not prefix:
                return registry, prefix, repo
            if repo.startswith(prefix + "/"):
                return registry, prefix, repo[len(prefix) + 1 :]
        raise NameUnknown({"name": repo}, "no upstream is configured for this repository")

    def resolve_namespace(self, host: str) -> str | None:
        """``host`` when an ``ns`` naming it routes to an upstream, else None (the HTTP layer
        asks once per request, keeps the answer in the request context, and answers with
        ``OCI-Namespace``)."""
        return host if host.lower() in self._hosts else None

    def _by_namespace(self) -> Registry | None:
        """The upstream the request's resolved ``ns`` names, if any."""
        namespace = request_context().namespace
        return None if namespace is None else self._hosts.get(namespace.lower())

    async def stat_blob(self, repo: str, digest: Digest) -> int:
        registry, _, inner = self.route(repo)
        return await registry.stat_blob(inner, digest)

    async def get_blob(self, repo: str, digest: Digest, byte_range: ByteRange | None) -> BlobBody:
        registry, _, inner = self.route(repo)
        return await registry.get_blob(inner, digest, byte_range)

    async def delete_blob(self, repo: str, digest: Digest) -> None:
        registry, _, inner = self.route(repo)
        await registry.delete_blob(inner, digest)

    async def start_upload(self, repo: str) -> UploadState:
        registry, _, inner = self.route(repo)
        return await registry.start_upload(inner)

    async def upload_status(self, repo: str, upload_id: str) -> UploadState:
        registry, _, inner = self.route(repo)
        return await registry.upload_status(inner, upload_id)

    async def write_upload(self, repo: str, upload_id: str, chunk: UploadChunk) -> UploadState:
        registry, _, inner = self.route(repo)
        return await registry.write_upload(inner, upload_id, chunk)

    async def commit_upload(
        self, repo: str, upload_id: str, digest: Digest, chunk: UploadChunk | None
    ) -> int:
        registry, _, inner = self.route(repo)
        return await registry.commit_upload(inner, upload_id, digest, chunk)

    async def cancel_upload(self, repo: str, upload_id: str) -> None:
        registry, _, inner = self.route(repo)
        await registry.cancel_upload(inner, upload_id)

    async def mount_blob(self, repo: str, source: str | None, digest: Digest) -> int:
        registry, _, inner = self.route(repo)
        inner_source: str | None = None
        if source is not None:
            try:
                source_registry, _, inner_source = self.route(source)
            except NameUnknown:
                source_registry = None
            if source_registry is not registry:
                # Across upstreams there is nothing to link: the client uploads instead.
                raise BlobUnknown({"digest": str(digest)}, "source is on another upstream")
        return await registry.mount_blob(inner, inner_source, digest)

    async def get_manifest(self, repo: str, reference: Reference) -> StoredManifest:
        registry, _, inner = self.route(repo)
        return await registry.get_manifest(inner, reference)

    async def stat_manifest(self, repo: str, reference: Reference) -> ManifestInfo:
        registry, _, inner = self.route(repo)
        return await registry.stat_manifest(inner, reference)

    async def put_manifest(
        self, repo: str, manifest: Manifest, data: bytes, tags: Sequence[Tag]
    ) -> None:
        registry, _, inner = self.route(repo)
        await registry.put_manifest(inner, manifest, data, tags)

    async def delete_manifest(self, repo: str, digest: Digest) -> None:
        registry, _, inner = self.route(repo)
        await registry.delete_manifest(inner, digest)

    async def delete_tag(self, repo: str, tag: Tag) -> None:
        registry, _, inner = self.route(repo)
        await registry.delete_tag(inner, tag)

    async def list_tags(self, repo: str, last: str | None, n: int | None) -> Page:
        registry, _, inner = self.route(repo)
        return await registry.list_tags(inner, last, n)

    async def list_tag_details(self, repo: str) -> list[TagDetail]:
        registry, _, inner = self.route(repo)
        return await registry.list_tag_details(inner)

    async def list_referrers(
        self, repo: str, digest: Digest, artifact_type: str | None
    ) -> list[Descriptor]:
        registry, _, inner = self.route(repo)
        return await registry.list_referrers(inner, digest, artifact_type)

    async def list_repositories(self, last: str | None, n: int | None) -> Page:
        by_host = self._by_namespace()
        if by_host is not None:
            return await by_host.list_repositories(last, n)
        if len(self._routes) == 1 and not self._routes[0][0]:
            return await self._routes[0][1].list_repositories(last, n)
        # Merge every upstream's catalog under its prefix; names shadowed by a longer prefix
        # are left out, since requests for them go elsewhere.
        names: set[str] = set()
        for prefix, registry in self._routes:
            try:
                page = await registry.list_repositories(None, None)
            except (Denied, Unauthorized, NotFound, Unsupported, NameUnknown):
                continue  # no catalog there (Docker Hub has none); outages still fail

            for name in page.items:
                full = f"{prefix}/{name}" if prefix else name
                if self.route(full)[0] is registry:
                    names.add(full)
        ordered = sorted(n_ for n_ in names if last is None or n_ > last)
        if n is None:
            return Page(ordered, False)
        return Page(ordered[:n], len(ordered) > n)

    async def close(self) -> None:
        for _, registry in self._routes:
            await registry.close()
