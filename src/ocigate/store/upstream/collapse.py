"""Identical reads collapsed into one upstream request, without ever answering with stale state.

When many clients ask the gateway the same question at once (a rollout pulling one tag on every
node), the upstream need not hear it many times. Joining a request already sent would be cheap
but wrong: that request may have been answered upstream before a push the joining client has
seen acknowledged, so a client could push a tag and then read the old one. Instead, a read that
arrives while an identical one is in flight waits for it to finish, together with every other
read arriving meanwhile, and then one request is sent for all of them. Every answer therefore
reflects the upstream as it was after the read arrived, and the upstream sees at most two
concurrent requests per question (one in flight, one queued) instead of one per client.

The first read of a key runs in its caller's task, so an uncontended read costs a dict lookup.
A queued request runs in a task of its own, in the context of the first read that queued it,
so one client hanging up never cancels the answer the others wait for.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class _Queued(Generic[T]):
    """The request to send once the one in flight ends, and the answer its readers wait for."""

    def __init__(self, fetch: Callable[[], Coroutine[Any, Any, T]]) -> None:
        self.fetch = fetch
        self.context = contextvars.copy_context()
        self.answer: asyncio.Future[T] = asyncio.get_running_loop().create_future()


class Collapser:
    """Runs ``fetch`` for a key, sharing requests between concurrent readers of that key (the
    key names the question: the operation and all it depends on)."""

    def __init__(self) -> None:
        self._in_flight: set[Hashable] = set()
        self._queued: dict[Hashable, _Queued[Any]] = {}
        self._sending: set[asyncio.Task[Any]] = set()  # held: the loop keeps only weak refs

    async def run(self, key: Hashable, fetch: Callable[[], Coroutine[Any, Any, T]]) -> T:
        if key not in self._in_flight:
            self._in_flight.add(key)
            try:
                return await fetch()
            finally:
                self._next(key)
        queued: _Queued[T] | None = self._queued.get(key)
        if queued is None:
            queued = self._queued[key] = _Queued(fetch)
        # shield: a reader that goes away leaves the shared answer to the others
        return await asyncio.shield(queued.answer)

    def _next(self, key: Hashable) -> None:
        """The request for ``key`` ended: send the queued one, if any readers are waiting."""
        queued = self._queued.pop(key, None)
        if queued is None:
            self._in_flight.discard(key)
            return
        loop = asyncio.get_running_loop()
        task = loop.create_task(queued.fetch(), context=queued.context)
        self._sending.add(task)
        task.add_done_callback(lambda done: self._settle(key, queued.answer, done))

    def _settle(self, key: Hashable, answer: asyncio.Future[Any], done: asyncio.Task[Any]) -> None:
        self._sending.discard(done)
        if done.cancelled():
            answer.cancel()
        elif (error := done.exception()) is not None:
            answer.set_exception(error)
            answer.exception()  # retrieved here: every reader may have gone away
        else:
            answer.set_result(done.result())
        self._next(key)
