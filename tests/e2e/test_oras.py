"""oras-py (ORAS artifacts) and the referrers API.

oras-py retries failing requests for about two minutes, so every call made through it here is
expected to succeed; failures are checked with plain httpx.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import oras.client
import oras.oci
import pytest

from .support import (
    MANIFEST_ACCEPT,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    Blob,
    ServerProcess,
    get_manifest,
    json_bytes,
    make_image,
    push_blob_monolithic,
    push_image,
    put_manifest,
    sha256_digest,
)

ARTIFACT_TYPE = "application/vnd.ocigate.e2e.thing.v1"
FILE_TYPE = "application/vnd.ocigate.e2e.thing.layer.v1+bin"
CONFIG_TYPE = "application/vnd.ocigate.e2e.thing.config.v1+json"
SBOM_TYPE = "application/vnd.ocigate.e2e.sbom.v1+json"
SIGNATURE_TYPE = "application/vnd.ocigate.e2e.signature.v1"


def client_for(registry: ServerProcess) -> oras.client.OrasClient:
    return oras.client.OrasClient(hostname=registry.host, insecure=True)


def test_push_pull_custom_media_type(
    registry: ServerProcess, http: httpx.Client, repo: str, tmp_path: Path
) -> None:
    payload = os.urandom(300_000) + b"ocigate"
    source = tmp_path / "thing.bin"
    source.write_bytes(payload)
    config = tmp_path / "config.json"
    config.write_bytes(json_bytes({"kind": "e2e"}))

    client = client_for(registry)
    target = f"{registry.host}/{repo}:v1"
    response = client.push(
        target=target,
        files=[f"{source}:{FILE_TYPE}"],
        manifest_config=f"{config}:{CONFIG_TYPE}",
        disable_path_validation=True,
        quiet=True,
    )
    assert response.status_code == 201

    # the stored manifest carries the custom media types
    served = get_manifest(http, registry.url, repo, "v1")
    assert served.status_code == 200
    manifest = served.json()
    assert served.headers["docker-content-digest"] == sha256_digest(served.content)
    assert manifest["config"]["mediaType"] == CONFIG_TYPE
    assert manifest["config"]["digest"] == sha256_digest(config.read_bytes())
    [layer] = manifest["layers"]
    assert layer["mediaType"] == FILE_TYPE
    assert layer["digest"] == sha256_digest(payload)
    assert layer["annotations"]["org.opencontainers.image.title"] == "thing.bin"

    out = tmp_path / "out"
    files = client.pull(target=target, outdir=str(out))
    assert [Path(f).name for f in files] == ["thing.bin"]
    assert Path(files[0]).read_bytes() == payload

    # the chunked code path of oras-py as well
    chunked_target = f"{registry.host}/{repo}:chunked"
    payload2 = os.urandom(700_000)
    source2 = tmp_path / "chunked.bin"
    source2.write_bytes(payload2)
    client.push(
        target=chunked_target,
        files=[f"{source2}:{FILE_TYPE}"],
        disable_path_validation=True,
        do_chunked=True,
        chunk_size=256 * 1024,
        quiet=True,
    )
    files = client.pull(target=chunked_target, outdir=str(tmp_path / "out2"))
    assert Path(files[0]).read_bytes() == payload2

    assert sorted(client.get_tags(f"{registry.host}/{repo}")) == ["chunked", "v1"]


def referrers(
    http: httpx.Client, base: str, repo: str, digest: str, **params: str
) -> httpx.Response:
    return http.get(f"{base}/v2/{repo}/referrers/{digest}", params=params)


def test_referrers(
    registry: ServerProcess, registry_kind: str, http: httpx.Client, repo: str, tmp_path: Path
) -> None:
    if registry_kind == "distribution":
        pytest.skip("distribution 2.8 has no referrers API (harness validation mode only)")
    subject_image = make_image("referrers-subject")
    subject_digest = push_image(http, registry.url, repo, subject_image, "app")
    subject = oras.oci.Subject(OCI_MANIFEST, subject_digest, subject_image.manifest.size)

    # nothing refers to it yet: an empty index, not a 404
    response = referrers(http, registry.url, repo, subject_digest)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(OCI_INDEX)
    assert response.json()["manifests"] == []

    # 1. oras-py pushes an artifact whose manifest has a subject
    sbom = tmp_path / "sbom.json"
    sbom.write_bytes(json_bytes({"packages": ["ocigate"]}))
    client = client_for(registry)
    client.push(
        target=f"{registry.host}/{repo}:sbom",
        files=[f"{sbom}:{SBOM_TYPE}"],
        manifest_config=f"/dev/null:{SBOM_TYPE}",
        subject=subject,
        disable_path_validation=True,
        quiet=True,
    )
    served = get_manifest(http, registry.url, repo, "sbom")
    assert served.status_code == 200
    sbom_digest = sha256_digest(served.content)
    assert served.json()["subject"]["digest"] == subject_digest

    # 2. a hand-built artifact manifest (artifactType, empty config, subject) via plain HTTP
    empty = Blob(OCI_EMPTY, b"{}")
    signature = Blob(SIGNATURE_TYPE, b"signed: " + subject_digest.encode())
    for blob in (empty, signature):
        push_blob_monolithic(http, registry.url, repo, blob.data)
    artifact = Blob(
        OCI_MANIFEST,
        json_bytes(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "artifactType": ARTIFACT_TYPE,
                "config": empty.descriptor(),
                "layers": [signature.descriptor()],
                "subject": {
                    "mediaType": OCI_MANIFEST,
                    "digest": subject_digest,
                    "size": subject_image.manifest.size,
                },
                "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
            }
        ),
    )
    response = http.put(
        f"{registry.url}/v2/{repo}/manifests/{artifact.digest}",
        content=artifact.data,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert response.status_code == 201, response.text
    assert response.headers.get("oci-subject") == subject_digest

    response = referrers(http, registry.url, repo, subject_digest)
    assert response.status_code == 200
    index = response.json()
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == OCI_INDEX
    found = {entry["digest"]: entry for entry in index["manifests"]}
    assert set(found) == {sbom_digest, artifact.digest}
    assert found[artifact.digest]["artifactType"] == ARTIFACT_TYPE
    assert found[artifact.digest]["size"] == artifact.size
    assert found[artifact.digest]["mediaType"] == OCI_MANIFEST
    assert found[artifact.digest]["annotations"] == {
        "org.opencontainers.image.created": "2024-01-01T00:00:00Z"
    }
    # no artifactType in the manifest: the config media type stands in for it
    assert found[sbom_digest]["artifactType"] == SBOM_TYPE

    # filtering by artifactType (optional in the spec; if applied it must be announced)
    response = referrers(http, registry.url, repo, subject_digest, artifactType=ARTIFACT_TYPE)
    assert response.status_code == 200
    digests = sorted(entry["digest"] for entry in response.json()["manifests"])
    if response.headers.get("oci-filters-applied") == "artifactType":
        assert digests == [artifact.digest]
    else:
        assert digests == sorted([artifact.digest, sbom_digest])

    # the subject need not exist for referrers to be listed; other digests have none
    other = sha256_digest(b"nothing refers to this")
    response = referrers(http, registry.url, repo, other)
    assert response.status_code == 200
    assert response.json()["manifests"] == []

    # deleting a referrer removes it from the list
    response = http.delete(f"{registry.url}/v2/{repo}/manifests/{artifact.digest}")
    assert response.status_code == 202
    response = referrers(http, registry.url, repo, subject_digest)
    assert [entry["digest"] for entry in response.json()["manifests"]] == [sbom_digest]


def test_referrers_of_index_via_plain_http(
    registry: ServerProcess, registry_kind: str, http: httpx.Client, repo: str
) -> None:
    """A subject that is an image index; the referrer is pushed by tag."""
    if registry_kind == "distribution":
        pytest.skip("distribution 2.8 has no referrers API (harness validation mode only)")
    image = make_image("index-subject")
    push_image(http, registry.url, repo, image, "single")
    index = Blob(
        OCI_INDEX,
        json_bytes(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [
                    image.manifest.descriptor(platform={"os": "linux", "architecture": "amd64"})
                ],
            }
        ),
    )
    put_manifest(http, registry.url, repo, "list", index)
    empty = Blob(OCI_EMPTY, b"{}")
    push_blob_monolithic(http, registry.url, repo, empty.data)
    referrer = Blob(
        OCI_MANIFEST,
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "artifactType": ARTIFACT_TYPE,
                "config": empty.descriptor(),
                "layers": [empty.descriptor()],
                "subject": index.descriptor(),
            },
            separators=(",", ":"),
        ).encode(),
    )
    put_manifest(http, registry.url, repo, "attached", referrer)
    response = referrers(http, registry.url, repo, index.digest)
    assert response.status_code == 200
    [entry] = response.json()["manifests"]
    assert entry["digest"] == referrer.digest
    assert entry["artifactType"] == ARTIFACT_TYPE
    # the manifest is still served byte-exact
    response = http.get(
        f"{registry.url}/v2/{repo}/manifests/attached", headers={"Accept": MANIFEST_ACCEPT}
    )
    assert response.content == referrer.data
