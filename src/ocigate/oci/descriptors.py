"""Descriptors (image-spec descriptor.md): the typed pointer to content."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

from .digest import Digest
from .errors import ManifestInvalid, OCIError
from .mediatypes import is_media_type
from .numbers import MAX_VALUE


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    artifact_type: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = self.annotations
        return out


def _fail(where: str, why: str) -> OCIError:
    return ManifestInvalid(f"{where}: {why}")


def parse_annotations(value: object, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _fail(where, "annotations must be a map of strings")
    return dict(value)


def parse_descriptor(value: object, where: str) -> Descriptor:
    """Check one descriptor object and return it; ``where`` names it in errors."""
    if not isinstance(value, dict):
        raise _fail(where, "descriptor must be an object")
    media_type = value.get("mediaType")
    if not isinstance(media_type, str) or not is_media_type(media_type):
        raise _fail(where, f"invalid mediaType {media_type!r}")
    raw_digest = value.get("digest")
    if not isinstance(raw_digest, str):
        raise _fail(where, "digest must be a string")
    try:
        digest = Digest.parse(raw_digest)
    except Exception as exc:
        raise _fail(where, f"invalid digest {raw_digest[:200]!r}") from exc
    size = value.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_VALUE:
        raise _fail(where, f"size must be a non-negative int64, got {size!r:.50}")
    artifact_type = value.get("artifactType")
    if artifact_type is not None and (
        not isinstance(artifact_type, str) or not is_media_type(artifact_type)
    ):
        raise _fail(where, f"invalid artifactType {artifact_type!r}")
    _check_data(value.get("data"), digest, size, where)
    urls = value.get("urls")
    if urls is not None and not (isinstance(urls, list) and all(isinstance(u, str) for u in urls)):
        raise _fail(where, "urls must be a list of strings")
    return Descriptor(
        media_type,
        digest,
        size,
        artifact_type,
        parse_annotations(value.get("annotations"), where),
    )


def _check_data(data: object, digest: Digest, size: int, where: str) -> None:
    """Embedded ``data`` must be base64 of exactly the described content."""
    if data is None:
        return
    if not isinstance(data, str):
        raise _fail(where, "data must be a base64 string")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _fail(where, "data is not valid base64") from exc
    if len(raw) != size or Digest.of(raw, digest.algorithm) != digest:
        raise _fail(where, "data does not match the descriptor's digest and size")
