"""What a dead or stalled replica process leaves behind, between real processes: a killed
holder loses its upload after the lease, a live one keeps it by renewing, one that stalled
past its lease cannot overwrite the request that took over, and a transaction frozen with its
row locks is ended by the server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from ocigate.oci.digest import Digest
from ocigate.oci.reference import Tag
from ocigate.store.objects.ledger import UploadRecord
from ocigate.store.postgres.database import Database
from ocigate.store.postgres.ledger import PostgresLedger, UploadLeaseLost
from ocigate.store.postgres.metadata import PostgresMetadata

from ...embedded_helpers import image

pytestmark = pytest.mark.anyio
HOLDER = Path(__file__).with_name("holder.py")


def replica(url: str, upload: str, lease: float, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(HOLDER), url, upload, str(lease), mode],
        stdout=subprocess.PIPE,
        text=True,
    )


def stall_until_exit(process: subprocess.Popen[str]) -> int | None:
    """Wait for ``process`` blocking the caller's event loop (a stalled replica)."""
    deadline = time.monotonic() + 15
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    return process.returncode


async def test_a_killed_holder_loses_the_upload_after_its_lease(
    postgres_url: str, db: Database
) -> None:
    ledger = PostgresLedger(db)
    await ledger.create_upload(UploadRecord("u", "r"))
    process = replica(postgres_url, "u", 1.0, "hold")
    try:
        assert process.stdout is not None
        assert await anyio.to_thread.run_sync(process.stdout.readline) == "held\n"
        await anyio.sleep(1.0)  # renewed meanwhile: still held
        assert await ledger.idle_uploads(time.time() + 1) == []
        process.kill()
        process.wait(timeout=10)
        started = time.monotonic()
        async with ledger.hold_upload("u") as held:
            taken = time.monotonic() - started
            assert held is not None
    finally:
        process.kill()
    print(f"taken over {taken:.2f} s after the holder was killed (lease 1 s)")
    assert taken < 2.0


async def test_a_holder_that_stalled_past_its_lease_cannot_save(
    postgres_url: str, db: Database
) -> None:
    ledger = PostgresLedger(db, lease=0.5)
    await ledger.create_upload(UploadRecord("u", "r"))
    async with ledger.hold_upload("u") as held:
        assert held is not None
        other = replica(postgres_url, "u", 30.0, "save")  # waits for the upload
        try:
            # This process stalls (its event loop blocked: no renewal) past the lease; the
            # other replica takes the upload over, saves and ends its hold.
            assert stall_until_exit(other) == 0
        finally:
            other.kill()
        held.offset = 5
        with pytest.raises(UploadLeaseLost, match="taken over"):
            await ledger.save_upload(held)
    found = await ledger.find_upload("u")
    assert found is not None and found.offset == 99  # the other replica's save stands


async def test_a_replica_stalled_in_a_transaction_is_cut_off_by_the_server(
    postgres_url: str,
    db: Database,  # db: the schema
) -> None:
    """A replica frozen (SIGSTOP) while its transaction holds a tag's row: the server ends
    that session after twice its bound (2 s here), and the push waiting behind it succeeds."""
    patient = await Database.connect(postgres_url, command_timeout=5.0)  # outwaits the 2 s
    meta = PostgresMetadata(patient)
    await meta.link_blob("r", Digest.of(b"{}"), 2)
    manifest, data = image(b"{}")
    await meta.put_manifest("r", manifest, data, [Tag("latest")], [])
    process = replica(postgres_url, "-", 0, "lock-tag")
    try:
        assert process.stdout is not None
        assert await anyio.to_thread.run_sync(process.stdout.readline) == "held\n"
        os.kill(process.pid, signal.SIGSTOP)  # before its own 1 s bound could roll back
        started = time.monotonic()
        other, other_data = image(b"{}", [b"{}"])
        await meta.put_manifest("r", other, other_data, [Tag("latest")], [])
        waited = time.monotonic() - started
    finally:
        process.kill()
        process.wait(timeout=10)
    print(f"a push waited {waited:.2f} s behind a stalled replica's transaction")
    assert 1.5 < waited < 4.0
    found = await meta.manifest_by_tag("r", Tag("latest"))
    assert found is not None and found.digest == other.digest
    await patient.close()
