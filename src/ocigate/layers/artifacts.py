"""Artifact types: their configuration, what type a manifest is, and checking payloads.

Shared by the validation layer (``validate.py``) and ``ocigate validate``; no registry I/O here.

A manifest is of a configured type when its artifactType, its config media type or one of its
layer media types (tried in that order) is one of the type's ``media_types``. Otherwise it is a
plain image (no artifactType and an image config, or an index without artifactType) or an
unconfigured artifact, named by its artifactType / config media type.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, best_match
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..oci.descriptors import Descriptor
from ..oci.manifests import Manifest
from ..oci.mediatypes import is_media_type
from .globs import best_match as best_glob
from .globs import check_glob

IMAGE_CONFIGS = frozenset(
    {
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.docker.container.image.v1+json",
    }
)
# Payloads are parsed in memory: without a configured max_payload_size this bounds them.
DEFAULT_PAYLOAD_LIMIT = 16 * 1024 * 1024


# -- configuration ---------------------------------------------------------------------------


def builtin_names() -> list[str]:
    folder = resources.files("ocigate") / "schemas"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def builtin_definition(name: str) -> dict[str, Any]:
    """A shipped artifact type definition (``src/ocigate/schemas/<name>.json``)."""
    if name not in builtin_names():
        raise ValueError(
            f"unknown builtin artifact type {name!r} (builtin: {', '.join(builtin_names())})"
        )
    text = (resources.files("ocigate") / "schemas" / f"{name}.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data


class PayloadSchema(BaseModel):
    """A JSON Schema (draft 2020-12) for the blobs of one media type (config or layers)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_by_name=True, serialize_by_alias=True
    )

    media_type: str = Field(description="Blobs (config or layers) of this media type are checked.")
    json_schema: dict[str, Any] = Field(
        alias="schema",
        description="The schema itself, or the path of a JSON/YAML file holding it.",
    )

    @field_validator("media_type")
    @classmethod
    def _check_media_type(cls, value: str) -> str:
        if not is_media_type(value):
            raise ValueError(f"not a media type: {value!r}")
        return value

    @field_validator("json_schema", mode="before")
    @classmethod
    def _load_schema(cls, value: object) -> object:
        if isinstance(value, str):  # a file path, relative to the working directory
            text = Path(value).read_text()
            value = json.loads(text) if value.endswith(".json") else yaml.safe_load(text)
        if isinstance(value, dict):
            try:
                Draft202012Validator.check_schema(value)
            except SchemaError as exc:
                where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
                raise ValueError(f"invalid JSON Schema at {where}: {exc.message}") from None
        return value


class ArtifactType(BaseModel):
    """One artifact type; in YAML either a mapping or the name of a builtin (``record``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$", description="Name used in rules.")
    media_types: list[str] = Field(
        min_length=1,
        description="artifactType / config / layer media types that make a manifest this type.",
    )
    schemas: list[PayloadSchema] = Field(default_factory=list)
    max_payload_size: int | None = Field(
        None, ge=1, description="Largest blob (bytes) an artifact of this type may reference."
    )

    @model_validator(mode="before")
    @classmethod
    def _builtin(cls, value: object) -> object:
        return builtin_definition(value) if isinstance(value, str) else value

    @field_validator("media_types")
    @classmethod
    def _check_media_types(cls, value: list[str]) -> list[str]:
        for media_type in value:
            if not is_media_type(media_type):
                raise ValueError(f"not a media type: {media_type!r}")
        return value

    @property
    def payload_limit(self) -> int:
        return self.max_payload_size or DEFAULT_PAYLOAD_LIMIT


class ArtifactRule(BaseModel):
    """What the repositories matching ``repository`` may hold (the longest matching glob wins)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    repository: str = Field(description="Repository glob: `**`, `team-a/*`, `team-a/**`.")
    artifact_types: list[str] = Field(
        default_factory=list, description="Names of the artifact types allowed."
    )
    images: bool = Field(True, description="Whether plain container images are allowed.")
    other_artifacts: bool = Field(
        False, description="Whether artifacts of types not configured are allowed."
    )

    @field_validator("repository")
    @classmethod
    def _check_repository(cls, value: str) -> str:
        return check_glob(value)


def check_types(types: list[ArtifactType]) -> list[ArtifactType]:
    names = [t.name for t in types]
    for i, name in enumerate(names):
        if names.index(name) != i:
            raise ValueError(f"[{i}].name: artifact type {name!r} is defined twice")
    return types


