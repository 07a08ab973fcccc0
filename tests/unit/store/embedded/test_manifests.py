"""EmbeddedStore: manifests, tags, referrers, listings and garbage collection."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from pathlib import Path

import anyio
import pytest

from ocigate.oci.descriptors import Descriptor
from ocigate.oci.digest import Digest
from ocigate.oci.errors import (
    BlobUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestUnknown,
    NameUnknown,
)
from ocigate.oci.reference import Tag, parse_reference
from ocigate.registry import UploadChunk
from ocigate.store.embedded import EmbeddedStore

from ...embedded_helpers import body, image, index, push_blob, push_image

pytestmark = pytest.mark.anyio


async def test_put_and_get_by_tag_and_digest(store: EmbeddedStore) -> None:
    manifest = await push_image(store, "r", b"{}", [b"layer"], tags=["v1", "latest"])
    _, data = image(b"{}", [b"layer"])
    for reference in ("v1", "latest", str(manifest.digest)):
        got = await store.get_manifest("r", parse_reference(reference))
        assert (got.digest, got.media_type, got.data) == (
            manifest.digest,
            manifest.media_type,
            data,
        )
    # The manifest bytes are a blob of the repository too.
    assert await store.stat_blob("r", manifest.digest) == len(data)
    for missing in ("v2", str(Digest.of(b"nope"))):
        with pytest.raises(ManifestUnknown):
            await store.get_manifest("r", parse_reference(missing))
        with pytest.raises(ManifestUnknown):
            await store.get_manifest("no-such-repo", parse_reference(missing))
    with pytest.raises(DigestInvalid):
        await store.get_manifest("r", parse_reference("sha256:short"))


async def test_repush_is_idempotent_and_tags_move(store: EmbeddedStore) -> None:
    first = await push_image(store, "r", b"{}", [b"one"], tags=["latest"])
    again = await push_image(store, "r", b"{}", [b"one"], tags=["latest", "stable"])
    assert first.digest == again.digest
    second = await push_image(store, "r", b"{}", [b"two"], tags=["latest"])
    assert (await store.get_manifest("r", Tag("latest"))).digest == second.digest
    assert (await store.get_manifest("r", Tag("stable"))).digest == first.digest
    assert (await store.list_tags("r", None, None)).items == ["latest", "stable"]


async def test_missing_blob_or_child_is_manifest_blob_unknown(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    await push_blob(store, "r", b"{}")
    manifest, data = image(b"{}", [b"never pushed"])
    with pytest.raises(ManifestBlobUnknown) as info:
        await store.put_manifest("r", manifest, data, [Tag("t")])
    assert info.value.detail == {"digest": str(Digest.of(b"never pushed"))}
    # A blob of another repository does not count.
    await push_blob(store, "elsewhere", b"never pushed")
    with pytest.raises(ManifestBlobUnknown):
        await store.put_manifest("r", manifest, data, [Tag("t")])
    with pytest.raises(ManifestUnknown):
        await store.get_manifest("r", Tag("t"))
    with pytest.raises(BlobUnknown):  # nothing of the failed push is visible
        await store.stat_blob("r", manifest.digest)

    child, _ = image(b"{}")
    idx, idx_data = index([child])
    with pytest.raises(ManifestBlobUnknown):
        await store.put_manifest("r", idx, idx_data, [])
    sparse = EmbeddedStore(tmp_path, sparse_index=True)
    await sparse.put_manifest("r", idx, idx_data, [Tag("multi")])
    assert (await sparse.get_manifest("r", Tag("multi"))).data == idx_data
    await push_image(store, "r2", b"{}", tags=[])
    await store.put_manifest("r2", idx, idx_data, [Tag("multi")])  # the child exists in r2
    await store.close()
    await sparse.close()


async def test_subject_may_be_missing_and_referrers_are_listed(store: EmbeddedStore) -> None:
    subject = Descriptor(
        "application/vnd.oci.image.manifest.v1+json", Digest.of(b"not pushed yet"), 14
    )
    sbom = await push_image(
        store,
        "r",
        b"{}",
        [b"sbom"],
        subject=subject,
        artifact_type="application/spdx+json",
        annotations={"k": "v"},
    )
    sig = await push_image(
        store, "r", b"{}", [b"sig"], subject=subject, artifact_type="application/sig"
    )
    plain = await push_image(store, "r", b"{}", [b"plain"])
    refs = await store.list_referrers("r", subject.digest, None)
    assert [d.digest for d in refs] == [sbom.digest, sig.digest]  # push order
    assert refs[0] == sbom.as_referrer()
    assert refs[0].annotations == {"k": "v"}
    filtered = await store.list_referrers("r", subject.digest, "application/sig")
    assert [d.digest for d in filtered] == [sig.digest]
    assert await store.list_referrers("r", subject.digest, "application/none") == []
    assert await store.list_referrers("r", plain.digest, None) == []
    assert await store.list_referrers("other", subject.digest, None) == []
    await store.delete_manifest("r", sbom.digest)
    assert [d.digest for d in await store.list_referrers("r", subject.digest, None)] == [sig.digest]


async def test_tag_paging(store: EmbeddedStore) -> None:
    tags = ["b", "A", "a", "1", "Z", "c_1", "c-1", "c.1"]
    await push_image(store, "r", b"{}", tags=tags)
    ordered = sorted(tags)  # ASCIIbetical
    assert (await store.list_tags("r", None, None)).items == ordered
    page = await store.list_tags("r", None, 3)
    assert page.items == ordered[:3] and page.more
    page = await store.list_tags("r", page.items[-1], 3)
    assert page.items == ordered[3:6] and page.more
    page = await store.list_tags("r", page.items[-1], 3)
    assert page.items == ordered[6:] and not page.more
    page = await store.list_tags("r", ordered[4], 3)
    assert page.items == ordered[5:8] and not page.more
    assert (await store.list_tags("r", "zzz", None)).items == []
    with pytest.raises(NameUnknown):
        await store.list_tags("absent", None, None)


async def test_repository_listing(store: EmbeddedStore) -> None:
    for repo in ("b/x", "a", "c", "b"):
        await push_blob(store, repo, b"x")
    await store.start_upload("only-an-upload")  # not a repository until something is committed
    assert (await store.list_repositories(None, None)).items == ["a", "b", "b/x", "c"]
    page = await store.list_repositories("a", 2)
    assert page.items == ["b", "b/x"] and page.more
    page = await store.list_repositories("b/x", 2)
    assert page.items == ["c"] and not page.more


async def test_delete_manifest_removes_its_tags(store: EmbeddedStore) -> None:
    keep = await push_image(store, "r", b"{}", [b"keep"], tags=["keep"])
    gone = await push_image(store, "r", b"{}", [b"gone"], tags=["v1", "v2"])
    await store.delete_manifest("r", gone.digest)
    for ref in ("v1", "v2", str(gone.digest)):
        with pytest.raises(ManifestUnknown):
            await store.get_manifest("r", parse_reference(ref))
    with pytest.raises(BlobUnknown):
        await store.stat_blob("r", gone.digest)
    with pytest.raises(ManifestUnknown):
        await store.delete_manifest("r", gone.digest)
    assert (await store.list_tags("r", None, None)).items == ["keep"]
    assert (await store.get_manifest("r", Tag("keep"))).digest == keep.digest


async def test_delete_tag_keeps_the_manifest(store: EmbeddedStore) -> None:
    manifest = await push_image(store, "r", b"{}", tags=["a", "b"])
    await store.delete_tag("r", Tag("a"))
    with pytest.raises(ManifestUnknown):
        await store.delete_tag("r", Tag("a"))
    assert (await store.get_manifest("r", Tag("b"))).digest == manifest.digest
    assert (await store.get_manifest("r", manifest.digest)).digest == manifest.digest


async def test_deleting_in_one_repository_keeps_another_working(store: EmbeddedStore) -> None:
    one = await push_image(store, "a", b"{}", [b"shared"], tags=["t"])
    two = await push_image(store, "b", b"{}", [b"shared"], tags=["t"])
    assert one.digest == two.digest
    await store.delete_manifest("a", one.digest)
    await store.delete_blob("a", Digest.of(b"shared"))
    await store.delete_blob("a", Digest.of(b"{}"))
    await store.collect_garbage(0)
    assert (await store.get_manifest("b", Tag("t"))).digest == two.digest
    blob = await store.get_blob("b", Digest.of(b"shared"), None)
    assert blob.fd is not None and os.pread(blob.fd, 100, 0) == b"shared"
    await blob.close()
    with pytest.raises(ManifestUnknown):
        await store.get_manifest("a", Tag("t"))


async def test_gc_keeps_referenced_blobs_and_removes_orphans(
    store: EmbeddedStore, tmp_path: Path
) -> None:
    manifest = await push_image(store, "r", b"{}", [b"used"], tags=["t"])
    orphan = await push_blob(store, "r", b"orphan")
    unlinked_but_used = Digest.of(b"used")
    await store.delete_blob("r", orphan)
    await store.delete_blob("r", unlinked_but_used)  # still referenced by the manifest
    # A failed push can leave nothing behind, but an in-flight upload must survive GC.
    upload = await store.start_upload("r")
    await store.write_upload("r", upload.id, UploadChunk(body(b"in flight")))

    report = await store.collect_garbage(0)
    assert report.blobs_removed == 1 and report.bytes_freed == len(b"orphan")
    assert report.blobs_kept == 3  # config, layer, manifest
    assert not store.blobs.files.path(orphan).exists()
    assert store.blobs.files.path(unlinked_but_used).exists()
    assert store.blobs.files.path(manifest.digest).exists()
    assert await store.commit_upload("r", upload.id, Digest.of(b"in flight"), None) == 9
    # Linked, not yet referenced: kept within the grace period (its manifest may follow).
    assert (await store.collect_garbage()).blobs_removed == 0

    await store.delete_manifest("r", manifest.digest)
    report = await store.collect_garbage(0)
    # The manifest bytes, its config and layer, and the blob no manifest took up.
    assert report.blobs_removed == 4
    assert list(store.blobs.files.walk()) == []
    # Re-pushing a collected blob brings it back.
    await push_blob(store, "r", b"orphan")
    assert await store.stat_blob("r", orphan) == 6
    assert store.blobs.files.path(orphan).exists()


async def test_gc_waits_for_commits_in_flight(store: EmbeddedStore) -> None:
    orphan = await push_blob(store, "r", b"orphan")
    await store.delete_blob("r", orphan)
    finished = anyio.Event()

    async def collect() -> None:
        await store.collect_garbage(0)
        finished.set()

    # Held as a commit holds it between rename and link.
    async with anyio.create_task_group() as tg, store.meta.gc_lock(exclusive=False):
        tg.start_soon(collect)
        await anyio.sleep(0.2)
        assert not finished.is_set()
        assert store.blobs.files.path(orphan).exists()
    assert finished.is_set()
    assert not store.blobs.files.path(orphan).exists()


async def test_scheduled_gc_runs_once_per_interval_and_skips_while_another_runs(
    store: EmbeddedStore,
) -> None:
    store.gc_grace = 0
    orphan = await push_blob(store, "r", b"orphan")
    await store.delete_blob("r", orphan)
    marker = store.data_dir / "gc.last"
    # Another worker collecting now (holding the marker's lock): this one skips.
    fd = os.open(marker, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    assert await store.collect_garbage_if_due(3600) is None
    os.close(fd)
    assert store.blobs.files.path(orphan).exists()

    report = await store.collect_garbage_if_due(3600)
    assert report is not None and report.blobs_removed == 1
    assert not store.blobs.files.path(orphan).exists()
    again = await push_blob(store, "r", b"orphan again")
    await store.delete_blob("r", again)
    assert await store.collect_garbage_if_due(3600) is None  # one ran moments ago
    assert store.blobs.files.path(again).exists()
    report = await store.collect_garbage_if_due(0)  # due at once
    assert report is not None and report.blobs_removed == 1


async def test_reads_kept_in_memory_follow_changes_made_by_another_worker(tmp_path: Path) -> None:
    """Each worker keeps answers to hot reads in memory; a change made through another worker
    process's store (here: another instance on the same data directory) shows at once."""
    reader, writer = EmbeddedStore(tmp_path), EmbeddedStore(tmp_path)
    subject = await push_image(writer, "r", b"{}", [b"app"], tags=["latest"])
    about = Descriptor(subject.media_type, subject.digest, subject.size)
    sig = await push_image(writer, "r", b"{}", [b"sig"], subject=about, artifact_type="a/sig")
    for _ in range(2):  # the second round is answered from memory
        assert (await reader.get_manifest("r", Tag("latest"))).digest == subject.digest
        assert (await reader.list_tags("r", None, None)).items == ["latest"]
        assert (await reader.list_repositories(None, None)).items == ["r"]
        assert [d.digest for d in await reader.list_referrers("r", subject.digest, None)] == [
            sig.digest
        ]
    moved = await push_image(writer, "r", b"{}", [b"app v2"], tags=["latest", "v2"])
    sbom = await push_image(writer, "r", b"{}", [b"sbom"], subject=about, artifact_type="a/sbom")
    await push_image(writer, "s", b"{}", tags=["x"])
    assert (await reader.list_repositories(None, None)).items == ["r", "s"]
    assert (await reader.get_manifest("r", Tag("latest"))).digest == moved.digest
    assert (await reader.list_tags("r", None, None)).items == ["latest", "v2"]
    referrers = await reader.list_referrers("r", subject.digest, None)
    assert [d.digest for d in referrers] == [sig.digest, sbom.digest]
    await writer.delete_tag("r", Tag("v2"))
    assert (await reader.list_tags("r", None, None)).items == ["latest"]
    with pytest.raises(ManifestUnknown):
        await reader.get_manifest("r", Tag("v2"))
    # What a caller does with an answer does not change the next one.
    (await reader.list_tags("r", None, None)).items.append("mine")
    referrers = await reader.list_referrers("r", subject.digest, None)
    referrers.clear()
    assert (await reader.list_tags("r", None, None)).items == ["latest"]
    assert len(await reader.list_referrers("r", subject.digest, None)) == 2
    await reader.close()
    await writer.close()


async def test_push_times_of_a_database_older_than_them_are_the_migration_time(
    tmp_path: Path,
) -> None:
    store = EmbeddedStore(tmp_path)
    await push_image(store, "r", b"{}", [b"layer"], tags=["v1"])
    await store.close()
    with sqlite3.connect(tmp_path / "meta.db") as conn:  # the version 2 schema
        conn.execute("ALTER TABLE tags DROP COLUMN pushed")
        conn.execute("ALTER TABLE manifests DROP COLUMN stored")
        conn.execute("PRAGMA user_version = 2")
    before = time.time()
    store = EmbeddedStore(tmp_path)
    [detail] = await store.list_tag_details("r")
    assert detail.tag == "v1" and detail.pushed is not None
    assert before <= detail.pushed <= time.time()
    with sqlite3.connect(tmp_path / "meta.db") as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (3,)
        [(stored,)] = conn.execute("SELECT stored FROM manifests").fetchall()
        assert stored == detail.pushed
    await store.close()
