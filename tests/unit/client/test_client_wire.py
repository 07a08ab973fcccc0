"""The upstream HTTP/1.1 client against real loopback servers that answer in scripted ways:
body framings, connection reuse, idle connections the peer closed, early answers to uploads,
timeouts, back-pressure and redirects."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from ocigate.client import ClientOptions, RegistryClient
from ocigate.client.connection import HIGH_WATER, ProtocolError, Timeout, TransportError
from ocigate.client.pool import Pool
from ocigate.oci.errors import BadGateway, GatewayTimeout

pytestmark = pytest.mark.anyio

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Peer:
    """A loopback server running ``handler`` per connection, counting connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@asynccontextmanager
async def peer(handler: Handler) -> AsyncIterator[Peer]:
    found = Peer(handler)
    server = await asyncio.start_server(found._serve, "127.0.0.1", 0)
    found.port = server.sockets[0].getsockname()[1]
    try:
        yield found
    finally:
        server.close()


def new_pool(read_timeout: float = 5.0) -> Pool:
    return Pool(ssl.create_default_context(), 2.0, read_timeout)


async def read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    """One request: its request line, headers, and body (by length or chunks)."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = {}
    for line in head[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.lower()] = value.strip()
    body = b""
    if headers.get("transfer-encoding") == "chunked":
        while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        await reader.readexactly(2)
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    return head[0], headers, body


async def keep_answering(
    answer: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    while True:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()


async def test_keep_alive_reuses_one_connection() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    async with peer(lambda r, w: keep_answering(answer, r, w)) as server:
        pool = new_pool()
        for _ in range(5):
            response = await pool.request("GET", server.url + "/v2/", {}, None)
            assert response.status_code == 200 and await response.aread() == b"hello"
        assert server.connections == 1
        await pool.aclose()


async def test_chunked_body_with_extensions_and_trailers() -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    async with peer(lambda r, w: keep_answering(answer, r, w)) as server:
        pool = new_pool()
        for _ in range(2):
            response = await pool.request("GET", server.url + "/x", {}, None)
            assert await response.aread() == b"hello world"
        assert server.connections == 1  # the chunked body ended cleanly: reused
        await pool.aclose()


async def test_body_framed_by_close_is_read_to_the_end_and_not_reused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 300_000)
        await writer.drain()

    async with peer(handler) as server:
        pool = new_pool()
        for _ in range(2):
            response = await pool.request("GET", server.url + "/x", {}, None)
            assert await response.aread() == b"x" * 300_000
        assert server.connections == 2
        await pool.aclose()


async def test_idle_connection_closed_by_the_peer_is_replaced() -> None:
    """The peer closes after each answer without saying so: the next request must still work
    (a GET and a PUT with a replayable body alike)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    async with peer(handler) as server:
        pool = new_pool()
        for method, body in [("GET", None), ("PUT", b"{}"), ("GET", None)]:
            response = await pool.request(method, server.url + "/x", {}, body)
            assert response.status_code == 201
            await asyncio.sleep(0.05)  # let the close arrive... or not: both paths must work
        assert server.connections == 3
        await pool.aclose()


async def test_stale_connection_race_retries_a_replayable_request() -> None:
    """The peer reads the next request on a kept-alive connection and closes without an
    answer (its idle timeout struck just then): the request goes again on a new connection."""
    seen: list[str] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line, _, _ = await read_request(reader)
        seen.append(line)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await read_request(reader)  # the second request on this connection: dropped

    async with peer(handler) as server:
        pool = new_pool()
        first = await pool.request("GET", server.url + "/a", {}, None)
        assert await first.aread() == b"ok"
        second = await pool.request("PUT", server.url + "/b", {}, b"body")
        assert await second.aread() == b"ok"
        assert seen == ["GET /a HTTP/1.1", "PUT /b HTTP/1.1"]
        assert server.connections == 2
        await pool.aclose()


