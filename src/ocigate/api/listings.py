"""Listing endpoints: tags, ``_catalog`` and referrers, with ``n``/``last`` paging."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

from ..oci.digest import Digest
from ..oci.errors import PaginationInvalid
from ..oci.mediatypes import OCI_INDEX
from ..oci.names import check_name
from ..oci.numbers import parse_decimal
from ..oci.reference import Tag
from .context import Call
from .http import Headers, respond_json


def _page_size(call: Call) -> int | None:
    raw = call.request.param("n")
    if raw is None or raw == "":
        return None
    n = parse_decimal(raw)
    if n is None:
        raise PaginationInvalid(f"n must be a non-negative integer, got {raw[:50]!r}")
    return n


def _last(call: Call, check: Callable[[str], object]) -> str | None:
    """The ``last`` cursor, held to the grammar of what is listed (so at most 128 characters for
    a tag, 255 for a repository): nothing else can follow a listed item."""
    last = call.request.param("last")
    if not last:
        return None
    check(last)  # raises on a malformed cursor
    return last


def _next_link(path: str, params: dict[str, str]) -> Headers:
    return [(b"link", f'<{path}?{urlencode(params)}>; rel="next"'.encode())]


async def _page(call: Call, path: str, key: str, last: str | None, *, repo: str | None) -> None:
    n = _page_size(call)
    limit = min(n, call.options.tags_page_size) if n is not None else call.options.tags_page_size
    if repo is None:
        page = await call.registry.list_repositories(last, limit)
        page_items, more = page.items, page.more
    else:
        page = await call.registry.list_tags(repo, last, limit)
        page_items, more = page.items, page.more
    headers: Headers = []
    if more and page_items:
        headers = _next_link(path, {"n": str(limit), "last": page_items[-1]})
    document: dict[str, object] = {key: page_items}
    if repo is not None:
        document = {"name": repo, **document}
    await respond_json(call.send, 200, document, headers)


async def tags(call: Call) -> None:
    path = f"/v2/{call.repo}/tags/list"
    await _page(call, path, "tags", _last(call, Tag.parse), repo=call.repo)


async def catalog(call: Call) -> None:
    await _page(call, "/v2/_catalog", "repositories", _last(call, check_name), repo=None)


async def referrers(call: Call) -> None:
    digest = Digest.parse(call.arg)
    artifact_type = call.request.param("artifactType") or None
    found = await call.registry.list_referrers(call.repo, digest, artifact_type)
    last = call.request.param("last")
    if last:
        positions = [i for i, d in enumerate(found) if str(d.digest) == last]
        found = found[positions[0] + 1 :] if positions else []
    size = call.options.referrers_page_size
    headers: Headers = []
    if len(found) > size:
        found = found[:size]
        params = {"last": str(found[-1].digest)}
        if artifact_type:
            params["artifactType"] = artifact_type
        headers = _next_link(f"/v2/{call.repo}/referrers/{digest}", params)
    if artifact_type:
        headers.append((b"oci-filters-applied", b"artifactType"))
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [d.to_json() for d in found],
    }
    await respond_json(call.send, 200, document, headers, OCI_INDEX.encode())
