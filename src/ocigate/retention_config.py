"""Configuration of retention (the ``retention:`` key): which tags and manifests garbage
collection deletes before it marks what is still referenced (``store.core.retention``)."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .durations import duration_field
from .layers.globs import check_glob


class RetentionRule(BaseModel):
    """What one repository glob keeps. A tag is kept when any ``keep_*`` keeps it; the others
    are deleted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    repos: str = Field(
        description="Repository glob (as in the policy: * within a component, ** across); the"
        " most specific matching rule applies."
    )
    keep_last: int | None = Field(
        None, ge=0, description="Keep the N most recently pushed tags (ties: by name)."
    )
    keep_younger_than: float | None = Field(
        None, ge=0, description="Keep tags pushed less than this long ago (e.g. 30d, 12h)."
    )
    keep_tags: list[str] = Field(
        default_factory=list,
        description="Regular expressions; a tag matching one whole is always kept.",
    )

    _parse_keep_younger_than = field_validator("keep_younger_than", mode="before")(duration_field)

    @field_validator("repos")
    @classmethod
    def _check_repos(cls, value: str) -> str:
        return check_glob(value)

    @field_validator("keep_tags")
    @classmethod
    def _check_keep_tags(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _keeps_something(self) -> RetentionRule:
        # A rule keeping nothing would delete every tag: say so rather than do it.
        if self.keep_last is None and self.keep_younger_than is None and not self.keep_tags:
            raise ValueError(
                f"retention rule {self.repos!r} keeps no tag: give keep_last, keep_younger_than"
                ' or keep_tags (keep_tags: [".*"] keeps every tag)'
            )
        return self

    def keeps_by_name(self, tag: str) -> str | None:
        """The ``keep_tags`` pattern ``tag`` matches, if any."""
        return next((p for p in self.keep_tags if re.fullmatch(p, tag)), None)


class RetentionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[RetentionRule] = Field(
        default_factory=list,
        description="Per repository glob: keep_last, keep_younger_than, keep_tags. A repository"
        " no rule matches is left alone.",
    )
    untagged_grace: float | None = Field(
        86400.0,
        ge=0,
        description="In repositories a rule matches: untagged manifests stored longer ago than"
        " this (and kept by nothing) are deleted; null: never.",
    )

    _parse_untagged_grace = field_validator("untagged_grace", mode="before")(duration_field)
