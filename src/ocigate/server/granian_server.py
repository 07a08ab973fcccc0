"""Serving with granian (``server: granian``): its workers, HTTPS with certificate reload.

granian's TLS lives in Rust and reads the files when a worker starts, so a rotation is picked
up by respawning the workers: a thread of the main process looks at the files' stamps as the
built-in server does and, once the new pair loads, sends the process SIGHUP, on which granian
starts a new worker before it stops each old one (which finishes the requests it has).
"""

from __future__ import annotations

import logging
import os
import signal
import ssl
import threading
import time
from typing import TYPE_CHECKING, Any

from ..production_config import TlsConfig
from .certificates import CHECK_EVERY, build_context, files_stamp
from .launch import Launch

if TYPE_CHECKING:
    from granian.server.common import AbstractServer

log = logging.getLogger("ocigate.server")


def serve_granian(launch: Launch) -> None:
    """Serve ``launch``; a worker takes at most ``max_connections`` connections at once (0:
    granian's own bound, 1024 / workers), the next ones wait in the listen backlog."""
    from granian import Granian
    from granian.constants import Interfaces, Loops

    tls = launch.tls
    server = Granian(
        launch.app_factory,
        address=launch.host,
        port=launch.port,
        interface=Interfaces.ASGI,
        workers=launch.workers,
        loop=Loops.uvloop,
        websockets=False,
        factory=True,
        log_enabled=False,  # ocigate writes its own structured request log
        respawn_failed_workers=True,
        backpressure=launch.max_connections or None,
        ssl_cert=None if tls is None else tls.cert_file,
        ssl_key=None if tls is None else tls.key_file,
        ssl_ca=None if tls is None else tls.client_ca_file,
        ssl_client_verify=tls is not None and tls.client_ca_file is not None,
    )
    if tls is not None:
        watcher = threading.Thread(
            target=_watch, args=(tls, CHECK_EVERY), name="ocigate-tls-watch", daemon=True
        )
        server.on_startup(watcher.start)
        # granian resolves the paths once (a Kubernetes secret's symlinks then point at files
        # a rotation removes): resolve them again before the workers are respawned.
        server.on_reload(lambda: _resolve_again(server, tls))
    server.serve()


def _resolve_again(server: AbstractServer[Any], tls: TlsConfig) -> None:
    from granian.constants import SSLProtocols

    verify = tls.client_ca_file is not None
    # The arguments as Granian() passed them: its default minimum version, no CRL, no password.
    try:
        server.build_ssl_context(
            tls.cert_file, tls.key_file, None, SSLProtocols.tls13, tls.client_ca_file, [], verify
        )
    except (OSError, ssl.SSLError) as error:  # replaced again meanwhile: the paths as before
        log.warning("TLS files not loadable at reload, keeping their previous paths: %s", error)


def _watch(tls: TlsConfig, every: float) -> None:
    """Signal a reload each time the files change to a pair that loads (a half-written one is
    looked at again next time)."""
    served = files_stamp(tls)
    while True:
        time.sleep(every)
        stamp = files_stamp(tls)
        if stamp == served:
            continue
        try:
            build_context(tls)
        except (OSError, ssl.SSLError, ValueError) as error:
            log.warning("TLS reload failed, keeping the previous certificate: %s", error)
            continue
        served = stamp
        log.info("TLS certificate changed in %s: respawning the workers", tls.cert_file)
        os.kill(os.getpid(), signal.SIGHUP)
