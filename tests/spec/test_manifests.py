"""Pushing and pulling manifests (spec: Pulling manifests, Pushing Manifests, Checking if
content exists)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from .conftest import ClientFactory
from .helpers import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    EMPTY_DIGEST,
    EMPTY_JSON,
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_LAYER,
    OCI_MANIFEST,
    Blob,
    Manifest,
    assert_error,
    config_blob,
    header_list,
    image_manifest,
    index_manifest,
    location,
    manifest_url,
    push_blob,
    push_image,
    push_manifest,
    put_manifest,
    random_blob,
    random_digest,
    raw_request,
    uploads_url,
)

# --- manifests of every kind -------------------------------------------------------------

Builder = Callable[[httpx.Client, str], Manifest]


def _image_doc(client: httpx.Client, repo: str, **fields: Any) -> dict[str, Any]:
    config = config_blob()
    layer = random_blob(64)
    push_blob(client, repo, config)
    push_blob(client, repo, layer)
    return image_manifest(config.descriptor(OCI_CONFIG), [layer.descriptor(OCI_LAYER)], **fields)


def build_oci_image(client: httpx.Client, repo: str) -> Manifest:
    return Manifest.of(_image_doc(client, repo, annotations={"org.example.k": "v"}))


def build_oci_index(client: httpx.Client, repo: str) -> Manifest:
    children = [
        push_image(client, repo).descriptor(platform={"architecture": arch, "os": "linux"})
        for arch in ("amd64", "arm64")
    ]
    return Manifest.of(index_manifest(children, annotations={"org.example.k": "v"}))


def build_nested_index(client: httpx.Client, repo: str) -> Manifest:
    inner = build_oci_index(client, repo)
    push_manifest(client, repo, inner)
    return Manifest.of(index_manifest([inner.descriptor()]))


def build_docker_schema2(client: httpx.Client, repo: str) -> Manifest:
    config = config_blob()
    layer = random_blob(64)
    push_blob(client, repo, config)
    push_blob(client, repo, layer)
    doc = image_manifest(
        config.descriptor(DOCKER_CONFIG), [layer.descriptor(DOCKER_LAYER)], DOCKER_MANIFEST
    )
    return Manifest.of(doc)


def build_docker_list(client: httpx.Client, repo: str) -> Manifest:
    children = [
        push_image(client, repo, docker=True).descriptor(
            platform={"architecture": arch, "os": "linux"}
        )
        for arch in ("amd64", "arm64")
    ]
    return Manifest.of(index_manifest(children, media_type=DOCKER_LIST))


def build_artifact(client: httpx.Client, repo: str) -> Manifest:
    """Artifact per image-spec guidance: `artifactType` + the empty config and layer."""
    empty = Blob(EMPTY_JSON)
    assert empty.digest == EMPTY_DIGEST
    push_blob(client, repo, empty)
    doc = image_manifest(
        empty.descriptor(OCI_EMPTY),
        [empty.descriptor(OCI_EMPTY)],
        artifactType="application/vnd.example.thing.v1",
        annotations={"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
    )
    return Manifest.of(doc)


def build_with_data_field(client: httpx.Client, repo: str) -> Manifest:
    """Descriptors may embed their content in `data` (base64)."""
    config = config_blob()
    push_blob(client, repo, config)
    layer = random_blob(32)
    push_blob(client, repo, layer)
    doc = image_manifest(
        config.descriptor(OCI_CONFIG, data=base64.b64encode(config.data).decode()),
        [layer.descriptor(OCI_LAYER, data=base64.b64encode(layer.data).decode())],
    )
    return Manifest.of(doc)


def build_with_unknown_fields(client: httpx.Client, repo: str) -> Manifest:
    """Unknown top-level, descriptor and media-type values MUST NOT cause an error
    ("Implementations storing or copying image manifests MUST NOT error on encountering a
    `mediaType` that is unknown")."""
    config = random_blob(20)
    layer = random_blob(20)
    push_blob(client, repo, config)
    push_blob(client, repo, layer)
    doc = image_manifest(
        config.descriptor("application/vnd.example.config.v7+json", **{"x-extra": [1, 2]}),
        [layer.descriptor("application/vnd.example.layer.v7", urls=["https://example.com/l"])],
        artifactType="application/vnd.example.unknown.v1",
    )
    doc["org.example.future"] = {"nested": True, "n": 1.5}
    return Manifest.of(doc)


def build_no_layers(client: httpx.Client, repo: str) -> Manifest:
    """ "The uploaded manifest MUST reference any blobs that make up the object. However, the
    list of blobs MAY be empty.\""""
    config = config_blob()
    push_blob(client, repo, config)
    return Manifest.of(image_manifest(config.descriptor(OCI_CONFIG), []))


def build_unusual_formatting(client: httpx.Client, repo: str) -> Manifest:
    """Odd whitespace, key order, escapes and trailing newlines prove byte-exact storage."""
    doc = _image_doc(client, repo, annotations={"k": "caf\u00e9 \u2603"})
    reordered = dict(reversed(list(doc.items())))
    text = json.dumps(reordered, indent="\t", separators=(" ,", " :  "), ensure_ascii=True)
    return Manifest(("\n " + text + "\r\n\n").encode(), OCI_MANIFEST, doc)


KINDS: dict[str, Builder] = {
    "oci-image": build_oci_image,
    "oci-index": build_oci_index,
    "nested-index": build_nested_index,
    "docker-schema2": build_docker_schema2,
    "docker-manifest-list": build_docker_list,
    "artifact-empty-config": build_artifact,
    "data-field": build_with_data_field,
    "unknown-fields": build_with_unknown_fields,
    "no-layers": build_no_layers,
    "unusual-formatting": build_unusual_formatting,
}


def assert_manifest_served(
    client: httpx.Client, registry: str, repo: str, ref: str, manifest: Manifest
) -> None:
    """GET: "MUST provide the expected manifest, with a response code that MUST be `200 OK`"
    and `Docker-Content-Digest`; "The `Content-Type` header SHOULD match what the client pushed";
    HEAD: 200, `Docker-Content-Digest`, `Content-Length`, and no body."""
    got = client.get(manifest_url(repo, ref))
    assert got.status_code == 200, got.text
    assert got.content == manifest.body, "manifest bytes changed"
    assert got.headers["Docker-Content-Digest"] == manifest.digest
    assert got.headers["Content-Type"] == manifest.media_type
    head = client.head(manifest_url(repo, ref))
    assert head.status_code == 200
    assert head.headers["Docker-Content-Digest"] == manifest.digest
    assert head.headers["Content-Length"] == str(manifest.size)
    assert head.headers["Content-Type"] == manifest.media_type
    assert raw_request(registry, "HEAD", manifest_url(repo, ref)).body == b""


@pytest.mark.parametrize("kind", list(KINDS))
def test_push_and_pull_manifest(client: httpx.Client, registry: str, repo: str, kind: str) -> None:
    """ "The registry MUST store the manifest in the exact byte representation provided by the
    client. Upon a successful upload, the registry MUST return response code `201 Created`,
    and MUST have the following header: Location"; the digest header equals the sha256 of the
    exact bytes. Pulled by tag and by digest, the bytes and type come back unchanged."""
    manifest = KINDS[kind](client, repo)
    resp = put_manifest(client, repo, "latest", manifest)
    assert resp.status_code == 201, resp.text
    assert resp.headers["Docker-Content-Digest"] == manifest.digest
    pulled = client.get(location(resp))
    assert pulled.status_code == 200
    assert pulled.content == manifest.body
    assert_manifest_served(client, registry, repo, "latest", manifest)
    assert_manifest_served(client, registry, repo, manifest.digest, manifest)


def test_push_manifest_by_digest(client: httpx.Client, registry: str, repo: str) -> None:
    """PUT by digest: 201 + Location; "The Docker-Content-Digest header returns the digest of
    the uploaded blob, and MUST be equal to the client provided digest.\""""
    manifest = build_oci_image(client, repo)
    resp = put_manifest(client, repo, manifest.digest, manifest)
    assert resp.status_code == 201, resp.text
    assert resp.headers["Docker-Content-Digest"] == manifest.digest
    assert client.get(location(resp)).content == manifest.body
    assert_manifest_served(client, registry, repo, manifest.digest, manifest)


def test_push_same_manifest_twice(client: httpx.Client, repo: str) -> None:
    """Pushing identical bytes again is idempotent: 201 and the same digest."""
    manifest = build_oci_image(client, repo)
    for _ in range(2):
        assert (
            push_manifest(client, repo, manifest, "t").headers["Docker-Content-Digest"]
            == manifest.digest
        )


def test_retag_moves_tag(client: httpx.Client, repo: str) -> None:
    """A tag is a pointer: pushing another manifest to the same tag moves it."""
    first = push_image(client, repo, "moving")
    second = push_image(client, repo, "moving")
    got = client.get(manifest_url(repo, "moving"))
    assert got.content == second.body
    assert client.get(manifest_url(repo, first.digest)).content == first.body


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("ref_kind", ["tag", "digest"])
def test_unknown_manifest_is_404(
    client: httpx.Client, repo: str, method: str, ref_kind: str
) -> None:
    """ "If the manifest is not found in the repository, the response code MUST be `404 Not
    Found`." (MANIFEST_UNKNOWN)"""
    push_image(client, repo, "exists")
    ref = "does-not-exist" if ref_kind == "tag" else random_digest()
    assert_error(client.request(method, manifest_url(repo, ref)), 404, "MANIFEST_UNKNOWN")


# What the v1.1.1 conformance suite reads (".INVALID_MANIFEST_NAME", "sha256:totallywrong") and
# more of the same: references no manifest can have.
INVALID_REFERENCES = {
    "legacy-suite-tag": ".INVALID_MANIFEST_NAME",
    "leading-dash": "-bad",
    "129-chars": "a" * 129,
    "legacy-suite-digest": "sha256:totallywrong",
    "unknown-algorithm": "md5:" + "a" * 32,
    "upper-case-hex": "sha256:" + "A" * 64,
}


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("ref", list(INVALID_REFERENCES.values()), ids=list(INVALID_REFERENCES))
def test_read_by_invalid_reference_is_404(
    client: httpx.Client, repo: str, method: str, ref: str
) -> None:
    """The v1.1.1 conformance suite's "HEAD/GET nonexistent manifest should return 404" use an
    invalid tag; distribution (its router knows no such path) and zot answer 404. No manifest
    is known by a reference that cannot name one: 404 MANIFEST_UNKNOWN, while a push to it is
    400 (test_invalid_tag_rejected)."""
    push_image(client, repo, "exists")
    assert_error(client.request(method, manifest_url(repo, ref)), 404, "MANIFEST_UNKNOWN")


def test_pull_from_nonexistent_repository_is_404(client: httpx.Client, repo: str) -> None:
    """ "An attempt to pull a nonexistent repository MUST return response code `404 Not
    Found`.\""""
    for ref in ("latest", random_digest()):
        resp = client.get(manifest_url(repo, ref))
        assert_error(resp, 404, "MANIFEST_UNKNOWN", "NAME_UNKNOWN")


def test_manifest_digest_mismatch(client: httpx.Client, repo: str) -> None:
    """PUT by a digest that is not the body's digest: 400 (the stored digest "MUST be equal to
    the client provided digest", so the registry cannot accept it). Nothing is stored."""
    manifest = build_oci_image(client, repo)
    wrong = random_digest()
    assert_error(
        put_manifest(client, repo, wrong, manifest), 400, "DIGEST_INVALID", "MANIFEST_INVALID"
    )
    assert client.get(manifest_url(repo, wrong)).status_code == 404
    assert client.get(manifest_url(repo, manifest.digest)).status_code == 404


def _mangle(doc: dict[str, Any], case: str) -> bytes:
    if case == "not-json":
        return b"this is not json"
    if case == "truncated-json":
        return json.dumps(doc).encode()[:-5]
    if case == "layers-not-a-list":
        return json.dumps({**doc, "layers": 5}).encode()
    if case == "config-not-an-object":
        return json.dumps({**doc, "config": "x"}).encode()
    if case == "digest-not-a-string":
        layer = {**doc["layers"][0], "digest": 5}
        return json.dumps({**doc, "layers": [layer]}).encode()
    if case == "json-array":
        return b"[]"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "not-json",
        "truncated-json",
        "layers-not-a-list",
        "config-not-an-object",
        "digest-not-a-string",
        "json-array",
    ],
)
def test_invalid_manifest_is_manifest_invalid(client: httpx.Client, repo: str, case: str) -> None:
    """A body that is not a valid manifest of its declared type: 400 MANIFEST_INVALID
    ("manifest invalid")."""
    body = _mangle(build_oci_image(client, repo).doc, case)
    resp = put_manifest(client, repo, "bad", Manifest(body, OCI_MANIFEST))
    assert_error(resp, 400, "MANIFEST_INVALID")
    assert client.get(manifest_url(repo, "bad")).status_code == 404


