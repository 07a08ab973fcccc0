"""StampedCache: answers kept only under the stamp they were read under, and only so long."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from ocigate.store.core.stamped_cache import StampedCache, stamped_cache
from ocigate.store.embedded.stamp import Stamp


@pytest.fixture
def stamp(tmp_path: Path) -> Stamp:
    return Stamp(tmp_path / "meta.stamp")


def test_an_entry_lives_until_the_stamp_moves(stamp: Stamp, tmp_path: Path) -> None:
    cache: StampedCache[str, int] = StampedCache(stamp, 60.0, capacity=10)
    found, seen = cache.lookup("k")
    assert found is None
    cache.store("k", 1, seen)
    assert cache.lookup("k")[0] == 1
    other_worker = Stamp(tmp_path / "meta.stamp")  # its own mapping of the same file
    other_worker.bump()  # what every commit does, in any process
    assert cache.lookup("k")[0] is None


def test_an_answer_read_before_a_change_is_not_kept(stamp: Stamp) -> None:
    cache: StampedCache[str, int] = StampedCache(stamp, 60.0, capacity=10)
    _, seen = cache.lookup("k")
    stamp.bump()  # a commit lands while the answer is being read
    cache.lookup("other")  # another reader sees the new stamp first
    cache.store("k", 1, seen)
    assert cache.lookup("k")[0] is None


def test_entries_expire_even_without_a_change(stamp: Stamp) -> None:
    cache: StampedCache[str, int] = StampedCache(stamp, 0.05, capacity=10)
    _, seen = cache.lookup("k")
    cache.store("k", 1, seen)
    time.sleep(0.1)
    assert cache.lookup("k")[0] is None


def test_weights_are_bounded(stamp: Stamp) -> None:
    cache: StampedCache[str, int] = StampedCache(stamp, 60.0, capacity=10)
    _, seen = cache.lookup("a")
    cache.store("a", 1, seen, weight=6)
    cache.store("b", 2, seen, weight=6)  # over capacity: starts over with this one
    assert cache.lookup("a")[0] is None
    assert cache.lookup("b")[0] == 2
    cache.store("huge", 3, seen, weight=11)  # never fits
    assert cache.lookup("huge")[0] is None
    cache.store("b", 4, seen, weight=6)  # already there: kept, not counted twice
    assert cache.lookup("b")[0] == 2
    cache.store("c", 5, seen, weight=4)
    assert cache.lookup("b")[0] == 2 and cache.lookup("c")[0] == 5


@pytest.mark.anyio
async def test_get_loads_only_what_is_not_kept(stamp: Stamp) -> None:
    cache: StampedCache[str, list[int]] = StampedCache(stamp, 60.0, capacity=10)
    loads: list[str] = []

    def loader(key: str) -> Callable[[], Awaitable[list[int]]]:
        async def load() -> list[int]:
            loads.append(key)
            return []

        return load

    for _ in range(3):
        assert await cache.get("a", loader("a"), lambda found: 1 + len(found)) == []
    assert loads == ["a"]
    stamp.bump()
    await cache.get("a", loader("a"), lambda found: 1 + len(found))
    assert loads == ["a", "a"]


@pytest.mark.anyio
async def test_without_a_stamp_every_get_loads_and_nothing_is_kept() -> None:
    cache: StampedCache[str, int] = stamped_cache(None, 2.0, capacity=10)
    loads = []

    async def load() -> int:
        loads.append(1)
        return len(loads)

    assert [await cache.get("k", load, lambda _: 1) for _ in range(3)] == [1, 2, 3]
    assert cache.lookup("k") == (None, b"")
