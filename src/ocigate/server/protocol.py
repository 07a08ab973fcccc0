"""An HTTP/1.1 server connection (asyncio protocol, httptools parser) running an ASGI app.

Why our own: on this project's hot paths (a manifest HEAD is ~25 µs of application work) the
server's own cost dominates. Under granian the same app answered ~7.7k HEAD/s here (uvicorn
fewer); under this connection, which writes each small response in one system call, ~12k to 14k.

What it does: keep-alive and pipelined requests (answered in order, one at a time); request
bodies streamed to the app with back-pressure (reading pauses while ``HIGH_WATER`` bytes wait);
``Expect: 100-continue``; responses framed by the app's ``Content-Length`` or else chunked, with
the head written together with the first body bytes; ASGI's ``http.response.zerocopy``
extension (a file or socket copied into the client's socket by the kernel: see ``zerocopy``);
``http.disconnect`` when the client goes away; an idle keep-alive timeout; ``400`` for requests
it cannot parse.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from email.utils import formatdate
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote_to_bytes

import httptools

from ..flow import ReadFlow, WriteFlow
from .zerocopy import ClientGone, copy_fd, relay_fd

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Any, Any, Any], Awaitable[None]]  # an ASGI application

HIGH_WATER = 4 * 1024 * 1024  # request body bytes waiting for the app: stop reading
LOW_WATER = 1024 * 1024  # and read again below this
IDLE_TIMEOUT = 30.0  # seconds a connection may sit without a whole request head
DISCARD_LIMIT = 16 * 1024 * 1024  # unread body bytes dropped after an early answer, at most
MAX_HEAD = 1024 * 1024  # request line and headers of one request
NO_BODY = frozenset({204, 304})
_EXTENSIONS: dict[str, dict[str, Any]] = {"http.response.zerocopy": {}}
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
log = logging.getLogger("ocigate.server")

_date: tuple[int, bytes] = (0, b"")


def _date_header() -> bytes:
    """``Date`` (RFC 9110 6.6.1: an origin server with a clock sends it), formatted once a
    second."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, b"date: " + formatdate(now, usegmt=True).encode() + b"\r\n")
    return _date[1]


class _Cycle:
    """One request and its response."""

    __slots__ = (
        "body",
        "chunked",
        "complete",
        "conn",
        "content_left",
        "delivered_end",
        "discarded",
        "discarding",
        "expect_continue",
        "head",
        "keep_alive",
        "more_body",
        "pending_head",
        "scope",
        "started",
        "waiter",
    )

    def __init__(self, conn: HttpConnection, scope: Message, keep_alive: bool, expect: bool):
        self.conn = conn
        self.scope = scope
        self.keep_alive = keep_alive
        self.head = scope["method"] == "HEAD"
        self.expect_continue = expect
        self.body: deque[bytes] = deque()
        self.more_body = True  # the request body has not ended yet
        self.delivered_end = False  # the app was handed the body's end
        self.discarding = False  # answered; the rest of the body is being read and dropped
        self.discarded = 0
        self.waiter: asyncio.Future[None] | None = None
        self.started = False  # response head written (or buffered)
        self.complete = False
        self.chunked = False
        self.pending_head = b""
        self.content_left: int | None = None

    # --- request body -----------------------------------------------------------------------

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def receive(self) -> Message:
        conn = self.conn
        if self.expect_continue and self.more_body:
            self.expect_continue = False
            conn.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        while True:
            if self.body or (not self.more_body and not self.delivered_end):
                data = b"".join(self.body)
                self.body.clear()
                conn.body_taken(len(data))
                self.delivered_end = not self.more_body
                return {"type": "http.request", "body": data, "more_body": self.more_body}
            if conn.closed or self.complete:
                return {"type": "http.disconnect"}
            # Body pending, or all of it delivered: wait for bytes or for the client to leave.
            await self._wait()

    async def _wait(self) -> None:
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    # --- response -----------------------------------------------------------------------------

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("response already started")
            self.started = True
            status = message["status"]
            lines = [b"HTTP/1.1 %d %s\r\n" % (status, _reason(status))]
            length: int | None = None
            for name, value in message.get("headers", ()):
                lowered = name.lower()
                if lowered == b"content-length":
                    length = int(value)
                    continue
                if lowered == b"connection" and value.lower() == b"close":
                    self.keep_alive = False
                    continue
                lines.append(name + b": " + value + b"\r\n")
            if length is not None:
                lines.append(b"content-length: %d\r\n" % length)
                self.content_left = 0 if self.head else length
            elif self.head or status in NO_BODY or status < 200:
                self.content_left = 0
            else:
                self.chunked = True
                lines.append(b"transfer-encoding: chunked\r\n")
            lines.append(_date_header())
            if not self.keep_alive:
                lines.append(b"connection: close\r\n")
            lines.append(b"\r\n")
            self.pending_head = b"".join(lines)
            return
        if kind == "http.response.zerocopy":
            await self._zerocopy(message)
            return
        if kind != "http.response.body":
            return
        body: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        if self.head:
            body = b""
        before, after = self._framing(len(body), more)
        out = b"".join((before, body, after)) if before or after else body
        if out:
            self.conn.write(out)
        self._ended(more)
        if more:
            await self.conn.drain()

    async def _zerocopy(self, message: Message) -> None:
        """ASGI's zero-copy extension: ``count`` bytes of the descriptor ``file`` (from
        ``offset`` for a regular file), copied by the kernel."""
        source = message["file"]
        fd = source if isinstance(source, int) else source.fileno()
        count: int = 0 if self.head else message["count"]
        more = message.get("more_body", False)
        before, after = self._framing(count, more)
        if before:
            self.conn.write(before)
        if count:
            read_timeout = message.get("read_timeout", IDLE_TIMEOUT)
            await self.conn.send_fd(fd, message.get("offset"), count, read_timeout)
        if after:
            self.conn.write(after)
        self._ended(more)

    def _framing(self, size: int, more: bool) -> tuple[bytes, bytes]:
        """The bytes to write before and after ``size`` body bytes (the pending head, chunk
        framing), counting them against the Content-Length."""
        if not self.started or self.complete:
            raise RuntimeError("body outside a response")
        before, self.pending_head = self.pending_head, b""
        after = b""
        if self.chunked:
            if size:
                before += b"%x\r\n" % size
                after = b"\r\n"
            if not more:
                after += b"0\r\n\r\n"
        elif size:
            assert self.content_left is not None
            if size > self.content_left:
                raise RuntimeError("response body longer than its Content-Length")
            self.content_left -= size
        return before, after

    def _ended(self, more: bool) -> None:
        if not more:
            self.complete = True
            if self.content_left:
                raise RuntimeError("response body shorter than its Content-Length")


