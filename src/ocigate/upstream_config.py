"""Configuration of the gateway's upstream registries (``upstreams:`` in the settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ByteSize, ConfigDict, Field, field_validator, model_validator

from .oci.errors import NameInvalid
from .oci.names import check_name


def prefix_field(value: str) -> str:
    """A pydantic validator: a repository prefix without its slashes, a valid repository name
    or empty (upstreams and the scheduled sync share it)."""
    value = value.strip("/")
    if value:
        try:
            check_name(value)
        except NameInvalid as exc:
            raise ValueError("must be a valid repository name (or empty)") from exc
    return value


class UpstreamConfig(BaseModel):
    """One upstream registry and the repository prefix routed to it."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="Base URL of the upstream registry, e.g. https://registry-1.io.")
    prefix: str = Field(
        "",
        description="Repository prefix routed here (`hub` serves `hub/library/alpine` as"
        " `library/alpine`); empty routes every repository. The longest matching prefix wins.",
    )
    username: str | None = Field(None, description="Basic / token-service user name.")
    password: str | None = Field(None, repr=False, description="Password for `username`.")
    token: str | None = Field(None, repr=False, description="A static bearer token to send.")
    tls_verify: bool = Field(True, description="Verify the upstream's TLS certificate.")
    ca_file: Path | None = Field(None, description="PEM CA bundle to verify the upstream with.")
    connect_timeout: float = Field(5.0, gt=0, description="Seconds to connect.")
    read_timeout: float = Field(60.0, gt=0, description="Seconds to wait for upstream data.")
    retries: int = Field(
        3, ge=0, le=10, description="Retries of idempotent requests (GET/HEAD/DELETE)."
    )
    max_connections: int = Field(
        256,
        ge=1,
        le=65536,
        description="Connections to the upstream per worker process; further requests wait"
        " for one, up to `connect_timeout`.",
    )
    forward_credentials: bool = Field(
        False,
        description="Use each client's own credentials upstream instead of the gateway's:"
        " Basic credentials for the upstream's Basic auth or its token service, a bearer"
        " token as is. Refused upstream (or none given): 401 with a Basic challenge."
        " Not with `cache` (cached content would bypass the upstream's checks).",
    )
    token_realm_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts besides the upstream's own whose token realm (same scheme) may"
        " receive credentials, e.g. `[auth.docker.io]`; a realm elsewhere gets an anonymous"
        " token request.",
    )
    allow_private_redirects: bool = Field(
        False,
        description="Let redirects lead to loopback, link-local or private addresses even when"
        " the upstream itself is not on such an address.",
    )
    max_body_size: ByteSize = Field(
        ByteSize(4 * 1024 * 1024),
        ge=64 * 1024,
        description="Largest upstream body read whole into memory: a page of tags, catalog or"
        " referrers, a token answer, an upload answer (bytes, or e.g. `16MiB`); more is 502."
        " Manifests have `max_manifest_size`.",
    )
    pass_redirects: bool = Field(
        False,
        description="Answer blob GETs the upstream redirects (e.g. to a presigned object-store"
        " URL) with that redirect instead of following it; ignored when `cache` is on.",
    )
    cache: bool = Field(
        False,
        description="Pull-through cache: keep what is pulled under `data_dir/cache/` and serve"
        " it from there (digests for ever, tags for `cache_tag_ttl`, stale tags when the"
        " upstream is down).",
    )
    cache_tag_ttl: float = Field(
        60.0, ge=0, description="Seconds a cached tag is served before a HEAD revalidates it."
    )
    cache_stale_timeout: float = Field(
        5.0,
        gt=0,
        description="Cache only: most seconds a client waits for the upstream before what is"
        " cached is served stale (the revalidation goes on in the background).",
    )
    cache_outage_cooldown: float = Field(
        30.0,
        gt=0,
        description="Cache only: after an upstream failure, seconds it is not asked again"
        " (cached content served at once) while a background probe waits for it to answer.",
    )
    cache_max_size: ByteSize | None = Field(
        None,
        description="Largest total size of cached blobs (bytes, or e.g. `50GiB`); the least"
        " recently served are evicted beyond it. None: no limit.",
    )
    cache_push: Literal["reject", "write-through"] = Field(
        "reject",
        description="Pushes to a cache: `reject` (405 UNSUPPORTED) or `write-through` to the"
        " upstream.",
    )

    @property
    def host(self) -> str:
        """``host[:port]`` of the URL, lower-cased: what a client's ``ns`` names."""
        return urlsplit(self.url).netloc.rpartition("@")[2].lower()

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or len(value) < 10:
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    _check_prefix = field_validator("prefix")(prefix_field)

    @model_validator(mode="after")
    def _check_credentials(self) -> UpstreamConfig:
        if self.password is not None and self.username is None:
            raise ValueError("password needs username")
        if self.token is not None and self.username is not None:
            raise ValueError("use either token or username/password, not both")
        if self.forward_credentials and self.cache:
            raise ValueError("forward_credentials cannot be combined with cache")
        return self


def check_prefixes(upstreams: list[UpstreamConfig]) -> list[UpstreamConfig]:
    seen: set[str] = set()
    for upstream in upstreams:
        if upstream.prefix in seen:
            raise ValueError(f"two upstreams with prefix {upstream.prefix!r}")
        seen.add(upstream.prefix)
    return upstreams
