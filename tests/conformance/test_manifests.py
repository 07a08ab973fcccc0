"""Manifests and tags: pushes by tag and by digest, byte-exact reads, references, deletion."""

from __future__ import annotations

import pytest

from ocigate.oci.errors import ManifestBlobUnknown, ManifestUnknown
from ocigate.oci.mediatypes import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from ocigate.oci.reference import Reference, Tag
from ocigate.registry import Registry

from .conftest import Names
from .content import Pushable, image, index, push_blob

pytestmark = pytest.mark.anyio


async def assert_served(
    registry: Registry, repo: str, reference: Reference, pushed: Pushable
) -> None:
    """GET and HEAD of ``reference`` answer ``pushed``, byte for byte."""
    stored = await registry.get_manifest(repo, reference)
    assert (stored.digest, stored.media_type, stored.data) == (
        pushed.digest,
        pushed.manifest.media_type,
        pushed.data,
    )
    info = await registry.stat_manifest(repo, reference)
    assert (info.digest, info.media_type, info.size) == (
        pushed.digest,
        pushed.manifest.media_type,
        len(pushed.data),
    )


async def assert_unknown(registry: Registry, repo: str, reference: Reference) -> None:
    with pytest.raises(ManifestUnknown):
        await registry.get_manifest(repo, reference)
    with pytest.raises(ManifestUnknown):
        await registry.stat_manifest(repo, reference)


async def test_push_by_tag(registry: Registry, names: Names) -> None:
    repo = names.repo()
    pushed = await image("by-tag").push(registry, repo, "v1")
    await assert_served(registry, repo, Tag("v1"), pushed)
    await assert_served(registry, repo, pushed.digest, pushed)
    assert pushed.manifest.media_type == OCI_MANIFEST


async def test_push_by_digest(registry: Registry, names: Names) -> None:
    repo = names.repo()
    pushed = await image("by-digest").push(registry, repo)
    await assert_served(registry, repo, pushed.digest, pushed)
    assert (await registry.list_tags(repo, None, None)).items == []


async def test_push_under_several_tags(registry: Registry, names: Names) -> None:
    repo = names.repo()
    pushed = await image("several").push(registry, repo, "one", "two", "three")
    for tag in ("one", "two", "three"):
        await assert_served(registry, repo, Tag(tag), pushed)
    assert (await registry.list_tags(repo, None, None)).items == ["one", "three", "two"]


async def test_missing_blob_is_refused_and_nothing_is_visible(
    registry: Registry, names: Names
) -> None:
    repo = names.repo()
    complete = image("complete")
    await complete.push(registry, repo, "kept")
    lacking = image("lacking")
    for blob in lacking.blobs[:-1]:  # the last layer is never uploaded
        await push_blob(registry, repo, blob)
    with pytest.raises(ManifestBlobUnknown):
        await registry.put_manifest(repo, lacking.manifest, lacking.data, [Tag("broken")])
    await assert_unknown(registry, repo, lacking.digest)
    await assert_unknown(registry, repo, Tag("broken"))
    assert (await registry.list_tags(repo, None, None)).items == ["kept"]


async def test_index_with_children(registry: Registry, names: Names) -> None:
    repo = names.repo()
    children = [await image(f"child-{n}").push(registry, repo) for n in range(2)]
    pushed = await index(children).push(registry, repo, "multi")
    assert pushed.manifest.media_type == OCI_INDEX
    await assert_served(registry, repo, Tag("multi"), pushed)
    for child in children:
        await assert_served(registry, repo, child.digest, child)


async def test_index_with_a_missing_child_is_refused(registry: Registry, names: Names) -> None:
    repo = names.repo()
    present = await image("present").push(registry, repo)
    absent = image("absent")  # its blobs are there, the manifest is not
    for blob in absent.blobs:
        await push_blob(registry, repo, blob)
    incomplete = index([present, absent])
    with pytest.raises(ManifestBlobUnknown):
        await registry.put_manifest(repo, incomplete.manifest, incomplete.data, [Tag("multi")])
    await assert_unknown(registry, repo, Tag("multi"))
    await assert_unknown(registry, repo, incomplete.digest)


