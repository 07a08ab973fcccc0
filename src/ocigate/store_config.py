"""The ``store:`` section: which backend serves the registry, one model per ``kind``, and the
mapping of the older top-level keys (``data_dir``, ``upstreams``, …) onto it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .durations import duration_field
from .objects_config import DatabaseConfig, S3Config
from .upstream_config import UpstreamConfig, check_prefixes

_DATA_DIR = Field(
    Path("ocigate-data"),
    description="Where the store lives (gateway, cache: upload signing key, locks, cached"
    " content, rate-limit and events state).",
)
_UPLOAD_EXPIRY = Field(
    86400,
    ge=60,
    description="Seconds after which an idle upload session is removed (and, with"
    " rate_limits.max_uploads, stops counting against its client).",
)


class _OverPortsConfig(BaseModel):
    """What the backends over a blob store and a metadata store share: the registry logic's
    knobs."""

    model_config = ConfigDict(extra="forbid")

    data_dir: Path = _DATA_DIR
    sparse_index: bool = Field(
        False, description="Accept image indexes whose child manifests are not in the repository."
    )
    auto_mount: bool = Field(
        False, description="Mount without `from`: link the blob from any repository holding it."
    )
    upload_expiry: int = _UPLOAD_EXPIRY
    gc_interval: int = Field(
        0,
        ge=0,
        description="Seconds between automatic garbage collections of blobs nothing"
        " references (one worker runs each); 0: only `ocigate gc`.",
    )
    gc_grace: float = Field(
        3600.0,
        ge=0,
        description="Garbage collection spares blobs no manifest references yet for this long"
        " after they were written or last linked (pushes upload layers before the manifest):"
        " seconds, or a duration such as `30m`, `1h`, `2d`. Also `ocigate gc`'s default.",
    )

    _parse_gc_grace = field_validator("gc_grace", mode="before")(duration_field)


class EmbeddedStoreConfig(_OverPortsConfig):
    """``kind: embedded``: blob files and SQLite under ``data_dir``."""

    kind: Literal["embedded"] = "embedded"


class ObjectsStoreConfig(_OverPortsConfig):
    """``kind: objects``: blob bytes in an S3 bucket, everything else in PostgreSQL, shared
    by any number of replicas (``data_dir`` keeps only this replica's own state)."""

    kind: Literal["objects"]
    s3: S3Config
    database: DatabaseConfig


class _UpstreamsStoreConfig(BaseModel):
    """What the gateway and the cache share: the upstreams and the gateway's own state."""

    model_config = ConfigDict(extra="forbid")

    data_dir: Path = _DATA_DIR
    upstreams: list[UpstreamConfig] = Field(
        min_length=1,
        description="Forward to these registries (each: url, prefix, username, password or"
        " token, tls_verify, ca_file, connect_timeout, read_timeout, retries, pass_redirects,"
        " cache, cache_tag_ttl, cache_push).",
    )
    upload_signing_key: str | None = Field(
        None,
        repr=False,
        description="Key signing upload ids (share it between replicas); generated once into"
        " data_dir when unset.",
    )
    upload_expiry: int = _UPLOAD_EXPIRY

    @field_validator("upstreams")
    @classmethod
    def _check_upstreams(cls, value: list[UpstreamConfig]) -> list[UpstreamConfig]:
        return check_prefixes(value)


class GatewayStoreConfig(_UpstreamsStoreConfig):
    """``kind: gateway``: forward to the upstreams; each may cache (``cache: true``)."""

    kind: Literal["gateway"]


class CacheStoreConfig(_UpstreamsStoreConfig):
    """``kind: cache``: a gateway whose every upstream is a pull-through cache. An upstream
    that does not say ``cache`` gets ``cache: true``; one saying ``cache: false`` is an error."""

    kind: Literal["cache"]

    @field_validator("upstreams", mode="before")
    @classmethod
    def _cache_by_default(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"cache": True} | item if isinstance(item, dict) else item for item in value]
        return value

    @model_validator(mode="after")
    def _all_cache(self) -> CacheStoreConfig:
        direct = [u.url for u in self.upstreams if not u.cache]
        if direct:
            raise ValueError(f"kind cache: every upstream caches; not {', '.join(direct)}")
        return self


StoreConfig = Annotated[
    EmbeddedStoreConfig | ObjectsStoreConfig | GatewayStoreConfig | CacheStoreConfig,
    Field(discriminator="kind"),
]
UpstreamsStoreConfig = GatewayStoreConfig | CacheStoreConfig

# The top-level keys of the configuration before `store:` existed.
OLD_KEYS = (
    "data_dir",
    "sparse_index",
    "auto_mount",
    "upload_expiry",
    "gc_interval",
    "gc_grace",
    "upstreams",
    "upload_signing_key",
)


def map_old_keys(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with the old top-level storage keys moved into ``store``: with ``upstreams``
    it is ``kind: gateway`` (each upstream keeps its own ``cache``), else the kind is left for
    the other sources or the default (embedded) to decide. Both forms at once is an error."""
    old = [key for key in OLD_KEYS if key in data]
    if not old:
        return data
    if "store" in data:
        raise ValueError(
            f"store: and the top-level key(s) {', '.join(old)} both given; move"
            f" {', '.join(old)} into store:"
        )
    mapped = {key: value for key, value in data.items() if key not in OLD_KEYS}
    store = {key: data[key] for key in old}
    if store.get("upstreams"):
        store["kind"] = "gateway"
    elif "upstreams" in store:
        del store["upstreams"]  # `upstreams: []` meant the embedded store
    mapped["store"] = store
    return mapped


def default_kind(data: dict[str, Any]) -> dict[str, Any]:
    """A ``store`` mapping that names no kind is the embedded store."""
    store = data.get("store")
    if isinstance(store, dict) and "kind" not in store:
        return data | {"store": {"kind": "embedded"} | store}
    return data
