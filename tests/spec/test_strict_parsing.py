"""Input just outside the spec's grammars: a trailing newline (which a ``$``-anchored regular
expression lets through) and numbers that are not plain ASCII digits or do not fit 64 bits.
Each is a client error with an OCI error body, never accepted and never a 500."""

from __future__ import annotations

import httpx
import pytest

from .helpers import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    Manifest,
    assert_error,
    blob_url,
    config_blob,
    image_manifest,
    manifest_url,
    push_blob,
    push_image,
    random_blob,
    start_upload,
    uploads_url,
    with_params,
)

NEWLINE = "%0A"
HUGE = "9" * 5000  # past Python's int() limit of 4,300 digits
SUPERSCRIPT_TWO = "%C2%B2"  # "²": str.isdigit() says yes, int() says no


def test_tag_with_a_trailing_newline_is_refused(client: httpx.Client, repo: str) -> None:
    """ "<reference> as a tag MUST be at most 128 characters in length and MUST match
    `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`": "v1\\n" does not, so no tag "v1\\n" is made."""
    config, layer = config_blob(), random_blob(64)
    push_blob(client, repo, config)
    push_blob(client, repo, layer)
    doc = image_manifest(config.descriptor(OCI_CONFIG), [layer.descriptor(OCI_LAYER)])
    manifest = Manifest.of(doc)
    resp = client.put(
        manifest_url(repo, "v1" + NEWLINE),
        content=manifest.body,
        headers={"Content-Type": manifest.media_type},
    )
    assert_error(resp, 400, "TAG_INVALID", "MANIFEST_INVALID")
    resp = client.put(
        with_params(manifest_url(repo, manifest.digest), [("tag", "v1\n")]),
        content=manifest.body,
        headers={"Content-Type": manifest.media_type},
    )
    assert_error(resp, 400, "TAG_INVALID", "MANIFEST_INVALID")
    listed = client.get(f"/v2/{repo}/tags/list")
    assert listed.status_code == 404 or not listed.json()["tags"], listed.text  # nothing tagged


def test_references_with_a_trailing_newline_are_unknown(client: httpx.Client, repo: str) -> None:
    manifest = push_image(client, repo, "v1")
    for ref in ("v1" + NEWLINE, manifest.digest + NEWLINE):
        assert_error(client.get(manifest_url(repo, ref)), 404, "MANIFEST_UNKNOWN")
        assert client.head(manifest_url(repo, ref)).status_code == 404
    config = manifest.doc["config"]["digest"]
    assert_error(client.get(blob_url(repo, config + NEWLINE)), 400, "DIGEST_INVALID")
    assert_error(client.get(f"/v2/{repo}/tags/list{NEWLINE}"), 404)
    assert_error(client.get(f"/v2/{repo}{NEWLINE}/tags/list"), (400, 404))
    resp = client.get(with_params(f"/v2/{repo}/tags/list", [("last", "v0\n")]))
    assert_error(resp, 400, "TAG_INVALID", "UNSUPPORTED")


def test_upload_id_with_a_trailing_newline_is_unknown(client: httpx.Client, repo: str) -> None:
    upload = start_upload(client, repo)
    resp = client.get(upload.split("?", 1)[0] + NEWLINE)
    assert_error(resp, 404, "BLOB_UPLOAD_UNKNOWN")
    resp = client.post(with_params(uploads_url(repo), [("mount", random_blob().digest + "\n")]))
    assert_error(resp, 400, "DIGEST_INVALID")


@pytest.mark.parametrize("n", [SUPERSCRIPT_TWO, HUGE, "%D9%A3", "1_0", "+1", "1%0A"])
@pytest.mark.parametrize("endpoint", ["tags", "catalog"])
def test_page_size_that_is_not_a_plain_number_is_400(
    client: httpx.Client, repo: str, endpoint: str, n: str
) -> None:
    """`n=<integer>`: only ASCII digits are an integer, and one that fits 64 bits."""
    push_image(client, repo, "v1")
    path = f"/v2/{repo}/tags/list" if endpoint == "tags" else "/v2/_catalog"
    assert_error(client.get(f"{path}?n={n}"), 400)


def test_range_beyond_any_blob_is_416(client: httpx.Client, repo: str) -> None:
    """RFC 9110 15.5.17: 416 with `Content-Range: bytes */<size>` (Go's net/http, used by
    distribution, answers a position it cannot represent the same way)."""
    blob = random_blob(100)
    push_blob(client, repo, blob)
    for header in (f"bytes=0-{HUGE}", f"bytes={HUGE}-", f"bytes=-{HUGE}"):
        resp = client.get(blob_url(repo, blob.digest), headers={"Range": header})
        assert_error(resp, 416)
        assert resp.headers["content-range"] == "bytes */100"


def test_range_with_non_ascii_digits_is_ignored(client: httpx.Client, repo: str) -> None:
    """A Range that is not `bytes=<digits>-<digits>` is ignored (RFC 9110: the whole content)."""
    blob = random_blob(100)
    push_blob(client, repo, blob)
    resp = client.get(blob_url(repo, blob.digest), headers={"Range": "bytes=0-\u0663".encode()})
    assert resp.status_code == 200 and resp.content == blob.data


@pytest.mark.parametrize("content_range", [f"0-{HUGE}", f"{HUGE}-{HUGE}", "0-\xb2"])
def test_chunk_range_that_is_not_a_plain_number_is_refused(
    client: httpx.Client, repo: str, content_range: str
) -> None:
    upload = start_upload(client, repo)
    resp = client.patch(
        upload,
        content=b"0123456789",
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": content_range.encode("latin-1"),
        },
    )
    assert_error(resp, (400, 416), "BLOB_UPLOAD_INVALID")
    assert client.get(upload).headers["range"] == "0-0"  # nothing was written


@pytest.mark.parametrize("endpoint", ["tags", "catalog"])
def test_last_outside_the_grammar_is_400(client: httpx.Client, repo: str, endpoint: str) -> None:
    """`last=<tagname>` (for the catalog, a repository name): a cursor that no listed item can
    be, of any length, is refused instead of being carried to the store or an upstream."""
    push_image(client, repo, "v1")
    path = f"/v2/{repo}/tags/list" if endpoint == "tags" else "/v2/_catalog"
    for last in ("x" * 5000, "-x", "x" * 256):
        resp = client.get(with_params(path, [("last", last)]))
        assert_error(resp, 400, "TAG_INVALID" if endpoint == "tags" else "NAME_INVALID")
    assert client.get(with_params(path, [("last", "x")])).status_code == 200


@pytest.mark.parametrize("size", [str(2**63), HUGE])
def test_descriptor_size_beyond_int64_is_manifest_invalid(
    client: httpx.Client, repo: str, size: str
) -> None:
    """image-spec descriptor.md: `size` is an *int64*."""
    config, layer = config_blob(), random_blob(64)
    push_blob(client, repo, config)
    push_blob(client, repo, layer)
    doc = image_manifest(config.descriptor(OCI_CONFIG), [layer.descriptor(OCI_LAYER)])
    body = Manifest.of(doc).body.replace(b'"size":64', b'"size":' + size.encode())
    assert body != Manifest.of(doc).body
    resp = client.put(
        manifest_url(repo, "big"), content=body, headers={"Content-Type": OCI_MANIFEST}
    )
    assert_error(resp, 400, "MANIFEST_INVALID")
