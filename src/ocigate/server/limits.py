"""What a worker allows: sizes and timeouts per connection, and how many connections."""

from __future__ import annotations

import resource
from dataclasses import dataclass

MAX_CONNECTIONS = 4096  # per worker when not configured, and the file descriptors allow it


@dataclass(frozen=True, slots=True)
class Limits:
    max_request_target: int = 8192  # bytes of the request target; longer gets 414
    max_header_size: int = 64 * 1024  # header wire bytes (name, ": ", value, CRLF); 431 above
    max_header_count: int = 100  # header lines; more gets 431
    body_timeout: float = 30.0  # seconds a request body may send nothing before closing
    idle_timeout: float = 30.0  # seconds a connection may wait without a whole request head


def connection_cap(configured: int | None) -> int:
    """Open connections one worker serves (0: no cap). Unset, ``MAX_CONNECTIONS`` or half the
    process's file-descriptor limit, whichever is lower: the other half is left for what a
    connection may hold open besides its socket (an upstream connection, a blob file) and
    the databases, so a flood is answered instead of failing with "too many open files"."""
    if configured is not None:
        return configured
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(1, min(MAX_CONNECTIONS, soft // 2))
