"""Small OCI content for the conformance tests, pushed and read through a ``Registry``."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from ocigate.oci.descriptors import Descriptor
from ocigate.oci.digest import Digest
from ocigate.oci.manifests import Manifest, parse_manifest
from ocigate.oci.mediatypes import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from ocigate.oci.reference import Tag
from ocigate.registry import BlobBody, FileRange, Redirect, Registry, Stream, UploadChunk

CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
# (manifest, config, layer) media types
OCI_TYPES = (OCI_MANIFEST, CONFIG_TYPE, "application/vnd.oci.image.layer.v1.tar")
DOCKER_TYPES = (
    DOCKER_MANIFEST,
    "application/vnd.docker.container.image.v1+json",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
)


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    """A request body arriving in ``parts``."""
    for part in parts:
        yield part


async def read(body: BlobBody) -> bytes:
    """What serving ``body`` sends: its file range or its stream, then it is closed."""
    try:
        match body:
            case FileRange():
                return os.pread(body.fd, body.length, body.start)
            case Stream():
                return b"".join([piece async for piece in body.chunks])
            case Redirect():
                raise AssertionError(f"a redirect, no bytes: {body}")
    finally:
        await body.close()


async def push_blob(registry: Registry, repo: str, data: bytes) -> Digest:
    """``data`` uploaded in one request, as a monolithic push does."""
    digest = Digest.of(data)
    upload = await registry.start_upload(repo)
    await registry.commit_upload(
        repo, upload.id, digest, UploadChunk(chunks(data), None, len(data))
    )
    return digest


def _descriptor(data: bytes, media_type: str) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": str(Digest.of(data)), "size": len(data)}


@dataclass(frozen=True)
class Pushable:
    """A manifest's bytes, parsed as the HTTP layer parses them before ``put_manifest``."""

    manifest: Manifest
    data: bytes
    blobs: tuple[bytes, ...] = ()  # what must be uploaded first

    @classmethod
    def of(cls, doc: dict[str, Any], blobs: Sequence[bytes] = ()) -> Pushable:
        data = json.dumps(doc, separators=(",", ":")).encode()
        return cls(parse_manifest(data, doc["mediaType"], Digest.of(data)), data, tuple(blobs))

    @property
    def digest(self) -> Digest:
        return self.manifest.digest

    def descriptor(self) -> Descriptor:
        return Descriptor(self.manifest.media_type, self.digest, len(self.data))

    async def push(self, registry: Registry, repo: str, *tags: str) -> Pushable:
        """Its blobs, then the manifest under ``tags`` (by digest alone when none)."""
        for blob in self.blobs:
            await push_blob(registry, repo, blob)
        await registry.put_manifest(repo, self.manifest, self.data, [Tag(t) for t in tags])
        return self


def image(
    seed: str,
    *,
    subject: Pushable | None = None,
    artifact_type: str | None = None,
    annotations: dict[str, str] | None = None,
    layers: int = 1,
    docker: bool = False,
) -> Pushable:
    """An image manifest with a config and ``layers`` small layers, all derived from ``seed``;
    with ``docker`` a Docker image manifest (schema 2) instead of an OCI one."""
    media_types = DOCKER_TYPES if docker else OCI_TYPES
    config = json.dumps({"seed": seed}).encode()
    blobs = [f"layer {index} of {seed}\n".encode() for index in range(layers)]
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media_types[0],
        "config": _descriptor(config, media_types[1]),
        "layers": [_descriptor(blob, media_types[2]) for blob in blobs],
    }
    if artifact_type is not None:
        doc["artifactType"] = artifact_type
    if subject is not None:
        doc["subject"] = subject.descriptor().to_json()
    if annotations:
        doc["annotations"] = annotations
    return Pushable.of(doc, [config, *blobs])


def index(
    children: Sequence[Pushable],
    *,
    subject: Pushable | None = None,
    artifact_type: str | None = None,
) -> Pushable:
    """An image index over ``children`` (pushed separately: they are manifests, not blobs)."""
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [child.descriptor().to_json() for child in children],
    }
    if artifact_type is not None:
        doc["artifactType"] = artifact_type
    if subject is not None:
        doc["subject"] = subject.descriptor().to_json()
    return Pushable.of(doc)
