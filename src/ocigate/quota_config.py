"""The ``quotas:`` section: storage limits per repository glob, enforced at push
(``layers.quota``) on the stores that hold the bytes themselves (embedded, objects)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import (
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from .layers.globs import check_glob, matches

_SIZE = TypeAdapter(ByteSize)


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

    @field_validator("max_bytes", mode="before")
    @classmethod
    def _parse_size(cls, value: Any) -> Any:
        # pydantic's own message ("could not parse value and unit from byte string") names
        # neither what was given nor what would do.
        if not isinstance(value, str):
            return value
        try:
            return _SIZE.validate_python(value)
        except ValidationError:
            raise ValueError(f"not a size: {value!r} (bytes, or e.g. 500MiB, 2GB, 10G)") from None

    @model_validator(mode="after")
    def _limits_something(self) -> QuotaRule:
        if self.max_bytes is None and self.max_tags is None:
            raise ValueError("a quota rule needs max_bytes, max_tags or both")
        return self


def human_size(count: int) -> str:
    """A byte count as quota messages and tables say it: ``60.0 KiB``, ``1.9 GiB``."""
    return ByteSize(count).human_readable(separator=" ")


def rule_for(rules: Sequence[QuotaRule], repo: str) -> QuotaRule | None:
    """The first rule whose glob matches ``repo`` (the order of the file decides)."""
    return next((rule for rule in rules if matches(rule.repos, repo)), None)
