"""Content the mirror tests push for real, and the checks that a registry holds it byte-exact."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from e2e.support import (
    EMPTY_CONFIG,
    MANIFEST_ACCEPT,
    OCI_INDEX,
    Blob,
    artifact_manifest,
    json_bytes,
    make_image,
    make_index,
    push_blob_monolithic,
    push_image,
    put_manifest,
)

SBOM_TYPE = "application/vnd.example.sbom.v1+json"
SIGNATURE_TYPE = "application/vnd.example.signature.v1"


@dataclass(frozen=True)
class Pushed:
    tags: dict[str, Blob]  # tag -> the manifest it names
    manifests: tuple[Blob, ...]  # every manifest, the referrers' too
    referrers: dict[str, list[str]]  # subject digest -> its referrers' digests


def referrers_index(referrers: list[tuple[Blob, str]]) -> Blob:
    """The referrers tag schema's index, as a client of a registry without the API writes it."""
    entries = [blob.descriptor(artifactType=kind) for blob, kind in referrers]
    return Blob(
        OCI_INDEX, json_bytes({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    )


def push_set(
    http: httpx.Client, base: str, repo: str, *, fallback: bool, seed: str = "m"
) -> Pushed:
    """An image (``v1``), a two-platform index (``multi``), an SBOM of the image and a signature
    of the SBOM. ``fallback``: the registry has no referrers API, so the referrers tags are
    written as a client would."""
    image = make_image(f"{seed}-image")
    push_image(http, base, repo, image, "v1")
    amd, arm = make_image(f"{seed}-multi", "amd64"), make_image(f"{seed}-multi", "arm64")
    for child in (amd, arm):
        for blob in child.blobs:
            push_blob_monolithic(http, base, repo, blob.data)
        put_manifest(http, base, repo, child.manifest.digest, child.manifest)
    index = make_index([amd, arm])
    put_manifest(http, base, repo, "multi", index)
    sbom_payload = Blob("application/json", json_bytes({"packages": [seed]}))
    sbom = artifact_manifest(SBOM_TYPE, sbom_payload, image.manifest)
    signature_payload = Blob("application/octet-stream", b"signature of " + sbom.digest.encode())
    signature = artifact_manifest(SIGNATURE_TYPE, signature_payload, sbom)
    for blob in (EMPTY_CONFIG, sbom_payload, signature_payload):
        push_blob_monolithic(http, base, repo, blob.data)
    for referrer in (sbom, signature):
        put_manifest(http, base, repo, referrer.digest, referrer)
    if fallback:
        for subject, referrer, kind in (
            (image.manifest, sbom, SBOM_TYPE),
            (sbom, signature, SIGNATURE_TYPE),
        ):
            tag = subject.digest.replace(":", "-")
            put_manifest(http, base, repo, tag, referrers_index([(referrer, kind)]))
    return Pushed(
        {"v1": image.manifest, "multi": index},
        (image.manifest, amd.manifest, arm.manifest, index, sbom, signature),
        {image.manifest.digest: [sbom.digest], sbom.digest: [signature.digest]},
    )


def manifest_bytes(http: httpx.Client, base: str, repo: str, ref: str) -> bytes | None:
    response = http.get(f"{base}/v2/{repo}/manifests/{ref}", headers={"Accept": MANIFEST_ACCEPT})
    if response.status_code == 404:
        return None
    assert response.status_code == 200, (response.status_code, response.text)
    return response.content


def referrer_digests(
    http: httpx.Client, base: str, repo: str, subject: str, api: bool
) -> list[str]:
    """A subject's referrers, from the API or (``api`` false) its referrers tag."""
    if api:
        response = http.get(f"{base}/v2/{repo}/referrers/{subject}")
        assert response.status_code == 200, response.text
        return sorted(m["digest"] for m in response.json()["manifests"])
    data = manifest_bytes(http, base, repo, subject.replace(":", "-"))
    assert data is not None, f"no referrers tag for {subject}"
    return sorted(m["digest"] for m in httpx.Response(200, content=data).json()["manifests"])


def assert_holds(http: httpx.Client, base: str, repo: str, pushed: Pushed, api: bool) -> None:
    """``base`` holds every pushed manifest byte for byte, the tags, and the referrers."""
    for manifest in pushed.manifests:
        assert manifest_bytes(http, base, repo, manifest.digest) == manifest.data, manifest.digest
    for tag, manifest in pushed.tags.items():
        assert manifest_bytes(http, base, repo, tag) == manifest.data, tag
    for subject, referrers in pushed.referrers.items():
        assert referrer_digests(http, base, repo, subject, api) == sorted(referrers)
