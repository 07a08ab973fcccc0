"""``GET /healthz`` (the process answers) and ``GET /readyz`` (its backend answers too).

Readiness is what a load balancer polls, so it is cheap and bounded: each probe (a SQLite
query for the embedded store, ``GET /v2/`` to each upstream for the gateway and the cache) has
``PROBE_TIMEOUT`` seconds, and one result is shared by every request for ``CACHE_SECONDS``.
Nothing is remembered beyond that, so a backend that comes back is ready at the next probe.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import anyio

from ..client.connection import TransportError
from ..client.http import tls_context
from ..client.pool import Pool
from ..upstream_config import UpstreamConfig
from .http import Send, respond_json

PROBE_TIMEOUT = 2.0
CACHE_SECONDS = 1.0

Probe = Callable[[], Awaitable[str | None]]  # None when healthy, else what is wrong


def sqlite_probe(database: Path) -> Probe:
    def query() -> None:
        conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=PROBE_TIMEOUT)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            conn.close()

    async def probe() -> str | None:
        try:
            await anyio.to_thread.run_sync(query, abandon_on_cancel=True)
        except sqlite3.Error as error:
            return f"database: {error}"
        return None

    return probe


def upstream_probe(upstream: UpstreamConfig) -> Probe:
    # The gateway's own client, one kept-alive connection: a probe costs one small request.
    tls = tls_context(upstream.ca_file, upstream.tls_verify)
    pool = Pool(tls, PROBE_TIMEOUT, PROBE_TIMEOUT, max_connections=1)
    url = upstream.url.rstrip("/") + "/v2/"

    async def probe() -> str | None:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                response = await pool.request("GET", url, {}, None)
                await response.aclose()
        except TimeoutError:
            return f"upstream {upstream.url}: no answer within {PROBE_TIMEOUT:g}s"
        except (TransportError, OSError) as error:
            return f"upstream {upstream.url}: {type(error).__name__}"
        # 200 or 401 (it wants credentials): it answers; a 5xx means it cannot serve.
        if response.status_code >= 500:
            return f"upstream {upstream.url}: {response.status_code}"
        return None

    return probe


class Readiness:
    """Runs the backend's probes, at most one round per ``CACHE_SECONDS``, each bounded."""

    def __init__(self, probes: Sequence[Probe]) -> None:
        self.probes = probes
        self._checked = -CACHE_SECONDS
        self._problems: list[str] = []
        self._running: asyncio.Task[list[str]] | None = None

    async def problems(self) -> list[str]:
        if time.monotonic() - self._checked < CACHE_SECONDS:
            return self._problems
        if self._running is None:  # concurrent requests share one round of probes
            self._running = asyncio.ensure_future(self._probe_all())
        running = self._running
        try:
            self._problems = await asyncio.shield(running)
        finally:
            if self._running is running and running.done():
                self._running = None
        self._checked = time.monotonic()
        return self._problems

    async def _probe_all(self) -> list[str]:
        async def bounded(probe: Probe) -> str | None:
            try:
                async with asyncio.timeout(PROBE_TIMEOUT + 0.5):
                    return await probe()
            except TimeoutError:
                return f"no answer within {PROBE_TIMEOUT} s"

        results = await asyncio.gather(*(bounded(probe) for probe in self.probes))
        return [problem for problem in results if problem is not None]


async def healthz(send: Send) -> None:
    await respond_json(send, 200, {"status": "ok"})


async def readyz(send: Send, readiness: Readiness) -> None:
    problems = await readiness.problems()
    if problems:
        await respond_json(send, 503, {"status": "unavailable", "problems": problems})
    else:
        await respond_json(send, 200, {"status": "ok"})
