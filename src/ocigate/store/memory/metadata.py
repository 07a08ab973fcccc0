"""The memory store's ``MetadataStore``: the embedded store's SQL on one SQLite database in
memory, so tests run the real queries. One process, one connection, every call inline (no
transaction spans an await, so none interleave)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TypeVar

import anyio

from ...events.outbox import Outbox
from ..embedded.metadata import SqliteMetadata
from ..embedded.stamp import Stamp

T = TypeVar("T")


class SharedLock:
    """The GC lock within one process: shared holders or one exclusive holder."""

    def __init__(self) -> None:
        self._shared = 0
        self._exclusive = False
        self._released: anyio.Event | None = None  # made by a waiter, set on each release

    @contextlib.asynccontextmanager
    async def hold(self, *, exclusive: bool) -> AsyncIterator[None]:
        while self._exclusive or (exclusive and self._shared):
            if self._released is None:
                self._released = anyio.Event()
            await self._released.wait()
        if exclusive:
            self._exclusive = True
        else:
            self._shared += 1
        try:
            yield
        finally:
            if exclusive:
                self._exclusive = False
            else:
                self._shared -= 1
            if self._released is not None:
                self._released.set()
                self._released = None


class InMemoryMetadata(SqliteMetadata):
    def __init__(self) -> None:
        # Not SqliteMetadata.__init__: no file, no thread-local connections.
        self.path = Path(":memory:")
        self._conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        self._stamp = Stamp(None)
        self._shared_lock = SharedLock()
        self._migrate()

    @property
    def outbox(self) -> Outbox | None:
        return None  # none declared: the events layer stages nothing and appends its events

    def gc_lock(self, *, exclusive: bool) -> AbstractAsyncContextManager[None]:
        return self._shared_lock.hold(exclusive=exclusive)

    def conn(self) -> sqlite3.Connection:
        return self._conn

    async def _call(self, function: Callable[..., T], *args: object) -> T:
        return function(*args)

    async def close(self) -> None:
        self._conn.close()
