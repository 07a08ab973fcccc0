"""Pushing blobs: POST/PUT, single POST, chunked PATCH uploads, upload status and cancel."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from .conftest import ClientFactory
from .helpers import (
    RANGE_RE,
    UUID_RE,
    Blob,
    assert_error,
    blob_url,
    digest_of,
    location,
    patch_chunk,
    put_upload,
    random_blob,
    random_bytes,
    resolve,
    start_upload,
    uploads_url,
    with_params,
)


def assert_blob_stored(client: httpx.Client, repo: str, blob: Blob) -> None:
    resp = client.get(blob_url(repo, blob.digest))
    assert resp.status_code == 200, resp.text
    assert resp.content == blob.data
    assert resp.headers["Docker-Content-Digest"] == blob.digest


def assert_blob_absent(client: httpx.Client, repo: str, digest: str) -> None:
    assert_error(client.get(blob_url(repo, digest)), 404, "BLOB_UNKNOWN", "NAME_UNKNOWN")


def assert_created(client: httpx.Client, repo: str, resp: httpx.Response, blob: Blob) -> None:
    """A completed upload: `201 Created` with "Location: <blob-location>" being "a pullable
    blob URL" (and `Docker-Content-Digest`, as every registry sends it)."""
    assert resp.status_code == 201, f"{resp.status_code}: {resp.text}"
    pulled = client.get(location(resp))
    assert pulled.status_code == 200
    assert pulled.content == blob.data
    assert resp.headers["Docker-Content-Digest"] == blob.digest
    assert_blob_stored(client, repo, blob)


def assert_upload_progress(resp: httpx.Response, status: int, end: int) -> str:
    """PATCH (202) / status GET (204) responses: "MUST have the following headers:
    Location: <blob-push-location>, Range: 0-<end-of-range>". Returns the new location."""
    assert resp.status_code == status, f"{resp.status_code}: {resp.text}"
    assert resp.headers.get("Range") == f"0-{end}"
    return location(resp)


# --- POST then PUT ------------------------------------------------------------------------


def test_post_starts_session(client: httpx.Client, repo: str) -> None:
    """ "Upon success, the response MUST have a code of `202 Accepted`, and MUST include
    `Location: <blob-push-location>`"; "The `<blob-push-location>` MUST contain a UUID
    representing a unique session ID"."""
    first = start_upload(client, repo)
    second = start_upload(client, repo)
    assert first != second, "two sessions got the same location"
    assert UUID_RE.search(first), f"no UUID in upload location {first!r}"


def test_post_then_put(client: httpx.Client, repo: str) -> None:
    """POST then PUT `<blob-push-location>?digest=<digest>`: "the response MUST have code
    `201 Created` and MUST have the following header: Location: <blob-location>"."""
    blob = random_blob(1000)
    upload = start_upload(client, repo)
    assert_created(client, repo, put_upload(client, upload, blob.digest, blob.data), blob)


def test_empty_blob(client: httpx.Client, repo: str) -> None:
    """A zero-length blob is still a blob: push it and pull it back."""
    blob = Blob(b"")
    upload = start_upload(client, repo)
    assert_created(client, repo, put_upload(client, upload, blob.digest), blob)
    head = client.head(blob_url(repo, blob.digest))
    assert head.status_code == 200
    assert head.headers["Content-Length"] == "0"


def test_put_digest_mismatch(client: httpx.Client, repo: str) -> None:
    """A closing PUT whose `digest` does not match the uploaded bytes is rejected: 400
    DIGEST_INVALID ("provided digest did not match uploaded content"), and nothing is stored
    under either digest."""
    blob = random_blob()
    claimed = random_blob()
    upload = start_upload(client, repo)
    resp = put_upload(client, upload, claimed.digest, blob.data)
    assert_error(resp, 400, "DIGEST_INVALID")
    assert_blob_absent(client, repo, claimed.digest)
    assert_blob_absent(client, repo, blob.digest)


def test_put_without_digest(client: httpx.Client, repo: str) -> None:
    """ "The closing `PUT` request MUST include the `<digest>` of the whole blob": a PUT without
    it is a client error (400)."""
    upload = start_upload(client, repo)
    resp = client.put(upload, content=b"abc", headers={"Content-Type": "application/octet-stream"})
    assert_error(resp, 400, "DIGEST_INVALID", "BLOB_UPLOAD_INVALID")


