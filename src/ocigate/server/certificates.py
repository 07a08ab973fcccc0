"""The served TLS context, rebuilt when the certificate, key or client CA file changes.

Shared by the three servers: the built-in one asks for the current context per connection,
uvicorn's context swaps it in during each handshake (``switching``), granian's main process
watches the same file stamps and respawns its workers (``files_stamp``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
import time

from ..production_config import TlsConfig

CHECK_EVERY = 2.0  # seconds between looks at the files' modification times
log = logging.getLogger("ocigate.server")


class ReloadingContext:
    """The server's SSLContext, rebuilt when the certificate, key or client CA file changes.

    ``verify`` is how a client certificate is asked for under mutual TLS: optional where the
    server answers a missing one itself (the built-in server's 403), else required.
    """

    def __init__(
        self,
        config: TlsConfig,
        check_every: float = CHECK_EVERY,
        verify: ssl.VerifyMode = ssl.CERT_OPTIONAL,
    ) -> None:
        self.config = config
        self.check_every = check_every
        self.verify = verify
        self._stamp = files_stamp(config)
        self._context = build_context(config, verify)  # fails start-up on unreadable files
        self._checked = time.monotonic()

    def current(self) -> ssl.SSLContext:
        now = time.monotonic()
        if now - self._checked >= self.check_every:
            self._checked = now
            stamp = files_stamp(self.config)
            if stamp != self._stamp:
                try:
                    self._context = build_context(self.config, self.verify)
                    self._stamp = stamp
                    log.info("TLS certificate reloaded from %s", self.config.cert_file)
                except (OSError, ssl.SSLError, ValueError) as error:
                    # Half-written files during a rotation: keep serving the old pair, retry.
                    log.warning("TLS reload failed, keeping the previous certificate: %s", error)
        return self._context

    def switching(self) -> ssl.SSLContext:
        """A context for a server that keeps one for its listener (uvicorn): each handshake
        is moved to ``current()`` as it starts, so a rotated certificate reaches the next
        connection. OpenSSL calls the SNI callback for every ClientHello, with or without a
        server name, and the swapped-in context supplies certificate, chain and client CA."""
        listening = self._context

        def swap(
            connection: ssl.SSLObject | ssl.SSLSocket, _name: str | None, _ctx: ssl.SSLContext
        ) -> None:
            served = self.current()
            if served is not listening:
                connection.context = served

        listening.sni_callback = swap
        return listening


def files_stamp(config: TlsConfig) -> tuple[int, ...]:
    """What changes when any of the files is rewritten or replaced (renamed over, re-linked)."""
    paths = [config.cert_file, config.key_file, config.client_ca_file]
    stamp: list[int] = []
    for path in paths:
        if path is not None:
            with contextlib.suppress(OSError):
                info = os.stat(path)
                stamp += [info.st_mtime_ns, info.st_size, info.st_ino]
    return tuple(stamp)


def build_context(config: TlsConfig, verify: ssl.VerifyMode = ssl.CERT_OPTIONAL) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(config.cert_file, config.key_file)
    context.set_alpn_protocols(["http/1.1"])
    if config.client_ca_file is not None:
        context.load_verify_locations(config.client_ca_file)
        # A certificate that is sent must verify, or the handshake fails. On the built-in
        # server one not sent at all is answered by _CertificateGate with a 403 the client can
        # show (as nginx answers "No required SSL certificate was sent"): a TLS 1.3 client sees
        # a failed handshake only after it sent its request, and reports it as a closed
        # connection.
        context.verify_mode = verify
    return context
