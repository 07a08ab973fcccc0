"""``ocigate db``, ``ocigate gc`` and ``ocigate fsck`` on the objects backend, beside a running
replica: the schema migrated by command, garbage listed then deleted online, damage found."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from e2e.support import ServerProcess, get_manifest, make_image, ocigate_argv, push_image
from ocigate.store.objects.bucket import Bucket, BucketConfig
from ocigate.store.postgres.migrate import MIGRATIONS
from parts.postgres import PostgresServer
from parts.s3 import S3Bucket

from .support import objects_store, replica, replicas


def ocigate(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ocigate_argv(), *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def running(tmp_path: Path, s3_bucket: S3Bucket, postgres_url: str) -> Iterator[ServerProcess]:
    store = objects_store(s3_bucket, postgres_url)
    server = replica(tmp_path / "r", store, workers=2).start()
    yield server
    server.stop()


def test_db_status_and_migrate(tmp_path: Path, s3_bucket: S3Bucket, postgres_url: str) -> None:
    store = objects_store(s3_bucket, postgres_url, database={"url": postgres_url, "migrate": False})
    server = replica(tmp_path / "r", store)
    config = str(tmp_path / "r" / "ocigate.yaml")
    status = ocigate("db", "status", "--config", config)
    count = len(MIGRATIONS)
    assert status.returncode == 1 and f"{count} migration(s) pending" in status.stdout, status
    # A replica told not to migrate refuses to start on an old schema, saying what to run.
    with pytest.raises(Exception, match="ocigate db migrate"):
        server.start(ready_timeout=20)
    done = ocigate("db", "migrate", "--config", config)
    assert done.returncode == 0 and f"{count} migration(s) applied" in done.stdout, done
    again = ocigate("db", "migrate", "--config", config)
    assert "0 migration(s) applied, schema up to date" in again.stdout
    assert ocigate("db", "status", "--config", config).returncode == 0
    server.start()
    server.stop()


def test_gc_online_and_fsck(
    running: ServerProcess, tmp_path: Path, s3_bucket: S3Bucket, postgres_server: PostgresServer
) -> None:
    config = str(tmp_path / "r" / "ocigate.yaml")
    kept, dropped = (
        make_image("kept", layer_sizes=(30_000,)),
        make_image("gone", layer_sizes=(40_000,)),
    )
    repo = "gc/app"
    with httpx.Client(timeout=30) as http:
        push_image(http, running.url, repo, kept, "kept")
        push_image(http, running.url, repo, dropped, "gone")
        deleted = http.delete(f"{running.url}/v2/{repo}/manifests/{dropped.manifest.digest}")
        assert deleted.status_code == 202

        dry = ocigate("gc", "--dry-run", "--grace", "0", "--config", config)
        assert dry.returncode == 0, dry.stderr
        garbage = {line.split()[2] for line in dry.stdout.splitlines() if line.startswith("would")}
        assert garbage == {b.digest for b in dropped.blobs} | {dropped.manifest.digest}
        assert "(dry run)" in dry.stdout
        assert (
            http.get(f"{running.url}/v2/{repo}/blobs/{dropped.blobs[0].digest}").status_code == 200
        )

        swept = ocigate("gc", "--grace", "0", "--config", config)
        assert swept.returncode == 0 and f"deleted {len(garbage)} blobs" in swept.stdout, swept
        for blob in dropped.blobs:
            assert http.get(f"{running.url}/v2/{repo}/blobs/{blob.digest}").status_code == 404
        served = get_manifest(http, running.url, repo, "kept")
        assert served.status_code == 200 and served.content == kept.manifest.data
        for blob in kept.blobs:
            assert http.get(f"{running.url}/v2/{repo}/blobs/{blob.digest}").content == blob.data

    clean = ocigate("fsck", "--config", config)
    assert clean.returncode == 0 and "0 problem(s)" in clean.stdout, clean.stdout + clean.stderr

    # Damage: one segment of a kept layer deleted behind the registry's back.
    layer = kept.blobs[-1].digest
    database = config_database(tmp_path / "r" / "ocigate.yaml")
    key = postgres_server.sql(
        f"SELECT segments->0->>0 FROM object_blobs WHERE digest = '{layer}'", database=database
    ).strip()
    server = s3_bucket.server
    bucket = Bucket(
        BucketConfig(
            s3_bucket.name, server.endpoint, server.region, server.access_key, server.secret_key
        )
    )
    asyncio.run(bucket.delete([key]))
    damaged = ocigate("fsck", "--config", config)
    assert damaged.returncode == 1
    assert f"blob {layer}: segment {key} is missing" in damaged.stdout, damaged.stdout


def config_database(path: Path) -> str:
    import yaml

    url = yaml.safe_load(path.read_text())["store"]["database"]["url"]
    return str(url).rsplit("/", 1)[1]


def test_scheduled_gc_runs_once_per_interval_across_replicas(
    tmp_path: Path, s3_bucket: S3Bucket, postgres_url: str
) -> None:
    store = objects_store(s3_bucket, postgres_url, gc_interval=2, gc_grace=0)
    gone = make_image("scheduled", layer_sizes=(20_000,))
    with (
        replicas(tmp_path, store, count=2, workers=2, log_level="info") as servers,
        httpx.Client(timeout=30) as http,
    ):
        push_image(http, servers[0].url, "gc/s", gone, "v1")
        digest = gone.manifest.digest
        assert http.delete(f"{servers[1].url}/v2/gc/s/manifests/{digest}").status_code == 202
        layer = gone.layers[0].digest
        deadline = time.monotonic() + 20
        while http.get(f"{servers[0].url}/v2/gc/s/blobs/{layer}").status_code != 404:
            assert time.monotonic() < deadline, "the scheduled collection never ran"
            time.sleep(0.2)
        started = time.monotonic()
        time.sleep(6)
    runs = sum(s.log_path.read_text().count('{"gc":') for s in servers)
    elapsed = time.monotonic() - started + 2
    # One collection per 2 s interval in all, not one per worker (4) or replica (2).
    assert 1 <= runs <= elapsed / 2 + 3, runs
