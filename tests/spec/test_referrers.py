"""Listing referrers (end-12a, end-12b)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from .conftest import ClientFactory
from .helpers import (
    OCI_INDEX,
    Manifest,
    assert_error,
    follow_pages,
    header_list,
    index_manifest,
    manifest_url,
    push_artifact,
    push_image,
    push_manifest,
    random_digest,
    referrers,
)

SBOM = "application/vnd.example.sbom.v1"
SIGNATURE = "application/vnd.example.signature.v1"
SIG_CONFIG = "application/vnd.example.signature.config.v1+json"
BUNDLE = "application/vnd.example.bundle.v1"


def referrers_index(resp: httpx.Response) -> list[dict[str, Any]]:
    """Upon success, "the response MUST be a JSON body with an image index containing a list of
    descriptors. The `Content-Type` header MUST be set to
    `application/vnd.oci.image.index.v1+json`." Returns the descriptors."""
    assert resp.status_code == 200, f"{resp.status_code}: {resp.text[:300]}"
    assert resp.headers["Content-Type"].split(";")[0].strip() == OCI_INDEX
    body = resp.json()
    assert body["schemaVersion"] == 2
    assert body["mediaType"] == OCI_INDEX
    manifests = body["manifests"]
    assert isinstance(manifests, list)
    return manifests


def expected_descriptor(manifest: Manifest) -> dict[str, Any]:
    """The descriptor the referrers API must list for ``manifest``: "`artifactType` ... set to
    the value of the `artifactType` in the image manifest or index, if present"; else, for an
    image manifest, "the config descriptor `mediaType` value"; for an index it "MUST be
    omitted". "The descriptors MUST include annotations from the image manifest or index.\""""
    descriptor = manifest.descriptor()
    artifact_type = manifest.doc.get("artifactType") or (
        manifest.doc["config"]["mediaType"] if "config" in manifest.doc else None
    )
    if artifact_type:
        descriptor["artifactType"] = artifact_type
    if manifest.doc.get("annotations"):
        descriptor["annotations"] = manifest.doc["annotations"]
    return descriptor