async def test_streamed_body_is_sent_chunked_or_by_length() -> None:
    received: list[tuple[dict[str, str], bytes]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            _, headers, body = await read_request(reader)
            received.append((headers, body))
            writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")

    async def pieces() -> AsyncIterator[bytes]:
        for index in range(50):
            yield bytes([index]) * 10_000

    expected = b"".join(bytes([index]) * 10_000 for index in range(50))
    async with peer(handler) as server:
        pool = new_pool()
        response = await pool.request("PATCH", server.url + "/u", {}, pieces())
        assert response.status_code == 202
        sized = {"Content-Length": str(len(expected))}
        response = await pool.request("PATCH", server.url + "/u", sized, pieces())
        assert response.status_code == 202
        (chunked_headers, chunked), (sized_headers, plain) = received
        assert chunked_headers["transfer-encoding"] == "chunked" and chunked == expected
        assert sized_headers["content-length"] == str(len(expected)) and plain == expected
        await pool.aclose()


async def test_an_early_answer_to_an_upload_is_reported_not_lost() -> None:
    """The peer refuses after the head and closes while the body is still streaming: the
    client gets the peer's answer, not a broken pipe."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 7\r\n\r\nunknown")
        await writer.drain()

    async def endless() -> AsyncIterator[bytes]:
        for _ in range(2000):
            yield b"z" * 65536

    async with peer(handler) as server:
        pool = new_pool()
        response = await pool.request("PATCH", server.url + "/u", {}, endless())
        assert response.status_code == 404 and await response.aread() == b"unknown"
        await pool.aclose()


async def test_interim_100_continue_is_skipped() -> None:
    answer = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
    async with peer(lambda r, w: keep_answering(answer, r, w)) as server:
        pool = new_pool()
        response = await pool.request("PUT", server.url + "/x", {}, b"data")
        assert response.status_code == 201
        await pool.aclose()


@pytest.mark.parametrize(
    "answer",
    [
        b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
        b"HTTP/1.1 abc\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
    ],
)
async def test_garbage_is_a_protocol_error(answer: bytes) -> None:
    async with peer(lambda r, w: keep_answering(answer, r, w)) as server:
        with pytest.raises(ProtocolError):
            await new_pool().request("GET", server.url + "/x", {}, None)


async def test_body_shorter_than_its_length_fails() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
        await writer.drain()

    async with peer(handler) as server:
        response = await new_pool().request("GET", server.url + "/x", {}, None)
        with pytest.raises(TransportError, match="early"):
            await response.aread()


async def test_a_silent_peer_times_out() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(30)

    async with peer(handler) as server:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(Timeout):
            await new_pool(read_timeout=0.3).request("GET", server.url + "/x", {}, None)
        assert loop.time() - started < 2.0


async def test_a_slow_reader_stops_the_socket_instead_of_buffering() -> None:
    """Flat memory: with nobody reading, at most about HIGH_WATER bytes are queued."""
    size = 64 * 1024 * 1024

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        block = b"b" * (1024 * 1024)
        for _ in range(64):
            writer.write(block)
            await writer.drain()

    async with peer(handler) as server:
        response = await new_pool().request("GET", server.url + "/x", {}, None)
        await asyncio.sleep(0.5)
        stream = response._connection._stream  # type: ignore[union-attr]
        assert stream.buffered <= HIGH_WATER + 1024 * 1024
        total = 0
        async for piece in response.aiter_raw():
            total += len(piece)
        assert total == size


async def test_redirects_drop_credentials_across_origins() -> None:
    seen: dict[str, str | None] = {}

    async def target(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, headers, _ = await read_request(reader)
        seen["target"] = headers.get("authorization")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nblob")
        await writer.drain()

    async with peer(target) as elsewhere:

        async def origin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                line, headers, _ = await read_request(reader)
                seen[line.split()[1]] = headers.get("authorization")
                if line.startswith("GET /v2/ "):
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                else:
                    location = f"{elsewhere.url}/signed?x=1".encode()
                    writer.write(b"HTTP/1.1 307 Temporary\r\nLocation: %s\r\n" % location)
                    writer.write(b"Content-Length: 0\r\n\r\n")

        async with peer(origin) as registry:
            client = RegistryClient(ClientOptions(url=registry.url, token="secret"))
            response = await client.request("GET", "/v2/r/blobs/x", scope="repository:r:pull")
            assert response.status_code == 200 and await response.aread() == b"blob"
            assert seen["/v2/r/blobs/x"] == "Bearer secret"
            assert seen["target"] is None
            await client.aclose()


async def test_refused_connection_is_a_bad_gateway_and_hanging_one_a_timeout() -> None:
    async with peer(lambda r, w: asyncio.sleep(30)) as hanging:
        client = RegistryClient(
            ClientOptions(url=hanging.url, token="t", read_timeout=0.3, retries=0)
        )
        with pytest.raises(GatewayTimeout):
            await client.request("GET", "/v2/", scope="")
        await client.aclose()


async def test_connections_per_origin_are_capped_and_requests_wait_for_one() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            await asyncio.sleep(0.05)
            writer.write(answer)
            await writer.drain()

    async with peer(slow) as server:
        pool = Pool(ssl.create_default_context(), 5.0, 5.0, max_connections=2)

        async def fetch() -> bytes:
            response = await pool.request("GET", server.url + "/x", {}, None)
            return await response.aread()

        assert await asyncio.gather(*(fetch() for _ in range(10))) == [b"ok"] * 10
        assert server.connections == 2
        await pool.aclose()


async def test_waiting_for_a_busy_pool_times_out_and_a_dropped_response_frees_its_slot() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    async with peer(lambda r, w: keep_answering(answer, r, w)) as server:
        pool = Pool(ssl.create_default_context(), 0.3, 5.0, max_connections=1)
        held = await pool.request("GET", server.url + "/x", {}, None)  # body never read
        with pytest.raises(Timeout, match="busy"):
            await pool.request("GET", server.url + "/y", {}, None)
        del held  # garbage: its connection is closed and the slot freed
        response = await pool.request("GET", server.url + "/z", {}, None)
        assert await response.aread() == b"ok"
        await pool.aclose()


async def test_a_detached_body_is_read_from_the_socket_and_frees_its_slot() -> None:
    """``detach`` hands over what arrived with the head plus the socket for the rest; after
    ``aclose`` the connection is gone (never reused) and the pool has room again."""
    release = asyncio.Event()
    rest = b"r" * 200_000

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\nhead-" % (5 + len(rest)))
        await writer.drain()
        await release.wait()
        writer.write(rest)
        await writer.drain()
        await read_request(reader)  # never comes: the client does not reuse this connection

    async with peer(handler) as server:
        pool = Pool(ssl.create_default_context(), 2.0, 5.0, max_connections=1)
        response = await pool.request("GET", server.url + "/x", {}, None)
        assert response.remaining == 5 + len(rest)
        await asyncio.sleep(0.05)  # the first body bytes arrive with or after the head
        detached = response.detach()
        assert detached is not None
        received, fd = detached
        assert received == b"head-"
        release.set()
        loop = asyncio.get_running_loop()
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.setblocking(False)
            got = b""
            while len(got) < len(rest):
                got += await loop.sock_recv(sock, 65536)
        assert got == rest
        with pytest.raises(RuntimeError):
            await response.aread()  # the body is no longer the response's to read
        await response.aclose()
        with pytest.raises(OSError):
            os.fstat(fd)  # closed with the response
        again = await pool.request("HEAD", server.url + "/y", {}, None)
        assert again.status_code == 200
        assert server.connections == 2
        await pool.aclose()


async def test_a_url_on_another_origin_gets_no_credentials() -> None:
    """A Location the upstream handed out, on another port of the same host, is another origin:
    it gets no Authorization, whichever way it is asked."""
    seen: list[str | None] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            _, headers, _ = await read_request(reader)
            seen.append(headers.get("authorization"))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    async with peer(answer) as registry, peer(answer) as elsewhere:
        client = RegistryClient(ClientOptions(url=registry.url, token="secret"))
        for url in (f"{registry.url}/v2/r/tags/list", f"{elsewhere.url}/v2/r/tags/list"):
            response = await client.request("GET", url, scope="repository:r:pull")
            assert await client.read(response) == b"ok"
        assert seen == ["Bearer secret", None]
        await client.aclose()


async def test_bodies_read_whole_are_capped_and_broken_ones_are_bad_gateways() -> None:
    sent = 0

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        line, _, _ = await read_request(reader)
        if " /short " in line:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
            await writer.drain()
            return
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        piece = b"x" * 65536
        while sent < 64 * 1024 * 1024:
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            sent += len(piece)

    async with peer(endless) as registry:
        client = RegistryClient(ClientOptions(url=registry.url, token="t", retries=0))
        response = await client.request("GET", "/big", scope="")
        with pytest.raises(BadGateway, match="cap"):
            await client.read(response, limit=1024 * 1024)
        short = await client.request("GET", "/short", scope="")
        with pytest.raises(BadGateway, match="ended 91 bytes early"):
            await client.read(short)
        await client.aclose()
    assert sent < 16 * 1024 * 1024, f"{sent} bytes were read for a 1 MiB cap"