@pytest.mark.parametrize("missing", ["config", "layer"])
def test_manifest_with_missing_blob(client: httpx.Client, repo: str, missing: str) -> None:
    """ "A registry MAY reject a manifest ... with descriptors in other fields that reference a
    manifest or blob that does not exist in the registry. When a manifest is rejected for this
    reason, it MUST result in one or more `MANIFEST_BLOB_UNKNOWN` errors." (ocigate rejects)"""
    config = config_blob()
    layer = random_blob(64)
    push_blob(client, repo, layer if missing == "config" else config)
    doc = image_manifest(config.descriptor(OCI_CONFIG), [layer.descriptor(OCI_LAYER)])
    resp = put_manifest(client, repo, "t", Manifest.of(doc))
    assert_error(resp, 400, "MANIFEST_BLOB_UNKNOWN")


def test_index_with_missing_child(client: httpx.Client, repo: str) -> None:
    """An index whose child manifest is not in the repository: 400 MANIFEST_BLOB_UNKNOWN."""
    present = push_image(client, repo)
    missing = Manifest.of(_image_doc(client, repo))
    index = Manifest.of(index_manifest([present.descriptor(), missing.descriptor()]))
    assert_error(put_manifest(client, repo, "idx", index), 400, "MANIFEST_BLOB_UNKNOWN")


