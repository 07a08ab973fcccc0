"""One replica (two workers) on each real S3 server: the whole HTTP spec suite, and blob pulls
redirected to presigned URLs."""

from __future__ import annotations

from pathlib import Path

import httpx

from e2e.support import ServerProcess, make_image, push_image
from parts.s3 import S3Bucket
from spec.runner import assert_spec_suite_passes

from .support import objects_store, replicas


def test_spec_suite_on_the_objects_backend(one_replica: ServerProcess) -> None:
    assert_spec_suite_passes("--registry-url", one_replica.url)


def test_blob_pulls_redirect_to_presigned_urls_when_configured(
    tmp_path: Path, s3_bucket: S3Bucket, postgres_url: str
) -> None:
    store = objects_store(s3_bucket, postgres_url)
    store["s3"] |= {"redirect": True, "redirect_expiry": "5m"}
    image = make_image("redirected", layer_sizes=(300_000,))
    layer = image.layers[0]
    with (
        replicas(tmp_path, store, count=1) as [server],
        httpx.Client(timeout=30) as http,
    ):
        push_image(http, server.url, "redirect/app", image, "v1")
        url = f"{server.url}/v2/redirect/app/blobs/{layer.digest}"
        answer = http.get(url)
        assert answer.status_code == 307, answer.text
        location = answer.headers["location"]
        assert location.startswith(s3_bucket.server.endpoint) and "X-Amz-Signature" in location
        assert httpx.get(location, timeout=30).content == layer.data  # no credentials needed
        assert http.head(url).status_code == 200  # HEAD stays an answer from the database
        followed = httpx.get(url, follow_redirects=True, timeout=30)
        assert followed.content == layer.data
