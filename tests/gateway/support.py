"""Gateway test harness: upstream registries as real processes, gateways in-process or as
``ocigate serve`` processes configured with ``upstreams``, and small ASGI servers of our own
(a token service in front of a registry, a server that never answers)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import bcrypt
import httpx

from e2e.support import (
    ServerProcess,
    distribution_config,
    free_port,
    ocigate_server,
)
from spec.conftest import serve_app

ROOT = Path(__file__).resolve().parents[2]


def distribution_with_htpasswd(
    data_dir: Path, log_path: Path, user: str, password: str
) -> ServerProcess:
    """distribution 2.8.2 requiring Basic auth (bcrypt htpasswd, as it demands)."""
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    htpasswd = data_dir.parent / f"{data_dir.name}.htpasswd"
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    htpasswd.write_text(f"{user}:{hashed}\n")
    config = data_dir.parent / f"{data_dir.name}-config.yml"
    config.write_text(
        distribution_config(data_dir, port)
        + f"auth:\n  htpasswd:\n    realm: test\n    path: {htpasswd}\n"
    )
    # Readiness is probed with GET /v2/, which is 401 here: accept any answer.
    return _AnyAnswer(
        "distribution-auth", ["docker-registry", "serve", str(config)], port, log_path
    )


class _AnyAnswer(ServerProcess):
    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.url}/v2/", timeout=1.0)
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready\n{self.log_tail()}")


def gateway_process(
    upstreams: list[dict[str, Any]], data_dir: Path, log_path: Path, workers: int = 2
) -> ServerProcess:
    """``ocigate serve`` as a gateway (upstreams from the environment, like a deployment)."""
    server = ocigate_server(data_dir, log_path, workers=workers)
    server.env = dict(os.environ, OCIGATE_UPSTREAMS=json.dumps(upstreams))
    return server


def run_spec_suite(url: str, *marks: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "pytest", "tests/spec", "-q", "-p", "no:cacheprovider"]
    if marks:
        argv += ["-m", " and ".join(marks)]
    return subprocess.run(
        [*argv, "--registry-url", url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextmanager
def serve_gateway(
    data_dir: Path, upstreams: list[dict[str, Any]], **settings: Any
) -> Iterator[str]:
    """An in-process gateway (one worker) on the given upstreams."""
    from ocigate.assemble import create_app
    from ocigate.config import Settings

    app = create_app(Settings(data_dir=data_dir, upstreams=upstreams, **settings))
    with serve_app(app, "gateway") as url:
        yield url


@contextmanager
def _tcp_server(handle: Callable[[socket.socket], None]) -> Iterator[int]:
    """A loopback TCP server handing each accepted connection to ``handle`` (in its thread)."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    listener.settimeout(0.1)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            handle(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


@contextmanager
def silent_server() -> Iterator[int]:
    """A TCP server that accepts connections and never answers: a hung upstream."""
    held: list[socket.socket] = []
    try:
        with _tcp_server(held.append) as port:
            yield port
    finally:
        for conn in held:
            conn.close()


@contextmanager
def scripted_server(answer: Callable[[bytes], bytes], hang: bool = False) -> Iterator[int]:
    """A TCP server that reads one request head per connection, writes ``answer(head)`` and
    hangs up, or with ``hang`` stays silent with the connection open: an upstream misbehaving
    in a scripted way."""
    held: list[socket.socket] = []

    def handle(conn: socket.socket) -> None:
        conn.settimeout(5)
        head = b""
        while b"\r\n\r\n" not in head and (data := conn.recv(65536)):
            head += data
        conn.sendall(answer(head))
        if hang:
            held.append(conn)
        else:
            conn.close()

    try:
        with _tcp_server(handle) as port:
            yield port
    finally:
        for conn in held:
            conn.close()
