"""The caller's identity: what authentication finds, and what the access policy decides on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Identity:
    name: str | None  # None: anonymous
    groups: frozenset[str] = frozenset()
    method: str = "anonymous"  # anonymous | basic | token | oidc
    # A registry token limits the identity to the access it grants: repository -> actions.
    grants: Mapping[str, frozenset[str]] | None = field(default=None)
    # ... and whether it grants ``registry:catalog:*`` (listing what the policy lets it pull).
    catalog: bool = False

    @property
    def anonymous(self) -> bool:
        return self.name is None

    def label(self) -> str:
        return self.name or "anonymous"


ANONYMOUS = Identity(None)
