"""Schema migrations: applied in order, once, even when replicas start at the same moment."""

from __future__ import annotations

import time

import anyio
import pytest

from ocigate.store.postgres import migrate as migrate_module
from ocigate.store.postgres.database import Database
from ocigate.store.postgres.migrate import MIGRATIONS, migrate, pending

pytestmark = pytest.mark.anyio
NAMES = [name for name, _ in MIGRATIONS]


async def test_replicas_migrating_at_once_apply_each_migration_once(postgres_url: str) -> None:
    replicas = [await Database.connect(postgres_url, pool_size=1) for _ in range(4)]
    assert await pending(replicas[0]) == NAMES  # a new database: everything is pending
    results: list[list[str]] = []

    async def start(db: Database) -> None:
        results.append(await migrate(db))

    async with anyio.create_task_group() as tg:
        for db in replicas:
            tg.start_soon(start, db)
    assert sorted(name for applied in results for name in applied) == NAMES
    assert sorted(results, key=len)[-1] == NAMES  # one replica did it all, in order
    for db in replicas:
        assert await pending(db) == []
        assert await migrate(db) == []
    rows = await replicas[0].fetch("SELECT name FROM schema_migrations ORDER BY name")
    assert [row[0] for row in rows] == NAMES
    for db in replicas:
        await db.close()


async def test_a_failing_migration_leaves_nothing_half_applied(postgres_url: str) -> None:
    db = await Database.connect(postgres_url)
    # A table in the way of the first migration's: it fails, and it alone is rolled back.
    await db.execute("CREATE TABLE manifest_refs (x int)")
    with pytest.raises(Exception, match="manifest_refs"):
        await migrate(db)
    assert await pending(db) == NAMES
    assert await db.fetchrow("SELECT to_regclass('repositories')") == (None,)
    await db.execute("DROP TABLE manifest_refs")
    assert await migrate(db) == NAMES
    await db.close()


async def test_push_times_of_rows_older_than_them_are_the_migration_time(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = await Database.connect(postgres_url)
    monkeypatch.setattr(migrate_module, "MIGRATIONS", MIGRATIONS[:4])  # the release before
    await migrate(db)
    await db.execute("INSERT INTO tags (repo, tag, digest) VALUES ('r', 'v1', 'sha256:x')")
    await db.execute(
        "INSERT INTO manifests (repo, digest, media_type, data, size)"
        " VALUES ('r', 'sha256:x', 'm', ''::bytea, 0)"
    )
    monkeypatch.setattr(migrate_module, "MIGRATIONS", MIGRATIONS)
    before = time.time()
    assert await migrate(db) == ["0005_push_times"]
    pushed, stored = await db.fetchrow(
        "SELECT t.pushed, m.stored FROM tags t JOIN manifests m ON m.digest = t.digest"
    )
    assert before - 1 <= pushed <= time.time() and stored == pushed
    with pytest.raises(Exception, match="pushed"):  # no default: every write states its time
        await db.execute("INSERT INTO tags (repo, tag, digest) VALUES ('r', 'v2', 'sha256:x')")
    await db.close()
