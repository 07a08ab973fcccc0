"""One HTTP/1.1 client connection (an asyncio protocol), and the response read from it.

Why our own and not httpx: a gateway's cost per forwarded request is dominated by its client.
httpx/httpcore spent ~2 ms of CPU per small request here (pool bookkeeping, socket polls on
every checkout); this spends tens of microseconds. It speaks only what registries need:
``Content-Length`` or chunked request bodies, and responses framed by length, chunks or close.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any, cast

from ..bodies import join_capped
from ..flow import ReadFlow, WriteFlow, settle
from ..oci.numbers import parse_decimal

READ_SIZE = 1024 * 1024  # the largest piece one body read hands on
HIGH_WATER = 2 * 1024 * 1024  # stop reading from the socket with this much unread
LOW_WATER = 512 * 1024  # and start again below this
MAX_HEAD = 64 * 1024  # response status line and headers together
# The largest body read whole into memory (tag lists, token answers, error bodies): an upstream
# must not be able to make the gateway hold what it likes. Blobs are streamed, never read whole.
MAX_BODY = 4 * 1024 * 1024
NO_BODY_STATUSES = frozenset({204, 304})

Body = bytes | AsyncIterable[bytes] | None


class TransportError(Exception):
    """The exchange failed below HTTP: refused, reset, closed early, or nonsense was spoken."""


class ProtocolError(TransportError):
    """The peer's bytes were no HTTP/1.1 response we can read."""


class Timeout(TransportError):
    """The peer was too slow to connect, answer or accept bytes."""


class TooLarge(TransportError):
    """A body read into memory is larger than its cap."""


class Headers(dict[str, str]):
    """Response headers by lower-case name; repeated fields joined with ", " (RFC 9110 5.3)."""


