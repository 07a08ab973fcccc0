"""The database's absence, as the application sees it: one 503 error naming the database
(never its password), within the stated bound, and service back by itself once it returns."""

from __future__ import annotations

import json
import socket
import time
import traceback

import anyio.to_thread
import httpx
import pytest

from ocigate.api.app import App
from ocigate.api.options import ApiOptions
from ocigate.oci.digest import Digest
from ocigate.oci.reference import Tag
from ocigate.store.core.registry import RegistryOverPorts
from ocigate.store.memory.blobstore import MemoryBlobStore
from ocigate.store.postgres.database import Database, DatabaseUnavailable, describe
from ocigate.store.postgres.metadata import PostgresMetadata
from parts.postgres import PostgresServer

pytestmark = pytest.mark.anyio
SECRET = "s3cret-pw"


def every_text(error: BaseException) -> str:
    """Whatever a log or a client could be shown of an error."""
    body = json.dumps(error.body()) if isinstance(error, DatabaseUnavailable) else ""
    return str(error) + repr(error) + body + "".join(traceback.format_exception(error))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again: nothing listens there


async def test_no_server_is_a_503_naming_the_database_not_the_password() -> None:
    port = closed_port()
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable) as caught:
        await Database.connect(
            f"postgresql://ocigate:{SECRET}@127.0.0.1:{port}/registry", connect_timeout=1.0
        )
    assert time.monotonic() - started < 2.0
    error = caught.value
    assert (error.status, error.code) == (503, "UNAVAILABLE")
    assert f"the database 127.0.0.1:{port}/registry is unavailable" in error.message
    assert SECRET not in every_text(error)


async def test_a_database_that_does_not_exist_is_named(postgres_server: PostgresServer) -> None:
    url = postgres_server.url("nope").replace("postgres@", f"postgres:{SECRET}@")
    with pytest.raises(DatabaseUnavailable, match='database "nope" does not exist') as caught:
        await Database.connect(url)
    assert SECRET not in every_text(caught.value)


async def test_stopped_then_restarted_the_same_pool_serves_again(
    postgres_server: PostgresServer, db: Database
) -> None:
    meta = PostgresMetadata(db)
    digest = Digest.of(b"layer")
    await meta.link_blob("r", digest, 5)
    postgres_server.stop()
    try:
        for attempt in (meta.blob_size("r", digest), meta.link_blob("r", digest, 5)):
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailable, match=r"127\.0\.0\.1"):
                await attempt
            elapsed = time.monotonic() - started
            assert elapsed < db.bound, elapsed
            print(f"stopped: unavailable after {elapsed * 1000:.1f} ms")
    finally:
        postgres_server.start()
    assert await meta.blob_size("r", digest) == 5  # no new pool, nothing lost
    await meta.link_blob("r", Digest.of(b"more"), 4)


async def test_a_server_that_stops_answering_fails_within_the_bound(
    postgres_server: PostgresServer, db: Database
) -> None:
    meta = PostgresMetadata(db)
    postgres_server.pause()
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable, match=r"no answer within 3 s"):
            await meta.manifest_by_tag("r", Tag("latest"))
        elapsed = time.monotonic() - started
    finally:
        postgres_server.resume()
    print(f"paused: unavailable after {elapsed:.2f} s (bound {db.bound:g} s)")
    assert db.command_timeout - 0.1 < elapsed < db.bound + 0.5
    assert await meta.manifest_by_tag("r", Tag("latest")) is None  # answers again


async def test_the_api_answers_503_with_an_oci_error_body(
    postgres_server: PostgresServer, db: Database
) -> None:
    app = App(RegistryOverPorts(MemoryBlobStore(), PostgresMetadata(db)), ApiOptions())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://registry") as client:
        assert (await client.get("/v2/r/tags/list")).status_code == 404
        postgres_server.stop()
        try:
            answer = await client.get("/v2/r/manifests/latest")
        finally:
            postgres_server.start()
        assert answer.status_code == 503
        [error] = answer.json()["errors"]
        assert error["code"] == "UNAVAILABLE" and "127.0.0.1" in error["message"]
        assert (await client.get("/v2/r/tags/list")).status_code == 404  # served again


def test_errors_name_the_database_as_the_url_locates_it() -> None:
    assert describe(f"postgresql://u:{SECRET}@db.internal:6432/registry") == (
        "db.internal:6432/registry"
    )
    assert describe("postgresql://u@/registry?host=/run/postgresql&port=5433") == (
        "/run/postgresql:5433/registry"
    )
    assert describe("postgresql:///registry") == "localhost:5432/registry"


async def test_blocking_calls_are_refused_on_the_databases_own_loop(db: Database) -> None:
    """The synchronous outbox waits for the loop: on the loop itself that would hang."""
    with pytest.raises(RuntimeError, match="use a thread"):
        db.blocking(db.execute("SELECT 1"))
    assert await anyio.to_thread.run_sync(db.blocking, db.fetchrow("SELECT 1")) == (1,)


async def test_the_server_bounds_what_a_stalled_or_vanished_replica_holds(db: Database) -> None:
    row = await db.fetchrow(
        "SELECT current_setting('idle_in_transaction_session_timeout'),"
        " current_setting('tcp_keepalives_idle'), current_setting('application_name')"
    )
    assert tuple(row or ()) == ("6s", "10", "ocigate")  # 2 x (1 s connect + 2 s command)
    async with db.locks.acquire() as conn:  # the lock pool's connections too
        assert await conn.fetchval("SHOW tcp_keepalives_count") == "4"


async def test_the_server_itself_bounds_each_statement(db: Database) -> None:
    # A second after the client's own bound (2 s command), for what the client cannot cancel.
    assert await db.fetchrow("SHOW statement_timeout") == ("3s",)
    async with db.locks.acquire() as conn:  # lock waits are the lock holders' to bound
        assert await conn.fetchval("SHOW statement_timeout") == "0"
