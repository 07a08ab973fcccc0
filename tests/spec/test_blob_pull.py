"""Pulling, checking and deleting blobs (spec: Pulling blobs, Checking if content exists,
Deleting Blobs)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from .helpers import (
    Blob,
    assert_error,
    blob_url,
    push_blob,
    random_blob,
    random_digest,
    raw_request,
)

BLOB_SIZE = 100


@pytest.fixture
def blob(client: httpx.Client, repo: str) -> Blob:
    pushed = random_blob(BLOB_SIZE)
    push_blob(client, repo, pushed)
    return pushed


def test_get_blob(client: httpx.Client, repo: str, blob: Blob) -> None:
    """ "A GET request to an existing blob URL MUST provide the expected blob, with a response
    code that MUST be `200 OK`. A successful response MUST contain the digest of the uploaded
    blob in the header `Docker-Content-Digest`. If present, the value of this header MUST be
    a digest matching that of the response body.\""""
    resp = client.get(blob_url(repo, blob.digest))
    assert resp.status_code == 200
    assert resp.content == blob.data
    assert resp.headers["Docker-Content-Digest"] == blob.digest
    assert resp.headers["Content-Length"] == str(blob.size)


def test_head_blob(client: httpx.Client, registry: str, repo: str, blob: Blob) -> None:
    """ "A HEAD request to an existing blob or manifest URL MUST return `200 OK`. A successful
    response MUST contain the digest ... in the header `Docker-Content-Digest` [and] the size in
    bytes ... in the header `Content-Length`." A HEAD response has no body (RFC 9110 9.3.2)."""
    resp = client.head(blob_url(repo, blob.digest))
    assert resp.status_code == 200
    assert resp.headers["Docker-Content-Digest"] == blob.digest
    assert resp.headers["Content-Length"] == str(blob.size)
    raw = raw_request(registry, "HEAD", blob_url(repo, blob.digest))
    assert raw.status == 200
    assert raw.body == b"", "HEAD response carried a body"


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_unknown_blob_is_404(client: httpx.Client, repo: str, blob: Blob, method: str) -> None:
    """ "If the blob is not found in the repository, the response code MUST be `404 Not
    Found`." (repository exists, blob does not)"""
    resp = client.request(method, blob_url(repo, random_digest()))
    assert_error(resp, 404, "BLOB_UNKNOWN")


def test_blob_in_unknown_repository_is_404(client: httpx.Client, repo: str) -> None:
    """ "If the blob is not found in the repository, the response code MUST be `404`." (no
    such repository at all)"""
    resp = client.get(blob_url(repo, random_digest()))
    assert_error(resp, 404, "BLOB_UNKNOWN", "NAME_UNKNOWN")


def test_blob_is_scoped_to_its_repository(
    client: httpx.Client, repo: str, blob: Blob, new_repo: Callable[[], str]
) -> None:
    """Content pushed to one repository is "not found in the repository" of another one."""
    other = new_repo()
    push_blob(client, other, random_blob())
    assert_error(client.get(blob_url(other, blob.digest)), 404, "BLOB_UNKNOWN")


@pytest.mark.parametrize(
    "digest",
    [
        "sha256:abc",
        "sha256:" + "A" * 64,
        "sha256:" + "z" * 64,
        "sha256" + "0" * 64,
        "sha256:" + "0" * 63,
    ],
    ids=["short", "uppercase-hex", "non-hex", "no-colon", "63-chars"],
)
def test_malformed_digest_is_400(client: httpx.Client, repo: str, blob: Blob, digest: str) -> None:
    """A `<digest>` that does not follow the digest grammar (sha256 encoded part MUST match
    `/[a-f0-9]{64}/`) is a client error: 400 DIGEST_INVALID."""
    assert_error(client.get(blob_url(repo, digest)), 400, "DIGEST_INVALID")


@pytest.mark.parametrize(
    ("range_header", "start", "end"),
    [
        ("bytes=0-9", 0, 9),
        ("bytes=10-", 10, BLOB_SIZE - 1),
        ("bytes=-5", BLOB_SIZE - 5, BLOB_SIZE - 1),
        ("bytes=90-200", 90, BLOB_SIZE - 1),
    ],
)
def test_range_request(
    client: httpx.Client, repo: str, blob: Blob, range_header: str, start: int, end: int
) -> None:
    """ "A registry SHOULD support the `Range` request header in accordance with RFC 9110":
    206 with `Content-Range: bytes first-last/complete-length` and exactly those bytes."""
    resp = client.get(blob_url(repo, blob.digest), headers={"Range": range_header})
    assert resp.status_code == 206
    assert resp.headers["Content-Range"] == f"bytes {start}-{end}/{BLOB_SIZE}"
    assert resp.content == blob.data[start : end + 1]
    assert resp.headers["Content-Length"] == str(end - start + 1)


def test_large_blob_whole_and_ranges(client: httpx.Client, repo: str) -> None:
    """The same MUSTs for a blob of a few MiB, which a server may send another way (ocigate's
    built-in server copies it from the file in the kernel): exact bytes, lengths and ranges."""
    large = random_blob(3 * 1024 * 1024 + 7)
    push_blob(client, repo, large)
    resp = client.get(blob_url(repo, large.digest))
    assert resp.status_code == 200
    assert resp.headers["Content-Length"] == str(large.size)
    assert resp.content == large.data
    start, end = 1024 * 1024 - 3, 2 * 1024 * 1024 + 11
    resp = client.get(blob_url(repo, large.digest), headers={"Range": f"bytes={start}-{end}"})
    assert resp.status_code == 206
    assert resp.headers["Content-Range"] == f"bytes {start}-{end}/{large.size}"
    assert resp.content == large.data[start : end + 1]


def test_unsatisfiable_range_is_416(client: httpx.Client, repo: str, blob: Blob) -> None:
    """RFC 9110 15.5.17: a range starting past the end is 416 with `Content-Range: bytes */N`
    (and, like every error here, an OCI error body)."""
    resp = client.get(blob_url(repo, blob.digest), headers={"Range": f"bytes={BLOB_SIZE * 10}-"})
    assert_error(resp, 416)
    assert resp.headers.get("Content-Range") == f"bytes */{BLOB_SIZE}"


def test_delete_blob(client: httpx.Client, repo: str, blob: Blob) -> None:
    """Deleting blobs: "Upon success, the registry MUST respond with code `202 Accepted`."
    Afterwards the blob is gone (404)."""
    resp = client.delete(blob_url(repo, blob.digest))
    assert resp.status_code == 202, resp.text
    assert_error(client.get(blob_url(repo, blob.digest)), 404, "BLOB_UNKNOWN")
    assert client.head(blob_url(repo, blob.digest)).status_code == 404


def test_delete_unknown_blob_is_404(client: httpx.Client, repo: str, blob: Blob) -> None:
    """Deleting blobs: "If the blob is not found, a `404 Not Found` code MUST be returned.\""""
    assert_error(client.delete(blob_url(repo, random_digest())), 404, "BLOB_UNKNOWN")
