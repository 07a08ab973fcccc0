"""Settings for serving in production: ``tls``, ``metrics`` and ``rate_limits``."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class TlsConfig(BaseModel):
    """HTTPS on the registry's port. The files are re-read when they change (rotation)."""

    model_config = ConfigDict(extra="forbid")

    cert_file: Path = Field(description="PEM certificate chain (leaf first).")
    key_file: Path = Field(description="PEM private key of the certificate.")
    client_ca_file: Path | None = Field(
        None, description="PEM CA bundle: when set, clients must present a certificate it signed."
    )


class MetricsConfig(BaseModel):
    """Prometheus metrics at ``GET /metrics`` on the registry's own port."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Serve /metrics.")
    bearer_token: str | None = Field(
        None, repr=False, description="When set, scrapes must send `Authorization: Bearer` it."
    )


class Budget(BaseModel):
    """A token bucket: ``rate`` requests a second on average, bursts of ``burst``."""

    model_config = ConfigDict(extra="forbid")

    rate: float = Field(gt=0, description="Requests per second refilled.")
    burst: int = Field(ge=1, description="Bucket size: requests allowed at once.")


class RateRule(BaseModel):
    """Budgets for the repositories a glob matches (the longest matching glob decides)."""

    model_config = ConfigDict(extra="forbid")

    repository: str = Field("**", description="Repository glob (`*` in a component, `**` across).")
    reads: Budget | None = Field(None, description="GET/HEAD budget per client; none: unlimited.")
    writes: Budget | None = Field(
        None, description="POST/PUT/PATCH/DELETE budget per client; none: unlimited."
    )


class RateLimitsConfig(BaseModel):
    """Request limits per client (the authenticated identity, else the client address)."""

    model_config = ConfigDict(extra="forbid")

    rules: list[RateRule] = Field(default_factory=list, description="Budgets per repository glob.")
    max_uploads: int = Field(
        1000,
        ge=0,
        description="Open upload sessions per client started within `upload_expiry` (a push"
        " opens one per layer at a time); 0: no cap.",
    )
    max_connections: int | None = Field(
        None,
        ge=0,
        description="Open connections per worker; unset: 4096 or half the process's open-file"
        " limit, whichever is lower; 0: no cap.",
    )
