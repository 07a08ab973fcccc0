"""Manifests through an upstream: get, head, stat, put, delete and tag deletion.

Manifests are forwarded byte-exact and verified against a digest reference. What the upstream
lacks is supplied here:

- tag deletion where the upstream only deletes by digest (see ``_untag``);
- 404 MANIFEST_UNKNOWN, not distribution's 500, for a blob's digest on the manifests endpoint;
- several tags at once: ``tag`` parameters are sent, and tags the upstream did not confirm
  with ``OCI-Tag`` are pushed one PUT per tag, which every registry understands.
"""

from __future__ import annotations

from collections.abc import Sequence

from ...client import Response
from ...oci.digest import Digest
from ...oci.errors import BadGateway, BlobUnknown, ManifestInvalid, ManifestUnknown, NameUnknown
from ...oci.manifests import Manifest
from ...oci.mediatypes import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST
from ...oci.numbers import parse_decimal
from ...oci.reference import Reference, Tag
from ...registry import ManifestInfo, StoredManifest, TagDetail
from ..stat_details import stat_tag_details
from .blobs import UpstreamBlobs
from .core import UpstreamCore, scope
from .listings import UpstreamListings

MANIFEST_ACCEPT = ", ".join(
    [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, "*/*;q=0.1"]
)
# Failures ``upstream_error`` tells from the status alone (500 is not one: distribution answers
# it for a blob's digest on the manifests endpoint). After a HEAD, asking again with a GET would
# only double the requests, and the retries, sent to an upstream that refuses, limits or fails.
_TOLD_BY_STATUS = frozenset({401, 403, 429, 502, 503, 504})


class UpstreamManifests:
    """The manifest endpoints of one upstream; manifests larger than ``max_size`` are 502."""

    def __init__(
        self,
        core: UpstreamCore,
        max_size: int,
        blobs: UpstreamBlobs,
        listings: UpstreamListings,
    ) -> None:
        self._core = core
        self._max_size = max_size
        self._blobs = blobs
        self._listings = listings

    async def get(self, repo: str, reference: Reference) -> StoredManifest:
        return await self._core.collapsed(self._get, repo, reference)

    async def _request(self, method: str, repo: str, reference: Reference) -> Response:
        return await self._core.client.request(
            method,
            f"/v2/{repo}/manifests/{reference}",
            scope=scope(repo),
            headers={"Accept": MANIFEST_ACCEPT},
        )

    async def _get(self, repo: str, reference: Reference) -> StoredManifest:
        name = self._core.name
        response = await self._request("GET", repo, reference)
        if response.status_code == 500 and isinstance(reference, Digest):
            # distribution fails with 500 when the digest names a blob that is no manifest;
            # a blob that is there proves the upstream is up and the manifest is not.
            await response.aclose()
            try:
                await self._blobs.stat(repo, reference)
            except BlobUnknown:
                pass
            else:
                raise ManifestUnknown({"reference": str(reference)}, "the digest names no manifest")
            raise BadGateway({"upstream": name}, f"upstream {name} failed with 500")
        if response.status_code != 200:
            raise await self._core.fail(response, ManifestUnknown, ManifestInvalid)
        media_type = response.headers.get("content-type", OCI_MANIFEST).split(";")[0].strip()
        data = await self._core.client.read(response, self._max_size)
        if isinstance(reference, Digest):
            digest = Digest.of(data, reference.algorithm)
            if digest != reference:
                raise BadGateway(
                    {"upstream": name, "digest": str(reference)},
                    f"upstream {name} returned a manifest not matching {reference}",
                )
        else:
            digest = Digest.of(data)
        return StoredManifest(digest, media_type, data)

    async def head(self, repo: str, reference: Reference) -> Response:
        """The upstream's answer to a manifest HEAD, whatever its status (no body to read)."""
        response = await self._request("HEAD", repo, reference)
        await response.aclose()
        return response

    async def stat(self, repo: str, reference: Reference) -> ManifestInfo:
        return await self._core.collapsed(self._stat, repo, reference)

    async def tag_details(self, repo: str) -> list[TagDetail]:
        """The upstream keeps no push times we could read: pushed is None."""
        return await stat_tag_details(self._listings.tags, self.stat, repo)

    async def _stat(self, repo: str, reference: Reference) -> ManifestInfo:
        response = await self.head(repo, reference)
        if response.status_code in _TOLD_BY_STATUS:
            raise await self._core.fail(response, ManifestUnknown, ManifestInvalid)
        header = response.headers.get("docker-content-digest", "")
        length = parse_decimal(response.headers.get("content-length", ""))
        digest = Digest.parse(header) if ":" in header else None  # a header, not a path
        if (
            response.status_code != 200
            or digest is None
            or length is None
            or (isinstance(reference, Digest) and digest != reference)
        ):
            # Other errors (told right only from a body) and answers missing what a HEAD
            # needs: the GET says what is what.
            return (await self.get(repo, reference)).info()
        media_type = response.headers.get("content-type", OCI_MANIFEST).split(";")[0].strip()
        return ManifestInfo(digest, media_type, length)

    async def _put(
        self,
        repo: str,
        reference: Reference,
        media_type: str,
        data: bytes,
        tags: Sequence[Tag] = (),
    ) -> Response:
        return await self._core.call(
            "PUT",
            f"/v2/{repo}/manifests/{reference}",
            repo,
            ok=(200, 201),
            missing=NameUnknown,
            invalid=ManifestInvalid,
            push=True,
            headers={"Content-Type": media_type},
            content=data,
            params={"tag": [tag.name for tag in tags]} if tags else None,
        )

    async def put(self, repo: str, manifest: Manifest, data: bytes, tags: Sequence[Tag]) -> None:
        if len(tags) == 1:
            await self._put(repo, tags[0], manifest.media_type, data)
            return
        # Several tags: one push by digest with ``tag`` parameters; an upstream without them
        # answers with fewer OCI-Tag headers, and the tags left are pushed one by one.
        response = await self._put(repo, manifest.digest, manifest.media_type, data, tags)
        applied = {t.strip() for t in response.headers.get("oci-tag", "").split(",")}
        for tag in tags:
            if tag.name not in applied:
                await self._put(repo, tag, manifest.media_type, data)

    async def delete(self, repo: str, digest: Digest) -> None:
        await self._core.delete(f"/v2/{repo}/manifests/{digest}", repo, ManifestUnknown)

    async def delete_tag(self, repo: str, tag: Tag) -> None:
        target = await self.get(repo, tag)  # ManifestUnknown when there is no such tag
        response = await self._core.client.request(
            "DELETE", f"/v2/{repo}/manifests/{tag}", scope=scope(repo, True)
        )
        if response.status_code in (200, 202, 204):
            await response.aclose()
            return
        if response.status_code not in (400, 405):
            raise await self._core.fail(response, ManifestUnknown)
        await response.aclose()
        await self._untag(repo, tag, target)

    async def _untag(self, repo: str, tag: Tag, target: StoredManifest) -> None:
        """Tag deletion for registries that only delete by digest (distribution answers
        DIGEST_INVALID): delete the manifest, which drops all its tags, then push it back by
        digest and under its other tags. Not atomic: readers may briefly miss the manifest."""
        others: list[Reference] = []
        for name in await self._listings.all_tags(repo):
            if name == tag.name:
                continue
            other = Tag(name)
            head = await self.head(repo, other)
            if head.headers.get("docker-content-digest") == str(target.digest):
                others.append(other)
        await self.delete(repo, target.digest)
        for reference in [target.digest, *others]:
            await self._put(repo, reference, target.media_type, target.data)
