"""The ``MetadataStore`` contract, run over every implementation (``conftest.metadata_stores``)."""

from __future__ import annotations

import time

import anyio
import pytest

from ocigate.oci.descriptors import Descriptor
from ocigate.oci.digest import Digest
from ocigate.oci.errors import ManifestBlobUnknown
from ocigate.oci.reference import Tag
from ocigate.registry import Page
from ocigate.store.ports import MetadataStore, Required, Usage

from ..embedded_helpers import image, index
from .conftest import MetadataStores

pytestmark = pytest.mark.anyio


async def link_image(meta: MetadataStore, repo: str, config: bytes, *layers: bytes) -> None:
    for data in (config, *layers):
        await meta.link_blob(repo, Digest.of(data), len(data))


async def test_links_decide_what_a_repository_holds(metadata: MetadataStore) -> None:
    digest = Digest.of(b"layer")
    assert await metadata.blob_size("r", digest) is None
    assert await metadata.list_tags("r", None, None) is None  # no repository yet
    await metadata.link_blob("r", digest, 5)
    assert await metadata.blob_size("r", digest) == 5
    assert await metadata.blob_size("other", digest) is None
    assert await metadata.any_blob_size(digest) == 5
    assert await metadata.list_tags("r", None, None) == Page([], False)
    assert await metadata.unlink_blob("r", digest)
    assert not await metadata.unlink_blob("r", digest)
    assert await metadata.any_blob_size(digest) is None
    assert await metadata.list_repositories(None, None) == Page(["r"], False)  # stays listed


async def test_a_manifest_missing_a_requirement_changes_nothing(metadata: MetadataStore) -> None:
    manifest, data = image(b"{}", [b"layer"])
    required = [Required(d.digest, "blob") for d in manifest.blobs]
    await metadata.link_blob("r", Digest.of(b"{}"), 2)
    assert await metadata.first_missing("r", required) == required[1]
    # PostgreSQL's store has no stamp (every read asks it); the others' stays put.
    stamp = metadata.changes
    before = stamp.read() if stamp is not None else b""
    with pytest.raises(ManifestBlobUnknown, match="blob unknown to registry"):
        await metadata.put_manifest("r", manifest, data, [Tag("t")], required)
    assert stamp is None or stamp.read() == before
    assert await metadata.manifest_by_digest("r", manifest.digest) is None
    assert await metadata.manifest_by_tag("r", Tag("t")) is None
    assert await metadata.blob_size("r", manifest.digest) is None


async def test_manifests_tags_and_children(metadata: MetadataStore) -> None:
    await link_image(metadata, "r", b"{}", b"layer")
    manifest, data = image(b"{}", [b"layer"])
    required = [Required(d.digest, "blob") for d in manifest.blobs]
    await metadata.put_manifest("r", manifest, data, [Tag("a"), Tag("b")], required)
    found = await metadata.manifest_by_tag("r", Tag("a"))
    assert found is not None and (found.digest, found.data) == (manifest.digest, data)
    assert await metadata.blob_size("r", manifest.digest) == len(data)
    assert await metadata.list_tags("r", "a", 5) == Page(["b"], False)
    assert await metadata.list_tags("r", None, 1) == Page(["a"], True)

    parent, parent_data = index([manifest])
    child = [Required(manifest.digest, "manifest")]
    assert await metadata.first_missing("s", child) == child[0]
    with pytest.raises(ManifestBlobUnknown, match="manifest unknown to registry"):
        await metadata.put_manifest("s", parent, parent_data, [], child)
    await metadata.put_manifest("r", parent, parent_data, [Tag("a")], child)  # the tag moves
    moved = await metadata.manifest_by_tag("r", Tag("a"))
    assert moved is not None and moved.digest == parent.digest

    assert await metadata.delete_tag("r", Tag("b")) and not await metadata.delete_tag("r", Tag("b"))
    assert await metadata.delete_manifest("r", parent.digest)
    assert not await metadata.delete_manifest("r", parent.digest)
    assert await metadata.manifest_by_tag("r", Tag("a")) is None  # its tags went with it