_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}


def _reason(status: int) -> bytes:
    return _REASONS.get(status, b"")


class HttpConnection(ReadFlow, WriteFlow, asyncio.Protocol):
    def __init__(self, app: App, server_state: ServerState) -> None:
        ReadFlow.__init__(self, HIGH_WATER, LOW_WATER)
        WriteFlow.__init__(self)
        self.app = app
        self.state = server_state
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.copying = False  # send_fd is writing to the socket itself
        self.cycles: deque[_Cycle] = deque()  # parsed, not yet answered; the first runs
        self.current: _Cycle | None = None  # the one receiving body bytes
        # Since when the connection waits for a request head (None while one is being served);
        # the server's sweep closes those waiting longer than IDLE_TIMEOUT. One timestamp per
        # request instead of a timer: a timer per request cost measurably more.
        self.idle_since: float | None = None
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_size = 0
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int] | None = None
        self.scheme = "http"

    # --- transport events --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.state.connections.add(self)
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        self.server = (str(sock[0]), int(sock[1])) if isinstance(sock, tuple) else None
        if transport.get_extra_info("ssl_object") is not None:
            self.scheme = "https"
        self._arm_idle()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        self.state.connections.discard(self)
        for cycle in self.cycles:
            cycle.wake()
        self._release_writer()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reject(b"400 Bad Request", b"upgrades are not supported")
        except httptools.HttpParserError as exc:
            self._reject(b"400 Bad Request", str(exc).encode()[:200])

    def eof_received(self) -> bool | None:
        return None  # close when the client half-closes

    # --- parser callbacks ----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.head_size = 0

    def on_url(self, url: bytes) -> None:
        self.url += url
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))
        self._count_head(len(name) + len(value))

    def _count_head(self, size: int) -> None:
        # The app enforces its own (configurable) header limit with 431; this bounds memory.
        self.head_size += size
        if self.head_size > MAX_HEAD:
            raise httptools.HttpParserError("request head too large")

    def on_headers_complete(self) -> None:
        # Idle until a whole request head is in: the idle timeout is the header timeout too.
        self.idle_since = None
        parser = self.parser
        path, _, query = self.url.partition(b"?")
        method = parser.get_method().decode("ascii")
        scope: Message = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": parser.get_http_version(),
            "method": method,
            "scheme": self.scheme,
            "path": _unquote(path),
            "raw_path": path,
            "query_string": query,
            "root_path": "",
            "headers": self.headers,
            "client": self.client,
            "server": self.server,
            "extensions": _EXTENSIONS,
        }
        expect = method in _BODY_METHODS and any(
            k == b"expect" and v.lower() == b"100-continue" for k, v in self.headers
        )
        cycle = _Cycle(self, scope, parser.should_keep_alive(), expect)
        self.current = cycle
        self.cycles.append(cycle)
        if len(self.cycles) == 1:
            self.state.start(self._run(cycle))

    def on_body(self, body: bytes) -> None:
        cycle = self.current
        if cycle is None:
            return
        if cycle.complete:  # answered already: drop the rest, up to a limit
            cycle.discarded += len(body)
            if cycle.discarded > DISCARD_LIMIT:
                self._close()
            return
        cycle.body.append(body)
        self._received(len(body))
        cycle.wake()

    def on_message_complete(self) -> None:
        cycle = self.current
        if cycle is not None:
            cycle.more_body = False
            cycle.wake()
            if cycle.discarding:
                cycle.discarding = False
                if cycle.keep_alive:
                    self._next()
                else:
                    self._close()

    # --- running the app -----------------------------------------------------------------------

    async def _run(self, cycle: _Cycle) -> None:
        try:
            await self.app(cycle.scope, cycle.receive, cycle.send)
        except Exception:
            log.exception("unhandled error in the application")
            if not cycle.started:
                self._reject(b"500 Internal Server Error", b"internal error", b"UNKNOWN")
            self._close()
            return
        except BaseException:
            self._close()
            raise
        if not cycle.complete:
            self._close()  # the app ended without finishing: the framing is broken
            return
        if cycle.body:  # what the app left unread
            self.body_taken(sum(len(piece) for piece in cycle.body))
            cycle.body.clear()
        if cycle.more_body:
            # Answered before its body was read (a refusal): read the rest and drop it, then go
            # on. Closing now would reset the connection under the answer.
            cycle.discarding = True
            return
        if not cycle.keep_alive:
            self._close()
            return
        self._next()

    def _next(self) -> None:
        """The first request is answered: start the next one, or wait for one."""
        self.cycles.popleft()
        if self.cycles:
            self.state.start(self._run(self.cycles[0]))
        else:
            self._arm_idle()

    # --- helpers -------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        # Nothing may interleave with bytes the kernel is copying into the socket directly;
        # only a rejection of pipelined garbage could try, and it is dropped (we close anyway).
        if not self.closed and self.transport is not None and not self.copying:
            self.transport.write(data)

    async def send_fd(self, fd: int, offset: int | None, count: int, read_timeout: float) -> None:
        """Copy ``count`` bytes of ``fd`` straight into the socket, after what is buffered;
        a source silent for ``read_timeout`` seconds fails the copy."""
        transport = self.transport
        # Like writes to a closed connection, a copy to one is quietly dropped.
        while not self.closed and transport is not None and transport.get_write_buffer_size():
            await self.drain()  # rare: only a head the socket did not take at once
            await asyncio.sleep(0.001)
        if self.closed or transport is None:
            return
        if self.scheme == "https":
            # The kernel cannot encrypt: the bytes go through the TLS transport instead.
            try:
                await relay_fd(self.write, self.drain, fd, offset, count, read_timeout)
            except (OSError, TimeoutError):
                self._close()
                raise
            return
        self.copying = True
        try:
            sock = transport.get_extra_info("socket").fileno()
            await copy_fd(sock, fd, offset, count, IDLE_TIMEOUT, read_timeout)
        except ClientGone:
            self._close()
        except (OSError, TimeoutError):
            self._close()  # the response is cut short: only closing tells the client
            raise
        finally:
            self.copying = False

    async def drain(self) -> None:
        if not self.closed:
            await self.writable()

    def body_taken(self, size: int) -> None:
        self._consumed(size)

    def _arm_idle(self) -> None:
        self.idle_since = self.loop.time()

    def close_if_idle(self, now: float) -> None:
        if self.idle_since is not None and now - self.idle_since > IDLE_TIMEOUT:
            self._close()

    def _reject(self, status: bytes, detail: bytes, code: bytes = b"UNSUPPORTED") -> None:
        message = detail.replace(b'"', b"'").replace(b"\\", b"/")
        body = b'{"errors":[{"code":"%s","message":"%s"}]}' % (code, message)
        self.write(
            b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, len(body), body)
        )
        self._close()

    def _close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self.closed = True

    def shutdown(self) -> None:
        """Server stopping: close now if idle, else after the response in flight."""
        if not self.cycles:
            self._close()
        else:
            for cycle in self.cycles:
                cycle.keep_alive = False


def _unquote(path: bytes) -> str:
    if b"%" not in path:
        return path.decode("latin-1")
    return unquote_to_bytes(path).decode("utf-8", "replace")


class ServerState:
    """What the worker needs to stop gracefully (open connections and running requests) and
    to time out idle connections."""

    def __init__(self) -> None:
        self.connections: set[HttpConnection] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    async def sweep_forever(self, every: float = IDLE_TIMEOUT / 4) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(every)
            now = loop.time()
            for connection in list(self.connections):
                connection.close_if_idle(now)

    def start(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
