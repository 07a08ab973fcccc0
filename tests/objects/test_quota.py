"""Quotas on the objects backend: usage counted by PostgreSQL, bytes refused before they reach
the bucket, ``ocigate quota`` reading the shared database."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from e2e.support import (
    ServerProcess,
    make_image,
    ocigate_argv,
    push_blob_monolithic,
    push_image,
    start_upload,
    with_query,
)
from parts.s3 import S3Bucket, S3Server, create_bucket

from .support import objects_store, replica

KiB = 1024
QUOTAS = [{"repos": "q/*", "max_bytes": "200KiB", "max_tags": 1}]


@pytest.fixture
def server(tmp_path: Path, seaweedfs: S3Server, postgres_url: str) -> Iterator[ServerProcess]:
    bucket = S3Bucket(seaweedfs, f"q-{uuid.uuid4().hex[:20]}")
    create_bucket(seaweedfs, bucket.name)
    store = objects_store(bucket, postgres_url)
    running = replica(tmp_path / "r", store, workers=2, quotas=QUOTAS).start()
    yield running
    running.stop()


def test_quota_on_the_objects_backend(server: ServerProcess, tmp_path: Path) -> None:
    base = server.url
    with httpx.Client(timeout=30) as http:
        image = make_image("quota-objects", layer_sizes=(100 * KiB,))
        push_image(http, base, "q/app", image, "v1")
        for blob in image.blobs:  # pushed again: counted once
            push_blob_monolithic(http, base, "q/app", blob.data)

        def streamed() -> Iterator[bytes]:  # no Content-Length
            for _ in range(16):
                yield os.urandom(16 * KiB)

        upload = start_upload(http, base, "q/app")
        digest = "sha256:" + "0" * 64
        response = http.put(with_query(upload, digest=digest), content=streamed())
        assert response.status_code == 403, response.text
        (error,) = response.json()["errors"]
        assert error["code"] == "DENIED"
        assert error["message"].startswith('quota exceeded for repository "q/app" (rule "q/*")')
        assert error["detail"]["max_bytes"] == 200 * KiB
        assert http.head(f"{base}/v2/q/app/blobs/{digest}").status_code == 404

        other = make_image("quota-objects-2", layer_sizes=(1 * KiB,))
        for blob in other.blobs:
            push_blob_monolithic(http, base, "q/app", blob.data)
        refused = http.put(
            f"{base}/v2/q/app/manifests/v2",
            content=other.manifest.data,
            headers={"Content-Type": other.manifest.media_type},
        )
        assert refused.status_code == 403
        assert "1 of 1 tags used, this manifest adds 1" in refused.json()["errors"][0]["message"]

    config = str(tmp_path / "r" / "ocigate.yaml")
    table = subprocess.run(
        [*ocigate_argv(), "quota", "--config", config],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    used = sum(blob.size for blob in (*image.blobs, image.manifest, *other.blobs))
    (row,) = [line.split() for line in table.splitlines() if line.startswith("q/app ")]
    assert row[1:4] == [f"{used / KiB:.1f}", "KiB", "/"]
    assert row[6:] == ["1", "/", "1", "100%", "q/*"]
