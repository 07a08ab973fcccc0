"""The ``ObjectLedger`` contract (``store.objects.ledger``), run over every implementation
(``conftest.ledgers``): sessions, exclusive holds across replicas, and the blob index."""

from __future__ import annotations

import time

import anyio
import pytest

from ocigate.oci.digest import Digest
from ocigate.store.objects.ledger import BlobObject, ObjectLedger, Segment, UploadRecord

from .conftest import Ledgers

pytestmark = pytest.mark.anyio


def blob(data: bytes, modified: float = 1000.0) -> BlobObject:
    segments = (Segment(f"seg/{data.hex()}/0", len(data) - 1), Segment(f"seg/{data.hex()}/1", 1))
    return BlobObject(Digest.of(data), len(data), segments, modified)


async def test_an_upload_is_saved_found_and_ended(ledger: ObjectLedger) -> None:
    assert await ledger.find_upload("u1") is None
    await ledger.create_upload(UploadRecord("u1", "team/app"))
    found = await ledger.find_upload("u1")
    assert found is not None and (found.repo, found.offset, found.segments) == ("team/app", 0, [])
    async with ledger.hold_upload("u1") as held:
        assert held is not None
        held.segments.append(Segment("k/1", 5_242_880))
        held.offset, held.hash_state = 5_242_880, b"\x01state"
        before = time.time()
        await ledger.save_upload(held)
    saved = await ledger.find_upload("u1")
    assert saved is not None
    assert (saved.offset, saved.segments, saved.hash_state) == (
        5_242_880,
        [Segment("k/1", 5_242_880)],
        b"\x01state",
    )
    assert saved.updated >= before - 1
    await ledger.end_upload("u1")
    assert await ledger.find_upload("u1") is None
    async with ledger.hold_upload("u1") as gone:
        assert gone is None


async def test_a_hold_excludes_other_replicas_until_released(ledgers: Ledgers) -> None:
    one, two = await ledgers(), await ledgers()
    await one.create_upload(UploadRecord("u", "r"))
    order: list[str] = []

    async def second() -> None:
        async with two.hold_upload("u") as held:
            assert held is not None and held.offset == 7  # sees the first holder's save
            order.append("second holds")

    async with anyio.create_task_group() as tg, one.hold_upload("u") as held:
        assert held is not None
        tg.start_soon(second)
        await anyio.sleep(0.3)
        order.append("first saves")  # the second is still waiting
        held.offset = 7
        await one.save_upload(held)
    assert order == ["first saves", "second holds"]


async def test_an_upload_ended_while_waiting_is_not_held(ledgers: Ledgers) -> None:
    one, two = await ledgers(), await ledgers()
    await one.create_upload(UploadRecord("u", "r"))
    seen: list[UploadRecord | None] = []

    async def waiter() -> None:
        async with two.hold_upload("u") as held:
            seen.append(held)

    async with anyio.create_task_group() as tg, one.hold_upload("u"):
        tg.start_soon(waiter)
        await anyio.sleep(0.2)
        await one.end_upload("u")  # a commit ends the session
    assert seen == [None]


async def test_idle_uploads_are_those_saved_before_and_not_held(ledger: ObjectLedger) -> None:
    for name in ("old", "held"):
        await ledger.create_upload(UploadRecord(name, "r"))
    cutoff = time.time() + 1
    await anyio.sleep(0.01)
    async with ledger.hold_upload("held"):
        idle = await ledger.idle_uploads(cutoff)
        assert [u.id for u in idle] == ["old"]
    assert sorted(u.id for u in await ledger.idle_uploads(cutoff)) == ["held", "old"]
    assert await ledger.idle_uploads(0) == []


async def test_the_blob_index(ledger: ObjectLedger) -> None:
    first, second = blob(b"first"), blob(b"second")
    assert await ledger.blob(first.digest) is None
    assert await ledger.add_blob(first)
    assert await ledger.add_blob(second)
    assert await ledger.blob(first.digest) == first
    again = BlobObject(first.digest, first.size, first.segments, 2000.0)
    assert not await ledger.add_blob(again)  # already held: only its time renewed
    assert await ledger.blob(first.digest) == again
    listed = [b async for b in ledger.blobs()]
    assert sorted(listed, key=lambda b: str(b.digest)) == sorted(
        [again, second], key=lambda b: str(b.digest)
    )
    removed = await ledger.remove_blobs([first.digest, Digest.of(b"never")])
    assert removed == [again]
    assert [b async for b in ledger.blobs()] == [second]


async def test_replicas_committing_one_blob_at_once_index_it_once(ledgers: Ledgers) -> None:
    replicas = [await ledgers() for _ in range(4)]
    item = blob(b"raced")
    results: list[bool] = []

    async def commit(index: int) -> None:
        results.append(await replicas[index % 4].add_blob(item))

    async with anyio.create_task_group() as tg:
        for index in range(32):
            tg.start_soon(commit, index)
    assert sorted(results) == [False] * 31 + [True]
    assert [b async for b in replicas[0].blobs()] == [item]
