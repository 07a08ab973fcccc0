"""The ``BlobStore`` contract, run over every implementation (``conftest.blob_stores``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from conformance.content import read  # what serving a body sends
from ocigate.oci.digest import Digest
from ocigate.oci.errors import BlobUploadUnknown, DigestInvalid, RangeInvalid, SizeInvalid
from ocigate.store.ports import BlobStore

from .conftest import BlobStores

pytestmark = pytest.mark.anyio


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def failing(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
    raise OSError("client went away")


async def listed(store: BlobStore) -> dict[Digest, int]:
    return {entry.digest: entry.size async for entry in store.list()}


async def upload(store: BlobStore, repo: str, data: bytes) -> Digest:
    digest = Digest.of(data)
    upload_id = await store.start_upload(repo)
    async with store.upload(repo, upload_id) as staged:
        await staged.append(chunks(data), 0, len(data))
        assert await staged.commit(digest) == len(data)
    return digest


async def test_a_committed_upload_is_held_and_read_by_range(blob_store: BlobStore) -> None:
    digest = await upload(blob_store, "r", b"0123456789")
    assert await blob_store.size(digest) == 10
    assert await listed(blob_store) == {digest: 10}
    body = await blob_store.open(digest, 10, 2, 5)
    assert body is not None and (body.size, body.start, body.length) == (10, 2, 5)
    assert await read(body) == b"23456"
    with pytest.raises(BlobUploadUnknown):  # the commit ended the session
        await blob_store.upload_offset("r", "0" * 32)


async def test_a_commit_with_a_wrong_digest_leaves_nothing_visible(blob_store: BlobStore) -> None:
    upload_id = await blob_store.start_upload("r")
    wrong = Digest.of(b"something else")
    async with blob_store.upload("r", upload_id) as staged:
        await staged.append(chunks(b"the bytes"), None, None)
        with pytest.raises(DigestInvalid):
            await staged.commit(wrong)
    assert await blob_store.size(wrong) is None
    assert await blob_store.size(Digest.of(b"the bytes")) is None
    assert await listed(blob_store) == {}
    with pytest.raises(BlobUploadUnknown):
        await blob_store.upload_offset("r", upload_id)


async def test_an_upload_is_continued_by_another_instance(blob_stores: BlobStores) -> None:
    first, second = blob_stores(), blob_stores()
    upload_id = await first.start_upload("r")
    async with first.upload("r", upload_id) as staged:
        await staged.append(chunks(b"first half, "), 0, None)
        await staged.save()
    assert await second.upload_offset("r", upload_id) == 12
    async with second.upload("r", upload_id) as staged:
        assert staged.offset == 12 and staged.repo == "r" and staged.id == upload_id
        await staged.append(chunks(b"second half"), 12, None)
        size = await staged.commit(Digest.of(b"first half, second half"))
    assert size == 23
    assert await first.size(Digest.of(b"first half, second half")) == 23


async def test_failed_appends_leave_the_upload_as_it_was(blob_store: BlobStore) -> None:
    upload_id = await blob_store.start_upload("r")
    async with blob_store.upload("r", upload_id) as staged:
        await staged.append(chunks(b"kept"), 0, 4)
        await staged.save()
    for body, offset, length, error in [
        (chunks(b"x"), 3, None, RangeInvalid),
        (chunks(b"too long"), None, 3, SizeInvalid),
        (chunks(b"short"), None, 9, SizeInvalid),
        (failing(b"half"), None, None, OSError),
    ]:
        with pytest.raises(error):
            async with blob_store.upload("r", upload_id) as staged:
                await staged.append(body, offset, length)
        assert await blob_store.upload_offset("r", upload_id) == 4
    async with blob_store.upload("r", upload_id) as staged:
        assert await staged.commit(Digest.of(b"kept")) == 4


async def test_uploads_belong_to_their_repository(blob_store: BlobStore) -> None:
    upload_id = await blob_store.start_upload("mine")
    with pytest.raises(BlobUploadUnknown):
        await blob_store.upload_offset("theirs", upload_id)
    with pytest.raises(BlobUploadUnknown):
        async with blob_store.upload("theirs", upload_id):
            pass
    async with blob_store.upload("mine", upload_id) as staged:
        await staged.discard()
    with pytest.raises(BlobUploadUnknown):
        await blob_store.upload_offset("mine", upload_id)


async def test_a_second_holder_waits_and_sees_the_session_ended(blob_stores: BlobStores) -> None:
    first, second = blob_stores(), blob_stores()
    upload_id = await first.start_upload("r")
    outcome: list[str] = []

    async def latecomer() -> None:
        try:
            async with second.upload("r", upload_id):
                outcome.append("held")
        except BlobUploadUnknown:
            outcome.append("ended")

    async with anyio.create_task_group() as tg, first.upload("r", upload_id) as staged:
        tg.start_soon(latecomer)
        await anyio.sleep(0.05)
        assert outcome == []  # waiting for the holder
        await staged.append(chunks(b"data"), 0, None)
        await staged.commit(Digest.of(b"data"))
    assert outcome == ["ended"]


async def test_written_content_is_listed_and_deleted(blob_store: BlobStore) -> None:
    small = Digest.of(b"{}")
    await blob_store.write(small, b"{}")
    await blob_store.write(small, b"{}")  # already held: a no-op
    other = await upload(blob_store, "r", b"layer")
    assert await listed(blob_store) == {small: 2, other: 5}
    await blob_store.delete([small, Digest.of(b"never stored")])
    assert await listed(blob_store) == {other: 5}
    assert await blob_store.open(small, 2, 0, 2) is None


async def test_idle_uploads_expire(blob_store: BlobStore) -> None:
    upload_id = await blob_store.start_upload("r")
    assert await blob_store.expire_uploads(3600) == 0
    await anyio.sleep(0.05)
    assert await blob_store.expire_uploads(0.01) == 1
    with pytest.raises(BlobUploadUnknown):
        await blob_store.upload_offset("r", upload_id)
