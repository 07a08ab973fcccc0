"""One ``ocigate serve`` (two workers, htpasswd users, a policy, the UI on small pages) with
content pushed for real over HTTP, shared by the UI tests."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from auth.conftest import write_htpasswd
from e2e.support import (
    OCI_EMPTY,
    OCI_MANIFEST,
    Blob,
    ServerProcess,
    json_bytes,
    make_image,
    make_index,
    ocigate_server,
    push_blob_monolithic,
    push_image,
    put_manifest,
)

USERS = {"alice": "alice-pw", "root": "root-pw"}
POLICY: dict[str, Any] = {
    "admins": ["root"],
    "groups": {"team-a": ["alice"]},
    "repositories": {
        "public/**": [{"who": ["*"], "actions": ["pull"]}],
        "team-a/**": [{"who": ["group:team-a"], "actions": ["pull", "push"]}],
    },
}
PAGE_SIZE = 3
SIGNATURE = "application/vnd.example.signature.v1"
ATTESTATION = "application/vnd.example.attestation.v1"
# The test-only variable is not a setting: the servers must not inherit it (unknown OCIGATE_*
# names are refused).
ARTIFACTS_VARIABLE = "OCIGATE_TEST_ARTIFACTS"


@dataclass(frozen=True)
class Content:
    url: str
    image: str  # digest of public/app:v1
    index: str  # digest of public/multi:latest
    children: tuple[str, ...]  # its platform manifests
    signature: str  # referrer of the image
    attestation: str  # referrer of the signature
    data_dir: Path


def referrer(
    client: httpx.Client, base: str, repo: str, subject: Blob, kind: str, text: str
) -> Blob:
    """An artifact manifest about ``subject``, pushed by digest."""
    payload = text.encode()
    push_blob_monolithic(client, base, repo, b"{}")
    push_blob_monolithic(client, base, repo, payload)
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": kind,
        "config": {"mediaType": OCI_EMPTY, "digest": Blob(OCI_EMPTY, b"{}").digest, "size": 2},
        "layers": [Blob("text/plain", payload).descriptor()],
        "subject": subject.descriptor(),
        "annotations": {"org.example.note": "<script>alert(1)</script>"},
    }
    manifest = Blob(OCI_MANIFEST, json_bytes(doc))
    put_manifest(client, base, repo, manifest.digest, manifest)
    return manifest


def server_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != ARTIFACTS_VARIABLE}


def serve(tmp: Path, ui: dict[str, Any], realm: str = "basic") -> ServerProcess:
    tmp.mkdir(parents=True, exist_ok=True)
    htpasswd = write_htpasswd(tmp / "htpasswd", USERS)
    config = tmp / "ocigate.yaml"
    settings = {"auth": {"htpasswd": str(htpasswd), "realm": realm}, "policy": POLICY, "ui": ui}
    config.write_text(json.dumps(settings))
    process = ocigate_server(tmp / "data", tmp / "server.log", workers=2)
    process.argv.extend(["--config", str(config)])
    process.env = server_environment()
    return process.start()


@pytest.fixture(scope="package")
def content(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Content]:
    tmp = tmp_path_factory.mktemp("ui")
    process = serve(tmp, {"page_size": PAGE_SIZE})
    base = process.url
    try:
        with httpx.Client(auth=("root", "root-pw"), timeout=30) as client:
            image = make_image("app", layer_sizes=(2000, 3000))
            push_image(client, base, "public/app", image, "v1")
            signature = referrer(client, base, "public/app", image.manifest, SIGNATURE, "sig")
            attestation = referrer(client, base, "public/app", signature, ATTESTATION, "att")
            images = [make_image("multi", arch) for arch in ("amd64", "arm64")]
            for each in images:
                for blob in each.blobs:
                    push_blob_monolithic(client, base, "public/multi", blob.data)
                put_manifest(client, base, "public/multi", each.manifest.digest, each.manifest)
            index = make_index(images)
            put_manifest(client, base, "public/multi", "latest", index)
            small = make_image("small", layer_sizes=(100,))
            for repo in ("public/p1", "public/p2", "public/p3", "team-a/tool", "secret/vault"):
                push_image(client, base, repo, small, "v1")
            for tag in ("v2", "v3", "v4"):  # a second page of tags
                put_manifest(client, base, "public/p1", tag, small.manifest)
        yield Content(
            base,
            image.manifest.digest,
            index.digest,
            tuple(each.manifest.digest for each in images),
            signature.digest,
            attestation.digest,
            tmp / "data",
        )
    finally:
        process.stop()


@pytest.fixture(scope="package")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: ``$OCIGATE_TEST_ARTIFACTS/ui``, else pytest's temporary directory."""
    given = os.environ.get(ARTIFACTS_VARIABLE)
    path = Path(given) / "ui" if given else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    print(f"\nUI screenshots in {path}")
    return path
