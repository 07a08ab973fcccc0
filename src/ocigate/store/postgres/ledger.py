"""``PostgresLedger``: the object store's ledger (``store.objects.ledger.ObjectLedger``) in
PostgreSQL, shared by every replica.

Holding an upload is a lease in its row (``holder``, ``lease_until``, on the database's clock so
replicas' clocks need not agree), taken by one conditional UPDATE and renewed in the background
while held, never a connection pinned for the length of a PATCH: a holder that died loses the
upload after ``lease`` seconds. Waiters retry with exponential backoff. A save by a holder
whose lease was taken over (it stalled past the lease) is refused, so it cannot overwrite the
new holder's state. A commit racing another replica's on one digest is decided by the
database (``INSERT … ON CONFLICT``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence

import asyncpg

from ...oci.digest import Digest
from ...oci.errors import Unavailable
from ..objects.ledger import BlobObject, Segment, UploadRecord
from .database import UNREACHABLE, Database

log = logging.getLogger("ocigate.store.postgres")

_NOW = "extract(epoch FROM clock_timestamp())"
_UPLOAD = 'id, repo, "offset", segments, hash_state, updated'
_PAGE = 1000  # blobs per query while listing


class UploadLeaseLost(Unavailable):
    """A holder saved an upload whose lease another request had taken over."""


def _segments(text: str) -> list[Segment]:
    return [Segment(key, int(size)) for key, size in json.loads(text)]


def _json(segments: Sequence[Segment]) -> str:
    return json.dumps([[s.key, s.size] for s in segments])


def _record(row: asyncpg.Record) -> UploadRecord:
    return UploadRecord(
        row[0], row[1], int(row[2]), _segments(row[3]), bytes(row[4]), float(row[5])
    )


def _blob(row: asyncpg.Record) -> BlobObject:
    return BlobObject(Digest.parse(row[0]), int(row[1]), tuple(_segments(row[2])), float(row[3]))


class PostgresLedger:
    """Over a :class:`Database` whose schema is migrated (``migrate.migrate``)."""

    def __init__(self, db: Database, *, lease: float = 30.0, hold_wait: float = 600.0) -> None:
        """``lease``: seconds a dead holder keeps an upload; ``hold_wait``: the longest a
        request waits for another to finish with an upload."""
        self.db = db
        self.lease = lease
        self.hold_wait = hold_wait
        self._held: dict[str, str] = {}  # upload id -> holder token, for this instance

    async def create_upload(self, record: UploadRecord) -> None:
        record.updated = time.time()
        await self.db.execute(
            f"INSERT INTO object_uploads ({_UPLOAD}) VALUES ($1, $2, $3, $4, $5, $6)",
            record.id,
            record.repo,
            record.offset,
            _json(record.segments),
            record.hash_state,
            record.updated,
        )

    async def find_upload(self, upload_id: str) -> UploadRecord | None:
        row = await self.db.fetchrow(
            f"SELECT {_UPLOAD} FROM object_uploads WHERE id = $1", upload_id
        )
        return None if row is None else _record(row)

    @contextlib.asynccontextmanager
    async def hold_upload(self, upload_id: str) -> AsyncIterator[UploadRecord | None]:
        token = uuid.uuid4().hex
        record = await self._take(upload_id, token)
        if record is None:
            yield None
            return
        self._held[upload_id] = token
        renewer = asyncio.create_task(self._renew(upload_id, token))
        try:
            yield record
        finally:
            renewer.cancel()
            self._held.pop(upload_id, None)
            with contextlib.suppress(*UNREACHABLE, Unavailable):  # else the lease runs out
                await self.db.execute(
                    "UPDATE object_uploads SET holder = NULL, lease_until = NULL"
                    " WHERE id = $1 AND holder = $2",
                    upload_id,
                    token,
                )

    async def _take(self, upload_id: str, token: str) -> UploadRecord | None:
        """Lease the upload to ``token``, waiting with backoff while another holds it."""
        deadline = time.monotonic() + self.hold_wait
        pause = 0.005
        while True:
            async with self.db.connection() as conn:
                row = await conn.fetchrow(
                    f"UPDATE object_uploads SET holder = $2, lease_until = {_NOW} + $3"
                    f" WHERE id = $1 AND (holder IS NULL OR lease_until < {_NOW})"
                    f" RETURNING {_UPLOAD}",
                    upload_id,
                    token,
                    self.lease,
                )
                if row is not None:
                    return _record(row)
                if not await conn.fetchval("SELECT 1 FROM object_uploads WHERE id = $1", upload_id):
                    return None  # no such upload, or it ended while we waited
            if time.monotonic() + pause > deadline:
                raise Unavailable(
                    {"upload": upload_id},
                    f"upload {upload_id} is still held by another request"
                    f" after {self.hold_wait:g} s",
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.5)

    async def _renew(self, upload_id: str, token: str) -> None:
        """Extend the lease every third of its length while held."""
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await self.db.execute(
                    f"UPDATE object_uploads SET lease_until = {_NOW} + $3"
                    " WHERE id = $1 AND holder = $2",
                    upload_id,
                    token,
                    self.lease,
                )
            except Exception as exc:  # retried at the next third; the save checks the lease
                log.warning("renewing the lease of upload %s failed: %s", upload_id, exc)

    async def save_upload(self, record: UploadRecord) -> None:
        token = self._held.get(record.id)
        updated = time.time()
        status = await self.db.execute(
            'UPDATE object_uploads SET "offset" = $2, segments = $3, hash_state = $4,'
            " updated = $5 WHERE id = $1 AND ($6::text IS NULL OR holder = $6)",
            record.id,
            record.offset,
            _json(record.segments),
            record.hash_state,
            updated,
            token,
        )
        if status.endswith(" 0"):
            raise UploadLeaseLost(
                {"upload": record.id}, f"upload {record.id} was taken over by another request"
            )
        record.updated = updated

    async def end_upload(self, upload_id: str) -> None:
        await self.db.execute("DELETE FROM object_uploads WHERE id = $1", upload_id)

    async def idle_uploads(self, before: float) -> list[UploadRecord]:
        rows = await self.db.fetch(
            f"SELECT {_UPLOAD} FROM object_uploads WHERE updated < $1"
            f" AND (holder IS NULL OR lease_until < {_NOW}) ORDER BY updated",
            before,
        )
        return [_record(row) for row in rows]

    async def blob(self, digest: Digest) -> BlobObject | None:
        row = await self.db.fetchrow(
            "SELECT digest, size, segments, modified FROM object_blobs WHERE digest = $1",
            str(digest),
        )
        return None if row is None else _blob(row)

    async def add_blob(self, blob: BlobObject) -> bool:
        # xmax is 0 on a row this statement inserted, not on one it updated.
        inserted = await self.db.fetchrow(
            "INSERT INTO object_blobs (digest, size, segments, modified) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (digest) DO UPDATE SET modified = excluded.modified"
            " RETURNING xmax = 0",
            str(blob.digest),
            blob.size,
            _json(blob.segments),
            blob.modified,
        )
        assert inserted is not None
        return bool(inserted[0])

    async def blobs(self) -> AsyncIterator[BlobObject]:
        # Keyset pages, so no connection is held while the caller works on each blob.
        last = ""
        while True:
            rows = await self.db.fetch(
                "SELECT digest, size, segments, modified FROM object_blobs WHERE digest > $1"
                " ORDER BY digest LIMIT $2",
                last,
                _PAGE,
            )
            for row in rows:
                yield _blob(row)
            if len(rows) < _PAGE:
                return
            last = rows[-1][0]

    async def remove_blobs(self, digests: Sequence[Digest]) -> list[BlobObject]:
        rows = await self.db.fetch(
            "DELETE FROM object_blobs WHERE digest = ANY($1::text[])"
            " RETURNING digest, size, segments, modified",
            [str(d) for d in digests],
        )
        return [_blob(row) for row in rows]
