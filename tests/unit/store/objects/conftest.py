"""The object blob store on each real S3 server (``parts.s3``), a fresh bucket per test; every
instance made shares the bucket and one ``MemoryLedger``, as replicas share a database."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ocigate.store.objects.blobstore import ObjectBlobStore
from ocigate.store.objects.bucket import Bucket, BucketConfig
from ocigate.store.objects.memory_ledger import MemoryLedger
from parts.s3 import S3Bucket, radosgw, s3_bucket, s3_server, seaweedfs

__all__ = ["radosgw", "s3_bucket", "s3_server", "seaweedfs"]

ObjectStores = Callable[..., ObjectBlobStore]


def bucket_config(bucket: S3Bucket, **bounds: float) -> BucketConfig:
    server = bucket.server
    return BucketConfig(
        bucket=bucket.name,
        endpoint=server.endpoint,
        region=server.region,
        access_key=server.access_key,
        secret_key=server.secret_key,
        prefix="registry",
        **bounds,  # type: ignore[arg-type]
    )


@pytest.fixture
def object_stores(s3_bucket: S3Bucket) -> ObjectStores:
    """Makes instances of the object blob store (keyword arguments: its options) on one bucket
    and ledger."""
    ledger = MemoryLedger()
    config = bucket_config(s3_bucket)
    return lambda **options: ObjectBlobStore(Bucket(config), ledger, **options)


@pytest.fixture
def blob_stores(object_stores: ObjectStores) -> Callable[[], ObjectBlobStore]:
    """Overrides the contract tests' fixture (``tests/unit/store/conftest.py``): small
    segments, so that the contract runs over several."""
    return lambda: object_stores(segment_size=4)
