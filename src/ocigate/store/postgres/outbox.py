"""The event outbox (``events.outbox.Outbox``) in PostgreSQL, beside the metadata whose
transactions write it (``metadata``), with the SQLite outbox's tables and semantics.

Commit order: fan-out reads events after a cursor, so an event must never become visible
after one with a higher ``seq``. A sequence alone does not give that across concurrent
transactions; every insert first takes a transaction-level advisory lock, held until commit,
so ``seq`` order is commit order (only the last moments of event-writing transactions
serialize on it).

Leases: a claim selects its deliveries ``FOR UPDATE SKIP LOCKED`` and leases them in the same
transaction, so two replicas never claim one delivery at once; a fan-out locks its endpoint's
cursor row, so two replicas never fan out one endpoint at once.

The ``Outbox`` protocol is synchronous (its callers run it in worker threads): each method runs
its bounded coroutine on the database's event loop and waits for it (``Database.blocking``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ...events.outbox import Accepts, Claim, Event, Outbox, Row, failure
from . import locks
from .database import Database, row_count

if TYPE_CHECKING:
    from .database import Connection


async def insert_events(conn: Connection, events: Sequence[Event]) -> None:
    """Inside a transaction: record ``events``, in commit order (see the module docstring)."""
    await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", locks.NAMESPACE, locks.OUTBOX_ORDER)
    now = time.time()
    await conn.executemany(
        "INSERT INTO outbox (id, repo, type, artifact_type, event, created)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        [(e.id, e.repo, e.type, e.artifact_type, e.json, now) for e in events],
    )


_CLAIM = """
SELECT d.endpoint, d.seq, d.attempts, o.event FROM deliveries d JOIN outbox o ON o.seq = d.seq
WHERE d.endpoint = ANY($1::text[]) AND d.state = 'pending' AND d.next_at <= $2
  AND (d.lease_until IS NULL OR d.lease_until < $2)
  AND NOT EXISTS (SELECT 1 FROM deliveries e WHERE e.endpoint = d.endpoint
                  AND e.repo = d.repo AND e.state = 'pending' AND e.seq < d.seq)
