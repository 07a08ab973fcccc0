"""Listings from an upstream: tags and the catalog, with the upstream's paging followed safely.

Tags come sorted with ``n``/``last`` paging done here (the upstream's whole list is fetched and
each page cut from it), and an empty list, not NAME_UNKNOWN, for a repository the catalog shows
but with no tags. ``Link`` headers are followed on the upstream's own origin only, for at most
``MAX_LIST_PAGES`` pages and never to a page already read.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urljoin

from ...client import Response
from ...oci.errors import BadGateway, NameUnknown, OCIError, PaginationInvalid
from ...registry import Page
from .core import UpstreamCore, scope

CATALOG_PAGE = 100  # distribution refuses n above its own maximum; ask for small pages
# Pages of one upstream listing followed for one request (each at most MAX_BODY bytes): an
# upstream whose Link never ends must not make one client request cost it thousands.
MAX_LIST_PAGES = 100
_LINK = re.compile(r"<([^>]+)>\s*;\s*rel=\"?next\"?")


def _next_link(response: Response) -> str | None:
    found = _LINK.search(response.headers.get("link", ""))
    return urljoin(response.url, found.group(1)) if found else None


class UpstreamListings:
    """The listing endpoints of one upstream."""

    def __init__(self, core: UpstreamCore) -> None:
        self._core = core

    async def all_pages(self, repo: str, path: str, key: str, token_scope: str) -> list[Any]:
        """Every item of a paged list, following ``Link`` headers on the upstream's origin
        only (another origin's answer must not be merged in), for at most MAX_LIST_PAGES
        pages and never to a page already read."""
        client = self._core.client
        items: list[Any] = []
        url: str | None = client.url(path)
        seen: set[str] = set()
        while url is not None:
            if url in seen or len(seen) >= MAX_LIST_PAGES:
                why = "loops" if url in seen else f"goes on beyond {MAX_LIST_PAGES} pages"
                raise BadGateway(
                    {"upstream": self._core.name, "pages": len(seen)},
                    f"upstream {self._core.name} {key} list {why}: refused",
                )
            if not client.origins.same_origin(url):
                raise client.origins.foreign(url, "Link")
            seen.add(url)
            response = await client.request("GET", url, scope=token_scope)
            if response.status_code != 200:
                raise await self._core.fail(response, NameUnknown, PaginationInvalid)
            await client.read(response)
            items.extend(self._listed(response, key))
            url = _next_link(response)
        return items

    def _listed(self, response: Response, key: str) -> list[Any]:
        """The ``key`` list of a JSON answer already read; 502 for anything else."""
        try:
            found = response.json().get(key) or []
        except (ValueError, AttributeError) as exc:
            raise BadGateway({"upstream": self._core.name}, f"bad {key} list: {exc}") from exc
        if not isinstance(found, list):
            raise BadGateway({"upstream": self._core.name}, f"bad {key} list: not a list")
        return found

    async def tags(self, repo: str, last: str | None, n: int | None) -> Page:
        # Every page is cut from the whole list, so concurrent listings share one.
        tags = await self._core.collapsed(self._all_tags, repo, "")
        if last is not None:
            tags = [t for t in tags if t > last]
        if n is None:
            return Page(list(tags), False)  # the list is shared: each caller gets its own
        return Page(tags[:n], len(tags) > n)

    async def all_tags(self, repo: str) -> list[str]:
        """Every tag of ``repo``, sorted, asked of the upstream now (not collapsed)."""
        listed = await self.all_pages(repo, f"/v2/{repo}/tags/list", "tags", scope(repo))
        return sorted(str(t) for t in listed)

    async def _all_tags(self, repo: str, _reference: str) -> list[str]:
        try:
            return await self.all_tags(repo)
        except NameUnknown:
            # distribution says NAME_UNKNOWN for a repository whose manifests are all untagged;
            # the catalog tells whether the repository exists after all.
            if not await self._in_catalog(repo):
                raise
            return []

    async def repositories(self, last: str | None, n: int | None) -> Page:
        want = n if n is not None else 10_000
        names: list[str] = []
        cursor = last
        # Bounded like all_pages; a short answer says "more" and the client pages on.
        for _ in range(MAX_LIST_PAGES):
            if len(names) >= want:
                break
            params = {"n": str(min(CATALOG_PAGE, want - len(names)))}
            if cursor:
                params["last"] = cursor
            response = await self._core.call(
                "GET", "/v2/_catalog", "", ok=(200,), missing=NameUnknown, params=params
            )
            page = [str(r) for r in self._listed(response, "repositories")]
            names.extend(page)
            if not page or _next_link(response) is None:
                return Page(names, False)
            cursor = page[-1]
        return Page(names, True)

    async def _in_catalog(self, repo: str) -> bool:
        """Whether the upstream's catalog lists ``repo`` (False when it has no catalog)."""
        try:
            names = await self.all_pages(
                repo, f"/v2/_catalog?n={CATALOG_PAGE}", "repositories", "registry:catalog:*"
            )
        except OCIError:
            return False
        return repo in names