def normalized(descriptors: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Descriptors keyed by digest; empty `annotations` treated as absent."""
    result: dict[str, dict[str, Any]] = {}
    for d in descriptors:
        d = {k: v for k, v in d.items() if not (k == "annotations" and not v)}
        assert d["digest"] not in result, f"{d['digest']} listed twice"
        result[d["digest"]] = d
    return result


def push_referrers(client: httpx.Client, repo: str, subject: Manifest) -> list[Manifest]:
    """Four kinds of referrer: artifact with artifactType, image without artifactType (config
    media type counts), index with artifactType, index without."""
    sbom = push_artifact(
        client,
        repo,
        SBOM,
        subject=subject.descriptor(),
        annotations={"org.opencontainers.image.created": "2024-01-01T00:00:00Z", "f": "json"},
    )
    signature = push_image(client, repo, config_media_type=SIG_CONFIG, subject=subject.descriptor())
    child = push_image(client, repo)
    typed_index = Manifest.of(
        index_manifest(
            [child.descriptor()],
            artifactType=BUNDLE,
            subject=subject.descriptor(),
            annotations={"k": "v"},
        )
    )
    plain_index = Manifest.of(
        index_manifest([child.descriptor()], subject=subject.descriptor(), annotations={"i": "j"})
    )
    for index in (typed_index, plain_index):
        push_manifest(client, repo, index)
    return [sbom, signature, typed_index, plain_index]


def test_list_referrers(client: httpx.Client, repo: str) -> None:
    """ "Each descriptor is of an image manifest or index in the same `<name>` namespace with a
    `subject` field that specifies the value of `<digest>`", with correct mediaType, size,
    digest, artifactType and annotations. Unrelated manifests are not listed."""
    subject = push_image(client, repo, "v1")
    pushed = push_referrers(client, repo, subject)
    push_artifact(client, repo, SBOM, subject=push_image(client, repo).descriptor())
    got = normalized(referrers_index(referrers(client, repo, subject.digest)))
    assert got == normalized([expected_descriptor(m) for m in pushed])


def test_referrers_pushed_before_subject(client: httpx.Client, repo: str) -> None:
    """Referrers may be pushed first ("allowing clients to push a manifest and referrers to that
    manifest in either order") and are listed once the subject exists too."""
    subject = Manifest.of(
        index_manifest([push_image(client, repo).descriptor()], annotations={"n": repo})
    )
    sbom = push_artifact(client, repo, SBOM, subject=subject.descriptor())
    before = normalized(referrers_index(referrers(client, repo, subject.digest)))
    assert before == normalized([expected_descriptor(sbom)])
    push_manifest(client, repo, subject, "late")
    after = normalized(referrers_index(referrers(client, repo, subject.digest)))
    assert after == before


def test_no_referrers_is_empty_list(client: httpx.Client, repo: str) -> None:
    """ "If a query results in no matching referrers, an empty manifest list MUST be returned";
    "the registry MUST NOT return a `404 Not Found` to a referrers API requests" -- also for a
    subject that does not exist at all."""
    subject = push_image(client, repo)
    assert referrers_index(referrers(client, repo, subject.digest)) == []
    assert referrers_index(referrers(client, repo, random_digest())) == []


def test_referrers_in_unknown_repository(client: httpx.Client, repo: str) -> None:
    """Even for a repository with no content, a supporting registry "MUST NOT return a `404`"."""
    assert referrers_index(referrers(client, repo, random_digest())) == []


def test_referrers_are_per_repository(
    client: httpx.Client, repo: str, new_repo: Callable[[], str]
) -> None:
    """Only manifests "in the same `<name>` namespace" are listed."""
    subject = push_image(client, repo)
    other = new_repo()
    push_artifact(client, other, SBOM, subject=subject.descriptor())  # a referrer elsewhere
    assert referrers_index(referrers(client, repo, subject.digest)) == []
    assert len(referrers_index(referrers(client, other, subject.digest))) == 1


@pytest.mark.parametrize(
    "digest",
    ["sha256:abc", "sha256:" + "G" * 64, "notadigest", "sha256:" + "0" * 65],
    ids=["short", "non-hex", "no-algorithm", "too-long"],
)
def test_referrers_malformed_digest(client: httpx.Client, repo: str, digest: str) -> None:
    """ "If the request is invalid, such as a `<digest>` with an invalid syntax, a `400 Bad
    Request` MUST be returned.\""""
    push_image(client, repo)
    assert_error(referrers(client, repo, digest), 400)


@pytest.mark.parametrize("artifact_type", [SBOM, SIG_CONFIG, BUNDLE, "application/none"])
def test_filter_by_artifact_type(client: httpx.Client, repo: str, artifact_type: str) -> None:
    """`?artifactType=`: only matching descriptors; "If filtering is requested and applied, the
    response MUST include a header `OCI-Filters-Applied: artifactType`".'"""
    subject = push_image(client, repo)
    pushed = push_referrers(client, repo, subject)
    resp = referrers(client, repo, subject.digest, artifactType=artifact_type)
    got = normalized(referrers_index(resp))
    expected = [expected_descriptor(m) for m in pushed]
    assert got == normalized([d for d in expected if d.get("artifactType") == artifact_type])
    assert header_list(resp, "OCI-Filters-Applied") == ["artifactType"]


def test_unfiltered_has_no_filters_applied(client: httpx.Client, repo: str) -> None:
    """Without a filter, no `OCI-Filters-Applied` header claims one."""
    subject = push_image(client, repo)
    resp = referrers(client, repo, subject.digest)
    referrers_index(resp)
    assert "OCI-Filters-Applied" not in resp.headers


def test_deleted_referrer_disappears(client: httpx.Client, repo: str) -> None:
    """Deleting a referrer manifest removes it from the referrers list."""
    subject = push_image(client, repo)
    keep = push_artifact(client, repo, SBOM, subject=subject.descriptor())
    drop = push_artifact(client, repo, SIGNATURE, subject=subject.descriptor())
    assert len(referrers_index(referrers(client, repo, subject.digest))) == 2
    assert client.delete(manifest_url(repo, drop.digest)).status_code == 202
    got = normalized(referrers_index(referrers(client, repo, subject.digest)))
    assert got == normalized([expected_descriptor(keep)])


def test_referrers_tag_schema_index_included(client: httpx.Client, repo: str) -> None:
    """Enabling the referrers API: "Registries MUST include preexisting image manifests that
    are listed in an image index tagged with the referrers tag schema and have a valid `subject`
    field in the referrers API response." A referrer listed both ways appears once."""
    subject = push_image(client, repo)
    sbom = push_artifact(client, repo, SBOM, subject=subject.descriptor())
    algorithm, encoded = subject.digest.split(":")
    fallback = Manifest.of(index_manifest([expected_descriptor(sbom)]))
    push_manifest(client, repo, fallback, f"{algorithm}-{encoded}")
    got = normalized(referrers_index(referrers(client, repo, subject.digest)))
    assert got == normalized([expected_descriptor(sbom)])


@pytest.mark.inprocess_only
def test_referrers_paging(ocigate_factory: ClientFactory) -> None:
    """ "A `Link` header MUST be included in the response when the descriptor list cannot be
    returned in a single manifest", with `rel="next"`; each page is an index with different
    descriptors, together all of them exactly once (ocigate, referrers_page_size=2)."""
    client = ocigate_factory(referrers_page_size=2)
    repo = "spec/referrers-paging"
    subject = push_image(client, repo)
    pushed = [
        push_artifact(client, repo, SBOM, subject=subject.descriptor(), annotations={"i": str(i)})
        for i in range(5)
    ]
    first = referrers(client, repo, subject.digest)
    assert len(referrers_index(first)) == 2
    assert "Link" in first.headers
    url = f"/v2/{repo}/referrers/{subject.digest}"
    everything = follow_pages(client, url, "manifests")
    assert len(everything) == 5
    assert normalized(everything) == normalized([expected_descriptor(m) for m in pushed])
