"""Content for the retention tests, pushed over HTTP: a multi-platform image (an index over
two images) and artifacts referring to a manifest (OCI 1.1 ``subject``)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from .support import (
    EMPTY_CONFIG,
    Blob,
    artifact_manifest,
    make_image,
    make_index,
    push_blob_monolithic,
    push_image,
    put_manifest,
)

SMALL = (2_000,)  # layer sizes: retention is about manifests, small blobs keep pushes quick


@dataclass(frozen=True)
class MultiPlatform:
    index: Blob
    children: tuple[Blob, ...]
    layers: tuple[Blob, ...]  # the children's layers


def push_multi_platform(
    http: httpx.Client, base: str, repo: str, seed: str, tag: str
) -> MultiPlatform:
    """Two platform images pushed by digest, then their index tagged ``tag``."""
    images = [make_image(seed, arch, layer_sizes=SMALL) for arch in ("amd64", "arm64")]
    for image in images:
        push_image(http, base, repo, image, image.manifest.digest)
    index = make_index(images)
    put_manifest(http, base, repo, tag, index)
    layers = tuple(layer for image in images for layer in image.layers)
    return MultiPlatform(index, tuple(image.manifest for image in images), layers)


def push_referrer(http: httpx.Client, base: str, repo: str, subject: Blob, kind: str) -> Blob:
    """An artifact of type ``kind`` about ``subject``, pushed by digest (as cosign and oras
    attach signatures and SBOMs)."""
    payload = Blob("text/plain", f"{kind} of {subject.digest}".encode())
    for blob in (EMPTY_CONFIG, payload):
        push_blob_monolithic(http, base, repo, blob.data)
    manifest = artifact_manifest(kind, payload, subject)
    put_manifest(http, base, repo, manifest.digest, manifest)
    return manifest
