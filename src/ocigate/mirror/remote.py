"""A mirror's end opened as a :class:`Registry`: the upstream store over the registry client
(auth challenges, retries, bounded timeouts, streamed bodies)."""

from __future__ import annotations

import secrets

from ..client import ClientOptions
from ..layers.referrers_tags import ReferrersTags
from ..registry import Registry
from ..store.upstream import UpstreamStore
from .endpoints import Endpoint


def open_registry(
    endpoint: Endpoint,
    login: tuple[str, str] | None,
    *,
    connections: int = 16,
    tls_verify: bool = True,
    read_timeout: float = 60.0,
) -> Registry:
    """``endpoint`` as a Registry, with the referrers tag schema where it has no referrers API
    (reading a source's referrers through it, writing a destination's)."""
    username, password = login if login is not None else (None, None)
    options = ClientOptions(
        url=endpoint.url,
        username=username,
        password=password,
        tls_verify=tls_verify,
        read_timeout=read_timeout,
        max_connections=connections,
    )
    # Upload ids are signed for the upstream store's gateway use; here they never leave us.
    store = UpstreamStore(options, secrets.token_bytes(32))
    return ReferrersTags(store, store.name)
