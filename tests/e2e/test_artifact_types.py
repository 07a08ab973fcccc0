"""Artifact types over HTTP: an in-process ocigate configured with types and rules, driven by
plain httpx and by oras-py.

oras-py retries failures for about two minutes, so only pushes expected to succeed go through
it; refused pushes are made with httpx and their 400 body is checked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import oras.client
import pytest

from spec.conftest import serve_ocigate

from .support import (
    OCI_MANIFEST,
    Blob,
    artifact_manifest,
    json_bytes,
    make_image,
    push_blob_monolithic,
    push_image,
)

RECORD = "application/record+json"
MCP = "application/mcp+json"
SETTINGS: dict[str, Any] = {
    "artifact_types": ["record", "mcp"],
    "artifact_policy": [
        {"repository": "**", "artifact_types": ["record"]},
        {"repository": "tools/*", "artifact_types": ["mcp"], "images": False},
    ],
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve_ocigate(tmp_path_factory.mktemp("artifacts"), **SETTINGS) as url:
        yield url


def push_artifact(
    http: httpx.Client, base: str, repo: str, payload: Blob, artifact_type: str, tag: str
) -> httpx.Response:
    push_blob_monolithic(http, base, repo, b"{}")
    push_blob_monolithic(http, base, repo, payload.data)
    manifest = artifact_manifest(artifact_type, payload)
    return http.put(
        f"{base}/v2/{repo}/manifests/{tag}",
        content=manifest.data,
        headers={"Content-Type": OCI_MANIFEST},
    )


def tags(http: httpx.Client, base: str, repo: str) -> list[str]:
    response = http.get(f"{base}/v2/{repo}/tags/list")
    if response.status_code == 404:
        return []
    return list(response.json()["tags"])


def test_oras_pushes_valid_record_and_invalid_one_is_refused(
    server: str, http: httpx.Client, tmp_path: Path
) -> None:
    host = server.removeprefix("http://")
    record = tmp_path / "record.json"
    record.write_bytes(json_bytes({"name": "agent", "version": "1.2.0", "schema_version": "0.7"}))
    client = oras.client.OrasClient(hostname=host, insecure=True)
    response = client.push(
        target=f"{host}/agents/one:v1",
        files=[f"{record}:{RECORD}"],
        disable_path_validation=True,
        quiet=True,
    )
    assert response.status_code == 201
    files = client.pull(target=f"{host}/agents/one:v1", outdir=str(tmp_path / "out"))
    assert json.loads(Path(files[0]).read_bytes())["name"] == "agent"

    invalid = Blob(RECORD, json_bytes({"name": "agent", "version": "1.2.0"}))
    response = push_artifact(http, server, "agents/two", invalid, RECORD, "v1")
    assert response.status_code == 400, response.text
    [error] = response.json()["errors"]
    assert error["code"] == "MANIFEST_INVALID"
    assert error["detail"]["digest"] == invalid.digest
    assert error["detail"]["pointer"] == ""
    assert "'schema_version' is a required property" in error["detail"]["reason"]
    assert invalid.digest in error["message"]
    assert tags(http, server, "agents/two") == []


def test_invalid_nested_field_is_pointed_at(server: str, http: httpx.Client) -> None:
    bad = Blob(MCP, json_bytes({"name": "tools", "servers": [{"name": "fs", "url": 5}]}))
    response = push_artifact(http, server, "tools/fs", bad, MCP, "v1")
    assert response.status_code == 400, response.text
    detail = response.json()["errors"][0]["detail"]
    assert detail["pointer"].startswith("/servers/0")
    assert tags(http, server, "tools/fs") == []
    good = Blob(MCP, json_bytes({"name": "tools", "servers": [{"name": "fs", "command": "x"}]}))
    response = push_artifact(http, server, "tools/fs", good, MCP, "v1")
    assert response.status_code == 201, response.text
    assert tags(http, server, "tools/fs") == ["v1"]


# kind -> repository -> allowed, per SETTINGS ("tools/*" wins over "**" for tools/x only)
MATRIX = {
    "record": {"misc/a": True, "tools/x": False, "tools/x/y": True},
    "mcp": {"misc/a": False, "tools/x": True, "tools/x/y": False},
    "image": {"misc/a": True, "tools/x": False, "tools/x/y": True},
    "other": {"misc/a": False, "tools/x": False, "tools/x/y": False},
}


@pytest.mark.parametrize(
    ("kind", "repo"), [(kind, repo) for kind, repos in MATRIX.items() for repo in repos]
)
def test_allow_list_over_http(server: str, http: httpx.Client, kind: str, repo: str) -> None:
    allowed = MATRIX[kind][repo]
    target = f"{repo}-{kind}"  # a fresh repository per case, matched by the same globs
    if kind == "record":
        payload = Blob(RECORD, json_bytes({"name": "r", "version": "1", "schema_version": "1"}))
        response = push_artifact(http, server, target, payload, RECORD, "v1")
    elif kind == "mcp":
        payload = Blob(MCP, json_bytes({"name": "m", "servers": [{"name": "s", "url": "x:y"}]}))
        response = push_artifact(http, server, target, payload, MCP, "v1")
    elif kind == "other":
        payload = Blob("text/spdx", b"SPDXVersion: SPDX-2.3\n")
        response = push_artifact(http, server, target, payload, "application/spdx", "v1")
    else:
        image = make_image(f"matrix-{repo}")
        for blob in image.blobs:
            push_blob_monolithic(http, server, target, blob.data)
        response = http.put(
            f"{server}/v2/{target}/manifests/v1",
            content=image.manifest.data,
            headers={"Content-Type": OCI_MANIFEST},
        )
    if allowed:
        assert response.status_code == 201, response.text
        assert tags(http, server, target) == ["v1"]
    else:
        assert response.status_code == 400, response.text
        error = response.json()["errors"][0]
        assert error["code"] == "MANIFEST_INVALID"
        assert "artifact_policy rule" in error["message"]
        assert tags(http, server, target) == []


def test_images_still_push_without_configuration(tmp_path: Path, http: httpx.Client) -> None:
    with serve_ocigate(tmp_path / "plain") as url:
        image = make_image("plain")
        push_image(http, url, "tools/x", image, "v1")
        assert tags(http, url, "tools/x") == ["v1"]
