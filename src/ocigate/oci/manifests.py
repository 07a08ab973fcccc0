"""Parsing manifests and indexes just enough to store, link and list them.

The bytes are always stored exactly as pushed; this module only extracts what the registry needs:
the media type, the descriptors it references, its subject and the referrers-API view of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .descriptors import Descriptor, parse_annotations, parse_descriptor
from .digest import Digest
from .errors import ManifestInvalid
from .mediatypes import (
    DOCKER_MANIFEST,
    IMAGE_MANIFESTS,
    INDEXES,
    NON_DISTRIBUTABLE,
    OCI_INDEX,
    OCI_MANIFEST,
    base_type,
    is_media_type,
)

_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
_GENERIC = ("application/json", "application/octet-stream")


@dataclass(frozen=True, slots=True)
class Manifest:
    """A parsed manifest; ``blobs`` must exist, ``children`` are manifests that must exist."""

    media_type: str
    digest: Digest
    size: int
    blobs: tuple[Descriptor, ...] = ()
    children: tuple[Descriptor, ...] = ()
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEXES

    def as_referrer(self) -> Descriptor:
        """This manifest as a descriptor in its subject's referrers list."""
        return Descriptor(
            self.media_type, self.digest, self.size, self.artifact_type, self.annotations
        )


def _resolve_media_type(doc: dict[str, Any], content_type: str | None) -> str:
    declared = doc.get("mediaType")
    header = base_type(content_type) if content_type else ""
    if declared is not None and not (isinstance(declared, str) and is_media_type(declared)):
        raise ManifestInvalid(f"invalid mediaType {declared!r}")
    if declared and header and header != declared and header not in _GENERIC:
        raise ManifestInvalid(f"mediaType {declared!r} does not match Content-Type {header!r}")
    media_type = declared or header
    if not media_type or media_type in _GENERIC:
        # No declared type: infer the shape, as clients pushing bare OCI JSON expect.
        media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    if media_type in _SCHEMA1 or doc.get("schemaVersion") == 1:
        raise ManifestInvalid("Docker schema1 manifests are not supported")
    return media_type


def _descriptor_list(doc: dict[str, Any], key: str, required: bool) -> list[Descriptor]:
    value = doc.get(key)
    if value is None:
        if required:
            raise ManifestInvalid(f"{key} is required")
        return []
    if not isinstance(value, list):
        raise ManifestInvalid(f"{key} must be a list")
    return [parse_descriptor(item, f"{key}[{i}]") for i, item in enumerate(value)]


def parse_manifest(data: bytes, content_type: str | None, digest: Digest) -> Manifest:
    """Validate the structure of a pushed manifest; raise ManifestInvalid naming the field."""
    try:
        doc = json.loads(data)
    # ValueError also covers a number of more than 4,300 digits, which json.loads refuses.
    except (ValueError, RecursionError) as exc:
        raise ManifestInvalid(f"manifest is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ManifestInvalid("manifest must be a JSON object")
    media_type = _resolve_media_type(doc, content_type)
    schema_version = doc.get("schemaVersion")
    if media_type in IMAGE_MANIFESTS | INDEXES and schema_version != 2:
        raise ManifestInvalid(f"schemaVersion must be 2, got {schema_version!r}")
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and not (
        isinstance(artifact_type, str) and is_media_type(artifact_type)
    ):
        raise ManifestInvalid(f"invalid artifactType {artifact_type!r}")
    subject = parse_descriptor(doc["subject"], "subject") if "subject" in doc else None
    annotations = parse_annotations(doc.get("annotations"), "annotations")
    blobs: list[Descriptor] = []
    children: list[Descriptor] = []
    if media_type in INDEXES:
        children = _descriptor_list(doc, "manifests", required=True)
    elif media_type in IMAGE_MANIFESTS or "config" in doc:
        config = parse_descriptor(doc.get("config"), "config")
        layers = _descriptor_list(doc, "layers", required=media_type == DOCKER_MANIFEST)
        blobs = [config, *(x for x in layers if x.media_type not in NON_DISTRIBUTABLE)]
        # The referrers API falls back to the config media type for image manifests.
        artifact_type = artifact_type or config.media_type
    # Any other manifest type is stored as is, with no references to check.
    return Manifest(
        media_type=media_type,
        digest=digest,
        size=len(data),
        blobs=tuple(blobs),
        children=tuple(children),
        subject=subject,
        artifact_type=artifact_type,
        annotations=annotations,
    )
