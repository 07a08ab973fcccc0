"""``ocigate migrate``: a single-machine (embedded) registry moved onto the objects backend,
every repository, tag, manifest, blob and referrer byte for byte; run again, it copies nothing
twice."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import yaml

from e2e.support import (
    EMPTY_CONFIG,
    MANIFEST_ACCEPT,
    artifact_manifest,
    make_image,
    make_index,
    ocigate_argv,
    ocigate_server,
    push_blob_monolithic,
    push_image,
    put_manifest,
)
from parts.s3 import S3Bucket

from .support import objects_store, replica

REPOS = ("team/app", "team/tools", "other/app")


def _everything(http: httpx.Client, base: str) -> dict[str, object]:
    """What a client can see: the catalog; per repository the tags, each tagged manifest's
    bytes, the referrers of each, every blob a manifest names."""
    seen: dict[str, object] = {"catalog": http.get(f"{base}/v2/_catalog").json()}
    for repo in REPOS:
        tags = http.get(f"{base}/v2/{repo}/tags/list").json()["tags"]
        seen[f"{repo} tags"] = tags
        for tag in tags:
            got = http.get(f"{base}/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT})
            digest = got.headers["docker-content-digest"]
            seen[f"{repo}:{tag}"] = (digest, got.headers["content-type"], got.content)
            seen[f"{repo}@{digest} referrers"] = http.get(
                f"{base}/v2/{repo}/referrers/{digest}"
            ).json()
            document = got.json()
            named = [d["digest"] for d in document.get("layers", [])]
            named += [document["config"]["digest"]] if "config" in document else []
            named += [d["digest"] for d in document.get("manifests", [])]
            for name in named:
                kind = "manifests" if name in str(document.get("manifests")) else "blobs"
                pulled = http.get(
                    f"{base}/v2/{repo}/{kind}/{name}", headers={"Accept": MANIFEST_ACCEPT}
                )
                assert pulled.status_code == 200, (repo, tag, name)
                seen[f"{repo} {name}"] = pulled.content
    return seen


def test_an_embedded_registry_moves_onto_objects_byte_exact(
    tmp_path: Path, s3_bucket: S3Bucket, postgres_url: str
) -> None:
    data_dir = tmp_path / "embedded"
    source = ocigate_server(data_dir, tmp_path / "source.log", workers=1).start()
    with httpx.Client(timeout=30) as http:
        base = source.url
        app = make_image("app", layer_sizes=(120_000, 7_000))
        push_image(http, base, REPOS[0], app, "v1")
        push_image(http, base, REPOS[2], app, "copy")  # the same blobs in another repository
        images = [make_image("multi", arch=a, layer_sizes=(30_000,)) for a in ("amd64", "arm64")]
        for image in images:
            push_image(http, base, REPOS[1], image, f"only-{image.manifest.digest[7:15]}")
        index = make_index(images)
        put_manifest(http, base, REPOS[1], "multi", index)
        push_blob_monolithic(http, base, REPOS[0], EMPTY_CONFIG.data)
        signature = artifact_manifest(
            "application/vnd.example.signature", EMPTY_CONFIG, app.manifest
        )
        put_manifest(http, base, REPOS[0], "sig", signature)
        http.put(
            f"{base}/v2/{REPOS[0]}/manifests/v1-moved",
            content=app.manifest.data,
            headers={"Content-Type": app.manifest.media_type},
        )
        before = _everything(http, base)
    source.stop()

    destination = objects_store(s3_bucket, postgres_url)
    target = tmp_path / "objects.yaml"
    target.write_text(yaml.safe_dump({"store": destination | {"data_dir": str(tmp_path / "o")}}))
    argv = [*ocigate_argv(), "migrate", "--data-dir", str(data_dir), "--to", str(target)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 repositories" in done.stdout and "0 already there" in done.stdout, done.stdout

    server = replica(tmp_path / "r", destination).start()
    try:
        with httpx.Client(timeout=30) as http:
            assert _everything(http, server.url) == before
    finally:
        server.stop()

    again = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "0 blobs uploaded (0 bytes)" in again.stdout, again.stdout
