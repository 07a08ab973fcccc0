"""HTTPS for the built-in server: TLS started per connection, mutual TLS, plain HTTP refused.

Connections are accepted here rather than by ``create_server(ssl=...)`` so that each one gets
the context current when it arrives (a rotated certificate is used by the next connection,
without a restart) and so that a plain-HTTP request is answered with a clear 400 instead of a
failed handshake the client reports as a hang or garbage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from typing import cast

from .certificates import ReloadingContext

HANDSHAKE_TIMEOUT = 10.0  # seconds for a client to send its hello and finish the handshake
_TLS_RECORD_HANDSHAKE = 0x16


def _refusal(status: bytes, code: bytes, message: bytes, detail: bytes) -> bytes:
    body = b'{"errors":[{"code":"%s","message":"%s","detail":"%s"}]}' % (code, message, detail)
    return (
        b"HTTP/1.1 %s\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (status, len(body), body)
    )


PLAIN_HTTP_ANSWER = _refusal(
    b"400 Bad Request",
    b"UNSUPPORTED",
    b"The plain HTTP request was sent to HTTPS port",
    b"use https://",
)
NO_CERTIFICATE_ANSWER = _refusal(
    b"403 Forbidden",
    b"DENIED",
    b"a client certificate is required (mutual TLS) and none was sent",
    b"configure the client with a certificate signed by the registry's client CA",
)
log = logging.getLogger("ocigate.server")


class _CertificateGate(asyncio.Protocol):
    """A TLS connection's first protocol when client certificates are required: hands the
    connection to the HTTP protocol when the client sent one, else answers its first request
    with ``NO_CERTIFICATE_ANSWER`` and closes."""

    def __init__(self, protocol_factory: Callable[[], asyncio.Protocol]) -> None:
        self._factory = protocol_factory
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TLS transport is a transport without deriving from asyncio.Transport.
        transport = cast(asyncio.Transport, transport)
        if transport.get_extra_info("peercert"):
            protocol = self._factory()
            transport.set_protocol(protocol)
            protocol.connection_made(transport)
            return
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(NO_CERTIFICATE_ANSWER)
            self._transport.close()


async def accept_forever(
    sock: socket.socket,
    protocol_factory: Callable[[], asyncio.Protocol],
    contexts: ReloadingContext,
) -> None:
    """Accept connections on ``sock`` and start TLS on each (until cancelled)."""
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()
    try:
        while True:
            try:
                conn, _ = await loop.sock_accept(sock)
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                continue
            task = loop.create_task(_start_tls(conn, protocol_factory, contexts))
            pending.add(task)
            task.add_done_callback(pending.discard)
    finally:
        for task in pending:
            task.cancel()


async def _start_tls(
    conn: socket.socket,
    protocol_factory: Callable[[], asyncio.Protocol],
    contexts: ReloadingContext,
) -> None:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(HANDSHAKE_TIMEOUT):
            first = await _peek(conn)
        if first and first[0] == _TLS_RECORD_HANDSHAKE:
            context = contexts.current()
            gated = context.verify_mode != ssl.CERT_NONE
            await loop.connect_accepted_socket(
                (lambda: _CertificateGate(protocol_factory)) if gated else protocol_factory,
                conn,
                ssl=context,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT,
            )
            return
        if first:
            _answer_plain(conn)
    except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as error:
        log.debug("TLS handshake failed: %s", error)
    conn.close()


async def _peek(conn: socket.socket) -> bytes:
    """The first byte the client sends, left in the socket; b'' if it closed first."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    fd = conn.fileno()
    loop.add_reader(fd, _wake, ready)
    try:
        await ready
    finally:
        loop.remove_reader(fd)
    return conn.recv(1, socket.MSG_PEEK)


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


def _answer_plain(conn: socket.socket) -> None:
    # Read what the client sent first: closing with unread bytes resets the connection, and
    # the client would see the reset instead of the answer.
    with contextlib.suppress(BlockingIOError):
        conn.recv(65536)
    conn.send(PLAIN_HTTP_ANSWER)
    conn.shutdown(socket.SHUT_WR)
