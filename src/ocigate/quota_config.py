"""The ``quotas:`` section: storage limits per repository glob, enforced at push
(``layers.quota``) on the stores that hold the bytes themselves (embedded, objects)."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ByteSize, ConfigDict, Field, field_validator, model_validator

from .layers.globs import check_glob, matches


class QuotaRule(BaseModel):
    """One rule: the repositories it covers and their limits (each repository its own)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    repos: str = Field(
        description="Repository glob (`*` within a path component, `**` across them)."
    )
    max_bytes: ByteSize | None = Field(
        None,
        ge=0,
        description="Most bytes of distinct blobs and manifests one repository may link"
        " (bytes, or e.g. `500MiB`, `2GB`, `10G`). None: no limit.",
    )
    max_tags: int | None = Field(None, ge=0, description="Most tags per repository.")

    @field_validator("repos")
    @classmethod
    def _check_repos(cls, value: str) -> str:
        return check_glob(value)

    @model_validator(mode="after")
    def _limits_something(self) -> QuotaRule:
        if self.max_bytes is None and self.max_tags is None:
            raise ValueError("a quota rule needs max_bytes, max_tags or both")
        return self


def rule_for(rules: Sequence[QuotaRule], repo: str) -> QuotaRule | None:
    """The first rule whose glob matches ``repo`` (the order of the file decides)."""
    return next((rule for rule in rules if matches(rule.repos, repo)), None)
