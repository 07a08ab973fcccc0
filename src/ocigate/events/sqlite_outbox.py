"""The outbox in a SQLite database: its tables, the writes a SQLite store's transaction makes
for staged events, and :class:`SqliteOutbox` for the delivery workers and the CLI.

Tables, in the embedded store's ``meta.db`` (or ``events.db`` beside any other store):

- ``outbox(seq, id, repo, type, artifact_type, event, created)``: every event, ``seq`` in
  commit order; ``event`` is the whole CloudEvent JSON.
- ``outbox_cursors(endpoint, seq)``: how far each webhook's fan-out has read the outbox.
- ``deliveries(endpoint, seq, repo, state, attempts, next_at, lease_owner, lease_until,
  last_error, updated)``: one row per event and webhook its filters accept; ``state`` is
  ``pending``, ``delivered`` or ``dead``.

A SQLite metadata store calls :func:`create_tables` on its database, ``staging.resolve_staged``
as each write transaction begins and :func:`write_staged` just before it commits.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .outbox import Accepts, Claim, Event, Outbox, Row, failure
from .staging import take_staged

# How the database's owner runs a write transaction (BEGIN IMMEDIATE ... COMMIT on a connection).
Transaction = Callable[[sqlite3.Connection], contextlib.AbstractContextManager[sqlite3.Connection]]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE, repo TEXT NOT NULL, type TEXT NOT NULL, artifact_type TEXT,
    event TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS outbox_cursors (endpoint TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries (
    endpoint TEXT NOT NULL, seq INTEGER NOT NULL, repo TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL, lease_owner TEXT, lease_until REAL, last_error TEXT,
    updated REAL NOT NULL,
    PRIMARY KEY (endpoint, seq));
CREATE INDEX IF NOT EXISTS deliveries_lane ON deliveries (endpoint, repo, state, seq);
CREATE INDEX IF NOT EXISTS deliveries_state ON deliveries (state, next_at);
"""


def create_tables(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)


def write_staged(conn: sqlite3.Connection, changed: bool) -> None:
    """Inside a store's write transaction, just before COMMIT: insert the events staged for
    the change when the transaction changed something."""
    events = take_staged(changed)
    if events:
        insert(conn, events)


def insert(conn: sqlite3.Connection, events: Sequence[Event]) -> None:
    now = time.time()
    conn.executemany(
        "INSERT INTO outbox (id, repo, type, artifact_type, event, created)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [(e.id, e.repo, e.type, e.artifact_type, e.json, now) for e in events],
    )


