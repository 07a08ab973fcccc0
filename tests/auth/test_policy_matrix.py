"""Identities x repositories x actions through the HTTP API, every cell asserted both ways."""

from __future__ import annotations

import secrets

import httpx
import pytest

from spec.helpers import (
    Manifest,
    config_blob,
    image_manifest,
    manifest_url,
    push_blob,
    push_manifest,
    random_blob,
)

from .conftest import basic_client

ALL = {"pull", "push", "overwrite", "delete"}
EXPECTED: dict[tuple[str | None, str], set[str]] = {
    (None, "team-a"): set(),
    (None, "team-b"): set(),
    (None, "public"): {"pull"},
    (None, "releases"): set(),
    ("alice", "team-a"): ALL,
    ("alice", "team-b"): {"pull"},
    ("alice", "public"): {"pull", "push"},
    ("alice", "releases"): ALL,
    ("bob", "team-a"): set(),
    ("bob", "team-b"): ALL,
    ("bob", "public"): {"pull", "push"},
    ("bob", "releases"): ALL,
    ("root", "team-a"): ALL,
    ("root", "team-b"): ALL,
    ("root", "public"): ALL,
    ("root", "releases"): ALL,
}


def new_image(client: httpx.Client, repo: str) -> Manifest:
    """Blobs pushed and a manifest built (not pushed) for ``repo``."""
    config, layer = config_blob(), random_blob(32)
    push_blob(client, repo, config)
    push_blob(client, repo, layer)
    doc = image_manifest(
        config.descriptor("application/vnd.oci.image.config.v1+json"),
        [layer.descriptor("application/vnd.oci.image.layer.v1.tar")],
    )
    return Manifest.of(doc)


def assert_refused(resp: httpx.Response, user: str | None) -> None:
    if user is None:
        assert resp.status_code == 401, resp.text
        assert resp.headers["www-authenticate"].startswith("Basic")
        assert resp.json()["errors"][0]["code"] == "UNAUTHORIZED"
    else:
        assert resp.status_code == 403, resp.text
        assert resp.json()["errors"][0]["code"] == "DENIED"


@pytest.mark.parametrize(("user", "prefix"), sorted(EXPECTED, key=str))
def test_policy_cell(basic_registry: str, user: str | None, prefix: str) -> None:
    allowed = EXPECTED[(user, prefix)]
    repo = f"{prefix}/app-{secrets.token_hex(3)}"
    with basic_client(basic_registry, "root") as root, basic_client(basic_registry, user) as me:
        # The admin prepares: a tagged image, another image to move the tag to, a tag to delete.
        first = new_image(root, repo)
        push_manifest(root, repo, first, "latest")
        push_manifest(root, repo, first, "doomed")
        second = new_image(root, repo)
        push_manifest(root, repo, second)  # by digest: untagged

        pull = me.get(manifest_url(repo, "latest"))
        if "pull" in allowed:
            assert pull.status_code == 200 and pull.content == first.body
        else:
            assert_refused(pull, user)

        push = me.post(f"/v2/{repo}/blobs/uploads/")
        if "push" in allowed:
            assert push.status_code == 202
        else:
            assert_refused(push, user)

        moved = me.put(
            manifest_url(repo, "latest"),
            content=second.body,
            headers={"Content-Type": second.media_type},
        )
        if {"push", "overwrite"} <= allowed:
            assert moved.status_code == 201
        else:
            assert_refused(moved, user)

        deleted = me.delete(manifest_url(repo, "doomed"))
        if "delete" in allowed:
            assert deleted.status_code == 202
            assert root.get(manifest_url(repo, "doomed")).status_code == 404
        else:
            assert_refused(deleted, user)
            assert root.get(manifest_url(repo, "doomed")).status_code == 200
