"""``Database``: connections to one PostgreSQL database with every call bounded in time, and
one error for "the database is unavailable".

Bounds: waiting for a connection (or opening one) takes at most ``connect_timeout`` seconds,
the work done on it (one statement, or one transaction) at most ``command_timeout``, so a
whole unit of work at most their sum. One deadline per unit of work, moved once when the
connection is in hand: asyncpg's own per-call timeouts cost a timer per statement and a task
per acquire, on every HEAD. The server bounds each statement too (``statement_timeout``, a
second later), for work the client cannot cancel. A refused or lost connection, a timeout or a
server shutting down becomes :class:`DatabaseUnavailable`, a 503 naming the database's host,
port and name (never the password). Queries take their connections from ``Connections`` (see
there why not asyncpg's pool); session-level locks from an asyncpg pool of their own. Dead
connections are dropped and replaced on the next acquire, so service resumes by itself once
the server is back. asyncpg prepares and caches each statement per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from functools import partial
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg

from ...oci.errors import Unavailable
from .connections import Connections

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    # What ``connection`` and the lock pool hand out (the stubs' generics; not subscriptable
    # at run time).
    Connection: TypeAlias = asyncpg.Connection[asyncpg.Record]
    LockConnection: TypeAlias = PoolConnectionProxy[asyncpg.Record]

T = TypeVar("T")

# What "the database cannot be reached or went away" looks like from asyncpg.
UNREACHABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, disk full
)


class DatabaseUnavailable(Unavailable):
    """The metadata database cannot be reached, went away, or did not answer in time."""


def describe(url: str) -> str:
    """``host:port/name`` of a PostgreSQL URL: what errors and logs name (no credentials).
    A Unix socket's directory comes as ``?host=/run/postgresql``."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    host = parts.hostname or query.get("host", ["localhost"])[0]
    port = parts.port or query.get("port", ["5432"])[0]
    return f"{host}:{port}{parts.path or '/'}"


class Database:
    """A pool of connections to one PostgreSQL database, opened by :meth:`open` (or made open
    by :meth:`connect`) on the event loop that will use it."""

    pool: Connections
    locks: asyncpg.Pool

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        connect_timeout: float = 5.0,
        command_timeout: float = 10.0,
        lock_connections: int | None = None,
    ) -> None:
        """``lock_connections`` (default ``pool_size``): a second pool, opened on demand, for
        session-level advisory locks held across other work (``gc_lock``), so that holders of
        those never take the connections their own queries need."""
        self._url = url
        self.where = describe(url)
        self.pool_size = pool_size
        self.lock_connections = pool_size if lock_connections is None else lock_connections
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self._password = urlsplit(url).password

    @classmethod
    async def connect(cls, url: str, **options: Any) -> Database:
        """A :class:`Database` on ``url`` (``postgresql://user:password@host:port/name``),
        opened."""
        db = cls(url, **options)
        await db.open()
        return db

    async def open(self) -> None:
        """Create the pools, their first connection opened to prove the database answers
        (else :class:`DatabaseUnavailable`)."""
        # The server's side of the bounds: it ends a transaction left open longer than any of
        # ours can be (a replica stalled mid-transaction would hold its row locks), and finds a
        # vanished replica's connection within ~30 s by keepalives (its advisory locks, the GC
        # lock among them, go with it).
        server = {
            "application_name": "ocigate",
            "idle_in_transaction_session_timeout": str(int(2000 * self.bound)),
            "tcp_keepalives_idle": "10",
            "tcp_keepalives_interval": "5",
            "tcp_keepalives_count": "4",
        }
        # The lock pool's waits are bounded per call by their holders (``gc_lock``).
        locks: dict[str, Any] = {"command_timeout": self.command_timeout, "server_settings": server}
        statements = {**server, "statement_timeout": f"{int(1000 * self.command_timeout) + 1000}"}
        url = self._url
        self.pool = Connections(
            partial(asyncpg.connect, url, timeout=self.connect_timeout, server_settings=statements),
            self.pool_size,
        )
        try:
            async with asyncio.timeout(self.bound):
                await self.pool.prime()
                self.locks = await asyncpg.create_pool(
                    url,
                    min_size=0,
                    max_size=self.lock_connections,
                    timeout=self.connect_timeout,
                    max_inactive_connection_lifetime=60.0,
                    **locks,
                )
        except (*UNREACHABLE, asyncpg.PostgresError) as exc:  # also refused: no such database
            raise _unavailable(self.where, exc, self._password, self.bound) from None
        self._loop = asyncio.get_running_loop()

    @property
    def bound(self) -> float:
        """The longest one unit of work may take, seconds."""
        return self.connect_timeout + self.command_timeout

    @contextlib.asynccontextmanager
    async def bounded(self, seconds: float | None = None) -> AsyncIterator[None]:
        """Bound a unit of work in time (``seconds``, default :attr:`bound`); turn the
        database's absence into the one error."""
        limit = self.bound if seconds is None else seconds
        try:
            async with asyncio.timeout(limit):
                yield
        except UNREACHABLE as exc:
            raise _unavailable(self.where, exc, self._password, limit) from None

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A pooled connection for a bounded unit of work (a few statements, no transaction)."""
        try:
            async with asyncio.timeout(self.connect_timeout) as deadline:
                async with self.pool.hold() as conn:
                    deadline.reschedule(asyncio.get_running_loop().time() + self.command_timeout)
                    yield conn
        except UNREACHABLE as exc:
            raise _unavailable(self.where, exc, self._password, self.bound) from None

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A pooled connection in a READ COMMITTED transaction, committed when the block
        ends, rolled back when it raises; bounded like any unit of work."""
        async with self.connection() as conn, conn.transaction():
            yield conn

    async def fetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        async with self.connection() as conn:
            return await conn.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: object) -> asyncpg.Record | None:
        async with self.connection() as conn:
            return await conn.fetchrow(sql, *args)

    async def execute(self, sql: str, *args: object) -> str:
        async with self.connection() as conn:
            return await conn.execute(sql, *args)

    def blocking(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` on the pool's event loop from another thread (the synchronous
        ``Outbox`` protocol is called in worker threads) and wait for it."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            work.close()
            raise RuntimeError("Database.blocking() called on its own event loop: use a thread")
        future = asyncio.run_coroutine_threadsafe(work, self._loop)
        return future.result(timeout=self.bound + 1.0)  # work is bounded itself: a backstop

    async def close(self) -> None:
        await self.pool.close()
        try:
            async with asyncio.timeout(self.bound):
                await self.locks.close()
        except UNREACHABLE:
            self.locks.terminate()  # a server that went away cannot say goodbye


def row_count(status: str) -> int:
    """The row count of a command status (``DELETE 3``, ``UPDATE 0``)."""
    return int(status.rsplit(" ", 1)[-1])


def _unavailable(
    where: str, exc: BaseException, password: str | None, limit: float
) -> DatabaseUnavailable:
    if isinstance(exc, TimeoutError):
        reason = f"no answer within {limit:g} s"
    else:
        reason = str(exc) or type(exc).__name__
    if password:  # as the URL spells it and decoded: neither may reach a log or a client
        for secret in (password, unquote(password)):
            reason = reason.replace(secret, "********")
    return DatabaseUnavailable(
        {"database": where}, f"the database {where} is unavailable: {reason}"
    )
