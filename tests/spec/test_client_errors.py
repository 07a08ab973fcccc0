"""A client mistake is never a server error: garbage input gets a 4xx (or a harmless 2xx),
never a 5xx. Where the response is a 4xx JSON body, it must be a valid OCI error body."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from .helpers import (
    ERROR_CODES,
    LEGACY_ERROR_CODES,
    OCI_INDEX,
    OCI_MANIFEST,
    Blob,
    Manifest,
    blob_url,
    manifest_url,
    push_blob,
    push_image,
    random_blob,
    start_upload,
    uploads_url,
    with_params,
)


@dataclass(frozen=True)
class Env:
    """A repository with a blob, a tagged manifest and an open upload session."""

    repo: str
    blob: Blob
    manifest: Manifest
    upload: str

    def doc(self, **changes: Any) -> bytes:
        return json.dumps({**self.manifest.doc, **changes}).encode()


@dataclass(frozen=True)
class Req:
    method: str
    url: str
    body: bytes | None = None
    headers: dict[str, str] | None = None
    params: list[tuple[str, str]] | None = None


def put_manifest_req(
    env: Env, body: bytes, content_type: str = OCI_MANIFEST, ref: str = "g"
) -> Req:
    return Req("PUT", manifest_url(env.repo, ref), body, {"Content-Type": content_type})


def range_req(env: Env, value: str) -> Req:
    return Req("GET", blob_url(env.repo, env.blob.digest), headers={"Range": value})


def patch_req(env: Env, content_range: str) -> Req:
    return Req("PATCH", env.upload, b"0123456789", {"Content-Range": content_range})


def q(path: str, **params: str) -> str:
    return with_params(path, list(params.items()))


CASES: dict[str, Callable[[Env], Req]] = {
    # digests in URLs
    "blob-digest-empty-encoded": lambda e: Req("GET", blob_url(e.repo, "sha256:")),
    "blob-digest-unknown-algorithm": lambda e: Req("GET", blob_url(e.repo, "md5:abcdef")),
    "blob-digest-traversal": lambda e: Req("GET", blob_url(e.repo, "sha256:..%2F..%2Fetc")),
    "blob-digest-huge": lambda e: Req("GET", blob_url(e.repo, "sha256:" + "a" * 5000)),
    "blob-digest-trailing-junk": lambda e: Req("HEAD", blob_url(e.repo, e.blob.digest + "x")),
    "blob-delete-garbage": lambda e: Req("DELETE", blob_url(e.repo, "garbage")),
    # ranges
    "range-not-a-number": lambda e: range_req(e, "bytes=abc-def"),
    "range-reversed": lambda e: range_req(e, "bytes=50-10"),
    "range-zero-suffix": lambda e: range_req(e, "bytes=-0"),
    "range-multi": lambda e: range_req(e, "bytes=0-1,5-9"),
    "range-unit": lambda e: range_req(e, "items=0-1"),
    "range-overflow": lambda e: range_req(e, "bytes=99999999999999999999999999-"),
    # uploads
    "patch-content-range-text": lambda e: patch_req(e, "abc"),
    "patch-content-range-reversed": lambda e: patch_req(e, "9-0"),
    "patch-content-range-negative": lambda e: patch_req(e, "-1-8"),
    "patch-content-range-overflow": lambda e: patch_req(e, "0-99999999999999999999999"),
    "put-digest-garbage": lambda e: Req("PUT", q(e.upload, digest="garbage"), b"x"),
    "put-digest-short": lambda e: Req("PUT", q(e.upload, digest="sha256:abc"), b"x"),
    "put-digest-unknown-alg": lambda e: Req("PUT", q(e.upload, digest="foo:abcd"), b"x"),
    "post-digest-garbage": lambda e: Req("POST", q(uploads_url(e.repo), digest="x"), b"x"),
    "post-algorithm-unknown": lambda e: Req(
        "POST", q(uploads_url(e.repo), **{"digest-algorithm": "md5"})
    ),
    "post-mount-garbage": lambda e: Req(
        "POST", q(uploads_url(e.repo), mount="garbage", **{"from": e.repo})
    ),
    "post-mount-bad-from": lambda e: Req(
        "POST", q(uploads_url(e.repo), mount=e.blob.digest, **{"from": "Bad//Name"})
    ),
    "name-empty-component": lambda e: Req("GET", f"/v2/{e.repo}//x/tags/list"),
    "name-too-long": lambda e: Req("GET", f"/v2/{'a' * 300}/{'b' * 300}/tags/list"),
    "upload-id-traversal": lambda e: Req("GET", uploads_url(e.repo) + "..%2F..%2Fx"),
    "upload-id-not-uuid": lambda e: Req("PATCH", uploads_url(e.repo) + "not-a-uuid", b"x"),
    # tags list and catalog
    "tags-n-negative": lambda e: Req("GET", q(f"/v2/{e.repo}/tags/list", n="-1")),
    "tags-n-text": lambda e: Req("GET", q(f"/v2/{e.repo}/tags/list", n="abc")),
    "tags-n-float": lambda e: Req("GET", q(f"/v2/{e.repo}/tags/list", n="1.5")),
    "tags-n-huge": lambda e: Req("GET", q(f"/v2/{e.repo}/tags/list", n="9" * 30)),
    "tags-last-nul": lambda e: Req("GET", q(f"/v2/{e.repo}/tags/list", last="\x00")),
    "tags-last-long": lambda e: Req("GET", q(f"/v2/{e.repo}/tags/list", last="x" * 2000)),
    "catalog-n-negative": lambda e: Req("GET", q("/v2/_catalog", n="-1")),
    "catalog-n-text": lambda e: Req("GET", q("/v2/_catalog", n="abc")),
    "catalog-n-huge": lambda e: Req("GET", q("/v2/_catalog", n="9" * 30)),
    # manifests
    "manifest-not-json": lambda e: put_manifest_req(e, b"\xff\xfe not json"),
    "manifest-empty-body": lambda e: put_manifest_req(e, b""),
    "manifest-null": lambda e: put_manifest_req(e, b"null"),
    "manifest-layers-number": lambda e: put_manifest_req(e, e.doc(layers=5)),
    "manifest-layers-strings": lambda e: put_manifest_req(e, e.doc(layers=["a", "b"])),
    "manifest-size-negative": lambda e: put_manifest_req(
        e, e.doc(config={**e.manifest.doc["config"], "size": -1})
    ),
    "manifest-size-string": lambda e: put_manifest_req(
        e, e.doc(config={**e.manifest.doc["config"], "size": "2"})
    ),
    "manifest-descriptor-bad-digest": lambda e: put_manifest_req(
        e, e.doc(config={**e.manifest.doc["config"], "digest": "sha256:xyz"})
    ),
    "manifest-schema-version-string": lambda e: put_manifest_req(e, e.doc(schemaVersion="2")),
    "manifest-subject-garbage": lambda e: put_manifest_req(e, e.doc(subject={"digest": 1})),
    "manifest-annotations-not-strings": lambda e: put_manifest_req(e, e.doc(annotations=[1])),
    "manifest-media-type-mismatch": lambda e: put_manifest_req(e, e.manifest.body, OCI_INDEX),
    "manifest-content-type-text": lambda e: put_manifest_req(e, e.manifest.body, "text/plain"),
    "manifest-deep-nesting": lambda e: put_manifest_req(e, b"[" * 100_000 + b"]" * 100_000),
    "manifest-index-children-garbage": lambda e: put_manifest_req(
        e,
        json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": 7}).encode(),
        OCI_INDEX,
    ),
    "manifest-get-bad-digest": lambda e: Req("GET", manifest_url(e.repo, "sha256:abc")),
    "manifest-get-long-ref": lambda e: Req("GET", manifest_url(e.repo, "a" * 300)),
    "manifest-delete-bad-ref": lambda e: Req("DELETE", manifest_url(e.repo, "-bad")),
    "manifest-many-tag-params": lambda e: Req(
        "PUT",
        manifest_url(e.repo, e.manifest.digest),
        e.manifest.body,
        {"Content-Type": OCI_MANIFEST},
        [("tag", f"t{i}") for i in range(500)],
    ),
    "manifest-bad-tag-param": lambda e: Req(
        "PUT",
        manifest_url(e.repo, e.manifest.digest),
        e.manifest.body,
        {"Content-Type": OCI_MANIFEST},
        [("tag", "-bad"), ("tag", "a" * 200)],
    ),
    # referrers and methods
    "referrers-bad-digest": lambda e: Req("GET", f"/v2/{e.repo}/referrers/garbage"),
    "referrers-bad-filter": lambda e: Req(
        "GET", q(f"/v2/{e.repo}/referrers/{e.manifest.digest}", artifactType="\x01;,")
    ),
    "method-post-manifest": lambda e: Req("POST", manifest_url(e.repo, "latest"), b"{}"),
    "method-patch-blob": lambda e: Req("PATCH", blob_url(e.repo, e.blob.digest), b"x"),
}


@pytest.fixture
def env(client: httpx.Client, repo: str) -> Env:
    blob = random_blob()
    push_blob(client, repo, blob)
    manifest = push_image(client, repo, "latest")
    return Env(repo, blob, manifest, start_upload(client, repo))


@pytest.mark.parametrize("case", list(CASES))
def test_client_mistake_is_not_a_server_error(client: httpx.Client, env: Env, case: str) -> None:
    """ "Where this specification does not define specific behavior, implementations SHOULD follow
    the HTTP semantics defined in RFC 9110": bad requests are 4xx, never 5xx; a JSON error body
    has the spec's format."""
    req = CASES[case](env)
    resp = client.request(
        req.method,
        with_params(req.url, req.params or []),
        content=req.body,
        headers=req.headers,
    )
    assert resp.status_code < 500, f"{resp.status_code}: {resp.text[:300]}"
    is_json = "json" in resp.headers.get("Content-Type", "")
    if resp.status_code >= 400 and req.method != "HEAD" and resp.content and is_json:
        codes = {err["code"] for err in resp.json()["errors"]}
        assert codes <= ERROR_CODES | LEGACY_ERROR_CODES, codes
    assert client.get("/v2/").status_code == 200, "registry unhealthy after the request"
