"""One webhook attempt on ocigate's own client, against scripted loopback receivers: an answer,
a refusal, and receivers that hang or trickle past the webhook's timeout."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio.to_thread
import pytest

from ocigate.events.config import EventsConfig
from ocigate.events.database import connect_outbox
from ocigate.events.layer import make_event
from ocigate.events.outbox import Outbox
from ocigate.events.webhooks import Deliverer, signature
from ocigate.oci.reference import Tag
from ocigate.store.postgres.database import Database
from ocigate.store.postgres.migrate import migrate
from ocigate.store.postgres.outbox import PostgresOutbox
from parts.postgres import postgres_server, postgres_url

pytestmark = pytest.mark.anyio
__all__ = ["postgres_server", "postgres_url"]  # fixtures
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def receiver(script: Script) -> AsyncIterator[str]:
    server = await asyncio.start_server(script, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        server.close()


async def _request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    length = next(int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length"))
    return head, await reader.readexactly(length)


def deliverer(tmp_path: Path, url: str, timeout: float = 0.5) -> Deliverer:
    config = EventsConfig.model_validate(
        {"webhooks": [{"name": "h", "url": url, "secret": "k", "timeout": timeout}]}
    )
    return Deliverer(config, connect_outbox(tmp_path / "events.db"))


async def test_an_answered_post_is_signed_and_succeeds(tmp_path: Path) -> None:
    seen: list[tuple[bytes, bytes]] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await _request(reader))
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()

    async with receiver(answer) as url:
        hooks = deliverer(tmp_path, url)
        assert await hooks._post(hooks.webhooks["h"], b'{"id":"1"}') is None
    head, body = seen[0]
    assert body == b'{"id":"1"}'
    assert f"x-ocigate-signature: {signature('k', body)}".encode() in head.lower()


async def test_a_refusal_is_kept_with_the_start_of_its_answer(tmp_path: Path) -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        text = b"no such hook" + b"!" * 100_000
        writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n%s" % (len(text), text))
        await writer.drain()

    async with receiver(refuse) as url:
        hooks = deliverer(tmp_path, url)
        error = await hooks._post(hooks.webhooks["h"], b"{}")
    assert error is not None and error.startswith("HTTP 404: no such hook") and len(error) < 300


@pytest.mark.parametrize("behaviour", ["hangs", "trickles"])
async def test_a_slow_receiver_fails_the_attempt_within_its_timeout(
    tmp_path: Path, behaviour: str
) -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        if behaviour == "trickles":  # every byte within the read timeout, the whole far beyond
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
            for _ in range(100):
                await asyncio.sleep(0.2)
                writer.write(b"x")
                await writer.drain()
        await asyncio.sleep(30)

    async with receiver(slow) as url:
        hooks = deliverer(tmp_path, url, timeout=0.5)
        started = time.monotonic()
        error = await hooks._post(hooks.webhooks["h"], b"{}")
        elapsed = time.monotonic() - started
    if behaviour == "hangs":
        assert error == "Timeout: no answer within 0.5s"
    else:  # a 2xx head arrived at once: the attempt succeeded, the body is not waited for
        assert error is None
    assert elapsed < 2.0


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
async def test_the_deliverer_posts_each_event_once_and_records_failures(
    tmp_path: Path, database: str, request: pytest.FixtureRequest
) -> None:
    """Deliverer.step over each outbox database: an accepted event is marked delivered, a
    refused one is retried later, nothing is posted twice."""
    if database == "sqlite":
        outbox: Outbox = connect_outbox(tmp_path / "events.db")
    else:
        db = await Database.connect(request.getfixturevalue("postgres_url"))
        await migrate(db)
        outbox = PostgresOutbox(db)
    posted: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while not reader.at_eof():
            try:
                _, body = await _request(reader)
            except asyncio.IncompleteReadError:
                return  # the deliverer closed its connection
            posted.append(body)
            status = b"500 Oops" if b'"repository":"bad"' in body else b"204 No Content"
            writer.write(b"HTTP/1.1 %s\r\nContent-Length: 0\r\n\r\n" % status)
            await writer.drain()

    events = [make_event("/t", "tag.deleted", repo, tag=Tag("t")) for repo in ("good", "bad")]
    await anyio.to_thread.run_sync(outbox.append, events)
    async with receiver(answer) as url:
        config = EventsConfig.model_validate(
            {"webhooks": [{"name": "h", "url": url, "timeout": 2}]}
        )
        hooks = Deliverer(config, outbox)
        assert await hooks.step() == 2
        assert await hooks.step() == 0  # the failure waits for its retry
    assert len(posted) == 2
    status = await anyio.to_thread.run_sync(outbox.status)
    assert status["endpoints"]["h"] == {"delivered": 1, "pending": 1, "behind": 0}
    [failed] = [r for r in await anyio.to_thread.run_sync(outbox.rows) if r.repo == "bad"]
    assert failed.attempts == 1 and failed.last_error is not None
    assert failed.last_error.startswith("HTTP 500")
    for pool in hooks.pools.values():
        await pool.aclose()
    outbox.close()
    if database == "postgres":
        await db.close()