async def test_tag_moves_to_the_new_manifest(registry: Registry, names: Names) -> None:
    repo = names.repo()
    old = await image("old").push(registry, repo, "latest")
    await assert_served(registry, repo, Tag("latest"), old)
    new = await image("new").push(registry, repo, "latest")
    await assert_served(registry, repo, Tag("latest"), new)
    await assert_served(registry, repo, old.digest, old)
    assert (await registry.list_tags(repo, None, None)).items == ["latest"]


async def test_delete_tag(registry: Registry, names: Names) -> None:
    repo = names.repo()
    pushed = await image("untagged").push(registry, repo, "gone", "stays")
    await assert_served(registry, repo, Tag("gone"), pushed)  # a cache keeps what was read
    await registry.delete_tag(repo, Tag("gone"))
    await assert_unknown(registry, repo, Tag("gone"))
    await assert_served(registry, repo, Tag("stays"), pushed)
    await assert_served(registry, repo, pushed.digest, pushed)
    assert (await registry.list_tags(repo, None, None)).items == ["stays"]
    with pytest.raises(ManifestUnknown):
        await registry.delete_tag(repo, Tag("gone"))


async def test_delete_manifest_and_its_tags(registry: Registry, names: Names) -> None:
    repo = names.repo()
    doomed = await image("doomed").push(registry, repo, "a", "b")
    other = await image("other").push(registry, repo, "c")
    for reference in (Tag("a"), Tag("b"), doomed.digest):  # a cache keeps what was read
        await assert_served(registry, repo, reference, doomed)
    await registry.delete_manifest(repo, doomed.digest)
    for reference in (Tag("a"), Tag("b"), doomed.digest):
        await assert_unknown(registry, repo, reference)
    await assert_served(registry, repo, Tag("c"), other)
    assert (await registry.list_tags(repo, None, None)).items == ["c"]
    with pytest.raises(ManifestUnknown):
        await registry.delete_manifest(repo, doomed.digest)


async def test_unknown_manifest(registry: Registry, names: Names) -> None:
    repo = names.repo()
    pushed = await image("known").push(registry, repo, "known")
    never = image("never pushed")
    for where in (repo, names.repo("nowhere")):
        await assert_unknown(registry, where, Tag("missing"))
        await assert_unknown(registry, where, never.digest)
        with pytest.raises(ManifestUnknown):
            await registry.delete_manifest(where, never.digest)
        with pytest.raises(ManifestUnknown):
            await registry.delete_tag(where, Tag("missing"))
    # A blob's digest names no manifest.
    config = pushed.manifest.blobs[0].digest
    await assert_unknown(registry, repo, config)


async def test_docker_manifest_keeps_its_media_type(registry: Registry, names: Names) -> None:
    repo = names.repo()
    pushed = await image("docker", docker=True).push(registry, repo, "v1")
    assert pushed.manifest.media_type == DOCKER_MANIFEST
    await assert_served(registry, repo, Tag("v1"), pushed)


async def test_the_same_manifest_pushed_again(registry: Registry, names: Names) -> None:
    repo = names.repo()
    pushed = await image("again").push(registry, repo, "one")
    await pushed.push(registry, repo, "one")
    await pushed.push(registry, repo, "two")
    await assert_served(registry, repo, Tag("one"), pushed)
    await assert_served(registry, repo, Tag("two"), pushed)
    assert (await registry.list_tags(repo, None, None)).items == ["one", "two"]


async def test_repositories_are_apart(registry: Registry, names: Names) -> None:
    mine, theirs = names.repo("mine"), names.repo("theirs")
    pushed = await image("apart").push(registry, mine, "v1")
    await assert_unknown(registry, theirs, Tag("v1"))
    await assert_unknown(registry, theirs, pushed.digest)
    # Blobs held by another repository do not satisfy a manifest's references either.
    with pytest.raises(ManifestBlobUnknown):
        await registry.put_manifest(theirs, pushed.manifest, pushed.data, [Tag("v1")])
    await pushed.push(registry, theirs, "v1")
    await registry.delete_manifest(theirs, pushed.digest)
    await assert_served(registry, mine, Tag("v1"), pushed)


async def test_untagged_repository_lists_no_tags(registry: Registry, names: Names) -> None:
    repo = names.repo()
    await push_blob(registry, repo, b"a blob and nothing else")
    assert (await registry.list_tags(repo, None, None)).items == []
