"""What the pages show, read through the ``Registry`` stack the API uses: with the access policy
on top, the caller's identity (set in the request context) sees only what it may pull."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..oci.digest import Digest
from ..oci.reference import Reference
from ..registry import Page, Registry, TagDetail

# Repository names read per call while filtering: a filter matching few of many names costs
# one call per this many.
_FILTER_BATCH = 1000
# A referrers tree is cut here: signatures of signatures exist, endless chains should not.
REFERRER_DEPTH = 4
REFERRER_MAX = 200


async def repositories(registry: Registry, query: str, last: str | None, n: int) -> Page:
    """Repositories whose name contains ``query``, ``n`` after ``last``."""
    if not query:
        return await registry.list_repositories(last, n)
    found: list[str] = []
    cursor = last
    while True:
        page = await registry.list_repositories(cursor, _FILTER_BATCH)
        for name in page.items:
            if query in name:
                if len(found) == n:
                    return Page(found, True)
                found.append(name)
        if not page.more or not page.items:
            return Page(found, False)
        cursor = page.items[-1]


async def tags(
    registry: Registry, repo: str, last: str | None, n: int
) -> tuple[list[TagDetail], bool]:
    """``n`` tags after ``last`` with their details, and whether more follow. The details come
    as one list (a gateway asks its upstream once per tag there): paged here."""
    details = await registry.list_tag_details(repo)
    after = [detail for detail in details if last is None or detail.tag > last]
    return after[:n], len(after) > n


@dataclass(frozen=True, slots=True)
class Item:
    """A descriptor as shown: a layer, the config, an index child, a referrer."""

    media_type: str
    digest: str
    size: int
    artifact_type: str = ""
    platform: str = ""
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Referrer:
    item: Item
    referrers: list[Referrer]


@dataclass(frozen=True, slots=True)
class ManifestView:
    digest: str
    media_type: str
    size: int
    artifact_type: str
    config: Item | None
    layers: list[Item]
    children: list[Item]
    subject: Item | None
    annotations: dict[str, str]
    referrers: list[Referrer]


async def manifest(registry: Registry, repo: str, reference: Reference) -> ManifestView:
    stored = await registry.get_manifest(repo, reference)
    doc = json.loads(stored.data)  # the store accepted it: a JSON object
    config = _item(doc.get("config"))
    subject = _item(doc.get("subject"))
    budget = [REFERRER_MAX]
    return ManifestView(
        digest=str(stored.digest),
        media_type=stored.media_type,
        size=len(stored.data),
        artifact_type=_text(doc.get("artifactType")) or (config.media_type if config else ""),
        config=config,
        layers=_items(doc.get("layers") or doc.get("blobs")),
        children=_items(doc.get("manifests")),
        subject=subject,
        annotations=_annotations(doc.get("annotations")),
        referrers=await _referrers(registry, repo, stored.digest, REFERRER_DEPTH, budget),
    )


async def _referrers(
    registry: Registry, repo: str, digest: Digest, depth: int, budget: list[int]
) -> list[Referrer]:
    """The referrers of ``digest`` and theirs, ``depth`` levels and ``budget`` nodes at most."""
    if depth == 0 or budget[0] <= 0:
        return []
    out = []
    for descriptor in await registry.list_referrers(repo, digest, None):
        if budget[0] <= 0:
            break
        budget[0] -= 1
        item = Item(
            descriptor.media_type,
            str(descriptor.digest),
            descriptor.size,
            descriptor.artifact_type or "",
            annotations=dict(descriptor.annotations),
        )
        below = await _referrers(registry, repo, descriptor.digest, depth - 1, budget)
        out.append(Referrer(item, below))
    return out


def _items(value: Any) -> list[Item]:
    if not isinstance(value, list):
        return []
    return [item for item in map(_item, value) if item is not None]


def _item(value: Any) -> Item | None:
    if not isinstance(value, dict):
        return None
    size = value.get("size")
    return Item(
        media_type=_text(value.get("mediaType")),
        digest=_text(value.get("digest")),
        size=size if isinstance(size, int) else 0,
        artifact_type=_text(value.get("artifactType")),
        platform=_platform(value.get("platform")),
        annotations=_annotations(value.get("annotations")),
    )


def _platform(value: Any) -> str:
    if not isinstance(value, dict):
        return ""
    parts = [_text(value.get(key)) for key in ("os", "architecture", "variant")]
    return "/".join(part for part in parts if part)


def _annotations(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
