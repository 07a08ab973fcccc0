"""A replica's process holding one upload of the ledger, for the lease tests:
``python holder.py URL UPLOAD LEASE hold|save``: ``hold`` holds it until killed, ``save``
waits for it, saves offset 99 and exits. Prints ``held`` once it holds the upload."""

from __future__ import annotations

import asyncio
import sys

from ocigate.store.postgres.database import Database
from ocigate.store.postgres.ledger import PostgresLedger


async def main(url: str, upload: str, lease: float, mode: str) -> None:
    db = await Database.connect(url, pool_size=2)
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
