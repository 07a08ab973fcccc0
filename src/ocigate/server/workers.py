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

import uvloop

from .limits import Limits
from .protocol import App, HttpConnection, Message, ServerState

GRACE_SECONDS = 10.0
RESPAWN_DELAY = 1.0
log = logging.getLogger("ocigate.server")


def serve(build_app: Callable[[], App], host: str, port: int, workers: int, limits: Limits) -> None:
    """Bind ``host:port`` and serve the app ``build_app()`` returns in ``workers`` processes."""
    sock = _bind(host, port)
    if workers == 1:
        _worker(build_app, sock, limits)
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
        children[_fork(build_app, sock, limits)] = index
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        index = children.pop(pid, -1)
        if index < 0 or stopping:
            continue
        log.error("worker %d (pid %d) exited with status %d; restarting", index, pid, status)
        time.sleep(RESPAWN_DELAY)
        if not stopping:
            children[_fork(build_app, sock, limits)] = index


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _fork(build_app: Callable[[], App], sock: socket.socket, limits: Limits) -> int:
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            _worker(build_app, sock, limits)
        except BaseException:
            log.exception("worker failed")
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    return pid


def _worker(build_app: Callable[[], App], sock: socket.socket, limits: Limits) -> None:
    uvloop.run(_run(build_app, sock, limits))


async def _run(build_app: Callable[[], App], sock: socket.socket, limits: Limits) -> None:
    loop = asyncio.get_running_loop()
    app = build_app()
    lifespan = _Lifespan(app)
    await lifespan.startup()
    state = ServerState(limits)
    server = await loop.create_server(lambda: HttpConnection(app, state), sock=sock, backlog=2048)
    sweeper = asyncio.ensure_future(state.sweep_forever())
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
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
