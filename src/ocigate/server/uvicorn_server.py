"""Serving with uvicorn (``server: uvicorn``): its workers, HTTPS with certificate reload."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..production_config import TlsConfig
from .certificates import ReloadingContext
from .launch import Launch

if TYPE_CHECKING:
    import uvicorn


@dataclass(frozen=True)
class _ReloadingContextFactory:
    """uvicorn's ``ssl_context_factory``: each worker (a spawned process, which gets this
    object pickled) builds its own reloading context when its ``Config.load()`` runs."""

    tls: TlsConfig

    def __call__(
        self, _config: uvicorn.Config, _default: Callable[[], ssl.SSLContext]
    ) -> ssl.SSLContext:
        # No 403 gate here: without a certificate under mutual TLS the handshake fails.
        return ReloadingContext(self.tls, verify=ssl.CERT_REQUIRED).switching()


def serve_uvicorn(launch: Launch) -> None:
    """Serve ``launch``; over ``max_connections`` open connections and requests (0: no cap) a
    worker answers 503."""
    import uvicorn

    tls = launch.tls
    if tls is not None:
        ReloadingContext(tls)  # unreadable certificate files stop start-up here, not in a worker
    uvicorn.run(
        launch.app_factory,
        factory=True,
        host=launch.host,
        port=launch.port,
        workers=launch.workers,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,  # ocigate writes its own structured request log
        log_level="warning",
        server_header=False,
        proxy_headers=False,  # no proxy in front by default; saves a middleware per request
        timeout_graceful_shutdown=10,
        limit_concurrency=launch.max_connections or None,  # 503 above, per worker
        ssl_context_factory=None if tls is None else _ReloadingContextFactory(tls),
    )
