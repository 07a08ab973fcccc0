"""Keep-alive HTTP/1.1 connections per origin, and one request-response exchange over them.

A request on a connection that sat idle may meet the peer's idle timeout: the peer closed it
just before our bytes arrived. Such a request was never processed, so when no response byte
came back it is sent once more on a new connection, provided its body can be replayed. A
streamed body cannot be, so it only goes out on a connection idle for under
``STREAM_REUSE_SECONDS`` (far below any server's idle timeout) or on a new one.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Mapping
from urllib.parse import urlsplit

from .. import __version__
from ..flow import settle
from .connection import (
    Body,
    Connection,
    ProtocolError,
    Response,
    Timeout,
    TransportError,
)

MAX_CONNECTIONS = 256  # per origin, busy and idle together; further requests wait for one
MAX_IDLE = 64  # idle connections kept per origin
IDLE_SECONDS = 20.0  # an idle connection older than this is closed, not reused
STREAM_REUSE_SECONDS = 2.0
DEFAULT_PORTS = {"http": 80, "https": 443}
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

Origin = tuple[str, str, int]


class Pool:
    def __init__(
        self,
        tls: ssl.SSLContext,
        connect_timeout: float,
        read_timeout: float,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self._tls = tls
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max_connections = max_connections
        self._idle: dict[Origin, list[Connection]] = {}
        self._open: dict[Origin, int] = {}
        self._waiting: dict[Origin, deque[asyncio.Future[bool]]] = {}
        self._agent = f"ocigate/{__version__}"

    async def request(
        self, method: str, url: str, headers: Mapping[str, str], body: Body
    ) -> Response:
        """Send one request and read the response head; the body is left to the caller."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ProtocolError(f"cannot request {url!r}: not an http(s) URL")
        origin = (scheme, parts.hostname, parts.port or DEFAULT_PORTS[scheme])
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head, chunked = self._head(method, target, parts.netloc, headers, body)
        streamed = body is not None and not isinstance(body, bytes)
        max_idle = STREAM_REUSE_SECONDS if streamed else IDLE_SECONDS
        connection = self._checkout(origin, max_idle)
        if connection is not None:
            try:
                return await self._exchange(method, url, origin, connection, head, body, chunked)
            except _Unanswered:
                if streamed:
                    raise TransportError("the upstream closed the connection") from None
        connection = await self._connect(origin, max_idle)
        try:
            return await self._exchange(method, url, origin, connection, head, body, chunked)
        except _Unanswered as exc:
            raise TransportError(str(exc)) from None

    async def _exchange(
        self,
        method: str,
        url: str,
        origin: Origin,
        connection: Connection,
        head: bytes,
        body: Body,
        chunked: bool,
    ) -> Response:
        try:
            failed: TransportError | None = None
            try:
                await connection.send(head, body, chunked)
            except Timeout:
                raise
            except TransportError as exc:
                failed = exc  # the peer may have answered early (an error) and closed: read on
            try:
                status, headers, http10 = await connection.receive_head()
            except (Timeout, ProtocolError):
                raise
            except TransportError as exc:
                raise _Unanswered(str(failed or exc)) from exc
        except BaseException:
            connection.close()
            raise

        def release(done: Connection, keep: bool) -> None:
            self._release(origin, done, keep)

        # After an early answer our request was cut short: the connection cannot carry another.
        reusable = failed is None
        return Response(method, url, status, headers, http10, connection, release, reusable)

    def _head(
        self, method: str, target: str, host: str, headers: Mapping[str, str], body: Body
    ) -> tuple[bytes, bool]:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", f"User-Agent: {self._agent}"]
        length: str | None = None
        for name, value in headers.items():
            if name.lower() == "content-length":
                length = value
                continue
            lines.append(f"{name}: {value}")
        chunked = False
        if isinstance(body, bytes):
            lines.append(f"Content-Length: {len(body)}")
        elif body is not None and length is not None:
            lines.append(f"Content-Length: {length}")
        elif body is not None:
            lines.append("Transfer-Encoding: chunked")
            chunked = True
        elif method in BODY_METHODS:
            lines.append("Content-Length: 0")
        text = "\r\n".join(lines)
        breaks = len(lines) - 1
        if text.count("\n") != breaks or text.count("\r") != breaks or " " in target:
            raise ProtocolError("refusing a request with line breaks or spaces in its head")
        return (text + "\r\n\r\n").encode("latin-1"), chunked

    def _checkout(self, origin: Origin, max_idle_seconds: float) -> Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if connection.usable() and now - connection.idle_since < max_idle_seconds:
                return connection
            if connection.usable() and now - connection.idle_since < IDLE_SECONDS:
                idle.append(connection)  # too old for a stream, fine for the next request
                return None
            connection.close()
        return None

    def _release(self, origin: Origin, connection: Connection, keep: bool) -> None:
        idle = self._idle.setdefault(origin, [])
        if keep and len(idle) < MAX_IDLE and connection.usable():
            connection.idle_since = time.monotonic()
            idle.append(connection)
            self._wake(origin)
        else:
            connection.close()

    def _closed(self, origin: Origin) -> None:
        self._open[origin] -= 1
        self._wake(origin)

    def _wake(self, origin: Origin) -> None:
        """Tell one request waiting for a connection to ``origin`` to look again."""
        waiting = self._waiting.get(origin)
        while waiting:
            waiter = waiting.popleft()
            if not waiter.done():
                waiter.set_result(True)
                return

    async def _slot(self, origin: Origin, max_idle_seconds: float) -> Connection | None:
        """Wait until a new connection may be opened (None) or an idle one is free."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._connect_timeout
        while self._open.get(origin, 0) >= self._max_connections:
            idle = self._idle.get(origin)
            if idle:  # idle but unfit (too old for a stream): make room
                idle.pop(0).close()
                continue
            waiter: asyncio.Future[bool] = loop.create_future()
            self._waiting.setdefault(origin, deque()).append(waiter)
            timer = loop.call_at(deadline, settle, waiter, False)
            try:
                if not await waiter:
                    raise Timeout(
                        f"all {self._max_connections} connections to {origin[1]}:{origin[2]} "
                        f"stayed busy for {self._connect_timeout} s"
                    )
            finally:
                timer.cancel()
            found = self._checkout(origin, max_idle_seconds)
            if found is not None:
                return found
        return None

    async def _connect(self, origin: Origin, max_idle_seconds: float) -> Connection:
        found = await self._slot(origin, max_idle_seconds)
        if found is not None:
            return found
        scheme, host, port = origin
        secure = scheme == "https"
        self._open[origin] = self._open.get(origin, 0) + 1
        try:
            async with asyncio.timeout(self._connect_timeout):
                connection = await Connection.open(
                    host, port, self._tls if secure else None, self._read_timeout
                )
        except BaseException as exc:
            self._closed(origin)
            if isinstance(exc, TimeoutError):
                raise Timeout(
                    f"no connection to {host}:{port} in {self._connect_timeout} s"
                ) from exc
            if isinstance(exc, OSError):  # refused, unreachable, TLS failures (ssl.SSLError)
                raise TransportError(f"cannot connect to {host}:{port}: {exc}") from exc
            raise
        connection.on_close = lambda: self._closed(origin)
        return connection

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


class _Unanswered(TransportError):
    """The connection failed before any response came: the request was not processed."""
