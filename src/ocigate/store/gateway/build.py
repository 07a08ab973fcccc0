"""The gateway backend from settings: one UpstreamStore per upstream, routed by prefix."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ...client import ClientOptions
from ...config import Settings
from ...registry import Registry
from ...upstream_config import UpstreamConfig
from ..cache import CacheStore
from ..upstream import UpstreamStore
from ..upstream.upload_tokens import load_or_create_key
from .router import RouterStore


def client_options(upstream: UpstreamConfig) -> ClientOptions:
    return ClientOptions(
        url=upstream.url,
        username=upstream.username,
        password=upstream.password,
        token=upstream.token,
        tls_verify=upstream.tls_verify,
        ca_file=upstream.ca_file,
        connect_timeout=upstream.connect_timeout,
        read_timeout=upstream.read_timeout,
        retries=upstream.retries,
        max_connections=upstream.max_connections,
        forward_credentials=upstream.forward_credentials,
        token_realm_hosts=tuple(upstream.token_realm_hosts),
        allow_private_redirects=upstream.allow_private_redirects,
        max_body_size=int(upstream.max_body_size),
    )


def build_gateway(settings: Settings) -> Registry:
    key = load_or_create_key(settings.data_dir, settings.upload_signing_key)
    routes: list[tuple[str, Registry]] = []
    hosts: dict[str, Registry] = {}
    for upstream in settings.upstreams:
        direct = UpstreamStore(
            client_options(upstream),
            key,
            settings.max_manifest_size,
            # A cache needs the bytes: it follows redirects whatever the setting says.
            pass_redirects=upstream.pass_redirects and not upstream.cache,
            lock_dir=Path(settings.data_dir) / "locks",
        )
        store: Registry = direct
        if upstream.cache:
            store = CacheStore(
                direct,
                cache_dir(settings, upstream),
                tag_ttl=upstream.cache_tag_ttl,
                push=upstream.cache_push,
                max_size=upstream.cache_max_size,
                stale_timeout=upstream.cache_stale_timeout,
                cooldown=upstream.cache_outage_cooldown,
            )
        routes.append((upstream.prefix, store))
        hosts.setdefault(upstream.host, store)  # two upstreams on one host: the first wins
    return RouterStore(routes, hosts)


def cache_dir(settings: Settings, upstream: UpstreamConfig) -> Path:
    """One cache directory per upstream URL: repositories of different upstreams may share
    names, so their ``(repo, digest)`` keys must not meet."""
    name = hashlib.sha256(upstream.url.encode()).hexdigest()[:16]
    return Path(settings.data_dir) / "cache" / name
