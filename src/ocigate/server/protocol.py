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

Against hostile clients (sizes and timeouts in ``limits``): a pipelined request is parsed only
while no other waits behind the one running, and the next one starts only once the client has
taken the previous answers, so a client that pipelines without reading costs one answer and a
few KiB of unparsed bytes; the request target, the header wire bytes and the header count are
capped while parsing (414, 431); a body that stops arriving is cut off after ``body_timeout``;
an answer sent before its request body was read closes the connection (``connection: close``)
after reading and dropping at most ``DISCARD_LIMIT`` bytes within ``body_timeout``.
"""

from __future__ import annotations

import asyncio
import json
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
from .limits import Limits
from .zerocopy import ClientGone, copy_fd, relay_fd

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Any, Any, Any], Awaitable[None]]  # an ASGI application

# Request body bytes waiting for the app: stop reading (and read again below LOW_WATER). Each
# stage of a push (this buffer, the app's batch, the object store's parts) holds up to one such
# joined piece, so 4 MiB here left a 1 GiB push ~15 MB more resident than 1 MiB does.
HIGH_WATER = 1024 * 1024
LOW_WATER = 256 * 1024
DISCARD_LIMIT = 16 * 1024 * 1024  # unread body bytes dropped after an early answer, at most
# Bytes handed to the parser at once outside a sized body. The parser cannot stop inside what
# it is given, so this bounds how many pipelined requests one call can queue.
SLICE = 4096
CHUNKED_SLICE = 64 * 1024  # the same inside a chunked body, whose end is not known ahead
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
        self.started = False  # response head built (pending until the first body bytes)
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
            # Only now: an app that answers first (a refusal) never makes the client send it.
            self.expect_continue = False
            conn.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            conn.expect_body()
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
            self.pending_head = b"".join(lines)  # ended in _framing, which knows keep-alive
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
            read_timeout = message.get("read_timeout", self.conn.limits.idle_timeout)
            await self.conn.send_fd(fd, message.get("offset"), count, read_timeout)
        if after:
            self.conn.write(after)
        self._ended(more)

    def _framing(self, size: int, more: bool) -> tuple[bytes, bytes]:
        """The bytes to write before and after ``size`` body bytes (the pending head, chunk
        framing), counting them against the Content-Length."""
        if not self.started or self.complete:
            raise RuntimeError("body outside a response")
        if not more and self.more_body:
            # Answered before the request body was read: that body is not worth reading on,
            # so the connection ends after this answer.
            self.keep_alive = False
        before = b""
        if self.pending_head:
            close = b"" if self.keep_alive else b"connection: close\r\n"
            before, self.pending_head = self.pending_head + close + b"\r\n", b""
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


class Refusal(Exception):
    """A request the server answers itself, with an OCI error body, before closing."""

    def __init__(self, status: int, detail: str, code: str = "UNSUPPORTED") -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code

    def response(self) -> bytes:
        reason = _reason(self.status).decode()
        body = json.dumps(
            {"errors": [{"code": self.code, "message": reason.lower(), "detail": self.detail}]},
            separators=(",", ":"),
        ).encode()
        return (
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (self.status, reason.encode(), len(body), body)
        )


class HttpConnection(ReadFlow, WriteFlow, asyncio.Protocol):
    def __init__(self, app: App, server_state: ServerState) -> None:
        ReadFlow.__init__(self, HIGH_WATER, LOW_WATER)
        WriteFlow.__init__(self)
        self.app = app
        self.state = server_state
        self.limits = server_state.limits
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.output_ended = False  # our side is shut down (write_eof): nothing more to write
        self.input_ended = False  # the client half-closed: close once every request is answered
        self.copying = False  # send_fd is writing to the socket itself
        self.cycles: deque[_Cycle] = deque()  # parsed, not yet answered; the first runs
        self.current: _Cycle | None = None  # the one receiving body bytes
        # Since when the connection waits for a request head (None while one is being served);
        # the server's sweep closes those waiting longer than idle_timeout. One timestamp per
        # request instead of a timer: a timer per request cost measurably more.
        self.idle_since: float | None = None
        # Since when the request body made no progress (None when none is awaited): the sweep
        # closes the connection after body_timeout. While discarding, since the answer.
        self.body_since: float | None = None
        self.held = b""  # received, not parsed yet: parsing waits for the running request
        self.refusal: Refusal | None = None  # to answer once the requests before it are
        self.in_head = False
        self.head_fed = 0  # bytes given to the parser during this head (it buffers them)
        self.body_left = 0  # bytes of a sized request body still to come
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_size = 0
        self.hosts = 0
        self.codings: list[bytes] = []
        self.expect = False
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
        if self.closed or self.refusal is not None:
            return
        if self.held:  # reading resumed for the running request's body: keep holding the rest
            self.held += data
            self._hold()
            return
        self._parse(memoryview(data))

    def eof_received(self) -> bool | None:
        # A client that half-closes after its last request still gets every answer.
        if self.cycles and (self.current is None or not self.current.more_body):
            self.input_ended = True
            return True
        return None

    # --- parsing -------------------------------------------------------------------------------

    def _parse(self, data: memoryview) -> None:
        """Feed ``data`` to the parser, stopping once a request waits behind the running one
        (the rest is held until that one is answered)."""
        offset, total = 0, len(data)
        while offset < total:
            if len(self.cycles) > 1:
                self.held = bytes(data[offset:])
                self._hold()
                return
            if self.body_left:
                step = self.body_left
            elif self.current is not None and self.current.more_body:
                step = CHUNKED_SLICE
            else:
                step = SLICE
            piece = data[offset : offset + step]
            offset += len(piece)
            try:
                self.parser.feed_data(piece)
                if self.in_head:
                    self._count_fed(len(piece))
            except httptools.HttpParserUpgrade:
                self._refuse(Refusal(400, "upgrades are not supported"))
                return
            except httptools.HttpParserError as exc:
                cause = exc.__context__
                self._refuse(cause if isinstance(cause, Refusal) else Refusal(400, str(exc)[:200]))
                return
            except Refusal as refusal:
                self._refuse(refusal)
                return

    def _count_fed(self, size: int) -> None:
        # The parser buffers a header line until it ends: bound that too, not just our copy.
        self.head_fed += size
        limits = self.limits
        if self.head_fed > limits.max_request_target + limits.max_header_size + SLICE:
            raise Refusal(431, "request head too large", "SIZE_INVALID")

    def _hold(self) -> None:
        if not self._reading_paused and self.transport is not None:
            self.transport.pause_reading()
            self._reading_paused = True

    def _release(self) -> None:
        if self._reading_paused and self.buffered < LOW_WATER and self.transport is not None:
            self.transport.resume_reading()
            self._reading_paused = False

    # --- parser callbacks ----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.head_size = 0
        self.hosts = 0
        self.codings = []
        self.expect = False
        self.in_head = True
        self.head_fed = 0

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.limits.max_request_target:
            raise Refusal(414, f"longer than {self.limits.max_request_target} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        # What was received, as the app's header limit means it: name, ": ", value, CRLF.
        self.head_size += len(name) + len(value) + 4
        limits = self.limits
        if self.head_size > limits.max_header_size:
            raise Refusal(431, f"limit is {limits.max_header_size} bytes", "SIZE_INVALID")
        if len(self.headers) >= limits.max_header_count:
            raise Refusal(431, f"limit is {limits.max_header_count} headers", "SIZE_INVALID")
        self.headers.append((name, value))
        if name == b"host":
            self.hosts += 1
        elif name == b"transfer-encoding":
            self.codings += (coding.strip().lower() for coding in value.split(b","))
        elif name == b"expect":
            self.expect = value.lower() == b"100-continue"
        elif name == b"content-length" and value.isdigit():
            self.body_left = int(value)

    def on_headers_complete(self) -> None:
        # Idle until a whole request head is in: the idle timeout is the header timeout too.
        self.idle_since = None
        self.in_head = False
        parser = self.parser
        version = parser.get_http_version()
        self._check_head(version)
        target = self.url
        if target[:7].lower() == b"http://" or target[:8].lower() == b"https://":
            parsed = httptools.parse_url(target)  # absolute form: the path is what we route
            target = (parsed.path or b"/") + (b"?" + parsed.query if parsed.query else b"")
        path, _, query = target.partition(b"?")
        method = parser.get_method().decode("ascii")
        scope: Message = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": version,
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
        expect = self.expect and method in _BODY_METHODS
        cycle = _Cycle(self, scope, parser.should_keep_alive(), expect)
        self.current = cycle
        self.cycles.append(cycle)
        if not expect:
            self.body_since = self.loop.time()
        if len(self.cycles) == 1:
            self.state.start(self._run(cycle))

    def _check_head(self, version: str) -> None:
        """What HTTP/1.1 requires of a request head that the parser lets through."""
        if version not in ("1.1", "1.0"):
            if version == "0.9":
                raise Refusal(400, "the request line has no HTTP version")
            raise Refusal(505, f"HTTP/{version} is not supported")
        if self.hosts > 1 or (self.hosts == 0 and version == "1.1"):
            raise Refusal(400, "an HTTP/1.1 request needs exactly one Host header")
        if self.codings and self.codings != [b"chunked"]:
            raise Refusal(501, "the only transfer coding supported is chunked")

    def on_body(self, body: bytes) -> None:
        cycle = self.current
        if cycle is None:
            return
        if self.body_left:
            self.body_left -= len(body)
        if cycle.complete:  # answered already: drop the rest, up to a limit
            cycle.discarded += len(body)
            if cycle.discarded > DISCARD_LIMIT:
                self._close()
            return
        self.body_since = self.loop.time()
        cycle.body.append(body)
        self._received(len(body))
        cycle.wake()

    def on_message_complete(self) -> None:
        self.body_since = None
        self.body_left = 0
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
        if self._writing_paused:
            await self.drain()  # the client has not taken the previous answers: wait for it
        if self.closed:
            return
        try:
            await self.app(cycle.scope, cycle.receive, cycle.send)
        except Exception:
            log.exception("unhandled error in the application")
            if not cycle.started:
                self.write(Refusal(500, "internal error", "UNKNOWN").response())
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
            # Answered before its body was read (a refusal; the answer said connection: close):
            # read and drop the rest for a while, as closing now would reset the connection
            # under the answer.
            cycle.discarding = True
            self.body_since = self.loop.time()
            self._end_output()
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
        elif self.refusal is not None:
            self.write(self.refusal.response())
            self._close()
            return
        else:
            self._arm_idle()
        if self.held:
            held, self.held = self.held, b""
            self._parse(memoryview(held))
        if self.input_ended and not self.cycles:
            self._close()
        elif not self.held and self.refusal is None and not self.closed:
            self._release()

    def _refuse(self, refusal: Refusal) -> None:
        """Answer a request the server refuses, after the ones received before it."""
        self.held = b""
        self._hold()
        cycle = self.current
        if cycle is not None and cycle.more_body and cycle in self.cycles:
            if cycle is not self.cycles[0]:
                self.cycles.pop()  # its body is broken and it has not started: drop it
            elif cycle.started:
                self._close()  # broken mid-body, answered already: only closing is left
                return
            else:  # the app waits for a body that will not come
                self.write(refusal.response())
                self._close()
                cycle.wake()
                return
        if self.cycles:
            self.refusal = refusal
            return
        self.write(refusal.response())
        self._close()

    # --- helpers -------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        # Nothing may interleave with bytes the kernel is copying into the socket directly;
        # only a rejection of pipelined garbage could try, and it is dropped (we close anyway).
        if (
            not self.closed
            and not self.output_ended
            and self.transport is not None
            and not self.copying
        ):
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
            await copy_fd(sock, fd, offset, count, self.limits.idle_timeout, read_timeout)
        except ClientGone:
            self._close()
        except (OSError, TimeoutError):
            self._close()  # the response is cut short: only closing tells the client
            raise
        finally:
            self.copying = False

    async def drain(self) -> None:
        """Until the client takes more of what was written; one taking nothing for the idle
        timeout is disconnected, so an unread answer cannot hold the connection forever."""
        if not self.closed and not await self.writable(self.limits.idle_timeout):
            self._close()

    def body_taken(self, size: int) -> None:
        self._consumed(size)

    def expect_body(self) -> None:
        """``100 Continue`` was sent: from now on the client owes the body."""
        self.body_since = self.loop.time()

    def _arm_idle(self) -> None:
        self.idle_since = self.loop.time()

    def close_if_stalled(self, now: float) -> None:
        if self.idle_since is not None:
            if now - self.idle_since > self.limits.idle_timeout:
                self._close()
        elif self.body_since is not None:
            discarding = bool(self.cycles) and self.cycles[0].discarding
            if self._reading_paused and not discarding:
                self.body_since = now  # the app is behind, not the client
            elif now - self.body_since > self.limits.body_timeout:
                self._close()

    def _end_output(self) -> None:
        transport = self.transport
        if transport is not None and not self.closed and transport.can_write_eof():
            transport.write_eof()
            self.output_ended = True

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
    to time out idle and stalled connections, and the limits every connection applies."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.connections: set[HttpConnection] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    async def sweep_forever(self, every: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        limits = self.limits
        period = min(limits.idle_timeout, limits.body_timeout) / 4 if every is None else every
        while True:
            await asyncio.sleep(period)
            now = loop.time()
            for connection in list(self.connections):
                connection.close_if_stalled(now)

    def start(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
