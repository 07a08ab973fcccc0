"""Tag lists and the catalog: sorted, paged with ``last`` and ``n``; unknown repositories."""

from __future__ import annotations

import time

import pytest

from ocigate.oci.errors import NameUnknown
from ocigate.oci.reference import Tag
from ocigate.registry import Page, Registry

from .conftest import ROUTER_PREFIXES, Names
from .content import image

pytestmark = pytest.mark.anyio

TAGS = ["v2", "latest", "v10", "a", "v1"]


# (last, n) -> the page
PAGES = {
    (None, None): Page(["a", "latest", "v1", "v10", "v2"], False),
    (None, 2): Page(["a", "latest"], True),
    ("latest", 2): Page(["v1", "v10"], True),
    ("v1", 2): Page(["v10", "v2"], False),
    ("v10", 10): Page(["v2"], False),
    ("v2", None): Page([], False),
    ("b", None): Page(["latest", "v1", "v10", "v2"], False),  # last need not be a tag
    (None, 5): Page(["a", "latest", "v1", "v10", "v2"], False),
}


async def test_tag_list_pages(registry: Registry, names: Names) -> None:
    repo = names.repo()
    await image("tagged").push(registry, repo, *TAGS)
    for (last, n), page in PAGES.items():
        assert await registry.list_tags(repo, last, n) == page, (last, n)


async def test_tag_list_follows_changes(registry: Registry, names: Names) -> None:
    repo = names.repo()
    first = await image("first").push(registry, repo, "one")
    assert (await registry.list_tags(repo, None, None)).items == ["one"]
    await image("second").push(registry, repo, "two")
    assert (await registry.list_tags(repo, None, None)).items == ["one", "two"]
    await registry.delete_tag(repo, Tag("two"))
    assert (await registry.list_tags(repo, None, None)).items == ["one"]
    await registry.delete_manifest(repo, first.digest)
    assert (await registry.list_tags(repo, None, None)).items == []


async def test_unknown_repository_has_no_tags(registry: Registry, names: Names) -> None:
    with pytest.raises(NameUnknown):
        await registry.list_tags(names.repo("never-used"), None, None)


async def test_catalog_pages(registry: Registry, names: Names) -> None:
    repos = [names.repo(label) for label in ("r1", "r2", "r3")]
    for repo in reversed(repos):
        await image(repo).push(registry, repo, "v1")

    # Other tests' repositories may share the backend: look only at this test's own.
    def own(page: Page) -> list[str]:
        return [name for name in page.items if name.startswith(names.base + "/")]

    everything = await registry.list_repositories(None, None)
    assert own(everything) == repos
    assert everything.items == sorted(everything.items)
    first = await registry.list_repositories(names.base, 2)
    assert (first.items, first.more) == (repos[:2], True)
    rest = await registry.list_repositories(repos[1], 1)
    assert rest.items == repos[2:]
    assert own(await registry.list_repositories(repos[2], None)) == []


async def test_catalog_follows_pushes(registry: Registry, names: Names) -> None:
    early, late = names.repo("early"), names.repo("late")
    await image("early").push(registry, early, "v1")
    assert early in (await registry.list_repositories(names.base, None)).items
    await image("late").push(registry, late, "v1")
    assert {early, late} <= set((await registry.list_repositories(names.base, None)).items)


# Backends that keep push times; a gateway (and the router's gateway half) cannot tell them.
KEEPS_PUSH_TIMES = ("memory", "embedded", "objects-radosgw", "objects-seaweedfs")


async def test_tag_details(registry: Registry, names: Names, backend: str) -> None:
    repo = names.repo()
    before = time.time()
    first = await image("first").push(registry, repo, "v2", "latest")
    second = await image("second").push(registry, repo, "v1")
    after = time.time()
    details = await registry.list_tag_details(repo)
    assert [(d.tag, d.digest, d.size) for d in details] == [
        ("latest", first.digest, len(first.data)),
        ("v1", second.digest, len(second.data)),
        ("v2", first.digest, len(first.data)),
    ]
    assert {d.media_type for d in details} == {first.manifest.media_type}
    knows = backend in KEEPS_PUSH_TIMES or repo.startswith(f"{ROUTER_PREFIXES[0]}/")
    for detail in details:
        if knows:
            assert detail.pushed is not None and before - 1 <= detail.pushed <= after + 1
        else:
            assert detail.pushed is None

    await registry.delete_tag(repo, Tag("v2"))
    assert [d.tag for d in await registry.list_tag_details(repo)] == ["latest", "v1"]
    with pytest.raises(NameUnknown):
        await registry.list_tag_details(names.repo("never-used"))
