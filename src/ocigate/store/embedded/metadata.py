"""The embedded store's ``MetadataStore`` (``store.ports``): one SQLite database (``meta.db``).

WAL mode, one connection per thread (cached), ``synchronous=FULL`` so an acknowledged write
survives power loss, a 10 s busy timeout for the other worker processes' writers; every change
is one ``BEGIN IMMEDIATE`` transaction, run in a worker thread. Reads used on the hot path are
one indexed SELECT each, run inline. ``store.memory`` runs the same SQL on a database in memory.

Tables (digests are stored as ``algorithm:hex`` text; ordering is SQLite's BINARY collation, i.e.
ASCIIbetical):

- ``repositories(name)``: a repository exists once anything was linked into it; it stays listed
  when everything in it was deleted.
- ``repo_blobs(repo, digest, size, linked)``: which blobs (layers, configs and manifest bytes) a
  repository holds, and when each was last linked there (unix seconds; 0 for links made before
  the column existed): garbage collection's grace period counts from it.
- ``manifests(id, repo, digest, media_type, data, subject, artifact_type, annotations, size,
  stored)``: ``data`` is byte-exact; ``id`` gives push order (the referrers list order),
  ``stored`` when it was first stored (unix seconds; the migration's time for manifests stored
  before the column existed).
- ``tags(repo, tag, digest, pushed)``: ``pushed`` is when the tag was last pushed (moved or
  pushed again; the migration's time for older tags): retention's "last N" and "younger than".
- ``manifest_refs(repo, manifest, digest, kind)``: what each manifest references, ``kind`` being
  ``blob`` (config, layers) or ``child`` (index entries); with the manifests themselves and
  their subjects, what garbage collection keeps.
- ``outbox``, ``outbox_cursors``, ``deliveries``: durable events (see ``outbox.py``).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import anyio.to_thread

from ...events import sqlite_outbox
from ...events.outbox import Outbox
from ...events.staging import resolve_staged
from ...oci.descriptors import Descriptor
from ...oci.digest import Digest
from ...oci.manifests import Manifest
from ...oci.reference import Tag
from ...registry import Page, StoredManifest, TagDetail
from ..ports import ChangeStamp, ManifestNode, Required, Usage
from .gc_lock import FileLock
from .stamp import Stamp

T = TypeVar("T")

SCHEMA_VERSION = 3
_SCHEMA = """
CREATE TABLE IF NOT EXISTS repositories (name TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS repo_blobs (
    repo TEXT NOT NULL, digest TEXT NOT NULL, size INTEGER NOT NULL,
    linked REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (repo, digest)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS repo_blobs_digest ON repo_blobs (digest);
CREATE TABLE IF NOT EXISTS manifests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    repo TEXT NOT NULL, digest TEXT NOT NULL, media_type TEXT NOT NULL, data BLOB NOT NULL,
    subject TEXT, artifact_type TEXT, annotations TEXT, size INTEGER NOT NULL,
    stored REAL NOT NULL,
    UNIQUE (repo, digest));
CREATE INDEX IF NOT EXISTS manifests_subject ON manifests (repo, subject)
    WHERE subject IS NOT NULL;
CREATE TABLE IF NOT EXISTS tags (
    repo TEXT NOT NULL, tag TEXT NOT NULL, digest TEXT NOT NULL, pushed REAL NOT NULL,
    PRIMARY KEY (repo, tag)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tags_digest ON tags (repo, digest);
CREATE TABLE IF NOT EXISTS manifest_refs (
    repo TEXT NOT NULL, manifest TEXT NOT NULL, digest TEXT NOT NULL, kind TEXT NOT NULL,
    PRIMARY KEY (repo, manifest, digest)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS manifest_refs_digest ON manifest_refs (digest);
"""


class _Connection(sqlite3.Connection):
    """A connection that can be weakly referenced (the base class cannot)."""


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
    conn = sqlite3.connect(
        uri,
        uri=True,
        timeout=10.0,
        isolation_level=None,
        check_same_thread=False,
        factory=_Connection,
    )
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class _View:
    """:class:`events.staging.StoreView` inside a transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def repository_exists(self, repo: str) -> bool:
        sql = "SELECT 1 FROM repositories WHERE name = ?"
        return self._conn.execute(sql, (repo,)).fetchone() is not None

    def tag_digest(self, repo: str, tag: str) -> str | None:
        sql = "SELECT digest FROM tags WHERE repo = ? AND tag = ?"
        row = self._conn.execute(sql, (repo, tag)).fetchone()
        return None if row is None else str(row[0])


def page(rows: list[str], n: int | None) -> Page:
    if n is None:
        return Page(rows, False)
    return Page(rows[:n], len(rows) > n)


# Garbage collection's two reads (the same SQL in every database holding this schema).
REFERENCED = (
    "SELECT digest FROM manifests UNION SELECT digest FROM manifest_refs"
    " UNION SELECT subject FROM manifests WHERE subject IS NOT NULL"
)
LINKS = "SELECT digest, count(*), max(linked) FROM repo_blobs GROUP BY digest"
# A repository's quota usage, ``{repo}`` its placeholder in the database's dialect: (repo,
# digest) is repo_blobs' primary key, so each distinct blob counts once.
USAGE = (
    "SELECT (SELECT coalesce(sum(size), 0) FROM repo_blobs WHERE repo = {repo}),"
    " (SELECT count(*) FROM tags WHERE repo = {repo})"
)


class Row(Protocol):
    """A result row of any database driver (sqlite3's tuples, asyncpg's records)."""

    def __getitem__(self, index: int) -> Any: ...


def referrer(row: Row) -> Descriptor:
    """A referrer from ``(media_type, digest, size, artifact_type, annotations)``."""
    return Descriptor(
        media_type=row[0],
        digest=Digest.parse(row[1]),
        size=int(row[2]),
        artifact_type=row[3],
        annotations=json.loads(row[4]) if row[4] else {},
    )


_TAG_DETAILS = (
    "SELECT t.tag, t.digest, m.media_type, m.size, t.pushed FROM tags t JOIN manifests m"
    " ON m.repo = t.repo AND m.digest = t.digest WHERE t.repo = ? ORDER BY t.tag"
)


def tag_detail(row: Row) -> TagDetail:
    """A tag from ``(tag, digest, media_type, size, pushed)`` (both databases' rows)."""
    return TagDetail(row[0], Digest.parse(row[1]), row[2], int(row[3]), float(row[4]))


# One statement, so the children read belong to the manifests read.
_NODES = (
    "SELECT m.digest, m.stored, m.subject, (SELECT group_concat(r.digest, ' ')"
    " FROM manifest_refs r WHERE r.repo = m.repo AND r.manifest = m.digest AND r.kind = 'child')"
    " FROM manifests m WHERE m.repo = ? ORDER BY m.id"
)


def manifest_node(row: Row) -> ManifestNode:
    """A node from ``(digest, stored, subject, children)``, the children a space-separated
    text or a list (both databases' rows)."""
    children = row[3].split() if isinstance(row[3], str) else row[3] or ()
    return ManifestNode(row[0], float(row[1]), row[2], tuple(sorted(children)))


def _stored(digest: str, media_type: str, data: bytes) -> StoredManifest:
    algorithm, _, encoded = digest.partition(":")
    return StoredManifest(Digest(algorithm, encoded), media_type, bytes(data))


class SqliteMetadata:
    """Over a database file shared by the worker processes (and their threads)."""

    def __init__(self, path: Path, lock: FileLock) -> None:
        self.path = path
        self._lock = lock
        self._local = threading.local()
        # Weak: when an idle worker thread exits, its thread-local connection is closed with it.
        self._all: weakref.WeakSet[sqlite3.Connection] = weakref.WeakSet()
        self._all_lock = threading.Lock()
        self._stamp = Stamp(path.with_suffix(".stamp"))
        self._outbox: Outbox | None = None
        self.conn().execute("PRAGMA journal_mode = WAL")
        self._migrate()

    @property
    def changes(self) -> ChangeStamp:
        return self._stamp

    @property
    def outbox(self) -> Outbox | None:
        if self._outbox is None:  # opened on first use: most stores never deliver events
            self._outbox = sqlite_outbox.SqliteOutbox(connect(self.path), transaction)
        return self._outbox

    def gc_lock(self, *, exclusive: bool) -> AbstractAsyncContextManager[None]:
        return self._lock.hold(exclusive=exclusive)

    async def _call(self, function: Callable[..., T], *args: object) -> T:
        """Run blocking database work in a worker thread (anyio copies the context, so the
        events layer's staged events reach changing())."""
        return await anyio.to_thread.run_sync(function, *args)

    def _migrate(self) -> None:
        conn = self.conn()
        with transaction(conn):
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 1:  # version 2 added the time of each link
                conn.execute("ALTER TABLE repo_blobs ADD COLUMN linked REAL NOT NULL DEFAULT 0")
            if 1 <= version < 3:  # version 3 added push times: older rows get the time now
                now = time.time()
                for table, column in (("tags", "pushed"), ("manifests", "stored")):
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} REAL NOT NULL DEFAULT 0")
                    conn.execute(f"UPDATE {table} SET {column} = ?", (now,))
            if version < SCHEMA_VERSION:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            sqlite_outbox.create_tables(conn)  # IF NOT EXISTS: also added to older databases

    @contextlib.contextmanager
    def changing(self) -> Iterator[sqlite3.Connection]:
        """A write transaction on this thread's connection; bumps the stamp once committed.

        Events the events layer staged for this change (``events.staging``) are decided as the
        transaction begins and inserted into the outbox inside it: they commit, or roll back,
        with the change. Only a store whose ``outbox`` is declared gets any staged.
        """
        with transaction(self.conn()) as conn:
            resolve_staged(_View(conn))
            before = conn.total_changes
            yield conn
            sqlite_outbox.write_staged(conn, changed=conn.total_changes != before)
        self._stamp.bump()

    def conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            self._local.conn = conn
            with self._all_lock:
                self._all.add(conn)
        return conn

    async def close(self) -> None:
        if self._outbox is not None:
            self._outbox.close()
        with self._all_lock:
            conns, self._all = list(self._all), weakref.WeakSet()
        for conn in conns:
            conn.close()
        self._local = threading.local()

    # -- blobs -----------------------------------------------------------------------------

    async def blob_size(self, repo: str, digest: Digest) -> int | None:
        sql = "SELECT size FROM repo_blobs WHERE repo = ? AND digest = ?"
        row = self.conn().execute(sql, (repo, str(digest))).fetchone()
        return None if row is None else int(row[0])

    async def any_blob_size(self, digest: Digest) -> int | None:
        sql = "SELECT size FROM repo_blobs WHERE digest = ? LIMIT 1"
        row = self.conn().execute(sql, (str(digest),)).fetchone()
        return None if row is None else int(row[0])

    async def link_blob(self, repo: str, digest: Digest, size: int) -> None:
        def link() -> None:
            with self.changing() as conn:
                self._link(conn, repo, str(digest), size)

        await self._call(link)

    @staticmethod
    def _link(conn: sqlite3.Connection, repo: str, digest: str, size: int) -> None:
        conn.execute("INSERT OR IGNORE INTO repositories (name) VALUES (?)", (repo,))
        # Linking again renews the link: a re-pushed blob gets a new grace period.
        conn.execute(
            "INSERT INTO repo_blobs (repo, digest, size, linked) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (repo, digest) DO UPDATE SET linked = excluded.linked",
            (repo, digest, size, time.time()),
        )

    async def unlink_blob(self, repo: str, digest: Digest) -> bool:
        sql = "DELETE FROM repo_blobs WHERE repo = ? AND digest = ?"
        return await self._call(self._change, sql, (repo, str(digest)))

    async def usage(self, repo: str) -> Usage:
        row = self.conn().execute(USAGE.format(repo="?1"), (repo,)).fetchone()
        return Usage(int(row[0]), int(row[1]))

    def _change(self, sql: str, params: tuple[str, ...]) -> bool:
        """One statement as a change; whether it changed a row."""
        with self.changing() as conn:
            return conn.execute(sql, params).rowcount > 0

    # -- manifests -------------------------------------------------------------------------

    async def manifest_by_tag(self, repo: str, tag: Tag) -> StoredManifest | None:
        row = (
            self.conn()
            .execute(
                "SELECT m.digest, m.media_type, m.data FROM tags t JOIN manifests m"
                " ON m.repo = t.repo AND m.digest = t.digest WHERE t.repo = ? AND t.tag = ?",
                (repo, tag.name),
            )
            .fetchone()
        )
        return None if row is None else _stored(row[0], row[1], row[2])

    async def manifest_by_digest(self, repo: str, digest: Digest) -> StoredManifest | None:
        row = (
            self.conn()
            .execute(
                "SELECT media_type, data FROM manifests WHERE repo = ? AND digest = ?",
                (repo, str(digest)),
            )
            .fetchone()
        )
        return None if row is None else StoredManifest(digest, row[0], bytes(row[1]))

    async def first_missing(self, repo: str, required: Sequence[Required]) -> Required | None:
        return await self._call(lambda: self._first_missing(self.conn(), repo, required))

    @staticmethod
    def _first_missing(
        db: sqlite3.Connection, repo: str, required: Sequence[Required]
    ) -> Required | None:
        for item in required:
            digest = str(item.digest)
            if item.kind == "blob":
                sql = (
                    "SELECT 1 FROM repo_blobs WHERE repo = ? AND digest = ?"
                    " UNION ALL SELECT 1 FROM manifests WHERE repo = ? AND digest = ? LIMIT 1"
                )
                params: tuple[str, ...] = (repo, digest, repo, digest)
            else:
                sql = "SELECT 1 FROM manifests WHERE repo = ? AND digest = ?"
                params = (repo, digest)
            if db.execute(sql, params).fetchone() is None:
                return item
        return None

    async def put_manifest(
        self,
        repo: str,
        manifest: Manifest,
        data: bytes,
        tags: Sequence[Tag],
        required: Sequence[Required],
    ) -> None:
        def put() -> None:
            digest = str(manifest.digest)
            now = time.time()
            with self.changing() as conn:
                missing = self._first_missing(conn, repo, required)
                if missing is not None:
                    raise missing.unknown()
                self._link(conn, repo, digest, len(data))
                conn.execute(
                    "INSERT OR IGNORE INTO manifests (repo, digest, media_type, data, subject,"
                    " artifact_type, annotations, size, stored) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        repo,
                        digest,
                        manifest.media_type,
                        data,
                        str(manifest.subject.digest) if manifest.subject else None,
                        manifest.artifact_type,
                        json.dumps(manifest.annotations) if manifest.annotations else None,
                        len(data),
                        now,
                    ),
                )
                refs = [(repo, digest, str(d.digest), "blob") for d in manifest.blobs]
                refs += [(repo, digest, str(d.digest), "child") for d in manifest.children]
                conn.executemany(
                    "INSERT OR IGNORE INTO manifest_refs (repo, manifest, digest, kind)"
                    " VALUES (?, ?, ?, ?)",
                    refs,
                )
                conn.executemany(
                    "INSERT INTO tags (repo, tag, digest, pushed) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (repo, tag) DO UPDATE"
                    " SET digest = excluded.digest, pushed = excluded.pushed",
                    [(repo, tag.name, digest, now) for tag in tags],
                )

        await self._call(put)

    async def delete_manifest(self, repo: str, digest: Digest) -> bool:
        def delete() -> bool:
            key = (repo, str(digest))
            with self.changing() as conn:
                if not conn.execute(
                    "DELETE FROM manifests WHERE repo = ? AND digest = ?", key
                ).rowcount:
                    return False
                conn.execute("DELETE FROM tags WHERE repo = ? AND digest = ?", key)
                conn.execute("DELETE FROM manifest_refs WHERE repo = ? AND manifest = ?", key)
                conn.execute("DELETE FROM repo_blobs WHERE repo = ? AND digest = ?", key)
                return True

        return await self._call(delete)

    async def delete_tag(self, repo: str, tag: Tag) -> bool:
        sql = "DELETE FROM tags WHERE repo = ? AND tag = ?"
        return await self._call(self._change, sql, (repo, tag.name))

    # -- listings --------------------------------------------------------------------------

    def repo_exists(self, repo: str) -> bool:
        return _View(self.conn()).repository_exists(repo)

    async def list_tags(self, repo: str, last: str | None, n: int | None) -> Page | None:
        def list_() -> Page | None:
            if not self.repo_exists(repo):
                return None
            sql = "SELECT tag FROM tags WHERE repo = ? AND tag > ? ORDER BY tag LIMIT ?"
            return self._page(sql, (repo, last or ""), n)

        # In a thread: a page may hold every tag of a large repository.
        return await self._call(list_)

    async def tag_details(self, repo: str) -> list[TagDetail] | None:
        def details() -> list[TagDetail] | None:
            if not self.repo_exists(repo):
                return None
            return [tag_detail(row) for row in self._rows(_TAG_DETAILS, (repo,))]

        return await self._call(details)

    async def list_repositories(self, last: str | None, n: int | None) -> Page:
        sql = "SELECT name FROM repositories WHERE name > ? ORDER BY name LIMIT ?"
        return await self._call(self._page, sql, (last or "",), n)

    def _page(self, sql: str, params: tuple[str, ...], n: int | None) -> Page:
        limit = -1 if n is None else n + 1
        rows = self.conn().execute(sql, (*params, limit)).fetchall()
        return page([r[0] for r in rows], n)

    async def manifest_nodes(self, repo: str) -> list[ManifestNode]:
        return [manifest_node(row) for row in await self._call(self._rows, _NODES, (repo,))]

    async def referrers(
        self, repo: str, subject: Digest, artifact_type: str | None
    ) -> list[Descriptor]:
        sql = (
            "SELECT media_type, digest, size, artifact_type, annotations FROM manifests"
            " WHERE repo = ? AND subject = ?"
        )
        params: tuple[str, ...] = (repo, str(subject))
        if artifact_type is not None:
            sql += " AND artifact_type = ?"
            params += (artifact_type,)
        rows = await self._call(self._rows, sql + " ORDER BY id", params)
        return [referrer(row) for row in rows]

    def _rows(self, sql: str, params: tuple[str, ...] = ()) -> list[Any]:
        return self.conn().execute(sql, params).fetchall()

    # -- garbage collection ------------------------------------------------------------------

    async def referenced_digests(self) -> set[str]:
        rows = await self._call(self._rows, REFERENCED)
        return {row[0] for row in rows}

    async def links(self) -> dict[str, tuple[int, float]]:
        rows = await self._call(self._rows, LINKS)
        return {row[0]: (int(row[1]), float(row[2])) for row in rows}

    async def unlink_everywhere(self, digests: Sequence[str]) -> None:
        def unlink() -> None:
            with self.changing() as conn:
                conn.executemany("DELETE FROM repo_blobs WHERE digest = ?", [(d,) for d in digests])

        await self._call(unlink)
