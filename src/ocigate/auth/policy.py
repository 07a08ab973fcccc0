"""The access policy: repository globs -> rules -> allowed actions, longest glob wins.

```yaml
policy:
  admins: [root]                    # may do everything everywhere
  groups: {team-a: [alice, bob]}    # groups for htpasswd users (OIDC brings its own)
  repositories:
    "**":        [{who: [authenticated], actions: [pull]}]
    "team-a/**": [{who: ["group:team-a"], actions: [pull, push, overwrite, delete]}]
    "releases/**":
      - {who: [authenticated], actions: [pull, push], immutable_tags: ["v*"]}
    "agents/**":
      - {who: [authenticated], actions: [pull, push], artifact_types: [application/record+json]}
```
The longest matching glob decides (see ``layers.globs``); nothing matches -> denied. ``who``
entries: a user name, ``group:NAME``, ``authenticated``, ``anonymous`` or ``*`` (everyone).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..layers.globs import best_match, check_glob
from .identity import Identity

Action = Literal["pull", "push", "overwrite", "delete"]
ACTIONS: tuple[Action, ...] = ("pull", "push", "overwrite", "delete")


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    who: list[str] = Field(
        min_length=1, description="users, group:NAME, authenticated, anonymous, *"
    )
    actions: list[Action] = Field(min_length=1)
    artifact_types: list[str] | None = Field(
        None, description="when set, pushes must be manifests of these artifact/config types"
    )
    immutable_tags: list[str] = Field(
        default_factory=list, description="tag globs that may not be moved or deleted"
    )
    message: str | None = Field(None, description="said to a client this rule denies")


class PolicyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    admins: list[str] = Field(default_factory=list)
    groups: dict[str, list[str]] = Field(default_factory=dict)
    repositories: dict[str, list[Rule]] = Field(default_factory=dict)

    @field_validator("repositories")
    @classmethod
    def _valid_globs(cls, value: dict[str, list[Rule]]) -> dict[str, list[Rule]]:
        for glob in value:
            check_glob(glob)
        return value


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    rule: str  # which glob (and rule index) decided, for the audit log and messages
    message: str | None = None
    artifact_types: frozenset[str] | None = None
    immutable_tags: tuple[str, ...] = ()

    def tag_is_immutable(self, tag: str) -> bool:
        return any(fnmatch.fnmatchcase(tag, glob) for glob in self.immutable_tags)


class Policy:
    def __init__(self, config: PolicyConfig) -> None:
        self.config = config
        self._globs = list(config.repositories)

    def _applies(self, who: str, identity: Identity) -> bool:
        if who == "*":
            return True
        if who == "anonymous":
            return identity.anonymous
        if identity.anonymous:
            return False
        if who == "authenticated":
            return True
        if who.startswith("group:"):
            group = who[len("group:") :]
            return group in identity.groups or identity.name in self.config.groups.get(group, [])
        return who == identity.name

    def is_admin(self, identity: Identity) -> bool:
        return identity.name is not None and identity.name in self.config.admins

    def decide(self, identity: Identity, repo: str, action: Action) -> Decision:
        if self.is_admin(identity):
            return Decision(True, "admin")
        best = best_match(self._globs, repo)
        if best is None:
            return Decision(False, "default")
        glob = self._globs[best]
        denial: Decision | None = None
        for index, rule in enumerate(self.config.repositories[glob]):
            if not any(self._applies(who, identity) for who in rule.who):
                continue
            name = f"{glob}#{index}"
            if action in rule.actions:
                types = frozenset(rule.artifact_types) if rule.artifact_types else None
                return Decision(True, name, rule.message, types, tuple(rule.immutable_tags))
            denial = denial or Decision(False, name, rule.message)
        return denial or Decision(False, glob)

    def allowed_actions(self, identity: Identity, repo: str) -> set[str]:
        return {a for a in ACTIONS if self.decide(identity, repo, a).allowed}
