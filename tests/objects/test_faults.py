"""Faults and races with replicas behind HAProxy: a replica SIGKILLed among 16 concurrent
pushes, PostgreSQL restarted, S3 gone, 32 clients pushing one tag and the same blobs at once,
garbage collection running while pushes go on."""

from __future__ import annotations

import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from e2e.support import (
    Image,
    ServerProcess,
    get_manifest,
    image_manifest,
    make_image,
    ocigate_argv,
    push_image,
    sha256_digest,
)
from parts.postgres import PostgresServer
from parts.s3 import S3Bucket

from .conftest import Cluster
from .support import objects_store, replica


def _config(server: ServerProcess) -> str:
    return str(server.log_path.parent / "ocigate.yaml")


def _fsck(server: ServerProcess) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ocigate_argv(), "fsck", "--config", _config(server)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _push_retrying(base: str, repo: str, image: Image, tag: str, attempts: int = 4) -> bool:
    """Push as a client would, retrying a failed push; whether it was acknowledged."""
    for _ in range(attempts):
        try:
            with httpx.Client(timeout=30) as client:
                push_image(client, base, repo, image, tag)
            return True
        except (AssertionError, httpx.HTTPError):
            time.sleep(0.3)
    return False


def _assert_whole(base: str, repo: str, image: Image, tag: str) -> None:
    with httpx.Client(timeout=30) as client:
        served = get_manifest(client, base, repo, tag)
        assert served.status_code == 200, (tag, served.status_code)
        assert served.content == image.manifest.data
        for blob in image.blobs:
            pulled = client.get(f"{base}/v2/{repo}/blobs/{blob.digest}")
            assert pulled.status_code == 200 and pulled.content == blob.data, blob.digest


def test_a_replica_killed_among_concurrent_pushes_loses_nothing_acknowledged(
    cluster: Cluster, repo: str
) -> None:
    images = [make_image(f"kill-{i}", layer_sizes=(600_000 + i, 3_000_000)) for i in range(16)]
    victim = cluster.replicas[1]
    acked: list[int] = []
    started = threading.Barrier(17)

    def push(i: int) -> None:
        started.wait()
        if _push_retrying(cluster.proxy.url, repo, images[i], f"t{i}"):
            acked.append(i)

    try:
        with ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(push, i) for i in range(16)]
            started.wait()
            # Killed in the middle of the pushes, once it has served some of their requests
            # (waited for, not slept for: a loaded machine may take seconds to get there).
            served = _wait_for_push_requests(victim.log_path, 30.0)
            victim.kill()
            for future in futures:
                future.result()
        assert served, "the victim served no push request within 30 s"
        assert acked, "no push survived"
        survivors = [s for s in cluster.replicas if s is not victim]
        for i in acked:
            for server in survivors:
                _assert_whole(server.url, repo, images[i], f"t{i}")
        report = _fsck(survivors[0])
        assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-2000:]
    finally:
        if victim.proc is None or victim.proc.poll() is not None:
            victim.start()  # back for the module's other tests, also when this one failed