@pytest.mark.inprocess_only
def test_sparse_index_accepted(ocigate_factory: ClientFactory) -> None:
    """With ocigate's sparse_index=True, an index whose children are missing is accepted
    (the spec only says a registry MAY reject it)."""
    client = ocigate_factory(sparse_index=True)
    repo = "spec/sparse"
    missing = Manifest.of(_image_doc(client, repo))
    index = Manifest.of(index_manifest([missing.descriptor()]))
    resp = put_manifest(client, repo, "idx", index)
    assert resp.status_code == 201, resp.text
    assert client.get(manifest_url(repo, "idx")).content == index.body


@pytest.mark.parametrize("subject_exists", [True, False], ids=["subject-present", "dangling"])
@pytest.mark.parametrize("referrer_kind", ["image", "index"])
def test_manifest_with_subject(
    client: httpx.Client, repo: str, subject_exists: bool, referrer_kind: str
) -> None:
    """ "A registry MUST initially accept an otherwise valid manifest with a `subject` field that
    references a manifest that does not exist in the repository"; a registry supporting the
    referrers API "MUST respond with the response header `OCI-Subject: <subject digest>`"."""
    subject = push_image(client, repo) if subject_exists else Manifest.of(_image_doc(client, repo))
    if referrer_kind == "image":
        doc = _image_doc(client, repo, subject=subject.descriptor())
    else:
        doc = index_manifest([push_image(client, repo).descriptor()], subject=subject.descriptor())
    referrer = Manifest.of(doc)
    resp = put_manifest(client, repo, referrer.digest, referrer)
    assert resp.status_code == 201, resp.text
    assert resp.headers.get("OCI-Subject") == subject.digest
    assert client.get(manifest_url(repo, referrer.digest)).content == referrer.body


