"""``Batched``: concurrent reads of one kind (a manifest by tag, a blob's size) answered by one
statement: at most ``parallel`` (one) statements of the kind run at once in a process; reads
arriving while it runs wait and go together in the next one, each distinct key asked once.

Why: every manifest HEAD or GET is one such read, and on this VM a statement's fixed cost (its
round trip to the server: a socket write and a wake-up on each side, asyncpg's bind and row
decoding, the server's executor start) was most of a replica's CPU per request and nearly all
of PostgreSQL's. Under load one statement now answers many requests; alone, a read is one
statement as before and waits for nothing. One in flight rather than two: bigger batches,
fewer statements; three replicas of two workers under 64 connections spent 137-192 µs of
registry CPU per manifest GET or HEAD against 157-208 with two (a read waits at most one
statement's round trip more).

Consistency is unchanged: a read that waits goes in a statement sent after it arrived, so it
sees every change committed before its request was received (a tag moved on one replica is
seen by the next request on any other). Nothing is kept once a statement has answered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

One = Callable[[K], Awaitable[V | None]]
Many = Callable[[Sequence[K]], Awaitable[dict[K, V]]]


class Batched(Generic[K, V]):
    def __init__(self, one: One[K, V], many: Many[K, V], *, parallel: int = 1, most: int = 500):
        """``one`` reads a key (None: not found); ``many`` reads several distinct keys and
        returns those found; a statement asks at most ``most`` keys."""
        if parallel < 1 or most < 2:
            raise ValueError("parallel must be >= 1 and most >= 2")
        self._one = one
        self._many = many
        self._parallel = parallel
        self._most = most
        self._running = 0
        self._waiting: dict[K, list[asyncio.Future[V | None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def get(self, key: K) -> V | None:
        if self._running < self._parallel and not self._waiting:
            self._running += 1
            try:
                return await self._one(key)
            finally:
                self._running -= 1
                self._next()
        waiter: asyncio.Future[V | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(waiter)
        return await waiter  # a cancelled reader cancels its future: the statement skips it

    def _next(self) -> None:
        """Start a statement for the reads waiting, if a slot is free."""
        if not self._waiting or self._running >= self._parallel:
            return
        if len(self._waiting) <= self._most:
            batch, self._waiting = self._waiting, {}
        else:
            keys = list(self._waiting)[: self._most]
            batch = {key: self._waiting.pop(key) for key in keys}
        self._running += 1
        task = asyncio.get_running_loop().create_task(self._answer(batch))
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, batch: dict[K, list[asyncio.Future[V | None]]]) -> None:
        try:
            keys = [key for key, waiters in batch.items() if not all(w.done() for w in waiters)]
            found: dict[K, V]
            if len(keys) == 1:
                value = await self._one(keys[0])
                found = {} if value is None else {keys[0]: value}
            else:
                found = await self._many(keys) if keys else {}
        except Exception as exc:
            for waiters in batch.values():
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(exc)
        except BaseException:  # cancelled (the loop is closing): so are its readers
            for waiters in batch.values():
                for waiter in waiters:
                    waiter.cancel()
            raise
        else:
            for key, waiters in batch.items():
                value = found.get(key)
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(value)
        finally:
            self._running -= 1
            self._next()
