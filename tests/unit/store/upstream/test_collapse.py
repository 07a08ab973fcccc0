"""Collapsed reads: identical concurrent reads share requests, never an answer from before."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from ocigate.store.upstream.collapse import Collapser

pytestmark = pytest.mark.anyio

caller: contextvars.ContextVar[str] = contextvars.ContextVar("caller", default="")


class Upstream:
    """A value that changes, read by requests that each hang until released."""

    def __init__(self) -> None:
        self.value = 0
        self.sent: list[str] = []  # the caller of each request, in the order they were sent
        self.hanging: list[asyncio.Future[None]] = []

    async def read(self) -> int:
        self.sent.append(caller.get())
        seen = self.value  # the upstream's state when the request reached it
        answered = asyncio.get_running_loop().create_future()
        self.hanging.append(answered)
        await answered
        return seen

    async def answer(self) -> None:
        """Answers every request sent so far."""
        for answered in self.hanging:
            if not answered.done():  # a cancelled reader cancels its request
                answered.set_result(None)
        self.hanging.clear()
        await _settle()


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def _reader(collapser: Collapser, upstream: Upstream, name: str, key: str = "k") -> int:
    caller.set(name)
    return await collapser.run(key, upstream.read)


async def test_reads_arriving_during_one_request_share_the_next() -> None:
    collapser, upstream = Collapser(), Upstream()
    first = asyncio.create_task(_reader(collapser, upstream, "a"))
    await _settle()
    upstream.value = 1  # changed after the first request was answered upstream
    rest = [asyncio.create_task(_reader(collapser, upstream, n)) for n in "bcdefgh"]
    await _settle()
    assert upstream.sent == ["a"]  # the others wait: nothing is sent for them yet
    await upstream.answer()
    await upstream.answer()
    assert await first == 0
    assert await asyncio.gather(*rest) == [1] * 7  # never the answer sent before they came
    assert upstream.sent == ["a", "b"]  # one request for all seven, in the first one's context


async def test_a_read_after_the_shared_request_was_sent_waits_for_another() -> None:
    collapser, upstream = Collapser(), Upstream()
    first = asyncio.create_task(_reader(collapser, upstream, "a"))
    await _settle()
    second = asyncio.create_task(_reader(collapser, upstream, "b"))
    await _settle()
    await upstream.answer()  # "a" answered; the request for "b" is sent and hangs
    assert upstream.sent == ["a", "b"]
    upstream.value = 2
    third = asyncio.create_task(_reader(collapser, upstream, "c"))
    await _settle()
    assert upstream.sent == ["a", "b"]  # "c" does not join a request sent before it came
    await upstream.answer()
    await upstream.answer()
    assert (await first, await second, await third) == (0, 0, 2)
    assert upstream.sent == ["a", "b", "c"]


async def test_other_keys_do_not_wait() -> None:
    collapser, upstream = Collapser(), Upstream()
    tasks = [asyncio.create_task(_reader(collapser, upstream, n, key=n)) for n in "abc"]
    await _settle()
    assert upstream.sent == ["a", "b", "c"]
    await upstream.answer()
    await asyncio.gather(*tasks)


async def test_readers_going_away_leave_the_answer_to_the_others() -> None:
    collapser, upstream = Collapser(), Upstream()
    first = asyncio.create_task(_reader(collapser, upstream, "a"))
    await _settle()
    queued = [asyncio.create_task(_reader(collapser, upstream, n)) for n in "bcd"]
    await _settle()
    upstream.value = 3
    queued[0].cancel()  # the one whose context the queued request will run in
    first.cancel()  # the one whose request is in flight: the queued one is sent now
    await _settle()
    assert upstream.sent == ["a", "b"]
    await upstream.answer()
    assert await asyncio.gather(*queued[1:]) == [3, 3]
    assert first.cancelled() and queued[0].cancelled()
    upstream.value = 4
    fifth = asyncio.create_task(_reader(collapser, upstream, "e"))
    await _settle()
    await upstream.answer()
    assert await fifth == 4  # and nothing is left stuck


async def test_a_failure_reaches_every_reader_and_is_not_kept() -> None:
    collapser = Collapser()
    calls = 0
    gate = asyncio.Event()

    async def failing() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        raise LookupError(f"failure {calls}")

    first = asyncio.create_task(collapser.run("k", failing))
    await _settle()
    queued = [asyncio.create_task(collapser.run("k", failing)) for _ in range(3)]
    await _settle()
    gate.set()
    with pytest.raises(LookupError, match="failure 1"):
        await first
    for task in queued:
        with pytest.raises(LookupError, match="failure 2"):
            await task
    with pytest.raises(LookupError, match="failure 3"):
        await collapser.run("k", failing)
