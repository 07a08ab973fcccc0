"""A 1 GiB blob pushed in one PATCH and pulled, on each S3 server: memory stays flat (RSS
growth under 50 MB), with throughput and CPU-seconds per GiB printed."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import pytest

from ocigate.oci.digest import Digest
from ocigate.registry import Stream
from ocigate.store.objects.blobstore import GiB, MiB

from .conftest import ObjectStores

pytestmark = pytest.mark.anyio

BLOCK = os.urandom(MiB)
COUNT = GiB // MiB


async def body() -> AsyncIterator[bytes]:
    for _ in range(COUNT):
        yield BLOCK


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def peak_rss() -> Iterator[list[int]]:
    """Samples RSS every 5 ms; yields [baseline, peak] (the peak filled in at the end)."""
    found = [rss(), 0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            found[1] = max(found[1], rss())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield found
    finally:
        done.set()
        sampler.join()


@pytest.mark.slow  # 12-25 s per server on this shared machine
async def test_a_gib_is_pushed_and_pulled_in_flat_memory(
    object_stores: ObjectStores, s3_bucket: object, request: pytest.FixtureRequest
) -> None:
    store = object_stores()
    hasher = hashlib.sha256()
    for _ in range(COUNT):
        hasher.update(BLOCK)
    digest = Digest("sha256", hasher.hexdigest())
    expected = BLOCK * (store.read_window // MiB)  # a read window's bytes
    server = request.node.callspec.params["s3_server"]

    upload_id = await store.start_upload("r")
    with peak_rss() as push_memory:
        started, cpu = time.perf_counter(), time.process_time()
        async with store.upload("r", upload_id) as staged:
            await staged.append(body(), 0, GiB)
            await staged.commit(digest)
        push = (time.perf_counter() - started, time.process_time() - cpu)

    with peak_rss() as pull_memory:
        started, cpu = time.perf_counter(), time.process_time()
        stream = await store.open(digest, GiB, 0, GiB)
        assert isinstance(stream, Stream)
        received = 0
        async for chunk in stream.chunks:
            assert chunk == expected  # windows are aligned on blocks
            received += len(chunk)
        await stream.close()
        pull = (time.perf_counter() - started, time.process_time() - cpu)
    assert received == GiB

    for name, (seconds, cpu_seconds), (base, peak) in [
        ("push", push, push_memory),
        ("pull", pull, pull_memory),
    ]:
        print(
            f"\n{server} {name} 1 GiB: {GiB / seconds / 1e6:.0f} MB/s, "
            f"{cpu_seconds:.2f} CPU-s/GiB, RSS +{(peak - base) / 1e6:.1f} MB"
        )
    for name, (base, peak) in [("push", push_memory), ("pull", pull_memory)]:
        assert peak - base < 50e6, f"{name}: RSS grew {(peak - base) / 1e6:.0f} MB"
