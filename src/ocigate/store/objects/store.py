"""``ObjectsStore``: the registry logic over an S3 bucket (blob bytes) and PostgreSQL
(everything else), shared by any number of replicas, each with any number of workers.

Nothing about the registry's state lives in a replica: uploads, the blob index, manifests, tags,
the event outbox and the GC lock are all in the database, bytes in the bucket, so a load
balancer may send each request anywhere. Built without I/O (the settings are turned into an
app before any event loop runs); :meth:`open` connects to the database, and migrates its schema
when configured to, at each worker's start-up.
"""

from __future__ import annotations

import dataclasses
import time

from ...objects_config import DatabaseConfig, S3Config
from ...oci.errors import Unavailable
from ..core import gc
from ..core.gc import GcReport
from ..core.registry import RegistryOverPorts
from ..core.retention_run import Retention
from ..postgres.database import Database, DatabaseUnavailable
from ..postgres.ledger import PostgresLedger
from ..postgres.metadata import PostgresMetadata
from ..postgres.migrate import migrate, pending
from .blobstore import ObjectBlobStore
from .bucket import Bucket, BucketConfig
from .relay import SegmentReader

PROBE_KEY = "ready-probe"  # never written: reading it proves the bucket answers


# The keys of `s3:` that the bucket takes under the same name (all but `retries`).
_BUCKET_KEYS = frozenset(f.name for f in dataclasses.fields(BucketConfig)) & set(
    S3Config.model_fields
)


def bucket_config(s3: S3Config) -> BucketConfig:
    """The bucket's settings as the blob store takes them."""
    same = {name: getattr(s3, name) for name in _BUCKET_KEYS}
    return BucketConfig(**same, max_retries=s3.retries)


def database(config: DatabaseConfig) -> Database:
    """The (not yet opened) database of ``config``."""
    return Database(
        config.url,
        pool_size=config.pool_size,
        connect_timeout=config.connect_timeout,
        command_timeout=config.command_timeout,
    )


class ObjectsStore(RegistryOverPorts):
    blobs: ObjectBlobStore
    meta: PostgresMetadata

    def __init__(
        self,
        s3: S3Config,
        db: DatabaseConfig,
        *,
        sparse_index: bool = False,
        auto_mount: bool = False,
        upload_expiry: int = 86400,
        gc_grace: float = gc.DEFAULT_GRACE,
    ) -> None:
        self.database = database(db)
        self.migrate_at_start = db.migrate
        bucket = Bucket(bucket_config(s3))
        # Spliced reads need a plain socket: on TLS endpoints obstore reads as well.
        plain = (s3.endpoint or "").startswith("http://")
        blobs = ObjectBlobStore(
            bucket,
            PostgresLedger(self.database),
            part_size=s3.part_size,
            redirect=s3.redirect,
            redirect_expiry=s3.redirect_expiry,
            reader=SegmentReader(bucket, s3.redirect_expiry) if plain else None,
        )
        super().__init__(
            blobs,
            PostgresMetadata(self.database),
            sparse_index=sparse_index,
            auto_mount=auto_mount,
            upload_expiry=upload_expiry,
            gc_grace=gc_grace,
        )

    async def open(self) -> None:
        """Connect to the database; create or upgrade its schema when so configured (under
        its lock: replicas starting together migrate once)."""
        await self.database.open()
        if self.migrate_at_start:
            await migrate(self.database)
            return
        behind = await pending(self.database)
        if behind:
            raise DatabaseUnavailable(
                {"database": self.database.where, "pending": behind},
                f"the database {self.database.where} lacks {len(behind)} schema migration(s)"
                " (database.migrate is false): run `ocigate db migrate`",
            )

    async def collect_garbage_if_due(
        self, interval: float, retention: Retention | None = None
    ) -> GcReport | None:
        """A scheduled collection (with ``retention`` first), one per ``interval`` across
        every replica: None when another replica ran one within it or is deciding now. The
        schedule's row is claimed (its time moved on) before collecting, so a collection that
        fails waits for the next interval rather than being retried by every replica at once."""
        async with self.database.transaction() as conn:
            last = await conn.fetchval(
                "SELECT last_run FROM gc_schedule WHERE id = 1 FOR UPDATE SKIP LOCKED"
            )
            now = time.time()
            if last is None or now - last < interval * 0.9:
                return None
            await conn.execute("UPDATE gc_schedule SET last_run = $1 WHERE id = 1", now)
        return await self.collect_garbage(retention=retention)

    # Readiness probes: None when the part answers, else what is wrong.

    async def database_problem(self) -> str | None:
        try:
            await self.database.fetch("SELECT 1")
        except Unavailable as error:
            return error.message
        return None

    async def bucket_problem(self) -> str | None:
        try:
            await self.blobs.bucket.get_range(PROBE_KEY, 0, 1)
        except Unavailable as error:
            return error.message
        return None
