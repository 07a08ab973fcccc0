"""What a launcher of an alternative server (uvicorn, granian) is given to serve."""

from __future__ import annotations

from dataclasses import dataclass

from ..production_config import TlsConfig


@dataclass(frozen=True)
class Launch:
    """Serve the ASGI app ``app_factory`` names (a factory, ``module:function``) on
    ``host:port`` in ``workers`` processes, over HTTPS with ``tls``; each worker takes at most
    ``max_connections`` open connections (0: no cap)."""

    app_factory: str
    host: str
    port: int
    workers: int
    tls: TlsConfig | None
    max_connections: int
