"""Configuration of events and their webhooks (the ``events:`` key)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..layers.globs import check_glob, matches

EventType = Literal[
    "manifest.pushed",
    "tag.moved",
    "tag.deleted",
    "manifest.deleted",
    "blob.deleted",
    "repository.created",
    "manifest.pulled",
    "blob.pulled",
]
EVENT_TYPE_PREFIX = "io.ocigate."  # CloudEvents ``type`` is the prefix + the short type


class Webhook(BaseModel):
    """One HTTP endpoint receiving CloudEvents 1.0 (structured JSON) by POST."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="Stable name: delivery progress is kept under it.",
    )
    url: str = Field(description="http(s) URL to POST each event to.")
    secret: str | None = Field(
        None, description="HMAC-SHA256 key: X-Ocigate-Signature: sha256=<hex of the body>."
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers.")
    timeout: float = Field(10.0, gt=0, le=300, description="Seconds per delivery attempt.")
    repositories: list[str] = Field(
        default_factory=lambda: ["**"], description="Repository globs whose events it gets."
    )
    types: list[EventType] = Field(
        default_factory=list, description="Event types it gets (empty: all emitted)."
    )
    artifact_types: list[str] = Field(
        default_factory=list, description="Artifact (media) types it gets (empty: all)."
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("repositories")
    @classmethod
    def _check_repositories(cls, value: list[str]) -> list[str]:
        return [check_glob(glob) for glob in value]

    def accepts(self, repo: str, short_type: str, artifact_type: str | None) -> bool:
        if self.types and short_type not in self.types:
            return False
        if self.artifact_types and artifact_type not in self.artifact_types:
            return False
        return any(matches(glob, repo) for glob in self.repositories)


class EventsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        False, description="Record events even without webhooks (implied by any webhook)."
    )
    pulls: bool = Field(False, description="Also record manifest and blob pulls.")
    source: str = Field("/ocigate", min_length=1, description="CloudEvents `source` attribute.")
    webhooks: list[Webhook] = Field(default_factory=list)
    # The defaults keep retrying for about 2.7 hours: a receiver down for an hour loses nothing.
    max_attempts: int = Field(
        40, ge=1, le=1000, description="Failed attempts before an event is dead-lettered."
    )
    backoff_initial: float = Field(1.0, gt=0, description="Seconds before the first retry.")
    backoff_max: float = Field(300.0, gt=0, description="Longest wait between retries.")
    retention: float = Field(
        7 * 86400.0, gt=0, description="Seconds delivered events are kept (for `events list`)."
    )
    poll_interval: float = Field(
        0.5, gt=0, le=60, description="Seconds between outbox polls when idle."
    )

    @model_validator(mode="after")
    def _check_names(self) -> EventsConfig:
        names = [w.name for w in self.webhooks]
        for i, name in enumerate(names):
            if names.index(name) != i:
                raise ValueError(f"webhooks[{i}].name: {name!r} is used twice")
        return self

    @property
    def active(self) -> bool:
        return self.enabled or bool(self.webhooks)

    def retry_in(self, attempts: int) -> float | None:
        """Seconds before the next try after ``attempts`` failures; None: dead-letter it."""
        if attempts >= self.max_attempts:
            return None
        return float(min(self.backoff_max, self.backoff_initial * 2 ** (attempts - 1)))