def check_rules(types: Sequence[ArtifactType], rules: list[ArtifactRule]) -> list[ArtifactRule]:
    """ValueError naming the rule for a repeated glob or an artifact type not configured."""
    names = [t.name for t in types]
    globs = [r.repository for r in rules]
    for i, rule in enumerate(rules):
        if globs.index(rule.repository) != i:
            raise ValueError(f"[{i}].repository: {rule.repository!r} already has a rule")
        for name in rule.artifact_types:
            if name not in names:
                raise ValueError(
                    f"[{i}].artifact_types: unknown artifact type {name!r}; add it to"
                    f" artifact_types (configured: {', '.join(names) or 'none'};"
                    f" builtin: {', '.join(builtin_names())})"
                )
    return rules


# -- classification ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Kind:
    """What a manifest is: a configured type, a plain image, or an unconfigured artifact."""

    artifact_type: ArtifactType | None
    image: bool
    label: str  # how messages name it

    @property
    def description(self) -> str:
        if self.artifact_type is not None:
            return f"artifact type {self.artifact_type.name!r} ({self.label})"
        return "a plain image" if self.image else f"unconfigured artifact type {self.label!r}"


def config_and_layers(manifest: Manifest) -> tuple[Descriptor | None, tuple[Descriptor, ...]]:
    # parse_manifest lists the config first in ``blobs`` whenever the manifest has one.
    if manifest.is_index or not manifest.blobs:
        return None, ()
    return manifest.blobs[0], manifest.blobs[1:]


def classify(manifest: Manifest, types: Iterable[ArtifactType]) -> Kind:
    config, layers = config_and_layers(manifest)
    # manifest.artifact_type is artifactType, else the config media type (for image manifests).
    candidates = [manifest.artifact_type, config.media_type if config else None]
    candidates += [layer.media_type for layer in layers]
    by_media_type: dict[str, ArtifactType] = {}
    for artifact_type in types:
        for media_type in artifact_type.media_types:
            by_media_type.setdefault(media_type, artifact_type)
    for candidate in candidates:
        if candidate is not None and candidate in by_media_type:
            return Kind(by_media_type[candidate], False, candidate)
    if manifest.artifact_type is None and manifest.is_index:
        return Kind(None, True, manifest.media_type)
    if manifest.artifact_type in IMAGE_CONFIGS:
        return Kind(None, True, manifest.artifact_type)
    return Kind(None, False, manifest.artifact_type or manifest.media_type)


def rule_for(repo: str, rules: Sequence[ArtifactRule]) -> ArtifactRule | None:
    found = best_glob([r.repository for r in rules], repo)
    return None if found is None else rules[found]


def refusal(repo: str, kind: Kind, rules: Sequence[ArtifactRule]) -> str | None:
    """Why ``repo`` may not hold ``kind`` (naming the rule), or None when it may."""
    rule = rule_for(repo, rules)
    if rule is None:
        return None  # no rule covers the repository: unrestricted
    if kind.artifact_type is not None:
        allowed = kind.artifact_type.name in rule.artifact_types
    else:
        allowed = rule.images if kind.image else rule.other_artifacts
    if allowed:
        return None
    return (
        f"{kind.description} is not allowed in repository {repo!r} by the artifact_policy rule"
        f" for {rule.repository!r} (artifact types: {', '.join(rule.artifact_types) or 'none'};"
        f" images: {'yes' if rule.images else 'no'};"
        f" other artifacts: {'yes' if rule.other_artifacts else 'no'})"
    )


# -- payloads ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    pointer: str  # RFC 6901 JSON pointer into the payload ("" is the whole document)
    message: str

    @property
    def where(self) -> str:
        return f"JSON pointer {self.pointer!r}" + ("" if self.pointer else " (the document root)")


def _pointer(path: Iterable[object]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


class PayloadChecker:
    """Compiled schemas of one artifact type, by blob media type."""

    def __init__(self, artifact_type: ArtifactType) -> None:
        self.artifact_type = artifact_type
        self._validators = {
            s.media_type: Draft202012Validator(
                s.json_schema, format_checker=Draft202012Validator.FORMAT_CHECKER
            )
            for s in artifact_type.schemas
        }

    @property
    def media_types(self) -> list[str]:
        return list(self._validators)

    def checks(self, media_type: str) -> bool:
        return media_type in self._validators

    def problem(self, media_type: str, payload: bytes) -> Problem | None:
        """The most relevant schema violation of ``payload``, or None when it conforms."""
        try:
            document = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            return Problem("", f"not valid JSON: {exc}")
        error = best_match(self._validators[media_type].iter_errors(document))
        if error is None:
            return None
        return Problem(_pointer(error.absolute_path), error.message)
