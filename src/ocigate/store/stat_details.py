"""Tag details where no push time is stored (an upstream, a cache of one): the tags listed,
then each manifest asked for with a HEAD, a few at a time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from ..oci.errors import ManifestUnknown
from ..oci.reference import Reference, Tag
from ..registry import ManifestInfo, Page, TagDetail

# HEADs in flight for one listing: enough to hide the round trips, few enough that one listing
# of a large repository does not take an upstream's whole rate limit at once.
CONCURRENCY = 8

ListTags = Callable[[str, str | None, int | None], Awaitable[Page]]
StatManifest = Callable[[str, Reference], Awaitable[ManifestInfo]]


async def stat_tag_details(
    list_tags: ListTags, stat_manifest: StatManifest, repo: str
) -> list[TagDetail]:
    """Every tag of ``repo`` with its manifest's digest, media type and size; pushed is None.
    A tag deleted between the listing and its HEAD is left out."""
    names = (await list_tags(repo, None, None)).items
    found: dict[str, TagDetail] = {}
    limiter = anyio.CapacityLimiter(CONCURRENCY)

    async def stat(name: str) -> None:
        async with limiter:
            try:
                info = await stat_manifest(repo, Tag(name))
            except ManifestUnknown:
                return
        found[name] = TagDetail(name, info.digest, info.media_type, info.size, None)

    async with anyio.create_task_group() as group:
        for name in names:
            group.start_soon(stat, name)
    return [found[name] for name in sorted(found)]
