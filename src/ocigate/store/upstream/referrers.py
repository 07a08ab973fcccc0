"""The upstream's own referrers API: whether it has one (probed once) and its pages.

An upstream without one (distribution 2.8) is wrapped in the referrers tag fallback
(``layers.referrers_tags``), which asks :meth:`UpstreamReferrers.has_api` to decide.
"""

from __future__ import annotations

from typing import Any

from ...oci.descriptors import Descriptor
from ...oci.digest import Digest
from ...oci.errors import NameUnknown, Unsupported
from ...oci.referrers import listed_referrers
from .core import UpstreamCore, scope
from .listings import UpstreamListings


class UpstreamReferrers:
    """The ``/referrers/`` endpoint of one upstream."""

    def __init__(self, core: UpstreamCore, listings: UpstreamListings) -> None:
        self._core = core
        self._listings = listings
        self._native: bool | None = None

    async def has_api(self, repo: str) -> bool:
        """Whether the upstream serves ``/referrers/`` itself: asked once. An OCI error body
        (even 404 NAME_UNKNOWN) proves the endpoint exists; distribution's plain 404 does not."""
        if self._native is None:
            client = self._core.client
            probe = f"/v2/{repo}/referrers/sha256:{'0' * 64}"
            response = await client.request("GET", probe, scope=scope(repo))
            if response.status_code >= 500 or response.status_code in (401, 403, 429):
                raise await self._core.fail(response, NameUnknown)
            await client.read(response)
            native = response.status_code == 200
            if response.status_code == 404:
                try:
                    native = bool(response.json().get("errors"))
                except (ValueError, AttributeError):
                    native = False
            self._native = native
        return self._native

    async def find(self, repo: str, digest: Digest, artifact_type: str | None) -> list[Descriptor]:
        if not await self.has_api(repo):
            raise Unsupported(
                {"upstream": self._core.name},
                f"upstream {self._core.name} has no referrers API",
            )
        raw = await self._core.collapsed(self._pages, repo, digest)
        return listed_referrers(raw, artifact_type)

    async def _pages(self, repo: str, digest: Digest) -> list[dict[str, Any]]:
        """The referrers entries, unfiltered: concurrent queries share them, whatever
        ``artifactType`` each filters by."""
        path = f"/v2/{repo}/referrers/{digest}"
        return await self._listings.all_pages(repo, path, "manifests", scope(repo))