def test_manifest_without_subject_has_no_oci_subject(client: httpx.Client, repo: str) -> None:
    """`OCI-Subject` reports a processed `subject`; a manifest without one gets none."""
    manifest = build_oci_image(client, repo)
    assert "OCI-Subject" not in push_manifest(client, repo, manifest).headers


def test_large_manifest_accepted(client: httpx.Client, repo: str) -> None:
    """ "Client and registry implementations SHOULD expect to be able to support manifest pushes
    of at least 4 megabytes." (a ~3.5 MB manifest is accepted and returned intact)"""
    doc = _image_doc(client, repo, annotations={"org.example.big": "x" * 3_500_000})
    manifest = Manifest.of(doc)
    push_manifest(client, repo, manifest, "big")
    assert client.get(manifest_url(repo, "big")).content == manifest.body


@pytest.mark.inprocess_only
def test_manifest_too_large_is_413(ocigate_factory: ClientFactory) -> None:
    """ "A registry that enforces this limit SHOULD respond to a request to push a manifest over
    this limit with a response code `413 Payload Too Large`." (ocigate, max_manifest_size=1024;
    with an OCI error body). A manifest under the limit is still accepted."""
    client = ocigate_factory(max_manifest_size=1024)
    repo = "spec/limit"
    small = Manifest.of(_image_doc(client, repo))
    assert small.size < 1024
    push_manifest(client, repo, small, "small")
    big = Manifest.of(_image_doc(client, repo, annotations={"pad": "x" * 1100}))
    assert_error(put_manifest(client, repo, "big", big), 413)
    assert client.get(manifest_url(repo, "big")).status_code == 404


