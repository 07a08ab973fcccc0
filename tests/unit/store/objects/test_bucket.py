"""Opening the bucket: credentials from the standard AWS variables when none are given, and a
refusal by the server is the unavailable error naming the storage, never the secret."""

from __future__ import annotations

import dataclasses

import pytest

from ocigate.store.objects.bucket import Bucket, StorageUnavailable
from parts.s3 import S3Bucket

from .conftest import bucket_config

pytestmark = pytest.mark.anyio


async def test_credentials_and_region_come_from_the_aws_variables(
    s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = s3_bucket.server
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server.secret_key)
    monkeypatch.setenv("AWS_REGION", server.region)
    config = dataclasses.replace(
        bucket_config(s3_bucket), access_key=None, secret_key=None, region=None
    )
    bucket = Bucket(config)
    await bucket.put("k", b"from the environment")
    assert await bucket.get_range("k", 9, 20) == b"environment"


async def test_a_refusal_names_the_storage_and_hides_the_secret(s3_bucket: S3Bucket) -> None:
    wrong = "not-the-secret-key-at-all"
    bucket = Bucket(dataclasses.replace(bucket_config(s3_bucket), secret_key=wrong))
    with pytest.raises(StorageUnavailable) as caught:
        await bucket.put("k", b"x")
    text = str(caught.value) + str(caught.value.body())
    assert f"{s3_bucket.server.endpoint}/{s3_bucket.name}/registry" in text
    assert "PUT k" in text and wrong not in text