# --- single POST -------------------------------------------------------------------------


def test_single_post(client: httpx.Client, repo: str) -> None:
    """Single POST `/v2/<name>/blobs/uploads/?digest=<digest>` with the body: "Successful
    completion of the request MUST return a `201 Created` and MUST include ... Location"
    (ocigate supports single-POST uploads; the spec makes them optional)."""
    blob = random_blob(500)
    resp = client.post(
        uploads_url(repo),
        params={"digest": blob.digest},
        content=blob.data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert_created(client, repo, resp, blob)


@pytest.mark.parametrize("mismatch", ["truncated", "extended", "different-bytes"])
def test_single_post_mismatch(client: httpx.Client, repo: str, mismatch: str) -> None:
    """ "The `Content-Length` header MUST match the blob's actual content length. Likewise, the
    `<digest>` MUST match the blob's digest." A body that is not the digest's blob (fewer,
    more or other bytes) is a 400 and stores nothing."""
    blob = random_blob(200)
    body = {
        "truncated": blob.data[:-10],
        "extended": blob.data + b"0123456789",
        "different-bytes": random_bytes(200),
    }[mismatch]
    resp = client.post(
        uploads_url(repo),
        params={"digest": blob.digest},
        content=body,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert_error(resp, 400, "DIGEST_INVALID", "SIZE_INVALID")
    assert_blob_absent(client, repo, blob.digest)
    assert_blob_absent(client, repo, digest_of(body))


# --- chunked -----------------------------------------------------------------------------


@pytest.mark.parametrize("final_chunk_in_put", [False, True], ids=["patch-all", "final-in-put"])
def test_chunked_upload(client: httpx.Client, repo: str, final_chunk_in_put: bool) -> None:
    """Chunked upload: each PATCH "MUST be `202 Accepted`, and MUST have ... Location ... Range:
    0-<end-of-range>"; "The final chunk MAY be uploaded using a `PATCH` request or it MAY be
    uploaded in the closing `PUT` request"; closing "MUST be `201 Created`" + Location."""
    blob = random_blob(3 * 1024 + 17)
    chunks = [blob.data[i : i + 1024] for i in range(0, blob.size, 1024)]
    upload = start_upload(client, repo)
    offset = 0
    patched = chunks[:-1] if final_chunk_in_put else chunks
    for chunk in patched:
        resp = patch_chunk(client, upload, chunk, offset)
        offset += len(chunk)
        upload = assert_upload_progress(resp, 202, offset - 1)
    if final_chunk_in_put:
        final = chunks[-1]
        resp = put_upload(
            client,
            upload,
            blob.digest,
            final,
            headers={"Content-Range": f"{offset}-{offset + len(final) - 1}"},
        )
    else:
        resp = put_upload(client, upload, blob.digest)
    assert_created(client, repo, resp, blob)


def test_blob_absent_until_put(client: httpx.Client, repo: str) -> None:
    """ "Regardless of how the final chunk is uploaded, the session MUST be closed with a `PUT`
    request": all bytes PATCHed is not yet a blob."""
    blob = random_blob(100)
    upload = start_upload(client, repo)
    upload = assert_upload_progress(patch_chunk(client, upload, blob.data, 0), 202, 99)
    assert_blob_absent(client, repo, blob.digest)
    assert_created(client, repo, put_upload(client, upload, blob.digest), blob)


@pytest.mark.parametrize("body_kind", ["content-length", "chunked-encoding"])
def test_streamed_patch(client: httpx.Client, repo: str, body_kind: str) -> None:
    """A PATCH without `Content-Range` streams the data (the "streamed" upload that docker and
    containerd use); the response still reports `Range: 0-<end>`."""
    blob = random_blob(5000)

    def pieces() -> Iterator[bytes]:
        yield blob.data[:1234]
        yield blob.data[1234:]

    content: bytes | Iterator[bytes] = blob.data if body_kind == "content-length" else pieces()
    upload = start_upload(client, repo)
    resp = client.patch(
        upload, content=content, headers={"Content-Type": "application/octet-stream"}
    )
    upload = assert_upload_progress(resp, 202, blob.size - 1)
    assert_created(client, repo, put_upload(client, upload, blob.digest), blob)


@pytest.mark.parametrize(
    "case", ["gap", "repeat", "overlap", "first-not-zero"], ids=lambda c: str(c)
)
def test_out_of_order_chunk_is_416(client: httpx.Client, repo: str, case: str) -> None:
    """ "Chunks MUST be uploaded in order, with the first byte of a chunk being the last
    chunk's `<end-of-range>` plus one. If a chunk is uploaded out of order, the registry MUST
    respond with a `416 Requested Range Not Satisfiable` code." The valid offset is kept."""
    blob = random_blob(300)
    upload = start_upload(client, repo)
    if case == "first-not-zero":
        resp = patch_chunk(client, upload, blob.data[100:200], 100)
        assert_error(resp, 416)
        return
    upload = assert_upload_progress(patch_chunk(client, upload, blob.data[:100], 0), 202, 99)
    start = {"gap": 150, "repeat": 0, "overlap": 50}[case]
    resp = patch_chunk(client, upload, blob.data[start : start + 100], start)
    assert_error(resp, 416)
    # "To get the current status after a 416 error, issue a GET request": still at 0-99.
    upload = assert_upload_progress(client.get(upload), 204, 99)
    upload = assert_upload_progress(patch_chunk(client, upload, blob.data[100:], 100), 202, 299)
    assert_created(client, repo, put_upload(client, upload, blob.digest), blob)


def test_final_chunk_out_of_order_is_416(client: httpx.Client, repo: str) -> None:
    """ "If the final chunk is uploaded out of order, the registry MUST respond with a `416
    Requested Range Not Satisfiable` code." (final chunk sent in the closing PUT)"""
    blob = random_blob(300)
    upload = start_upload(client, repo)
    upload = assert_upload_progress(patch_chunk(client, upload, blob.data[:100], 0), 202, 99)
    resp = put_upload(
        client, upload, blob.digest, blob.data[200:], headers={"Content-Range": "200-299"}
    )
    assert_error(resp, 416)


@pytest.mark.parametrize("content_range", ["0-", "-9", "abc", "9-0", "0-9-", "0x0-0x9"])
def test_malformed_content_range(client: httpx.Client, repo: str, content_range: str) -> None:
    """The chunk `<range>` "MUST match the following regular expression: ^[0-9]+-[0-9]+$"
    and is "inclusive on both ends"; a range that is not one is refused with 400 or 416."""
    upload = start_upload(client, repo)
    resp = client.patch(
        upload,
        content=random_bytes(10),
        headers={"Content-Type": "application/octet-stream", "Content-Range": content_range},
    )
    assert_error(resp, (400, 416))


@pytest.mark.parametrize("content_range", ["bytes=0-9", "bytes 0-9/10", "bytes 0-9/*"])
def test_http_style_content_range(client: httpx.Client, repo: str, content_range: str) -> None:
    """RFC 9110 spellings of the range 0-9 are outside the spec's regex: a registry either
    refuses them (400/416) or reads them as exactly bytes 0-9 (202, `Range: 0-9`)."""
    upload = start_upload(client, repo)
    resp = client.patch(
        upload,
        content=random_bytes(10),
        headers={"Content-Type": "application/octet-stream", "Content-Range": content_range},
    )
    if resp.status_code == 202:
        assert_upload_progress(resp, 202, 9)
    else:
        assert_error(resp, (400, 416))


def test_chunk_length_mismatch(client: httpx.Client, repo: str) -> None:
    """A chunk whose `Content-Range` disagrees with its length is refused (400 or 416)."""
    upload = start_upload(client, repo)
    resp = client.patch(
        upload,
        content=random_bytes(10),
        headers={"Content-Type": "application/octet-stream", "Content-Range": "0-19"},
    )
    assert_error(resp, (400, 416))


# --- status, cancel, unknown sessions ----------------------------------------------------


def test_upload_status(client: httpx.Client, repo: str) -> None:
    """ "The response to an active upload `<blob-push-location>` MUST be a `204 No Content`
    response code, and MUST have the following headers: Location ... Range: 0-<end-of-range>"."""
    upload = start_upload(client, repo)
    fresh = client.get(upload)
    assert fresh.status_code == 204
    assert RANGE_RE.match(fresh.headers.get("Range", "")), fresh.headers
    location(fresh)
    upload = assert_upload_progress(patch_chunk(client, upload, random_bytes(64), 0), 202, 63)
    upload = assert_upload_progress(client.get(upload), 204, 63)


def test_cancel_upload(client: httpx.Client, repo: str) -> None:
    """Cancel: "If successful, the response SHOULD be a `204 No Content`"; the session is then
    unknown (404 BLOB_UPLOAD_UNKNOWN) to status GETs, PATCHes and PUTs."""
    blob = random_blob(64)
    upload = start_upload(client, repo)
    upload = assert_upload_progress(patch_chunk(client, upload, blob.data, 0), 202, 63)
    resp = client.delete(upload, headers={"Content-Length": "0"})
    assert resp.status_code == 204
    assert_error(client.get(upload), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(patch_chunk(client, upload, blob.data, 64), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(put_upload(client, upload, blob.digest), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_blob_absent(client, repo, blob.digest)


def test_completed_session_is_gone(client: httpx.Client, repo: str) -> None:
    """Once closed with PUT, the session no longer exists (404 BLOB_UPLOAD_UNKNOWN)."""
    blob = random_blob()
    upload = start_upload(client, repo)
    assert put_upload(client, upload, blob.digest, blob.data).status_code == 201
    assert_error(client.get(upload), 404, "BLOB_UPLOAD_UNKNOWN")


@pytest.mark.parametrize("method", ["GET", "PATCH", "PUT", "DELETE"])
def test_unknown_upload_session(client: httpx.Client, repo: str, method: str) -> None:
    """A session id the registry never issued: end-5/6/13/14 answer 404 BLOB_UPLOAD_UNKNOWN."""
    start_upload(client, repo)  # the repository exists
    url = f"{uploads_url(repo)}{uuid.uuid4()}"
    if method == "PUT":
        url = with_params(url, [("digest", random_blob().digest)])
    content = b"x" if method in ("PATCH", "PUT") else None
    resp = client.request(method, url, content=content)
    assert_error(resp, 404, "BLOB_UPLOAD_UNKNOWN")


# --- location handling and chunk minimum -------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("/v2/r/blobs/uploads/abc?_state=x", "http://reg:5000/v2/r/blobs/uploads/abc?_state=x"),
        ("http://other:9/up/abc", "http://other:9/up/abc"),
        ("abc", "http://reg:5000/v2/r/blobs/uploads/abc"),
    ],
    ids=["relative-path", "absolute", "relative-segment"],
)
def test_location_resolution(header: str, expected: str) -> None:
    """ "the location MAY be absolute ... or it MAY be relative": the client helper resolves
    both against the request URL (RFC 7231 7.1.2); critical query parameters survive."""
    assert resolve("http://reg:5000/v2/r/blobs/uploads/", header) == expected
    assert with_params(expected, [("digest", "sha256:00")]).startswith(expected)


@pytest.mark.inprocess_only
def test_chunk_min_length(ocigate_factory: ClientFactory) -> None:
    """ "If the registry has a minimum chunk size, the `POST` response SHOULD include the
    following header ... `OCI-Chunk-Min-Length: <size>`"; chunks of that size plus a shorter
    final chunk complete the upload. Without a minimum, the header is absent."""
    plain = ocigate_factory()
    assert "OCI-Chunk-Min-Length" not in plain.post(uploads_url("spec/min")).headers
    client = ocigate_factory(chunk_min_length=1024)
    repo = "spec/chunk-min"
    resp = client.post(uploads_url(repo), headers={"Content-Length": "0"})
    assert resp.status_code == 202
    assert resp.headers.get("OCI-Chunk-Min-Length") == "1024"
    blob = random_blob(2048 + 5)
    upload = location(resp)
    for start in (0, 1024, 2048):
        chunk = blob.data[start : start + 1024]
        upload = assert_upload_progress(
            patch_chunk(client, upload, chunk, start), 202, start + len(chunk) - 1
        )
    assert_created(client, repo, put_upload(client, upload, blob.digest), blob)
