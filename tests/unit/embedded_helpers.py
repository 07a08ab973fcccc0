"""Helpers for the embedded-store unit tests: push blobs and manifests straight to a store."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

from ocigate.oci.descriptors import Descriptor
from ocigate.oci.digest import Digest
from ocigate.oci.manifests import Manifest, parse_manifest
from ocigate.oci.mediatypes import OCI_INDEX, OCI_MANIFEST
from ocigate.oci.reference import Tag
from ocigate.registry import UploadChunk
from ocigate.store.embedded import EmbeddedStore

LAYER = "application/vnd.oci.image.layer.v1.tar"
CONFIG = "application/vnd.oci.image.config.v1+json"


async def body(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def push_blob(
    store: EmbeddedStore, repo: str, data: bytes, algorithm: str = "sha256"
) -> Digest:
    digest = Digest.of(data, algorithm)
    upload = await store.start_upload(repo)
    await store.commit_upload(repo, upload.id, digest, UploadChunk(body(data)))
    return digest


def descriptor(data: bytes, media_type: str = LAYER) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": str(Digest.of(data)), "size": len(data)}


def image(
    config: bytes,
    layers: Sequence[bytes] = (),
    *,
    subject: Descriptor | None = None,
    artifact_type: str | None = None,
    annotations: dict[str, str] | None = None,
) -> tuple[Manifest, bytes]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(config, CONFIG),
        "layers": [descriptor(layer) for layer in layers],
    }
    if subject is not None:
        doc["subject"] = subject.to_json()
    if artifact_type is not None:
        doc["artifactType"] = artifact_type
    if annotations:
        doc["annotations"] = annotations
    data = json.dumps(doc).encode()
    return parse_manifest(data, None, Digest.of(data)), data


def index(children: Sequence[Manifest]) -> tuple[Manifest, bytes]:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": c.media_type, "digest": str(c.digest), "size": c.size} for c in children
        ],
    }
    data = json.dumps(doc).encode()
    return parse_manifest(data, None, Digest.of(data)), data


async def push_image(
    store: EmbeddedStore,
    repo: str,
    config: bytes,
    layers: Sequence[bytes] = (),
    tags: Sequence[str] = (),
    **kwargs: Any,
) -> Manifest:
    for blob in (config, *layers):
        await push_blob(store, repo, blob)
    manifest, data = image(config, layers, **kwargs)
    await store.put_manifest(repo, manifest, data, [Tag(t) for t in tags])
    return manifest
