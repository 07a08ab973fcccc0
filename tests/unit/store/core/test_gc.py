"""Garbage collection of the embedded store: a blob is garbage when no manifest in any
repository references it (config, layers, index children, subject) and it is older than the
grace period; its links go with it, so HEAD answers 404; ``--dry-run`` only reports."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from ocigate.cli import main
from ocigate.config import Settings
from ocigate.oci.descriptors import Descriptor
from ocigate.oci.digest import Digest
from ocigate.oci.errors import BlobUnknown, ManifestBlobUnknown
from ocigate.oci.reference import Tag
from ocigate.store.embedded import EmbeddedStore
from ocigate.store.embedded.fsck import fsck

from ...embedded_helpers import image, push_blob, push_image

pytestmark = pytest.mark.anyio
HOUR = 3600.0


def age(store: EmbeddedStore, seconds: float) -> None:
    """Make every link and blob file ``seconds`` older, as if that much time had passed."""
    with sqlite3.connect(store.meta.path) as conn:
        conn.execute("UPDATE repo_blobs SET linked = linked - ?", (seconds,))
    for _, path in store.blobs.files.walk():
        stat = path.stat()
        os.utime(path, (stat.st_atime - seconds, stat.st_mtime - seconds))


def files(store: EmbeddedStore) -> set[str]:
    return {str(digest) for digest, _ in store.blobs.files.walk()}


async def test_the_layers_of_a_deleted_image_are_freed_and_unlinked(store: EmbeddedStore) -> None:
    app = await push_image(store, "app", b'{"app": 1}', [b"only app", b"shared"], tags=["v1"])
    other = await push_image(store, "other", b'{"other": 1}', [b"shared"], tags=["v1"])
    await store.delete_manifest("app", app.digest)

    report = await store.collect_garbage(0)
    gone = {str(app.digest), str(Digest.of(b'{"app": 1}')), str(Digest.of(b"only app"))}
    assert {item.digest for item in report.removed} == gone
    assert report.blobs_removed == 3
    assert report.bytes_freed == app.size + len(b'{"app": 1}') + len(b"only app")
    assert files(store) == {
        str(other.digest),
        str(Digest.of(b'{"other": 1}')),
        str(Digest.of(b"shared")),
    }
    for data in (b"only app", b'{"app": 1}'):
        with pytest.raises(BlobUnknown):  # 404, never 200 with no bytes
            await store.stat_blob("app", Digest.of(data))
        with pytest.raises(BlobUnknown):
            await store.get_blob("app", Digest.of(data), None)
    # Still referenced by another repository's manifest: kept, and so is this link to it.
    assert await store.stat_blob("app", Digest.of(b"shared")) == len(b"shared")
    assert fsck(store.data_dir) == []


async def test_the_grace_period_spares_a_push_in_progress(store: EmbeddedStore) -> None:
    early = b"layer pushed before its manifest"
    layer = await push_blob(store, "app", early)
    config = await push_blob(store, "app", b'{"config": 1}')
    assert (await store.collect_garbage()).blobs_removed == 0  # default grace: one hour
    assert (await store.collect_garbage(HOUR / 2)).blobs_removed == 0
    manifest = await push_image(store, "app", b'{"config": 1}', [early])
    age(store, 2 * HOUR)
    assert (await store.collect_garbage()).blobs_removed == 0  # referenced now
    await store.delete_manifest("app", manifest.digest)

    # A blob re-linked (here: pushed to another repository) gets a new grace period even
    # though its file is old.
    await push_blob(store, "elsewhere", b'{"config": 1}')
    report = await store.collect_garbage()
    assert {item.digest for item in report.removed} == {str(manifest.digest), str(layer)}
    assert "no manifest references it" in report.removed[0].reason
    assert await store.stat_blob("elsewhere", config) == len(b'{"config": 1}')
    with pytest.raises(BlobUnknown):
        await store.stat_blob("app", layer)


async def test_a_subject_is_kept_while_a_referrer_names_it(store: EmbeddedStore) -> None:
    subject = await push_image(store, "app", b'{"s": 1}', [b"subject layer"], tags=["v1"])
    about = Descriptor(subject.media_type, subject.digest, subject.size)
    referrer = await push_image(store, "app", b'{"sig": 1}', subject=about)
    await store.delete_manifest("app", subject.digest)
    report = await store.collect_garbage(0)
    assert {item.digest for item in report.removed} == {
        str(Digest.of(b'{"s": 1}')),
        str(Digest.of(b"subject layer")),
    }
    assert {str(subject.digest), str(referrer.digest)} <= files(store)


async def test_a_dry_run_reports_and_deletes_nothing(store: EmbeddedStore) -> None:
    orphan = await push_blob(store, "app", b"orphan")
    await store.delete_blob("app", orphan)
    linked = await push_blob(store, "app", b"linked, never referenced")
    before = files(store)
    report = await store.collect_garbage(0, dry_run=True)
    assert report.dry_run and report.blobs_removed == 2
    by_digest = {item.digest: item for item in report.removed}
    assert by_digest[str(orphan)].size == len(b"orphan")
    assert "no repository links it" in by_digest[str(orphan)].reason
    assert "linked in 1 repository" in by_digest[str(linked)].reason
    assert files(store) == before
    assert await store.stat_blob("app", linked) == len(b"linked, never referenced")


async def test_pushes_racing_a_collection_with_no_grace_are_whole_or_refused(
    store: EmbeddedStore,
) -> None:
    """With ``--grace 0`` GC may take a pushed layer before its manifest comes: the manifest
    is then refused (the client pushes the layer again), never stored pointing at nothing."""
    stored: list[int] = []
    refused: list[int] = []

    async def pusher(number: int) -> None:
        layers = [f"layer {number}/{i}".encode() * 100 for i in range(3)]
        config = f'{{"n": {number}}}'.encode()
        for data in (config, *layers):
            await push_blob(store, f"r{number % 3}", data)
            await anyio.lowlevel.checkpoint()
        manifest, data = image(config, layers)
        try:
            await store.put_manifest(f"r{number % 3}", manifest, data, [Tag(f"t{number}")])
            stored.append(number)
        except ManifestBlobUnknown:
            refused.append(number)

    done = anyio.Event()

    async def collector() -> None:
        while not done.is_set():
            await store.collect_garbage(0)
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(collector)
        async with anyio.create_task_group() as pushers:
            for number in range(20):
                pushers.start_soon(pusher, number)
        done.set()
    assert len(stored) + len(refused) == 20
    for number in stored:
        found = await store.get_manifest(f"r{number % 3}", Tag(f"t{number}"))
        assert str(found.digest) in files(store)
    assert fsck(store.data_dir) == []


async def test_links_made_before_link_times_were_kept_count_as_old(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    digest = await push_blob(store, "app", b"from an older version")
    await store.close()
    with sqlite3.connect(tmp_path / "meta.db") as conn:  # the version 1 schema
        conn.execute("ALTER TABLE repo_blobs DROP COLUMN linked")
        conn.execute("ALTER TABLE tags DROP COLUMN pushed")
        conn.execute("ALTER TABLE manifests DROP COLUMN stored")
        conn.execute("PRAGMA user_version = 1")
    store = EmbeddedStore(tmp_path)
    age(store, 2 * HOUR)  # the file's time
    report = await store.collect_garbage()
    assert [item.digest for item in report.removed] == [str(digest)]
    await store.close()


def test_gc_command_grace_dry_run_and_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def populate() -> None:
        store = EmbeddedStore(tmp_path)
        await push_image(store, "keep", b'{"kept": 1}', [b"kept layer"], tags=["v1"])
        gone = await push_image(store, "gone", b'{"gone": 1}', [b"gone layer"], tags=["v1"])
        await store.delete_manifest("gone", gone.digest)
        await store.close()

    anyio.run(populate)
    data = str(tmp_path)
    assert main(["gc", "--data-dir", data]) == 0  # default grace: everything is young
    assert "deleted 0 blobs, 0 bytes freed; kept 6 blobs" in capsys.readouterr().out

    assert main(["gc", "--data-dir", data, "--dry-run", "--grace", "0"]) == 0
    out = capsys.readouterr().out.splitlines()
    would = [line for line in out if line.startswith("would delete sha256:")]
    assert len(would) == 3
    assert str(Digest.of(b"gone layer")) + f" {len(b'gone layer')} bytes: no manifest" in (
        "\n".join(would)
    )
    assert "(dry run): would delete 3 blobs" in out[-1] and "kept 3 blobs" in out[-1]
    assert sum(1 for _ in EmbeddedStore(tmp_path).blobs.files.walk()) == 6

    assert main(["gc", "--grace", "0", "--data-dir", data]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len([line for line in out if line.startswith("deleted sha256:")]) == 3
    assert out[-1].startswith(f"gc {data}: deleted 3 blobs, ")
    assert fsck(tmp_path) == []

    assert main(["gc", "--data-dir", data, "--grace", "soon"]) == 2
    assert "not a duration" in capsys.readouterr().err


def test_gc_grace_accepts_durations() -> None:
    assert Settings(gc_grace="30m").store.gc_grace == 1800
    assert Settings(gc_grace="1h30m").store.gc_grace == 5400
    assert Settings(gc_grace=0).store.gc_grace == 0
    assert Settings().store.gc_grace == HOUR
    with pytest.raises(ValueError, match="gc_grace"):
        Settings(gc_grace="-1")
