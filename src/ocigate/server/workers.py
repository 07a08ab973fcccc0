"""Serving with the built-in server: one listening socket, ``workers`` forked processes.

The parent binds the socket, forks the workers (each runs its own event loop, app and lifespan
on the shared socket; the kernel spreads connections), restarts a worker that dies, and on
SIGTERM/SIGINT stops them: each closes its listener, lets requests in flight finish (up to
``GRACE_SECONDS``) and runs the app's shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import uvloop

from ..malloc import cap_arenas
from ..production_config import TlsConfig
from .certificates import ReloadingContext
from .limits import Limits
from .protocol import App, HttpConnection, Message, ServerState
from .tls import accept_forever

GRACE_SECONDS = 10.0
RESPAWN_DELAY = 1.0
FULL_WAIT = 5.0  # seconds a connection over the cap may take to send its request
log = logging.getLogger("ocigate.server")


@dataclass(frozen=True)
class Listener:
    """How the workers serve the socket: HTTPS with ``tls``; at most ``max_connections`` open
    connections per worker (0: no cap); each connection's ``limits``."""

    tls: TlsConfig | None = None
    max_connections: int = 0
    limits: Limits = field(default_factory=Limits)


def serve(
    build_app: Callable[[], App],
    host: str,
    port: int,
    workers: int,
    listener: Listener = Listener(),
    on_worker_exit: Callable[[int], None] = lambda pid: None,
) -> None:
    """Bind ``host:port`` and serve the app ``build_app()`` returns in ``workers`` processes;
    ``on_worker_exit(pid)`` runs when a worker has ended."""
    sock = _bind(host, port)
    if listener.tls is not None:
        ReloadingContext(listener.tls)  # unreadable certificate files stop start-up here
    if workers == 1:
        _worker(build_app, sock, listener)
        return
    children: dict[int, int] = {}  # pid -> worker index
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for index in range(workers):
        children[_fork(build_app, sock, listener)] = index
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        index = children.pop(pid, -1)
        on_worker_exit(pid)
        if index < 0 or stopping:
            continue
        log.error("worker %d (pid %d) exited with status %d; restarting", index, pid, status)
        time.sleep(RESPAWN_DELAY)
        if not stopping:
            children[_fork(build_app, sock, listener)] = index


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _fork(build_app: Callable[[], App], sock: socket.socket, listener: Listener) -> int:
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            _worker(build_app, sock, listener)
        except BaseException:
            log.exception("worker failed")
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    return pid


def _worker(build_app: Callable[[], App], sock: socket.socket, listener: Listener) -> None:
    cap_arenas()  # before the app starts any thread
    uvloop.run(_run(build_app, sock, listener))


async def _run(build_app: Callable[[], App], sock: socket.socket, listener: Listener) -> None:
    loop = asyncio.get_running_loop()
    app = build_app()
    lifespan = _Lifespan(app)
    await lifespan.startup()
    state = ServerState(listener.limits)
    cap = listener.max_connections

    def new_connection() -> asyncio.Protocol:
        if cap and len(state.connections) >= cap:
            return _Full()
        return HttpConnection(app, state)

    server: asyncio.AbstractServer | asyncio.Task[None]
    if listener.tls is None:
        server = await loop.create_server(new_connection, sock=sock, backlog=2048)
    else:
        server = loop.create_task(
            accept_forever(sock, new_connection, ReloadingContext(listener.tls))
        )
    sweeper = asyncio.ensure_future(state.sweep_forever())
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    if isinstance(server, asyncio.Task):
        server.cancel()
    else:
        server.close()
    sweeper.cancel()
    for connection in list(state.connections):
        connection.shutdown()
    deadline = loop.time() + GRACE_SECONDS
    while state.tasks and loop.time() < deadline:
        await asyncio.wait(set(state.tasks), timeout=max(0.0, deadline - loop.time()))
    for connection in list(state.connections):
        connection.shutdown()
    await lifespan.shutdown()


_FULL_BODY = (
    b'{"errors":[{"code":"TOOMANYREQUESTS","message":"too many open connections",'
    b'"detail":"this worker is at its connection limit"}]}'
)


class _Full(asyncio.Protocol):
    """A connection over the worker's cap: its first request is answered 503 (retry in a
    second) and the connection closed; answering before the request arrived would make the
    client see a reset instead."""

    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport
        asyncio.get_running_loop().call_later(FULL_WAIT, transport.close)

    def data_received(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
                b"retry-after: 1\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
                % (len(_FULL_BODY), _FULL_BODY)
            )
            self.transport.close()


class _Lifespan:
    """The ASGI lifespan protocol: startup before the first request, shutdown at the end."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.outbox: asyncio.Queue[Message] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        self.task = asyncio.ensure_future(
            self.app({"type": "lifespan", "asgi": {"version": "3.0"}}, self.inbox.get, self._send)
        )
        await self.inbox.put({"type": "lifespan.startup"})
        answer = await self.outbox.get()
        if answer["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"application startup failed: {answer.get('message', '')}")

    async def shutdown(self) -> None:
        await self.inbox.put({"type": "lifespan.shutdown"})
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.outbox.get(), GRACE_SECONDS)

    async def _send(self, message: Message) -> None:
        await self.outbox.put(message)
