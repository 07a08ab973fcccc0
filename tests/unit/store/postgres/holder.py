"""A replica's process holding something, for the tests of what a dead or stalled replica
leaves behind: ``python holder.py URL UPLOAD LEASE hold|save|lock-tag``: ``hold`` holds the
ledger's upload until killed, ``save`` waits for it, saves offset 99 and exits; ``lock-tag``
locks the row of tag ``r:latest`` in an open transaction until killed. Prints ``held`` once
it holds what it holds."""

from __future__ import annotations

import asyncio
import sys

from ocigate.store.postgres.database import Database
from ocigate.store.postgres.ledger import PostgresLedger


async def main(url: str, upload: str, lease: float, mode: str) -> None:
    db = await Database.connect(url, pool_size=2, connect_timeout=0.5, command_timeout=0.5)
    if mode == "lock-tag":
        async with db.transaction() as conn:
            await conn.execute("SELECT 1 FROM tags WHERE repo = 'r' AND tag = 'latest' FOR UPDATE")
            print("held", flush=True)
            await asyncio.sleep(600)  # the test stops this process here
    ledger = PostgresLedger(db, lease=lease)
    async with ledger.hold_upload(upload) as record:
        assert record is not None
        print("held", flush=True)
        if mode == "hold":
            await asyncio.sleep(600)
        record.offset = 99
        await ledger.save_upload(record)
    await db.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]))
