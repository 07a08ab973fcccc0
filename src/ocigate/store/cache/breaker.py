"""A circuit breaker for one cache upstream: remember an outage instead of paying for it again.

After an upstream read fails with an outage (unreachable, timeout, 429, 5xx) the breaker is
*open* for ``cooldown`` seconds: the cache serves what it holds at once and fails what it does
not with that same error, without asking the upstream. Meanwhile a background probe (a bounded
``GET /v2/``) asks the upstream every ``cooldown`` seconds; its first answer closes the breaker,
so recovery is picked up without waiting for a client. A downed upstream thus costs at most one
timeout per cool-down. Any successful upstream read closes it too.

Per worker process: each keeps its own breaker (the state is a cheap guess, not shared truth).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ...oci.errors import (
    BadGateway,
    GatewayTimeout,
    OCIError,
    TooManyRequests,
    Unavailable,
)

T = TypeVar("T")
# Errors meaning "the upstream cannot answer now", as opposed to an answer such as 404.
OUTAGE: tuple[type[OCIError], ...] = (BadGateway, GatewayTimeout, Unavailable, TooManyRequests)


class Breaker:
    def __init__(
        self,
        upstream: str,
        cooldown: float,
        probe_timeout: float,
        probe: Callable[[], Awaitable[None]],
    ) -> None:
        self._upstream = upstream
        self.cooldown = cooldown
        self._probe_timeout = probe_timeout
        self._probe = probe
        self._error: OCIError | None = None  # what opened it; None: closed
        self._since = 0.0  # monotonic time it (re)opened
        self._prober: asyncio.Task[None] | None = None

    @property
    def is_open(self) -> bool:
        return self._error is not None

    def error(self) -> OCIError | None:
        """A fresh copy of the error that opened the breaker (None when closed), saying so."""
        if self._error is None:
            return None
        ago = time.monotonic() - self._since
        message = (
            f"{self._error.message} (upstream {self._upstream} failed {ago:.0f} s ago;"
            f" not asked again until it answers a probe)"
        )
        return type(self._error)(self._error.detail, message)

    def failed(self, exc: OCIError) -> None:
        self._error, self._since = exc, time.monotonic()
        if self._prober is None or self._prober.done():
            self._prober = asyncio.get_running_loop().create_task(self._probe_until_up())

    def succeeded(self) -> None:
        self._error = None

    async def call(self, read: Callable[[], Awaitable[T]]) -> T:
        """``read()`` against the upstream, refused at once while the breaker is open; its
        outcome opens or closes the breaker."""
        refused = self.error()
        if refused is not None:
            raise refused
        try:
            result = await read()
        except OUTAGE as exc:
            self.failed(exc)
            raise
        self.succeeded()
        return result

    async def _probe_until_up(self) -> None:
        while self._error is not None:
            await asyncio.sleep(max(0.0, self._since + self.cooldown - time.monotonic()))
            if self._error is None:
                return
            try:
                async with asyncio.timeout(self._probe_timeout):
                    await self._probe()
            except OUTAGE as exc:
                self._error, self._since = exc, time.monotonic()
                continue
            except TimeoutError:
                self._error = GatewayTimeout(
                    {"upstream": self._upstream},
                    f"upstream registry {self._upstream} did not answer a probe within"
                    f" {self._probe_timeout:g} s",
                )
                self._since = time.monotonic()
                continue
            except Exception:  # any other answer (a refusal, say): it is up
                pass
            self._error = None

    async def close(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