class _Stream(ReadFlow, WriteFlow, asyncio.Protocol):
    """Received data as the ``bytes`` objects the event loop made, queued without copying (a
    StreamReader copies every byte into and out of one bytearray: that halved blob relays)."""

    def __init__(self) -> None:
        ReadFlow.__init__(self, HIGH_WATER, LOW_WATER)
        WriteFlow.__init__(self)
        self.transport: asyncio.Transport | None = None
        self.pieces: deque[bytes] = deque()
        self.closed = False  # the peer finished sending, or the connection is gone
        self.error: BaseException | None = None
        self._waiter: asyncio.Future[bool] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.pieces.append(data)
        self._received(len(data))
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False  # close our side too

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        self.error = exc
        self._wake()
        self._release_writer()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(True)

    async def wait_data(self, seconds: float) -> bool:
        """Until a piece arrives or the peer is done (True), or ``seconds`` pass (False).
        A bare timer on the future: ``asyncio.timeout`` costs several times more per wait."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiter = waiter
        timer = loop.call_later(seconds, settle, waiter, False)
        try:
            return await waiter
        finally:
            timer.cancel()
            self._waiter = None

    async def drain(self, seconds: float) -> bool:
        """Until the transport takes more bytes (True) or ``seconds`` pass (False)."""
        if not self.closed and not await self.writable(seconds):
            return False
        if self.closed and self.error is not None:
            raise TransportError(f"connection lost while sending: {self.error}")
        return True

    def take(self, size: int) -> bytes:
        """At most ``size`` bytes of what is queued (the caller checked there is some)."""
        piece = self.pieces.popleft()
        if len(piece) > size:
            self.pieces.appendleft(piece[size:])
            piece = piece[:size]
        self._consumed(len(piece))
        return piece

    def give_back(self, piece: bytes) -> None:
        """Unread ``piece``: it is the next one returned."""
        if piece:
            self.pieces.appendleft(piece)
            self.buffered += len(piece)  # back in the queue, not newly received


class Connection:
    """A keep-alive connection; one exchange at a time."""

    def __init__(self, stream: _Stream, read_timeout: float) -> None:
        assert stream.transport is not None
        self._stream = stream
        self._transport = stream.transport
        self.read_timeout = read_timeout
        self.idle_since = time.monotonic()
        self.on_close: Callable[[], None] | None = None  # told once, when closed

    @classmethod
    async def open(
        cls, host: str, port: int, tls: ssl.SSLContext | None, read_timeout: float
    ) -> Connection:
        loop = asyncio.get_running_loop()
        _, stream = await loop.create_connection(
            _Stream, host, port, ssl=tls, server_hostname=host if tls is not None else None
        )
        return cls(stream, read_timeout)

    def usable(self) -> bool:
        """False once the peer closed it or sent bytes nobody asked for."""
        stream = self._stream
        return not (stream.closed or stream.pieces or self._transport.is_closing())

    def close(self) -> None:
        self._transport.close()
        on_close, self.on_close = self.on_close, None
        if on_close is not None:
            on_close()

    async def send(self, head: bytes, body: Body, chunked: bool) -> None:
        """Write a request head and its body, waiting for the peer to take the bytes."""
        transport = self._transport
        try:
            if body is None or isinstance(body, bytes):
                transport.write(head + body if body else head)
                await self._drain()
                return
            transport.write(head)
            async for piece in body:
                if not piece:
                    continue
                if chunked:
                    transport.writelines((b"%x\r\n" % len(piece), piece, b"\r\n"))
                else:
                    transport.write(piece)
                await self._drain()
            if chunked:
                transport.write(b"0\r\n\r\n")
            await self._drain()
        except (ConnectionError, OSError, RuntimeError) as exc:  # RuntimeError: write on closed
            raise TransportError(f"connection lost while sending: {exc}") from exc

    async def _drain(self) -> None:
        if self._stream.closed:
            raise TransportError("the peer closed the connection")
        if not await self._stream.drain(self.read_timeout):
            raise Timeout("the peer stopped taking the request body")

    async def _more(self, what: str) -> None:
        """Wait for more data; TransportError when none will come."""
        stream = self._stream
        if stream.closed:
            raise TransportError(f"the connection closed {what}")
        if not await stream.wait_data(self.read_timeout):
            raise Timeout(f"nothing received in {self.read_timeout} s {what}")
        if not stream.pieces and stream.closed:
            raise TransportError(f"the connection closed {what}")

    async def _read_until(self, separator: bytes, limit: int, what: str) -> bytes:
        stream = self._stream
        data = b""
        while True:
            if stream.pieces:
                data += stream.take(limit + len(separator))
                found = data.find(separator)
                if found >= 0:
                    cut = found + len(separator)
                    stream.give_back(data[cut:])
                    return data[:cut]
                if len(data) > limit:
                    raise ProtocolError(f"no end of line within {limit} bytes {what}")
                continue
            try:
                await self._more(what)
            except TransportError:
                stream.give_back(data)
                raise

    async def receive_head(self) -> tuple[int, Headers, bool]:
        """``(status, headers, http10)`` of the next final (non-1xx) response."""
        while True:
            raw = await self._read_until(b"\r\n\r\n", MAX_HEAD, "before a response")
            status, headers, http10 = _parse_head(raw)
            if status >= 200:  # 1xx (100 Continue, 103 Early Hints) precede the answer
                return status, headers, http10

    async def read(self, size: int) -> bytes:
        """Up to ``size`` bytes, as soon as any arrive; ``b""`` once the peer is done."""
        stream = self._stream
        if not stream.pieces:
            try:
                await self._more("in the body")
            except Timeout:
                raise
            except TransportError:
                if stream.error is not None:
                    raise
                return b""
        return stream.take(size)

    async def read_line(self) -> bytes:
        return await self._read_until(b"\r\n", 4096, "in chunked framing")

    def detach(self, limit: int) -> tuple[bytes, int] | None:
        """Stop reading and hand over the socket for the kernel to copy from: the bytes
        already received (at most ``limit``) and a duplicate of the socket's descriptor, which
        the caller closes. None over TLS (the socket carries ciphertext). The connection is
        not reused afterwards."""
        transport = self._transport
        sock = transport.get_extra_info("socket")
        if sock is None or transport.get_extra_info("ssl_object") is not None:
            return None
        transport.pause_reading()
        stream = self._stream
        received = b"".join(stream.pieces)
        stream.pieces.clear()
        stream.buffered = 0
        return received[:limit], os.dup(sock.fileno())


def _parse_head(raw: bytes) -> tuple[int, Headers, bool]:
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = parse_decimal(parts[1]) if len(parts) >= 2 and len(parts[1]) == 3 else None
    if status is None or not parts[0].startswith("HTTP/1."):
        raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    headers = Headers()
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ProtocolError(f"malformed header line: {line[:80]!r}")
        key, value = name.lower(), value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return status, headers, parts[0] == "HTTP/1.0"


class Response:
    """A response whose body is read on demand. Reading it to the end hands the connection
    back (``release``); ``aclose`` before that drops the connection."""

    def __init__(
        self,
        method: str,
        url: str,
        status: int,
        headers: Headers,
        http10: bool,
        connection: Connection,
        release: Callable[[Connection, bool], None],
        reusable: bool = True,
    ) -> None:
        self.url = url
        self.status_code = status
        self.headers = headers
        self._connection: Connection | None = connection
        self._release = release
        self._content: bytes | None = None
        close = headers.get("connection", "").lower()
        self._keep_alive = (
            reusable and "close" not in close and (not http10 or "keep-alive" in close)
        )
        self._length: int | None = None  # bytes left in a Content-Length body
        self._detached: int | None = None  # the socket's duplicate handed out by detach
        self._chunked = False
        if method == "HEAD" or status in NO_BODY_STATUSES or status < 200:
            self._length = 0
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self._chunked = True
        elif (length := parse_decimal(headers.get("content-length", "").strip())) is not None:
            self._length = length
        else:
            self._keep_alive = False  # framed by close: read to the end, never reuse
        if self._length == 0:
            self._finish()

    def _finish(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self._release(connection, self._keep_alive)

    @property
    def content(self) -> bytes:
        if self._content is None:
            raise RuntimeError("the response body was not read")
        return self._content

    def json(self) -> Any:
        return json.loads(self.content)

    async def aread(self, limit: int = MAX_BODY) -> bytes:
        """The whole body; TooLarge (the connection dropped) beyond ``limit`` bytes."""
        if self._content is None:
            if self._length is not None and self._length > limit:
                self._drop()
                raise TooLarge(f"a body of {self._length} bytes is over the {limit}-byte cap")
            content = await join_capped(self.aiter_raw(), limit)
            if content is None:
                self._drop()
                raise TooLarge(f"a body of more than {limit} bytes is over the cap")
            self._content = content
        return self._content

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body as it arrives, in pieces of at most ``READ_SIZE``."""
        if self._content is not None:
            yield self._content
            return
        connection = self._connection
        if connection is None:
            return
        if self._detached is not None:
            raise RuntimeError("the body was handed over by detach")
        try:
            if self._chunked:
                async for piece in self._chunks(connection):
                    yield piece
            elif self._length is not None:
                while self._length > 0:
                    piece = await connection.read(min(self._length, READ_SIZE))
                    if not piece:
                        raise TransportError(f"response body ended {self._length} bytes early")
                    self._length -= len(piece)
                    yield piece
            else:
                while piece := await connection.read(READ_SIZE):
                    yield piece
        except BaseException:
            self._drop()
            raise
        self._finish()

    async def _chunks(self, connection: Connection) -> AsyncIterator[bytes]:
        while True:
            line = await connection.read_line()
            field = line.split(b";", 1)[0].strip()
            try:
                if not 0 < len(field) <= 16 or not field.isalnum():  # 16 hex digits: 64 bits
                    raise ValueError
                size = int(field, 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size line {line[:40]!r}") from None
            if size == 0:
                while await connection.read_line() != b"\r\n":
                    pass  # trailers: ignored
                return
            while size > 0:
                piece = await connection.read(min(size, READ_SIZE))
                if not piece:
                    raise TransportError("response ended inside a chunk")
                size -= len(piece)
                yield piece
            if await connection.read_line() != b"\r\n":
                raise ProtocolError("chunk not followed by CRLF")

    @property
    def remaining(self) -> int | None:
        """Bytes of a Content-Length body not read yet (None for other framings)."""
        return self._length

    def detach(self) -> tuple[bytes, int] | None:
        """The unread rest of a Content-Length body as (bytes already received, a socket
        descriptor to copy the remainder from), for a zero-copy relay; None when that is not
        possible. The descriptor stays ours: ``aclose`` closes it with the connection."""
        connection = self._connection
        if connection is None or self._chunked or not self._length or self._detached is not None:
            return None
        detached = connection.detach(self._length)
        if detached is not None:
            self._detached = detached[1]
            self._keep_alive = False
        return detached

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if self._detached is not None:
            os.close(self._detached)
            self._detached = None
        if connection is not None:
            self._release(connection, False)

    def __del__(self) -> None:
        # Dropped unread and unclosed: free the connection, or the pool would count it forever.
        if self._detached is not None:
            os.close(self._detached)
        if self._connection is not None:
            with contextlib.suppress(Exception):  # e.g. the loop is already closed
                self._connection.close()

    async def aclose(self) -> None:
        """Done with the response: a short unread body is drained so the connection can be
        reused, anything else closes it."""
        if self._connection is None:
            return
        if self._length is not None and self._length <= 64 * 1024 and self._keep_alive:
            with contextlib.suppress(TransportError):  # a failed read dropped the connection
                await self.aread()
            return
        self._drop()