class SqliteOutbox(Outbox):
    """:class:`Outbox` on one connection to a SQLite database, used under a lock; the
    database's owner opens the connection and says how it runs a write transaction."""

    def __init__(self, conn: sqlite3.Connection, transaction: Transaction) -> None:
        self._transaction = transaction
        self._conn = conn
        self._lock = threading.Lock()
        self._conn.execute("PRAGMA journal_mode = WAL")
        with self._writing() as conn:
            create_tables(conn)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._transaction(self._conn) as conn:
            yield conn

    def append(self, events: Sequence[Event]) -> None:
        with self._writing() as conn:
            insert(conn, events)

    def fan_out(self, endpoint: str, accepts: Accepts, limit: int = 1000) -> int:
        with self._writing() as conn:
            row = conn.execute(
                "SELECT seq FROM outbox_cursors WHERE endpoint = ?", (endpoint,)
            ).fetchone()
            cursor = int(row[0]) if row else 0
            rows = conn.execute(
                "SELECT seq, repo, type, artifact_type FROM outbox WHERE seq > ?"
                " ORDER BY seq LIMIT ?",
                (cursor, limit),
            ).fetchall()
            if not rows:
                return 0
            now = time.time()
            conn.executemany(
                "INSERT OR IGNORE INTO deliveries (endpoint, seq, repo, next_at, updated)"
                " VALUES (?, ?, ?, ?, ?)",
                [(endpoint, r[0], r[1], now, now) for r in rows if accepts(r[1], r[2], r[3])],
            )
            conn.execute(
                "INSERT INTO outbox_cursors (endpoint, seq) VALUES (?, ?)"
                " ON CONFLICT (endpoint) DO UPDATE SET seq = excluded.seq",
                (endpoint, rows[-1][0]),
            )
            return len(rows)

    def claim(self, owner: str, lease: float, limit: int, endpoints: Sequence[str]) -> list[Claim]:
        if not endpoints:
            return []
        now = time.time()
        marks = ", ".join("?" * len(endpoints))
        with self._writing() as conn:
            rows = conn.execute(
                "SELECT d.endpoint, d.seq, d.attempts, o.event FROM deliveries d"
                " JOIN outbox o ON o.seq = d.seq"
                f" WHERE d.endpoint IN ({marks}) AND d.state = 'pending' AND d.next_at <= ?"
                " AND (d.lease_until IS NULL OR d.lease_until < ?)"
                " AND NOT EXISTS (SELECT 1 FROM deliveries e WHERE e.endpoint = d.endpoint"
                "   AND e.repo = d.repo AND e.state = 'pending' AND e.seq < d.seq)"
                " ORDER BY d.seq LIMIT ?",
                (*endpoints, now, now, limit),
            ).fetchall()
            conn.executemany(
                "UPDATE deliveries SET lease_owner = ?, lease_until = ?"
                " WHERE endpoint = ? AND seq = ?",
                [(owner, now + lease, r[0], r[1]) for r in rows],
            )
        return [Claim(r[0], int(r[1]), int(r[2]), r[3]) for r in rows]

    def delivered(self, claim: Claim, owner: str) -> None:
        with self._writing() as conn:
            conn.execute(
                "UPDATE deliveries SET state = 'delivered', attempts = attempts + 1,"
                " lease_owner = NULL, lease_until = NULL, last_error = NULL, updated = ?"
                " WHERE endpoint = ? AND seq = ? AND lease_owner = ?",
                (time.time(), claim.endpoint, claim.seq, owner),
            )

    def failed(self, claim: Claim, owner: str, error: str, retry_in: float | None) -> None:
        now = time.time()
        with self._writing() as conn:
            conn.execute(
                "UPDATE deliveries SET state = ?, attempts = attempts + 1, next_at = ?,"
                " lease_owner = NULL, lease_until = NULL, last_error = ?, updated = ?"
                " WHERE endpoint = ? AND seq = ? AND lease_owner = ?",
                failure(claim, owner, error, retry_in, now),
            )

    def prune(self, older_than: float, endpoints: Sequence[str]) -> int:
        cutoff = time.time() - older_than
        marks = ", ".join("?" * len(endpoints))
        with self._writing() as conn:
            conn.execute(
                "DELETE FROM deliveries WHERE state = 'delivered' AND updated < ?", (cutoff,)
            )
            row = conn.execute(
                f"SELECT count(*), min(seq) FROM outbox_cursors WHERE endpoint IN ({marks})",
                tuple(endpoints),
            ).fetchone()
            if int(row[0]) < len(endpoints):
                return 0  # an endpoint has not even started reading
            return conn.execute(
                "DELETE FROM outbox WHERE created < ? AND seq <= ?"
                " AND seq NOT IN (SELECT seq FROM deliveries)",
                (cutoff, int(row[1])),
            ).rowcount

    def replay(self, ids: Sequence[str]) -> int:
        now = time.time()
        with self._writing() as conn:
            count = 0
            for ident in ids:
                count += conn.execute(
                    "UPDATE deliveries SET state = 'pending', attempts = 0, next_at = ?,"
                    " lease_owner = NULL, lease_until = NULL, updated = ?"
                    " WHERE seq IN (SELECT seq FROM outbox WHERE id = ? OR CAST(seq AS TEXT) = ?)",
                    (now, now, ident, ident),
                ).rowcount
            return count

    def status(self) -> dict[str, Any]:
        with self._lock:
            total = self._conn.execute("SELECT count(*), max(seq) FROM outbox").fetchone()
            rows = self._conn.execute(
                "SELECT endpoint, state, count(*) FROM deliveries GROUP BY endpoint, state"
            ).fetchall()
            cursors = dict(self._conn.execute("SELECT endpoint, seq FROM outbox_cursors"))
        endpoints: dict[str, dict[str, int]] = {}
        for endpoint, state, count in rows:
            endpoints.setdefault(endpoint, {})[state] = int(count)
        for endpoint, seq in cursors.items():
            endpoints.setdefault(endpoint, {})["behind"] = int(total[1] or 0) - int(seq)
        return {"events": int(total[0]), "last_seq": int(total[1] or 0), "endpoints": endpoints}

    def rows(self, dead_only: bool = False, limit: int = 100) -> list[Row]:
        sql = (
            "SELECT o.seq, o.id, o.repo, o.type, d.endpoint, d.state, coalesce(d.attempts, 0),"
            " d.last_error FROM outbox o LEFT JOIN deliveries d ON d.seq = o.seq"
        )
        if dead_only:
            sql += " WHERE d.state = 'dead'"
        sql += " ORDER BY o.seq DESC LIMIT ?"
        with self._lock:
            found = self._conn.execute(sql, (limit,)).fetchall()
        return [Row(*r) for r in reversed(found)]

    def event(self, seq: int) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT event FROM outbox WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else str(row[0])