# --- references and names ----------------------------------------------------------------


def test_longest_tag_accepted(client: httpx.Client, repo: str) -> None:
    """A tag "MUST be at most 128 characters in length and MUST match
    `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`": a 128-character tag of every allowed class works."""
    tag = ("_Aa0.-" * 22)[:128]
    manifest = push_image(client, repo, tag)
    assert client.get(manifest_url(repo, tag)).content == manifest.body


@pytest.mark.parametrize(
    "tag",
    ["-bad", ".bad", "a" * 129, "bad+tag", "b%C3%A4d"],
    ids=["leading-dash", "leading-dot", "129-chars", "plus", "non-ascii"],
)
def test_invalid_tag_rejected(client: httpx.Client, repo: str, tag: str) -> None:
    """ "The `<tag-or-digest>` MUST NOT be in any other format": pushing to an invalid tag is a
    400 with an OCI error body (ocigate: TAG_INVALID; the legacy code is allowed)."""
    manifest = build_oci_image(client, repo)
    assert_error(put_manifest(client, repo, tag, manifest), 400)


@pytest.mark.parametrize(
    "name",
    ["Spec/Upper", "spec/-lead", "spec/trail-", "spec/a..b", "spec/a___b"],
    ids=["uppercase", "leading-separator", "trailing-separator", "double-dot", "triple-underscore"],
)
@pytest.mark.parametrize("endpoint", ["manifest-put", "upload-post", "tags-list"])
def test_invalid_repository_name(client: httpx.Client, repo: str, name: str, endpoint: str) -> None:
    """ "`<name>` MUST match the following regular expression:
    `[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(\\/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*`". A name
    outside it is refused with 400 NAME_INVALID (ocigate) or 404 NAME_UNKNOWN, with an OCI error
    body either way."""
    if endpoint == "manifest-put":
        manifest = Manifest.of(_image_doc(client, repo))
        resp = put_manifest(client, name, "latest", manifest)
    elif endpoint == "upload-post":
        resp = client.post(uploads_url(name))
    else:
        resp = client.get(f"/v2/{name}/tags/list")
    assert_error(resp, (400, 404), "NAME_INVALID", "NAME_UNKNOWN")


def test_tag_query_parameters(client: httpx.Client, repo: str) -> None:
    """PUT `/v2/<name>/manifests/<digest>?tag=1&tag=2`: a registry supporting it "MUST include an
    `OCI-Tag` response header ... for each accepted tag" (values may be comma-separated or in
    several headers); each tag then resolves to the manifest."""
    manifest = build_oci_image(client, repo)
    tags = ["1.2.3", "1.2", "1", "latest"]
    resp = client.put(
        manifest_url(repo, manifest.digest),
        params=[("tag", t) for t in tags],
        content=manifest.body,
        headers={"Content-Type": manifest.media_type},
    )
    assert resp.status_code == 201, resp.text
    assert resp.headers["Docker-Content-Digest"] == manifest.digest
    assert sorted(header_list(resp, "OCI-Tag")) == sorted(tags)
    for tag in tags:
        got = client.get(manifest_url(repo, tag))
        assert got.status_code == 200
        assert got.headers["Docker-Content-Digest"] == manifest.digest


def test_blob_digest_is_not_a_manifest(client: httpx.Client, repo: str) -> None:
    """A blob is not a manifest of its repository: pulling a blob's digest from the manifests
    endpoint is "not found" (404 MANIFEST_UNKNOWN)."""
    push_image(client, repo, "t")
    blob = random_blob()
    push_blob(client, repo, blob)
    assert_error(client.get(manifest_url(repo, blob.digest)), 404, "MANIFEST_UNKNOWN")