async def test_tag_details_say_when_each_tag_was_last_pushed(metadata: MetadataStore) -> None:
    assert await metadata.tag_details("r") is None  # no repository yet
    await link_image(metadata, "r", b"{}", b"layer")
    manifest, data = image(b"{}", [b"layer"])
    assert await metadata.tag_details("r") == []
    await metadata.put_manifest("r", manifest, data, [Tag("b"), Tag("a")], [])
    first = await metadata.tag_details("r")
    assert first is not None and [(d.tag, d.digest, d.size) for d in first] == [
        ("a", manifest.digest, len(data)),
        ("b", manifest.digest, len(data)),
    ]
    assert first[0].media_type == manifest.media_type
    await anyio.sleep(0.05)
    parent, parent_data = index([manifest])
    await metadata.put_manifest("r", parent, parent_data, [Tag("a")], [])  # "a" moves
    await metadata.put_manifest("r", manifest, data, [], [])  # a push without tags moves none
    moved = await metadata.tag_details("r")
    assert moved is not None and [d.digest for d in moved] == [parent.digest, manifest.digest]
    assert moved[1] == first[1]
    assert moved[0].pushed is not None and first[0].pushed is not None
    assert moved[0].pushed > first[0].pushed


async def test_manifest_nodes_for_retention(metadata: MetadataStore) -> None:
    assert await metadata.manifest_nodes("r") == []
    await link_image(metadata, "r", b"{}", b"layer")
    before = time.time()
    child, child_data = image(b"{}", [b"layer"])
    await metadata.put_manifest("r", child, child_data, [], [])
    parent, parent_data = index([child])
    await metadata.put_manifest("r", parent, parent_data, [Tag("v1")], [])
    about = Descriptor(parent.media_type, parent.digest, parent.size)
    referrer, referrer_data = image(b"{}", [b"layer"], subject=about, artifact_type="a/sig")
    await metadata.put_manifest("r", referrer, referrer_data, [], [])
    nodes = await metadata.manifest_nodes("r")
    assert [(n.digest, n.subject, n.children) for n in nodes] == [
        (str(child.digest), None, ()),
        (str(parent.digest), None, (str(child.digest),)),
        (str(referrer.digest), str(parent.digest), ()),
    ]
    assert all(before <= n.stored <= time.time() for n in nodes)
    await metadata.put_manifest("r", child, child_data, [], [])  # a re-push: first stored stays
    assert (await metadata.manifest_nodes("r"))[0].stored == nodes[0].stored
    assert await metadata.manifest_nodes("other") == []


async def test_referrers_in_push_order_and_filtered(metadata: MetadataStore) -> None:
    await link_image(metadata, "r", b"{}", b"app")
    subject, subject_data = image(b"{}", [b"app"])
    await metadata.put_manifest("r", subject, subject_data, [], [])
    about = Descriptor(subject.media_type, subject.digest, subject.size)
    pushed = []
    for kind, layer in [("a/sig", b"sig"), ("a/sbom", b"sbom"), ("a/sig", b"sig 2")]:
        await link_image(metadata, "r", b"{}", layer)
        referrer, data = image(b"{}", [layer], subject=about, artifact_type=kind)
        await metadata.put_manifest("r", referrer, data, [], [])
        pushed.append((referrer, data))
    await metadata.put_manifest("r", *pushed[0], [], [])  # a re-push keeps its place
    referrers = [m.as_referrer() for m, _ in pushed]
    assert await metadata.referrers("r", subject.digest, None) == referrers
    sigs = await metadata.referrers("r", subject.digest, "a/sig")
    assert sigs == [referrers[0], referrers[2]]
    assert await metadata.referrers("other", subject.digest, None) == []


