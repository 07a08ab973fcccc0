"""Mounting a blob from another repository (end-11)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from .conftest import ClientFactory
from .helpers import (
    Blob,
    assert_error,
    blob_url,
    location,
    push_blob,
    put_upload,
    random_blob,
    uploads_url,
)


def mount(client: httpx.Client, repo: str, digest: str, source: str | None) -> httpx.Response:
    params = {"mount": digest} if source is None else {"mount": digest, "from": source}
    return client.post(uploads_url(repo), params=params, headers={"Content-Length": "0"})


def assert_mounted(client: httpx.Client, repo: str, resp: httpx.Response, blob: Blob) -> None:
    """ "The response to a successful mount MUST be `201 Created`, and MUST contain ...
    Location: <blob-location>"; the blob is then pullable from the target repository."""
    assert resp.status_code == 201, f"{resp.status_code}: {resp.text}"
    assert client.get(location(resp)).content == blob.data
    if "Docker-Content-Digest" in resp.headers:
        assert resp.headers["Docker-Content-Digest"] == blob.digest
    pulled = client.get(blob_url(repo, blob.digest))
    assert pulled.status_code == 200
    assert pulled.content == blob.data


def assert_fallback_upload(
    client: httpx.Client, repo: str, resp: httpx.Response, blob: Blob
) -> None:
    """ "if a registry ... is unable to mount the requested blob, it SHOULD return a `202`. This
    indicates that the upload session has begun": the Location is a working upload."""
    assert resp.status_code == 202, f"{resp.status_code}: {resp.text}"
    done = put_upload(client, location(resp), blob.digest, blob.data)
    assert done.status_code == 201, done.text
    assert client.get(blob_url(repo, blob.digest)).content == blob.data


def test_mount_from_other_repository(
    client: httpx.Client, repo: str, new_repo: Callable[[], str]
) -> None:
    """`POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<other_name>` -> 201 + Location."""
    source = new_repo()
    blob = random_blob()
    push_blob(client, source, blob)
    assert_error(client.get(blob_url(repo, blob.digest)), 404, "BLOB_UNKNOWN", "NAME_UNKNOWN")
    assert_mounted(client, repo, mount(client, repo, blob.digest, source), blob)
    # The source keeps its copy.
    assert client.get(blob_url(source, blob.digest)).content == blob.data


def test_mount_blob_already_in_target(client: httpx.Client, repo: str) -> None:
    """Mounting a blob the target already holds (from itself) succeeds with 201."""
    blob = random_blob()
    push_blob(client, repo, blob)
    assert_mounted(client, repo, mount(client, repo, blob.digest, repo), blob)


@pytest.mark.parametrize("source_state", ["repo-without-blob", "no-such-repo"])
def test_mount_unavailable_falls_back_to_upload(
    client: httpx.Client, repo: str, new_repo: Callable[[], str], source_state: str
) -> None:
    """The source lacks the blob (or does not exist): 202 and a usable upload session."""
    source = new_repo()
    if source_state == "repo-without-blob":
        push_blob(client, source, random_blob())
    blob = random_blob()
    assert_fallback_upload(client, repo, mount(client, repo, blob.digest, source), blob)


def test_mount_without_from_starts_upload(
    client: httpx.Client, repo: str, new_repo: Callable[[], str]
) -> None:
    """Without `from` (and without ocigate's auto_mount), a mount is not attempted: 202 + a
    working upload session, even though the blob exists elsewhere in the registry."""
    blob = random_blob()
    push_blob(client, new_repo(), blob)
    assert_fallback_upload(client, repo, mount(client, repo, blob.digest, None), blob)


@pytest.mark.inprocess_only
def test_auto_mount_without_from(ocigate_factory: ClientFactory) -> None:
    """ "The registry MAY treat the `from` parameter as optional, and it MAY cross-mount the blob
    if it can be found." (ocigate with auto_mount=True)"""
    client = ocigate_factory(auto_mount=True)
    blob = random_blob()
    push_blob(client, "spec/auto-src", blob)
    assert_mounted(client, "spec/auto-dst", mount(client, "spec/auto-dst", blob.digest, None), blob)
    missing = random_blob()
    resp = mount(client, "spec/auto-dst", missing.digest, None)
    assert_fallback_upload(client, "spec/auto-dst", resp, missing)