def _wait_for_push_requests(log_path: Path, seconds: float) -> bool:
    """Whether the access log at ``log_path`` shows a push request within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        log = log_path.read_text()
        if any(f'"method":"{method}"' in log for method in ("PUT", "PATCH", "POST")):
            return True
        time.sleep(0.02)
    return False


def test_32_clients_pushing_one_tag_and_the_same_blobs_at_once(cluster: Cluster, repo: str) -> None:
    base = make_image("race-base", layer_sizes=(400_000, 30_000))
    shared = base.layers[0].data
    images = []
    for i in range(32):
        own = make_image(f"race-{i}", layer_sizes=(1000 + i,))
        layers = (*base.layers, *own.layers)  # the same two blobs in every push
        images.append(Image(image_manifest(own.config, layers, {}), own.config, layers))
    urls = [server.url for server in cluster.replicas]
    barrier = threading.Barrier(32)

    def push(i: int) -> str:
        barrier.wait()
        with httpx.Client(timeout=60) as client:
            return push_image(client, urls[i % 3], repo, images[i], "latest")

    with ThreadPoolExecutor(32) as pool:
        pushed = list(pool.map(push, range(32)))  # any error fails here
    with httpx.Client(timeout=30) as client:
        ends = {
            get_manifest(client, url, repo, "latest").headers["docker-content-digest"]
            for url in urls
        }
        assert len(ends) == 1 and ends <= set(pushed)
        digest = sha256_digest(shared)
        for url in urls:
            assert client.get(f"{url}/v2/{repo}/blobs/{digest}").content == shared
    report = _fsck(cluster.replicas[0])
    assert report.returncode == 0, report.stdout[-3000:]


def test_gc_in_a_loop_while_pushes_go_on_loses_no_acknowledged_push(
    cluster: Cluster, repo: str
) -> None:
    stop = threading.Event()
    runs: list[int] = []

    def collect() -> None:
        while not stop.is_set():
            done = subprocess.run(
                [*ocigate_argv(), "gc", "--grace", "0", "--config", _config(cluster.replicas[0])],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr
            runs.append(1)

    stored: list[tuple[int, Image]] = []

    def push(i: int) -> None:
        image = make_image(f"gc-{i}", layer_sizes=(50_000 + i, 20_000))
        with httpx.Client(timeout=30) as client:
            try:
                push_image(client, cluster.proxy.url, repo, image, f"g{i}")
            except AssertionError as refused:  # a layer collected before its manifest came
                assert "MANIFEST_BLOB_UNKNOWN" in str(refused), refused
                return
        stored.append((i, image))

    collector = threading.Thread(target=collect)
    collector.start()
    try:
        with ThreadPoolExecutor(6) as pool:
            list(pool.map(push, range(30)))
    finally:
        stop.set()
        collector.join(timeout=180)
    assert runs and stored
    for i, image in stored:
        _assert_whole(cluster.proxy.url, repo, image, f"g{i}")
    report = _fsck(cluster.replicas[0])
    assert report.returncode == 0, report.stdout[-3000:]


def test_postgres_restarted_mid_run(
    tmp_path: Path, s3_bucket: S3Bucket, postgres_url: str, postgres_server: PostgresServer
) -> None:
    server = replica(tmp_path / "r", objects_store(s3_bucket, postgres_url)).start()
    try:
        before = make_image("before", layer_sizes=(10_000,))
        with httpx.Client(timeout=30) as client:
            push_image(client, server.url, "pg/app", before, "v1")
            postgres_server.stop()
            started = time.monotonic()
            down = get_manifest(client, server.url, "pg/app", "v1")
            took = time.monotonic() - started
            assert down.status_code == 503, down.text
            [error] = down.json()["errors"]
            assert error["code"] == "UNAVAILABLE" and "database" in error["message"]
            assert took < 16, took  # connect 5 s + statement 10 s at most
            ready = client.get(f"{server.url}/readyz")
            assert ready.status_code == 503 and "database" in ready.text
            postgres_server.start()
            deadline = time.monotonic() + 20
            while get_manifest(client, server.url, "pg/app", "v1").status_code != 200:
                assert time.monotonic() < deadline, "no service after PostgreSQL came back"
                time.sleep(0.2)
            _assert_whole(server.url, "pg/app", before, "v1")
            after = make_image("after", layer_sizes=(12_000,))
            push_image(client, server.url, "pg/app", after, "v2")
            _assert_whole(server.url, "pg/app", after, "v2")
    finally:
        server.stop()


def test_s3_unreachable_is_a_503_naming_the_storage(
    tmp_path: Path, s3_bucket: S3Bucket, postgres_url: str
) -> None:
    server = replica(tmp_path / "r", objects_store(s3_bucket, postgres_url)).start()
    try:
        image = make_image("s3", layer_sizes=(10_000,))
        layer = image.blobs[-1].digest
        with httpx.Client(timeout=60) as client:
            push_image(client, server.url, "s3/app", image, "v1")
            s3_bucket.server.stop()
            # HEAD is answered from the database: no S3 call, so still 200.
            head = client.head(f"{server.url}/v2/s3/app/blobs/{layer}")
            assert head.status_code == 200
            started = time.monotonic()
            pulled = client.get(f"{server.url}/v2/s3/app/blobs/{layer}")
            took = time.monotonic() - started
            assert pulled.status_code == 503, pulled.text
            [error] = pulled.json()["errors"]
            assert error["code"] == "UNAVAILABLE"
            assert s3_bucket.name in error["message"] and "object storage" in error["message"]
            assert took < 45, took  # the bucket's stated bound for one call: 40 s
            s3_bucket.server.start()
    finally:
        server.stop()
