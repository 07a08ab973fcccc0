"""Raw HTTP/1.1 over a socket, for what httpx would normalise away: hostile paths and Host
headers, ``Expect: 100-continue``, a body announced but never sent."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit


def connect(base_url: str) -> socket.socket:
    parts = urlsplit(base_url)
    return socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=10)


def read_head(sock: socket.socket) -> bytes:
    """Bytes up to the end of the first response head (the body, if any, is left unread)."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        chunk = sock.recv(65536)
        if not chunk:
            break
        raw += chunk
    return raw.partition(b"\r\n\r\n")[0]


def exchange(base_url: str, head: str) -> bytes:
    """Send one request head (no body) and return the response head."""
    with connect(base_url) as sock:
        sock.sendall(head.encode("latin-1"))
        return read_head(sock)


def status_of(head: bytes) -> int:
    return int(head.split(b" ", 2)[1])


def header_values(head: bytes, name: str) -> list[bytes]:
    lines = head.split(b"\r\n")[1:]
    prefix = name.lower().encode() + b":"
    return [line[len(prefix) :].strip() for line in lines if line.lower().startswith(prefix)]
