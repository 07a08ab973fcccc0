"""S3 stopped: every call of the object blob store fails in bounded time with the one
unavailable error naming the storage (never its secret), and the HTTP API answers 503 with an
OCI error body; a HEAD, answered from the metadata store, still works."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import httpx
import pytest

from ocigate.api.app import App
from ocigate.api.options import ApiOptions
from ocigate.oci.digest import Digest
from ocigate.store.core.registry import RegistryOverPorts
from ocigate.store.memory.metadata import InMemoryMetadata
from ocigate.store.objects.blobstore import ObjectBlobStore
from ocigate.store.objects.bucket import Bucket, StorageUnavailable
from parts.s3 import S3Bucket
from spec.conftest import serve_app

from .conftest import ObjectStores, bucket_config

pytestmark = pytest.mark.anyio

BOUND = 5.0  # a refused connection: 3 attempts with 0.1-0.4 s backoff, well under this


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_every_call_fails_fast_naming_the_storage(
    object_stores: ObjectStores, s3_bucket: S3Bucket
) -> None:
    store = object_stores()
    await store.write(Digest.of(b"held"), b"held")
    upload_id = await store.start_upload("r")
    s3_bucket.server.stop()

    async def append() -> None:
        async with store.upload("r", upload_id) as staged:
            await staged.append(chunks(b"more"), 0, None)

    async def commit_sha512() -> None:
        async with store.upload("r", upload_id) as staged:
            await staged.commit(Digest.of(b"", "sha512"))

    calls: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("open", lambda: store.open(Digest.of(b"held"), 4, 0, 4)),
        ("write", lambda: store.write(Digest.of(b"new"), b"new")),
        ("append", append),
        ("delete", lambda: store.delete([Digest.of(b"held")])),
    ]
    for name, call in calls:
        started = time.monotonic()
        with pytest.raises(StorageUnavailable) as caught:
            await call()
        elapsed = time.monotonic() - started
        print(f"{s3_bucket.server.name} {name}: unavailable after {elapsed:.2f} s")
        assert elapsed < BOUND, name
        error = caught.value
        assert error.status == 503 and error.code == "UNAVAILABLE"
        assert f"{s3_bucket.server.endpoint}/{s3_bucket.name}/registry" in error.message
        assert s3_bucket.server.secret_key not in str(error) + str(error.body())
    assert await store.upload_offset("r", upload_id) == 0  # the failed append changed nothing
    await commit_sha512()  # nothing to read back: an empty upload needs no S3


async def test_a_silent_server_fails_within_the_stated_bound(
    object_stores: ObjectStores, s3_bucket: S3Bucket
) -> None:
    writer = object_stores()
    await writer.write(Digest.of(b"held"), b"held")
    # Short bounds for the test: 1 s per request, no retry started after 1 s: at most 2 s.
    config = bucket_config(s3_bucket, request_timeout=1.0, retry_timeout=1.0)
    store = ObjectBlobStore(Bucket(config), writer.ledger)
    with s3_bucket.server.frozen():
        started = time.monotonic()
        with pytest.raises(StorageUnavailable, match="unavailable: GET"):
            await store.open(Digest.of(b"held"), 4, 0, 4)
        elapsed = time.monotonic() - started
    print(f"{s3_bucket.server.name} silent: unavailable after {elapsed:.2f} s")
    assert 0.9 < elapsed < config.request_timeout + config.retry_timeout + 0.5


async def test_the_api_answers_503_with_an_oci_error_body(
    object_stores: ObjectStores, s3_bucket: S3Bucket
) -> None:
    blobs: ObjectBlobStore = object_stores()
    app = App(RegistryOverPorts(blobs, InMemoryMetadata()), ApiOptions())
    data = b"layer bytes"
    digest = Digest.of(data)

    def exchange() -> list[httpx.Response]:
        with serve_app(app) as url, httpx.Client(base_url=url, timeout=30) as client:
            started = client.post("/v2/r/blobs/uploads/")
            pushed = client.put(
                started.headers["location"], params={"digest": str(digest)}, content=data
            )
            assert pushed.status_code == 201, pushed.text
            s3_bucket.server.stop()
            answers = [client.head(f"/v2/r/blobs/{digest}")]
            begun = time.monotonic()
            answers.append(client.get(f"/v2/r/blobs/{digest}"))
            again = client.post("/v2/r/blobs/uploads/")
            answers.append(client.patch(again.headers["location"], content=b"chunk"))
            assert time.monotonic() - begun < 2 * BOUND
            return answers

    head, get, patch = await anyio.to_thread.run_sync(exchange)
    assert head.status_code == 200  # the metadata store answers a HEAD: no S3 call
    for response in (get, patch):
        assert response.status_code == 503, response.text
        (error,) = response.json()["errors"]
        assert error["code"] == "UNAVAILABLE"
        assert f"{s3_bucket.server.endpoint}/{s3_bucket.name}" in error["message"]
        assert s3_bucket.server.secret_key not in response.text