ORDER BY d.seq LIMIT $3
FOR UPDATE OF d SKIP LOCKED
"""


class PostgresOutbox(Outbox):
    """:class:`Outbox` over a :class:`Database` (closed by its owner, not here)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def close(self) -> None:
        pass  # the database belongs to the metadata store that made this outbox

    def append(self, events: Sequence[Event]) -> None:
        self._db.blocking(self._append(events))

    async def _append(self, events: Sequence[Event]) -> None:
        async with self._db.transaction() as conn:
            await insert_events(conn, events)

    def fan_out(self, endpoint: str, accepts: Accepts, limit: int = 1000) -> int:
        return self._db.blocking(self._fan_out(endpoint, accepts, limit))

    async def _fan_out(self, endpoint: str, accepts: Accepts, limit: int) -> int:
        async with self._db.transaction() as conn:
            await conn.execute(
                "INSERT INTO outbox_cursors (endpoint, seq) VALUES ($1, 0) ON CONFLICT DO NOTHING",
                endpoint,
            )
            cursor = await conn.fetchval(
                "SELECT seq FROM outbox_cursors WHERE endpoint = $1 FOR UPDATE", endpoint
            )
            rows = await conn.fetch(
                "SELECT seq, repo, type, artifact_type FROM outbox WHERE seq > $1"
                " ORDER BY seq LIMIT $2",
                cursor,
                limit,
            )
            if not rows:
                return 0
            now = time.time()
            await conn.executemany(
                "INSERT INTO deliveries (endpoint, seq, repo, next_at, updated)"
                " VALUES ($1, $2, $3, $4, $4) ON CONFLICT DO NOTHING",
                [(endpoint, r[0], r[1], now) for r in rows if accepts(r[1], r[2], r[3])],
            )
            await conn.execute(
                "UPDATE outbox_cursors SET seq = $2 WHERE endpoint = $1", endpoint, rows[-1][0]
            )
            return len(rows)

    def claim(self, owner: str, lease: float, limit: int, endpoints: Sequence[str]) -> list[Claim]:
        if not endpoints:
            return []
        return self._db.blocking(self._claim(owner, lease, limit, endpoints))

    async def _claim(
        self, owner: str, lease: float, limit: int, endpoints: Sequence[str]
    ) -> list[Claim]:
        now = time.time()
        async with self._db.transaction() as conn:
            rows = await conn.fetch(_CLAIM, list(endpoints), now, limit)
            await conn.executemany(
                "UPDATE deliveries SET lease_owner = $1, lease_until = $2"
                " WHERE endpoint = $3 AND seq = $4",
                [(owner, now + lease, r[0], r[1]) for r in rows],
            )
        return [Claim(r[0], int(r[1]), int(r[2]), r[3]) for r in rows]

    def delivered(self, claim: Claim, owner: str) -> None:
        self._db.blocking(
            self._db.execute(
                "UPDATE deliveries SET state = 'delivered', attempts = attempts + 1,"
                " lease_owner = NULL, lease_until = NULL, last_error = NULL, updated = $1"
                " WHERE endpoint = $2 AND seq = $3 AND lease_owner = $4",
                time.time(),
                claim.endpoint,
                claim.seq,
                owner,
            )
        )

    def failed(self, claim: Claim, owner: str, error: str, retry_in: float | None) -> None:
        self._db.blocking(
            self._db.execute(
                "UPDATE deliveries SET state = $1, attempts = attempts + 1, next_at = $2,"
                " lease_owner = NULL, lease_until = NULL, last_error = $3, updated = $4"
                " WHERE endpoint = $5 AND seq = $6 AND lease_owner = $7",
                *failure(claim, owner, error, retry_in, time.time()),
            )
        )

    def prune(self, older_than: float, endpoints: Sequence[str]) -> int:
        return self._db.blocking(self._prune(time.time() - older_than, endpoints))

    async def _prune(self, cutoff: float, endpoints: Sequence[str]) -> int:
        async with self._db.transaction() as conn:
            await conn.execute(
                "DELETE FROM deliveries WHERE state = 'delivered' AND updated < $1", cutoff
            )
            row = await conn.fetchrow(
                "SELECT count(*), min(seq) FROM outbox_cursors WHERE endpoint = ANY($1::text[])",
                list(endpoints),
            )
            assert row is not None
            if int(row[0]) < len(endpoints):
                return 0  # an endpoint has not even started reading
            status = await conn.execute(
                "DELETE FROM outbox o WHERE created < $1 AND seq <= $2"
                " AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.seq = o.seq)",
                cutoff,
                int(row[1]),
            )
            return row_count(status)

    def replay(self, ids: Sequence[str]) -> int:
        now = time.time()
        status = self._db.blocking(
            self._db.execute(
                "UPDATE deliveries SET state = 'pending', attempts = 0, next_at = $1,"
                " lease_owner = NULL, lease_until = NULL, updated = $1 WHERE seq IN"
                " (SELECT seq FROM outbox WHERE id = ANY($2::text[]) OR seq::text = ANY($2))",
                now,
                list(ids),
            )
        )
        return row_count(status)

    def status(self) -> dict[str, Any]:
        return self._db.blocking(self._status())

    async def _status(self) -> dict[str, Any]:
        async with self._db.connection() as conn:
            total = await conn.fetchrow("SELECT count(*), max(seq) FROM outbox")
            rows = await conn.fetch(
                "SELECT endpoint, state, count(*) FROM deliveries GROUP BY endpoint, state"
            )
            cursors = await conn.fetch("SELECT endpoint, seq FROM outbox_cursors")
        assert total is not None
        last = int(total[1] or 0)
        endpoints: dict[str, dict[str, int]] = {}
        for endpoint, state, count in rows:
            endpoints.setdefault(endpoint, {})[state] = int(count)
        for endpoint, seq in cursors:
            endpoints.setdefault(endpoint, {})["behind"] = last - int(seq)
        return {"events": int(total[0]), "last_seq": last, "endpoints": endpoints}

    def rows(self, dead_only: bool = False, limit: int = 100) -> list[Row]:
        found = self._db.blocking(
            self._db.fetch(
                "SELECT o.seq, o.id, o.repo, o.type, d.endpoint, d.state,"
                " coalesce(d.attempts, 0), d.last_error"
                " FROM outbox o LEFT JOIN deliveries d ON d.seq = o.seq"
                " WHERE NOT $1 OR d.state = 'dead' ORDER BY o.seq DESC LIMIT $2",
                dead_only,
                limit,
            )
        )
        return [Row(*r) for r in reversed(found)]

    def event(self, seq: int) -> str | None:
        row = self._db.blocking(self._db.fetchrow("SELECT event FROM outbox WHERE seq = $1", seq))
        return None if row is None else str(row[0])
