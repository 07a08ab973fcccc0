"""Flow control for asyncio protocols, shared by the upstream client and the server."""

from __future__ import annotations

import asyncio


def settle(future: asyncio.Future[bool], value: bool) -> None:
    """Resolve ``future`` unless something did first (a timer races a wake-up)."""
    if not future.done():
        future.set_result(value)


class WriteFlow:
    """``pause_writing``/``resume_writing`` from the transport, and a wait for the latter."""

    def __init__(self) -> None:
        self._writing_paused = False
        self._writable: asyncio.Future[bool] | None = None

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._release_writer()

    def _release_writer(self) -> None:
        """Wake a writer waiting for room (the transport resumed, or the connection is gone)."""
        if self._writable is not None:
            settle(self._writable, True)

    async def writable(self, seconds: float | None = None) -> bool:
        """Until the transport takes more bytes (True), or ``seconds`` pass (False)."""
        if not self._writing_paused:
            return True
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._writable = waiter
        timer = None if seconds is None else loop.call_later(seconds, settle, waiter, False)
        try:
            return await waiter
        finally:
            if timer is not None:
                timer.cancel()
            self._writable = None


class ReadFlow:
    """Stops reading from the transport while more than ``high_water`` received bytes wait
    for their consumer, and reads again below ``low_water``: memory stays flat."""

    transport: asyncio.Transport | None

    def __init__(self, high_water: int, low_water: int) -> None:
        self.buffered = 0
        self._high_water = high_water
        self._low_water = low_water
        self._reading_paused = False

    def _received(self, size: int) -> None:
        self.buffered += size
        if self.buffered > self._high_water and not self._reading_paused and self.transport:
            self.transport.pause_reading()
            self._reading_paused = True

    def _consumed(self, size: int) -> None:
        self.buffered -= size
        if self._reading_paused and self.buffered < self._low_water and self.transport:
            self.transport.resume_reading()
            self._reading_paused = False
