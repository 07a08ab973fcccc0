"""What the built-in server allows one connection: sizes and timeouts against hostile clients."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    max_request_target: int = 8192  # bytes of the request target; longer gets 414
    max_header_size: int = 64 * 1024  # header wire bytes (name, ": ", value, CRLF); 431 above
    max_header_count: int = 100  # header lines; more gets 431
    body_timeout: float = 30.0  # seconds a request body may send nothing before closing
    idle_timeout: float = 30.0  # seconds a connection may wait without a whole request head
