"""The pull-through cache's own SQLite index (``index.db`` in the cache directory).

The embedded store's metadata does not fit a cache: its ``put_manifest`` insists that every
referenced blob is already linked, while a cache learns manifests before (or without) their blobs.
So the cache keeps small tables of its own:

- ``manifests(repo, digest, media_type, data)``: byte-exact manifest bodies, verified against
  their digest before they are inserted;
- ``tags(repo, tag, digest, fetched)``: the upstream's answer for a tag and when it was last
  confirmed (unix seconds), for the TTL;
- ``blobs(repo, digest, size)``: which repository a blob was pulled through. The bytes are
  shared by digest (``blobs/`` beside this file); the per-repository row keeps the cache from
  serving a blob for a repository the upstream never showed it in;
- ``files(digest, size, used)``: each blob file and when it was last served (unix seconds),
  for evicting the least recently used ones when the cache outgrows its size limit;
- ``refs(repo, digest, size)``: the blobs (config, layers) cached manifests of a repository
  reference: the upstream accepted those manifests, so it has those blobs in that repository;
- ``listings(kind, repo, key, data, fetched)``: tag lists, catalog pages and referrers as the
  upstream last answered them (JSON) and when, revalidated like tags.

WAL and a busy timeout let the workers of one server share the file; statements are single
indexed reads or one-row upserts, cheap enough to run on the event loop.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from ...oci.digest import Digest
from ...oci.reference import Tag

_SCHEMA = """
CREATE TABLE IF NOT EXISTS manifests (
    repo TEXT NOT NULL, digest TEXT NOT NULL, media_type TEXT NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE TABLE IF NOT EXISTS tags (
    repo TEXT NOT NULL, tag TEXT NOT NULL, digest TEXT NOT NULL, fetched REAL NOT NULL,
    PRIMARY KEY (repo, tag)
);
CREATE TABLE IF NOT EXISTS blobs (
    repo TEXT NOT NULL, digest TEXT NOT NULL, size INTEGER NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE TABLE IF NOT EXISTS files (
    digest TEXT PRIMARY KEY, size INTEGER NOT NULL, used REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS files_by_use ON files (used);
CREATE TABLE IF NOT EXISTS refs (
    repo TEXT NOT NULL, digest TEXT NOT NULL, size INTEGER NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE TABLE IF NOT EXISTS listings (
    kind TEXT NOT NULL, repo TEXT NOT NULL, key TEXT NOT NULL, data TEXT NOT NULL,
    fetched REAL NOT NULL,
    PRIMARY KEY (kind, repo, key)
);
"""


class CacheIndex:
    def __init__(self, path: Path) -> None:
        # One connection guarded by a lock: callers are on one event loop, but fills finish
        # from tasks and tests may touch it from threads.
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            path, timeout=10.0, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- manifests -----------------------------------------------------------------------

    def manifest(self, repo: str, digest: Digest) -> tuple[str, bytes] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT media_type, data FROM manifests WHERE repo = ? AND digest = ?",
                (repo, str(digest)),
            ).fetchone()
        return None if row is None else (str(row[0]), bytes(row[1]))

    def put_manifest(
        self,
        repo: str,
        digest: Digest,
        media_type: str,
        data: bytes,
        blobs: Sequence[tuple[Digest, int]],
    ) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO manifests (repo, digest, media_type, data)"
                " VALUES (?, ?, ?, ?)",
                (repo, str(digest), media_type, data),
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO refs (repo, digest, size) VALUES (?, ?, ?)",
                [(repo, str(blob), size) for blob, size in blobs],
            )

    def referenced_size(self, repo: str, digest: Digest) -> int | None:
        """The size a cached manifest of ``repo`` gives ``digest`` (None: none references it)."""
        with self._lock:
            row = self._db.execute(
                "SELECT size FROM refs WHERE repo = ? AND digest = ?", (repo, str(digest))
            ).fetchone()
        return None if row is None else int(row[0])

    def drop_manifest(self, repo: str, digest: Digest) -> None:
        with self._lock:
            self._db.execute(
                "DELETE FROM manifests WHERE repo = ? AND digest = ?", (repo, str(digest))
            )
            self._db.execute("DELETE FROM tags WHERE repo = ? AND digest = ?", (repo, str(digest)))

    # --- tags ------------------------------------------------------------------------------

    def tag(self, repo: str, tag: Tag) -> tuple[Digest, float] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT digest, fetched FROM tags WHERE repo = ? AND tag = ?", (repo, tag.name)
            ).fetchone()
        return None if row is None else (Digest.parse(str(row[0])), float(row[1]))

    def put_tag(self, repo: str, tag: Tag, digest: Digest, fetched: float) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO tags (repo, tag, digest, fetched) VALUES (?, ?, ?, ?)",
                (repo, tag.name, str(digest), fetched),
            )

    def drop_tag(self, repo: str, tag: Tag) -> None:
        with self._lock:
            self._db.execute("DELETE FROM tags WHERE repo = ? AND tag = ?", (repo, tag.name))

    # --- listings: tags, catalog, referrers ------------------------------------------------

    def listing(self, kind: str, repo: str, key: str) -> tuple[str, float] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT data, fetched FROM listings WHERE kind = ? AND repo = ? AND key = ?",
                (kind, repo, key),
            ).fetchone()
        return None if row is None else (str(row[0]), float(row[1]))

    def put_listing(self, kind: str, repo: str, key: str, data: str, fetched: float) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO listings (kind, repo, key, data, fetched)"
                " VALUES (?, ?, ?, ?, ?)",
                (kind, repo, key, data, fetched),
            )

    def drop_listing(self, kind: str, repo: str, key: str) -> None:
        with self._lock:
            self._db.execute(
                "DELETE FROM listings WHERE kind = ? AND repo = ? AND key = ?", (kind, repo, key)
            )

    def drop_changed_listings(self, repo: str) -> None:
        """Every listing a write to ``repo`` may change: its tags and referrers, the catalog."""
        with self._lock:
            self._db.execute("DELETE FROM listings WHERE repo = ? OR kind = 'catalog'", (repo,))

    # --- blobs -----------------------------------------------------------------------------

    def blob(self, repo: str, digest: Digest) -> int | None:
        with self._lock:
            row = self._db.execute(
                "SELECT size FROM blobs WHERE repo = ? AND digest = ?", (repo, str(digest))
            ).fetchone()
        return None if row is None else int(row[0])

    def link_blob(self, repo: str, digest: Digest, size: int) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO blobs (repo, digest, size) VALUES (?, ?, ?)",
                (repo, str(digest), size),
            )

    def unlink_blob(self, repo: str, digest: Digest) -> None:
        with self._lock:
            self._db.execute("DELETE FROM blobs WHERE repo = ? AND digest = ?", (repo, str(digest)))

    def drop_blob(self, repo: str, digest: Digest) -> None:
        """The blob was deleted from ``repo``: neither its link nor a cached manifest's
        reference may vouch for it there any more."""
        with self._lock:
            for table in ("blobs", "refs"):
                self._db.execute(
                    f"DELETE FROM {table} WHERE repo = ? AND digest = ?", (repo, str(digest))
                )

    # --- blob files, for eviction -------------------------------------------------------------

    def file_stored(self, digest: Digest, size: int, now: float) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO files (digest, size, used) VALUES (?, ?, ?)",
                (str(digest), size, now),
            )

    def file_used(self, digest: Digest, now: float) -> None:
        with self._lock:
            self._db.execute("UPDATE files SET used = ? WHERE digest = ?", (now, str(digest)))

    def evictable(self, limit: int) -> list[Digest]:
        """The least recently used blob files whose removal brings the total to ``limit``."""
        with self._lock:
            total = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM files").fetchone()[0]
            if total <= limit:
                return []
            chosen: list[Digest] = []
            for digest, size in self._db.execute("SELECT digest, size FROM files ORDER BY used"):
                chosen.append(Digest.parse(str(digest)))
                total -= int(size)
                if total <= limit:
                    break
        return chosen

    def forget_file(self, digest: Digest) -> None:
        """The file is gone: no repository has the blob cached any more."""
        with self._lock:
            self._db.execute("DELETE FROM files WHERE digest = ?", (str(digest),))
            self._db.execute("DELETE FROM blobs WHERE digest = ?", (str(digest),))
