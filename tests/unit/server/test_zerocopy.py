"""ASGI's zero-copy extension in the built-in server: file ranges sent with ``sendfile``, a
socket's bytes spliced through, both framed right (by length or chunked) and followed by the
next response on the same connection; stalls and short sources end the copy."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from ocigate.server import zerocopy
from ocigate.server.zerocopy import ClientGone, CopyTimeout, copy_fd

from .test_builtin_server import EchoApp, read_response, server

pytestmark = pytest.mark.anyio

DATA = os.urandom(3 * 1024 * 1024 + 17)  # bigger than the socket buffers and the pipe


class ZeroCopyApp(EchoApp):
    """``/file`` sends bytes 5.. of a file; ``/unsized`` the same without a Content-Length;
    ``/socket`` a prefix, then the rest spliced from a socket another task fills."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.writers: list[asyncio.Task[None]] = []
        self.finished: list[str] = []  # file routes whose send returned
        self.failed: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert "http.response.zerocopy" in scope["extensions"]
        route = scope["path"]
        if route not in ("/file", "/unsized", "/socket"):
            await super().__call__(scope, receive, send)
            return
        count = (len(DATA) if route == "/socket" else self.path.stat().st_size) - 5
        headers = [] if route == "/unsized" else [(b"content-length", b"%d" % count)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if route == "/socket":
            await self._from_socket(send, count)
            return
        try:
            with self.path.open("rb") as file:
                message = {"type": "http.response.zerocopy", "file": file, "offset": 5}
                await send({**message, "count": count})
        except Exception:
            self.failed.append(route)
            raise
        self.finished.append(route)

    async def _from_socket(self, send: Any, count: int) -> None:
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        self.writers.append(asyncio.ensure_future(_feed(theirs, DATA[1000:])))
        try:
            await send({"type": "http.response.body", "body": DATA[5:1000], "more_body": True})
            await send({"type": "http.response.zerocopy", "file": ours, "count": count - 995})
        finally:
            ours.close()


async def _feed(sock: socket.socket, data: bytes) -> None:
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_sendall(sock, data)
    finally:
        sock.close()


@pytest.fixture
def blob_file(tmp_path: Path) -> Path:
    path = tmp_path / "blob"
    path.write_bytes(DATA)
    return path


@pytest.mark.parametrize("route", ["/file", "/unsized", "/socket"])
async def test_zero_copy_bodies_arrive_whole_and_the_connection_goes_on(
    blob_file: Path, route: str
) -> None:
    app = ZeroCopyApp(blob_file)
    async with server(app) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % route.encode()
            + b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        status, headers, body = await read_response(reader)
        assert status.startswith(b"HTTP/1.1 200")
        assert body == DATA[5:]
        if route == "/unsized":
            assert headers[b"transfer-encoding"] == b"chunked"
        # Nothing stray after the copied bytes: the pipelined request's answer comes next.
        assert (await read_response(reader))[2] == b"GET /next 0"
        writer.close()
    await asyncio.gather(*app.writers)


async def test_head_sends_no_bytes(blob_file: Path) -> None:
    app = ZeroCopyApp(blob_file)
    async with server(app) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"HEAD /file HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"content-length: %d" % (len(DATA) - 5) in head
        assert (await read_response(reader))[2] == b"GET /next 0"
        writer.close()


async def test_a_client_that_stops_reading_is_dropped(blob_file: Path) -> None:
    ours, theirs = socket.socketpair()  # nobody reads ``theirs``
    ours.setblocking(False)
    try:
        with blob_file.open("rb") as file, pytest.raises(ClientGone):
            await copy_fd(ours.fileno(), file.fileno(), 0, len(DATA), 0.2, 30.0)
    finally:
        ours.close()
        theirs.close()


async def test_a_silent_source_times_out_after_its_own_timeout() -> None:
    """The source's silence is judged by its own timeout (the upstream's read timeout), not
    by the one for a client that takes no bytes."""
    out, sink = socket.socketpair()
    source, feeder = socket.socketpair()  # ``feeder`` never sends
    out.setblocking(False)
    source.setblocking(False)
    try:
        started = time.monotonic()
        with pytest.raises(CopyTimeout):
            await copy_fd(out.fileno(), source.fileno(), None, 100, 30.0, 0.2)
        assert time.monotonic() - started < 5
    finally:
        for sock in (out, sink, source, feeder):
            sock.close()


async def test_a_client_leaving_mid_copy_closes_quietly(tmp_path: Path) -> None:
    """A client hanging up during a copy is no application error: the app returns normally
    and the server goes on serving."""
    big = tmp_path / "big"
    big.write_bytes(DATA * 20)  # far more than the socket buffers hold
    app = ZeroCopyApp(big)
    async with server(app) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.transport.set_write_buffer_limits(0)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        writer.write(b"GET /file HTTP/1.1\r\nHost: x\r\n\r\n")
        await reader.readexactly(4096)
        writer.transport.abort()  # a reset, with most of the body unsent
        for _ in range(100):
            if app.finished:
                break
            await asyncio.sleep(0.02)
        assert app.finished == ["/file"] and not app.failed
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await read_response(reader))[2] == b"GET /next 0"
        writer.close()


async def test_a_source_ending_early_is_an_error() -> None:
    out, sink = socket.socketpair()
    source, feeder = socket.socketpair()
    out.setblocking(False)
    source.setblocking(False)
    feeder.sendall(b"only this")
    feeder.close()
    try:
        with pytest.raises(ConnectionError):
            await copy_fd(out.fileno(), source.fileno(), None, 100, 5.0, 5.0)
        assert sink.recv(100) == b"only this"
    finally:
        for sock in (out, sink, source):
            sock.close()


async def test_a_trickling_tcp_source_wakes_the_copy_per_low_water_mark_not_per_piece(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A source sending many small pieces (an object store's socket) wakes the copy once per
    ``SOURCE_LOWAT`` bytes, and the last bytes, fewer than that, still arrive at once."""
    waits = 0
    real_wait = zerocopy._wait

    async def counted(readable: int | None, writable: int | None, stall: float) -> None:
        nonlocal waits
        waits += 1
        await real_wait(readable, writable, stall)

    monkeypatch.setattr(zerocopy, "_wait", counted)
    payload = os.urandom(3 * zerocopy.SOURCE_LOWAT + 12_345)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        feeder = socket.create_connection(listener.getsockname())
        source, _ = listener.accept()
    out, sink = socket.socketpair()
    out.setblocking(False)
    source.setblocking(False)
    received = bytearray()

    def feed() -> None:
        for at in range(0, len(payload), 4096):
            feeder.sendall(payload[at : at + 4096])
            time.sleep(0.0005)

    def drain() -> None:
        while len(received) < len(payload):
            received.extend(sink.recv(1 << 20))

    try:
        fed = asyncio.ensure_future(asyncio.to_thread(feed))
        drained = asyncio.ensure_future(asyncio.to_thread(drain))
        started = time.monotonic()
        await copy_fd(out.fileno(), source.fileno(), None, len(payload), 5.0, 5.0)
        await asyncio.gather(fed, drained)
        assert time.monotonic() - started < 5
    finally:
        for sock in (out, sink, source, feeder):
            sock.close()
    assert bytes(received) == payload
    pieces = len(payload) // 4096
    print(f"{waits} wake-ups for {pieces} pieces")
    assert waits <= 12 < pieces
