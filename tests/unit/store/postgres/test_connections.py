"""The query connections (``postgres.connections``) on a real PostgreSQL: never more than their
size, waiters served in turn, and no later holder inheriting a connection in an unknown state
(cut mid-statement, a transaction left open, closed by the server)."""

from __future__ import annotations

import asyncio
from functools import partial

import asyncpg
import pytest

from ocigate.store.postgres.connections import Connections

pytestmark = pytest.mark.anyio
NAME = "ocigate-connections-test"


def connections(url: str, size: int) -> Connections:
    settings = {"application_name": NAME}
    return Connections(partial(asyncpg.connect, url, server_settings=settings), size)


async def backends(url: str, expected: int) -> int:
    """How many of this test's connections the server has open, once that is ``expected``
    (a backend leaves the server's view a moment after its connection closed) or after 2 s."""
    conn = await asyncpg.connect(url)
    try:
        for _ in range(40):
            count = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", NAME
            )
            if count == expected:
                break
            await asyncio.sleep(0.05)
        return int(count)
    finally:
        await conn.close()


async def test_never_more_than_size_and_waiters_get_a_released_one(postgres_url: str) -> None:
    pool = connections(postgres_url, 2)
    try:
        release, two_held = asyncio.Event(), asyncio.Event()
        held: list[int] = []

        async def holder() -> None:
            async with pool.hold() as conn:
                held.append(await conn.fetchval("SELECT pg_backend_pid()"))
                if len(held) == 2:
                    two_held.set()
                await release.wait()

        first = [asyncio.ensure_future(holder()) for _ in range(2)]
        await asyncio.wait_for(two_held.wait(), 5)
        third = asyncio.ensure_future(holder())
        await asyncio.sleep(0.2)
        assert len(held) == 2 and not third.done()  # waiting: both connections are held
        assert await backends(postgres_url, 2) == 2
        release.set()
        await asyncio.wait_for(asyncio.gather(*first, third), 5)
        assert held[2] in held[:2]  # a released connection, not a new one
        assert await backends(postgres_url, 2) == 2
    finally:
        await pool.close()
    assert await backends(postgres_url, 0) == 0


async def test_a_holder_cut_mid_statement_leaves_no_connection_behind(postgres_url: str) -> None:
    pool = connections(postgres_url, 1)
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2), pool.hold() as conn:
                cut = await conn.fetchval("SELECT pg_backend_pid()")
                await conn.execute("SELECT pg_sleep(30)")
        async with pool.hold() as conn:  # at once, on a fresh connection
            assert await conn.fetchval("SELECT pg_backend_pid()") != cut
    finally:
        await pool.close()


async def test_an_open_transaction_or_a_terminated_backend_is_not_handed_on(
    postgres_url: str,
) -> None:
    pool = connections(postgres_url, 1)
    try:
        async with pool.hold() as conn:
            left_open = await conn.fetchval("SELECT pg_backend_pid()")
            await conn.execute("BEGIN")
        async with pool.hold() as conn:
            assert not conn.is_in_transaction()
            killed = await conn.fetchval("SELECT pg_backend_pid()")
            assert killed != left_open
        admin = await asyncpg.connect(postgres_url)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", killed)
        finally:
            await admin.close()
        await asyncio.sleep(0.2)  # the idle connection sees the server hang up
        async with pool.hold() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") not in (left_open, killed)
    finally:
        await pool.close()


async def test_closed_they_refuse_new_holders(postgres_url: str) -> None:
    pool = connections(postgres_url, 1)
    await pool.prime()
    assert await backends(postgres_url, 1) == 1
    await pool.close()
    assert await backends(postgres_url, 0) == 0
    with pytest.raises(asyncpg.InterfaceError, match="closed"):
        async with pool.hold():
            pass
