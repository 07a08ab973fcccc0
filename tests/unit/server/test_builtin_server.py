"""The built-in HTTP/1.1 server's connection protocol, driven over loopback with raw bytes:
pipelining, request bodies (sized, chunked, ``Expect: 100-continue``, back-pressure, a client
leaving mid-body), response framing, HEAD, bad requests and application errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from ocigate.server.limits import Limits
from ocigate.server.protocol import HIGH_WATER, HttpConnection, ServerState

pytestmark = pytest.mark.anyio


class EchoApp:
    """Answers with the request's method, path and body length; ``/stream`` answers without a
    Content-Length in three pieces; ``/slow`` reads its body slowly; ``/early`` refuses without
    reading it; ``/boom`` fails."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.max_buffered = 0
        self.connections: list[HttpConnection] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"]
        if path == "/boom":
            raise RuntimeError("boom")
        if path == "/early":  # refuses before reading the body
            headers = [(b"content-length", b"6")]
            await send({"type": "http.response.start", "status": 403, "headers": headers})
            await send({"type": "http.response.body", "body": b"denied"})
            return
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.events.append("disconnect")
                return
            total += len(message["body"])
            if path == "/slow":
                for connection in self.connections:
                    self.max_buffered = max(self.max_buffered, connection.buffered)
                await asyncio.sleep(0.01)
            if not message["more_body"]:
                break
        body = f"{scope['method']} {path} {total}".encode()
        if path == "/stream":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for piece in (b"one,", b"two,", b"three"):
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        headers = [(b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@asynccontextmanager
async def server(app: EchoApp, limits: Limits | None = None) -> AsyncIterator[int]:
    state = ServerState(limits)

    def connection() -> HttpConnection:
        made = HttpConnection(app, state)
        app.connections.append(made)
        return made

    listener = await asyncio.get_running_loop().create_server(connection, "127.0.0.1", 0)
    sweeper = asyncio.ensure_future(state.sweep_forever(0.05))
    try:
        yield listener.sockets[0].getsockname()[1]
    finally:
        sweeper.cancel()
        listener.close()


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, dict[bytes, bytes], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
    body = b""
    if headers.get(b"transfer-encoding") == b"chunked":
        while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        await reader.readexactly(2)
    elif b"content-length" in headers and not lines[0].startswith(b"HEAD"):
        body = await reader.readexactly(int(headers[b"content-length"]))
    return lines[0], headers, body


async def test_pipelined_requests_are_answered_in_order_on_one_connection() -> None:
    app = EchoApp()
    async with server(app) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
            b"PUT /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
            b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        bodies = [(await read_response(reader))[2] for _ in range(3)]
        assert bodies == [b"GET /a 0", b"PUT /b 5", b"GET /c 0"]
        writer.write(b"GET /d HTTP/1.1\r\nHost: x\r\n\r\n")  # still alive
        status, headers, body = await read_response(reader)
        assert status.startswith(b"HTTP/1.1 200") and body == b"GET /d 0"
        assert b"date" in headers
        writer.close()


async def test_chunked_request_bodies_and_expect_continue() -> None:
    app = EchoApp()
    async with server(app) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"PATCH /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n")
        assert (await read_response(reader))[2] == b"PATCH /u 7"
        writer.write(
            b"PUT /e HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = await reader.readuntil(b"\r\n\r\n")
        assert interim.startswith(b"HTTP/1.1 100")
        writer.write(b"xyz")
        assert (await read_response(reader))[2] == b"PUT /e 3"
        writer.close()


async def test_responses_without_a_length_are_chunked_and_head_has_no_body() -> None:
    app = EchoApp()
    async with server(app) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        _, headers, body = await read_response(reader)
        assert headers[b"transfer-encoding"] == b"chunked" and body == b"one,two,three"
        writer.write(b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.lower().count(b"content-length") == 1 and b"content-length: 9" in head.lower()
        # No body bytes after HEAD: the next thing on the wire is the next response.
        assert (await read_response(reader))[2] == b"GET /after 0"
        writer.close()


async def test_bad_requests_get_400_and_app_errors_500() -> None:
    app = EchoApp()
    async with server(app) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        status, _, body = await read_response(reader)
        assert status.startswith(b"HTTP/1.1 400") and b"errors" in body
        assert await reader.read() == b""  # and closed
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, body = await read_response(reader)
        assert status.startswith(b"HTTP/1.1 500") and b"UNKNOWN" in body
        writer.close()


async def test_a_slow_reader_of_a_large_body_holds_back_the_client() -> None:
    app = EchoApp()
    size = 32 * 1024 * 1024
    async with server(app) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"PUT /slow HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
        piece = b"p" * (1024 * 1024)
        for _ in range(size // len(piece)):
            writer.write(piece)
            await writer.drain()
        assert (await read_response(reader))[2] == b"PUT /slow %d" % size
        # Reading paused at HIGH_WATER: what waited for the app stayed near it, not 32 MiB;
        # and near 1 MiB, a push's memory being a few of these pieces at once.
        assert app.max_buffered <= HIGH_WATER + 256 * 1024 <= 1280 * 1024
        writer.close()


async def test_a_client_leaving_mid_body_is_a_disconnect() -> None:
    app = EchoApp()
    async with server(app) as port:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"PUT /gone HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly some")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()
        for _ in range(100):
            if app.events:
                break
            await asyncio.sleep(0.02)
        assert app.events == ["disconnect"]


async def test_an_early_answer_closes_the_connection_without_a_reset() -> None:
    """The app refuses before reading the body: the answer says ``connection: close``, the
    rest of the body is read and dropped (closing at once would reset the connection under the
    answer), and the connection ends instead of reading a next request."""
    app = EchoApp()
    async with server(app) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"PUT /early HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n")
        await writer.drain()
        status, headers, body = await read_response(reader)
        assert status.startswith(b"HTTP/1.1 403") and body == b"denied"
        assert headers[b"connection"] == b"close"
        writer.write(b"b" * 200000 + b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()


async def test_an_endless_request_head_is_refused() -> None:
    app = EchoApp()
    async with server(app) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /h HTTP/1.1\r\nHost: x\r\n")
        line = b"X-Filler: " + b"f" * 8000 + b"\r\n"
        for _ in range(200):  # 1.6 MB of headers, never ended
            writer.write(line)
        status, _, _ = await read_response(reader)
        assert status.startswith(b"HTTP/1.1 431")
        writer.close()


async def test_idle_and_slow_head_connections_are_closed() -> None:
    app = EchoApp()
    async with server(app, Limits(idle_timeout=0.3)) as port:
        silent_reader, _ = await asyncio.open_connection("127.0.0.1", port)
        slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", port)
        slow_writer.write(b"GET /never-ends HTTP/1.1\r\nHost: x\r\n")  # no blank line
        served_reader, served_writer = await asyncio.open_connection("127.0.0.1", port)
        served_writer.write(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await read_response(served_reader))[2] == b"GET /one 0"
        for reader in (silent_reader, slow_reader, served_reader):
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server


async def test_a_client_that_half_closes_after_its_requests_gets_every_answer() -> None:
    app = EchoApp()
    async with server(app) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        # More than one parser slice: some requests are still unparsed when the client leaves.
        writer.write(b"".join(b"GET /%03d HTTP/1.1\r\nHost: x\r\n\r\n" % n for n in range(300)))
        writer.write_eof()
        bodies = [(await read_response(reader))[2] for _ in range(300)]
        assert bodies == [b"GET /%03d 0" % n for n in range(300)]
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()


async def test_a_broken_body_behind_a_running_request_is_refused_after_its_answer() -> None:
    """A chunked body with a bad chunk size arrives while an earlier request is still being
    answered: that answer comes first, then 400, then the connection closes."""
    app = EchoApp()
    async with server(app) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"PUT /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
            b"PATCH /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
        )
        assert (await read_response(reader))[2] == b"PUT /slow 3"
        status, _, body = await read_response(reader)
        assert status.startswith(b"HTTP/1.1 400") and b'"detail"' in body
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
