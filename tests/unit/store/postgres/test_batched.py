"""``postgres.batched``: reads answered one by one when alone, together under load (each
distinct key once, never more statements running than allowed), a reader cancelled or a
statement failing affecting only whom it should; and on a real PostgreSQL, many concurrent
manifest and blob reads answered right by a few statements, a change still seen by the next
read."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import asyncpg
import pytest

from ocigate.oci.digest import Digest
from ocigate.oci.reference import Tag
from ocigate.registry import UploadChunk
from ocigate.store.core.registry import RegistryOverPorts
from ocigate.store.memory.blobstore import MemoryBlobStore
from ocigate.store.postgres.batched import Batched
from ocigate.store.postgres.database import Database
from ocigate.store.postgres.metadata import PostgresMetadata

from ...embedded_helpers import body, image

pytestmark = pytest.mark.anyio


class Statements:
    """A fake database: each statement takes one loop turn per ``turns`` and is recorded."""

    def __init__(self, values: dict[str, int], turns: int = 3) -> None:
        self.values = values
        self.turns = turns
        self.asked: list[list[str]] = []
        self.running = 0
        self.most_running = 0
        self.fail: Exception | None = None

    async def _statement(self, keys: list[str]) -> dict[str, int]:
        self.asked.append(keys)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            for _ in range(self.turns):
                await asyncio.sleep(0)
            if self.fail is not None:
                raise self.fail
            return {key: self.values[key] for key in keys if key in self.values}
        finally:
            self.running -= 1

    async def one(self, key: str) -> int | None:
        return (await self._statement([key])).get(key)

    async def many(self, keys: Sequence[str]) -> dict[str, int]:
        return await self._statement(list(keys))


async def test_a_read_alone_is_one_statement_of_its_own() -> None:
    db = Statements({"a": 1})
    batched = Batched(db.one, db.many)
    assert await batched.get("a") == 1
    assert await batched.get("b") is None
    assert db.asked == [["a"], ["b"]]


async def test_reads_under_load_go_together_each_key_once() -> None:
    values = {f"k{i}": i for i in range(20)}
    db = Statements(values)
    batched = Batched(db.one, db.many, parallel=2)
    keys = [f"k{i % 25}" for i in range(100)]  # 20 present, 5 missing, each asked 4 times
    answers = await asyncio.gather(*(batched.get(key) for key in keys))
    assert answers == [values.get(key) for key in keys]
    assert db.most_running == 2
    assert len(db.asked) <= 4  # two alone, then the rest together
    later = [asked for asked in db.asked if len(asked) > 1]
    assert later and all(len(asked) == len(set(asked)) for asked in later)
    assert set().union(*map(set, db.asked)) == set(keys)


async def test_a_statement_asks_at_most_most_keys() -> None:
    db = Statements({})
    batched = Batched(db.one, db.many, parallel=1, most=10)
    await asyncio.gather(*(batched.get(f"k{i}") for i in range(35)))
    assert [len(asked) for asked in db.asked] == [1, 10, 10, 10, 4]
    assert db.most_running == 1


async def test_a_cancelled_reader_leaves_the_others_their_answers() -> None:
    db = Statements({"a": 1, "b": 2})
    batched = Batched(db.one, db.many, parallel=1)
    first = asyncio.ensure_future(batched.get("a"))
    await asyncio.sleep(0)
    gone = asyncio.ensure_future(batched.get("b"))
    kept = asyncio.ensure_future(batched.get("b"))
    only_gone = asyncio.ensure_future(batched.get("c"))
    await asyncio.sleep(0)
    gone.cancel()
    only_gone.cancel()
    assert (await first, await kept) == (1, 2)
    assert gone.cancelled() and only_gone.cancelled()
    assert db.asked == [["a"], ["b"]]  # nobody waited for "c" any more: not asked


async def test_a_failed_statement_fails_its_readers_only() -> None:
    db = Statements({"a": 1, "b": 2})
    batched = Batched(db.one, db.many, parallel=1)
    first = asyncio.ensure_future(batched.get("a"))
    await asyncio.sleep(0)
    waiting = [asyncio.ensure_future(batched.get(key)) for key in ("a", "b")]
    db.fail = ConnectionResetError("gone")
    results = await asyncio.gather(first, *waiting, return_exceptions=True)
    assert all(isinstance(result, ConnectionResetError) for result in results)
    db.fail = None
    assert await asyncio.gather(batched.get("a"), batched.get("b")) == [1, 2]


async def _pushed(registry: RegistryOverPorts, count: int) -> list[Digest]:
    upload = await registry.start_upload("r")
    await registry.commit_upload("r", upload.id, Digest.of(b"{}"), UploadChunk(body(b"{}")))
    digests = []
    for i in range(count):
        manifest, data = image(b"{}", annotations={"n": str(i)})
        await registry.put_manifest("r", manifest, data, [Tag(f"t{i}")])
        digests.append(manifest.digest)
    return digests


def count_statements(db: Database) -> list[str]:
    """Record each statement the metadata store sends through ``db`` (its reads' two calls)."""
    sent: list[str] = []
    fetch, fetchrow = db.fetch, db.fetchrow

    async def counted_fetch(sql: str, *args: object) -> list[asyncpg.Record]:
        sent.append(sql)
        return await fetch(sql, *args)

    async def counted_fetchrow(sql: str, *args: object) -> asyncpg.Record | None:
        sent.append(sql)
        return await fetchrow(sql, *args)

    db.fetch, db.fetchrow = counted_fetch, counted_fetchrow  # type: ignore[method-assign]
    return sent


async def test_many_concurrent_reads_on_postgres_take_a_few_statements(
    postgres_url: str, db: Database
) -> None:
    registry = RegistryOverPorts(MemoryBlobStore(), PostgresMetadata(db))
    digests = await _pushed(registry, 40)
    reader = PostgresMetadata(await Database.connect(postgres_url, pool_size=4))
    try:
        sent = count_statements(reader.db)
        tags = [Tag(f"t{i % 45}") for i in range(200)]  # 5 of the 45 missing
        found = await asyncio.gather(*(reader.manifest_by_tag("r", tag) for tag in tags))
        by_digest = await asyncio.gather(*(reader.manifest_by_digest("r", d) for d in digests))
        sizes = await asyncio.gather(
            reader.blob_size("r", Digest.of(b"{}")), reader.blob_size("r", Digest.of(b"x"))
        )
        for tag, stored in zip(tags, found, strict=True):
            index = int(tag.name[1:])
            if index < 40:
                assert stored is not None and stored.digest == digests[index]
            else:
                assert stored is None
        assert [stored.digest if stored else None for stored in by_digest] == digests
        assert sizes == [2, None]
        # 242 reads, at most two statements running at once: a few statements in all.
        assert len(sent) <= 12, sent

        # Nothing is kept: a tag moved is what the next batch of reads sees.
        moved, data = image(b"{}", annotations={"moved": "yes"})
        await registry.put_manifest("r", moved, data, [Tag("t0")])
        again = await asyncio.gather(*(reader.manifest_by_tag("r", Tag("t0")) for _ in range(50)))
        assert {stored.digest for stored in again if stored} == {moved.digest}
    finally:
        await reader.close()
