"""The connections the queries of one process share: asyncpg connections, kept open, handed out
one holder at a time, with none of asyncpg's ``Pool`` bookkeeping per query.

Why not ``asyncpg.Pool`` for these: each acquire and release there arms and cancels an idle
timer, resets the session and runs the release as a shielded task of its own. Measured on this
VM (one prepared ``SELECT`` by primary key, uvloop): 69 µs of CPU on a held connection, 155 µs
through ``Pool.acquire``; a manifest HEAD is one such query, so the pool was half its database
cost. Here acquiring is a ``pop`` and releasing an ``append``.

What it keeps of a pool's duties: at most ``size`` connections (further holders wait, first
come first served); a connection that closed (the server restarted, the network dropped) is
not handed out; one whose holder failed mid-statement (cancelled, timed out, the connection
broke) or left a transaction open is closed rather than reused, as its state is unknown, and a
new one is opened for the next holder. Nothing here sets session state, so nothing is reset.
Session-level locks take the other pool (``Database.locks``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg

Connect = Callable[[], Awaitable["asyncpg.Connection[asyncpg.Record]"]]


class Connections:
    def __init__(self, connect: Connect, size: int) -> None:
        self._connect = connect
        self._size = size
        self._idle: list[asyncpg.Connection[asyncpg.Record]] = []
        self._open = 0  # idle, held, and being opened
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._closed = False

    async def prime(self) -> None:
        """Open one connection now (proving the database answers) and keep it idle."""
        self._open += 1
        try:
            self._idle.append(await self._connect())
        except BaseException:
            self._open -= 1
            raise

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[asyncpg.Connection[asyncpg.Record]]:
        """A connection for the block, released (or closed, see above) when it ends."""
        conn = await self._acquire()
        healthy = False
        try:
            yield conn
            healthy = True
        finally:
            self._release(conn, healthy)

    async def _acquire(self) -> asyncpg.Connection[asyncpg.Record]:
        while True:
            if self._closed:
                raise asyncpg.InterfaceError("the database's connections are closed")
            while self._idle:
                conn = self._idle.pop()  # the most recently used: warm, least likely closed
                if not conn.is_closed():
                    return conn
                self._open -= 1
            if self._open < self._size:
                self._open += 1
                try:
                    return await self._connect()
                except BaseException:
                    self._open -= 1
                    self._wake()
                    raise
            waiter = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # woken, then cancelled: pass the turn on
                raise
            finally:
                if not waiter.done():
                    waiter.cancel()
                if waiter in self._waiting:
                    self._waiting.remove(waiter)

    def _release(self, conn: asyncpg.Connection[asyncpg.Record], healthy: bool) -> None:
        if self._closed or not healthy or conn.is_closed() or conn.is_in_transaction():
            conn.terminate()  # its state is unknown: no later holder inherits it
            self._open -= 1
        else:
            self._idle.append(conn)
        self._wake()

    def _wake(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def close(self) -> None:
        """Close the idle connections now, the held ones when their holders release them."""
        self._closed = True
        idle, self._idle = self._idle, []
        self._open -= len(idle)
        for conn in idle:
            try:
                await conn.close(timeout=1.0)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                conn.terminate()
        for waiter in self._waiting:
            if not waiter.done():
                waiter.set_result(None)  # they find the connections closed
