"""``PostgresMetadata``: the ``MetadataStore`` port (``store.ports``) on PostgreSQL, shared by
any number of replicas.

The schema is the embedded store's (``migrate``; digests as ``algorithm:hex`` text, names in
the "C" collation so listings are ASCII-ordered), manifests' bytes included (``bytea``), so a
manifest GET never needs the blob store. Each change is one transaction; races between
replicas are decided by the database (``INSERT … ON CONFLICT``, row locks), never by a process
lock. Reads are one statement each (under load, one statement answers many: ``batched``).

Change stamp: a tag moved on one replica must be seen by the very next request on any other,
and no query-free read can know that across machines, so there is no change stamp
(:attr:`changes` is None): ``RegistryOverPorts`` keeps no answers and always asks the database.

Events (``events.staging``): when the events layer staged a decision, the transaction first
takes a transaction-level advisory lock on the repository (so racing writers of one repository
decide in turn: one ``repository.created``), reads what the decision needs, and writes the
events into the outbox (``outbox``) before it commits.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...events.outbox import Outbox
from ...events.staging import STAGED, resolve_staged, take_staged
from ...oci.descriptors import Descriptor
from ...oci.digest import Digest
from ...oci.manifests import Manifest
from ...oci.reference import Tag
from ...registry import Page, StoredManifest, TagDetail
from ..embedded.metadata import (
    LINKS,
    REFERENCED,
    USAGE,
    manifest_node,
    page,
    referrer,
    tag_detail,
)
from ..ports import ChangeStamp, ManifestNode, Required, Usage
from . import locks
from .batched import Batched
from .database import UNREACHABLE, Database, DatabaseUnavailable, row_count
from .outbox import PostgresOutbox, insert_events

if TYPE_CHECKING:
    from .database import Connection, LockConnection


@dataclass(frozen=True, slots=True)
class _View:
    """:class:`events.staging.StoreView` from what the transaction read under its lock."""

    exists: bool
    tags: Mapping[str, str] = field(default_factory=dict)

    def repository_exists(self, repo: str) -> bool:
        return self.exists

    def tag_digest(self, repo: str, tag: str) -> str | None:
        return self.tags.get(tag)


@dataclass(slots=True)
class _Change:
    """A transaction in progress; the body says whether it changed anything."""

    conn: Connection
    changed: bool = True


_FIRST_MISSING = """
SELECT r.i FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS r(digest, kind, i)
WHERE NOT EXISTS (SELECT 1 FROM manifests m WHERE m.repo = $1 AND m.digest = r.digest)
  AND (r.kind <> 'blob' OR NOT EXISTS (
       SELECT 1 FROM repo_blobs b WHERE b.repo = $1 AND b.digest = r.digest))
ORDER BY r.i LIMIT 1
"""
_LINK = """
INSERT INTO repo_blobs (repo, digest, size, linked) VALUES ($1, $2, $3, $4)
ON CONFLICT (repo, digest) DO UPDATE SET linked = excluded.linked
"""
# Several (repo, key) pairs at once, for ``Batched``: the pairs as two arrays; manifests as
# (repo, key, digest, media type, bytes).
_BY_TAG = """
SELECT q.repo, q.tag, m.digest, m.media_type, m.data
FROM unnest($1::text[], $2::text[]) AS q(repo, tag)
JOIN tags t ON t.repo = q.repo AND t.tag = q.tag
JOIN manifests m ON m.repo = t.repo AND m.digest = t.digest
"""
_BY_DIGEST = """
SELECT q.repo, q.digest, m.digest, m.media_type, m.data
FROM unnest($1::text[], $2::text[]) AS q(repo, digest)
JOIN manifests m ON m.repo = q.repo AND m.digest = q.digest
"""
_BLOB_SIZES = """
SELECT q.repo, q.digest, b.size
FROM unnest($1::text[], $2::text[]) AS q(repo, digest)
JOIN repo_blobs b ON b.repo = q.repo AND b.digest = q.digest
"""
_VIEW = """
SELECT EXISTS (SELECT 1 FROM repositories WHERE name = $1),
       array(SELECT tag || '=' || digest FROM tags WHERE repo = $1 AND tag = ANY($2::text[]))
