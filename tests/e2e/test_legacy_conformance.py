"""The v1.1.1 conformance suite's reads by an invalid reference, against Debian's distribution
2.8.2 (``docker-registry``) and ocigate side by side: ocigate answers what distribution does
(404), with the spec's error body that distribution's router miss lacks; a push to such a
reference stays a 400."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from .support import (
    ServerProcess,
    distribution_server,
    make_image,
    ocigate_server,
    push_blob_monolithic,
)

REPO = "legacy/conformance"
# The suite's nonexistentManifest, and other tags outside the grammar.
INVALID_TAGS = [".INVALID_MANIFEST_NAME", "-bad", "a" * 129, "v1%0A"]


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    root = tmp_path_factory.mktemp("legacy")
    servers: list[ServerProcess] = []
    try:
        servers.append(distribution_server(root / "dist", root / "dist.log").start())
        servers.append(ocigate_server(root / "ocigate", root / "ocigate.log", workers=1).start())
        urls = {server.name: server.url for server in servers}
        image = make_image("legacy")
        with httpx.Client(timeout=30) as client:
            for url in urls.values():
                for blob in image.blobs:
                    push_blob_monolithic(client, url, REPO, blob.data)
                response = client.put(
                    f"{url}/v2/{REPO}/manifests/exists",
                    content=image.manifest.data,
                    headers={"Content-Type": image.manifest.media_type},
                )
                assert response.status_code == 201, response.text
        yield urls
    finally:
        for server in servers:
            server.stop()


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("tag", INVALID_TAGS)
def test_read_by_invalid_tag_is_404_as_in_distribution(
    registries: dict[str, str], method: str, tag: str
) -> None:
    with httpx.Client(timeout=30) as client:
        answers = {
            name: client.request(method, f"{url}/v2/{REPO}/manifests/{tag}")
            for name, url in registries.items()
        }
    assert answers["distribution"].status_code == 404
    ours = answers["ocigate"]
    assert ours.status_code == 404
    if method == "GET":
        assert ours.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"


def test_suite_error_code_check_accepts_our_answer(registries: dict[str, str]) -> None:
    """The suite's "400 response body should contain OCI-conforming JSON message" GETs
    ``sha256:totallywrong`` and accepts 400 or 404 (distribution 2.8.2 answers 500)."""
    with httpx.Client(timeout=30) as client:
        url = registries["ocigate"]
        response = client.get(f"{url}/v2/{REPO}/manifests/sha256:totallywrong")
    assert response.status_code == 404
    assert response.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"


@pytest.mark.parametrize("tag", INVALID_TAGS)
def test_push_to_invalid_tag_stays_400(registries: dict[str, str], tag: str) -> None:
    image = make_image("legacy")
    with httpx.Client(timeout=30) as client:
        response = client.put(
            f"{registries['ocigate']}/v2/{REPO}/manifests/{tag}",
            content=image.manifest.data,
            headers={"Content-Type": image.manifest.media_type},
        )
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "TAG_INVALID"