async def test_the_gc_view_of_references_and_links(metadata: MetadataStore) -> None:
    await link_image(metadata, "r", b"{}", b"used", b"also used")
    orphan = Digest.of(b"orphan")
    await metadata.link_blob("r", orphan, 6)
    await metadata.link_blob("s", orphan, 6)
    manifest, data = image(b"{}", [b"used", b"also used"])
    await metadata.put_manifest("r", manifest, data, [], [])
    marked = await metadata.referenced_digests()
    assert marked == {str(d) for d in (manifest.digest, *(b.digest for b in manifest.blobs))}
    links = await metadata.links()
    assert links[str(orphan)][0] == 2
    await metadata.unlink_everywhere([str(orphan)])
    assert await metadata.blob_size("r", orphan) is None
    assert await metadata.blob_size("s", orphan) is None
    assert str(orphan) not in await metadata.links()


async def test_every_change_moves_the_stamp_seen_by_every_instance(
    metadata_stores: MetadataStores,
) -> None:
    one, two = metadata_stores(), metadata_stores()
    stamp = two.changes  # None: a store whose sharers always ask it (PostgreSQL)
    seen = stamp.read() if stamp is not None else b""
    await one.link_blob("r", Digest.of(b"x"), 1)
    assert stamp is None or stamp.read() != seen
    assert await two.blob_size("r", Digest.of(b"x")) == 1


async def test_two_writers_racing_on_one_tag_leave_it_on_one_of_them(
    metadata_stores: MetadataStores,
) -> None:
    writers = [metadata_stores(), metadata_stores()]
    pushed = []
    for number in range(10):
        manifest, data = image(f'{{"n": {number}}}'.encode())
        await link_image(writers[0], "r", f'{{"n": {number}}}'.encode())
        pushed.append((manifest, data))

    async def push(number: int) -> None:
        manifest, data = pushed[number]
        required = [Required(d.digest, "blob") for d in manifest.blobs]
        await writers[number % 2].put_manifest("r", manifest, data, [Tag("latest")], required)

    async with anyio.create_task_group() as tg:
        for number in range(10):
            tg.start_soon(push, number)
    for writer in writers:
        found = await writer.manifest_by_tag("r", Tag("latest"))
        assert found is not None and found.digest in {m.digest for m, _ in pushed}
        assert await writer.list_tags("r", None, None) == Page(["latest"], False)
        for manifest, _ in pushed:  # every push stored whole
            assert await writer.manifest_by_digest("r", manifest.digest) is not None


async def test_the_gc_lock_excludes_sharers(metadata_stores: MetadataStores) -> None:
    one, two = metadata_stores(), metadata_stores()
    events: list[str] = []

    async def collector() -> None:
        async with two.gc_lock(exclusive=True):
            events.append("sweep")

    # Two sharers (commits) at once, in one process.
    shared = one.gc_lock(exclusive=False), one.gc_lock(exclusive=False)
    async with anyio.create_task_group() as tg, shared[0], shared[1]:
        tg.start_soon(collector)
        await anyio.sleep(0.1)
        events.append("commit done")
    assert events == ["commit done", "sweep"]


async def test_usage_counts_each_linked_blob_and_manifest_once(metadata: MetadataStore) -> None:
    assert await metadata.usage("r") == Usage(0, 0)  # no repository yet
    await link_image(metadata, "r", b"{}", b"layer")
    await metadata.link_blob("r", Digest.of(b"layer"), 5)  # linked again: still once
    await metadata.link_blob("other", Digest.of(b"layer"), 5)  # another repository's count
    manifest, data = image(b"{}", [b"layer"])
    required = [Required(d.digest, "blob") for d in manifest.blobs]
    await metadata.put_manifest("r", manifest, data, [Tag("a"), Tag("b")], required)
    await metadata.put_manifest("r", manifest, data, [Tag("a")], required)  # a re-push
    assert await metadata.usage("r") == Usage(2 + 5 + len(data), 2)
    assert await metadata.usage("other") == Usage(5, 0)
    assert await metadata.delete_tag("r", Tag("b"))
    assert await metadata.usage("r") == Usage(2 + 5 + len(data), 1)
    assert await metadata.delete_manifest("r", manifest.digest)
    assert await metadata.usage("r") == Usage(2 + 5, 0)
