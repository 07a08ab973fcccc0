"""Schema migrations: an ordered list of named SQL scripts, applied once each and recorded in
``schema_migrations``, under an advisory lock so that replicas starting at once migrate once.

Each migration runs in one transaction with its record, so a crash leaves it applied whole or
not at all. Names sort in application order; a name once released is never changed (add a new
migration instead).
"""

from __future__ import annotations

import time
from typing import Final

from . import locks
from .database import Database

_METADATA = """
CREATE TABLE repositories (name text COLLATE "C" PRIMARY KEY);
CREATE TABLE repo_blobs (
    repo text COLLATE "C" NOT NULL, digest text NOT NULL, size bigint NOT NULL,
    linked double precision NOT NULL,
    PRIMARY KEY (repo, digest));
CREATE INDEX repo_blobs_digest ON repo_blobs (digest);
CREATE TABLE manifests (
    id bigserial PRIMARY KEY,
    repo text NOT NULL, digest text NOT NULL, media_type text NOT NULL, data bytea NOT NULL,
    subject text, artifact_type text, annotations text, size bigint NOT NULL,
    UNIQUE (repo, digest));
CREATE INDEX manifests_subject ON manifests (repo, subject) WHERE subject IS NOT NULL;
CREATE TABLE tags (
    repo text COLLATE "C" NOT NULL, tag text COLLATE "C" NOT NULL, digest text NOT NULL,
    PRIMARY KEY (repo, tag));
CREATE INDEX tags_digest ON tags (repo, digest);
CREATE TABLE manifest_refs (
    repo text NOT NULL, manifest text NOT NULL, digest text NOT NULL, kind text NOT NULL,
    PRIMARY KEY (repo, manifest, digest));
CREATE INDEX manifest_refs_digest ON manifest_refs (digest);
"""

_OUTBOX = """
CREATE TABLE outbox (
    seq bigserial PRIMARY KEY,
    id text NOT NULL UNIQUE, repo text NOT NULL, type text NOT NULL, artifact_type text,
    event text NOT NULL, created double precision NOT NULL);
CREATE TABLE outbox_cursors (endpoint text PRIMARY KEY, seq bigint NOT NULL);
CREATE TABLE deliveries (
    endpoint text NOT NULL, seq bigint NOT NULL, repo text NOT NULL,
    state text NOT NULL DEFAULT 'pending', attempts integer NOT NULL DEFAULT 0,
    next_at double precision NOT NULL, lease_owner text, lease_until double precision,
    last_error text, updated double precision NOT NULL,
    PRIMARY KEY (endpoint, seq));
CREATE INDEX deliveries_lane ON deliveries (endpoint, repo, state, seq);
CREATE INDEX deliveries_state ON deliveries (state, next_at);
"""

_OBJECT_LEDGER = """
CREATE TABLE object_uploads (
    id text PRIMARY KEY, repo text NOT NULL, "offset" bigint NOT NULL,
    segments jsonb NOT NULL, hash_state bytea NOT NULL, updated double precision NOT NULL,
    holder text, lease_until double precision);
CREATE INDEX object_uploads_updated ON object_uploads (updated);
CREATE TABLE object_blobs (
    digest text COLLATE "C" PRIMARY KEY, size bigint NOT NULL, segments jsonb NOT NULL,
    modified double precision NOT NULL);
"""

_GC_SCHEDULE = """
CREATE TABLE gc_schedule (id integer PRIMARY KEY CHECK (id = 1), last_run double precision);
INSERT INTO gc_schedule VALUES (1, 0);
"""

# When each tag was last pushed and each manifest first stored; rows older than the columns
# get the migration's time (the default is dropped: every write states its time).
_PUSH_TIMES = """
ALTER TABLE tags ADD COLUMN pushed double precision NOT NULL DEFAULT extract(epoch FROM now());
ALTER TABLE tags ALTER COLUMN pushed DROP DEFAULT;
ALTER TABLE manifests ADD COLUMN stored double precision NOT NULL
    DEFAULT extract(epoch FROM now());
ALTER TABLE manifests ALTER COLUMN stored DROP DEFAULT;
"""

MIGRATIONS: Final = (
    ("0001_metadata", _METADATA),
    ("0002_outbox", _OUTBOX),
    ("0003_object_ledger", _OBJECT_LEDGER),
    ("0004_gc_schedule", _GC_SCHEDULE),
    ("0005_push_times", _PUSH_TIMES),
)

_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations"
    " (name text PRIMARY KEY, applied double precision NOT NULL)"
)


async def applied(db: Database) -> list[str]:
    """The migrations applied, in the order they were."""
    async with db.connection() as conn:
        exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
        if not exists:
            return []
        rows = await conn.fetch("SELECT name FROM schema_migrations ORDER BY applied, name")
    return [row[0] for row in rows]


async def pending(db: Database) -> list[str]:
    """The migrations not applied yet, in order."""
    done = set(await applied(db))
    return [name for name, _ in MIGRATIONS if name not in done]


async def migrate(db: Database) -> list[str]:
    """Apply the pending migrations; the names applied (none when another replica did)."""
    applied: list[str] = []
    # A migration may run longer than one statement's bound: the lock and the scripts get the
    # whole unit-of-work bound each, on one connection that holds the lock throughout (of the
    # lock pool, whose release ends any session lock a failure left).
    async with db.bounded(), db.locks.acquire(timeout=db.connect_timeout) as conn:
        await conn.execute("SELECT pg_advisory_lock($1, $2)", locks.NAMESPACE, locks.MIGRATIONS)
        try:
            await conn.execute(_TABLE)
            done = {r[0] for r in await conn.fetch("SELECT name FROM schema_migrations")}
            for name, script in MIGRATIONS:
                if name in done:
                    continue
                async with conn.transaction():
                    await conn.execute(script)
                    await conn.execute(
                        "INSERT INTO schema_migrations (name, applied) VALUES ($1, $2)",
                        name,
                        time.time(),
                    )
                applied.append(name)
        finally:
            await conn.execute(
                "SELECT pg_advisory_unlock($1, $2)", locks.NAMESPACE, locks.MIGRATIONS
            )
    return applied
