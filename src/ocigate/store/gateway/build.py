"""The gateway backend from its configuration: one UpstreamStore per upstream (behind its
referrers tag fallback, and a pull-through cache when asked), routed by prefix and ``ns``."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from ...client import ClientOptions
from ...layers.referrers_tags import ReferrersTags
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


def build_gateway(
    upstreams: Sequence[UpstreamConfig],
    data_dir: Path,
    *,
    upload_signing_key: str | None,
    max_manifest_size: int,
) -> RouterStore:
    """The router over ``upstreams``; ``data_dir`` holds the generated upload signing key (when
    none is configured), the referrers index locks and the caches."""
    key = load_or_create_key(data_dir, upload_signing_key)
    routes: list[tuple[str, Registry]] = []
    hosts: dict[str, Registry] = {}
    for upstream in upstreams:
        direct = UpstreamStore(
            client_options(upstream),
            key,
            max_manifest_size,
            # A cache needs the bytes: it follows redirects whatever the setting says.
            pass_redirects=upstream.pass_redirects and not upstream.cache,
        )
        forwarded = ReferrersTags(direct, direct.name, lock_dir=data_dir / "locks")
        store: Registry = forwarded
        if upstream.cache:
            store = CacheStore(
                direct,
                cache_dir(data_dir, upstream),
                tag_ttl=upstream.cache_tag_ttl,
                push=upstream.cache_push,
                max_size=upstream.cache_max_size,
                stale_timeout=upstream.cache_stale_timeout,
                cooldown=upstream.cache_outage_cooldown,
                source=forwarded,
            )
        routes.append((upstream.prefix, store))
        hosts.setdefault(upstream.host, store)  # two upstreams on one host: the first wins
    return RouterStore(routes, hosts)


def cache_dir(data_dir: Path, upstream: UpstreamConfig) -> Path:
    """One cache directory per upstream URL: repositories of different upstreams may share
    names, so their ``(repo, digest)`` keys must not meet."""
    name = hashlib.sha256(upstream.url.encode()).hexdigest()[:16]
    return data_dir / "cache" / name
