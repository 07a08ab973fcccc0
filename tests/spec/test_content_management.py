"""Deleting tags and manifests (spec: Content Management; blob deletion is in
test_blob_pull.py)."""

from __future__ import annotations

import httpx
import pytest

from .helpers import (
    assert_error,
    manifest_url,
    push_image,
    push_manifest,
    random_digest,
)


def test_delete_manifest_by_digest(client: httpx.Client, repo: str) -> None:
    """ "Upon success, the registry MUST respond with a `202 Accepted` code." ... "Once deleted, a
    `GET` to `/v2/<name>/manifests/<digest>` and any tag pointing to that digest will return a
    404.\""""
    manifest = push_image(client, repo, "one")
    push_manifest(client, repo, manifest, "two")
    keep = push_image(client, repo, "keep")
    resp = client.delete(manifest_url(repo, manifest.digest))
    assert resp.status_code == 202, resp.text
    for ref in (manifest.digest, "one", "two"):
        assert_error(client.get(manifest_url(repo, ref)), 404, "MANIFEST_UNKNOWN")
        assert client.head(manifest_url(repo, ref)).status_code == 404
    assert client.get(manifest_url(repo, "keep")).content == keep.body
    tags = client.get(f"/v2/{repo}/tags/list").json()["tags"] or []
    assert "one" not in tags
    assert "two" not in tags


def test_delete_tag(client: httpx.Client, repo: str) -> None:
    """Deleting tags: "Upon success, the registry MUST respond with a `202 Accepted` code."
    "Once deleted, a `GET` to `/v2/<name>/manifests/<tag>` will return a 404." Only the tag
    goes: the manifest and its other tags stay."""
    manifest = push_image(client, repo, "gone")
    push_manifest(client, repo, manifest, "stays")
    resp = client.delete(manifest_url(repo, "gone"))
    assert resp.status_code == 202, resp.text
    assert_error(client.get(manifest_url(repo, "gone")), 404, "MANIFEST_UNKNOWN")
    assert client.get(manifest_url(repo, manifest.digest)).content == manifest.body
    assert client.get(manifest_url(repo, "stays")).content == manifest.body
    assert client.get(f"/v2/{repo}/tags/list").json()["tags"] == ["stays"]


@pytest.mark.parametrize("ref_kind", ["tag", "digest"])
def test_delete_unknown_manifest_is_404(client: httpx.Client, repo: str, ref_kind: str) -> None:
    """Deleting something that is not there: 404 (MANIFEST_UNKNOWN)."""
    push_image(client, repo, "exists")
    ref = "missing" if ref_kind == "tag" else random_digest()
    assert_error(client.delete(manifest_url(repo, ref)), 404, "MANIFEST_UNKNOWN")


def test_delete_in_nonexistent_repository_is_404(client: httpx.Client, repo: str) -> None:
    """ "If the repository does not exist, the response MUST return `404 Not Found`.\""""
    resp = client.delete(manifest_url(repo, random_digest()))
    assert_error(resp, 404, "MANIFEST_UNKNOWN", "NAME_UNKNOWN")


def test_delete_twice(client: httpx.Client, repo: str) -> None:
    """The second DELETE of the same manifest finds nothing: 404."""
    manifest = push_image(client, repo)
    assert client.delete(manifest_url(repo, manifest.digest)).status_code == 202
    assert_error(client.delete(manifest_url(repo, manifest.digest)), 404, "MANIFEST_UNKNOWN")


def test_repush_after_delete(client: httpx.Client, repo: str) -> None:
    """A deleted manifest can be pushed again and is served again."""
    manifest = push_image(client, repo, "t")
    assert client.delete(manifest_url(repo, manifest.digest)).status_code == 202
    push_manifest(client, repo, manifest, "t")
    assert client.get(manifest_url(repo, "t")).content == manifest.body
