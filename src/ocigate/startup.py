"""What start-up checks and says before any worker runs: files the settings name are
readable, one line saying where and what is served, and a warning when that is wide open."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from .config import Settings
from .store_config import EmbeddedStoreConfig, ObjectsStoreConfig, UpstreamsStoreConfig


class StartupError(Exception):
    """The settings cannot be served as they are; the message says which setting and why."""


def named_files(settings: Settings) -> Iterator[tuple[str, Path]]:
    """Every file the settings point to, with the key naming it."""
    auth = settings.auth
    if auth is not None:
        if auth.htpasswd is not None:
            yield "auth.htpasswd", auth.htpasswd
        if auth.token.key_file is not None:
            yield "auth.token.key_file", auth.token.key_file
        if auth.oidc is not None and auth.oidc.jwks_file is not None:
            yield "auth.oidc.jwks_file", auth.oidc.jwks_file
    if isinstance(settings.store, UpstreamsStoreConfig):
        for i, upstream in enumerate(settings.store.upstreams):
            if upstream.ca_file is not None:
                yield f"store.upstreams.{i}.ca_file", upstream.ca_file
    if isinstance(settings.store, ObjectsStoreConfig) and settings.store.s3.ca_file is not None:
        yield "store.s3.ca_file", settings.store.s3.ca_file


def check_files(settings: Settings) -> None:
    """Fail now, naming the file, rather than answer every request 500 later."""
    for key, path in named_files(settings):
        try:
            with path.open("rb") as file:
                file.read(1)
        except OSError as error:
            raise StartupError(f"{key}: cannot read {path}: {error.strerror or error}") from None


def _served_over_tls(settings: Settings) -> bool:
    return settings.tls is not None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def _what(settings: Settings) -> str:
    store = settings.store
    if isinstance(store, EmbeddedStoreConfig):
        return f"embedded store {store.data_dir}"
    if isinstance(store, ObjectsStoreConfig):
        where = store.s3.endpoint or "AWS S3"
        return f"objects store: bucket {store.s3.bucket} at {where}, {_database(store)}"
    cached = [u.cache for u in store.upstreams]
    parts = [
        u.url
        + (f" as {u.prefix}/" if u.prefix else "")
        + (" (cached)" if u.cache and not all(cached) else "")
        for u in store.upstreams
    ]
    kind = "pull-through cache of" if all(cached) else "gateway to"
    where = f", cache in {store.data_dir / 'cache'}" if any(cached) else ""
    return f"{kind} {', '.join(parts)}{where}"


def _database(store: ObjectsStoreConfig) -> str:
    # Host and database name only: the URL may carry a password.
    url = urlsplit(store.database.url)
    return f"database {url.hostname or 'localhost'}{url.path or ''}"


def listening_line(settings: Settings) -> str:
    """``listening on http://127.0.0.1:5000 (embedded store ocigate-data, 2 workers)``."""
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    scheme = "https" if _served_over_tls(settings) else "http"
    workers = f"{settings.workers} worker{'s' if settings.workers != 1 else ''}"
    return f"listening on {scheme}://{host}:{settings.port} ({_what(settings)}, {workers})"


def exposure_warning(settings: Settings) -> str | None:
    """A warning when anyone on the network may read, push and delete, in clear text."""
    if _is_loopback(settings.host) or settings.auth is not None or _served_over_tls(settings):
        return None
    return (
        f"listening on {settings.listen}, reachable from other hosts, with no auth and no TLS:"
        " anyone who can connect may pull, push and delete (set auth: and tls:, or listen on"
        " 127.0.0.1)"
    )
