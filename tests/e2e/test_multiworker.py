"""Uploads whose requests are spread over the workers of a multi-worker server.

Every request below opens a new TCP connection, so the kernel hands successive pieces of one
upload session to whichever worker accepts next.
"""

from __future__ import annotations

import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from .support import (
    MANIFEST_ACCEPT,
    OCI_CONFIG,
    OCI_LAYER_GZIP,
    Blob,
    ServerProcess,
    closing_client,
    image_manifest,
    json_bytes,
    location,
    ocigate_server,
    push_blob_chunked,
    push_blob_monolithic,
    put_manifest,
    sha256_digest,
    with_query,
)

_CLOSING = closing_client()


def fresh(method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One request on a connection of its own."""
    return _CLOSING.request(method, url, **kwargs)


def assert_blob(base: str, repo: str, data: bytes) -> None:
    digest = sha256_digest(data)
    response = fresh("GET", f"{base}/v2/{repo}/blobs/{digest}")
    assert response.status_code == 200, response.text
    assert len(response.content) == len(data)
    assert response.content == data
    assert response.headers.get("docker-content-digest") == digest
    response = fresh("HEAD", f"{base}/v2/{repo}/blobs/{digest}")
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == len(data)


def test_chunked_upload_over_fresh_connections(registry: ServerProcess, repo: str) -> None:
    rng = random.Random(7)
    for _ in range(6):
        data = rng.randbytes(rng.randint(600_000, 2_500_000))
        chunk = rng.choice([64 * 1024, 200_000, 333_333, 1024 * 1024])
        push_blob_chunked(_CLOSING, registry.url, repo, data, chunk)
        assert_blob(registry.url, repo, data)


def test_concurrent_chunked_uploads_over_fresh_connections(
    registry: ServerProcess, repo: str
) -> None:
    blobs = [random.Random(seed).randbytes(900_000 + seed * 77_777) for seed in range(8)]

    def upload(data: bytes) -> str:
        with closing_client() as client:
            return push_blob_chunked(client, registry.url, repo, data, 128 * 1024)

    with ThreadPoolExecutor(max_workers=8) as pool:
        digests = list(pool.map(upload, blobs))
    assert digests == [sha256_digest(data) for data in blobs]
    for data in blobs:
        assert_blob(registry.url, repo, data)


def test_upload_status_final_chunk_and_errors_across_workers(
    registry: ServerProcess, registry_kind: str, repo: str
) -> None:
    base = registry.url
    data = random.Random(11).randbytes(1_000_000)
    digest = sha256_digest(data)
    for _ in range(3):
        response = fresh("POST", f"{base}/v2/{repo}/blobs/uploads/")
        assert response.status_code == 202
        upload = location(base, response)

        first, rest = data[:400_000], data[400_000:]
        response = fresh(
            "PATCH",
            upload,
            content=first,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"0-{len(first) - 1}",
            },
        )
        assert response.status_code == 202, response.text
        upload = location(base, response)

        # any worker knows the session's progress
        for _ in range(4):
            response = fresh("GET", upload)
            assert response.status_code == 204, response.text
            assert response.headers["range"] == f"0-{len(first) - 1}"

        # a chunk that does not continue where the upload stands is refused
        # (distribution 2.8 does not check Content-Range: harness validation mode only)
        if registry_kind != "distribution":
            response = fresh(
                "PATCH",
                upload,
                content=b"x" * 10,
                headers={"Content-Type": "application/octet-stream", "Content-Range": "10-19"},
            )
            assert response.status_code == 416, response.text
            response = fresh("GET", upload)
            assert response.headers["range"] == f"0-{len(first) - 1}"

        # closing with the wrong digest fails and leaves nothing behind under either digest
        wrong = sha256_digest(b"not the data")
        response = fresh(
            "PUT",
            with_query(upload, digest=wrong),
            content=rest,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert response.status_code == 400, response.text
        assert response.json()["errors"][0]["code"] == "DIGEST_INVALID"
        assert fresh("HEAD", f"{base}/v2/{repo}/blobs/{wrong}").status_code == 404

        # start again and finish with the last chunk in the PUT body
        response = fresh("POST", f"{base}/v2/{repo}/blobs/uploads/")
        upload = location(base, response)
        response = fresh(
            "PATCH",
            upload,
            content=first,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"0-{len(first) - 1}",
            },
        )
        assert response.status_code == 202
        upload = location(base, response)
        response = fresh(
            "PUT",
            with_query(upload, digest=digest),
            content=rest,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert response.status_code == 201, response.text
        assert_blob(base, repo, data)

        # the finished session is gone on every worker
        for _ in range(3):
            assert fresh("GET", upload).status_code == 404


def test_read_your_writes_across_workers(registry: ServerProcess, repo: str) -> None:
    """Tag moves, deletes and new blobs are visible at once on every worker (no stale caches)."""
    base = registry.url
    config = Blob(OCI_CONFIG, json_bytes({"architecture": "amd64", "os": "linux"}))
    push_blob_monolithic(_CLOSING, base, repo, config.data)
    previous: Blob | None = None
    for round_number in range(12):
        layer = Blob(OCI_LAYER_GZIP, random.Random(round_number).randbytes(2048))
        push_blob_monolithic(_CLOSING, base, repo, layer.data)
        for _ in range(3):
            response = fresh("HEAD", f"{base}/v2/{repo}/blobs/{layer.digest}")
            assert response.status_code == 200
        manifest = image_manifest(config, [layer], {"round": str(round_number)})
        put_manifest(_CLOSING, base, repo, "moving", manifest)
        for _ in range(4):
            response = fresh(
                "GET", f"{base}/v2/{repo}/manifests/moving", headers={"Accept": MANIFEST_ACCEPT}
            )
            assert response.status_code == 200
            assert response.content == manifest.data, f"stale tag in round {round_number}"
            response = fresh(
                "HEAD", f"{base}/v2/{repo}/manifests/moving", headers={"Accept": MANIFEST_ACCEPT}
            )
            assert response.headers["docker-content-digest"] == manifest.digest
        if previous is not None:
            # the old manifest is still there by digest until deleted, then gone everywhere
            response = fresh("DELETE", f"{base}/v2/{repo}/manifests/{previous.digest}")
            assert response.status_code == 202, response.text
            for _ in range(4):
                response = fresh(
                    "GET",
                    f"{base}/v2/{repo}/manifests/{previous.digest}",
                    headers={"Accept": MANIFEST_ACCEPT},
                )
                assert response.status_code == 404, f"deleted manifest served, {round_number}"
        previous = manifest
    for _ in range(4):
        response = fresh("GET", f"{base}/v2/{repo}/tags/list")
        assert response.status_code == 200
        assert response.json()["tags"] == ["moving"]


def test_scheduled_gc_removes_deleted_blobs(tmp_path: Path) -> None:
    """``gc_interval`` on a two-worker server: a blob deleted from its only repository is gone
    from the disk within a few intervals once older than ``gc_grace``, and a layer of a pushed
    image stays."""
    server = ocigate_server(tmp_path / "data", tmp_path / "server.log", workers=2)
    server.env = {**os.environ, "OCIGATE_GC_INTERVAL": "1", "OCIGATE_GC_GRACE": "2s"}
    server.start()
    try:
        kept, dropped = b"kept" * 100, b"dropped" * 100
        config = Blob(OCI_CONFIG, json_bytes({"gc": "kept"}))
        layer = Blob(OCI_LAYER_GZIP, kept)
        for blob in (config, layer):
            push_blob_monolithic(_CLOSING, server.url, "gc/app", blob.data)
        put_manifest(_CLOSING, server.url, "gc/app", "v1", image_manifest(config, [layer]))
        digest = push_blob_monolithic(_CLOSING, server.url, "gc/app", dropped)
        assert fresh("DELETE", f"{server.url}/v2/gc/app/blobs/{digest}").status_code == 202
        blob_file = tmp_path / "data" / "blobs" / "sha256" / digest[7:9] / digest[7:]
        deadline = time.monotonic() + 15
        while blob_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not blob_file.exists(), "the deleted blob's file survived the scheduled GC"
        assert fresh("GET", f"{server.url}/v2/gc/app/blobs/{sha256_digest(kept)}").content == kept
    finally:
        server.stop()
