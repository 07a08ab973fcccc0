"""EmbeddedStore: blobs, uploads and mounts, on real files."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from ocigate.oci.digest import Digest
from ocigate.oci.errors import (
    BlobUnknown,
    BlobUploadUnknown,
    DigestInvalid,
    RangeInvalid,
    RangeNotSatisfiable,
    SizeInvalid,
)
from ocigate.registry import ByteRange, UploadChunk
from ocigate.store.embedded import EmbeddedStore

from ...embedded_helpers import body, push_blob

pytestmark = pytest.mark.anyio


def blob_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "blobs").rglob("*") if p.is_file())


async def read_blob(
    store: EmbeddedStore, repo: str, digest: Digest, rng: ByteRange | None = None
) -> bytes:
    blob = await store.get_blob(repo, digest, rng)
    try:
        assert blob.fd is not None
        return os.pread(blob.fd, blob.length, blob.start)
    finally:
        await blob.close()


async def test_blob_roundtrip_and_ranges(store: EmbeddedStore) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)  # several 1 MiB batches
    digest = await push_blob(store, "a/b", data)
    assert await store.stat_blob("a/b", digest) == len(data)
    assert await read_blob(store, "a/b", digest) == data
    assert await read_blob(store, "a/b", digest, ByteRange(5, 9)) == data[5:10]
    assert await read_blob(store, "a/b", digest, ByteRange(None, 4)) == data[-4:]
    assert await read_blob(store, "a/b", digest, ByteRange(10, None)) == data[10:]
    with pytest.raises(RangeNotSatisfiable):
        await store.get_blob("a/b", digest, ByteRange(len(data), None))
    with pytest.raises(BlobUnknown):
        await store.stat_blob("other", digest)
    with pytest.raises(BlobUnknown):
        await store.get_blob("other", digest, None)


async def test_empty_blob(store: EmbeddedStore) -> None:
    digest = await push_blob(store, "r", b"")
    assert await store.stat_blob("r", digest) == 0
    blob = await store.get_blob("r", digest, None)
    assert (blob.size, blob.length) == (0, 0)
    await blob.close()


async def test_same_blob_in_two_repositories_is_one_file(
    store: EmbeddedStore, tmp_path: Path
) -> None:
    data = b"shared layer" * 1000
    d1 = await push_blob(store, "one", data)
    d2 = await push_blob(store, "two", data)
    assert d1 == d2
    assert len(blob_files(tmp_path)) == 1
    assert await store.stat_blob("one", d1) == await store.stat_blob("two", d1) == len(data)
    # Files are read-only once visible.
    assert blob_files(tmp_path)[0].stat().st_mode & 0o222 == 0


async def test_chunked_upload_continued_by_another_instance(tmp_path: Path) -> None:
    worker_a, worker_b, worker_c = (EmbeddedStore(tmp_path) for _ in range(3))
    data = os.urandom(2_500_000)
    upload = await worker_a.start_upload("repo")
    state = await worker_a.write_upload(
        "repo", upload.id, UploadChunk(body(data[:1_000_000]), 0, 1_000_000)
    )
    assert state.offset == 1_000_000
    assert (await worker_b.upload_status("repo", upload.id)).offset == 1_000_000
    state = await worker_b.write_upload(
        "repo", upload.id, UploadChunk(body(data[1_000_000:2_000_000]), 1_000_000)
    )
    assert state.offset == 2_000_000
    # worker_a appends again; its cached hash is stale and must be caught up from the file.
    await worker_a.write_upload("repo", upload.id, UploadChunk(body(data[2_000_000:2_200_000])))
    size = await worker_c.commit_upload(
        "repo", upload.id, Digest.of(data), UploadChunk(body(data[2_200_000:]), 2_200_000)
    )
    assert size == len(data)
    assert await read_blob(worker_a, "repo", Digest.of(data)) == data
    for s in (worker_a, worker_b, worker_c):
        await s.close()


async def test_concurrent_appends_are_serialised(tmp_path: Path) -> None:
    one, two = EmbeddedStore(tmp_path), EmbeddedStore(tmp_path)
    upload = await one.start_upload("r")

    async def slow(part: bytes) -> AsyncIterator[bytes]:
        for i in range(0, len(part), 100_000):
            yield part[i : i + 100_000]
            await anyio.sleep(0.01)

    a, b = b"A" * 1_500_000, b"B" * 1_500_000
    async with anyio.create_task_group() as tg:
        tg.start_soon(one.write_upload, "r", upload.id, UploadChunk(slow(a)))
        tg.start_soon(two.write_upload, "r", upload.id, UploadChunk(slow(b)))
    assert (await one.upload_status("r", upload.id)).offset == 3_000_000
    data = (tmp_path / "uploads" / upload.id / "data").read_bytes()
    assert data in (a + b, b + a)
    assert await two.commit_upload("r", upload.id, Digest.of(data), None) == 3_000_000
    await one.close()
    await two.close()


async def test_racing_appends_at_the_same_offset_one_wins(
    store: EmbeddedStore, tmp_path: Path
) -> None:
    other = EmbeddedStore(tmp_path)
    upload = await store.start_upload("r")
    results = await _gather(
        store.write_upload("r", upload.id, UploadChunk(body(b"x" * 10), 0, 10)),
        other.write_upload("r", upload.id, UploadChunk(body(b"y" * 10), 0, 10)),
    )
    assert sum(isinstance(r, RangeInvalid) for r in results) == 1
    assert (await store.upload_status("r", upload.id)).offset == 10
    await other.close()


async def _gather(*coros: object) -> list[object]:
    results: list[object] = []

    async def run(coro: object) -> None:
        try:
            results.append(await coro)  # type: ignore[misc]
        except Exception as exc:
            results.append(exc)

    async with anyio.create_task_group() as tg:
        for coro in coros:
            tg.start_soon(run, coro)
    return results


async def test_wrong_offset_is_range_invalid_and_changes_nothing(store: EmbeddedStore) -> None:
    upload = await store.start_upload("r")
    await store.write_upload("r", upload.id, UploadChunk(body(b"hello"), 0, 5))
    for bad in (0, 3, 6):
        with pytest.raises(RangeInvalid) as info:
            await store.write_upload("r", upload.id, UploadChunk(body(b"world"), bad, 5))
        assert info.value.detail == {"offset": 5}
    assert (await store.upload_status("r", upload.id)).offset == 5
    with pytest.raises(RangeInvalid):
        await store.commit_upload(
            "r", upload.id, Digest.of(b"helloworld"), UploadChunk(body(b"world"), 2)
        )
    await store.write_upload("r", upload.id, UploadChunk(body(b"world"), 5, 5))
    assert await store.commit_upload("r", upload.id, Digest.of(b"helloworld"), None) == 10


async def test_failed_appends_truncate_back(store: EmbeddedStore, tmp_path: Path) -> None:
    upload = await store.start_upload("r")
    await store.write_upload("r", upload.id, UploadChunk(body(b"abc")))

    with pytest.raises(SizeInvalid):  # longer than Content-Length
        await store.write_upload("r", upload.id, UploadChunk(body(b"defg"), 3, 3))
    with pytest.raises(SizeInvalid):  # shorter than Content-Length
        await store.write_upload("r", upload.id, UploadChunk(body(b"d"), 3, 3))

    async def disconnects() -> AsyncIterator[bytes]:
        yield b"x" * 2_000_000  # written to the file in a batch, then the client goes away
        raise OSError("client disconnected")

    with pytest.raises(OSError, match="disconnected"):
        await store.write_upload("r", upload.id, UploadChunk(disconnects(), 3))

    async def hangs() -> AsyncIterator[bytes]:
        yield b"y" * 2_000_000
        await anyio.sleep(60)
        yield b"never"

    with anyio.move_on_after(0.3):  # cancelled mid-body (e.g. server shutdown)
        await store.write_upload("r", upload.id, UploadChunk(hangs(), 3))

    assert (await store.upload_status("r", upload.id)).offset == 3
    assert (tmp_path / "uploads" / upload.id / "data").read_bytes() == b"abc"
    await store.write_upload("r", upload.id, UploadChunk(body(b"def"), 3, 3))
    assert await store.commit_upload("r", upload.id, Digest.of(b"abcdef"), None) == 6


async def test_leftover_bytes_of_a_crashed_append_are_discarded(
    store: EmbeddedStore, tmp_path: Path
) -> None:
    upload = await store.start_upload("r")
    await store.write_upload("r", upload.id, UploadChunk(body(b"abc")))
    data_path = tmp_path / "uploads" / upload.id / "data"
    data_path.write_bytes(data_path.read_bytes() + b"garbage from a killed worker")
    assert (await store.upload_status("r", upload.id)).offset == 3
    await store.write_upload("r", upload.id, UploadChunk(body(b"def"), 3))
    assert await store.commit_upload("r", upload.id, Digest.of(b"abcdef"), None) == 6


async def test_digest_mismatch_stores_nothing(store: EmbeddedStore, tmp_path: Path) -> None:
    upload = await store.start_upload("r")
    wrong = Digest.of(b"something else")
    with pytest.raises(DigestInvalid):
        await store.commit_upload("r", upload.id, wrong, UploadChunk(body(b"content")))
    assert blob_files(tmp_path) == []
    with pytest.raises(BlobUnknown):
        await store.stat_blob("r", wrong)
    with pytest.raises(BlobUnknown):
        await store.stat_blob("r", Digest.of(b"content"))
    with pytest.raises(BlobUploadUnknown):
        await store.upload_status("r", upload.id)
    assert list((tmp_path / "uploads").iterdir()) == []
    assert (await store.list_repositories(None, None)).items == []


async def test_sha512(store: EmbeddedStore, tmp_path: Path) -> None:
    data = os.urandom(1_200_000)
    upload = await store.start_upload("r")
    await store.write_upload("r", upload.id, UploadChunk(body(data[:700_000]), 0))
    digest = Digest("sha512", hashlib.sha512(data).hexdigest())
    assert await store.commit_upload(
        "r", upload.id, digest, UploadChunk(body(data[700_000:]))
    ) == len(data)
    assert await read_blob(store, "r", digest) == data
    assert (tmp_path / "blobs" / "sha512" / digest.encoded[:2] / digest.encoded).is_file()
    upload = await store.start_upload("r")
    with pytest.raises(DigestInvalid):
        await store.commit_upload(
            "r", upload.id, Digest("sha512", "0" * 128), UploadChunk(body(data))
        )


async def test_upload_ids_are_validated_and_owned_by_their_repository(store: EmbeddedStore) -> None:
    upload = await store.start_upload("mine")
    for bad in (
        "../../etc",
        "",
        upload.id.upper(),
        upload.id + "0",
        "x" * 32,
        upload.id[:-1] + "/",
    ):
        with pytest.raises(BlobUploadUnknown):
            await store.upload_status("mine", bad)
        with pytest.raises(BlobUploadUnknown):
            await store.write_upload("mine", bad, UploadChunk(body(b"x")))
    with pytest.raises(BlobUploadUnknown):
        await store.upload_status("theirs", upload.id)
    with pytest.raises(BlobUploadUnknown):
        await store.write_upload("theirs", upload.id, UploadChunk(body(b"x")))
    with pytest.raises(BlobUploadUnknown):
        await store.commit_upload("theirs", upload.id, Digest.of(b""), None)
    with pytest.raises(BlobUploadUnknown):
        await store.cancel_upload("theirs", upload.id)
    assert (await store.upload_status("mine", upload.id)).offset == 0


async def test_cancel_and_commit_end_the_session(store: EmbeddedStore) -> None:
    upload = await store.start_upload("r")
    await store.write_upload("r", upload.id, UploadChunk(body(b"abc")))
    await store.cancel_upload("r", upload.id)
    with pytest.raises(BlobUploadUnknown):
        await store.upload_status("r", upload.id)
    with pytest.raises(BlobUploadUnknown):
        await store.cancel_upload("r", upload.id)
    upload = await store.start_upload("r")
    await store.commit_upload("r", upload.id, Digest.of(b"abc"), UploadChunk(body(b"abc")))
    with pytest.raises(BlobUploadUnknown):
        await store.write_upload("r", upload.id, UploadChunk(body(b"more")))


async def test_upload_expiry(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path, upload_expiry=3600)
    old, fresh = await store.start_upload("r"), await store.start_upload("r")
    await store.write_upload("r", old.id, UploadChunk(body(b"abc")))
    stale = time.time() - 7200
    os.utime(tmp_path / "uploads" / old.id / "state.json", (stale, stale))
    (tmp_path / "tmp" / "blob-leftover").write_bytes(b"x")
    os.utime(tmp_path / "tmp" / "blob-leftover", (stale, stale))
    assert await store.expire_uploads() == 1
    with pytest.raises(BlobUploadUnknown):
        await store.upload_status("r", old.id)
    assert (await store.upload_status("r", fresh.id)).offset == 0
    assert list((tmp_path / "tmp").iterdir()) == []
    assert await store.expire_uploads() == 0
    await store.close()


async def test_delete_blob_only_unlinks_that_repository(store: EmbeddedStore) -> None:
    data = b"layer"
    digest = await push_blob(store, "a", data)
    await push_blob(store, "b", data)
    await store.delete_blob("a", digest)
    with pytest.raises(BlobUnknown):
        await store.stat_blob("a", digest)
    with pytest.raises(BlobUnknown):
        await store.delete_blob("a", digest)
    assert await read_blob(store, "b", digest) == data
    # Pushing it again to "a" reuses the file.
    await push_blob(store, "a", data)
    assert await read_blob(store, "a", digest) == data


async def test_mount(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    digest = await push_blob(store, "source", b"mountable")
    assert await store.mount_blob("target", "source", digest) == 9
    assert await store.stat_blob("target", digest) == 9
    with pytest.raises(BlobUnknown):
        await store.mount_blob("t2", "nowhere", digest)
    with pytest.raises(BlobUnknown):
        await store.mount_blob("t2", None, digest)  # auto_mount is off
    with pytest.raises(BlobUnknown):
        await store.mount_blob("t2", "source", Digest.of(b"absent"))
    with pytest.raises(BlobUnknown):
        await store.stat_blob("t2", digest)
    auto = EmbeddedStore(tmp_path, auto_mount=True)
    assert await auto.mount_blob("t3", None, digest) == 9
    with pytest.raises(BlobUnknown):
        await auto.mount_blob("t3", None, Digest.of(b"absent"))
    await store.close()
    await auto.close()
