"""Configuration of the server's scheduled sync (the ``sync:`` key): what to pull, from where,
how often, into this registry."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..durations import duration_field
from ..upstream_config import prefix_field
from .endpoints import parse_endpoint
from .plan import Platform


class SyncConfig(BaseModel):
    """One source pulled into this registry every ``interval``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(
        description="The registry pulled from: [http://|https://]HOST[:PORT][/PREFIX]"
        " (https when no scheme is given)."
    )
    repos: list[str] = Field(
        min_length=1,
        description="Repositories under the source's prefix: names, or globs (which need the"
        " source's `_catalog`).",
    )
    tags: str | None = Field(None, description="Only tags matching this regex in full.")
    interval: float = Field(
        3600.0, gt=0, description="How often (seconds, or e.g. 30s, 15m, 1h); first at start."
    )
    referrers: bool = Field(False, description="Also pull referrers (signatures, SBOMs).")
    platform: str | None = Field(
        None,
        description="OS/ARCH[/VARIANT]: only that image of an index, tagged in its place."
        " Unset: indexes whole, byte-exact.",
    )
    prefix: str = Field("", description="Repository prefix here, e.g. `mirror/hub`.")
    username: str | None = Field(None, description="Source user name (Basic or token service).")
    password: str | None = Field(None, repr=False, description="Password for `username`.")
    tls_verify: bool = Field(True, description="Verify the source's TLS certificate.")
    jobs: int = Field(4, ge=1, le=64, description="Parallel blob transfers.")

    _parse_interval = field_validator("interval", mode="before")(duration_field)

    @field_validator("source")
    @classmethod
    def _check_source(cls, value: str) -> str:
        parse_endpoint(value)  # its ValueError names what is wrong
        return value

    @field_validator("tags")
    @classmethod
    def _check_tags(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from exc
        return value

    @field_validator("platform")
    @classmethod
    def _check_platform(cls, value: str | None) -> str | None:
        if value is not None:
            Platform.parse(value)
        return value

    _check_prefix = field_validator("prefix")(prefix_field)

    @model_validator(mode="after")
    def _check_credentials(self) -> SyncConfig:
        if self.password is not None and self.username is None:
            raise ValueError("password needs username")
        return self
