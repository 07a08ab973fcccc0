"""sha512 content: `digest-algorithm=sha512` uploads, sha512 blobs, mounts and manifests.

"When pushing a blob with a digest algorithm other than `sha256`, the post request SHOULD
include the `digest-algorithm` parameter" (end-4c). Deselect with ``-m "not sha512"``.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from .helpers import (
    OCI_CONFIG,
    OCI_LAYER,
    Manifest,
    assert_error,
    blob_url,
    config_blob,
    digest_of,
    image_manifest,
    location,
    manifest_url,
    patch_chunk,
    push_blob,
    put_manifest,
    put_upload,
    random_blob,
    start_upload,
    uploads_url,
)

pytestmark = pytest.mark.sha512


@pytest.mark.parametrize("method", ["post-put", "chunked", "single-post"])
def test_sha512_blob_push_and_pull(client: httpx.Client, repo: str, method: str) -> None:
    """Push a blob identified by a sha512 digest and pull it back by that digest; the
    `Docker-Content-Digest` "MUST be a digest matching that of the response body"."""
    blob = random_blob(700, "sha512")
    if method == "single-post":
        resp = client.post(
            uploads_url(repo),
            params={"digest": blob.digest},
            content=blob.data,
            headers={"Content-Type": "application/octet-stream"},
        )
    else:
        upload = start_upload(client, repo, **{"digest-algorithm": "sha512"})
        data = blob.data
        if method == "chunked":
            resp = patch_chunk(client, upload, blob.data[:300], 0)
            assert resp.status_code == 202
            upload, data = location(resp), b""
            resp = patch_chunk(client, upload, blob.data[300:], 300)
            assert resp.status_code == 202
            upload = location(resp)
        resp = put_upload(client, upload, blob.digest, data)
    assert resp.status_code == 201, resp.text
    assert resp.headers["Docker-Content-Digest"] == blob.digest
    got = client.get(blob_url(repo, blob.digest))
    assert got.status_code == 200
    assert got.content == blob.data
    assert got.headers["Docker-Content-Digest"] == blob.digest
    head = client.head(blob_url(repo, blob.digest))
    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(blob.size)


def test_sha512_digest_mismatch(client: httpx.Client, repo: str) -> None:
    """A sha512 digest that does not match the bytes: 400 DIGEST_INVALID."""
    blob = random_blob(100, "sha512")
    upload = start_upload(client, repo, **{"digest-algorithm": "sha512"})
    resp = put_upload(client, upload, random_blob(100, "sha512").digest, blob.data)
    assert_error(resp, 400, "DIGEST_INVALID")
    assert_error(client.get(blob_url(repo, blob.digest)), 404, "BLOB_UNKNOWN", "NAME_UNKNOWN")


def test_sha512_mount(client: httpx.Client, repo: str, new_repo: Callable[[], str]) -> None:
    """Cross-repository mount of a sha512 blob: 201 + Location, then pullable in the target."""
    source = new_repo()
    blob = random_blob(100, "sha512")
    push_blob(client, source, blob)
    resp = client.post(uploads_url(repo), params={"mount": blob.digest, "from": source})
    assert resp.status_code == 201, resp.text
    assert client.get(location(resp)).content == blob.data
    assert client.get(blob_url(repo, blob.digest)).content == blob.data


def _sha512_image(client: httpx.Client, repo: str) -> Manifest:
    config = config_blob()
    layer = random_blob(64, "sha512")
    push_blob(client, repo, config)
    push_blob(client, repo, layer)
    doc = image_manifest(config.descriptor(OCI_CONFIG), [layer.descriptor(OCI_LAYER)])
    return Manifest.of(doc)


def test_manifest_referencing_sha512_blobs(client: httpx.Client, repo: str) -> None:
    """A manifest whose layer descriptor uses a sha512 digest is accepted (descriptors may mix
    algorithms); its own digest, pushed by tag, is the canonical sha256."""
    manifest = _sha512_image(client, repo)
    resp = put_manifest(client, repo, "v1", manifest)
    assert resp.status_code == 201, resp.text
    assert resp.headers["Docker-Content-Digest"] == manifest.digest
    assert client.get(manifest_url(repo, "v1")).content == manifest.body


def test_manifest_pushed_by_sha512_digest(client: httpx.Client, repo: str) -> None:
    """PUT `/v2/<name>/manifests/<sha512 digest>`: "The Docker-Content-Digest header returns
    the digest of the uploaded blob, and MUST be equal to the client provided digest." GET and
    HEAD by that digest return the exact bytes."""
    manifest = _sha512_image(client, repo)
    digest = digest_of(manifest.body, "sha512")
    resp = put_manifest(client, repo, digest, manifest)
    assert resp.status_code == 201, resp.text
    assert resp.headers["Docker-Content-Digest"] == digest
    got = client.get(manifest_url(repo, digest))
    assert got.status_code == 200
    assert got.content == manifest.body
    assert got.headers["Docker-Content-Digest"] == digest
    head = client.head(manifest_url(repo, digest))
    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(manifest.size)


def test_manifest_sha512_digest_mismatch(client: httpx.Client, repo: str) -> None:
    """A manifest PUT by a sha512 digest that does not match the body is a 400."""
    manifest = _sha512_image(client, repo)
    resp = put_manifest(client, repo, random_blob(10, "sha512").digest, manifest)
    assert_error(resp, 400, "DIGEST_INVALID", "MANIFEST_INVALID")