"""


class PostgresMetadata:
    """Over a :class:`Database` whose schema is migrated (``migrate.migrate``)."""

    def __init__(self, db: Database, *, lock_wait: float = 60.0) -> None:
        """``lock_wait``: the longest ``gc_lock`` waits (a collection holds it exclusively for
        its whole run; commits hold it shared for milliseconds)."""
        self.db = db
        self.lock_wait = lock_wait
        self._outbox = PostgresOutbox(db)
        # The reads every pull makes, batched under load (``batched``).
        self._by_tag = Batched(self._manifest_by_tag, self._manifests_by_tag)
        self._by_digest = Batched(self._manifest_by_digest, self._manifests_by_digest)
        self._blob_sizes = Batched(self._blob_size, self._blob_size_many)

    @property
    def changes(self) -> ChangeStamp | None:
        return None

    @property
    def outbox(self) -> Outbox | None:
        return self._outbox

    def gc_lock(self, *, exclusive: bool) -> AbstractAsyncContextManager[None]:
        return self._gc_lock(exclusive)

    @contextlib.asynccontextmanager
    async def _gc_lock(self, exclusive: bool) -> AsyncIterator[None]:
        # On a connection of the lock pool: N sharers never take the query pool from their
        # own queries. Releasing it resets the session (pg_advisory_unlock_all), so the lock
        # goes with it whatever interrupts the holder, and a lost connection loses it too.
        kind = "" if exclusive else "_shared"
        db = self.db
        conn: LockConnection | None = None
        try:
            # Waiting for a lock connection (more sharers than the lock pool holds) is waiting
            # for the lock: both within lock_wait, plus the time to connect.
            async with db.bounded(db.connect_timeout + 2 * self.lock_wait):
                conn = await db.locks.acquire(timeout=db.connect_timeout + self.lock_wait)
                try:
                    await conn.execute(
                        f"SELECT pg_advisory_lock{kind}($1, $2)",
                        locks.NAMESPACE,
                        locks.GC,
                        timeout=self.lock_wait,
                    )
                except TimeoutError:
                    raise DatabaseUnavailable(
                        {"database": db.where},
                        f"the garbage-collection lock in {db.where} was not granted within"
                        f" {self.lock_wait:g} s",
                    ) from None
            yield
        finally:
            if conn is not None:
                with contextlib.suppress(*UNREACHABLE):
                    await db.locks.release(conn, timeout=db.command_timeout)

    @contextlib.asynccontextmanager
    async def _changing(self, repo: str, tags: Sequence[Tag] = ()) -> AsyncIterator[_Change]:
        """One write transaction, with the events staged for it decided and written inside."""
        async with self.db.transaction() as conn:
            staged = STAGED.get() is not None
            if staged:
                await conn.execute(
                    "SELECT pg_advisory_xact_lock($1, hashtext($2))", locks.REPOSITORY, repo
                )
                row = await conn.fetchrow(_VIEW, repo, [tag.name for tag in tags])
                assert row is not None
                pairs = (item.split("=", 1) for item in row[1])  # a tag has no "="
                resolve_staged(_View(bool(row[0]), dict(pairs)))
            change = _Change(conn)
            yield change
            if staged:
                events = take_staged(change.changed)
                if events:
                    await insert_events(conn, events)

    async def close(self) -> None:
        await self.db.close()

    # -- blobs -----------------------------------------------------------------------------

    async def blob_size(self, repo: str, digest: Digest) -> int | None:
        return await self._blob_sizes.get((repo, str(digest)))

    async def _blob_size(self, key: tuple[str, str]) -> int | None:
        row = await self.db.fetchrow(
            "SELECT size FROM repo_blobs WHERE repo = $1 AND digest = $2", *key
        )
        return None if row is None else int(row[0])

    async def _blob_size_many(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        rows = await self.db.fetch(_BLOB_SIZES, *_columns(keys))
        return {(row[0], row[1]): int(row[2]) for row in rows}

    async def any_blob_size(self, digest: Digest) -> int | None:
        row = await self.db.fetchrow(
            "SELECT size FROM repo_blobs WHERE digest = $1 LIMIT 1", str(digest)
        )
        return None if row is None else int(row[0])

    async def link_blob(self, repo: str, digest: Digest, size: int) -> None:
        async with self._changing(repo) as change:
            await self._link(change.conn, repo, str(digest), size)

    @staticmethod
    async def _link(conn: Connection, repo: str, digest: str, size: int) -> None:
        await conn.execute(
            "INSERT INTO repositories (name) VALUES ($1) ON CONFLICT DO NOTHING", repo
        )
        # Linking again renews the link: a re-pushed blob gets a new grace period.
        await conn.execute(_LINK, repo, digest, size, time.time())

    async def unlink_blob(self, repo: str, digest: Digest) -> bool:
        sql = "DELETE FROM repo_blobs WHERE repo = $1 AND digest = $2"
        return await self._change(repo, sql, repo, str(digest))

    async def usage(self, repo: str) -> Usage:
        row = await self.db.fetchrow(USAGE.format(repo="$1"), repo)
        assert row is not None  # two aggregates: always one row
        return Usage(int(row[0]), int(row[1]))

    async def _change(self, repo: str, sql: str, *args: object) -> bool:
        """One statement as a change; whether it changed a row."""
        async with self._changing(repo) as change:
            change.changed = row_count(await change.conn.execute(sql, *args)) > 0
            return change.changed

    # -- manifests -------------------------------------------------------------------------

    async def manifest_by_tag(self, repo: str, tag: Tag) -> StoredManifest | None:
        return await self._by_tag.get((repo, tag.name))

    async def _manifest_by_tag(self, key: tuple[str, str]) -> StoredManifest | None:
        row = await self.db.fetchrow(
            "SELECT m.digest, m.media_type, m.data FROM tags t JOIN manifests m"
            " ON m.repo = t.repo AND m.digest = t.digest WHERE t.repo = $1 AND t.tag = $2",
            *key,
        )
        if row is None:
            return None
        return StoredManifest(Digest.parse(row[0]), row[1], bytes(row[2]))

    async def _manifests_by_tag(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], StoredManifest]:
        return await self._manifests(_BY_TAG, keys)

    async def _manifests(
        self, sql: str, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], StoredManifest]:
        """Manifests of several keys by one of the ``_BY_*`` statements."""
        rows = await self.db.fetch(sql, *_columns(keys))
        return {
            (row[0], row[1]): StoredManifest(Digest.parse(row[2]), row[3], bytes(row[4]))
            for row in rows
        }

    async def manifest_by_digest(self, repo: str, digest: Digest) -> StoredManifest | None:
        return await self._by_digest.get((repo, str(digest)))

    async def _manifest_by_digest(self, key: tuple[str, str]) -> StoredManifest | None:
        row = await self.db.fetchrow(
            "SELECT media_type, data FROM manifests WHERE repo = $1 AND digest = $2", *key
        )
        return None if row is None else StoredManifest(Digest.parse(key[1]), row[0], bytes(row[1]))

    async def _manifests_by_digest(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], StoredManifest]:
        return await self._manifests(_BY_DIGEST, keys)

    async def first_missing(self, repo: str, required: Sequence[Required]) -> Required | None:
        if not required:
            return None
        async with self.db.connection() as conn:
            return await self._first_missing(conn, repo, required)

    @staticmethod
    async def _first_missing(
        conn: Connection, repo: str, required: Sequence[Required]
    ) -> Required | None:
        if not required:
            return None
        digests = [str(item.digest) for item in required]
        kinds = [item.kind for item in required]
        index = await conn.fetchval(_FIRST_MISSING, repo, digests, kinds)
        return None if index is None else required[int(index) - 1]

    async def put_manifest(
        self,
        repo: str,
        manifest: Manifest,
        data: bytes,
        tags: Sequence[Tag],
        required: Sequence[Required],
    ) -> None:
        digest = str(manifest.digest)
        now = time.time()
        async with self._changing(repo, tags) as change:
            conn = change.conn
            missing = await self._first_missing(conn, repo, required)
            if missing is not None:
                raise missing.unknown()
            await self._link(conn, repo, digest, len(data))
            await conn.execute(
                "INSERT INTO manifests (repo, digest, media_type, data, subject,"
                " artifact_type, annotations, size, stored)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                " ON CONFLICT (repo, digest) DO NOTHING",
                repo,
                digest,
                manifest.media_type,
                data,
                str(manifest.subject.digest) if manifest.subject else None,
                manifest.artifact_type,
                json.dumps(manifest.annotations) if manifest.annotations else None,
                len(data),
                now,
            )
            refs = [(str(d.digest), "blob") for d in manifest.blobs]
            refs += [(str(d.digest), "child") for d in manifest.children]
            if refs:
                await conn.execute(
                    "INSERT INTO manifest_refs (repo, manifest, digest, kind)"
                    " SELECT $1, $2, r.digest, r.kind FROM unnest($3::text[], $4::text[])"
                    " AS r(digest, kind) ON CONFLICT DO NOTHING",
                    repo,
                    digest,
                    [d for d, _ in refs],
                    [k for _, k in refs],
                )
            if tags:
                # Sorted, so that racing pushes lock tag rows in one order (no deadlock).
                await conn.execute(
                    "INSERT INTO tags (repo, tag, digest, pushed)"
                    " SELECT $1, t, $2, $4 FROM unnest($3::text[]) AS t ORDER BY t"
                    " ON CONFLICT (repo, tag) DO UPDATE"
                    " SET digest = excluded.digest, pushed = excluded.pushed",
                    repo,
                    digest,
                    sorted({tag.name for tag in tags}),
                    now,
                )

    async def delete_manifest(self, repo: str, digest: Digest) -> bool:
        key = (repo, str(digest))
        async with self._changing(repo) as change:
            conn = change.conn
            # The link's row first, as put_manifest locks it: a delete racing a re-push of
            # the same manifest waits for it instead of deadlocking.
            await conn.execute(
                "SELECT 1 FROM repo_blobs WHERE repo = $1 AND digest = $2 FOR UPDATE", *key
            )
            deleted = await conn.execute(
                "DELETE FROM manifests WHERE repo = $1 AND digest = $2", *key
            )
            change.changed = row_count(deleted) > 0
            if change.changed:
                await conn.execute("DELETE FROM tags WHERE repo = $1 AND digest = $2", *key)
                await conn.execute(
                    "DELETE FROM manifest_refs WHERE repo = $1 AND manifest = $2", *key
                )
                await conn.execute("DELETE FROM repo_blobs WHERE repo = $1 AND digest = $2", *key)
            return change.changed

    async def delete_tag(self, repo: str, tag: Tag) -> bool:
        sql = "DELETE FROM tags WHERE repo = $1 AND tag = $2"
        return await self._change(repo, sql, repo, tag.name)

    # -- listings --------------------------------------------------------------------------

    async def list_tags(self, repo: str, last: str | None, n: int | None) -> Page | None:
        row = await self.db.fetchrow(
            "SELECT EXISTS (SELECT 1 FROM repositories WHERE name = $1),"
            " array(SELECT tag FROM tags WHERE repo = $1 AND tag > $2 ORDER BY tag LIMIT $3)",
            repo,
            last or "",
            None if n is None else n + 1,
        )
        assert row is not None
        return page(list(row[1]), n) if row[0] else None

    async def tag_details(self, repo: str) -> list[TagDetail] | None:
        async with self.db.connection() as conn:
            exists = await conn.fetchval("SELECT 1 FROM repositories WHERE name = $1", repo)
            if exists is None:
                return None
            rows = await conn.fetch(
                "SELECT t.tag, t.digest, m.media_type, m.size, t.pushed FROM tags t"
                " JOIN manifests m ON m.repo = t.repo AND m.digest = t.digest"
                " WHERE t.repo = $1 ORDER BY t.tag",
                repo,
            )
        return [tag_detail(row) for row in rows]

    async def list_repositories(self, last: str | None, n: int | None) -> Page:
        rows = await self.db.fetch(
            "SELECT name FROM repositories WHERE name > $1 ORDER BY name LIMIT $2",
            last or "",
            None if n is None else n + 1,
        )
        return page([row[0] for row in rows], n)

    async def manifest_nodes(self, repo: str) -> list[ManifestNode]:
        rows = await self.db.fetch(
            "SELECT m.digest, m.stored, m.subject, array(SELECT r.digest FROM manifest_refs r"
            " WHERE r.repo = m.repo AND r.manifest = m.digest AND r.kind = 'child')"
            " FROM manifests m WHERE m.repo = $1 ORDER BY m.id",
            repo,
        )
        return [manifest_node(row) for row in rows]

    async def referrers(
        self, repo: str, subject: Digest, artifact_type: str | None
    ) -> list[Descriptor]:
        rows = await self.db.fetch(
            "SELECT media_type, digest, size, artifact_type, annotations FROM manifests"
            " WHERE repo = $1 AND subject = $2 AND ($3::text IS NULL OR artifact_type = $3)"
            " ORDER BY id",
            repo,
            str(subject),
            artifact_type,
        )
        return [referrer(row) for row in rows]

    # -- garbage collection ------------------------------------------------------------------

    async def referenced_digests(self) -> set[str]:
        return {row[0] for row in await self.db.fetch(REFERENCED)}

    async def links(self) -> dict[str, tuple[int, float]]:
        rows = await self.db.fetch(LINKS)
        return {row[0]: (int(row[1]), float(row[2])) for row in rows}

    async def unlink_everywhere(self, digests: Sequence[str]) -> None:
        async with self.db.transaction() as conn:
            await conn.execute("DELETE FROM repo_blobs WHERE digest = ANY($1::text[])", digests)


def _columns(keys: Sequence[tuple[str, str]]) -> tuple[list[str], list[str]]:
    return [key[0] for key in keys], [key[1] for key in keys]
