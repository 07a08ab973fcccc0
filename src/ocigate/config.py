"""One typed configuration model: YAML file < ``OCIGATE_*`` environment < command-line flags.

Every key is validated at start-up; an invalid value fails naming the key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from .auth.config import AuthConfig
from .auth.policy import PolicyConfig
from .config_env import ENV_NESTED, ENV_PREFIX, Environment
from .events.config import EventsConfig
from .layers.artifacts import ArtifactRule, ArtifactType, check_rules, check_types
from .mirror.config import SyncConfig
from .production_config import MetricsConfig, RateLimitsConfig, TlsConfig
from .quota_config import QuotaRule
from .retention_config import RetentionConfig
from .store_config import (
    EmbeddedStoreConfig,
    StoreConfig,
    UpstreamsStoreConfig,
    default_kind,
    map_old_keys,
)
from .ui.config import UiConfig

MiB = 1024 * 1024
# The parsed configuration file while load_settings builds a Settings from it.
_FILE_DATA: ContextVar[Mapping[str, Any]] = ContextVar(
    "ocigate_config_file", default=MappingProxyType({})
)


class Settings(BaseSettings):
    """ocigate's configuration. Field docs are the configuration reference (see README)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter=ENV_NESTED, extra="forbid"
    )

    store: StoreConfig = Field(
        default_factory=lambda: EmbeddedStoreConfig.model_validate({}),
        description="The backend: kind embedded (data_dir, sparse_index, auto_mount,"
        " upload_expiry, gc_interval, gc_grace), gateway or cache (upstreams,"
        " upload_signing_key, data_dir, upload_expiry). The older top-level keys map here.",
    )

    listen: str = Field("0.0.0.0:5000", description="HOST:PORT to serve on.")
    workers: int = Field(1, ge=1, le=64, description="Worker processes.")
    server: Literal["granian", "uvicorn", "builtin"] = Field(
        "builtin",
        description="HTTP server running the ASGI app: granian, uvicorn, or ocigate's own"
        " HTTP/1.1 server (`builtin`).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log verbosity; request logs are at info."
    )
    max_manifest_size: int = Field(
        4 * MiB, ge=1024, description="Largest manifest accepted (bytes); larger gets 413."
    )
    max_header_size: int = Field(
        64 * 1024,
        ge=1024,
        description="Largest request header block (bytes as received: name, ': ', value and"
        " CRLF of each line); 431 above.",
    )
    max_header_count: int = Field(
        100, ge=16, le=10000, description="Most request header lines; more gets 431."
    )
    max_request_target: int = Field(
        8192, ge=1024, le=1024 * 1024, description="Longest request target (bytes); 414 above."
    )
    body_timeout: float = Field(
        30.0,
        gt=0,
        description="Seconds a request body may send nothing (built-in server) before the"
        " connection is closed; also bounds dropping an unread body after an early answer.",
    )
    idle_timeout: float = Field(
        30.0,
        gt=0,
        description="Seconds a connection may wait without sending a whole request head, kept"
        " alive or slow (built-in server), and a client may take none of its answer.",
    )
    chunk_min_length: int = Field(
        0, ge=0, description="Advertised OCI-Chunk-Min-Length (bytes); 0 advertises none."
    )
    referrers_page_size: int = Field(
        1000, ge=1, description="Most descriptors in one referrers response before paging."
    )
    tags_page_size: int = Field(
        10000, ge=1, description="Most tags or repositories in one list response without `n`."
    )

    auth: AuthConfig | None = Field(
        None, description="Who may log in: htpasswd users, the token service, OIDC issuers."
    )
    policy: PolicyConfig | None = Field(
        None,
        description="What each identity may do per repository glob. Unset: everyone may do"
        " everything without auth, only authenticated users with it.",
    )
    artifact_types: list[ArtifactType] = Field(
        default_factory=list,
        description="Artifact types (a mapping each, or the name of a builtin: record, mcp):"
        " media types, payload JSON Schemas, max_payload_size.",
    )
    artifact_policy: list[ArtifactRule] = Field(
        default_factory=list,
        description="Per repository glob (longest wins): allowed artifact_types, images,"
        " other_artifacts. Repositories no rule matches are unrestricted.",
    )

    @field_validator("artifact_types")
    @classmethod
    def _check_artifact_types(cls, value: list[ArtifactType]) -> list[ArtifactType]:
        return check_types(value)

    @field_validator("artifact_policy")
    @classmethod
    def _check_artifact_policy(
        cls, value: list[ArtifactRule], info: ValidationInfo
    ) -> list[ArtifactRule]:
        if "artifact_types" in info.data:  # else that key's own error is the one to report
            check_rules(info.data["artifact_types"], value)
        return value

    events: EventsConfig = Field(
        default_factory=lambda: EventsConfig.model_validate({}),
        description="Durable events (outbox) and their CloudEvents webhooks: webhooks (name,"
        " url, secret, headers, timeout, repositories, types, artifact_types), pulls,"
        " max_attempts, backoff_initial, backoff_max, poll_interval, source, enabled.",
    )

    retention: RetentionConfig = Field(
        default_factory=lambda: RetentionConfig.model_validate({}),
        description="What garbage collection deletes before its mark: rules (repos, keep_last,"
        " keep_younger_than, keep_tags) and untagged_grace (default 24h).",
    )

    sync: list[SyncConfig] = Field(
        default_factory=list,
        description="Scheduled pulls into this registry, each: source, repos, tags, interval,"
        " referrers, platform, prefix, username, password, tls_verify, jobs. The copies go"
        " through the events layer: each is reported as a push.",
    )

    tls: TlsConfig | None = Field(
        None, description="HTTPS: cert_file, key_file (reloaded when they change), client_ca_file."
    )
    metrics: MetricsConfig = Field(
        default_factory=lambda: MetricsConfig.model_validate({}),
        description="Prometheus metrics at /metrics: enabled, bearer_token.",
    )
    rate_limits: RateLimitsConfig = Field(
        default_factory=lambda: RateLimitsConfig.model_validate({}),
        description="Token buckets per client and repository glob (rules: repository, reads,"
        " writes), max_uploads per client, max_connections per worker.",
    )

    ui: UiConfig = Field(
        default_factory=lambda: UiConfig.model_validate({}),
        description="The web UI: enabled (unset: on except for gateways), path, session_secret,"
        " session_ttl, page_size.",
    )

    quotas: list[QuotaRule] = Field(
        default_factory=list,
        description="Storage quotas per repository glob (first matching rule applies): repos,"
        " max_bytes, max_tags. Embedded and objects stores only.",
    )

    @model_validator(mode="after")
    def _quotas_need_local_store(self) -> Settings:
        # A gateway or cache does not hold what its upstream stores: it cannot count it.
        if self.quotas and isinstance(self.store, UpstreamsStoreConfig):
            raise ValueError(
                f"quotas: the store is kind {self.store.kind}; quotas are enforced on the"
                " stores holding the bytes (kinds embedded and objects), not on an upstream"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _store_section(cls, data: Any) -> Any:
        return default_kind(map_old_keys(data)) if isinstance(data, dict) else data

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("must be HOST:PORT, e.g. 0.0.0.0:5000")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Earlier sources win: flags (init) over environment over the file.
        # Each source maps its own old storage keys, so one source's `store:` and another's
        # `data_dir` (a flag over a file) merge instead of clashing.
        return init_settings, Environment(settings_cls), _YamlFile(settings_cls, _FILE_DATA.get())


class _YamlFile(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], data: Mapping[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = map_old_keys(dict(data))

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ValueError(_yaml_problem(path, error)) from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the configuration must be a mapping of keys")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from a file, the environment and explicit (CLI) overrides."""
    token = _FILE_DATA.set(read_config_file(config_file) if config_file else {})
    try:
        given = {k: v for k, v in overrides.items() if v is not None}
        return Settings(**map_old_keys(given))
    finally:
        _FILE_DATA.reset(token)


def _yaml_problem(path: Path, error: yaml.YAMLError) -> str:
    """``FILE:LINE:COLUMN: problem``, on one line, as compilers say it."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    return f"{where}: YAML syntax error: {' '.join(problem.split())}"


MASK = "********"
# Keys whose string values are secrets wherever they sit: password, token, secret,
# upload_signing_key, secret_key, client_secret, …
_SECRET_KEY = re.compile(r"(^|_)(password|token|secret|key)$")
_URL_PASSWORD = re.compile(r"(://[^/:@]*:)[^/@]*@")


def masked(value: Any, key: str = "") -> Any:
    """A ``model_dump(mode="json")`` with every secret replaced by ``MASK``: values of secret
    keys, every header value (they carry credentials), passwords inside URLs."""
    if isinstance(value, dict):
        if key == "headers":
            return {name: MASK for name in value}
        return {k: masked(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(item, key) for item in value]
    if isinstance(value, str):
        if _SECRET_KEY.search(key):
            return MASK
        return _URL_PASSWORD.sub(rf"\g<1>{MASK}@", value)
    return value
