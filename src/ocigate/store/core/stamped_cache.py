"""Read answers of a store kept in process memory while the metadata is unchanged.

Every metadata commit, in any worker process, changes the metadata store's change stamp
(``ports.ChangeStamp``); a cache entry is only ever served under the stamp it was read under,
and for at most ``max_age`` seconds, which bounds staleness even if a writer died between its
commit and its stamp. Hot reads (pulls by tag, tag lists polled by image updaters, referrers
queried by signature verifiers on every admission) then cost a dictionary lookup instead of a query.
A store with no such stamp (shared across machines, where only a query can tell what changed)
gets :class:`NoCache`: every read asks it, and nothing is kept in vain.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from ..ports import ChangeStamp

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def stamped_cache(stamp: ChangeStamp | None, max_age: float, capacity: int) -> StampedCache[K, V]:
    """A cache under ``stamp``, or none at all when the store offers no stamp."""
    return NoCache() if stamp is None else StampedCache(stamp, max_age, capacity)


class StampedCache(Generic[K, V]):
    def __init__(self, stamp: ChangeStamp, max_age: float, capacity: int) -> None:
        """``capacity`` bounds the summed weights of the entries (a page of tags weighs its
        length, so one client paging through a huge repository cannot fill memory)."""
        self._stamp = stamp
        self._max_age = max_age
        self._capacity = capacity
        self._entries: dict[K, V] = {}
        self._weight = 0
        self._seen = b""
        self._until = 0.0

    def lookup(self, key: K) -> tuple[V | None, bytes]:
        """The entry for ``key`` (None if absent) and the stamp to :meth:`store` a fresh answer
        under: read it *before* reading the metadata."""
        stamp, now = self._stamp.read(), time.monotonic()
        if stamp != self._seen or now > self._until:
            self._entries.clear()
            self._weight = 0
            self._seen, self._until = stamp, now + self._max_age
        return self._entries.get(key), stamp

    def store(self, key: K, value: V, stamp: bytes, weight: int = 1) -> None:
        """Keep ``value``, read from the metadata after :meth:`lookup` returned ``stamp``,
        unless the metadata changed since (a read that raced a commit may be stale) or the
        cache is full (then it starts over: hot entries come back at once); an answer heavier
        than the whole capacity is never kept."""
        if stamp != self._seen or key in self._entries or weight > self._capacity:
            return
        if self._weight + weight > self._capacity:
            self._entries.clear()
            self._weight = 0
        self._entries[key] = value
        self._weight += weight

    async def get(self, key: K, load: Callable[[], Awaitable[V]], weigh: Callable[[V], int]) -> V:
        """The kept answer for ``key``, else what ``load()`` reads, kept for the next caller."""
        found, stamp = self.lookup(key)
        if found is None:
            found = await load()
            self.store(key, found, stamp, weigh(found))
        return found


class NoCache(StampedCache[K, V]):
    """Keeps nothing: every ``get`` loads."""

    def __init__(self) -> None:
        pass

    def lookup(self, key: K) -> tuple[V | None, bytes]:
        return None, b""

    def store(self, key: K, value: V, stamp: bytes, weight: int = 1) -> None:
        pass

    async def get(self, key: K, load: Callable[[], Awaitable[V]], weigh: Callable[[V], int]) -> V:
        return await load()
