"""A loopback TCP relay in front of a real upstream that can be told to hang: from then on it
accepts connections and never answers (and drops the ones it was relaying), like an upstream
whose process is stuck."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress


class Relay:
    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._hung = threading.Event()
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hang(self) -> None:
        self._hung.set()
        with self._lock:
            relayed, self._open = self._open, []
        for conn in relayed:
            conn.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                continue
            with self._lock:
                self._open.append(conn)
            if not self._hung.is_set():
                upstream = socket.create_connection(("127.0.0.1", self._target))
                with self._lock:
                    self._open.append(upstream)
                for a, b in ((conn, upstream), (upstream, conn)):
                    threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()
        with self._lock:
            held, self._open = self._open, []
        for conn in held:
            conn.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for conn in (source, sink):
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


@contextmanager
def relay(target_port: int) -> Iterator[Relay]:
    running = Relay(target_port)
    try:
        yield running
    finally:
        running.close()
