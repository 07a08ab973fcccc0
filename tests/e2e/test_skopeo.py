"""skopeo (containers/image) pushing OCI layouts in and out of the registry, byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from .support import (
    MANIFEST_ACCEPT,
    OCI_INDEX,
    OCI_MANIFEST,
    Image,
    Layout,
    ServerProcess,
    get_manifest,
    make_image,
    make_index,
    sha256_digest,
    skopeo,
    write_oci_layout,
)


def copy_in(layout: Path, tag: str, dest: str, *extra: str) -> None:
    skopeo(
        "copy",
        "--quiet",
        "--preserve-digests",
        "--dest-tls-verify=false",
        *extra,
        f"oci:{layout}:{tag}",
        f"docker://{dest}",
    )


def copy_out(src: str, layout: Path, tag: str, *extra: str) -> None:
    skopeo(
        "copy",
        "--quiet",
        "--preserve-digests",
        "--src-tls-verify=false",
        *extra,
        f"docker://{src}",
        f"oci:{layout}:{tag}",
    )


def assert_image_served(http: httpx.Client, base: str, repo: str, image: Image, ref: str) -> None:
    response = get_manifest(http, base, repo, ref)
    assert response.status_code == 200, response.text
    assert response.content == image.manifest.data
    assert response.headers["content-type"] == OCI_MANIFEST
    assert response.headers["docker-content-digest"] == image.manifest.digest
    for blob in image.blobs:
        response = http.get(f"{base}/v2/{repo}/blobs/{blob.digest}")
        assert response.status_code == 200, (blob.digest, response.status_code)
        assert response.content == blob.data


def assert_image_in_layout(layout: Layout, image: Image) -> None:
    assert layout.blob(image.manifest.digest) == image.manifest.data
    for blob in image.blobs:
        assert layout.blob(blob.digest) == blob.data


def list_tags(host: str, repo: str) -> list[str]:
    out = skopeo("list-tags", "--tls-verify=false", f"docker://{host}/{repo}").stdout
    return sorted(json.loads(out)["Tags"])


def test_single_image_round_trip(
    registry: ServerProcess, http: httpx.Client, repo: str, tmp_path: Path
) -> None:
    image = make_image("single", layer_sizes=(150_000, 20_000))
    src = tmp_path / "src"
    write_oci_layout(src, image.blobs, {"v1": image.manifest})

    copy_in(src, "v1", f"{registry.host}/{repo}:v1", "--format", "oci")
    assert_image_served(http, registry.url, repo, image, "v1")
    assert_image_served(http, registry.url, repo, image, image.manifest.digest)

    out = tmp_path / "out"
    copy_out(f"{registry.host}/{repo}:v1", out, "v1", "--format", "oci")
    layout = Layout(out)
    entry = layout.resolve("v1")
    assert entry["digest"] == image.manifest.digest
    assert entry["mediaType"] == OCI_MANIFEST
    assert_image_in_layout(layout, image)

    # the same content pulled by digest
    out_by_digest = tmp_path / "out-by-digest"
    copy_out(f"{registry.host}/{repo}@{image.manifest.digest}", out_by_digest, "pinned")
    assert_image_in_layout(Layout(out_by_digest), image)

    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/{repo}:v1")
    assert raw.stdout.encode() == image.manifest.data


def test_multi_platform_index_round_trip(
    registry: ServerProcess, http: httpx.Client, repo: str, tmp_path: Path
) -> None:
    images = [
        make_image("multi", arch="amd64", layer_sizes=(90_000, 10_000)),
        make_image("multi", arch="arm64", layer_sizes=(80_000,)),
    ]
    index = make_index(images)
    src = tmp_path / "src"
    write_oci_layout(
        src, [blob for image in images for blob in (*image.blobs, image.manifest)], {"multi": index}
    )

    copy_in(src, "multi", f"{registry.host}/{repo}:multi", "--all")

    response = get_manifest(http, registry.url, repo, "multi")
    assert response.status_code == 200, response.text
    assert response.content == index.data
    assert response.headers["content-type"] == OCI_INDEX
    assert response.headers["docker-content-digest"] == index.digest
    for image in images:
        assert_image_served(http, registry.url, repo, image, image.manifest.digest)

    out = tmp_path / "out"
    copy_out(f"{registry.host}/{repo}:multi", out, "multi", "--all")
    layout = Layout(out)
    entry = layout.resolve("multi")
    assert entry["digest"] == index.digest
    assert entry["mediaType"] == OCI_INDEX
    assert layout.blob(index.digest) == index.data
    for image in images:
        assert_image_in_layout(layout, image)

    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/{repo}:multi")
    assert raw.stdout.encode() == index.data


def test_list_tags_and_delete(
    registry: ServerProcess, http: httpx.Client, repo: str, tmp_path: Path
) -> None:
    first = make_image("tags-a")
    second = make_image("tags-b", layer_sizes=(5_000, 6_000))
    src = tmp_path / "src"
    write_oci_layout(
        src, [*first.blobs, *second.blobs], {"v1": first.manifest, "v2": second.manifest}
    )
    copy_in(src, "v1", f"{registry.host}/{repo}:v1")
    copy_in(src, "v2", f"{registry.host}/{repo}:v2")
    # registry to registry: a third tag for the first image
    skopeo(
        "copy",
        "--quiet",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        f"docker://{registry.host}/{repo}:v1",
        f"docker://{registry.host}/{repo}:v1-again",
    )
    assert list_tags(registry.host, repo) == ["v1", "v1-again", "v2"]

    response = http.get(f"{registry.url}/v2/{repo}/tags/list")
    assert response.status_code == 200
    assert sorted(response.json()["tags"]) == ["v1", "v1-again", "v2"]
    assert response.json()["name"] == repo

    # skopeo delete resolves the tag and deletes the manifest by digest
    skopeo("delete", "--tls-verify=false", f"docker://{registry.host}/{repo}:v2")
    for ref in ("v2", second.manifest.digest):
        response = get_manifest(http, registry.url, repo, ref)
        assert response.status_code == 404, (ref, response.status_code)
        assert response.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    response = http.head(
        f"{registry.url}/v2/{repo}/manifests/v2", headers={"Accept": MANIFEST_ACCEPT}
    )
    assert response.status_code == 404
    assert list_tags(registry.host, repo) == ["v1", "v1-again"]

    # the other image is untouched
    response = get_manifest(http, registry.url, repo, "v1-again")
    assert response.status_code == 200
    assert sha256_digest(response.content) == first.manifest.digest
